//! Configuration: defaults < config file < environment < command line, all driven by the
//! table in [`schema`]. ChartMuseum's YAML keys, flags and environment variable names work
//! unchanged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub mod cli;
pub mod env_names;
pub mod example;
pub mod s3_providers;
pub mod schema;

use schema::{KEYS, Key, Kind, Support};

pub const DEFAULT_CONFIG_FILE: &str = "/etc/chartroom/chartroom.yaml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file not found: {0}")]
    FileNotFound(String),
    #[error("cannot read config file {file}: {message}")]
    Read { file: String, message: String },
    #[error("config file must have .yaml/.yml extension (or no extension): {0}")]
    Extension(String),
    #[error("{file}: invalid YAML: {message}")]
    Yaml { file: String, message: String },
    #[error("{origin}: unknown configuration key {key:?}{hint}")]
    UnknownKey {
        origin: String,
        key: String,
        /// "; did you mean ...?" when a known key is close.
        hint: String,
    },
    #[error("{origin}: invalid value {value:?} for {key} (expected {expected})")]
    BadValue {
        origin: String,
        key: String,
        value: String,
        expected: String,
    },
    #[error("{origin}: {key} is not supported by chartroom: {why}")]
    Unsupported {
        origin: String,
        key: String,
        why: String,
    },
    #[error("unknown command-line option {arg:?} (see --help){hint}")]
    UnknownFlag { arg: String, hint: String },
    #[error("option --{0} needs a value")]
    MissingValue(String),
    #[error("unexpected argument {0:?}")]
    Positional(String),
    #[error("{0}")]
    Invalid(String),
    /// A half-configured basic auth (the message names the key and where it was set).
    #[error("{0}")]
    Auth(String),
    /// TLS files (the origin is where the first TLS key was set).
    #[error("{origin}: {source}")]
    Tls {
        origin: String,
        source: crate::tls::TlsError,
    },
    /// Bearer auth settings or key file (the origin is where `bearerauth` was set).
    #[error("{origin}: {source}")]
    Bearer {
        origin: String,
        source: crate::auth::bearer::BearerError,
    },
}

/// A value together with where it came from, for error messages.
#[derive(Debug, Clone)]
struct Raw {
    value: String,
    origin: String,
}

/// What the command line asks for besides configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Serve,
    Help,
    /// `--help` of one subcommand.
    SubcommandHelp(String),
    /// `chartroom help KEY`, `--help-key KEY`.
    HelpKey(String),
    Version,
    GenConfigExample,
    GenManConfig,
    /// `check-config`; `storage`: also reach the storage.
    CheckConfig {
        storage: bool,
    },
    ShowConfig,
    /// `completions SHELL`.
    Completions(String),
}

// One value per loaded configuration: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageConfig {
    Local {
        rootdir: PathBuf,
    },
    OpenStack {
        container: String,
        prefix: String,
        region: String,
        cacert: String,
        auth: String,
        keyfile: String,
        passwordfile: String,
        connect_timeout: Duration,
        timeout: Duration,
        /// `storage.requesttimeout`: one call, all its tries included.
        request_timeout: Duration,
        retries: u32,
        /// The `ST_*` and `OS_*` variables of the environment the configuration was loaded in.
        env: CapturedEnv,
    },
    Amazon {
        /// `amazon`, or the S3-compatible cloud whose keys configured it (`alibaba`,
        /// `tencent`, `baidu`, `oracle`; see [`s3_providers`]).
        provider: String,
        bucket: String,
        prefix: String,
        /// The option, else `AWS_REGION`, `AWS_DEFAULT_REGION`, or `us-east-1` with an endpoint.
        region: String,
        endpoint: String,
        sse: String,
        force_path_style: bool,
        secret_key_file: String,
        connect_timeout: Duration,
        timeout: Duration,
        /// `storage.requesttimeout`: one call, all its tries included.
        request_timeout: Duration,
        retries: u32,
        /// The `AWS_*` variables of the environment the configuration was loaded in.
        env: CapturedEnv,
    },
    Microsoft {
        container: String,
        prefix: String,
        endpoint: String,
        access_key_file: String,
        sas_token_file: String,
        connect_timeout: Duration,
        timeout: Duration,
        /// `storage.requesttimeout`: one call, all its tries included.
        request_timeout: Duration,
        retries: u32,
        /// The `AZURE_STORAGE_*` variables of the environment the configuration was loaded in.
        env: CapturedEnv,
    },
    Etcd {
        /// Client URLs, tried in order.
        endpoints: Vec<String>,
        cafile: String,
        certfile: String,
        keyfile: String,
        prefix: String,
        connect_timeout: Duration,
        timeout: Duration,
        /// `storage.requesttimeout`: one call, all its tries included.
        request_timeout: Duration,
        retries: u32,
        max_request_bytes: u64,
    },
    Google {
        bucket: String,
        prefix: String,
        endpoint: String,
        connect_timeout: Duration,
        timeout: Duration,
        /// `storage.requesttimeout`: one call, all its tries included.
        request_timeout: Duration,
        retries: u32,
        /// The variables of [`env_names::GOOGLE`] in the environment the configuration was
        /// loaded in.
        env: CapturedEnv,
    },
}

/// Credentials and settings from environment variables, captured when the configuration is
/// loaded (names in [`env_names::SWIFT`] or [`env_names::S3`]); `Debug` shows only the
/// names.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct CapturedEnv(BTreeMap<String, String>);

