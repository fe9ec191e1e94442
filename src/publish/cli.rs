//! `chartroom publish`'s command line: helm-chartctl's, so that a timer's command line changes
//! only in the program name.
//!
//! ```text
//! chartroom publish [--cm-url URL] [--cm-user U] [--cm-password P] [--debug|--silent]
//!                   [--dry-run] [--allow-outside-symlinks] [--timeout SECONDS]
//!                   {walk PATH | push PATH | upload TGZ} REPOSITORY
//! ```

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Arg, ArgAction, ArgMatches, Command};

use super::client::ClientOptions;
use super::{Action, Options, Verbosity};

/// `--cm-url` when none is given: the packaged chartroom (127.0.0.1:8080).
pub const DEFAULT_URL: &str = "http://localhost:8080";
/// `--timeout` when none is given.
pub const DEFAULT_TIMEOUT_SECS: u64 = 60;
/// Exit status of a command line that cannot be parsed (as helm-chartctl's argparse).
pub const USAGE_EXIT: u8 = 2;

fn global(arg: Arg) -> Arg {
    arg.global(true)
}

fn target(
    name: &'static str,
    about: &'static str,
    what: &'static str,
    help: &'static str,
) -> Command {
    Command::new(name)
        .about(about)
        .arg(
            Arg::new("path")
                .value_name(what)
                .help(help)
                .required(true)
                .value_parser(clap::value_parser!(PathBuf)),
        )
        .arg(
            Arg::new("repository")
                .value_name("REPOSITORY")
                .help(
                    "Repository path (\"stable\", \"org/team\"); empty or absent for a \
                     server of depth 0",
                )
                .default_value(""),
        )
}

/// The `publish` subcommand.
pub fn command() -> Command {
    Command::new("publish")
        .bin_name("chartroom publish")
        .about("Package charts and upload the new versions to a chart repository (helm-chartctl)")
        .long_about(
            "Package charts and upload the versions a repository does not have yet, over \
             ChartMuseum's API (chartroom or ChartMuseum). Prints a summary line \
             \"N charts found, M already present, K uploaded, E errors\"; exits 0, 2 when a \
             repository request or a chart failed, 1 on other errors.",
        )
        .subcommand_required(true)
        .arg_required_else_help(true)
        .disable_help_subcommand(true)
        .term_width(100)
        .max_term_width(100)
        .arg(global(
            Arg::new("cm-url")
                .long("cm-url")
                .value_name("URL")
                .help(format!("Repository server URL [default: {DEFAULT_URL}]"))
                .action(ArgAction::Set),
        ))
        .arg(global(
            Arg::new("cm-user")
                .long("cm-user")
                .value_name("USER")
                .help("Basic auth user [env: HELM_REPO_USERNAME]")
                .action(ArgAction::Set),
        ))
        .arg(global(
            Arg::new("cm-password")
                .long("cm-password")
                .value_name("PASSWORD")
                .help("Basic auth password [env: HELM_REPO_PASSWORD]")
                .action(ArgAction::Set),
        ))
        .arg(global(
            Arg::new("debug")
                .short('d')
                .long("debug")
                .help("Print every chart and request")
                .conflicts_with("silent")
                .action(ArgAction::SetTrue),
        ))
        .arg(global(
            Arg::new("silent")
                .short('s')
                .long("silent")
                .help("Print errors only (no summary line)")
                .action(ArgAction::SetTrue),
        ))
        .arg(global(
            Arg::new("dry-run")
                .long("dry-run")
                .help("Package, but upload nothing: print what would be uploaded")
                .action(ArgAction::SetTrue),
        ))
        .arg(global(
            Arg::new("allow-outside-symlinks")
                .long("allow-outside-symlinks")
                .help("Follow symlinks that resolve outside PATH (refused by default)")
                .action(ArgAction::SetTrue),
        ))
        .arg(global(
            Arg::new("timeout")
                .long("timeout")
                .value_name("SECONDS")
                .help(format!(
                    "Time limit of each request [default: {DEFAULT_TIMEOUT_SECS}]"
                ))
                .value_parser(clap::value_parser!(u64).range(1..=86400))
                .action(ArgAction::Set),
        ))
        .subcommand(target(
            "walk",
            "Find every Chart.yaml under PATH (subcharts included); upload the versions the \
             repository lacks (one GET per run)",
            "PATH",
            "Directory to search for charts",
        ))
        .subcommand(target(
            "push",
            "Package the chart in PATH and upload it",
            "PATH",
            "Chart directory",
        ))
        .subcommand(target(
            "upload",
            "Upload an existing chart package",
            "TGZ",
            "Chart package (.tgz)",
        ))
}

fn string(m: &ArgMatches, id: &str) -> Option<String> {
    m.get_one::<String>(id).cloned()
}

