//! Generated files are up to date with the config schema, and the example is valid.

use chartroom::api::VERSION;
use chartroom::config::{self, example};

fn root(p: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

#[test]
fn example_config_is_current() {
    let on_disk = std::fs::read_to_string(root("etc/chartroom.yaml")).unwrap();
    assert!(
        on_disk == example::example_yaml(&[]),
        "etc/chartroom.yaml is stale: run `cargo run -- --gen-config-example > etc/chartroom.yaml`"
    );
}

#[test]
fn config_man_page_is_current() {
    let on_disk = std::fs::read_to_string(root("man/chartroom.yaml.5")).unwrap();
    assert!(
        on_disk == example::man_page(VERSION),
        "man/chartroom.yaml.5 is stale: run `cargo run -- --gen-man-config > man/chartroom.yaml.5`"
    );
}

/// Uncommenting every key of the example gives exactly the defaults.
#[test]
fn uncommented_example_loads_as_defaults() {
    let text = example::example_yaml(&[]);
    let uncommented: String = text
        .lines()
        .filter_map(|l| {
            let body = l.strip_prefix('#')?;
            let key = body.split(':').next()?;
            (config::schema::find(key).is_some() && !body.starts_with(' '))
                .then(|| format!("{body}\n"))
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("all.yaml");
    std::fs::write(&f, &uncommented).unwrap();
    let args = config::parse_args(&["--config".to_string(), f.display().to_string()]).unwrap();
    let from_file = config::load(&args, &|_| None, None).unwrap();
    let defaults = config::load(&config::parse_args(&[]).unwrap(), &|_| None, None).unwrap();
    assert_eq!(from_file.file.as_deref(), Some(f.as_path()));
    assert_eq!(
        config::Config {
            file: None,
            ..from_file
        },
        defaults
    );
    let keys = uncommented.lines().count();
    assert!(keys > 40, "only {keys} keys uncommented");
}
