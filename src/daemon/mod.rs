//! The daemon shell around the API: listeners, connections, signals (HUP reloads storage
//! settings, TERM/INT stop gracefully), background index refresh and state-file writes, and
//! systemd notifications.

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Notify, watch};

pub mod listen;
pub mod notify;
pub mod stall;

use crate::api::{App, HttpSettings, repo_settings};
use crate::config::{self, Args, Config, ConfigError, StorageConfig};
use crate::log;
use crate::repository::Registry;
use crate::storage::azure::AzureStorage;
use crate::storage::s3::S3Storage;
use crate::storage::swift::SwiftStorage;
use crate::storage::{LocalStorage, Storage, StorageError};
use listen::Listener;
use notify::Notifier;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    // Not `#[from]`, which would also make the inner error the source: `{:#}` (main.rs) would
    // then print the message twice.
    #[error("storage: {0}")]
    Storage(StorageError),
    #[error(transparent)]
    Listen(#[from] listen::ListenError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl From<StorageError> for DaemonError {
    fn from(e: StorageError) -> DaemonError {
        DaemonError::Storage(e)
    }
}

/// Builds the storage backend a configuration names,
/// with the download cache (`downloadcachebytes`) in front of it.
pub fn build_storage(cfg: &Config) -> Result<Arc<dyn Storage>, StorageError> {
    let backend: Arc<dyn Storage> = match &cfg.storage {
        StorageConfig::Local { rootdir } => Arc::new(LocalStorage::new(rootdir)?),
        StorageConfig::OpenStack { .. } => Arc::new(SwiftStorage::from_config(&cfg.storage)?),
        StorageConfig::Amazon { .. } => Arc::new(S3Storage::from_config(&cfg.storage)?),
        StorageConfig::Microsoft { .. } => Arc::new(AzureStorage::from_config(&cfg.storage)?),
        StorageConfig::Etcd { .. } => Arc::new(crate::storage::etcd::EtcdStorage::from_config(
            &cfg.storage,
        )?),
        StorageConfig::Google { .. } => Arc::new(
            crate::storage::google::GoogleStorage::from_config(&cfg.storage)?,
        ),
    };
    Ok(crate::storage::cached::cached(
        backend,
        cfg.download_cache_bytes,
    ))
}

/// Builds a registry and checks it works: the storage can be listed and, for a single
/// repository, its index loads.
pub async fn build_registry(cfg: &Config) -> Result<Registry, StorageError> {
    build_registry_with(cfg, repo_settings(cfg), Arc::default()).await
}

/// The storage is checked through the registry, so that the check counts in the metrics.
async fn build_registry_with(
    cfg: &Config,
    settings: crate::repository::RepoSettings,
    meter: Arc<crate::metrics::StoreMeter>,
) -> Result<Registry, StorageError> {
    let storage = build_storage(cfg)?;
    let registry = Registry::with_meter(storage, settings, meter);
    registry.storage.check().await?;
    if cfg.depth == 0 {
        registry.repo("").await?;
    }
    Ok(registry)
}

/// Loads the configuration the way start-up does: command line, environment, and the file.
pub fn load_config(args: &Args) -> Result<Config, ConfigError> {
    let env = |k: &str| std::env::var(k).ok();
    config::load(args, &env, Some(Path::new(config::DEFAULT_CONFIG_FILE)))
}

fn status_line(app: &App) -> String {
    let (repos, charts, versions) = app.registry.load().totals();
    format!("serving {versions} chart versions of {charts} charts in {repos} repositories")
}

struct Shared {
    app: Arc<App>,
    args: Args,
    notifier: Notifier,
    shutdown: watch::Sender<bool>,
    connections: AtomicUsize,
    idle: Notify,
}

