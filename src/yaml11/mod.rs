//! Reading YAML as Go's go-yaml v2 decodes it into an `interface{}`, the first half of how
//! Helm reads `Chart.yaml` through sigs.k8s.io/yaml: YAML 1.1 scalar types (see `resolve`),
//! quoted and block scalars always strings, aliases and `<<` merge keys expanded, a later
//! duplicate key replacing an earlier one, only the first document read.

pub mod events;
pub mod resolve;

use std::collections::HashMap;

use events::{Event, Scalar};

/// A decoded YAML value, typed as go-yaml types it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Value>),
    /// Entries in first-appearance order, keys unique (a later equal key replaced the value).
    Map(Vec<(Value, Value)>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Syntax(events::SyntaxError),
    #[error("{0}")]
    Decode(String),
}

/// Most YAML nodes (events) one document may have.
pub const MAX_NODES: usize = 200_000;
/// Deepest nesting, counted after aliases are expanded.
pub const MAX_DEPTH: usize = 128;
/// Most nodes and string bytes the decoded value may hold once aliases are expanded (Go's
/// own alias-ratio rule applies too); these bound the memory one document may take.
pub const MAX_EXPANDED_NODES: usize = 300_000;
pub const MAX_EXPANDED_BYTES: usize = 8 * 1024 * 1024;

enum Node {
    Scalar(Scalar),
    Seq(Vec<usize>),
    /// Keys and values alternate.
    Map(Vec<usize>),
    Alias {
        name: String,
        target: usize,
    },
}

fn decode_err<T>(msg: impl Into<String>) -> Result<T, Error> {
    Err(Error::Decode(msg.into()))
}

/// Builds the node graph of the first document; aliases point at their anchored node.
fn compose(events: Vec<Event>) -> Result<(Vec<Node>, Option<usize>), Error> {
    let mut nodes: Vec<Node> = Vec::with_capacity(events.len());
    let mut anchors: HashMap<String, usize> = HashMap::new();
    let mut stack: Vec<usize> = Vec::new();
    let mut root = None;
    for ev in events {
        let id = nodes.len();
        let (node, anchor, opens) = match ev {
            Event::SequenceEnd | Event::MappingEnd => {
                stack.pop();
                continue;
            }
            Event::Scalar(s) => {
                let anchor = s.anchor.clone();
                (Node::Scalar(s), anchor, false)
            }
            Event::SequenceStart { anchor, .. } => (Node::Seq(Vec::new()), anchor, true),
            Event::MappingStart { anchor, .. } => (Node::Map(Vec::new()), anchor, true),
            Event::Alias(name) => match anchors.get(&name) {
                Some(&target) => (Node::Alias { name, target }, None, false),
                None => return decode_err(format!("unknown anchor '{name}' referenced")),
            },
        };
        if let Some(a) = anchor {
            anchors.insert(a, id);
        }
        nodes.push(node);
        match stack.last() {
            Some(&parent) => match &mut nodes[parent] {
                Node::Seq(items) | Node::Map(items) => items.push(id),
                _ => {}
            },
            None => {
                if root.is_none() {
                    root = Some(id);
                }
            }
        }
        if opens {
            stack.push(id);
            if stack.len() > MAX_DEPTH {
                return decode_err(format!("YAML nests deeper than {MAX_DEPTH} levels"));
            }
        }
    }
    Ok((nodes, root))
}

struct Decoder<'a> {
    nodes: &'a [Node],
    decode_count: usize,
    alias_count: usize,
    alias_depth: usize,
    depth: usize,
    expanding: Vec<bool>,
    bytes: usize,
}

/// go-yaml's limit on alias expansion: the share of decoded nodes that came through aliases.
fn allowed_alias_ratio(decode_count: usize) -> f64 {
    const LOW: usize = 400_000;
    const HIGH: usize = 4_000_000;
    if decode_count <= LOW {
        0.99
    } else if decode_count >= HIGH {
        0.10
    } else {
        0.99 - 0.89 * ((decode_count - LOW) as f64 / (HIGH - LOW) as f64)
    }
}

