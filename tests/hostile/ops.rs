//! Hostile input: operations. Running out of file descriptors (the accept loop backs off, logs
//! once in a while, and recovers by itself), and configuration parsing of anything at all (a
//! configuration or an error naming the key, never a panic). The deadline on a hung object
//! store is tested beside its code (`storage::remote`, `storage::s3`) and end to end against
//! a frozen Swift and SeaweedFS (tests/swift, tests/s3).

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use chartroom::config::{self, schema::KEYS};
use proptest::prelude::*;

use crate::auth::{http, spawn_with, wait_for};

// ---------------------------------------------------------------------------------------------
// File descriptors
// ---------------------------------------------------------------------------------------------

fn accept_failures(log: &str) -> usize {
    log.lines().filter(|l| l.contains("accept failed")).count()
}

#[test]
fn out_of_file_descriptors_backs_off_logs_rarely_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("charts").display().to_string();
    const LIMIT: libc::rlim_t = 40;
    let p = spawn_with(
        dir.path(),
        &["--storage-local-rootdir", &root, "--read-timeout", "120"],
        |cmd| {
            // SAFETY: only setrlimit, which is async-signal-safe, between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    let lim = libc::rlimit {
                        rlim_cur: LIMIT,
                        rlim_max: LIMIT,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        },
    );
    wait_for("ready", Duration::from_secs(20), || {
        p.log().contains("ready")
    });
    assert_eq!(http(p.port, "GET", "/health", b"", None), 200);

    // Idle connections until the server has no descriptor left for another one (the rest
    // wait in the kernel's backlog).
    let mut idle = Vec::new();
    for _ in 0..(LIMIT as usize + 30) {
        idle.push(TcpStream::connect(("127.0.0.1", p.port)).unwrap());
    }
    wait_for("accepts fail", Duration::from_secs(10), || {
        accept_failures(&p.log()) > 0
    });
    let at = accept_failures(&p.log());
    std::thread::sleep(Duration::from_secs(3));
    let log = p.log();
    let during = accept_failures(&log) - at;
    // Before: a warning every 50 ms (60 in 3 s). Now: one per 10 s.
    assert!(
        during <= 1,
        "{during} more accept failures logged in 3 s:\n{log}"
    );
    assert!(log.contains("Too many open files"), "{log}");
    assert!(p.child.id() > 0);

    // Descriptors free up: the server accepts again by itself.
    drop(idle);
    let t = Instant::now();
    wait_for("GET /health answers again", Duration::from_secs(15), || {
        let mut s = match TcpStream::connect(("127.0.0.1", p.port)) {
            Ok(s) => s,
            Err(_) => return false,
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        use std::io::{Read, Write};
        if s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        out.starts_with(b"HTTP/1.1 200")
    });
    assert!(t.elapsed() < Duration::from_secs(15));
    assert_eq!(http(p.port, "GET", "/index.yaml", b"", None), 200);
    assert!(
        p.log().contains("accepting connections again"),
        "{}",
        p.log()
    );
}

// ---------------------------------------------------------------------------------------------
// Configuration parsing: anything in, a configuration or an error naming the key out
// ---------------------------------------------------------------------------------------------

/// Values a key might be given: anything, and things close to valid ones.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,30}",
        any::<String>().prop_map(|s| s.chars().take(30).collect()),
        "[0-9]{1,30}",
        "[0-9.]{1,12}(ns|us|µs|ms|s|m|h|x|)",
        "-?[0-9]{1,25}[hms]?",
        "[1-9][0-9]{15,25}(h|m|s|ms)",
        Just(String::new()),
        Just("true".to_string()),
        Just("openstack".to_string()),
        Just("amazon".to_string()),
        Just("local".to_string()),
    ]
}

/// Any key, with the typed ones (numbers, durations, booleans) more often.
fn key_index() -> impl Strategy<Value = usize> {
    let typed: Vec<usize> = (0..KEYS.len())
        .filter(|i| KEYS[*i].kind != config::schema::Kind::Str)
        .collect();
    prop_oneof![0..KEYS.len(), proptest::sample::select(typed)]
}

/// Whether an error message names one of `names` (a key, its flag or its variable), or a
/// flag (`Missing required flags(s): --storage-...` names the one to add).
fn names_one(msg: &str, names: &[String]) -> bool {
    !msg.is_empty() && (names.iter().any(|n| msg.contains(n.as_str())) || msg.contains("--"))
}