/// Parses `chartroom publish`'s arguments (those after `publish`); `env` gives environment
/// variables.
pub fn parse(
    args: &[OsString],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Options, clap::Error> {
    let m = command().try_get_matches_from(
        std::iter::once(OsString::from("publish")).chain(args.iter().cloned()),
    )?;
    let Some((name, sub)) = m.subcommand() else {
        return Err(command().error(
            clap::error::ErrorKind::MissingSubcommand,
            "walk, push or upload is required",
        ));
    };
    let path = sub.get_one::<PathBuf>("path").cloned().unwrap_or_default();
    let action = match name {
        "walk" => Action::Walk(path),
        "push" => Action::Push(path),
        _ => Action::Upload(path),
    };
    // Global options are found in the subcommand's matches wherever they were written.
    let flag = |id: &str| sub.get_flag(id);
    let verbosity = if flag("debug") {
        Verbosity::Debug
    } else if flag("silent") {
        Verbosity::Silent
    } else {
        Verbosity::Normal
    };
    let timeout = sub
        .get_one::<u64>("timeout")
        .copied()
        .unwrap_or(DEFAULT_TIMEOUT_SECS);
    Ok(Options {
        action,
        repository: string(sub, "repository").unwrap_or_default(),
        client: ClientOptions {
            url: string(sub, "cm-url").unwrap_or_else(|| DEFAULT_URL.to_string()),
            user: string(sub, "cm-user").or_else(|| env("HELM_REPO_USERNAME")),
            password: string(sub, "cm-password").or_else(|| env("HELM_REPO_PASSWORD")),
            timeout: Duration::from_secs(timeout),
        },
        verbosity,
        dry_run: flag("dry-run"),
        allow_outside_symlinks: flag("allow-outside-symlinks"),
    })
}

/// `chartroom publish ARGS...`: runs it and returns the exit status.
pub fn main(args: &[OsString]) -> u8 {
    let env = |k: &str| std::env::var(k).ok();
    match parse(args, &env) {
        Ok(opts) => super::run(&opts).exit_code(),
        Err(e) => {
            let _ = e.print();
            if e.use_stderr() { USAGE_EXIT } else { 0 }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(args: &[&str], env: &[(&str, &str)]) -> Result<Options, clap::Error> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse(&args, &move |k| {
            env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn command_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn helm_chartctl_command_line() {
        let o = p(
            &[
                "--cm-url",
                "http://localhost:8080",
                "walk",
                "/srv/deployment-charts/charts",
                "stable",
            ],
            &[("HELM_REPO_USERNAME", "u"), ("HELM_REPO_PASSWORD", "pw")],
        )
        .unwrap();
        assert_eq!(
            o.action,
            Action::Walk("/srv/deployment-charts/charts".into())
        );
        assert_eq!(o.repository, "stable");
        assert_eq!(o.client.url, "http://localhost:8080");
        assert_eq!(o.client.user.as_deref(), Some("u"));
        assert_eq!(o.client.password.as_deref(), Some("pw"));
        assert_eq!(o.verbosity, Verbosity::Normal);
        assert!(!o.dry_run && !o.allow_outside_symlinks);
    }

    #[test]
    fn options_anywhere_flags_win_over_env_defaults() {
        let o = p(
            &[
                "push",
                "c",
                "--cm-user",
                "x",
                "-d",
                "--dry-run",
                "--timeout",
                "5",
            ],
            &[("HELM_REPO_USERNAME", "u")],
        )
        .unwrap();
        assert_eq!(o.action, Action::Push("c".into()));
        assert_eq!(o.repository, "");
        assert_eq!(o.client.url, DEFAULT_URL);
        assert_eq!(o.client.user.as_deref(), Some("x"));
        assert_eq!(o.client.password, None);
        assert_eq!(o.verbosity, Verbosity::Debug);
        assert!(o.dry_run);
        assert_eq!(o.client.timeout, Duration::from_secs(5));
        let o = p(&["-s", "upload", "a.tgz", ""], &[]).unwrap();
        assert_eq!(
            (o.action, o.verbosity),
            (Action::Upload("a.tgz".into()), Verbosity::Silent)
        );
    }

    #[test]
    fn usage_errors() {
        for bad in [
            &[][..],
            &["walk"],
            &["frobnicate", "x", "y"],
            &["walk", "p", "r", "extra"],
            &["--debug", "--silent", "walk", "p", "r"],
            &["--timeout", "0", "walk", "p"],
            &["--bogus", "walk", "p"],
        ] {
            assert!(p(bad, &[]).is_err(), "{bad:?}");
        }
        let e = p(&["--help"], &[]).unwrap_err();
        assert!(!e.use_stderr());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn any_arguments_parse_or_fail_cleanly(args in proptest::collection::vec("[-=a-z0-9./]{0,12}", 0..6)) {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let _ = p(&args, &[]);
        }
    }
}
