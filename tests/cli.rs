//! The command line (issue 15): every key of the schema table in every spelling, `--help`,
//! `help KEY`, typo suggestions and the subcommands (check-config, show-config, completions).

use std::path::Path;
use std::process::{Command, Output, Stdio};

use chartroom::config::{self, schema::KEYS, schema::Kind};

const BIN: &str = env!("CARGO_BIN_EXE_chartroom");

fn argv(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// Runs the binary with a clean environment (plus `env`) in `dir`.
fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A value of the key's type that is not its default.
fn value_for(kind: Kind, default: &str) -> String {
    match kind {
        Kind::Bool if default == "true" => "false".into(),
        Kind::Bool => "true".into(),
        Kind::Int => "7".into(),
        Kind::Duration => "7s".into(),
        Kind::Str => "x7".into(),
        Kind::Map => "r=7".into(),
    }
}

/// Every key of the table is accepted as `--flag`, `-flag` (Go style), `--flag=value`, its
/// environment variable, a dotted YAML key and a nested YAML key, and each is reported with
/// its origin.
#[test]
fn every_schema_key_in_every_spelling() {
    let dir = tempfile::tempdir().unwrap();
    let no_env = |_: &str| None;
    for key in KEYS {
        let v = value_for(key.kind, key.default);
        let forms: Vec<Vec<String>> = if key.kind == Kind::Bool {
            vec![
                vec![format!("--{}={v}", key.flag)],
                vec![format!("-{}={v}", key.flag)],
            ]
        } else {
            vec![
                vec![format!("--{}", key.flag), v.clone()],
                vec![format!("-{}", key.flag), v.clone()],
                vec![format!("--{}={v}", key.flag)],
                vec![format!("-{}={v}", key.flag)],
            ]
        };
        for form in forms {
            let args = config::parse_args(&form).unwrap_or_else(|e| panic!("{form:?}: {e}"));
            assert_eq!(args.flag_values(), vec![(key.key, v.clone())], "{form:?}");
            let (_, values) = config::effective(&args, &no_env, None).unwrap();
            let e = values.iter().find(|e| e.key.key == key.key).unwrap();
            assert_eq!(e.origin, format!("option --{}", key.flag), "{form:?}");
        }
        if key.kind == Kind::Bool {
            let args = config::parse_args(&[format!("-{}", key.flag)]).unwrap();
            assert_eq!(args.flag_values(), vec![(key.key, "true".to_string())]);
        }

        let env = |name: &str| (name == key.env).then(|| v.clone());
        let (_, values) = config::effective(&config::parse_args(&[]).unwrap(), &env, None).unwrap();
        let e = values.iter().find(|e| e.key.key == key.key).unwrap();
        assert_eq!(
            (e.value.as_str(), e.origin.clone()),
            (v.as_str(), format!("environment variable {}", key.env))
        );

        let yaml_value = if key.kind == Kind::Map {
            "{r: \"7\"}".to_string()
        } else {
            format!("\"{v}\"")
        };
        let nested = {
            let parts: Vec<&str> = key.key.split('.').collect();
            let mut s = String::new();
            for (depth, part) in parts.iter().enumerate() {
                s.push_str(&"  ".repeat(depth));
                s.push_str(part);
                s.push(':');
                s.push(if depth + 1 == parts.len() { ' ' } else { '\n' });
            }
            format!("{s}{yaml_value}\n")
        };
        for body in [format!("{}: {yaml_value}\n", key.key), nested] {
            let f = dir.path().join("c.yaml");
            std::fs::write(&f, &body).unwrap();
            let args = config::parse_args(&argv(&["--config", f.to_str().unwrap()])).unwrap();
            let (_, values) =
                config::effective(&args, &no_env, None).unwrap_or_else(|e| panic!("{body}: {e}"));
            let e = values.iter().find(|e| e.key.key == key.key).unwrap();
            assert_eq!(
                (e.value.as_str(), e.origin.clone()),
                (v.as_str(), format!("config file {}", f.display())),
                "{body}"
            );
        }
    }
}

/// `tests/snapshots/help.txt` is `chartroom --help`; UPDATE_SNAPSHOTS=1 rewrites it.
#[test]
fn help_snapshot_fits_100_columns_and_lists_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["--help"], &[]);
    assert!(out.status.success());
    let (help, _) = text(&out);
    for (n, line) in help.lines().enumerate() {
        assert!(line.chars().count() <= 100, "line {}: {line}", n + 1);
    }
    for key in KEYS {
        assert!(
            help.contains(&format!("--{} ", key.flag))
                || help.contains(&format!("--{}[", key.flag)),
            "--{} missing",
            key.flag
        );
        assert!(
            help.contains(&format!("[env: {}]", key.env)),
            "{} missing",
            key.env
        );
    }
    for section in [
        "Server:",
        "Logging:",
        "Storage: OpenStack Swift:",
        "Limits:",
        "Authentication:",
    ] {
        assert!(help.contains(section), "{section}");
    }
    assert!(
        help.contains(
            "--port <PORT>\n          TCP port to listen on. [default: 8080] [env: PORT]"
        )
    );
    let snapshot = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/help.txt");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&snapshot, &help).unwrap();
    }
    let expected = std::fs::read_to_string(&snapshot).unwrap_or_default();
    assert!(
        expected == help,
        "--help changed: check it and run `UPDATE_SNAPSHOTS=1 cargo test --test cli help`"
    );
    // -h and help print the same.
    assert_eq!(text(&run(dir.path(), &["-h"], &[])).0, help);
    assert_eq!(text(&run(dir.path(), &["help"], &[])).0, help);
}