fn all_names(keys: &[usize]) -> Vec<String> {
    keys.iter()
        .flat_map(|i| {
            let k = &KEYS[*i];
            [
                k.key.to_string(),
                format!("--{}", k.flag),
                k.env.to_string(),
            ]
        })
        .collect()
}

fn load(args: &[String], env: &[(String, String)]) -> Result<config::Config, String> {
    let parsed = config::parse_args(args).map_err(|e| e.to_string())?;
    let lookup = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    config::load(&parsed, &lookup, None).map_err(|e| e.to_string())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_as_a_config_file(text in proptest::collection::vec(any::<u8>(), 0..400)) {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.yaml");
        std::fs::write(&f, &text).unwrap();
        let fs = f.display().to_string();
        if let Err(e) = load(&["-c".into(), fs.clone()], &[]) {
            prop_assert!(!e.is_empty());
            prop_assert!(e.contains(&fs) || e.contains("--") || e.contains("storage"), "{}", e);
        }
    }

    #[test]
    fn any_values_in_a_config_file(
        pairs in proptest::collection::vec((key_index(), value(), any::<bool>()), 1..6),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.yaml");
        let mut yaml = String::new();
        for (i, v, quoted) in &pairs {
            let v = if *quoted { serde_json::to_string(v).unwrap() } else { v.clone() };
            yaml.push_str(&format!("{}: {v}\n", KEYS[*i].key));
        }
        std::fs::write(&f, &yaml).unwrap();
        let fs = f.display().to_string();
        let keys: Vec<usize> = pairs.iter().map(|p| p.0).collect();
        let mut names = all_names(&keys);
        names.push(fs.clone());
        if let Err(e) = load(&["-c".into(), fs], &[]) {
            prop_assert!(names_one(&e, &names), "{} does not name any of {:?}\n{}", e, names, yaml);
        }
    }

    #[test]
    fn any_values_as_flags(pairs in proptest::collection::vec((key_index(), value()), 1..6)) {
        let args: Vec<String> = pairs
            .iter()
            .map(|(i, v)| format!("--{}={v}", KEYS[*i].flag))
            .collect();
        let keys: Vec<usize> = pairs.iter().map(|p| p.0).collect();
        if let Err(e) = load(&args, &[]) {
            let names = all_names(&keys);
            prop_assert!(names_one(&e, &names), "{} does not name any of {:?}", e, names);
        }
    }

    #[test]
    fn any_values_as_environment_variables(
        pairs in proptest::collection::vec((key_index(), value()), 1..6),
    ) {
        let env: Vec<(String, String)> = pairs
            .iter()
            .map(|(i, v)| (KEYS[*i].env.to_string(), v.clone()))
            .collect();
        let keys: Vec<usize> = pairs.iter().map(|p| p.0).collect();
        if let Err(e) = load(&[], &env) {
            let names = all_names(&keys);
            prop_assert!(names_one(&e, &names), "{} does not name any of {:?}", e, names);
        }
    }

    #[test]
    fn durations_of_any_size(
        key in proptest::sample::select(
            KEYS.iter().filter(|k| k.kind == config::schema::Kind::Duration).collect::<Vec<_>>()
        ),
        v in "[0-9]{1,40}(\\.[0-9]{1,5})?(ns|us|ms|s|m|h){1,3}",
    ) {
        let mut args = vec![format!("--{}={v}", key.flag)];
        if key.key.starts_with("storage.openstack.") {
            args.extend(["--storage=openstack", "--storage-openstack-container=c",
                "--storage-openstack-auth=v1"].map(String::from));
        } else if key.key.starts_with("storage.amazon.") {
            args.extend(["--storage=amazon", "--storage-amazon-bucket=b",
                "--storage-amazon-region=r"].map(String::from));
        }
        if let Err(e) = load(&args, &[]) {
            prop_assert!(e.contains(key.key), "{} does not name {}", e, key.key);
        }
    }

    #[test]
    fn any_command_line(args in proptest::collection::vec("\\PC{0,20}", 0..8)) {
        // Errors only; whatever it is, no panic.
        if let Ok(parsed) = config::parse_args(&args) {
            let _ = config::load(&parsed, &|_| None, None);
        }
    }
}