/// Runs the server until SIGTERM or SIGINT.
pub async fn run(args: Args, cfg: Config) -> Result<(), DaemonError> {
    log::configure(cfg.debug, cfg.log_json);
    for w in &cfg.warnings {
        warn!(w.as_str());
    }
    let notifier = Notifier::from_env();
    // Signal handlers first: a SIGHUP that arrives while the index loads must not kill the
    // process (the default action), and SIGTERM must be able to cut a long load short.
    // tokio's signal streams, one per signal, each awaited in the `select!`s below. They are
    // built on signal-hook-registry (the handler registry of the signal-hook family), so
    // signal-hook-tokio would add a second layer over the same handlers and merge the three
    // signals into one stream to be told apart again.
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let listeners = match listen::inherited()? {
        Some(l) => l,
        None => vec![(
            listen::bind(&cfg.listen_host, cfg.port).await?,
            String::new(),
        )],
    };
    let metrics_listener = crate::metrics::listen::bind(cfg.metrics_listen).await?;
    notifier.status(&format!("loading index from {}", describe_storage(&cfg)));
    let settings = repo_settings(&cfg);
    let progress = settings.progress.clone();
    let loading = build_registry_with(&cfg, settings, Arc::default());
    tokio::pin!(loading);
    // A long first load (no state file, many packages) reports how far it got, every second.
    let mut report = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    let registry = loop {
        tokio::select! {
            r = &mut loading => break Some(r?),
            _ = report.tick() => {
                let read = progress.read.load(Ordering::Relaxed);
                let total = progress.to_read.load(Ordering::Relaxed);
                notifier.status(&format!(
                    "loading index from {}: read {read} of {total} charts",
                    describe_storage(&cfg)
                ));
            }
            _ = term.recv() => break None,
            _ = int.recv() => break None,
        }
    };
    let Some(registry) = registry else {
        info!("stopped while loading the index");
        notifier.stopping();
        return Ok(());
    };
    let app = Arc::new(App::new(&cfg, registry));
    let (shutdown, _) = watch::channel(false);
    let shared = Arc::new(Shared {
        app: app.clone(),
        args,
        notifier,
        shutdown,
        connections: AtomicUsize::new(0),
        idle: Notify::new(),
    });
    let mut accepting = Vec::new();
    for (l, name) in listeners {
        let on = if name.is_empty() {
            l.describe()
        } else {
            format!("{} ({name})", l.describe())
        };
        let scheme = app
            .http
            .load()
            .cfg
            .tls
            .as_ref()
            .map_or("http".to_string(), |t| t.describe());
        info!("listening", "on" => &on, "scheme" => &scheme,
            "storage" => &app.registry.load().storage.describe());
        accepting.push(tokio::spawn(accept_loop(shared.clone(), l)));
    }
    if let Some(l) = metrics_listener {
        crate::metrics::listen::spawn(app.clone(), l, shared.shutdown.subscribe());
    }
    tokio::spawn(refresh_loop(shared.clone()));
    tokio::spawn(state_loop(shared.clone()));
    if let Some(every) = notify::watchdog_interval() {
        if shared.notifier.enabled() {
            tokio::spawn(watchdog_loop(shared.clone(), every, accepting));
        }
    }
    info!("auth", "mode" => &app.http.load().auth_summary());
    let status = status_line(&app);
    info!("ready", "status" => &status);
    shared.notifier.ready(&status);

    loop {
        tokio::select! {
            _ = hup.recv() => {}
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
        // A reload waiting on unreachable storage must not hold up a stop: drop it (nothing
        // is swapped until it has succeeded).
        let stop = tokio::select! {
            _ = reload(&shared) => false,
            _ = term.recv() => true,
            _ = int.recv() => true,
        };
        if stop {
            warn!("stop requested during a reload; the reload is abandoned");
            break;
        }
    }
    info!("stopping: no new connections; waiting for requests in flight");
    shared.notifier.stopping();
    let _ = shared.shutdown.send(true);
    let grace = shared.app.http.load().cfg.shutdown_grace;
    let drained = async {
        while shared.connections.load(Ordering::SeqCst) > 0 {
            let notified = shared.idle.notified();
            if shared.connections.load(Ordering::SeqCst) == 0 {
                break;
            }
            notified.await;
        }
    };
    tokio::select! {
        _ = drained => {}
        _ = tokio::time::sleep(grace) => {
            warn!("grace period over; closing remaining connections",
                "open" => shared.connections.load(Ordering::SeqCst));
        }
        _ = term.recv() => { error!("second signal: exiting at once"); std::process::exit(1); }
        _ = int.recv() => { error!("second signal: exiting at once"); std::process::exit(1); }
    }
    shared.app.registry.load().save_states().await;
    info!("stopped");
    Ok(())
}

async fn accept_loop(shared: Arc<Shared>, listener: Listener) {
    let mut stop = shared.shutdown.subscribe();
    let mut backoff = listen::AcceptBackoff::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.changed() => return,
            a = accept(&listener) => a,
        };
        let conn = match accepted {
            Ok(c) => c,
            Err(e) if listen::AcceptBackoff::transient(&e) => {
                crate::debug!("accept failed", "error" => &e.to_string());
                continue;
            }
            Err(e) => {
                // Out of file descriptors and similar: wait, longer while it goes on, and
                // say so once in a while instead of on every try.
                let f = backoff.failed(&e, std::time::Instant::now());
                if let Some(line) = f.log {
                    warn!(line.as_str(), "on" => &listener.describe());
                }
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(f.wait) => {}
                }
                continue;
            }
        };
        if let Some(failures) = backoff.accepted() {
            info!("accepting connections again", "on" => &listener.describe(),
                "failed_accepts" => failures);
        }
        match conn {
            Conn::Tcp(s) => {
                let _ = s.set_nodelay(true);
                spawn_conn(shared.clone(), s);
            }
            Conn::Unix(s) => spawn_conn(shared.clone(), s),
        }
    }
}