impl Decoder<'_> {
    fn count(&mut self) -> Result<(), Error> {
        self.decode_count += 1;
        if self.alias_depth > 0 {
            self.alias_count += 1;
        }
        if self.alias_count > 100
            && self.decode_count > 1000
            && self.alias_count as f64 / self.decode_count as f64
                > allowed_alias_ratio(self.decode_count)
        {
            return decode_err("document contains excessive aliasing");
        }
        if self.decode_count > MAX_EXPANDED_NODES {
            return decode_err(format!(
                "YAML has more than {MAX_EXPANDED_NODES} nodes once its aliases are expanded"
            ));
        }
        Ok(())
    }

    fn unmarshal(&mut self, id: usize) -> Result<Value, Error> {
        self.count()?;
        self.depth += 1;
        if self.depth > MAX_DEPTH * 2 {
            return decode_err(format!("YAML nests deeper than {} levels", MAX_DEPTH * 2));
        }
        let nodes = self.nodes;
        let out = match &nodes[id] {
            Node::Scalar(s) => self.scalar(s),
            Node::Seq(items) => {
                let mut out = Vec::with_capacity(items.len());
                for &i in items {
                    out.push(self.unmarshal(i)?);
                }
                Ok(Value::Seq(out))
            }
            Node::Map(_) => {
                let mut out = Vec::new();
                self.mapping(id, &mut out)?;
                Ok(Value::Map(out))
            }
            Node::Alias { name, target } => self.alias(id, name, *target, |d, t| d.unmarshal(t)),
        };
        self.depth -= 1;
        out
    }

    fn alias<T>(
        &mut self,
        id: usize,
        name: &str,
        target: usize,
        f: impl FnOnce(&mut Self, usize) -> Result<T, Error>,
    ) -> Result<T, Error> {
        if self.expanding[id] {
            return decode_err(format!("anchor '{name}' value contains itself"));
        }
        self.expanding[id] = true;
        self.alias_depth += 1;
        let out = f(self, target);
        self.alias_depth -= 1;
        self.expanding[id] = false;
        out
    }

    fn scalar(&mut self, s: &Scalar) -> Result<Value, Error> {
        let text = String::from_utf8_lossy(&s.value).into_owned();
        self.bytes += text.len();
        if self.bytes > MAX_EXPANDED_BYTES {
            return decode_err(format!(
                "YAML has more than {MAX_EXPANDED_BYTES} bytes of text once its aliases are expanded"
            ));
        }
        let Some(tag) = &s.tag else {
            if !s.plain_implicit {
                return Ok(Value::Str(text));
            }
            return resolve::resolve("", &text).map_err(Error::Decode);
        };
        if tag == resolve::BINARY {
            return binary(&text);
        }
        resolve::resolve(tag, &text).map_err(Error::Decode)
    }

    fn is_merge(&self, key: usize) -> bool {
        match &self.nodes[key] {
            Node::Scalar(s) => {
                s.value == b"<<"
                    && ((s.tag.is_none() && s.plain_implicit)
                        || s.tag.as_deref() == Some(resolve::MERGE))
            }
            _ => false,
        }
    }

    /// Decodes the mapping `id` into `out`, replacing values of keys already there.
    fn mapping(&mut self, id: usize, out: &mut Vec<(Value, Value)>) -> Result<(), Error> {
        let nodes = self.nodes;
        let Node::Map(items) = &nodes[id] else {
            return decode_err("map merge requires map or sequence of maps as the value");
        };
        for pair in items.chunks(2) {
            let [k, v] = pair else { break };
            if self.is_merge(*k) {
                self.merge(*v, out)?;
                continue;
            }
            let key = self.unmarshal(*k)?;
            if matches!(key, Value::Seq(_) | Value::Map(_)) {
                return decode_err("invalid map key: a mapping or a sequence");
            }
            let value = self.unmarshal(*v)?;
            match out.iter_mut().find(|(ek, _)| *ek == key) {
                Some(slot) => slot.1 = value,
                None => out.push((key, value)),
            }
        }
        Ok(())
    }

    /// A mapping node (or an alias of one) decoded into `out`, counted as go-yaml counts it.
    fn merge_one(&mut self, id: usize, out: &mut Vec<(Value, Value)>) -> Result<(), Error> {
        self.count()?;
        let nodes = self.nodes;
        match &nodes[id] {
            Node::Map(_) => self.mapping(id, out),
            Node::Alias { name, target } if matches!(nodes[*target], Node::Map(_)) => {
                let target = *target;
                self.alias(id, name, target, |d, t| {
                    d.count()?;
                    d.mapping(t, out)
                })
            }
            _ => decode_err("map merge requires map or sequence of maps as the value"),
        }
    }

    fn merge(&mut self, id: usize, out: &mut Vec<(Value, Value)>) -> Result<(), Error> {
        let nodes = self.nodes;
        match &nodes[id] {
            Node::Seq(items) => {
                // Earlier maps take precedence: they are decoded last.
                for &i in items.iter().rev() {
                    self.merge_one(i, out)?;
                }
                Ok(())
            }
            _ => self.merge_one(id, out),
        }
    }
}

