//! The command line, built with clap from the table in [`super::schema`]: one option per
//! configuration key (grouped by section in `--help`), the subcommands, and ChartMuseum's
//! spellings (`--port 8080`, `--port=8080`, Go-style `-port 8080` and `-storage=local`).

use clap::{Arg, ArgAction, ArgMatches};

use super::schema::{self, KEYS, Key, Kind};
use super::{Args, Command, ConfigError};

/// Options that are not configuration keys, with whether they take a value.
const OWN_LONG: &[(&str, bool)] = &[
    ("config", true),
    ("help", false),
    ("version", false),
    ("help-key", true),
    ("gen-config-example", false),
    ("gen-man-config", false),
    ("check-storage", false),
];

/// Subcommands that take the configuration options.
const CONFIG_SUBCOMMANDS: &[&str] = &["serve", "check-config", "show-config", "gen-config-example"];

/// The shells `chartroom completions` writes for.
pub const SHELLS: &[&str] = &["bash", "zsh", "fish"];

const HELP_WIDTH: usize = 100;
/// Where clap starts the help text of an option on the line below it.
const HELP_INDENT: usize = 10;

fn value_name(key: &Key) -> &'static str {
    let k = key.key;
    match key.kind {
        Kind::Bool => "BOOL",
        Kind::Duration => "DURATION",
        Kind::Map => "[REPO=]ID",
        Kind::Int if k == "port" => "PORT",
        Kind::Int if k.contains("size") => "BYTES",
        Kind::Int if k.contains("timeout") => "SECONDS",
        Kind::Int => "N",
        Kind::Str if k.ends_with("file") || k.ends_with("dir") || k.ends_with("path") => "PATH",
        Kind::Str if k.ends_with("cert") || k.ends_with("key") || k.ends_with("cacert") => "PATH",
        Kind::Str if k.ends_with("endpoint") || k == "charturl" => "URL",
        Kind::Str if k == "storage.backend" => "BACKEND",
        Kind::Str if k == "listen.host" => "ADDR",
        Kind::Str => "STRING",
    }
}

/// One line of `--help` text for a key: its meaning, default and environment variable.
fn key_help(key: &Key) -> String {
    let default = if key.default.is_empty() {
        String::new()
    } else {
        format!(" [default: {}]", key.default)
    };
    // The bracketed notes stay whole on one line.
    let notes = format!("{default} [env: {}]", key.env).replace(' ', "\u{1}");
    wrap(
        &format!("{}{}", key.help, notes.replacen('\u{1}', " ", 1)),
        HELP_WIDTH - HELP_INDENT,
    )
    .join("\n")
    .replace("\u{1}[", " [")
    .replace('\u{1}', " ")
}

fn key_arg(key: &'static Key) -> Arg {
    let arg = Arg::new(key.key)
        .long(key.flag)
        .value_name(value_name(key))
        .help(key_help(key))
        .help_heading(schema::section(key))
        .action(ArgAction::Append);
    if key.kind == Kind::Bool {
        // `--debug` alone is true; a value must be attached: `--debug=false`.
        arg.num_args(0..=1)
            .require_equals(true)
            .default_missing_value("true")
    } else {
        arg.num_args(1).allow_hyphen_values(true)
    }
}

fn config_args() -> Vec<Arg> {
    let mut args = vec![
        Arg::new("config")
            .short('c')
            .long("config")
            .value_name("FILE")
            .help(format!(
                "Configuration file [default: {} if present]\n[env: CONFIG]",
                super::DEFAULT_CONFIG_FILE
            ))
            .help_heading("Configuration file")
            .num_args(1)
            .allow_hyphen_values(true)
            .action(ArgAction::Set),
    ];
    args.extend(KEYS.iter().map(key_arg));
    args
}