impl CapturedEnv {
    pub fn capture(names: &[&str], env: &dyn Fn(&str) -> Option<String>) -> CapturedEnv {
        CapturedEnv(
            names
                .iter()
                .filter_map(|k| env(k).map(|v| (k.to_string(), v)))
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }
}

impl std::fmt::Debug for CapturedEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The config file that was read, if any.
    pub file: Option<PathBuf>,
    pub listen_host: String,
    pub port: u16,
    pub workers: usize,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub shutdown_grace: Duration,
    pub context_path: String,
    pub debug: bool,
    pub log_json: bool,
    pub log_health: bool,
    pub log_latency_integer: bool,
    /// `enablemetrics`: serve `GET /metrics`.
    pub enable_metrics: bool,
    /// `metricslisten`: serve `/metrics` only on this address, not with the API.
    pub metrics_listen: Option<std::net::SocketAddr>,
    pub storage: StorageConfig,
    pub cache_interval: Duration,
    pub disable_statefiles: bool,
    pub json_index: bool,
    pub chart_url: String,
    pub index_limit: usize,
    /// `downloadcachebytes`: memory for recently downloaded packages (0: no cache).
    pub download_cache_bytes: usize,
    pub always_regenerate: bool,
    pub gen_index: bool,
    pub disable_api: bool,
    pub disable_delete: bool,
    pub allow_overwrite: bool,
    pub disable_force_overwrite: bool,
    pub max_upload_size: usize,
    /// `maxdecompressedchartsize` and `maxdecompressedfilesize`.
    pub chart_limits: crate::chart::Limits,
    pub max_storage_objects: usize,
    pub per_chart_limit: usize,
    pub chart_field: String,
    pub prov_field: String,
    pub cors_allow_origin: String,
    pub artifact_hub_ids: BTreeMap<String, String>,
    pub depth: usize,
    pub depth_dynamic: bool,
    /// Most repositories kept in memory (0: no limit).
    pub max_tenants: usize,
    pub basic_user: String,
    pub basic_pass: String,
    pub anonymous_get: bool,
    /// HTTPS material (`tls.*`), read when the configuration was loaded.
    pub tls: Option<crate::tls::TlsSettings>,
    /// Bearer-token auth (`bearerauth`), its key read when the configuration was loaded.
    pub bearer: Option<crate::auth::bearer::BearerAuth>,
    /// Warnings found while loading (ignored options that were set), logged at start-up.
    pub warnings: Vec<String>,
}

impl Config {
    /// Values of keys that need a restart, for comparing an old and a new config on reload.
    pub fn restart_only(&self) -> Vec<(&'static str, String)> {
        vec![
            ("listen.host", self.listen_host.clone()),
            ("port", self.port.to_string()),
            ("workers", self.workers.to_string()),
            ("depth", self.depth.to_string()),
            ("depthdynamic", self.depth_dynamic.to_string()),
            (
                "metricslisten",
                self.metrics_listen
                    .map(|a| a.to_string())
                    .unwrap_or_default(),
            ),
        ]
    }
}

/// The parsed command line: configuration values plus what to do.
#[derive(Debug, Clone)]
pub struct Args {
    pub command: Command,
    pub config_file: Option<String>,
    pub(crate) flags: Vec<(&'static Key, String)>,
}

/// Parses the command line (without the program name): see [`cli`]. ChartMuseum's spellings
/// work: `--flag value`, `--flag=value`, bare `--flag` for booleans, Go-style `-flag value`,
/// `-c FILE`, and the subcommands.
pub fn parse_args(args: &[String]) -> Result<Args, ConfigError> {
    cli::parse(args)
}

fn flatten(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, serde_json::Value)>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let full = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                // Map-typed keys keep their mapping value whole.
                let is_map_key = schema::find(&full).is_some_and(|key| key.kind == Kind::Map);
                if v.is_object() && !is_map_key {
                    flatten(&full, v, out);
                } else {
                    out.push((full, v.clone()));
                }
            }
        }
        other => out.push((prefix.to_string(), other.clone())),
    }
}

fn scalar_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Reads a YAML config file into key → raw value.
fn read_file(path: &Path, raw: &mut BTreeMap<&'static str, Raw>) -> Result<(), ConfigError> {
    let shown = path.display().to_string();
    match path.extension().and_then(|e| e.to_str()) {
        None | Some("yaml") | Some("yml") => {}
        Some(_) => return Err(ConfigError::Extension(shown)),
    }
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ConfigError::FileNotFound(shown));
        }
        Err(e) => {
            return Err(ConfigError::Read {
                file: shown,
                message: e.to_string(),
            });
        }
    };
    let doc: serde_json::Value = if text.iter().all(|b| b.is_ascii_whitespace()) {
        serde_json::Value::Object(Default::default())
    } else {
        serde_norway::from_slice(&text).map_err(|e| ConfigError::Yaml {
            file: shown.clone(),
            message: e.to_string(),
        })?
    };
    if !(doc.is_object() || doc.is_null()) {
        return Err(ConfigError::Yaml {
            file: shown,
            message: "the top level must be a mapping of keys".into(),
        });
    }
    let mut pairs = Vec::new();
    flatten("", &doc, &mut pairs);
    for (key, value) in pairs {
        // Wikimedia's old packaging carried a typo'd key; accept it as ChartMuseum did.
        let key = if key == "disabldelete" {
            "disabledelete".to_string()
        } else {
            key
        };
        let def = schema::find(&key).ok_or_else(|| ConfigError::UnknownKey {
            origin: shown.clone(),
            key: key.clone(),
            hint: cli::closest(&key, KEYS.iter().map(|k| k.key))
                .map(|k| format!("; did you mean {k}?"))
                .unwrap_or_default(),
        })?;
        let text = if def.kind == Kind::Map {
            match &value {
                serde_json::Value::Object(m) => m
                    .iter()
                    .map(|(k, v)| format!("{k}={}", scalar_text(v)))
                    .collect::<Vec<_>>()
                    .join("\n"),
                other => scalar_text(other),
            }
        } else if value.is_object() || value.is_array() {
            return Err(ConfigError::BadValue {
                origin: shown.clone(),
                key,
                value: value.to_string(),
                expected: def.kind.name().to_string(),
            });
        } else {
            scalar_text(&value)
        };
        raw.insert(
            def.key,
            Raw {
                value: text,
                origin: format!("config file {shown}"),
            },
        );
    }
    Ok(())
}

