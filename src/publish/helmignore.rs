//! `.helmignore` rules as Helm applies them while packaging a chart directory.
//!
//! One rule a line (a line ends at `\n`, a trailing `\r` dropped, a UTF-8 byte-order mark
//! dropped from the first line), surrounding white space trimmed; blank lines and lines
//! starting with `#` are skipped; `**` is refused; a rule must be a valid Go
//! `filepath.Match` pattern. A leading `!` negates, a trailing `/` makes the rule apply to
//! directories only, a leading `/` anchors it at the chart's top (the same as any rule with a
//! `/` in it: those match the whole relative path); a rule without `/` matches the last path
//! element only. Helm always adds `templates/.?*` (dot files in `templates/`) after the file's
//! rules.
//!
//! Rules are tried in order and the first that decides wins. A plain rule ignores what it
//! matches. A negated rule is Helm's own reading of negation: it *ignores* every path it does
//! not match (and, when it is a directory rule, every file), and lets evaluation go on to the
//! next rule for the paths it does match.

/// A `.helmignore` line longer than this is an error, as Go's `bufio.Scanner` refuses it.
pub const MAX_LINE: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IgnoreError {
    #[error("double-star (**) syntax is not supported (line {line})")]
    DoubleStar { line: usize },
    #[error("syntax error in pattern {pattern:?} (line {line})")]
    BadPattern { line: usize, pattern: String },
    #[error("line {line} is longer than {MAX_LINE} bytes")]
    LineTooLong { line: usize },
}

/// The pattern is malformed (Go's `filepath.ErrBadPattern`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadPattern;

#[derive(Debug, Clone)]
struct Rule {
    pattern: String,
    negate: bool,
    must_dir: bool,
    /// Matched against the last path element only.
    base_only: bool,
}

/// A parsed rule set; [`Rules::default`] is empty.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    rules: Vec<Rule>,
}

/// The rule Helm always adds.
pub const DEFAULT_RULE: &str = "templates/.?*";

impl Rules {
    /// Parses a `.helmignore` file's contents.
    pub fn parse(data: &[u8]) -> Result<Rules, IgnoreError> {
        let mut rules = Rules::default();
        let data = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
        if data.is_empty() {
            return Ok(rules);
        }
        let body = data.strip_suffix(b"\n").unwrap_or(data);
        for (i, line) in body.split(|&b| b == b'\n').enumerate() {
            let line_no = i + 1;
            if line.len() > MAX_LINE {
                return Err(IgnoreError::LineTooLong { line: line_no });
            }
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let text = String::from_utf8_lossy(line);
            rules.add(&text, line_no)?;
        }
        Ok(rules)
    }

    /// The rules plus Helm's default rule, as the directory loader uses them.
    pub fn with_defaults(mut self) -> Rules {
        // The default rule is valid; it cannot fail.
        let _ = self.add(DEFAULT_RULE, 0);
        self
    }

    fn add(&mut self, raw: &str, line: usize) -> Result<(), IgnoreError> {
        let rule = go_trim_space(raw);
        if rule.is_empty() || rule.starts_with('#') {
            return Ok(());
        }
        if rule.contains("**") {
            return Err(IgnoreError::DoubleStar { line });
        }
        if go_match(rule, "abc").is_err() {
            return Err(IgnoreError::BadPattern {
                line,
                pattern: rule.to_string(),
            });
        }
        let (negate, rest) = match rule.strip_prefix('!') {
            Some(r) => (true, r),
            None => (false, rule),
        };
        let (must_dir, rest) = match rest.strip_suffix('/') {
            Some(r) => (true, r),
            None => (false, rest),
        };
        let (pattern, base_only) = match rest.strip_prefix('/') {
            Some(r) => (r, false),
            None => (rest, !rest.contains('/')),
        };
        self.rules.push(Rule {
            pattern: pattern.to_string(),
            negate,
            must_dir,
            base_only,
        });
        Ok(())
    }