/// The whole command line as a clap command (also what the completions are generated from).
pub fn command() -> clap::Command {
    let mut root = clap::Command::new("chartroom")
        .about("A Helm chart repository server, compatible with ChartMuseum.")
        .after_help(
            wrap(
                "Every configuration key has an option (also spelt -option, as Go programs \
                 do), an environment variable and a key in the configuration file (see \
                 chartroom(8) and chartroom.yaml(5)); `chartroom help KEY` describes one. \
                 Precedence: defaults < file < environment < options.",
                HELP_WIDTH,
            )
            .join("\n"),
        )
        .next_line_help(true)
        .term_width(HELP_WIDTH)
        .max_term_width(HELP_WIDTH)
        .disable_help_flag(true)
        .disable_version_flag(true)
        .disable_help_subcommand(true)
        .args_conflicts_with_subcommands(false)
        .arg(
            Arg::new("help")
                .short('h')
                .long("help")
                .help("Print this help")
                .action(ArgAction::SetTrue),
        )
        .arg(
            Arg::new("version")
                .short('v')
                .long("version")
                .help("Print the version")
                .action(ArgAction::SetTrue),
        )
        .arg(
            Arg::new("help-key")
                .long("help-key")
                .value_name("KEY")
                .help("Describe one configuration key (its name, option or variable)")
                .action(ArgAction::Set),
        )
        .arg(
            Arg::new("gen-config-example")
                .long("gen-config-example")
                .help("Same as the gen-config-example subcommand")
                .action(ArgAction::SetTrue),
        )
        .arg(
            Arg::new("gen-man-config")
                .long("gen-man-config")
                .help("Same as the gen-man subcommand")
                .action(ArgAction::SetTrue),
        )
        .args(config_args());
    let with_config = |c: clap::Command| {
        c.disable_help_flag(true)
            .next_line_help(true)
            .arg(
                Arg::new("help")
                    .short('h')
                    .long("help")
                    .help("Print this help")
                    .action(ArgAction::SetTrue),
            )
            .args(config_args())
    };
    root = root
        .subcommand(with_config(
            clap::Command::new("serve").about("Run the server (the default)"),
        ))
        .subcommand(with_config(
            clap::Command::new("check-config")
                .about("Check the configuration as a start would: exit 0, or 1 naming the problem")
                .arg(
                    Arg::new("check-storage")
                        .long("check-storage")
                        .help("Also reach the storage and list it (off by default)")
                        .action(ArgAction::SetTrue),
                ),
        ))
        .subcommand(with_config(clap::Command::new("show-config").about(
            "Print the effective configuration as YAML, with each value's origin",
        )))
        .subcommand(with_config(clap::Command::new("gen-config-example").about(
            "Print the example chartroom.yaml (keys given as options are set)",
        )))
        .subcommand(clap::Command::new("gen-man").about("Print the chartroom.yaml(5) manual page"))
        .subcommand(
            clap::Command::new("completions")
                .about("Print a shell completion script")
                .arg(
                    Arg::new("shell")
                        .required(true)
                        .value_parser(clap::builder::PossibleValuesParser::new(SHELLS)),
                ),
        )
        .subcommand(crate::publish::cli::command())
        .subcommand(
            clap::Command::new("help")
                .about("Print this help, or describe one configuration key")
                .arg(Arg::new("key").value_name("KEY")),
        );
    root
}

/// What a long option name (without dashes) is: `Some(takes_value)` when known.
fn long_option(name: &str) -> Option<bool> {
    if let Some(key) = schema::find_flag(name) {
        return Some(key.kind != Kind::Bool);
    }
    OWN_LONG
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, takes)| *takes)
}

