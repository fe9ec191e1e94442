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

use crate::api::{App, HttpSettings, repo_settings};
use crate::config::{self, Args, Config, ConfigError, StorageConfig};
use crate::log;
use crate::repository::Registry;
use crate::storage::{LocalStorage, Storage, StorageError};
use listen::Listener;
use notify::Notifier;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("{0}")]
    Listen(#[from] listen::ListenError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Builds the storage backend a configuration names.
pub fn build_storage(cfg: &Config) -> Result<Arc<dyn Storage>, StorageError> {
    match &cfg.storage {
        StorageConfig::Local { rootdir } => Ok(Arc::new(LocalStorage::new(rootdir)?)),
        StorageConfig::OpenStack { .. } => Err(StorageError::Unavailable(
            "the openstack backend is not built into this version of chartroom".into(),
        )),
    }
}

/// Builds a registry and checks it works: the storage can be listed and, for a single
/// repository, its index loads.
pub async fn build_registry(cfg: &Config) -> Result<Registry, StorageError> {
    let storage = build_storage(cfg)?;
    storage.check().await?;
    let registry = Registry::new(storage, repo_settings(cfg));
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
    notifier.status("loading index");
    let listeners = match listen::inherited()? {
        Some(l) => l,
        None => vec![listen::bind(&cfg.listen_host, cfg.port).await?],
    };
    let registry = build_registry(&cfg).await?;
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
    for l in listeners {
        info!("listening", "on" => &l.describe(), "storage" => &app.registry.load().storage.describe());
        tokio::spawn(accept_loop(shared.clone(), l));
    }
    tokio::spawn(refresh_loop(shared.clone()));
    tokio::spawn(state_loop(shared.clone()));
    if let Some(every) = notify::watchdog_interval() {
        if shared.notifier.enabled() {
            tokio::spawn(watchdog_loop(shared.clone(), every));
        }
    }
    let status = status_line(&app);
    info!("ready", "status" => &status);
    shared.notifier.ready(&status);

    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = hup.recv() => reload(&shared).await,
            _ = term.recv() => break,
            _ = int.recv() => break,
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
    loop {
        let accepted = tokio::select! {
            _ = stop.changed() => return,
            a = accept(&listener) => a,
        };
        match accepted {
            Ok(Conn::Tcp(s)) => {
                let _ = s.set_nodelay(true);
                spawn_conn(shared.clone(), s);
            }
            Ok(Conn::Unix(s)) => spawn_conn(shared.clone(), s),
            Err(e) => {
                // Out of file descriptors and similar: wait a little instead of spinning.
                warn!("accept failed", "error" => &e.to_string());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
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
    tokio::spawn(async move {
        let read_timeout = shared.app.http.load().cfg.read_timeout;
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
        if shared.connections.fetch_sub(1, Ordering::SeqCst) == 1 {
            shared.idle.notify_waiters();
        }
    });
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

async fn watchdog_loop(shared: Arc<Shared>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        shared.notifier.watchdog();
    }
}

/// SIGHUP: re-read the configuration, build and check the new storage, then swap it in. On
/// any failure the running configuration stays.
async fn reload(shared: &Shared) {
    shared.notifier.reloading();
    info!("reloading configuration");
    match try_reload(shared).await {
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
    let mut cfg = load_config(&shared.args).map_err(|e| e.to_string())?;
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
    let registry = build_registry(&cfg)
        .await
        .map_err(|e| format!("storage {}: {e}", describe_storage(&cfg)))?;
    for w in &cfg.warnings {
        warn!(w.as_str());
    }
    // Persist what the old backend knows before leaving it.
    shared.app.registry.load().save_states().await;
    shared.app.registry.store(Arc::new(registry));
    shared.app.http.store(Arc::new(HttpSettings::new(&cfg)));
    shared.app.storage_problem.store(Arc::new(String::new()));
    log::configure(cfg.debug, cfg.log_json);
    Ok(())
}

fn describe_storage(cfg: &Config) -> String {
    match &cfg.storage {
        StorageConfig::Local { rootdir } => format!("local:{}", rootdir.display()),
        StorageConfig::OpenStack { container, .. } => format!("openstack:{container}"),
    }
}
