//! Generated documentation of the configuration: the example `chartroom.yaml` (every key,
//! commented, at its default) and the key list of the `chartroom.yaml(5)` man page.

use super::schema::{KEYS, Key, Kind, Reload, Support};

fn yaml_scalar(kind: Kind, v: &str) -> String {
    match kind {
        Kind::Bool | Kind::Int => v.to_string(),
        Kind::Map if v.is_empty() => "{}".to_string(),
        _ if v.is_empty() => "\"\"".to_string(),
        _ => match serde_norway::to_string(v) {
            Ok(s) => s.trim_end().to_string(),
            Err(_) => format!("{v:?}"),
        },
    }
}

fn describe(key: &Key) -> String {
    let mut line = format!(
        "{} ({}; env {}; flag --{}",
        key.key,
        key.kind.name(),
        key.env,
        key.flag
    );
    if key.reload == Reload::Restart {
        line.push_str("; needs a restart");
    }
    line.push(')');
    line
}

fn wrap(text: &str, width: usize, prefix: &str, out: &mut String) {
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + word.len() + 1 > width {
            out.push_str(prefix);
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        out.push_str(prefix);
        out.push_str(&line);
        out.push('\n');
    }
}

/// The example configuration. Keys in `set` are written uncommented with the given value
/// (how the Debian package makes its own defaults); all others are commented at their default.
pub fn example_yaml(set: &[(&str, String)]) -> String {
    let mut out = String::new();
    out.push_str(
        "# chartroom configuration file (YAML).\n\
         #\n\
         # Every key is listed below with its type, environment variable and command-line flag,\n\
         # commented out at its default value. Values are taken, from lowest to highest\n\
         # precedence, from the defaults, this file, the environment, and the command line.\n\
         # Keys may be written dotted (storage.backend: local) or nested (storage: {backend:\n\
         # local}). ChartMuseum's chartmuseum.yaml keys are accepted unchanged.\n\
         # `systemctl reload chartroom` (SIGHUP) re-reads this file; keys marked \"needs a\n\
         # restart\" keep their old value until the service restarts.\n",
    );
    for key in KEYS {
        if key.support == Support::No {
            continue;
        }
        out.push_str("\n# ");
        out.push_str(&describe(key));
        out.push('\n');
        wrap(key.help, 86, "#   ", &mut out);
        match set.iter().find(|(k, _)| *k == key.key) {
            Some((_, v)) => {
                out.push_str(&format!("{}: {}\n", key.key, yaml_scalar(key.kind, v)));
            }
            None => out.push_str(&format!(
                "#{}: {}\n",
                key.key,
                yaml_scalar(key.kind, key.default)
            )),
        }
    }
    out.push_str(
        "\n# Also accepted, for ChartMuseum compatibility, but refused when set to anything other\n\
         # than their default (the feature is not in chartroom):\n",
    );
    let names: Vec<&str> = KEYS
        .iter()
        .filter(|k| k.support == Support::No)
        .map(|k| k.key)
        .collect();
    wrap(&names.join(", "), 86, "#   ", &mut out);
    out
}

/// troff escaping for man page text.
pub fn roff(text: &str) -> String {
    let t = text.replace('\\', "\\e").replace('-', "\\-");
    if t.starts_with('.') || t.starts_with('\'') {
        format!("\\&{t}")
    } else {
        t
    }
}

