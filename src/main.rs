use std::process::ExitCode;

use anyhow::Context;
use chartroom::api::VERSION;
use chartroom::config::{self, Command};
use chartroom::daemon;

const USAGE: &str = "\
Usage: chartroom [OPTIONS]

A Helm chart repository server, compatible with ChartMuseum.

Options (every configuration key has one; see chartroom(8) and chartroom.yaml(5)):
  -c, --config FILE         configuration file (default /etc/chartroom/chartroom.yaml if present)
      --gen-config-example  print the example configuration (keys given as options are set)
      --gen-man-config      print the chartroom.yaml(5) man page
  -h, --help                this help
  -v, --version             print the version
";

fn main() -> ExitCode {
    match run() {
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

fn run() -> anyhow::Result<()> {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let args = config::parse_args(&raw)?;
    match args.command {
        Command::Help => {
            print!("{USAGE}");
            for key in config::schema::KEYS {
                println!("      --{:<34} {} (env {})", key.flag, key.help, key.env);
            }
            return Ok(());
        }
        Command::Version => {
            println!("chartroom version {VERSION}");
            return Ok(());
        }
        Command::GenConfigExample => {
            let set = args.flag_values();
            print!("{}", config::example::example_yaml(&set));
            return Ok(());
        }
        Command::GenManConfig => {
            print!("{}", config::example::man_page(VERSION));
            return Ok(());
        }
        Command::Serve => {}
    }
    let cfg = daemon::load_config(&args)?;
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
            let bytes = repo.index().bytes();
            use std::io::Write;
            std::io::stdout().write_all(&bytes)?;
            Ok(())
        });
    }
    runtime.block_on(daemon::run(args, cfg))?;
    Ok(())
}