    /// Whether the path (relative to the chart's top, `/`-separated) is ignored.
    pub fn ignore(&self, path: &str, is_dir: bool) -> bool {
        if path.is_empty() || path == "." || path == "./" {
            return false;
        }
        for r in &self.rules {
            let name = if r.base_only { go_base(path) } else { path };
            // A pattern that fails while matching counts as no match, as in Helm.
            let matched = go_match(&r.pattern, name).unwrap_or(false);
            if r.negate {
                if r.must_dir && !is_dir {
                    return true;
                }
                if !matched {
                    return true;
                }
                continue;
            }
            if r.must_dir && !is_dir {
                continue;
            }
            if matched {
                return true;
            }
        }
        false
    }
}

/// Go's `strings.TrimSpace`: Unicode white space on both ends.
fn go_trim_space(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace())
}

/// Go's `filepath.Base` on a `/`-separated path.
fn go_base(path: &str) -> &str {
    let p = path.trim_end_matches('/');
    if p.is_empty() {
        return if path.is_empty() { "." } else { "/" };
    }
    match p.rfind('/') {
        Some(i) => &p[i + 1..],
        None => p,
    }
}

/// Go's `path/filepath.Match` (Unix): `*` any run of non-`/` characters, `?` one non-`/`
/// character, `[...]` a class (`^` negates, `a-z` ranges, `\` escapes), `\` escapes. The whole
/// name must match. A malformed pattern is an error (found even after a mismatch, as Go
/// checks the rest of the pattern).
pub fn go_match(pattern: &str, name: &str) -> Result<bool, BadPattern> {
    let mut pattern = pattern.as_bytes();
    let mut name = name.as_bytes();
    'outer: while !pattern.is_empty() {
        let (star, chunk, rest) = scan_chunk(pattern);
        pattern = rest;
        if star && chunk.is_empty() {
            return Ok(!name.contains(&b'/'));
        }
        let (t, ok, err) = match_chunk(chunk, name);
        if ok && (t.is_empty() || !pattern.is_empty()) {
            name = t;
            continue;
        }
        if err {
            return Err(BadPattern);
        }
        if star {
            let mut i = 0;
            while i < name.len() && name[i] != b'/' {
                let (t, ok, err) = match_chunk(chunk, &name[i + 1..]);
                if ok {
                    if pattern.is_empty() && !t.is_empty() {
                        i += 1;
                        continue;
                    }
                    name = t;
                    continue 'outer;
                }
                if err {
                    return Err(BadPattern);
                }
                i += 1;
            }
        }
        while !pattern.is_empty() {
            let (_, chunk, rest) = scan_chunk(pattern);
            pattern = rest;
            if match_chunk(chunk, b"").2 {
                return Err(BadPattern);
            }
        }
        return Ok(false);
    }
    Ok(name.is_empty())
}

fn scan_chunk(mut pattern: &[u8]) -> (bool, &[u8], &[u8]) {
    let mut star = false;
    while let Some(rest) = pattern.strip_prefix(b"*") {
        pattern = rest;
        star = true;
    }
    let mut in_range = false;
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            // An escape skips the next byte (a trailing one is an error found later).
            b'\\' if i + 1 < pattern.len() => i += 1,
            b'[' => in_range = true,
            b']' => in_range = false,
            b'*' if !in_range => break,
            _ => {}
        }
        i += 1;
    }
    (star, &pattern[..i], &pattern[i..])
}

/// Decodes one UTF-8 character as Go's `utf8.DecodeRune` does: (rune, width), an invalid
/// byte is U+FFFD of width 1; an empty input is (U+FFFD, 0).
fn decode_rune(s: &[u8]) -> (u32, usize) {
    if s.is_empty() {
        return (0xFFFD, 0);
    }
    let w = match s[0] {
        0x00..=0x7F => return (s[0] as u32, 1),
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return (0xFFFD, 1),
    };
    match s.get(..w).and_then(|b| std::str::from_utf8(b).ok()) {
        Some(c) => (c.chars().next().map_or(0xFFFD, |c| c as u32), w),
        None => (0xFFFD, 1),
    }
}

