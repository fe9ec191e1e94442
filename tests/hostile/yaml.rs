//! Hostile input: YAML. Strings a Chart.yaml may hold that YAML forbids raw or folds (issue
//! 13, item 1) must come back unchanged from index.yaml (YAML and JSON forms), after upload and
//! after a cold start; scalars Helm reads with YAML 1.1 rules (item 14) are read as Helm reads
//! them, and such a chart is stored under Helm's name for it.

use http::StatusCode;
use proptest::prelude::*;

use crate::common::{Server, tgz};

/// One string per class of trouble.
const HOSTILE: &[&str] = &[
    "c0 \u{0}\u{1}\u{8}\u{b}\u{c}\u{1b}[31m\u{1f}",
    "tab\tcr\rlf\nend",
    "del \u{7f}",
    "c1 \u{80}\u{9f}",
    "nel \u{85} next",
    "ls \u{2028} ps \u{2029}",
    "bom \u{feff}",
    "nonchars \u{fffe}\u{ffff}",
    "astral \u{1f600} \u{10ffff}",
    " leading",
    "trailing ",
    "key: value",
    "# not a comment",
    "a #b",
    "yes",
    "null",
    "~",
    "\"quoted\" and \\",
    // Past YAML's 1024-character limit for implicit keys (an annotation key here).
    "long \u{85} long long long long long long long long long long long long long long long \
     long long long long long long long long long long long long long long long long long \
     long long long long long long long long long long long long long long long long long \
     long long long long long long long long long long long long long long long long long \
     long long long long long long long long long long long long long long long long long \
     long long long long long long long long long long long long long long long long long \
     long long long long long long long long long long long long long long long long long \
     long long long long long long long long long long long long long long long long long \
     long long long long long long long long long long long long long long long long long \
     long long long long long long long long long long long long long long long long long \
     long long long long long long long long long long long long long long long long long \
     long long long long long long long long long long long long long long long long long \
     long long long long long long long long long long long long long long long long long \
     long long long long long long long long long long long long long long long long long \
     long long long long long long long long long long long long long long long long long \
     long long long long long long long long long long long long long long long long long \
     long long long long long long long long long long long long long long long long end",
];

/// `s` as a double-quoted YAML scalar (chartroom's own escaper, checked separately in the
/// unit tests against serde_norway).
fn q(s: &str) -> String {
    chartroom::yaml::quoted(s)
}

/// A Chart.yaml carrying `s` in every string field that may hold any text.
fn chart_yaml(name: &str, s: &str) -> String {
    let v = q(s);
    // A long key is written in the explicit form, as YAML requires.
    let ann = if v.len() > 1000 {
        format!("? {v}\n  : {v}")
    } else {
        format!("{v}: {v}")
    };
    format!(
        "apiVersion: v2\nname: {name}\nversion: 1.0.0\ndescription: {v}\nhome: {v}\nicon: {v}\n\
         appVersion: {v}\nkubeVersion: {v}\ncondition: {v}\ntags: {v}\nkeywords: [{v}, plain]\n\
         sources: [{v}]\nmaintainers:\n  - name: {v}\n    email: {v}\n    url: {v}\n\
         annotations:\n  {ann}\n  other: {v}\ndependencies:\n  - name: dep\n    \
         version: {v}\n    repository: {v}\n    condition: {v}\n    tags: [{v}]\n"
    )
}

fn check_entry(e: &serde_json::Value, s: &str) {
    for f in [
        "description",
        "home",
        "icon",
        "appVersion",
        "kubeVersion",
        "condition",
        "tags",
    ] {
        if s.is_empty() {
            assert!(e.get(f).is_none_or(|v| v == ""), "{f}: {e}");
        } else {
            assert_eq!(e[f], s, "{f}");
        }
    }
    assert_eq!(e["keywords"][0], s);
    assert_eq!(e["sources"][0], s);
    assert_eq!(e["maintainers"][0]["name"], s);
    assert_eq!(e["maintainers"][0]["email"], s);
    assert_eq!(e["annotations"][s], s);
    assert_eq!(e["annotations"]["other"], s);
    assert_eq!(e["dependencies"][0]["repository"], s);
    assert_eq!(e["dependencies"][0]["tags"][0], s);
}

