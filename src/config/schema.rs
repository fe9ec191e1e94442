//! The one table of every configuration key: its type, default, command-line flag, environment
//! variable and meaning. Parsing, `--help`, the example `chartroom.yaml` and the
//! `chartroom.yaml(5)` man page are all generated from it.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str,
    Bool,
    Int,
    /// Go-style durations (`60s`, `5m`, `1h30m`); a bare number means seconds.
    Duration,
    /// `key=value` pairs; the flag may be repeated.
    Map,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Str => "string",
            Kind::Bool => "bool",
            Kind::Int => "int",
            Kind::Duration => "duration",
            Kind::Map => "map",
        }
    }
}

/// Whether chartroom acts on a key. ChartMuseum keys for features chartroom does not have are
/// still accepted (so an existing chartmuseum.yaml loads); setting them to anything but their
/// default is refused or warned about, never silently ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    Yes,
    /// Accepted; a non-default value only logs a warning (deprecated no-ops, cosmetic options).
    Ignored,
    /// A non-default value is a configuration error.
    No,
}

/// When a changed value takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// Picked up by `systemctl reload` (SIGHUP).
    Live,
    /// Needs a restart; a reload logs that it is left as it was.
    Restart,
}

#[derive(Debug)]
pub struct Key {
    pub key: &'static str,
    pub kind: Kind,
    pub default: &'static str,
    pub flag: &'static str,
    pub env: &'static str,
    pub help: &'static str,
    pub support: Support,
    pub reload: Reload,
}

const fn k(
    key: &'static str,
    kind: Kind,
    default: &'static str,
    flag: &'static str,
    env: &'static str,
    help: &'static str,
) -> Key {
    Key {
        key,
        kind,
        default,
        flag,
        env,
        help,
        support: Support::Yes,
        reload: Reload::Live,
    }
}

const fn restart(mut key: Key) -> Key {
    key.reload = Reload::Restart;
    key
}

const fn ignored(mut key: Key) -> Key {
    key.support = Support::Ignored;
    key
}

const fn unsupported(mut key: Key) -> Key {
    key.support = Support::No;
    key
}

use Kind::*;