#[test]
fn help_key_describes_one_key() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["help", "storage.amazon.timeout"][..],
        &["--help-key", "storage-amazon-timeout"],
        &["--help-key=STORAGE_AMAZON_TIMEOUT"],
    ] {
        let out = run(dir.path(), args, &[]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{args:?}: {stderr}");
        assert!(stdout.starts_with("storage.amazon.timeout\n"), "{stdout}");
        for part in [
            "--storage-amazon-timeout",
            "STORAGE_AMAZON_TIMEOUT",
            "20s",
            "duration",
        ] {
            assert!(stdout.contains(part), "{part}: {stdout}");
        }
    }
    let out = run(dir.path(), &["help", "storage.amazon.timout"], &[]);
    assert!(!out.status.success());
    assert!(
        text(&out)
            .1
            .contains("did you mean storage.amazon.timeout?")
    );
}

#[test]
fn typo_gets_a_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    for (arg, want) in [
        ("--prot=1", "did you mean --port?"),
        ("-prot", "did you mean --port?"),
        (
            "--storage-local-rotdir=/x",
            "did you mean --storage-local-rootdir?",
        ),
        ("--basicauth.user=u", "did you mean --basic-auth-user?"),
    ] {
        let out = run(dir.path(), &[arg], &[]);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{arg}");
        assert!(stderr.contains("unknown command-line option"), "{stderr}");
        assert!(stderr.contains(want), "{arg}: {stderr}");
    }
    // An unknown key in a file is named with the file and a suggestion.
    std::fs::write(dir.path().join("c.yaml"), "storage:\n  backnd: local\n").unwrap();
    let (_, stderr) = text(&run(dir.path(), &["check-config", "-c", "c.yaml"], &[]));
    assert!(
        stderr.contains(
            "c.yaml: unknown configuration key \"storage.backnd\"; did you mean storage.backend?"
        ),
        "{stderr}"
    );
}

#[test]
fn check_config_good_broken_unknown_and_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root = d.join("charts-not-created");
    std::fs::write(d.join("pass"), "s3cret\n").unwrap();
    std::fs::write(
        d.join("good.yaml"),
        format!(
            "port: 9000\nstorage:\n  backend: local\n  local:\n    rootdir: {}\nbasicauth:\n  user: u\n  passfile: {}\n",
            root.display(),
            d.join("pass").display()
        ),
    )
    .unwrap();
    let out = run(d, &["check-config", "--config", "good.yaml"], &[]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("configuration OK (good.yaml)"), "{stdout}");
    assert!(!root.exists(), "check-config touched the storage");
    // $CONFIG, as the service's environment file may set it.
    let out = run(d, &["check-config"], &[("CONFIG", "good.yaml")]);
    assert!(out.status.success());

    let cases: &[(&str, &str, &[&str])] = &[
        (
            "broken.yaml",
            "port: [1\n",
            &["broken.yaml", "invalid YAML"],
        ),
        ("unknown.yaml", "prot: 1\n", &["unknown.yaml", "\"prot\""]),
        (
            "badvalue.yaml",
            "port: banana\n",
            &["badvalue.yaml", "port", "banana"],
        ),
        (
            "unreadable.yaml",
            "basicauth:\n  user: u\n  passfile: /nonexistent/pass\n",
            &["basicauth.passfile", "/nonexistent/pass"],
        ),
        (
            "dirsecret.yaml",
            "basicauth: {user: u, passfile: .}\n",
            &["basicauth.passfile", "cannot read ."],
        ),
        (
            "s3secret.yaml",
            "storage: {backend: amazon, amazon: {bucket: b, endpoint: \"http://127.0.0.1:1\", secretkeyfile: /nonexistent/key}}\n",
            &["storage.amazon.secretkeyfile", "/nonexistent/key"],
        ),
        (
            "cacert.yaml",
            "storage: {backend: openstack, openstack: {container: c, auth: v1, cacert: good.yaml}}\n",
            &["good.yaml"],
        ),
    ];
    for (name, body, wants) in cases {
        std::fs::write(d.join(name), body).unwrap();
        let out = run(
            d,
            &["check-config", "-c", name],
            &[
                ("ST_AUTH", "http://127.0.0.1:1/auth/v1.0"),
                ("ST_USER", "u"),
                ("ST_KEY", "k"),
                ("AWS_ACCESS_KEY_ID", "a"),
            ],
        );
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(stderr.contains("check-config"), "{name}: {stderr}");
        for want in *wants {
            assert!(stderr.contains(want), "{name}: {want} not in {stderr}");
        }
    }
    let out = run(d, &["check-config", "-c", "missing.yaml"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("config file not found: missing.yaml"));
}