fn name_of(i: usize) -> String {
    format!("hostile{i}")
}

/// The classes, without the long key when `short_keys` (JSON has no explicit-key form, so a
/// YAML parser cannot read a JSON object key past 1024 characters; JSON parsers can).
fn classes(short_keys: bool) -> impl Iterator<Item = (usize, &'static str)> {
    HOSTILE
        .iter()
        .copied()
        .enumerate()
        .filter(move |(_, h)| !short_keys || h.len() < 1000)
}

async fn upload_all(s: &Server, short_keys: bool) {
    for (i, h) in classes(short_keys) {
        let name = name_of(i);
        let pkg = tgz(&[(&format!("{name}/Chart.yaml"), &chart_yaml(&name, h))]);
        let r = s.post("/api/charts", pkg).await;
        assert_eq!(r.status, StatusCode::CREATED, "{h:?}: {}", r.text());
    }
}

fn check_index(v: &serde_json::Value, short_keys: bool) {
    for (i, h) in classes(short_keys) {
        check_entry(&v["entries"][name_of(i)][0], h);
    }
}

/// Every class in every field, in the YAML index, after upload and after a cold start.
#[tokio::test]
async fn hostile_strings_survive_the_yaml_index() {
    let s = Server::new(&[]).await;
    upload_all(&s, false).await;
    let r = s.get("/index.yaml").await;
    assert_eq!(r.status, StatusCode::OK);
    // Nothing YAML forbids raw, no raw NEL/LS/PS/BOM.
    let text = r.text();
    for c in text.chars() {
        assert!(
            matches!(c, '\n' | '"' | '\\')
                || chartroom::yaml::quoted(&c.to_string()).chars().count() == 3,
            "raw {c:?} in index.yaml"
        );
    }
    check_index(&r.yaml(), false);
    let cold = Server::on(&s.root, &[]).await;
    check_index(&cold.get("/index.yaml").await.yaml(), false);
    // The JSON API shows the same strings.
    let api = s.get("/api/charts/hostile4").await.json();
    check_entry(&api[0], HOSTILE[4]);
}

/// The JSON index reads back as the same strings through a JSON parser and a YAML parser.
#[tokio::test]
async fn hostile_strings_survive_the_json_index() {
    let s = Server::new(&["--json-index"]).await;
    upload_all(&s, true).await;
    let r = s.get("/index.yaml").await;
    assert_eq!(r.status, StatusCode::OK);
    check_index(&r.json(), true);
    check_index(&r.yaml(), true);
    // With the long key too, JSON parsers read it unchanged.
    let s = Server::new(&["--json-index"]).await;
    upload_all(&s, false).await;
    check_index(&s.get("/index.yaml").await.json(), false);
}