pub static KEYS: &[Key] = &[
    // Listening and runtime.
    restart(k(
        "listen.host",
        Str,
        "127.0.0.1",
        "listen-host",
        "LISTEN_HOST",
        "Address to listen on when no sockets are passed by systemd. Use 0.0.0.0 or :: to listen on all interfaces.",
    )),
    restart(k(
        "port",
        Int,
        "8080",
        "port",
        "PORT",
        "TCP port to listen on.",
    )),
    restart(k(
        "workers",
        Int,
        "1",
        "workers",
        "WORKERS",
        "Runtime worker threads; 1 runs the whole server on one thread.",
    )),
    k(
        "readtimeout",
        Int,
        "30",
        "read-timeout",
        "READ_TIMEOUT",
        "Seconds a client may take to send a request's headers, and again to send its body (uploads; 408 when late); 0: no limit.",
    ),
    k(
        "writetimeout",
        Int,
        "30",
        "write-timeout",
        "WRITE_TIMEOUT",
        "Seconds a client may go without taking any of a response before it is disconnected; 0: no limit.",
    ),
    k(
        "shutdowngrace",
        Duration,
        "30s",
        "shutdown-grace",
        "SHUTDOWN_GRACE",
        "On SIGTERM/SIGINT, how long requests in flight may take to finish.",
    ),
    k(
        "contextpath",
        Str,
        "",
        "context-path",
        "CONTEXT_PATH",
        "Serve everything below this path prefix, e.g. /charts.",
    ),
    // Logging.
    k(
        "debug",
        Bool,
        "false",
        "debug",
        "DEBUG",
        "Log at debug level.",
    ),
    k(
        "logjson",
        Bool,
        "false",
        "log-json",
        "LOG_JSON",
        "Write logs as JSON objects, one per line.",
    ),
    k(
        "loghealth",
        Bool,
        "false",
        "log-health",
        "LOG_HEALTH",
        "Log requests to /health too.",
    ),
    k(
        "loglatencyinteger",
        Bool,
        "false",
        "log-latency-integer",
        "LOG_LATENCY_INTEGER",
        "Log request latency as integer nanoseconds instead of a duration string.",
    ),
    // Storage.
    k(
        "storage.backend",
        Str,
        "local",
        "storage",
        "STORAGE",
        "Storage backend: local, openstack or amazon.",
    ),
    k(
        "storage.local.rootdir",
        Str,
        "./chartstorage",
        "storage-local-rootdir",
        "STORAGE_LOCAL_ROOTDIR",
        "Directory holding the charts, for the local backend.",
    ),
    k(
        "storage.timestamptolerance",
        Duration,
        "0s",
        "storage-timestamp-tolerance",
        "STORAGE_TIMESTAMP_TOLERANCE",
        "Accepted for compatibility; chartroom compares size and modification time exactly.",
    ),
    k(
        "storage.requesttimeout",
        Duration,
        "30s",
        "storage-request-timeout",
        "STORAGE_REQUESTTIMEOUT",
        "chartroom only: limit for one call to Swift or S3, all its tries and pauses included (an upload gets 1s more per whole MiB); when it runs out, the request gets 503. After a call got no answer at all, calls fail at once with 503 for 5s; then one call tries again.",
    ),
    k(
        "storage.openstack.container",
        Str,
        "",
        "storage-openstack-container",
        "STORAGE_OPENSTACK_CONTAINER",
        "Swift container holding the charts.",
    ),
    k(
        "storage.openstack.prefix",
        Str,
        "",
        "storage-openstack-prefix",
        "STORAGE_OPENSTACK_PREFIX",
        "Object name prefix inside the container.",
    ),
    k(
        "storage.openstack.region",
        Str,
        "",
        "storage-openstack-region",
        "STORAGE_OPENSTACK_REGION",
        "Region of the object-store endpoint (Keystone auth).",
    ),
    k(
        "storage.openstack.cacert",
        Str,
        "",
        "storage-openstack-cacert",
        "STORAGE_OPENSTACK_CACERT",
        "PEM file of CA certificates for Swift and Keystone.",
    ),
    k(
        "storage.openstack.auth",
        Str,
        "auto",
        "storage-openstack-auth",
        "STORAGE_OPENSTACK_AUTH",
        "Swift auth protocol: auto (Keystone, OS_* variables) or v1 (ST_AUTH, ST_USER, ST_KEY).",
    ),
    k(
        "storage.openstack.keyfile",
        Str,
        "",
        "storage-openstack-keyfile",
        "STORAGE_OPENSTACK_KEYFILE",
        "File holding the Swift v1 key, read at every login (so it can be rotated); overrides ST_KEY.",
    ),
    k(
        "storage.openstack.passwordfile",
        Str,
        "",
        "storage-openstack-passwordfile",
        "STORAGE_OPENSTACK_PASSWORDFILE",
        "File holding the Keystone password, or the application credential secret when OS_APPLICATION_CREDENTIAL_ID or OS_APPLICATION_CREDENTIAL_NAME is set; read at every login (so it can be rotated); overrides OS_PASSWORD and OS_APPLICATION_CREDENTIAL_SECRET.",
    ),
    k(
        "storage.openstack.connecttimeout",
        Duration,
        "5s",
        "storage-openstack-connect-timeout",
        "STORAGE_OPENSTACK_CONNECTTIMEOUT",
        "chartroom only: limit for opening a connection to Swift or Keystone.",
    ),
    k(
        "storage.openstack.timeout",
        Duration,
        "20s",
        "storage-openstack-timeout",
        "STORAGE_OPENSTACK_TIMEOUT",
        "chartroom only: limit for an answer from Swift (an upload gets 1s more per MiB), and for a pause between two reads of a body.",
    ),
    k(
        "storage.openstack.retries",
        Int,
        "2",
        "storage-openstack-retries",
        "STORAGE_OPENSTACK_RETRIES",
        "chartroom only: further tries of a call that failed on a connection error, a timeout or a 5xx answer (0: none); waits 250ms, then doubles, with jitter.",
    ),
    k(
        "storage.amazon.bucket",
        Str,
        "",
        "storage-amazon-bucket",
        "STORAGE_AMAZON_BUCKET",
        "S3 bucket holding the charts (Amazon S3 or an S3-compatible server).",
    ),
    k(
        "storage.amazon.prefix",
        Str,
        "",
        "storage-amazon-prefix",
        "STORAGE_AMAZON_PREFIX",
        "Object key prefix inside the bucket.",
    ),
    k(
        "storage.amazon.region",
        Str,
        "",
        "storage-amazon-region",
        "STORAGE_AMAZON_REGION",
        "Region of the bucket, used to sign requests; when empty, AWS_REGION, then AWS_DEFAULT_REGION, then us-east-1 if an endpoint is set.",
    ),
    k(
        "storage.amazon.endpoint",
        Str,
        "",
        "storage-amazon-endpoint",
        "STORAGE_AMAZON_ENDPOINT",
        "URL of an S3-compatible server (http:// or https://; https when no scheme is given); empty: Amazon S3 at https://s3.<region>.amazonaws.com.",
    ),
    k(
        "storage.amazon.sse",
        Str,
        "",
        "storage-amazon-sse",
        "STORAGE_AMAZON_SSE",
        "Server-side encryption requested on every upload (x-amz-server-side-encryption), e.g. AES256 or aws:kms; empty: the bucket's default.",
    ),
    k(
        "storage.amazon.forcepathstyle",
        Bool,
        "true",
        "storage-amazon-force-path-style",
        "STORAGE_AMAZON_FORCE_PATH_STYLE",
        "Path-style addressing (<endpoint>/<bucket>/<key>); false: virtual-hosted style (<bucket>.<endpoint host>/<key>).",
    ),
    k(
        "storage.amazon.secretkeyfile",
        Str,
        "",
        "storage-amazon-secretkeyfile",
        "STORAGE_AMAZON_SECRETKEYFILE",
        "chartroom only: file holding the S3 secret access key (overrides AWS_SECRET_ACCESS_KEY); read at start and at every reload, and again when S3 rejects a signature, so it can be rotated.",
    ),
    k(
        "storage.amazon.connecttimeout",
        Duration,
        "5s",
        "storage-amazon-connect-timeout",
        "STORAGE_AMAZON_CONNECTTIMEOUT",
        "chartroom only: limit for opening a connection to S3.",
    ),
    k(
        "storage.amazon.timeout",
        Duration,
        "20s",
        "storage-amazon-timeout",
        "STORAGE_AMAZON_TIMEOUT",
        "chartroom only: limit for an answer from S3 (an upload gets 1s more per MiB), and for a pause between two reads of a body.",
    ),
    k(
        "storage.amazon.retries",
        Int,
        "2",
        "storage-amazon-retries",
        "STORAGE_AMAZON_RETRIES",
        "chartroom only: further tries of a call that failed on a connection error, a timeout or a 5xx answer such as 503 SlowDown (0: none); waits 250ms, then doubles, with jitter.",
    ),
    unsupported(k(
        "storage.google.bucket",
        Str,
        "",
        "storage-google-bucket",
        "STORAGE_GOOGLE_BUCKET",
        "Not supported by chartroom.",
    )),
    unsupported(k(
        "storage.google.prefix",
        Str,
        "",
        "storage-google-prefix",
        "STORAGE_GOOGLE_PREFIX",
        "Not supported by chartroom.",
    )),
    unsupported(k(
        "storage.microsoft.container",
        Str,
        "",
        "storage-microsoft-container",
        "STORAGE_MICROSOFT_CONTAINER",
        "Not supported by chartroom.",
    )),
    unsupported(k(
        "storage.microsoft.prefix",
        Str,
        "",
        "storage-microsoft-prefix",
        "STORAGE_MICROSOFT_PREFIX",
        "Not supported by chartroom.",
    )),
    unsupported(k(
        "storage.oracle.bucket",
        Str,
        "",
        "storage-oracle-bucket",
        "STORAGE_ORACLE_BUCKET",
        "Not supported by chartroom.",
    )),
    unsupported(k(
        "storage.oracle.prefix",
        Str,
        "",
        "storage-oracle-prefix",
        "STORAGE_ORACLE_PREFIX",
        "Not supported by chartroom.",
    )),
    unsupported(k(
        "storage.oracle.region",
        Str,
        "",
        "storage-oracle-region",
        "STORAGE_ORACLE_REGION",
        "Not supported by chartroom.",
    )),
    unsupported(k(
        "storage.oracle.compartmentid",
        Str,
        "",
        "storage-oracle-compartmentid",
        "STORAGE_ORACLE_COMPARTMENTID",
        "Not supported by chartroom.",
    )),
    unsupported(k(
        "storage.alibaba.bucket",
        Str,
        "",
        "storage-alibaba-bucket",
        "STORAGE_ALIBABA_BUCKET",
        "Not supported by chartroom.",
    )),
    unsupported(k(
        "storage.alibaba.prefix",
        Str,
        "",
        "storage-alibaba-prefix",
        "STORAGE_ALIBABA_PREFIX",
        "Not supported by chartroom.",
    )),
    unsupported(k(
        "storage.alibaba.endpoint",
        Str,
        "",
        "storage-alibaba-endpoint",
        "STORAGE_ALIBABA_ENDPOINT",
        "Not supported by chartroom.",
    )),
    unsupported(k(
        "storage.alibaba.sse",
        Str,
        "",
        "storage-alibaba-sse",
        "STORAGE_ALIBABA_SSE",
        "Not supported by chartroom.",
    )),
    unsupported(k(
        "storage.baidu.bucket",
        Str,
        "",
        "storage-baidu-bucket",
        "STORAGE_BAIDU_BUCKET",
        "Not supported by chartroom.",
    )),
    unsupported(k(
        "storage.baidu.prefix",
        Str,
        "",
        "storage-baidu-prefix",
        "STORAGE_BAIDU_PREFIX",
        "Not supported by chartroom.",
    )),
    unsupported(k(
        "storage.baidu.endpoint",
        Str,
        "",
        "storage-baidu-endpoint",
        "STORAGE_BAIDU_ENDPOINT",
        "Not supported by chartroom.",
    )),
    unsupported(k(
        "storage.etcd.endpoint",
        Str,
        "http://localhost:2379",
        "storage-etcd-endpoint",
        "STORAGE_ETCD_ENDPOINT",
        "Not supported by chartroom.",
    )),
    unsupported(k(
        "storage.etcd.cafile",
        Str,
        "",
        "storage-etcd-cafile",
        "STORAGE_ETCD_CAFILE",
        "Not supported by chartroom.",
    )),
    unsupported(k(
        "storage.etcd.certfile",
        Str,
        "",
        "storage-etcd-certfile",
        "STORAGE_ETCD_CERTFILE",
        "Not supported by chartroom.",
    )),
    unsupported(k(
        "storage.etcd.keyfile",
        Str,
        "",
        "storage-etcd-keyfile",
        "STORAGE_ETCD_KEYFILE",
        "Not supported by chartroom.",
    )),
    unsupported(k(
        "storage.etcd.prefix",
        Str,
        "",
        "storage-etcd-prefix",
        "STORAGE_ETCD_PREFIX",
        "Not supported by chartroom.",
    )),
    unsupported(k(
        "storage.tencent.bucket",
        Str,
        "",
        "storage-tencent-bucket",
        "STORAGE_TENCENT_BUCKET",
        "Not supported by chartroom.",
    )),
    unsupported(k(
        "storage.tencent.prefix",
        Str,
        "",
        "storage-tencent-prefix",
        "STORAGE_TENCENT_PREFIX",
        "Not supported by chartroom.",
    )),
    unsupported(k(
        "storage.tencent.endpoint",
        Str,
        "",
        "storage-tencent-endpoint",
        "STORAGE_TENCENT_ENDPOINT",
        "Not supported by chartroom.",
    )),
    // Index.
    k(
        "cacheinterval",
        Duration,
        "60s",
        "cache-interval",
        "CACHE_INTERVAL",
        "How often each repository's index is reconciled with storage (changes made directly in storage show up within this time); 0 turns it off.",
    ),
    k(
        "disablestatefiles",
        Bool,
        "false",
        "disable-statefiles",
        "DISABLE_STATEFILES",
        "Do not read or write the index state file (chartroom-state.json) in storage.",
    ),
    k(
        "json-index",
        Bool,
        "false",
        "json-index",
        "JSON_INDEX",
        "Serve index.yaml as JSON (Helm 3.13 and later read it).",
    ),
    k(
        "charturl",
        Str,
        "",
        "chart-url",
        "CHART_URL",
        "Absolute base URL for chart links in index.yaml, e.g. https://charts.example.org; relative links when empty.",
    ),
    k(
        "indexlimit",
        Int,
        "0",
        "index-limit",
        "INDEX_LIMIT",
        "How many packages are read from storage at once while indexing; 0 means the default (8).",
    ),
    k(
        "always-regenerate-chart-index",
        Bool,
        "false",
        "always-regenerate-chart-index",
        "ALWAYS_REGENERATE_CHART_INDEX",
        "Reconcile the index with storage on every index read (slow; for storage changed by others without a cache interval).",
    ),
    k(
        "genindex",
        Bool,
        "false",
        "gen-index",
        "GEN_INDEX",
        "Print the index of the root repository to standard output and exit.",
    ),
    // Uploads and API.
    k(
        "disableapi",
        Bool,
        "false",
        "disable-api",
        "DISABLE_API",
        "Turn off every /api route.",
    ),
    k(
        "disabledelete",
        Bool,
        "false",
        "disable-delete",
        "DISABLE_DELETE",
        "Turn off DELETE /api/charts/<name>/<version>.",
    ),
    k(
        "allowoverwrite",
        Bool,
        "false",
        "allow-overwrite",
        "ALLOW_OVERWRITE",
        "Let an upload replace an existing chart version.",
    ),
    k(
        "disableforceoverwrite",
        Bool,
        "false",
        "disable-force-overwrite",
        "DISABLE_FORCE_OVERWRITE",
        "Refuse ?force on uploads (no replacing of existing versions unless allowoverwrite).",
    ),
    k(
        "maxuploadsize",
        Int,
        "20971520",
        "max-upload-size",
        "MAX_UPLOAD_SIZE",
        "Largest request body accepted, in bytes.",
    ),
    k(
        "maxdecompressedchartsize",
        Int,
        "104857600",
        "max-decompressed-chart-size",
        "MAX_DECOMPRESSED_CHART_SIZE",
        "Largest a chart package may unpack to, in bytes, tar headers included (Helm's MaxDecompressedChartSize); a larger upload is refused with 400.",
    ),
    k(
        "maxdecompressedfilesize",
        Int,
        "5242880",
        "max-decompressed-file-size",
        "MAX_DECOMPRESSED_FILE_SIZE",
        "Largest file in a chart package, in bytes, tar extension headers (long names, PAX records) included (Helm's MaxDecompressedFileSize); parsed YAML may take 8 times this.",
    ),
    k(
        "maxstorageobjects",
        Int,
        "0",
        "max-storage-objects",
        "MAX_STORAGE_OBJECTS",
        "Most objects a repository may hold (0 = no limit).",
    ),
    k(
        "per-chart-limit",
        Int,
        "0",
        "per-chart-limit",
        "PER_CHART_LIMIT",
        "Most versions kept per chart; an upload beyond it removes the lowest version (0 = no limit).",
    ),
    k(
        "chartpostformfieldname",
        Str,
        "chart",
        "chart-post-form-field-name",
        "CHART_POST_FORM_FIELD_NAME",
        "Multipart form field that carries the chart package (chart is always accepted too).",
    ),
    k(
        "provpostformfieldname",
        Str,
        "prov",
        "prov-post-form-field-name",
        "PROV_POST_FORM_FIELD_NAME",
        "Multipart form field that carries the provenance file (prov is always accepted too).",
    ),
    k(
        "cors.alloworigin",
        Str,
        "",
        "cors-alloworigin",
        "CORS_ALLOW_ORIGIN",
        "Value of Access-Control-Allow-Origin on /api responses.",
    ),
    k(
        "artifact-hub-repo-id",
        Map,
        "",
        "artifact-hub-repo-id",
        "ARTIFACT_HUB_REPO_ID",
        "Artifact Hub repository ID served at artifacthub-repo.yml: ID for the root repository, or repo=ID; repeat the flag for several.",
    ),
    // Repositories.
    restart(k(
        "depth",
        Int,
        "0",
        "depth",
        "DEPTH",
        "Number of path segments naming a repository (multitenancy); 0 serves one repository.",
    )),
    restart(k(
        "depthdynamic",
        Bool,
        "false",
        "depth-dynamic",
        "DEPTH_DYNAMIC",
        "Let each request's path decide how many segments name the repository.",
    )),
    k(
        "maxtenants",
        Int,
        "10000",
        "max-tenants",
        "MAX_TENANTS",
        "chartroom only: most repositories whose index is kept in memory (with depth or depthdynamic). Beyond it the least recently used is dropped, empty ones first, and read again from its state file and a listing when next asked for; repositories that do not exist in storage are never kept. 0 = no limit.",
    ),
    // Auth.
    k(
        "basicauth.user",
        Str,
        "",
        "basic-auth-user",
        "BASIC_AUTH_USER",
        "HTTP basic auth user name.",
    ),
    k(
        "basicauth.pass",
        Str,
        "",
        "basic-auth-pass",
        "BASIC_AUTH_PASS",
        "HTTP basic auth password.",
    ),
    k(
        "basicauth.passfile",
        Str,
        "",
        "basic-auth-pass-file",
        "BASIC_AUTH_PASS_FILE",
        "File holding the basic auth password (re-read on reload); overrides basicauth.pass.",
    ),
    k(
        "authanonymousget",
        Bool,
        "false",
        "auth-anonymous-get",
        "AUTH_ANONYMOUS_GET",
        "Allow reads (GET and HEAD) without credentials.",
    ),
    k(
        "bearerauth",
        Bool,
        "false",
        "bearer-auth",
        "BEARER_AUTH",
        "Bearer-token (JWT) auth as ChartMuseum's: needs authrealm, authservice and authcertpath; takes precedence over basic auth.",
    ),
    k(
        "authrealm",
        Str,
        "",
        "auth-realm",
        "AUTH_REALM",
        "Token service URL sent as realm in the WWW-Authenticate header of a 401 (bearerauth).",
    ),
    k(
        "authservice",
        Str,
        "",
        "auth-service",
        "AUTH_SERVICE",
        "Service name sent in the WWW-Authenticate header of a 401 (bearerauth).",
    ),
    k(
        "authcertpath",
        Str,
        "",
        "auth-cert-path",
        "AUTH_CERT_PATH",
        "PEM file with the token service's public key or certificate: RSA (RS256 tokens) or EC P-256 (ES256 tokens); re-read on reload.",
    ),
    k(
        "authactionssearchpath",
        Str,
        "",
        "auth-actions-search-path",
        "AUTH_ACTIONS_SEARCH_PATH",
        "JMESPath expression finding a token's actions; $NAMESPACE and $ACCESS_ENTRY_TYPE are filled in. Empty: access[?name=='$NAMESPACE' && type=='$ACCESS_ENTRY_TYPE'].actions[]",
    ),
    k(
        "tls.cert",
        Str,
        "",
        "tls-cert",
        "TLS_CERT",
        "PEM certificate chain (server certificate first) for HTTPS on every listener; needs tls.key; re-read on reload.",
    ),
    k(
        "tls.key",
        Str,
        "",
        "tls-key",
        "TLS_KEY",
        "PEM private key of tls.cert (PKCS#8, SEC1 or PKCS#1; RSA, ECDSA or Ed25519); re-read on reload.",
    ),
    k(
        "tls.cacert",
        Str,
        "",
        "tls-ca-cert",
        "TLS_CA_CERT",
        "PEM CA certificate(s): every client must present a certificate signed by one (needs tls.cert and tls.key); re-read on reload.",
    ),
    unsupported(k(
        "cache.store",
        Str,
        "",
        "cache",
        "CACHE",
        "Not needed: chartroom keeps its index in memory and storage.",
    )),
    unsupported(k(
        "cache.redis.addr",
        Str,
        "",
        "cache-redis-addr",
        "CACHE_REDIS_ADDR",
        "Not needed by chartroom.",
    )),
    unsupported(k(
        "cache.redis.password",
        Str,
        "",
        "cache-redis-password",
        "CACHE_REDIS_PASSWORD",
        "Not needed by chartroom.",
    )),
    unsupported(k(
        "cache.redis.db",
        Int,
        "0",
        "cache-redis-db",
        "CACHE_REDIS_DB",
        "Not needed by chartroom.",
    )),
    // Cosmetic and deprecated ChartMuseum options.
    k(
        "enablemetrics",
        Bool,
        "false",
        "enable-metrics",
        "ENABLE_METRICS",
        "Serve Prometheus metrics at GET /metrics (ChartMuseum's chartmuseum_* series and chartroom_* series), without authentication and outside the context path, as ChartMuseum; OpenMetrics when the Accept header asks for it. Off: /metrics is 404.",
    ),
    restart(k(
        "metricslisten",
        Str,
        "",
        "metrics-listen",
        "METRICS_LISTEN",
        "Serve /metrics only on this address (host:port, e.g. 127.0.0.1:9180), bound by chartroom itself, and not on the API's listeners, so that it is not exposed with the API (chartroom's own key; needs enablemetrics). Empty: /metrics is served with the API, as ChartMuseum.",
    )),
    ignored(k(
        "disablemetrics",
        Bool,
        "false",
        "disable-metrics",
        "DISABLE_METRICS",
        "Deprecated in ChartMuseum; no effect.",
    )),
    ignored(k(
        "enforce-semver2",
        Bool,
        "false",
        "enforce-semver2",
        "ENFORCE_SEMVER2",
        "Deprecated in ChartMuseum; no effect.",
    )),
    ignored(k(
        "web-template-path",
        Str,
        "",
        "web-template-path",
        "WEB_TEMPLATE_PATH",
        "Accepted; chartroom serves its built-in welcome page.",
    )),
];