enum Conn {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(l: &Listener) -> std::io::Result<Conn> {
    match l {
        Listener::Tcp(t) => t.accept().await.map(|(s, _)| Conn::Tcp(s)),
        Listener::Unix(u) => u.accept().await.map(|(s, _)| Conn::Unix(s)),
    }
}

fn spawn_conn<S>(shared: Arc<Shared>, stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    shared.connections.fetch_add(1, Ordering::SeqCst);
    // The TLS material current at the accept: a reload changes it for new connections only.
    let tls = shared
        .app
        .http
        .load()
        .cfg
        .tls
        .as_ref()
        .map(|t| t.acceptor());
    tokio::spawn(async move {
        let (read_timeout, write_timeout) = {
            let http = shared.app.http.load();
            (http.cfg.read_timeout, http.cfg.write_timeout)
        };
        let stream = stall::WriteStallLimit::new(stream, write_timeout);
        match tls {
            None => serve_conn(&shared, stream, read_timeout).await,
            Some(acceptor) => match crate::tls::handshake(&acceptor, stream, read_timeout).await {
                Ok(s) => serve_conn(&shared, s, read_timeout).await,
                Err(e) => crate::debug!("TLS handshake failed", "error" => &e.to_string()),
            },
        }
        if shared.connections.fetch_sub(1, Ordering::SeqCst) == 1 {
            shared.idle.notify_waiters();
        }
    });
}

async fn serve_conn<S>(shared: &Arc<Shared>, stream: S, read_timeout: Duration)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let app = shared.app.clone();
    let svc = service_fn(move |req| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(app.handle(req).await) }
    });
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new());
    if !read_timeout.is_zero() {
        builder.header_read_timeout(read_timeout);
    }
    let conn = builder.serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    let mut stop = shared.shutdown.subscribe();
    let stopping = *stop.borrow();
    if stopping {
        conn.as_mut().graceful_shutdown();
    }
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                crate::debug!("connection error", "error" => &e.to_string());
            }
        }
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.as_mut().await;
        }
    }
}