/// `!!binary`: base64 (line breaks ignored), bytes that are not UTF-8 replaced one by one
/// with U+FFFD as Go's JSON encoder does.
fn binary(text: &str) -> Result<Value, Error> {
    use base64::Engine;
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
    );
    let clean: String = text.chars().filter(|c| *c != '\n' && *c != '\r').collect();
    let Ok(bytes) = engine.decode(clean) else {
        return decode_err("!!binary value contains invalid base64 data");
    };
    let mut out = String::with_capacity(bytes.len());
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                break;
            }
            Err(e) => {
                let good = e.valid_up_to();
                out.push_str(std::str::from_utf8(&rest[..good]).unwrap_or_default());
                let bad = e.error_len().unwrap_or(rest.len() - good);
                out.extend(std::iter::repeat_n('\u{fffd}', bad));
                rest = &rest[good + bad..];
            }
        }
    }
    Ok(Value::Str(out))
}

/// Reads the first document of `input` as go-yaml v2 decodes it into an `interface{}`; an
/// empty document is `Null`.
pub fn parse(input: &[u8]) -> Result<Value, Error> {
    let events = events::first_document(input, MAX_NODES).map_err(Error::Syntax)?;
    let (nodes, root) = compose(events)?;
    let Some(root) = root else {
        return Ok(Value::Null);
    };
    let mut d = Decoder {
        nodes: &nodes,
        decode_count: 0,
        alias_count: 0,
        alias_depth: 0,
        depth: 0,
        expanding: vec![false; nodes.len()],
        bytes: 0,
    };
    d.unmarshal(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Value {
        Value::Str(v.into())
    }

    #[test]
    fn styles_tags_aliases_merges() {
        let v = parse(
            b"a: yes\nb: 'yes'\nc: !!str 1.0\nd: |\n  1\ne: &x {k: 1}\nf: *x\ng:\n  <<: *x\n  j: 2\nb: 0x10\n",
        )
        .unwrap();
        let Value::Map(m) = v else { panic!() };
        let get = |k: &str| {
            m.iter()
                .find(|(key, _)| *key == s(k))
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get("a"), Some(Value::Bool(true)));
        assert_eq!(get("b"), Some(Value::Int(16)));
        assert_eq!(get("c"), Some(s("1.0")));
        assert_eq!(get("d"), Some(s("1\n")));
        let x = Value::Map(vec![(s("k"), Value::Int(1))]);
        assert_eq!(get("f"), Some(x));
        assert_eq!(
            get("g"),
            Some(Value::Map(vec![
                (s("k"), Value::Int(1)),
                (s("j"), Value::Int(2))
            ]))
        );
        // Only the first document is read.
        assert_eq!(
            parse(b"a: 1\n---\n[: bad").unwrap(),
            Value::Map(vec![(s("a"), Value::Int(1))])
        );
        assert_eq!(parse(b"").unwrap(), Value::Null);
        assert_eq!(parse(b"# only a comment\n").unwrap(), Value::Null);
    }

    #[test]
    fn hostile_documents_fail_cleanly() {
        assert!(parse(b"a: *nope\n").is_err());
        assert!(parse(b"a: &x [*x]\n").is_err());
        assert!(parse(b"a: \"\\x7f\x7f\"\n").is_err());
        assert!(parse(&b"[".repeat(200)).is_err());
        // Billion laughs: each level doubles.
        let mut doc = String::from("a0: &a0 [x, x]\n");
        for i in 1..40 {
            doc.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}]\n", p = i - 1));
        }
        let err = parse(doc.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("alias"), "{err}");
        assert!(
            matches!(parse(b"a: !!binary aGk=\n").unwrap(), Value::Map(m) if m[0].1 == s("hi"))
        );
        assert!(parse(b"a: !!binary '***'\n").is_err());
        assert!(parse(b"a: !!int x\n").is_err());
        assert!(parse(b"<<: 1\n").is_err());
        // A long string repeated through aliases hits the text limit, named in the error.
        let mut doc = format!("a: &a {}\nb: [", "x".repeat(100_000));
        doc.push_str(&"*a, ".repeat(200));
        doc.push_str("]\n");
        let err = parse(doc.as_bytes()).unwrap_err().to_string();
        assert!(err.contains(&MAX_EXPANDED_BYTES.to_string()), "{err}");
        // Too many nodes.
        let doc = format!("[{}]", "a,".repeat(MAX_NODES + 1));
        let err = parse(doc.as_bytes()).unwrap_err().to_string();
        assert!(err.contains(&MAX_NODES.to_string()), "{err}");
    }
}