/// The `chartroom.yaml(5)` man page.
pub fn man_page(version: &str) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        ".TH CHARTROOM.YAML 5 \"\" \"chartroom {version}\" \"File Formats\"\n"
    ));
    out.push_str(".SH NAME\nchartroom.yaml \\- configuration file of the chartroom Helm chart repository server\n");
    out.push_str(".SH SYNOPSIS\n/etc/chartroom/chartroom.yaml\n");
    out.push_str(".SH DESCRIPTION\n");
    out.push_str(
        "A YAML mapping of configuration keys. Keys may be written dotted\n\
         (\\fBstorage.backend: local\\fR) or nested. Every key can also be given as an\n\
         environment variable or a command\\-line option of \\fBchartroom\\fR(8); the command line\n\
         wins over the environment, which wins over this file, which wins over the defaults.\n\
         Unknown keys and values of the wrong type are errors: the server does not start, and a\n\
         reload keeps the running configuration.\n\
         .PP\n\
         Durations are written like \\fB60s\\fR, \\fB5m\\fR or \\fB1h30m\\fR (a bare number means seconds).\n\
         Keys marked \\fIneeds a restart\\fR are read at start\\-up only.\n",
    );
    out.push_str(".SH KEYS\n");
    for key in KEYS.iter().filter(|k| k.support != Support::No) {
        out.push_str(".TP\n");
        out.push_str(&format!(
            "\\fB{}\\fR ({}, default \\fB{}\\fR)\n",
            roff(key.key),
            key.kind.name(),
            if key.default.is_empty() {
                "\"\"".to_string()
            } else {
                roff(key.default)
            }
        ));
        let mut text = roff(key.help);
        text.push_str(&format!(
            " Environment: \\fB{}\\fR; option: \\fB\\-\\-{}\\fR.",
            key.env,
            roff(key.flag)
        ));
        if key.reload == Reload::Restart {
            text.push_str(" Needs a restart.");
        }
        if key.support == Support::Ignored {
            text.push_str(" Accepted for compatibility only.");
        }
        out.push_str(&text);
        out.push('\n');
    }
    out.push_str(".SH UNSUPPORTED CHARTMUSEUM KEYS\n");
    out.push_str(
        "These ChartMuseum keys are accepted so that an existing file loads, but setting them to\n\
         anything other than their default is an error, because chartroom lacks the feature:\n",
    );
    let names: Vec<String> = KEYS
        .iter()
        .filter(|k| k.support == Support::No)
        .map(|k| roff(k.key))
        .collect();
    out.push_str(&names.join(", "));
    out.push_str(".\n");
    out.push_str(".SH FILES\n.TP\n/etc/chartroom/chartroom.yaml\nThe file read when no \\fB\\-\\-config\\fR option or \\fBCONFIG\\fR variable names another.\n");
    out.push_str(".SH SEE ALSO\n\\fBchartroom\\fR(8)\n");
    out
}

/// Keys whose values are secrets: `show-config` prints them redacted.
pub const SECRET_KEYS: &[&str] = &["basicauth.pass", "cache.redis.password"];

/// What `show-config` prints instead of a secret.
pub const REDACTED: &str = "<redacted>";

fn map_yaml(v: &str) -> String {
    let pairs: Vec<String> = v
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|item| {
            let (k, id) = item.split_once('=').unwrap_or(("", item));
            format!(
                "{}: {}",
                yaml_scalar(Kind::Str, k),
                yaml_scalar(Kind::Str, id)
            )
        })
        .collect();
    format!("{{{}}}", pairs.join(", "))
}

/// `chartroom show-config`: every key with its effective value and, in a comment, where the
/// value came from. The output is itself a valid configuration file (secrets aside).
pub fn show_config(file: Option<&std::path::Path>, values: &[super::Effective]) -> String {
    let mut out = format!(
        "# chartroom effective configuration (config file: {})\n\
         # Each value's origin: default, config file, environment variable or option.\n",
        file.map_or("none".to_string(), |f| f.display().to_string())
    );
    for e in values {
        let value = if SECRET_KEYS.contains(&e.key.key) && !e.value.is_empty() {
            yaml_scalar(Kind::Str, REDACTED)
        } else if e.key.kind == Kind::Map {
            map_yaml(&e.value)
        } else if matches!(e.key.kind, Kind::Bool | Kind::Int)
            && !e.value.is_empty()
            && e.value.chars().all(|c| c.is_ascii_alphanumeric())
        {
            e.value.clone()
        } else {
            serde_json::to_string(&e.value).unwrap_or_else(|_| "\"\"".into())
        };
        let origin = e.origin.replace(['\n', '\r'], " ");
        out.push_str(&format!("{}: {value}  # {origin}\n", e.key.key));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_lists_every_supported_key_and_parses() {
        let text = example_yaml(&[("port", "9000".to_string())]);
        for key in KEYS.iter().filter(|k| k.support != Support::No) {
            assert!(
                text.contains(&format!("{}:", key.key)),
                "{} missing",
                key.key
            );
            assert!(text.contains(key.env), "{} missing", key.env);
        }
        let v: serde_json::Value = serde_norway::from_str(&text).unwrap();
        assert_eq!(v["port"], 9000);
    }
}