async fn refresh_loop(shared: Arc<Shared>) {
    loop {
        let interval = shared.app.http.load().cfg.cache_interval;
        if interval.is_zero() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        tokio::time::sleep(interval).await;
        let registry = shared.app.registry.load_full();
        let problem = match registry.refresh_all().await {
            Ok(()) => String::new(),
            Err(e) => e.to_string(),
        };
        if !Arc::ptr_eq(&registry, &shared.app.registry.load()) {
            // A reload swapped the storage meanwhile: this result describes the old one.
            continue;
        }
        let was = shared.app.storage_problem.load();
        if problem.is_empty() && !was.is_empty() {
            info!("storage is reachable again");
        }
        if **was != problem {
            shared.app.storage_problem.store(Arc::new(problem));
        }
    }
}

async fn state_loop(shared: Arc<Shared>) {
    let mut stop = shared.shutdown.subscribe();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
        shared.app.registry.load_full().save_states().await;
    }
}

/// Pets the systemd watchdog from the runtime that serves requests, and only while the server
/// works: a stalled runtime (a worker blocked, a lock never released) stops the pets, and so
/// does an accept loop that ended other than by shutdown.
async fn watchdog_loop(
    shared: Arc<Shared>,
    every: Duration,
    accepting: Vec<tokio::task::JoinHandle<()>>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let stopping = *shared.shutdown.borrow();
        if !stopping && accepting.iter().any(|h| h.is_finished()) {
            error!("a listener stopped accepting connections; no longer petting the watchdog");
            return;
        }
        // Takes the registry's locks: a request stuck holding one stops the pets too.
        let _ = shared.app.registry.load().totals();
        shared.notifier.watchdog();
    }
}

/// SIGHUP: re-read the configuration, build and check the new storage, then swap it in. On
/// any failure the running configuration stays.
async fn reload(shared: &Shared) {
    shared.notifier.reloading();
    info!("reloading configuration");
    let res = try_reload(shared).await;
    shared.app.metrics.reloaded(res.is_ok());
    match res {
        Ok(()) => {
            let status = status_line(&shared.app);
            info!("reload complete", "status" => &status);
            shared.notifier.ready(&status);
        }
        Err(why) => {
            error!("reload failed; keeping the previous configuration", "error" => &why);
            let status = format!("reload failed: {why}; {}", status_line(&shared.app));
            shared.notifier.ready(&status);
        }
    }
}

async fn try_reload(shared: &Shared) -> Result<(), String> {
    let old = shared.app.http.load_full();
    let mut cfg = load_config_detached(shared.args.clone()).await?;
    for ((key, was), (_, now)) in old.cfg.restart_only().into_iter().zip(cfg.restart_only()) {
        if was != now {
            warn!("setting changed but needs a restart; keeping the running value",
                "key" => key, "running" => &was, "configured" => &now);
        }
    }
    cfg.listen_host = old.cfg.listen_host.clone();
    cfg.port = old.cfg.port;
    cfg.workers = old.cfg.workers;
    cfg.depth = old.cfg.depth;
    cfg.depth_dynamic = old.cfg.depth_dynamic;
    cfg.metrics_listen = old.cfg.metrics_listen;
    keep_tls_mode(&old.cfg, &mut cfg);
    // A start creates a missing local storage directory; a reload does not: there, a missing
    // directory is much more likely a typo than a wish for an empty repository.
    if let StorageConfig::Local { rootdir } = &cfg.storage {
        let why = match tokio::fs::metadata(rootdir).await {
            Ok(m) if m.is_dir() => None,
            Ok(_) => Some("not a directory".to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Some("the directory does not exist (a reload does not create it)".to_string())
            }
            Err(e) => Some(e.to_string()),
        };
        if let Some(why) = why {
            return Err(format!("storage {}: {why}", describe_storage(&cfg)));
        }
    }
    // The storage and refresh counters go on across the reload.
    let meter = shared.app.registry.load().meter.clone();
    let registry = build_registry_with(&cfg, repo_settings(&cfg), meter)
        .await
        .map_err(|e| format!("storage {}: {e}", describe_storage(&cfg)))?;
    for w in &cfg.warnings {
        warn!(w.as_str());
    }
    // Persist what the old backend knows before leaving it.
    shared.app.registry.load().save_states().await;
    let registry = Arc::new(registry);
    let old = shared.app.registry.swap(registry.clone());
    let http = HttpSettings::new(&cfg);
    info!("auth", "mode" => &http.auth_summary());
    shared.app.http.store(Arc::new(http));
    shared.app.storage_problem.store(Arc::new(String::new()));
    log::configure(cfg.debug, cfg.log_json);
    tokio::spawn(catch_up(shared.app.clone(), old, registry));
    Ok(())
}