/// Rewrites Go-style single-dash long options (`-port 8080`, `-storage=local`) to the double
/// dash clap reads; values are never rewritten. A single-dash word that is no option is an
/// unknown option.
fn normalize(args: &[String]) -> Result<Vec<String>, ConfigError> {
    let mut out = Vec::with_capacity(args.len());
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" || arg == "publish" {
            // (publish's own options are not server options)
            if arg == "publish" {
                out.push(arg.clone());
            }
            out.extend(args[i..].iter().cloned());
            break;
        }
        let go_style = |rest: &str| {
            let name = rest.split_once('=').map_or(rest, |(n, _)| n);
            // `-cFILE` is the short option with its value attached.
            long_option(name).is_some() || !rest.starts_with('c')
        };
        let long = if let Some(rest) = arg.strip_prefix("--") {
            Some(rest)
        } else if arg.len() > 2 && arg.starts_with('-') && go_style(&arg[1..]) {
            Some(&arg[1..])
        } else {
            None
        };
        let Some(rest) = long else {
            if arg == "-c" {
                out.push(arg.clone());
                if let Some(v) = args.get(i) {
                    out.push(v.clone());
                    i += 1;
                }
            } else {
                out.push(arg.clone());
            }
            continue;
        };
        let (name, inline) = match rest.split_once('=') {
            Some((n, _)) => (n, true),
            None => (rest, false),
        };
        let Some(takes_value) = long_option(name) else {
            return Err(unknown_flag(arg));
        };
        out.push(format!("--{rest}"));
        if takes_value && !inline {
            if let Some(v) = args.get(i) {
                out.push(v.clone());
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Levenshtein distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// The closest of `candidates` to `word`, when it is close enough to be a likely typo.
pub fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    let best = candidates
        .map(|c| (distance(&word, c), c))
        .min_by_key(|(d, _)| *d)?;
    let limit = (word.chars().count() / 3).max(2);
    (best.0 <= limit).then_some(best.1)
}

fn unknown_flag(arg: &str) -> ConfigError {
    let name = arg.trim_start_matches('-');
    let name = name.split_once('=').map_or(name, |(n, _)| n);
    let names = KEYS
        .iter()
        .map(|k| k.flag)
        .chain(OWN_LONG.iter().map(|(n, _)| *n));
    // A key spelt as in the YAML file (`--basicauth.user`) maps to its option.
    let suggestion = schema::find(name)
        .map(|k| k.flag)
        .or_else(|| closest(name, names));
    ConfigError::UnknownFlag {
        arg: arg.to_string(),
        hint: suggestion
            .map(|s| format!("; did you mean --{s}?"))
            .unwrap_or_default(),
    }
}

fn from_clap(e: clap::Error) -> ConfigError {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let context = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        Some(ContextValue::Strings(s)) => s.first().cloned(),
        _ => None,
    };
    let invalid = context(ContextKind::InvalidArg).unwrap_or_default();
    match e.kind() {
        ErrorKind::UnknownArgument if invalid.starts_with('-') => unknown_flag(&invalid),
        ErrorKind::UnknownArgument | ErrorKind::InvalidSubcommand => ConfigError::Positional(
            context(ContextKind::InvalidSubcommand)
                .filter(|s| !s.is_empty())
                .unwrap_or(invalid),
        ),
        ErrorKind::InvalidValue | ErrorKind::NoEquals
            if context(ContextKind::InvalidValue).is_none_or(|v| v.is_empty()) =>
        {
            let name = invalid
                .trim_start_matches('-')
                .split([' ', '='])
                .next()
                .unwrap_or_default()
                .to_string();
            ConfigError::MissingValue(name)
        }
        _ => {
            let text = e.to_string();
            let first = text
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ");
            ConfigError::Invalid(first.to_string())
        }
    }
}

fn collect(m: &ArgMatches, out: &mut Args) {
    if let Some(file) = m.try_get_one::<String>("config").ok().flatten() {
        out.config_file = Some(file.clone());
    }
    for key in KEYS {
        let Ok(Some(values)) = m.try_get_many::<String>(key.key) else {
            continue;
        };
        let values: Vec<String> = values.cloned().collect();
        if key.kind == Kind::Map {
            out.flags.extend(values.into_iter().map(|v| (key, v)));
        } else if let Some(last) = values.into_iter().last() {
            out.flags.retain(|(k, _)| k.key != key.key);
            out.flags.push((key, last));
        }
    }
}

fn flag(m: &ArgMatches, id: &str) -> bool {
    m.try_get_one::<bool>(id).ok().flatten().copied() == Some(true)
}