#[test]
fn check_config_reaches_storage_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let args = [
        "check-config",
        "--storage=amazon",
        "--storage-amazon-bucket=b",
        "--storage-amazon-endpoint=http://127.0.0.1:1",
        "--storage-amazon-retries=0",
    ];
    let env = [("AWS_ACCESS_KEY_ID", "a"), ("AWS_SECRET_ACCESS_KEY", "s")];
    let out = run(d, &args, &env);
    assert!(out.status.success(), "{}", text(&out).1);
    let mut with = args.to_vec();
    with.push("--check-storage");
    let out = run(d, &with, &env);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).1.contains("check-config: storage"),
        "{}",
        text(&out).1
    );
}

#[test]
fn show_config_origins_and_redaction() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("c.yaml"),
        "port: 9000\nbasicauth: {user: admin, pass: file-secret}\nartifact-hub-repo-id: {a: x}\n",
    )
    .unwrap();
    let out = run(
        d,
        &["show-config", "-c", "c.yaml", "--workers", "3"],
        &[("DEBUG", "true"), ("AWS_SECRET_ACCESS_KEY", "env-secret")],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    for line in [
        "port: 9000  # config file c.yaml",
        "workers: 3  # option --workers",
        "debug: true  # environment variable DEBUG",
        "writetimeout: 30  # default",
        "basicauth.user: \"admin\"  # config file c.yaml",
        "basicauth.pass: <redacted>  # config file c.yaml",
        "artifact-hub-repo-id: {a: x}  # config file c.yaml",
    ] {
        assert!(stdout.lines().any(|l| l == line), "{line} not in\n{stdout}");
    }
    assert!(!stdout.contains("file-secret") && !stdout.contains("env-secret"));
    // The output is a configuration file that loads to the same settings.
    std::fs::write(d.join("shown.yaml"), &stdout).unwrap();
    let shown = config::load(
        &config::parse_args(&argv(&["-c", d.join("shown.yaml").to_str().unwrap()])).unwrap(),
        &|_| None,
        None,
    )
    .unwrap();
    let original = config::load(
        &config::parse_args(&argv(&[
            "-c",
            d.join("c.yaml").to_str().unwrap(),
            "--workers=3",
            "--debug",
        ]))
        .unwrap(),
        &|_| None,
        None,
    )
    .unwrap();
    assert_eq!(shown.basic_pass, "<redacted>");
    assert_eq!(
        config::Config {
            file: None,
            basic_pass: String::new(),
            ..shown
        },
        config::Config {
            file: None,
            basic_pass: String::new(),
            ..original
        }
    );
    // A configuration that would not load is not shown.
    let out = run(d, &["show-config", "--port=banana"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
}

#[test]
fn completions_parse() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["completions", "bash"], &[]);
    assert!(out.status.success());
    let script = dir.path().join("chartroom.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    let check = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let bash = String::from_utf8_lossy(&out.stdout);
    assert!(bash.contains("--storage-amazon-bucket") && bash.contains("check-config"));
    for shell in ["zsh", "fish"] {
        let out = run(dir.path(), &["completions", shell], &[]);
        assert!(out.status.success() && out.stdout.len() > 1000, "{shell}");
    }
    let out = run(dir.path(), &["completions", "tcsh"], &[]);
    assert_eq!(out.status.code(), Some(1));
}

/// The flag forms of the subcommands stay.
#[test]
fn old_flag_forms_are_aliases() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert_eq!(
        run(d, &["--gen-config-example"], &[]).stdout,
        run(d, &["gen-config-example"], &[]).stdout
    );
    assert_eq!(
        run(d, &["--gen-config-example", "--port=1"], &[]).stdout,
        run(d, &["gen-config-example", "-port", "1"], &[]).stdout
    );
    assert_eq!(
        run(d, &["--gen-man-config"], &[]).stdout,
        run(d, &["gen-man"], &[]).stdout
    );
    let out = run(d, &["-v"], &[]);
    assert!(text(&out).0.starts_with("chartroom version "));
    let out = run(d, &["frobnicate"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("unexpected argument \"frobnicate\""));
}

/// A reader that goes away (`chartroom completions bash | head -1`) ends a one-shot command
/// quietly with status 0: no panic, no error line. The bash script (about 90 KB) is larger than
/// a pipe's buffer, so the writer meets the closed pipe whatever the timing.
#[test]
fn closed_stdout_ends_quietly() {
    let out = run(Path::new("."), &["completions", "bash"], &[]);
    assert!(out.stdout.len() > 128 * 1024 / 2, "{}", out.stdout.len());
    for args in [&["completions", "bash"][..], &["--help"], &["gen-man"]] {
        let mut child = Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {:?} {stderr}", out.status);
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}