/// Builds the configuration from the command line, the environment (`env` lookups) and the
/// config file (`--config`, `$CONFIG`, or `/etc/chartroom/chartroom.yaml` when it exists).
pub fn load(
    args: &Args,
    env: &dyn Fn(&str) -> Option<String>,
    default_file: Option<&Path>,
) -> Result<Config, ConfigError> {
    let (file, raw) = gather(args, env, default_file)?;
    Values {
        raw,
        warnings: Vec::new(),
    }
    .build(file, env)
}

/// One key's effective value and where it came from, for `chartroom show-config`.
#[derive(Debug, Clone)]
pub struct Effective {
    pub key: &'static Key,
    /// The value as given (map keys: `name=value` lines); secrets are not redacted here.
    pub value: String,
    /// `default`, `config file FILE`, `environment variable NAME` or `option --flag`.
    pub origin: String,
}

/// Every key's value and origin, as [`load`] would see them (call [`load`] to validate).
pub fn effective(
    args: &Args,
    env: &dyn Fn(&str) -> Option<String>,
    default_file: Option<&Path>,
) -> Result<(Option<PathBuf>, Vec<Effective>), ConfigError> {
    let (file, raw) = gather(args, env, default_file)?;
    let values = KEYS
        .iter()
        .map(|key| match raw.get(key.key) {
            Some(r) => Effective {
                key,
                value: r.value.clone(),
                origin: r.origin.clone(),
            },
            None => Effective {
                key,
                value: key.default.to_string(),
                origin: "default".to_string(),
            },
        })
        .collect();
    Ok((file, values))
}

/// The raw values of every layer above the defaults: file < environment < command line.
fn gather(
    args: &Args,
    env: &dyn Fn(&str) -> Option<String>,
    default_file: Option<&Path>,
) -> Result<(Option<PathBuf>, BTreeMap<&'static str, Raw>), ConfigError> {
    let mut raw: BTreeMap<&'static str, Raw> = BTreeMap::new();
    let file: Option<PathBuf> = match (&args.config_file, env("CONFIG")) {
        (Some(f), _) => Some(PathBuf::from(f)),
        (None, Some(f)) if !f.is_empty() => Some(PathBuf::from(f)),
        _ => default_file.filter(|p| p.exists()).map(Path::to_path_buf),
    };
    if let Some(f) = &file {
        read_file(f, &mut raw)?;
    }
    for key in KEYS {
        if let Some(v) = env(key.env) {
            raw.insert(
                key.key,
                Raw {
                    value: v,
                    origin: format!("environment variable {}", key.env),
                },
            );
        }
    }
    let mut map_flags: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for (key, value) in &args.flags {
        if key.kind == Kind::Map {
            map_flags.entry(key.key).or_default().push(value.clone());
        } else {
            raw.insert(
                key.key,
                Raw {
                    value: value.clone(),
                    origin: format!("option --{}", key.flag),
                },
            );
        }
    }
    for (key, values) in map_flags {
        let flag = schema::find(key).map(|k| k.flag).unwrap_or(key);
        raw.insert(
            key,
            Raw {
                value: values.join("\n"),
                origin: format!("option --{flag}"),
            },
        );
    }
    Ok((file, raw))
}

struct Values {
    raw: BTreeMap<&'static str, Raw>,
    warnings: Vec<String>,
}

impl Values {
    fn get(&mut self, key: &'static str) -> Result<(String, String), ConfigError> {
        let def = schema::find(key)
            .ok_or_else(|| ConfigError::Invalid(format!("internal: no schema for {key}")))?;
        Ok(match self.raw.get(key) {
            Some(r) => (r.value.clone(), r.origin.clone()),
            None => (def.default.to_string(), "default".to_string()),
        })
    }

    fn bad(key: &str, value: &str, origin: &str, expected: &str) -> ConfigError {
        ConfigError::BadValue {
            origin: origin.to_string(),
            key: key.to_string(),
            value: value.to_string(),
            expected: expected.to_string(),
        }
    }

    /// An optional `host:port` (empty: none).
    fn socket_addr(
        &mut self,
        key: &'static str,
    ) -> Result<Option<std::net::SocketAddr>, ConfigError> {
        let (v, origin) = self.get(key)?;
        let v = v.trim();
        if v.is_empty() {
            return Ok(None);
        }
        v.parse().map(Some).map_err(|_| {
            Self::bad(
                key,
                v,
                &origin,
                "an IP address and port, e.g. 127.0.0.1:9180",
            )
        })
    }

    fn string(&mut self, key: &'static str) -> Result<String, ConfigError> {
        Ok(self.get(key)?.0)
    }

    fn boolean(&mut self, key: &'static str) -> Result<bool, ConfigError> {
        let (v, origin) = self.get(key)?;
        parse_bool(&v).ok_or_else(|| Self::bad(key, &v, &origin, "true or false"))
    }

    fn int(&mut self, key: &'static str) -> Result<u64, ConfigError> {
        let (v, origin) = self.get(key)?;
        v.trim()
            .parse::<u64>()
            .map_err(|_| Self::bad(key, &v, &origin, "a non-negative whole number"))
    }