/// Parses the command line (without the program name).
pub fn parse(args: &[String]) -> Result<Args, ConfigError> {
    let argv = normalize(args)?;
    let m = command()
        .try_get_matches_from(std::iter::once("chartroom".to_string()).chain(argv))
        .map_err(from_clap)?;
    let mut out = Args {
        command: Command::Serve,
        config_file: None,
        flags: Vec::new(),
    };
    collect(&m, &mut out);
    if let Some(key) = m.get_one::<String>("help-key") {
        out.command = Command::HelpKey(key.clone());
    }
    if flag(&m, "gen-config-example") {
        out.command = Command::GenConfigExample;
    }
    if flag(&m, "gen-man-config") {
        out.command = Command::GenManConfig;
    }
    if let Some((name, sub)) = m.subcommand() {
        collect(sub, &mut out);
        out.command = match name {
            "serve" => Command::Serve,
            "check-config" => Command::CheckConfig {
                storage: flag(sub, "check-storage"),
            },
            "show-config" => Command::ShowConfig,
            "gen-config-example" => Command::GenConfigExample,
            "gen-man" => Command::GenManConfig,
            "completions" => {
                Command::Completions(sub.get_one::<String>("shell").cloned().unwrap_or_default())
            }
            "publish" => {
                return Err(ConfigError::Invalid(
                    "publish must come first: chartroom publish [OPTIONS] ACTION PATH REPOSITORY"
                        .into(),
                ));
            }
            "help" => match sub.get_one::<String>("key") {
                Some(key) => Command::HelpKey(key.clone()),
                None => Command::Help,
            },
            other => return Err(ConfigError::Positional(other.to_string())),
        };
        if flag(sub, "help") {
            out.command = Command::SubcommandHelp(name.to_string());
        }
    }
    if flag(&m, "version") {
        out.command = Command::Version;
    }
    if flag(&m, "help") {
        out.command = Command::Help;
    }
    Ok(out)
}

/// `chartroom --help`.
pub fn help() -> String {
    command().render_help().to_string()
}

/// `chartroom SUBCOMMAND --help`.
pub fn subcommand_help(name: &str) -> String {
    let mut cmd = command();
    cmd.build();
    match cmd.find_subcommand_mut(name) {
        Some(sub) => sub.render_help().to_string(),
        None => help(),
    }
}

/// Finds a key by its YAML name, option (with or without dashes) or environment variable.
pub fn find_any(name: &str) -> Option<&'static Key> {
    let bare = name.trim_start_matches('-');
    schema::find(bare)
        .or_else(|| schema::find_flag(bare))
        .or_else(|| KEYS.iter().find(|k| k.env == name))
}

/// `chartroom help KEY`: everything the table says about one key.
pub fn describe(name: &str) -> Result<String, ConfigError> {
    let Some(key) = find_any(name) else {
        let names = KEYS.iter().flat_map(|k| [k.key, k.flag, k.env].into_iter());
        let hint = closest(name.trim_start_matches('-'), names)
            .map(|s| format!("; did you mean {s}?"))
            .unwrap_or_default();
        return Err(ConfigError::Invalid(format!(
            "unknown configuration key {name:?}{hint}"
        )));
    };
    let support = match key.support {
        schema::Support::Yes => "yes",
        schema::Support::Ignored => "accepted, no effect (a set value logs a warning)",
        schema::Support::No => "no (any value but the default is refused)",
    };
    let reload = match key.reload {
        schema::Reload::Live => "systemctl reload (SIGHUP)",
        schema::Reload::Restart => "restart only",
    };
    let default = if key.default.is_empty() {
        "(empty)"
    } else {
        key.default
    };
    let mut text = format!(
        "{key}\n  section:      {section}\n  option:       --{flag} <{value}> (also -{flag})\n  \
         environment:  {env}\n  type:         {kind}\n  default:      {default}\n  \
         supported:    {support}\n  takes effect: {reload}\n\n",
        key = key.key,
        section = schema::section(key),
        flag = key.flag,
        value = value_name(key),
        env = key.env,
        kind = key.kind.name(),
    );
    for line in wrap(key.help, HELP_WIDTH - 2) {
        text.push_str("  ");
        text.push_str(&line);
        text.push('\n');
    }
    Ok(text)
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// `chartroom completions SHELL`.
pub fn completions(shell: &str) -> Result<Vec<u8>, ConfigError> {
    use clap_complete::Shell;
    let shell = match shell {
        "bash" => Shell::Bash,
        "zsh" => Shell::Zsh,
        "fish" => Shell::Fish,
        other => {
            return Err(ConfigError::Invalid(format!(
                "no completions for shell {other:?} (bash, zsh or fish)"
            )));
        }
    };
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command(), "chartroom", &mut out);
    Ok(out)
}

