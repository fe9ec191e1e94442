use std::process::ExitCode;

use anyhow::Context;
use chartroom::api::VERSION;
use chartroom::config::{self, Command};
use chartroom::daemon;

fn main() -> ExitCode {
    // `chartroom publish ...` is a client with a command line of its own (helm-chartctl's);
    // its paths may be any bytes.
    let raw: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if raw.first().is_some_and(|a| a == "publish") {
        return ExitCode::from(chartroom::publish::cli::main(&raw[1..]));
    }
    let res = run();
    chartroom::log::flush();
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Through the logger, so under journald the line carries the error priority.
            chartroom::log::configure(false, false);
            chartroom::log::log(
                chartroom::log::Level::Error,
                &format!("chartroom: {e:#}"),
                &[],
            );
            ExitCode::FAILURE
        }
    }
}

/// Writes a one-shot command's output. A reader that went away (`chartroom --help | head`)
/// ends the command quietly, as for other Unix tools, instead of a panic or an error line.
fn out(bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r.context("writing to standard output")?),
    }
}

fn run() -> anyhow::Result<()> {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let args = config::parse_args(&raw)?;
    match &args.command {
        Command::Help => {
            out(config::cli::help().as_bytes())?;
            return Ok(());
        }
        Command::SubcommandHelp(name) => {
            out(config::cli::subcommand_help(name).as_bytes())?;
            return Ok(());
        }
        Command::HelpKey(key) => {
            out(config::cli::describe(key)?.as_bytes())?;
            return Ok(());
        }
        Command::Version => {
            out(format!("chartroom version {VERSION}\n").as_bytes())?;
            return Ok(());
        }
        Command::GenConfigExample => {
            let set = args.flag_values();
            out(config::example::example_yaml(&set).as_bytes())?;
            return Ok(());
        }
        Command::GenManConfig => {
            out(config::example::man_page(VERSION).as_bytes())?;
            return Ok(());
        }
        Command::Completions(shell) => {
            out(&config::cli::completions(shell)?)?;
            return Ok(());
        }
        Command::CheckConfig { storage } => return check_config(&args, *storage),
        Command::ShowConfig => {
            // Only a configuration that would load is shown.
            daemon::load_config(&args)?;
            let env = |k: &str| std::env::var(k).ok();
            let default = std::path::Path::new(config::DEFAULT_CONFIG_FILE);
            let (file, values) = config::effective(&args, &env, Some(default))?;
            out(config::example::show_config(file.as_deref(), &values).as_bytes())?;
            return Ok(());
        }
        Command::Serve => {}
    }
    let cfg = daemon::load_config(&args)?;
    limit_malloc_arenas();
    let runtime = if cfg.workers > 1 {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cfg.workers)
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    }
    .context("cannot start the runtime")?;
    if cfg.gen_index {
        return runtime.block_on(async {
            let registry = daemon::build_registry(&cfg).await?;
            let repo = registry.repo("").await?;
            let bytes = repo.index().pieces().to_vec();
            use std::io::Write;
            std::io::stdout().write_all(&bytes)?;
            Ok(())
        });
    }
    chartroom::log::set_buffered();
    runtime.block_on(daemon::run(args, cfg))?;
    Ok(())
}

/// `chartroom check-config`: everything a start checks before it serves, without starting:
/// the configuration, the secret files it names, the CA bundle and credentials of a remote
/// backend; the storage itself only with `--check-storage`.
fn check_config(args: &config::Args, storage: bool) -> anyhow::Result<()> {
    let cfg = daemon::load_config(args).context("check-config")?;
    check_secret_files(&cfg).context("check-config")?;
    if !matches!(cfg.storage, config::StorageConfig::Local { .. }) {
        // Builds the client offline: the CA bundle parses, the credentials are there.
        daemon::build_storage(&cfg).context("check-config: storage settings")?;
    }
    if storage {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the runtime")?;
        runtime
            .block_on(daemon::build_registry(&cfg))
            .context("check-config: storage")?;
    }
    for warning in &cfg.warnings {
        eprintln!("chartroom: warning: {warning}");
    }
    let file = cfg
        .file
        .as_ref()
        .map_or("no config file".to_string(), |f| f.display().to_string());
    out(format!("chartroom: configuration OK ({file})\n").as_bytes())?;
    Ok(())
}

/// The secret files of the chosen backend are readable (basicauth.passfile is read by the
/// loader itself).
fn check_secret_files(cfg: &config::Config) -> Result<(), config::ConfigError> {
    let google_credentials = match &cfg.storage {
        config::StorageConfig::Google { env, .. } => env
            .get("GOOGLE_APPLICATION_CREDENTIALS")
            .unwrap_or_default(),
        _ => String::new(),
    };
    let files: Vec<(&str, &str)> = match &cfg.storage {
        config::StorageConfig::Local { .. } => Vec::new(),
        config::StorageConfig::OpenStack {
            keyfile,
            passwordfile,
            ..
        } => vec![
            ("storage.openstack.keyfile", keyfile.as_str()),
            ("storage.openstack.passwordfile", passwordfile.as_str()),
        ],
        config::StorageConfig::Amazon {
            secret_key_file, ..
        } => vec![("storage.amazon.secretkeyfile", secret_key_file.as_str())],
        config::StorageConfig::Microsoft {
            access_key_file,
            sas_token_file,
            ..
        } => vec![
            ("storage.microsoft.accesskeyfile", access_key_file.as_str()),
            ("storage.microsoft.sastokenfile", sas_token_file.as_str()),
        ],
        config::StorageConfig::Etcd {
            cafile,
            certfile,
            keyfile,
            ..
        } => vec![
            ("storage.etcd.cafile", cafile.as_str()),
            ("storage.etcd.certfile", certfile.as_str()),
            ("storage.etcd.keyfile", keyfile.as_str()),
        ],
        config::StorageConfig::Google { .. } => {
            vec![(
                "GOOGLE_APPLICATION_CREDENTIALS",
                google_credentials.as_str(),
            )]
        }
    };
    for (key, path) in files {
        if !path.is_empty() {
            config::read_secret(path, key)?;
        }
    }
    Ok(())
}

/// glibc gives each thread that allocates its own heap (up to 8 per core); memory freed in one
/// is not reused by another, so the blocking threads that unpack packages and parse state
/// files leave heaps behind. Two are enough for one runtime thread and a few blocking ones
/// (measured at 100,000 versions: peak RSS 186 -> 158 MiB). `MALLOC_ARENA_MAX` in the
/// environment still decides when set.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets a tunable of the allocator; called before the runtime
        // and its threads exist.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}