/// Turning HTTPS or client certificates on or off needs a restart: a reload must never make a
/// listener serve plain HTTP, or stop asking for client certificates, because a key was
/// commented out. Within a mode, new files are taken (new connections get them).
fn keep_tls_mode(old: &Config, new: &mut Config) {
    let mode = |c: &Config| match &c.tls {
        None => "http",
        Some(t) if t.client_certs() => "https with client certificates",
        Some(_) => "https",
    };
    let (was, now) = (mode(old), mode(new));
    if was != now {
        warn!("TLS mode changed but needs a restart; keeping the running TLS settings",
            "running" => was, "configured" => now);
        new.tls = old.tls.clone();
    } else if old.tls != new.tls {
        info!("TLS files changed; new connections use the new material", "mode" => now);
    }
}

/// Reads the configuration (and the secret files it names) on a thread of its own: a file
/// that blocks (a FIFO, a hung network mount) then stalls only this reload, not the runtime
/// that serves requests, and a stop can still abandon it.
async fn load_config_detached(args: Args) -> Result<Config, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(load_config(&args).map_err(|e| e.to_string()));
    });
    rx.await
        .unwrap_or_else(|_| Err("the configuration loader failed".into()))
}

/// Requests in flight at a reload finish on the old registry, and uploads that completed
/// after the new one listed its storage are not in its index. Once nothing holds the old
/// registry any more, reconcile the new one with its storage so that those uploads show (when
/// both use the same storage; otherwise the reconciliation finds nothing new).
async fn catch_up(app: Arc<App>, old: Arc<Registry>, new: Arc<Registry>) {
    while Arc::strong_count(&old) > 1 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(old);
    if !Arc::ptr_eq(&app.registry.load(), &new) {
        return; // another reload came meanwhile and does its own catching up
    }
    if let Err(e) = new.refresh_all().await {
        warn!("index refresh after reload failed", "error" => &e.to_string());
    }
}

fn describe_storage(cfg: &Config) -> String {
    match &cfg.storage {
        StorageConfig::Local { rootdir } => format!("local:{}", rootdir.display()),
        StorageConfig::OpenStack { container, .. } => format!("openstack:{container}"),
        StorageConfig::Amazon {
            provider,
            bucket,
            prefix,
            ..
        } => {
            let prefix = prefix.trim_matches('/');
            if prefix.is_empty() {
                format!("{provider}:{bucket}")
            } else {
                format!("{provider}:{bucket}/{prefix}")
            }
        }
        StorageConfig::Microsoft {
            container, prefix, ..
        } => {
            let prefix = prefix.trim_matches('/');
            if prefix.is_empty() {
                format!("microsoft:{container}")
            } else {
                format!("microsoft:{container}/{prefix}")
            }
        }
        StorageConfig::Etcd {
            endpoints, prefix, ..
        } => format!(
            "etcd:{}/{}",
            endpoints.first().map_or("", String::as_str),
            crate::storage::etcd::base_prefix(prefix).trim_start_matches('/')
        ),
        StorageConfig::Google { bucket, prefix, .. } => {
            let prefix = prefix.trim_matches('/');
            if prefix.is_empty() {
                format!("google:{bucket}")
            } else {
                format!("google:{bucket}/{prefix}")
            }
        }
    }
}