pub fn find(key: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.key == key)
}

pub fn find_flag(flag: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.flag == flag)
}

/// The `--help` section a key is listed under, from its name.
pub fn section(key: &Key) -> &'static str {
    let k = key.key;
    let backend = k.strip_prefix("storage.").and_then(|r| r.split_once('.'));
    match (k, backend) {
        (_, Some(("local", _))) => "Storage: local directory",
        (_, Some(("openstack", _))) => "Storage: OpenStack Swift",
        (_, Some(("amazon", _))) => "Storage: Amazon S3 and S3-compatible",
        (_, Some(_)) => "Storage: other ChartMuseum backends (not supported)",
        _ if k.starts_with("storage.") => "Storage",
        ("listen.host" | "port" | "workers" | "readtimeout" | "writetimeout", _) => "Server",
        ("shutdowngrace" | "contextpath" | "cors.alloworigin", _) => "Server",
        ("debug" | "logjson" | "loghealth" | "loglatencyinteger", _) => "Logging",
        ("enablemetrics" | "metricslisten", _) => "Metrics",
        ("maxuploadsize" | "maxdecompressedchartsize" | "maxdecompressedfilesize", _) => "Limits",
        ("maxstorageobjects" | "per-chart-limit" | "indexlimit" | "maxtenants", _) => "Limits",
        ("depth" | "depthdynamic", _) => "Repositories (multitenancy)",
        _ if k.starts_with("basicauth.") || k.starts_with("auth") || k == "bearerauth" => {
            "Authentication"
        }
        _ if k.starts_with("tls.") => "TLS",
        _ if k.starts_with("cache.") => "Cache (not supported)",
        _ if key.support == Support::Ignored => "Accepted for compatibility (no effect)",
        _ => "Charts and index",
    }
}