/// The scalars measured with Helm 4's `repo index` (issue 13, item 14): the upload is accepted
/// and stored under Helm's name for it, and the index holds Helm's strings.
#[tokio::test]
async fn yaml11_scalars_are_read_as_helm_reads_them() {
    let s = Server::new(&[]).await;
    let chart_yaml = "apiVersion: v2\nname: quirk\nversion: 1.0\nappVersion: 1.10\n\
        description: 123\nkeywords: [true, 1e3, 0x1F, ~, 2024-01-01]\n\
        annotations: {a: 1.50, b: yes, c: on}\n";
    let r = s
        .post("/api/charts", tgz(&[("quirk/Chart.yaml", chart_yaml)]))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert!(s.root.join("quirk-1.tgz").is_file());
    for server in [&s, &Server::on(&s.root, &[]).await] {
        let v = server.get("/index.yaml").await.yaml();
        let e = &v["entries"]["quirk"][0];
        assert_eq!(e["version"], "1");
        assert_eq!(e["appVersion"], "1.1");
        assert_eq!(e["description"], "123");
        assert_eq!(
            e["keywords"],
            serde_json::json!(["true", "1000", "31", "", "2024-01-01"])
        );
        assert_eq!(
            e["annotations"],
            serde_json::json!({"a": "1.5", "b": "true", "c": "true"})
        );
        assert_eq!(e["urls"][0], "charts/quirk-1.tgz");
    }
    assert_eq!(s.get("/charts/quirk-1.tgz").await.status, StatusCode::OK);
    // A keyword `true` (477 of 10,000 charts in the report) no longer drops a chart.
    let r = s
        .post(
            "/api/charts",
            tgz(&[(
                "kw/Chart.yaml",
                "apiVersion: v2\nname: kw\nversion: 0.1.0\nkeywords: [true, false]\n",
            )]),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    // What Helm refuses stays refused, with a clear error.
    let r = s
        .post(
            "/api/charts",
            tgz(&[(
                "bad/Chart.yaml",
                "apiVersion: v2\nname: bad\nversion: 1.0.0\ndeprecated: 'yes'\n",
            )]),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(r.text().contains("deprecated"), "{}", r.text());
}

fn any_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            any::<char>(),
            prop::sample::select(vec![
                '\u{0}',
                '\t',
                '\n',
                '\r',
                '\u{7f}',
                '\u{85}',
                '\u{9f}',
                '\u{a0}',
                '\u{2028}',
                '\u{2029}',
                '\u{feff}',
                '\u{fffe}',
                '\u{ffff}',
                '\u{1f600}',
                ' ',
                ':',
                '#',
                '"',
                '\\',
                '\'',
                '-',
                '&',
                '*',
                '!',
            ]),
        ],
        0..16,
    )
    .prop_map(String::from_iter)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    /// Any string, written in Chart.yaml, read by chartroom, written to both index forms and
    /// read back by serde_norway (and serde_json), is the same string; keys too.
    #[test]
    fn any_string_survives_chart_yaml_and_index(key in any_text(), value in any_text()) {
        let text = format!(
            "name: p\nversion: 1.0.0\ndescription: {v}\nkeywords: [{v}]\nannotations:\n  {k}: {v}\n",
            v = q(&value),
            k = q(&key)
        );
        let md = chartroom::chart::Metadata::from_yaml(text.as_bytes()).unwrap();
        prop_assert_eq!(&md.description, &value);
        prop_assert_eq!(&md.annotations[&key], &value);
        for json in [false, true] {
            let mut idx = chartroom::index::RepoIndex::new(chartroom::index::Layout {
                url_prefix: "charts/".into(),
                context_path: String::new(),
                json,
            });
            let e = chartroom::index::Entry::new(&md, "d", 0, "p-1.0.0.tgz", "charts/p-1.0.0.tgz");
            idx.upsert("p-1.0.0.tgz", chartroom::index::Object {
                size: 1,
                modified_ns: 0,
                entry: Some(std::sync::Arc::new(e)),
            });
            let bytes = idx.pieces().to_vec();
            let v: serde_json::Value = serde_norway::from_slice(&bytes).unwrap();
            let e = &v["entries"]["p"][0];
            prop_assert_eq!(&e["keywords"][0], &serde_json::Value::String(value.clone()));
            prop_assert_eq!(&e["annotations"][&key], &serde_json::Value::String(value.clone()));
            if json {
                let j: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                prop_assert_eq!(&j, &v);
            }
        }
    }
}

/// A state file written by an older reader (format 1) may hold a chart it refused as
/// unreadable (`entry: null`): it is not trusted, so the chart is read again and listed.
#[tokio::test]
async fn charts_an_older_reader_refused_are_read_again() {
    let s = Server::new(&[]).await;
    let pkg = tgz(&[(
        "kw/Chart.yaml",
        "apiVersion: v2\nname: kw\nversion: 0.1.0\nkeywords: [true]\n",
    )]);
    assert_eq!(s.post("/api/charts", pkg).await.status, StatusCode::CREATED);
    s.app.registry.load().save_states().await;
    let state_path = s.root.join("chartroom-state.json");
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_path).expect("state file written")).unwrap();
    // This version writes a newer format than the reader that refused such charts.
    assert_ne!(state["format"], "chartroom-state/1");
    state["format"] = "chartroom-state/1".into();
    state["objects"]["kw-0.1.0.tgz"]["entry"] = serde_json::Value::Null;
    // The package is read again, not taken as unreadable.
    std::fs::write(&state_path, serde_json::to_vec(&state).unwrap()).unwrap();
    let cold = Server::on(&s.root, &[]).await;
    assert_eq!(cold.index_versions("/index.yaml").await, ["kw-0.1.0"]);
}
