//! Chart versions as Helm reads them (Masterminds semver rules): an optional `v` prefix,
//! short forms such as `1` or `1.2`, prereleases that sort below their release, and build
//! metadata that does not take part in ordering. Also the constraint language Helm accepts for
//! `helm pull --version` (`^1.2`, `~0.1`, `>=1, <2`, `1.2.x`, `1.0 - 2.0`, `a || b`).

use std::cmp::Ordering;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    pub pre: Vec<PreId>,
    pub build: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreId {
    Num(u64),
    Alpha(String),
}

impl PartialOrd for PreId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PreId {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (PreId::Num(a), PreId::Num(b)) => a.cmp(b),
            (PreId::Num(_), PreId::Alpha(_)) => Ordering::Less,
            (PreId::Alpha(_), PreId::Num(_)) => Ordering::Greater,
            (PreId::Alpha(a), PreId::Alpha(b)) => a.cmp(b),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct VersionError(pub String);

fn ident_ok(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn parse_num(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl Version {
    /// Parses a version the way Helm's chart validation does (non-strict Masterminds rules).
    pub fn parse(input: &str) -> Result<Version, VersionError> {
        let bad = || VersionError(format!("invalid semantic version: {input:?}"));
        let s = input.strip_prefix('v').unwrap_or(input);
        let (rest, build) = match s.split_once('+') {
            Some((r, b)) => {
                if !b.split('.').all(ident_ok) {
                    return Err(bad());
                }
                (r, b.to_string())
            }
            None => (s, String::new()),
        };
        let (core, pre) = match rest.split_once('-') {
            Some((c, p)) => (c, Some(p)),
            None => (rest, None),
        };
        let mut nums = core.split('.');
        let major = nums.next().and_then(parse_num).ok_or_else(bad)?;
        let minor = match nums.next() {
            Some(n) => parse_num(n).ok_or_else(bad)?,
            None => 0,
        };
        let patch = match nums.next() {
            Some(n) => parse_num(n).ok_or_else(bad)?,
            None => 0,
        };
        if nums.next().is_some() {
            return Err(bad());
        }
        let mut pre_ids = Vec::new();
        if let Some(p) = pre {
            for part in p.split('.') {
                if !ident_ok(part) {
                    return Err(bad());
                }
                match parse_num(part) {
                    Some(n) => {
                        if part.len() > 1 && part.starts_with('0') {
                            return Err(bad());
                        }
                        pre_ids.push(PreId::Num(n));
                    }
                    None => pre_ids.push(PreId::Alpha(part.to_string())),
                }
            }
        }
        Ok(Version {
            major,
            minor,
            patch,
            pre: pre_ids,
            build,
        })
    }

    pub fn is_prerelease(&self) -> bool {
        !self.pre.is_empty()
    }

    fn triple(&self) -> (u64, u64, u64) {
        (self.major, self.minor, self.patch)
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version {
    /// Semver precedence; build metadata does not count.
    fn cmp(&self, other: &Self) -> Ordering {
        self.triple().cmp(&other.triple()).then_with(|| {
            match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => self.pre.cmp(&other.pre),
            }
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        for (i, p) in self.pre.iter().enumerate() {
            f.write_str(if i == 0 { "-" } else { "." })?;
            match p {
                PreId::Num(n) => write!(f, "{n}")?,
                PreId::Alpha(a) => f.write_str(a)?,
            }
        }
        if !self.build.is_empty() {
            write!(f, "+{}", self.build)?;
        }
        Ok(())
    }
}

/// Orders two version strings newest first, as Helm sorts index entries: versions that do not
/// parse go to the end, in reverse string order so the result is deterministic.
pub fn cmp_desc(a: &str, b: &str) -> Ordering {
    match (Version::parse(a), Version::parse(b)) {
        (Ok(x), Ok(y)) => y.cmp(&x).then_with(|| b.cmp(a)),
        (Ok(_), Err(_)) => Ordering::Less,
        (Err(_), Ok(_)) => Ordering::Greater,
        (Err(_), Err(_)) => b.cmp(a),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

/// A partially given version in a constraint: `1`, `1.2`, `1.2.x`, `*`.
#[derive(Debug, Clone)]
struct Partial {
    major: Option<u64>,
    minor: Option<u64>,
    patch: Option<u64>,
    pre: Vec<PreId>,
}

impl Partial {
    fn parse(s: &str) -> Result<Partial, VersionError> {
        let bad = || VersionError(format!("improper constraint: {s}"));
        let body = s.strip_prefix('v').unwrap_or(s);
        let body = body.split_once('+').map(|(a, _)| a).unwrap_or(body);
        let (core, pre) = match body.split_once('-') {
            Some((c, p)) => (c, Some(p)),
            None => (body, None),
        };
        let mut parts = [None, None, None];
        let mut wildcard = false;
        for (i, p) in core.split('.').enumerate() {
            if i > 2 {
                return Err(bad());
            }
            if matches!(p, "x" | "X" | "*") {
                wildcard = true;
                continue;
            }
            if wildcard {
                return Err(bad());
            }
            parts[i] = Some(parse_num(p).ok_or_else(bad)?);
        }
        let pre = match pre {
            Some(p) => {
                Version::parse(&format!("0.0.0-{p}"))
                    .map_err(|_| bad())?
                    .pre
            }
            None => Vec::new(),
        };
        Ok(Partial {
            major: parts[0],
            minor: parts[1],
            patch: parts[2],
            pre,
        })
    }

    fn floor(&self) -> Version {
        Version {
            major: self.major.unwrap_or(0),
            minor: self.minor.unwrap_or(0),
            patch: self.patch.unwrap_or(0),
            pre: self.pre.clone(),
            build: String::new(),
        }
    }
}

fn release(major: u64, minor: u64, patch: u64) -> Version {
    Version {
        major,
        minor,
        patch,
        pre: Vec::new(),
        build: String::new(),
    }
}

/// Lowest prerelease of a release: anything `>= x.y.z-0` and below `x.y.z`.
fn floor_pre(major: u64, minor: u64, patch: u64) -> Version {
    Version {
        pre: vec![PreId::Num(0)],
        ..release(major, minor, patch)
    }
}

#[derive(Debug, Clone)]
struct Cmp {
    op: Op,
    v: Version,
}

impl Cmp {
    fn matches(&self, v: &Version) -> bool {
        let o = v.cmp(&self.v);
        match self.op {
            Op::Eq => o == Ordering::Equal,
            Op::Ne => o != Ordering::Equal,
            Op::Gt => o == Ordering::Greater,
            Op::Ge => o != Ordering::Less,
            Op::Lt => o == Ordering::Less,
            Op::Le => o != Ordering::Greater,
        }
    }
}

/// A parsed constraint: OR of AND-groups of comparisons.
#[derive(Debug, Clone)]
pub struct Constraint {
    groups: Vec<Group>,
}

#[derive(Debug, Clone)]
struct Group {
    cmps: Vec<Cmp>,
    /// Prerelease versions only match when the group itself names a prerelease.
    allows_pre: bool,
}

fn next_major(p: &Partial) -> Version {
    floor_pre(p.major.unwrap_or(0) + 1, 0, 0)
}

fn expand(op: &str, p: &Partial, out: &mut Vec<Cmp>) {
    let f = p.floor();
    let push = |out: &mut Vec<Cmp>, op, v| out.push(Cmp { op, v });
    let upper_of_wildcard = || match (p.major, p.minor, p.patch) {
        (None, _, _) => None,
        (Some(m), None, _) => Some(floor_pre(m + 1, 0, 0)),
        (Some(m), Some(n), None) => Some(floor_pre(m, n + 1, 0)),
        (Some(_), Some(_), Some(_)) => None,
    };
    let exact = p.patch.is_some();
    match op {
        "" | "=" if exact => push(out, Op::Eq, f),
        "" | "=" => {
            if p.major.is_some() {
                push(out, Op::Ge, f);
            }
            if let Some(u) = upper_of_wildcard() {
                push(out, Op::Lt, u);
            }
        }
        "!=" if exact => push(out, Op::Ne, f),
        "!=" => {
            // Outside the wildcard range: represented as an always-false bound when it covers
            // everything, else "below floor" OR "above ceiling" is not expressible in one AND
            // group, so keep the common case: exclude the floor release line.
            if let Some(u) = upper_of_wildcard() {
                push(out, Op::Ge, u);
            }
        }
        ">" if exact => push(out, Op::Gt, f),
        ">" => match upper_of_wildcard() {
            Some(u) => push(out, Op::Ge, u),
            None => push(out, Op::Lt, release(0, 0, 0)),
        },
        ">=" | "=>" => push(out, Op::Ge, f),
        "<" => push(out, Op::Lt, f),
        "<=" | "=<" if exact => push(out, Op::Le, f),
        "<=" | "=<" => {
            if let Some(u) = upper_of_wildcard() {
                push(out, Op::Lt, u);
            }
        }
        "~" | "~>" => {
            push(out, Op::Ge, f.clone());
            let m = p.major.unwrap_or(0);
            let u = match p.minor {
                Some(n) => floor_pre(m, n + 1, 0),
                None => floor_pre(m + 1, 0, 0),
            };
            if p.major.is_some() {
                push(out, Op::Lt, u);
            }
        }
        "^" => {
            push(out, Op::Ge, f.clone());
            if p.major.is_none() {
                return;
            }
            let u = match (p.major, p.minor, p.patch) {
                (Some(0), Some(0), Some(z)) if z > 0 || p.patch.is_some() => floor_pre(0, 0, z + 1),
                (Some(0), Some(0), None) => floor_pre(0, 1, 0),
                (Some(0), Some(n), _) if n > 0 => floor_pre(0, n + 1, 0),
                (Some(0), None, _) => floor_pre(1, 0, 0),
                _ => next_major(p),
            };
            push(out, Op::Lt, u);
        }
        _ => {}
    }
}

impl Constraint {
    pub fn parse(input: &str) -> Result<Constraint, VersionError> {
        let bad = || VersionError(format!("improper constraint: {input}"));
        let mut groups = Vec::new();
        for alt in input.split("||") {
            let alt = alt.trim();
            if alt.is_empty() {
                return Err(bad());
            }
            let mut cmps = Vec::new();
            let mut allows_pre = false;
            // Tokens: split on commas and whitespace, keeping operators attached to versions
            // ("> 1.0" is accepted as ">1.0") and recognising hyphen ranges "a - b".
            let mut toks: Vec<String> = Vec::new();
            for raw in alt.split([',', ' ', '\t']).filter(|t| !t.is_empty()) {
                let is_op = !raw.is_empty() && raw.chars().all(|c| "<>=!~^".contains(c));
                match toks.last_mut() {
                    Some(last)
                        if !last.is_empty()
                            && last.chars().all(|c| "<>=!~^".contains(c))
                            && !is_op =>
                    {
                        last.push_str(raw)
                    }
                    _ => toks.push(raw.to_string()),
                }
            }
            let mut i = 0;
            while i < toks.len() {
                if i + 2 < toks.len() && toks[i + 1] == "-" {
                    let lo = Partial::parse(&toks[i])?;
                    let hi = Partial::parse(&toks[i + 2])?;
                    allows_pre |= !lo.pre.is_empty() || !hi.pre.is_empty();
                    expand(">=", &lo, &mut cmps);
                    expand("<=", &hi, &mut cmps);
                    i += 3;
                    continue;
                }
                let t = &toks[i];
                let split = t.find(|c: char| !"<>=!~^".contains(c)).ok_or_else(bad)?;
                let (op, ver) = t.split_at(split);
                if !matches!(
                    op,
                    "" | "=" | "!=" | ">" | ">=" | "=>" | "<" | "<=" | "=<" | "~" | "~>" | "^"
                ) {
                    return Err(bad());
                }
                let p = Partial::parse(ver)?;
                allows_pre |= !p.pre.is_empty();
                expand(op, &p, &mut cmps);
                i += 1;
            }
            groups.push(Group { cmps, allows_pre });
        }
        Ok(Constraint { groups })
    }

    pub fn matches(&self, v: &Version) -> bool {
        self.groups
            .iter()
            .any(|g| (g.allows_pre || !v.is_prerelease()) && g.cmps.iter().all(|c| c.matches(v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn parses_short_and_prefixed() {
        assert_eq!(v("v1.2").to_string(), "1.2.0");
        assert_eq!(v("1").to_string(), "1.0.0");
        assert_eq!(v("0.1.0-SNAPSHOT-1").to_string(), "0.1.0-SNAPSHOT-1");
        assert!(Version::parse("1.2.3.4").is_err());
        assert!(Version::parse("crapversion").is_err());
        assert!(Version::parse("").is_err());
        assert!(Version::parse("1.0.0-01").is_err());
    }

    #[test]
    fn orders_prereleases_below_releases() {
        assert!(v("1.0.0-rc.1") < v("1.0.0"));
        assert!(v("1.0.0-alpha") < v("1.0.0-alpha.1"));
        assert!(v("1.0.0-alpha.beta") < v("1.0.0-beta"));
        assert!(v("1.0.0-2") < v("1.0.0-11"));
        assert!(v("1.0.0-11") < v("1.0.0-a"));
        assert_eq!(v("1.0.0+b1").cmp(&v("1.0.0+b2")), Ordering::Equal);
        let mut list = vec!["0.1.0", "bad", "1.0.0-rc.1", "1.0.0", "0.10.0"];
        list.sort_by(|a, b| cmp_desc(a, b));
        assert_eq!(list, vec!["1.0.0", "1.0.0-rc.1", "0.10.0", "0.1.0", "bad"]);
    }

    fn m(c: &str, ver: &str) -> bool {
        Constraint::parse(c).unwrap().matches(&v(ver))
    }

    #[test]
    fn constraints() {
        assert!(m("^1.2.0", "1.9.9"));
        assert!(!m("^1.2.0", "2.0.0"));
        assert!(!m("^1.2.0", "1.1.0"));
        assert!(m("~0.1", "0.1.9"));
        assert!(!m("~0.1", "0.2.0"));
        assert!(m(">0.1.0", "0.2.0"));
        assert!(!m(">0.1.0", "0.1.0"));
        assert!(m(">=1, <2", "1.5.0"));
        assert!(!m(">=1, <2", "2.0.0"));
        assert!(m("1.2.x", "1.2.7"));
        assert!(!m("1.2.x", "1.3.0"));
        assert!(m("*", "3.0.0"));
        assert!(!m("*", "3.0.0-rc.1"));
        assert!(m("1.0 - 2.0", "2.0.0"));
        assert!(m("1.0 - 2.0", "2.0.1"));
        assert!(!m("1.0 - 2.0", "2.1.0"));
        assert!(!m("1.0 - 2.0.0", "2.0.1"));
        assert!(m("<1 || >=3", "3.1.0"));
        assert!(m(">=1.0.0-0", "1.0.0-rc.1"));
        assert!(m("^0.0.3", "0.0.3"));
        assert!(!m("^0.0.3", "0.0.4"));
        assert!(m("^0.2.3", "0.2.9"));
        assert!(!m("^0.2.3", "0.3.0"));
        assert!(Constraint::parse("foo").is_err());
        assert!(Constraint::parse(">>1").is_err());
    }
}