/// Names of the subcommands that take configuration options.
pub fn config_subcommands() -> &'static [&'static str] {
    CONFIG_SUBCOMMANDS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(a: &[&str]) -> Result<Args, ConfigError> {
        parse(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn clap_command_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn go_style_single_dash() {
        let a = parse_str(&["-port", "9000", "-storage=local", "-debug", "-c", "x.yaml"]).unwrap();
        let v = a.flag_values();
        assert!(v.contains(&("port", "9000".into())), "{v:?}");
        assert!(v.contains(&("storage.backend", "local".into())), "{v:?}");
        assert!(v.contains(&("debug", "true".into())), "{v:?}");
        assert_eq!(a.config_file.as_deref(), Some("x.yaml"));
        for form in [
            &["-c=y.yaml"][..],
            &["-cy.yaml"],
            &["-config", "y.yaml"],
            &["--config=y.yaml"],
        ] {
            assert_eq!(
                parse_str(form).unwrap().config_file.as_deref(),
                Some("y.yaml"),
                "{form:?}"
            );
        }
        // A value that looks like an option stays a value.
        let a = parse_str(&["--basic-auth-pass", "-port", "-basic-auth-user", "-x"]).unwrap();
        let v = a.flag_values();
        assert!(v.contains(&("basicauth.pass", "-port".into())), "{v:?}");
        assert!(v.contains(&("basicauth.user", "-x".into())), "{v:?}");
    }

    #[test]
    fn typo_suggestion() {
        let e = parse_str(&["--prot", "1"]).unwrap_err().to_string();
        assert!(
            e.contains("--prot") && e.contains("did you mean --port?"),
            "{e}"
        );
        let e = parse_str(&["-storage-local-rotdir=/x"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("did you mean --storage-local-rootdir?"), "{e}");
        let e = parse_str(&["--basicauth.user", "u"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("did you mean --basic-auth-user?"), "{e}");
        let e = parse_str(&["--zzzzzzzzzzzzzzzz"]).unwrap_err().to_string();
        assert!(!e.contains("did you mean"), "{e}");
    }

    #[test]
    fn last_value_wins_and_maps_append() {
        let a = parse_str(&[
            "--port",
            "1",
            "--port=2",
            "--artifact-hub-repo-id",
            "a",
            "--artifact-hub-repo-id=b=c",
        ])
        .unwrap();
        let v = a.flag_values();
        assert_eq!(v.iter().filter(|(k, _)| *k == "port").count(), 1);
        assert!(v.contains(&("port", "2".into())));
        assert!(v.contains(&("artifact-hub-repo-id", "a".into())));
        assert!(v.contains(&("artifact-hub-repo-id", "b=c".into())));
    }

    #[test]
    fn errors() {
        assert!(matches!(parse_str(&["--port"]), Err(ConfigError::MissingValue(n)) if n == "port"));
        assert!(matches!(
            parse_str(&["stray"]),
            Err(ConfigError::Positional(_))
        ));
        assert!(parse_str(&["--debug", "false"]).is_err());
    }

    #[test]
    fn subcommands() {
        assert_eq!(parse_str(&[]).unwrap().command, Command::Serve);
        assert_eq!(
            parse_str(&["serve", "--port", "1"]).unwrap().flag_values(),
            vec![("port", "1".to_string())]
        );
        assert_eq!(
            parse_str(&["check-config", "--check-storage"])
                .unwrap()
                .command,
            Command::CheckConfig { storage: true }
        );
        assert_eq!(
            parse_str(&["help", "port"]).unwrap().command,
            Command::HelpKey("port".into())
        );
        assert_eq!(
            parse_str(&["--help-key", "PORT"]).unwrap().command,
            Command::HelpKey("PORT".into())
        );
        assert_eq!(
            parse_str(&["gen-man"]).unwrap().command,
            Command::GenManConfig
        );
        assert_eq!(
            parse_str(&["--gen-man-config"]).unwrap().command,
            Command::GenManConfig
        );
        assert_eq!(
            parse_str(&["completions", "bash"]).unwrap().command,
            Command::Completions("bash".into())
        );
        assert!(parse_str(&["completions", "tcsh"]).is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
        #[test]
        fn any_arguments_parse_or_fail_cleanly(args in proptest::collection::vec("[-=a-z0-9.]{0,12}", 0..6)) {
            let _ = parse(&args);
        }
    }
}