/// Returns (rest, matched, malformed).
fn match_chunk<'a>(mut chunk: &[u8], mut s: &'a [u8]) -> (&'a [u8], bool, bool) {
    let mut failed = false;
    while !chunk.is_empty() {
        if !failed && s.is_empty() {
            failed = true;
        }
        match chunk[0] {
            b'[' => {
                let mut r = 0u32;
                if !failed {
                    let (c, n) = decode_rune(s);
                    r = c;
                    s = &s[n..];
                }
                chunk = &chunk[1..];
                let mut negated = false;
                if chunk.first() == Some(&b'^') {
                    negated = true;
                    chunk = &chunk[1..];
                }
                let mut matched = false;
                let mut nrange = 0;
                loop {
                    if chunk.first() == Some(&b']') && nrange > 0 {
                        chunk = &chunk[1..];
                        break;
                    }
                    let Some((lo, rest)) = get_esc(chunk) else {
                        return (b"", false, true);
                    };
                    chunk = rest;
                    let mut hi = lo;
                    if chunk[0] == b'-' {
                        let Some((h, rest)) = get_esc(&chunk[1..]) else {
                            return (b"", false, true);
                        };
                        hi = h;
                        chunk = rest;
                    }
                    if lo <= r && r <= hi {
                        matched = true;
                    }
                    nrange += 1;
                }
                if matched == negated {
                    failed = true;
                }
            }
            b'?' => {
                if !failed {
                    if s[0] == b'/' {
                        failed = true;
                    }
                    let (_, n) = decode_rune(s);
                    s = &s[n..];
                }
                chunk = &chunk[1..];
            }
            c => {
                let c = if c == b'\\' {
                    chunk = &chunk[1..];
                    match chunk.first() {
                        Some(&c) => c,
                        None => return (b"", false, true),
                    }
                } else {
                    c
                };
                if !failed {
                    if c != s[0] {
                        failed = true;
                    }
                    s = &s[1..];
                }
                chunk = &chunk[1..];
            }
        }
    }
    if failed {
        return (b"", false, false);
    }
    (s, true, false)
}