    fn positive_int(&mut self, key: &'static str) -> Result<u64, ConfigError> {
        let (v, origin) = self.get(key)?;
        v.trim()
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| Self::bad(key, &v, &origin, "a positive whole number"))
    }

    fn duration(&mut self, key: &'static str) -> Result<Duration, ConfigError> {
        let (v, origin) = self.get(key)?;
        parse_duration(&v)
            .ok_or_else(|| Self::bad(key, &v, &origin, "a duration such as 60s, 5m or 1h30m"))
    }

    fn nonzero_duration(&mut self, key: &'static str) -> Result<Duration, ConfigError> {
        let d = self.duration(key)?;
        if d.is_zero() {
            let (v, origin) = self.get(key)?;
            return Err(Self::bad(key, &v, &origin, "a duration above zero"));
        }
        Ok(d)
    }

    fn small_int(&mut self, key: &'static str, max: u32) -> Result<u32, ConfigError> {
        let n = self.int(key)?;
        match u32::try_from(n) {
            Ok(n) if n <= max => Ok(n),
            _ => {
                let (v, origin) = self.get(key)?;
                Err(Self::bad(
                    key,
                    &v,
                    &origin,
                    &format!("a whole number from 0 to {max}"),
                ))
            }
        }
    }

    fn map(&mut self, key: &'static str) -> Result<BTreeMap<String, String>, ConfigError> {
        let (v, _) = self.get(key)?;
        let mut out = BTreeMap::new();
        for item in v.lines().map(str::trim).filter(|l| !l.is_empty()) {
            match item.split_once('=') {
                Some((k, id)) => out.insert(k.to_string(), id.to_string()),
                None => out.insert(String::new(), item.to_string()),
            };
        }
        Ok(out)
    }

    fn check_support(&mut self) -> Result<(), ConfigError> {
        for key in KEYS {
            let Some(r) = self.raw.get(key.key) else {
                continue;
            };
            let is_default = match key.kind {
                Kind::Bool => parse_bool(&r.value) == parse_bool(key.default),
                _ => r.value == key.default || (r.value.is_empty() && key.default.is_empty()),
            };
            if is_default {
                continue;
            }
            match key.support {
                Support::Yes => {}
                Support::Ignored => self.warnings.push(format!(
                    "{}: {} is set but has no effect in chartroom ({})",
                    r.origin, key.key, key.help
                )),
                Support::No => {
                    return Err(ConfigError::Unsupported {
                        origin: r.origin.clone(),
                        key: key.key.to_string(),
                        why: key.help.to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The basic auth user and password: both empty (auth off) or both set. Anything in
    /// between (a user without a password, a password without a user, an empty or unreadable
    /// password file) is an error naming the key: auth must never be off by accident.
    fn basic_auth(&mut self) -> Result<(String, String), ConfigError> {
        let (user, user_origin) = self.get("basicauth.user")?;
        let (pass_file, file_origin) = self.get("basicauth.passfile")?;
        let (pass, pass_origin, pass_key) = if pass_file.is_empty() {
            let (p, o) = self.get("basicauth.pass")?;
            (p, o, "basicauth.pass")
        } else {
            let p = read_secret(&pass_file, "basicauth.passfile").map_err(|e| {
                ConfigError::Auth(format!(
                    "{file_origin}: basicauth.passfile: {}",
                    match e {
                        ConfigError::Read { message, .. } => {
                            format!("cannot read {pass_file}: {message}")
                        }
                        other => other.to_string(),
                    }
                ))
            })?;
            if p.is_empty() {
                return Err(ConfigError::Auth(format!(
                    "{file_origin}: basicauth.passfile: {pass_file} holds no password (an empty password would turn basic auth off)"
                )));
            }
            (p, file_origin, "basicauth.passfile")
        };
        match (user.is_empty(), pass.is_empty()) {
            (true, true) | (false, false) => Ok((user, pass)),
            (false, true) => Err(ConfigError::Auth(format!(
                "{user_origin}: basicauth.user is set but there is no password (set basicauth.pass or basicauth.passfile; a user alone would leave basic auth off)"
            ))),
            (true, false) => Err(ConfigError::Auth(format!(
                "{pass_origin}: {pass_key} is set but basicauth.user is empty (a password alone would leave basic auth off)"
            ))),
        }
    }

    /// The TLS material and the bearer auth key, read from their files (see [`crate::tls`]
    /// and [`crate::auth::bearer`]).
    #[allow(clippy::type_complexity)]
    fn tls_and_bearer(
        &mut self,
    ) -> Result<
        (
            Option<crate::tls::TlsSettings>,
            Option<crate::auth::bearer::BearerAuth>,
        ),
        ConfigError,
    > {
        let (cert, cert_o) = self.get("tls.cert")?;
        let (key, key_o) = self.get("tls.key")?;
        let (ca, ca_o) = self.get("tls.cacert")?;
        let origin = [(&cert, cert_o), (&key, key_o), (&ca, ca_o)]
            .into_iter()
            .find(|(v, _)| !v.is_empty())
            .map(|(_, o)| o)
            .unwrap_or_default();
        let tls = crate::tls::load(&cert, &key, &ca)
            .map_err(|source| ConfigError::Tls { origin, source })?;
        let bearer = if self.boolean("bearerauth")? {
            let (_, origin) = self.get("bearerauth")?;
            let bearer = Some(
                crate::auth::bearer::BearerAuth::load(
                    &self.string("authrealm")?,
                    &self.string("authservice")?,
                    &self.string("authcertpath")?,
                    &self.string("authactionssearchpath")?,
                )
                .map_err(|source| ConfigError::Bearer { origin, source })?,
            );
            let (user, user_origin) = self.get("basicauth.user")?;
            if !user.is_empty() {
                self.warnings.push(format!(
                    "{user_origin}: basicauth.user is set but bearerauth takes precedence: basic credentials are not accepted"
                ));
            }
            bearer
        } else {
            for k in [
                "authrealm",
                "authservice",
                "authcertpath",
                "authactionssearchpath",
            ] {
                let (v, o) = self.get(k)?;
                if !v.is_empty() {
                    self.warnings.push(format!(
                        "{o}: {k} is set but bearerauth is off, so it has no effect"
                    ));
                }
            }
            None
        };
        Ok((tls, bearer))
    }

    fn amazon(
        &mut self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<StorageConfig, ConfigError> {
        let bucket = self.string("storage.amazon.bucket")?;
        if bucket.is_empty() {
            return Err(ConfigError::Invalid(
                "Missing required flags(s): --storage-amazon-bucket".into(),
            ));
        }
        let env = CapturedEnv::capture(env_names::S3, env);
        let endpoint = self.string("storage.amazon.endpoint")?;
        let set = |k: &str| env.get(k).filter(|v| !v.is_empty());
        let region = Some(self.string("storage.amazon.region")?)
            .filter(|r| !r.is_empty())
            .or_else(|| set("AWS_REGION"))
            .or_else(|| set("AWS_DEFAULT_REGION"))
            // As ChartMuseum: an S3-compatible server without a region gets us-east-1.
            .or_else(|| (!endpoint.is_empty()).then(|| "us-east-1".to_string()))
            .ok_or_else(|| {
                ConfigError::Invalid("Missing required flags(s): --storage-amazon-region".into())
            })?;
        Ok(StorageConfig::Amazon {
            provider: "amazon".into(),
            bucket,
            prefix: self.string("storage.amazon.prefix")?,
            region,
            endpoint,
            sse: self.string("storage.amazon.sse")?,
            force_path_style: self.boolean("storage.amazon.forcepathstyle")?,
            secret_key_file: self.string("storage.amazon.secretkeyfile")?,
            connect_timeout: self.nonzero_duration("storage.amazon.connecttimeout")?,
            timeout: self.nonzero_duration("storage.amazon.timeout")?,
            request_timeout: self.nonzero_duration("storage.requesttimeout")?,
            retries: self.small_int("storage.amazon.retries", 10)?,
            env,
        })
    }

    /// An S3-compatible cloud configured with ChartMuseum's keys for it
    /// (`storage.<provider>.*`), as the S3 backend: the provider's S3 endpoint, region and
    /// addressing style, its credential variables read as the S3 ones. The S3 backend's own
    /// `storage.amazon.secretkeyfile`, timeouts and retries apply.
    fn s3_compatible(
        &mut self,
        p: s3_providers::Provider,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<StorageConfig, ConfigError> {
        let name = p.name;
        let key = |field: &str| -> Result<&'static str, ConfigError> {
            schema::find(&format!("storage.{name}.{field}"))
                .map(|k| k.key)
                .ok_or_else(|| ConfigError::Invalid(format!("no key storage.{name}.{field}")))
        };
        let bucket = self.string(key("bucket")?)?;
        if bucket.is_empty() {
            return Err(ConfigError::Invalid(format!(
                "Missing required flags(s): --storage-{name}-bucket"
            )));
        }
        let (target, sse) = if p == s3_providers::ORACLE {
            let t = s3_providers::oracle(
                &self.string("storage.oracle.namespace")?,
                &self.string("storage.oracle.region")?,
                &self.string("storage.oracle.endpoint")?,
            )
            .map_err(ConfigError::Invalid)?;
            (t, String::new())
        } else {
            let t = s3_providers::map_endpoint(p, &self.string(key("endpoint")?)?);
            let sse = if p == s3_providers::ALIBABA {
                match self.string("storage.alibaba.sse")?.as_str() {
                    "KMS" => "aws:kms".to_string(),
                    other => other.to_string(),
                }
            } else {
                String::new()
            };
            (t, sse)
        };
        let secret_key_file = self.string("storage.amazon.secretkeyfile")?;
        let [id_var, secret_var] = p.credentials;
        let set = |k: &str| env(k).filter(|v| !v.is_empty());
        if set(id_var).is_none() || (set(secret_var).is_none() && secret_key_file.is_empty()) {
            return Err(ConfigError::Invalid(format!(
                "no credentials for storage.backend {name}: set {id_var} and {secret_var}"
            )));
        }
        // The provider's variables, read by the S3 backend under the S3 names.
        let mapped = |k: &str| match k {
            "AWS_ACCESS_KEY_ID" => set(id_var),
            "AWS_SECRET_ACCESS_KEY" => set(secret_var),
            "AWS_CA_BUNDLE" => set("AWS_CA_BUNDLE"),
            _ => None,
        };
        Ok(StorageConfig::Amazon {
            provider: name.to_string(),
            bucket,
            prefix: self.string(key("prefix")?)?,
            region: target.region,
            endpoint: target.endpoint,
            sse,
            force_path_style: target.path_style,
            secret_key_file,
            connect_timeout: self.nonzero_duration("storage.amazon.connecttimeout")?,
            timeout: self.nonzero_duration("storage.amazon.timeout")?,
            request_timeout: self.nonzero_duration("storage.requesttimeout")?,
            retries: self.small_int("storage.amazon.retries", 10)?,
            env: CapturedEnv::capture(env_names::S3, &mapped),
        })
    }

    fn microsoft(
        &mut self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<StorageConfig, ConfigError> {
        let container = self.string("storage.microsoft.container")?;
        if container.is_empty() {
            return Err(ConfigError::Invalid(
                "Missing required flags(s): --storage-microsoft-container".into(),
            ));
        }
        let access_key_file = self.string("storage.microsoft.accesskeyfile")?;
        let sas_token_file = self.string("storage.microsoft.sastokenfile")?;
        if !access_key_file.is_empty() && !sas_token_file.is_empty() {
            return Err(ConfigError::Invalid(
                "storage.microsoft.accesskeyfile and storage.microsoft.sastokenfile are both set: set one".into(),
            ));
        }
        Ok(StorageConfig::Microsoft {
            container,
            prefix: self.string("storage.microsoft.prefix")?,
            endpoint: self.string("storage.microsoft.endpoint")?,
            access_key_file,
            sas_token_file,
            connect_timeout: self.nonzero_duration("storage.microsoft.connecttimeout")?,
            timeout: self.nonzero_duration("storage.microsoft.timeout")?,
            request_timeout: self.nonzero_duration("storage.requesttimeout")?,
            retries: self.small_int("storage.microsoft.retries", 10)?,
            env: CapturedEnv::capture(env_names::AZURE, env),
        })
    }

    fn etcd(&mut self) -> Result<StorageConfig, ConfigError> {
        let endpoints: Vec<String> = self
            .string("storage.etcd.endpoint")?
            .split(',')
            .map(|e| e.trim().to_string())
            .filter(|e| !e.is_empty())
            .collect();
        if endpoints.is_empty() {
            return Err(ConfigError::Invalid(
                "Missing required flags(s): --storage-etcd-endpoint".into(),
            ));
        }
        let certfile = self.string("storage.etcd.certfile")?;
        let keyfile = self.string("storage.etcd.keyfile")?;
        if certfile.is_empty() != keyfile.is_empty() {
            return Err(ConfigError::Invalid(
                "storage.etcd.certfile and storage.etcd.keyfile go together: set both or neither"
                    .into(),
            ));
        }
        Ok(StorageConfig::Etcd {
            endpoints,
            cafile: self.string("storage.etcd.cafile")?,
            certfile,
            keyfile,
            prefix: self.string("storage.etcd.prefix")?,
            connect_timeout: self.nonzero_duration("storage.etcd.connecttimeout")?,
            timeout: self.nonzero_duration("storage.etcd.timeout")?,
            request_timeout: self.nonzero_duration("storage.requesttimeout")?,
            retries: self.small_int("storage.etcd.retries", 10)?,
            max_request_bytes: self.int("storage.etcd.maxrequestbytes")?,
        })
    }

    fn google(
        &mut self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<StorageConfig, ConfigError> {
        let bucket = self.string("storage.google.bucket")?;
        if bucket.is_empty() {
            return Err(ConfigError::Invalid(
                "Missing required flags(s): --storage-google-bucket".into(),
            ));
        }
        Ok(StorageConfig::Google {
            bucket,
            prefix: self.string("storage.google.prefix")?,
            endpoint: self.string("storage.google.endpoint")?,
            connect_timeout: self.nonzero_duration("storage.google.connecttimeout")?,
            timeout: self.nonzero_duration("storage.google.timeout")?,
            request_timeout: self.nonzero_duration("storage.requesttimeout")?,
            retries: self.small_int("storage.google.retries", 10)?,
            env: CapturedEnv::capture(env_names::GOOGLE, env),
        })
    }

    fn build(
        mut self,
        file: Option<PathBuf>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        self.check_support()?;
        let backend = self.string("storage.backend")?.to_lowercase();
        let storage = match backend.as_str() {
            "local" => {
                let dir = self.string("storage.local.rootdir")?;
                if dir.is_empty() {
                    return Err(ConfigError::Invalid(
                        "Missing required flags(s): --storage-local-rootdir".into(),
                    ));
                }
                StorageConfig::Local {
                    rootdir: PathBuf::from(dir),
                }
            }
            "openstack" => {
                let container = self.string("storage.openstack.container")?;
                if container.is_empty() {
                    return Err(ConfigError::Invalid(
                        "Missing required flags(s): --storage-openstack-container".into(),
                    ));
                }
                let auth = self.string("storage.openstack.auth")?.to_lowercase();
                if auth != "auto" && auth != "v1" {
                    return Err(ConfigError::Invalid(format!(
                        "Unsupported OpenStack auth protocol: {auth} (storage.openstack.auth: auto or v1)"
                    )));
                }
                let region = self.string("storage.openstack.region")?;
                let env = CapturedEnv::capture(env_names::SWIFT, env);
                if auth == "auto"
                    && region.is_empty()
                    && env.get("OS_REGION_NAME").unwrap_or_default().is_empty()
                {
                    return Err(ConfigError::Invalid(
                        "Missing required flags(s): --storage-openstack-region".into(),
                    ));
                }
                StorageConfig::OpenStack {
                    container,
                    prefix: self.string("storage.openstack.prefix")?,
                    region,
                    cacert: self.string("storage.openstack.cacert")?,
                    auth,
                    keyfile: self.string("storage.openstack.keyfile")?,
                    passwordfile: self.string("storage.openstack.passwordfile")?,
                    connect_timeout: self.nonzero_duration("storage.openstack.connecttimeout")?,
                    timeout: self.nonzero_duration("storage.openstack.timeout")?,
                    request_timeout: self.nonzero_duration("storage.requesttimeout")?,
                    retries: self.small_int("storage.openstack.retries", 10)?,
                    env,
                }
            }
            "amazon" => self.amazon(env)?,
            "microsoft" => self.microsoft(env)?,
            "etcd" => self.etcd()?,
            "google" => self.google(env)?,
            "alibaba" => self.s3_compatible(s3_providers::ALIBABA, env)?,
            "tencent" => self.s3_compatible(s3_providers::TENCENT, env)?,
            "baidu" => self.s3_compatible(s3_providers::BAIDU, env)?,
            "oracle" => self.s3_compatible(s3_providers::ORACLE, env)?,
            "" => {
                return Err(ConfigError::Invalid(
                    "Missing required flags(s): --storage".into(),
                ));
            }
            other => {
                return Err(ConfigError::Invalid(format!(
                    "Unsupported storage backend: {other} (storage.backend: chartroom supports local, openstack, amazon, google, microsoft, etcd, alibaba, tencent, baidu and oracle)"
                )));
            }
        };
        let port = self.int("port")?;
        let port = u16::try_from(port).map_err(|_| {
            let (v, o) = self.get("port").unwrap_or_default();
            Self::bad("port", &v, &o, "a port number 0-65535")
        })?;
        let mut context_path = self
            .string("contextpath")?
            .trim_end_matches('/')
            .to_string();
        if !context_path.is_empty() && !context_path.starts_with('/') {
            context_path.insert(0, '/');
        }
        let (basic_user, basic_pass) = self.basic_auth()?;
        let (tls, bearer) = self.tls_and_bearer()?;
        let workers = (self.int("workers")? as usize).max(1);
        let chart_url = self.string("charturl")?.trim_end_matches('/').to_string();
        let cfg = Config {
            file,
            listen_host: self.string("listen.host")?,
            port,
            workers,
            read_timeout: Duration::from_secs(self.int("readtimeout")?),
            write_timeout: Duration::from_secs(self.int("writetimeout")?),
            shutdown_grace: self.duration("shutdowngrace")?,
            context_path,
            debug: self.boolean("debug")?,
            log_json: self.boolean("logjson")?,
            log_health: self.boolean("loghealth")?,
            log_latency_integer: self.boolean("loglatencyinteger")?,
            enable_metrics: self.boolean("enablemetrics")?,
            metrics_listen: self.socket_addr("metricslisten")?,
            storage,
            cache_interval: self.duration("cacheinterval")?,
            disable_statefiles: self.boolean("disablestatefiles")?,
            json_index: self.boolean("json-index")?,
            chart_url,
            index_limit: self.int("indexlimit")? as usize,
            download_cache_bytes: self.int("downloadcachebytes")? as usize,
            always_regenerate: self.boolean("always-regenerate-chart-index")?,
            gen_index: self.boolean("genindex")?,
            disable_api: self.boolean("disableapi")?,
            disable_delete: self.boolean("disabledelete")?,
            allow_overwrite: self.boolean("allowoverwrite")?,
            disable_force_overwrite: self.boolean("disableforceoverwrite")?,
            max_upload_size: self.int("maxuploadsize")? as usize,
            chart_limits: crate::chart::Limits {
                max_chart_size: self.positive_int("maxdecompressedchartsize")?,
                max_file_size: self.positive_int("maxdecompressedfilesize")?,
            },
            max_storage_objects: self.int("maxstorageobjects")? as usize,
            per_chart_limit: self.int("per-chart-limit")? as usize,
            chart_field: self.string("chartpostformfieldname")?,
            prov_field: self.string("provpostformfieldname")?,
            cors_allow_origin: self.string("cors.alloworigin")?,
            artifact_hub_ids: self.map("artifact-hub-repo-id")?,
            depth: self.int("depth")? as usize,
            depth_dynamic: self.boolean("depthdynamic")?,
            max_tenants: self.int("maxtenants")? as usize,
            basic_user,
            basic_pass,
            anonymous_get: self.boolean("authanonymousget")?,
            tls,
            bearer,
            warnings: Vec::new(),
        };
        // Validate durations and timestamps that are accepted only for compatibility.
        self.duration("storage.timestamptolerance")?;
        self.nonzero_duration("storage.requesttimeout")?;
        Ok(Config {
            warnings: self.warnings,
            ..cfg
        })
    }
}

/// Reads a secret from a file, without its trailing newline.
pub fn read_secret(path: &str, key: &str) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
        .map_err(|e| ConfigError::Read {
            file: format!("{path} (from {key})"),
            message: e.to_string(),
        })
}

pub fn parse_bool(v: &str) -> Option<bool> {
    match v.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" | "yes" | "on" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

/// Go `time.ParseDuration` syntax (`1h30m`, `500ms`, `2.5s`), plus a bare number of seconds.
pub fn parse_duration(v: &str) -> Option<Duration> {
    let v = v.trim();
    if v.is_empty() {
        return None;
    }
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let mut total = 0f64;
    let mut rest = v;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += n * scale;
    }
    // A number too large for a Duration is an invalid value, not a panic.
    Duration::try_from_secs_f64(total).ok()
}

impl Args {
    /// The configuration values given on the command line, by key.
    pub fn flag_values(&self) -> Vec<(&'static str, String)> {
        self.flags.iter().map(|(k, v)| (k.key, v.clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Args {
        parse_args(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn defaults() {
        let c = load(&args(&[]), &no_env, None).unwrap();
        assert_eq!(c.port, 8080);
        assert_eq!(c.listen_host, "127.0.0.1");
        assert_eq!(c.cache_interval, Duration::from_secs(60));
        assert_eq!(c.max_upload_size, 20_971_520);
        assert_eq!(
            c.storage,
            StorageConfig::Local {
                rootdir: "./chartstorage".into()
            }
        );
    }

    #[test]
    fn precedence_flag_over_env_over_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.yaml");
        std::fs::write(
            &f,
            "port: 1000\nstorage:\n  backend: local\n  local:\n    rootdir: /x\nbasicauth: {user: u, pass: p}\nstorage.timestamptolerance: 1s\n",
        )
        .unwrap();
        let fs = f.to_str().unwrap();
        let env = |k: &str| (k == "PORT").then(|| "2000".to_string());
        let c = load(&args(&["--config", fs]), &no_env, None).unwrap();
        assert_eq!(c.port, 1000);
        assert_eq!(c.basic_user, "u");
        let c = load(&args(&["--config", fs]), &env, None).unwrap();
        assert_eq!(c.port, 2000);
        let c = load(&args(&["--config", fs, "--port=3000"]), &env, None).unwrap();
        assert_eq!(c.port, 3000);
    }

    #[test]
    fn errors_name_key_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.yaml");
        std::fs::write(&f, "prot: 1\n").unwrap();
        let e = load(&args(&["-c", f.to_str().unwrap()]), &no_env, None).unwrap_err();
        assert!(
            e.to_string().contains("prot") && e.to_string().contains("c.yaml"),
            "{e}"
        );
        std::fs::write(&f, "port: banana\n").unwrap();
        let e = load(&args(&["-c", f.to_str().unwrap()]), &no_env, None).unwrap_err();
        assert!(
            e.to_string().contains("port") && e.to_string().contains("c.yaml"),
            "{e}"
        );
        let e = load(&args(&["-c", "/nonexistent.yaml"]), &no_env, None).unwrap_err();
        assert_eq!(e.to_string(), "config file not found: /nonexistent.yaml");
        let e = load(&args(&["--storage", "garage"]), &no_env, None).unwrap_err();
        assert!(
            e.to_string()
                .contains("Unsupported storage backend: garage")
        );
        let e = load(&args(&["--tls-cert", "x.pem"]), &no_env, None).unwrap_err();
        assert!(e.to_string().contains("tls.cert"));
        assert!(parse_args(&["--nope".to_string()]).is_err());
    }

    #[test]
    fn openstack_settings_and_credentials() {
        let env = |k: &str| match k {
            "ST_AUTH" => Some("http://127.0.0.1:8080/auth/v1.0".to_string()),
            "ST_KEY" => Some("sekrit".to_string()),
            "UNRELATED" => Some("x".to_string()),
            _ => None,
        };
        let c = load(
            &args(&[
                "--storage=openstack",
                "--storage-openstack-container=charts",
                "--storage-openstack-auth=V1",
                "--storage-openstack-keyfile=/run/key",
            ]),
            &env,
            None,
        )
        .unwrap();
        let StorageConfig::OpenStack {
            container,
            auth,
            keyfile,
            env: captured,
            ..
        } = &c.storage
        else {
            panic!("{:?}", c.storage)
        };
        assert_eq!((container.as_str(), auth.as_str()), ("charts", "v1"));
        assert_eq!(keyfile, "/run/key");
        assert_eq!(captured.get("ST_KEY").as_deref(), Some("sekrit"));
        let StorageConfig::OpenStack {
            connect_timeout,
            timeout,
            retries,
            ..
        } = &c.storage
        else {
            unreachable!()
        };
        assert_eq!(
            (*connect_timeout, *timeout, *retries),
            (Duration::from_secs(5), Duration::from_secs(20), 2)
        );
        let tuned = load(
            &args(&[
                "--storage=openstack",
                "--storage-openstack-container=charts",
                "--storage-openstack-auth=v1",
                "--storage-openstack-timeout=1m",
                "--storage-openstack-retries=0",
            ]),
            &env,
            None,
        )
        .unwrap();
        let StorageConfig::OpenStack {
            timeout, retries, ..
        } = &tuned.storage
        else {
            unreachable!()
        };
        assert_eq!((*timeout, *retries), (Duration::from_secs(60), 0));
        let StorageConfig::OpenStack {
            request_timeout, ..
        } = &c.storage
        else {
            unreachable!()
        };
        assert_eq!(*request_timeout, Duration::from_secs(30), "at most 30 s");
        for bad in [
            "--storage-request-timeout=0",
            "--storage-request-timeout=forever",
            "--storage-openstack-connect-timeout=0",
            "--storage-openstack-retries=11",
            "--storage-openstack-retries=-1",
        ] {
            let e = load(
                &args(&[
                    "--storage=openstack",
                    "--storage-openstack-container=charts",
                    "--storage-openstack-auth=v1",
                    bad,
                ]),
                &env,
                None,
            )
            .unwrap_err()
            .to_string();
            assert!(
                e.contains("storage.openstack.") || e.contains("storage.requesttimeout"),
                "{bad}: {e}"
            );
        }
        assert_eq!(captured.get("UNRELATED"), None);
        let shown = format!("{c:?}");
        assert!(
            shown.contains("ST_KEY") && !shown.contains("sekrit"),
            "{shown}"
        );
        // Keystone needs a region, from the option or OS_REGION_NAME.
        let e = load(
            &args(&["--storage=openstack", "--storage-openstack-container=c"]),
            &no_env,
            None,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Missing required flags(s): --storage-openstack-region"
        );
        let region = |k: &str| (k == "OS_REGION_NAME").then(|| "RegionOne".to_string());
        assert!(
            load(
                &args(&["--storage=openstack", "--storage-openstack-container=c"]),
                &region,
                None,
            )
            .is_ok()
        );
        let e = load(
            &args(&[
                "--storage=openstack",
                "--storage-openstack-container=c",
                "--storage-openstack-auth=v2",
            ]),
            &no_env,
            None,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Unsupported OpenStack auth protocol: v2 (storage.openstack.auth: auto or v1)"
        );
    }

    #[test]
    fn amazon_settings_and_credentials() {
        let e = load(&args(&["--storage=amazon"]), &no_env, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Missing required flags(s): --storage-amazon-bucket"
        );
        let bucket = ["--storage=amazon", "--storage-amazon-bucket=charts"];
        let e = load(&args(&bucket), &no_env, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Missing required flags(s): --storage-amazon-region"
        );
        let region_of = |c: &Config| match &c.storage {
            StorageConfig::Amazon { region, .. } => region.clone(),
            other => panic!("{other:?}"),
        };
        let env = |k: &str| match k {
            "AWS_DEFAULT_REGION" => Some("eu-west-1".to_string()),
            "AWS_SECRET_ACCESS_KEY" => Some("sekrit".to_string()),
            _ => None,
        };
        let c = load(&args(&bucket), &env, None).unwrap();
        assert_eq!(region_of(&c), "eu-west-1");
        let shown = format!("{c:?}");
        assert!(
            shown.contains("AWS_SECRET_ACCESS_KEY") && !shown.contains("sekrit"),
            "{shown}"
        );
        let with_region = |k: &str| (k == "AWS_REGION").then(|| "ap-south-1".to_string());
        let c = load(&args(&bucket), &with_region, None).unwrap();
        assert_eq!(region_of(&c), "ap-south-1");
        let mut endpoint = bucket.to_vec();
        endpoint.push("--storage-amazon-endpoint=http://127.0.0.1:9000");
        let c = load(&args(&endpoint), &no_env, None).unwrap();
        assert_eq!(
            region_of(&c),
            "us-east-1",
            "as ChartMuseum with an endpoint"
        );
        endpoint.push("--storage-amazon-region=eu-central-1");
        let c = load(&args(&endpoint), &with_region, None).unwrap();
        assert_eq!(region_of(&c), "eu-central-1", "the option wins");
        let StorageConfig::Amazon {
            force_path_style,
            connect_timeout,
            timeout,
            retries,
            ..
        } = &c.storage
        else {
            unreachable!()
        };
        assert!(*force_path_style, "ChartMuseum's default");
        assert_eq!(
            (*connect_timeout, *timeout, *retries),
            (Duration::from_secs(5), Duration::from_secs(20), 2)
        );
        for bad in [
            "--storage-amazon-timeout=0s",
            "--storage-amazon-retries=11",
            "--storage-amazon-force-path-style=maybe",
        ] {
            let mut a = endpoint.clone();
            a.push(bad);
            let e = load(&args(&a), &no_env, None).unwrap_err().to_string();
            assert!(e.contains("storage.amazon."), "{bad}: {e}");
        }
    }

    #[test]
    fn durations_and_maps() {
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration("99999999999999999999999h"), None);
        assert_eq!(parse_duration("1.5.5s"), None);
        let c = load(
            &args(&[
                "--artifact-hub-repo-id",
                "root",
                "--artifact-hub-repo-id",
                "org=x",
            ]),
            &no_env,
            None,
        )
        .unwrap();
        assert_eq!(c.artifact_hub_ids.get(""), Some(&"root".to_string()));
        assert_eq!(c.artifact_hub_ids.get("org"), Some(&"x".to_string()));
    }
}