/// One (possibly escaped) character of a class; `None` when malformed. The rest is never
/// empty on success.
fn get_esc(mut chunk: &[u8]) -> Option<(u32, &[u8])> {
    match chunk.first() {
        None | Some(b'-') | Some(b']') => return None,
        Some(b'\\') => {
            chunk = &chunk[1..];
            if chunk.is_empty() {
                return None;
            }
        }
        _ => {}
    }
    let (r, n) = decode_rune(chunk);
    if r == 0xFFFD && n == 1 {
        return None;
    }
    let rest = &chunk[n..];
    if rest.is_empty() {
        return None;
    }
    Some((r, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rules(text: &str) -> Rules {
        Rules::parse(text.as_bytes()).unwrap().with_defaults()
    }

    #[test]
    fn go_match_basics() {
        assert_eq!(go_match("*.txt", "a.txt"), Ok(true));
        assert_eq!(go_match("*.txt", "d/a.txt"), Ok(false));
        assert_eq!(go_match("a?c", "abc"), Ok(true));
        assert_eq!(go_match("a?c", "a/c"), Ok(false));
        assert_eq!(go_match("[a-c]x", "bx"), Ok(true));
        assert_eq!(go_match("[^a-c]x", "bx"), Ok(false));
        assert_eq!(go_match("[^a-c]x", "dx"), Ok(true));
        assert_eq!(go_match("\\*", "*"), Ok(true));
        assert_eq!(go_match("*", "a/b"), Ok(false));
        assert_eq!(go_match("a/*", "a/b"), Ok(true));
        assert_eq!(go_match("templates/.?*", "templates/.x"), Ok(true));
        assert_eq!(go_match("templates/.?*", "templates/."), Ok(false));
        assert_eq!(go_match("[", "a"), Err(BadPattern));
        assert_eq!(go_match("a[", "b"), Err(BadPattern));
        assert_eq!(go_match("[]", "a"), Err(BadPattern));
        assert_eq!(go_match("x\\", "x"), Err(BadPattern));
        assert_eq!(go_match("[a-]", "a"), Err(BadPattern));
        assert_eq!(go_match("é?", "éa"), Ok(true));
        assert_eq!(go_match("?", "é"), Ok(true));
    }

    #[test]
    fn comments_blanks_and_globs() {
        let r = rules("# comment\n\n   \n*.swp\n  *.bak  \r\n.git/\n");
        assert!(r.ignore("a.swp", false));
        assert!(r.ignore("templates/x.bak", false));
        assert!(r.ignore(".git", true));
        assert!(!r.ignore(".git", false), "a directory rule skips files");
        assert!(!r.ignore("# comment", false));
        assert!(!r.ignore("values.yaml", false));
        // The default rule.
        assert!(r.ignore("templates/.hidden", false));
        assert!(!r.ignore(".hidden", false));
        assert!(!r.ignore("templates/a/.hidden", false));
    }

    #[test]
    fn nested_paths_and_anchors() {
        let r = rules("docs/*.md\n/top.txt\nsecret\n");
        assert!(r.ignore("docs/a.md", false));
        assert!(!r.ignore("x/docs/a.md", false));
        assert!(r.ignore("top.txt", false));
        assert!(!r.ignore("sub/top.txt", false));
        assert!(r.ignore("sub/deep/secret", false));
        assert!(r.ignore("secret", true));
    }

    #[test]
    fn negation_is_helms() {
        // A negated rule ignores everything it does not match, and lets what it matches go
        // on to the next rules.
        let r = rules("!keep.txt\n");
        assert!(!r.ignore("keep.txt", false));
        assert!(r.ignore("other.txt", false));
        assert!(r.ignore("templates", true));
        let r = rules("*.txt\n!keep.txt\n");
        assert!(r.ignore("keep.txt", false), "the first rule decides");
        let r = rules("!templates/\n");
        assert!(
            r.ignore("Chart.yaml", false),
            "negated directory rule ignores files"
        );
        assert!(!r.ignore("templates", true));
    }

    #[test]
    fn refusals() {
        assert_eq!(
            Rules::parse(b"a\n**/x\n").unwrap_err(),
            IgnoreError::DoubleStar { line: 2 }
        );
        assert!(matches!(
            Rules::parse(b"[x\n").unwrap_err(),
            IgnoreError::BadPattern { line: 1, .. }
        ));
        let long = format!("{}\n", "a".repeat(MAX_LINE + 1));
        assert_eq!(
            Rules::parse(long.as_bytes()).unwrap_err(),
            IgnoreError::LineTooLong { line: 1 }
        );
        // A BOM on the first line is dropped.
        let r = Rules::parse(b"\xEF\xBB\xBF*.x\n").unwrap();
        assert!(r.ignore("a.x", false));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        #[test]
        fn arbitrary_rules_never_panic(
            text in prop::collection::vec(
                prop_oneof![
                    any::<u8>(),
                    prop::sample::select(b"*?[]^-\\/!#\n\r .ab".to_vec()),
                ],
                0..80,
            ),
            path in "[a-c/.\\[\\]*?\\\\\u{e9}\u{0}-\u{1f}]{0,12}",
            is_dir in any::<bool>(),
        ) {
            if let Ok(r) = Rules::parse(&text) {
                let r = r.with_defaults();
                let _ = r.ignore(&path, is_dir);
            }
            let pat = String::from_utf8_lossy(&text);
            let _ = go_match(&pat, &path);
        }
    }
}
