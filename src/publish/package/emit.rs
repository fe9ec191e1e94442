//! Writes YAML byte for byte as Helm writes `Chart.yaml` and `Chart.lock` into a package:
//! sigs.k8s.io/yaml's `Marshal` (the value as JSON, read back by go-yaml v2, written by
//! go-yaml v2's emitter). So: map keys in go-yaml's order (letters before other characters,
//! runs of digits compared as numbers), block style with 2-space indentation and sequences at
//! their key's indentation, empty collections as `[]`/`{}`, strings plain when they read back
//! as strings (else double-quoted), single-quoted or double-quoted when the emitter cannot
//! write them plain, literal blocks (`|`) for text with line feeds, and long scalars folded at
//! spaces past column 80.

/// A value as go-yaml v2 holds it after reading JSON back.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

impl Node {
    /// A JSON value as sigs.k8s.io/yaml passes it to go-yaml: numbers written by Go's JSON
    /// encoder and read back by go-yaml (a whole number is an integer), keys sorted.
    pub fn from_json(v: &serde_json::Value) -> Node {
        use serde_json::Value as J;
        match v {
            J::Null => Node::Null,
            J::Bool(b) => Node::Bool(*b),
            J::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Node::Int(i)
                } else if let Some(u) = n.as_u64() {
                    Node::Uint(u)
                } else {
                    let f = n.as_f64().unwrap_or(0.0);
                    if f.fract() == 0.0 && f.abs() < 1e21 {
                        // Go's JSON writes it as its shortest digits and zeros, which
                        // go-yaml reads as an integer when one fits.
                        let text = format!("{f}");
                        if let Ok(i) = text.parse::<i64>() {
                            return Node::Int(i);
                        }
                        if let Ok(u) = text.parse::<u64>() {
                            return Node::Uint(u);
                        }
                    }
                    Node::Float(f)
                }
            }
            J::String(s) => Node::Str(fold_nel(s)),
            J::Array(a) => Node::Seq(a.iter().map(Node::from_json).collect()),
            J::Object(m) => {
                let mut entries: Vec<(String, Node)> = m
                    .iter()
                    .map(|(k, v)| (fold_nel(k), Node::from_json(v)))
                    .collect();
                entries.sort_by(|a, b| key_order(&a.0, &b.0));
                Node::Map(entries)
            }
        }
    }
}

/// A string after Go's JSON text of it is read by go-yaml: JSON leaves U+0085 (NEL) raw, and
/// YAML folds a raw line break in a double-quoted scalar (white space around it dropped; one
/// break becomes a space, n breaks n-1 line feeds).
fn fold_nel(s: &str) -> String {
    if !s.contains('\u{85}') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let start = i;
        let mut j = i;
        while j < chars.len() && matches!(chars[j], ' ' | '\t') {
            j += 1;
        }
        if j < chars.len() && chars[j] == '\u{85}' {
            let mut breaks = 0;
            while j < chars.len() && matches!(chars[j], ' ' | '\t' | '\u{85}') {
                if chars[j] == '\u{85}' {
                    breaks += 1;
                }
                j += 1;
            }
            if breaks == 1 {
                out.push(' ');
            } else {
                out.extend(std::iter::repeat_n('\n', breaks - 1));
            }
            i = j;
        } else {
            out.extend(&chars[start..j.max(start + 1).min(chars.len())]);
            i = j.max(start + 1);
        }
    }
    out
}

/// go-yaml refuses to read a character outside YAML's printable set; Go's JSON text leaves
/// DEL, C1 controls (but NEL) and U+FFFE/U+FFFF raw, so Helm cannot write a `Chart.yaml`
/// holding one (sanitised fields never do).
pub fn unwritable(n: &Node) -> Option<char> {
    let bad = |s: &str| {
        s.chars()
            .find(|c| matches!(*c as u32, 0x7F..=0x84 | 0x86..=0x9F | 0xFFFE | 0xFFFF))
    };
    match n {
        Node::Str(s) => bad(s),
        Node::Seq(items) => items.iter().find_map(unwritable),
        Node::Map(entries) => entries
            .iter()
            .find_map(|(k, v)| bad(k).or_else(|| unwritable(v))),
        _ => None,
    }
}

fn is_letter(c: char) -> bool {
    c.is_alphabetic()
}

fn is_digit(c: char) -> bool {
    c.is_ascii_digit() || (!c.is_ascii() && c.is_numeric())
}

/// go-yaml v2's order of string map keys.
pub fn key_order(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    if key_less(a, b) {
        Ordering::Less
    } else if key_less(b, a) {
        Ordering::Greater
    } else {
        Ordering::Equal
    }
}

fn key_less(a: &str, b: &str) -> bool {
    let ar: Vec<char> = a.chars().collect();
    let br: Vec<char> = b.chars().collect();
    let mut i = 0;
    while i < ar.len() && i < br.len() {
        if ar[i] == br[i] {
            i += 1;
            continue;
        }
        let al = is_letter(ar[i]);
        let bl = is_letter(br[i]);
        if al && bl {
            return ar[i] < br[i];
        }
        if al || bl {
            return bl;
        }
        let (mut an, mut bn) = (0i64, 0i64);
        if ar[i] == '0' || br[i] == '0' {
            let mut j = i;
            while j > 0 && is_digit(ar[j - 1]) {
                j -= 1;
                if ar[j] != '0' {
                    an = 1;
                    bn = 1;
                    break;
                }
            }
        }
        let mut ai = i;
        while ai < ar.len() && is_digit(ar[ai]) {
            an = an.wrapping_mul(10).wrapping_add(ar[ai] as i64 - '0' as i64);
            ai += 1;
        }
        let mut bi = i;
        while bi < br.len() && is_digit(br[bi]) {
            bn = bn.wrapping_mul(10).wrapping_add(br[bi] as i64 - '0' as i64);
            bi += 1;
        }
        if an != bn {
            return an < bn;
        }
        if ai != bi {
            return ai < bi;
        }
        return ar[i] < br[i];
    }
    ar.len() < br.len()
}

/// go-yaml v2's `isBase60Float`: `^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$`.
fn is_base60_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    if !b.get(i).is_some_and(u8::is_ascii_digit) {
        return false;
    }
    i += 1;
    while b.get(i).is_some_and(|c| c.is_ascii_digit() || *c == b'_') {
        i += 1;
    }
    let mut groups = 0;
    while b.get(i) == Some(&b':') {
        i += 1;
        let start = i;
        while i < b.len() && i - start < 2 && b[i].is_ascii_digit() {
            i += 1;
        }
        match i - start {
            1 => {}
            2 if b[start] <= b'5' => {}
            2 => return false,
            _ => return false,
        }
        groups += 1;
    }
    if groups == 0 {
        return false;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        while b.get(i).is_some_and(|c| c.is_ascii_digit() || *c == b'_') {
            i += 1;
        }
    }
    i == b.len()
}

/// Whether go-yaml v2 reads `s`, written plain, back as the same string.
fn reads_as_string(s: &str) -> bool {
    crate::yaml11::resolve::plain_tag(s) == crate::yaml11::resolve::STR && !is_base60_float(s)
}

/// Go's `strconv.FormatFloat(f, 'g', -1, 64)`, as go-yaml writes floats.
fn format_float64(x: f64) -> String {
    if x.is_nan() {
        return ".nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { ".inf" } else { "-.inf" }.into();
    }
    let sign = if x.is_sign_negative() { "-" } else { "" };
    if x == 0.0 {
        return format!("{sign}0");
    }
    let e = format!("{:e}", x.abs());
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let digits: String = mant.chars().filter(char::is_ascii_digit).collect();
    let exp: i32 = exp.parse().unwrap_or(0);
    let nd = digits.len() as i32;
    if !(-4..6).contains(&exp) {
        let mut out = format!("{sign}{}", &digits[..1]);
        if nd > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let (es, ev) = if exp < 0 { ('-', -exp) } else { ('+', exp) };
        out.push_str(&format!("e{es}{ev:02}"));
        return out;
    }
    let dp = exp + 1;
    let mut out = String::from(sign);
    if dp <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-dp) as usize));
        out.push_str(&digits);
    } else if dp >= nd {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (dp - nd) as usize));
    } else {
        out.push_str(&digits[..dp as usize]);
        out.push('.');
        out.push_str(&digits[dp as usize..]);
    }
    out
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Style {
    Plain,
    Single,
    Double,
    Literal,
}

struct Analysis {
    multiline: bool,
    block_plain: bool,
    single: bool,
    block: bool,
}

fn is_break_at(b: &[u8], i: usize) -> bool {
    let at = |k: usize| b.get(i + k).copied().unwrap_or(0);
    at(0) == b'\r'
        || at(0) == b'\n'
        || (at(0) == 0xC2 && at(1) == 0x85)
        || (at(0) == 0xE2 && at(1) == 0x80 && (at(2) == 0xA8 || at(2) == 0xA9))
}

fn is_printable_at(b: &[u8], i: usize) -> bool {
    let at = |k: usize| b.get(i + k).copied().unwrap_or(0);
    let c = at(0);
    c == 0x0A
        || (0x20..=0x7E).contains(&c)
        || (c == 0xC2 && at(1) >= 0xA0)
        || (c > 0xC2 && c < 0xED)
        || (c == 0xED && at(1) < 0xA0)
        || c == 0xEE
        || (c == 0xEF
            && !(at(1) == 0xBB && at(2) == 0xBF)
            && !(at(1) == 0xBF && (at(2) == 0xBE || at(2) == 0xBF)))
}

fn is_blankz_at(b: &[u8], i: usize) -> bool {
    match b.get(i) {
        None => true,
        Some(b' ' | b'\t' | 0) => true,
        Some(_) => is_break_at(b, i),
    }
}

fn width(c: u8) -> usize {
    if c & 0x80 == 0 {
        1
    } else if c & 0xE0 == 0xC0 {
        2
    } else if c & 0xF0 == 0xE0 {
        3
    } else if c & 0xF8 == 0xF0 {
        4
    } else {
        1
    }
}

fn analyze(value: &[u8]) -> Analysis {
    if value.is_empty() {
        return Analysis {
            multiline: false,
            block_plain: true,
            single: true,
            block: false,
        };
    }
    let mut block_ind = value.starts_with(b"---") || value.starts_with(b"...");
    let (mut line_breaks, mut special) = (false, false);
    let (mut leading_space, mut leading_break, mut trailing_space, mut trailing_break) =
        (false, false, false, false);
    let (mut break_space, mut space_break) = (false, false);
    let (mut prev_space, mut prev_break) = (false, false);
    let mut preceded_ws = true;
    let mut i = 0;
    while i < value.len() {
        let w = width(value[i]);
        let followed_ws = i + w >= value.len() || matches!(value[i + w], b' ' | b'\t');
        let c = value[i];
        if i == 0 {
            match c {
                b'#' | b',' | b'[' | b']' | b'{' | b'}' | b'&' | b'*' | b'!' | b'|' | b'>'
                | b'\'' | b'"' | b'%' | b'@' | b'`' => block_ind = true,
                b'?' | b':' if followed_ws => block_ind = true,
                b'-' if followed_ws => block_ind = true,
                _ => {}
            }
        } else {
            match c {
                b':' if followed_ws => block_ind = true,
                b'#' if preceded_ws => block_ind = true,
                _ => {}
            }
        }
        if !is_printable_at(value, i) {
            special = true;
        }
        if c == b' ' {
            if i == 0 {
                leading_space = true;
            }
            if i + w == value.len() {
                trailing_space = true;
            }
            if prev_break {
                break_space = true;
            }
            prev_space = true;
            prev_break = false;
        } else if is_break_at(value, i) {
            line_breaks = true;
            if i == 0 {
                leading_break = true;
            }
            if i + w == value.len() {
                trailing_break = true;
            }
            if prev_space {
                space_break = true;
            }
            prev_space = false;
            prev_break = true;
        } else {
            prev_space = false;
            prev_break = false;
        }
        preceded_ws = is_blankz_at(value, i);
        i += w;
    }
    let mut a = Analysis {
        multiline: line_breaks,
        block_plain: true,
        single: true,
        block: true,
    };
    if leading_space || leading_break || trailing_space || trailing_break {
        a.block_plain = false;
    }
    if trailing_space {
        a.block = false;
    }
    if break_space {
        a.block_plain = false;
        a.single = false;
    }
    if space_break || special {
        a.block_plain = false;
        a.single = false;
        a.block = false;
    }
    if line_breaks || block_ind {
        a.block_plain = false;
    }
    a
}

const BEST_INDENT: i32 = 2;
const BEST_WIDTH: usize = 80;

struct Emitter {
    out: Vec<u8>,
    column: usize,
    indent: i32,
    indents: Vec<i32>,
    whitespace: bool,
    indention: bool,
    open_ended: bool,
    flow_level: usize,
}

#[derive(Clone, Copy)]
struct Ctx {
    root: bool,
    mapping: bool,
    simple_key: bool,
}

impl Emitter {
    fn put(&mut self, c: u8) {
        self.out.push(c);
        self.column += 1;
    }

    fn put_break(&mut self) {
        self.out.push(b'\n');
        self.column = 0;
    }

    /// Copies one character; returns its width.
    fn write(&mut self, s: &[u8], i: usize) -> usize {
        let w = width(s[i]).min(s.len() - i);
        self.out.extend_from_slice(&s[i..i + w]);
        self.column += 1;
        w
    }

    fn write_all(&mut self, s: &[u8]) {
        let mut i = 0;
        while i < s.len() {
            i += self.write(s, i);
        }
    }

    fn write_break(&mut self, s: &[u8], i: usize) -> usize {
        if s[i] == b'\n' {
            self.put_break();
            1
        } else {
            let w = self.write(s, i);
            self.column = 0;
            w
        }
    }

    fn increase_indent(&mut self, flow: bool, indentless: bool) {
        self.indents.push(self.indent);
        if self.indent < 0 {
            self.indent = if flow { BEST_INDENT } else { 0 };
        } else if !indentless {
            self.indent += BEST_INDENT;
        }
    }

    fn pop_indent(&mut self) {
        self.indent = self.indents.pop().unwrap_or(-1);
    }

    fn write_indent(&mut self) {
        let indent = self.indent.max(0) as usize;
        if !self.indention || self.column > indent || (self.column == indent && !self.whitespace) {
            self.put_break();
        }
        while self.column < indent {
            self.put(b' ');
        }
        self.whitespace = true;
        self.indention = true;
    }

    fn write_indicator(&mut self, ind: &[u8], need_ws: bool, is_ws: bool, is_indention: bool) {
        if need_ws && !self.whitespace {
            self.put(b' ');
        }
        self.write_all(ind);
        self.whitespace = is_ws;
        self.indention = self.indention && is_indention;
        self.open_ended = false;
    }

    fn node(&mut self, n: &Node, ctx: Ctx) {
        match n {
            Node::Null => self.scalar(b"null", Style::Plain, ctx),
            Node::Bool(b) => self.scalar(if *b { b"true" } else { b"false" }, Style::Plain, ctx),
            Node::Int(i) => self.scalar(i.to_string().as_bytes(), Style::Plain, ctx),
            Node::Uint(u) => self.scalar(u.to_string().as_bytes(), Style::Plain, ctx),
            Node::Float(f) => self.scalar(format_float64(*f).as_bytes(), Style::Plain, ctx),
            Node::Str(s) => {
                let style = if s.contains('\n') {
                    Style::Literal
                } else if reads_as_string(s) {
                    Style::Plain
                } else {
                    Style::Double
                };
                self.scalar(s.as_bytes(), style, ctx)
            }
            Node::Seq(items) if items.is_empty() => {
                self.write_indicator(b"[", true, true, false);
                self.write_indicator(b"]", false, false, false);
            }
            Node::Map(entries) if entries.is_empty() => {
                self.write_indicator(b"{", true, true, false);
                self.write_indicator(b"}", false, false, false);
            }
            Node::Seq(items) => {
                self.increase_indent(false, ctx.mapping && !self.indention);
                for item in items {
                    self.write_indent();
                    self.write_indicator(b"-", true, false, true);
                    self.node(
                        item,
                        Ctx {
                            root: false,
                            mapping: false,
                            simple_key: false,
                        },
                    );
                }
                self.pop_indent();
            }
            Node::Map(entries) => {
                self.increase_indent(false, false);
                for (k, v) in entries {
                    self.write_indent();
                    let val_ctx = Ctx {
                        root: false,
                        mapping: true,
                        simple_key: false,
                    };
                    let multiline = analyze(k.as_bytes()).multiline;
                    if !multiline && k.len() <= 128 {
                        self.node(
                            &Node::Str(k.clone()),
                            Ctx {
                                root: false,
                                mapping: true,
                                simple_key: true,
                            },
                        );
                        self.write_indicator(b":", false, false, false);
                    } else {
                        self.write_indicator(b"?", true, false, true);
                        self.node(&Node::Str(k.clone()), val_ctx);
                        self.write_indent();
                        self.write_indicator(b":", true, false, true);
                    }
                    self.node(v, val_ctx);
                }
                self.pop_indent();
            }
        }
    }

    fn scalar(&mut self, value: &[u8], requested: Style, ctx: Ctx) {
        let a = analyze(value);
        let mut style = requested;
        if ctx.simple_key && a.multiline {
            style = Style::Double;
        }
        if style == Style::Plain
            && (!a.block_plain || (value.is_empty() && ctx.simple_key) || self.flow_level > 0)
        {
            style = Style::Single;
        }
        if style == Style::Single && !a.single {
            style = Style::Double;
        }
        if style == Style::Literal && (!a.block || ctx.simple_key) {
            style = Style::Double;
        }
        self.increase_indent(true, false);
        let breaks = !ctx.simple_key;
        match style {
            Style::Plain => self.plain(value, breaks, ctx.root),
            Style::Single => self.single(value, breaks),
            Style::Double => self.double(value, breaks),
            Style::Literal => self.literal(value),
        }
        self.pop_indent();
    }

    fn plain(&mut self, value: &[u8], allow_breaks: bool, root: bool) {
        if !self.whitespace {
            self.put(b' ');
        }
        let (mut spaces, mut breaks) = (false, false);
        let mut i = 0;
        while i < value.len() {
            if value[i] == b' ' {
                if allow_breaks
                    && !spaces
                    && self.column > BEST_WIDTH
                    && value.get(i + 1) != Some(&b' ')
                {
                    self.write_indent();
                    i += 1;
                } else {
                    i += self.write(value, i);
                }
                spaces = true;
            } else if is_break_at(value, i) {
                if !breaks && value[i] == b'\n' {
                    self.put_break();
                }
                i += self.write_break(value, i);
                self.indention = true;
                breaks = true;
            } else {
                if breaks {
                    self.write_indent();
                }
                i += self.write(value, i);
                self.indention = false;
                spaces = false;
                breaks = false;
            }
        }
        self.whitespace = false;
        self.indention = false;
        if root {
            self.open_ended = true;
        }
    }

    fn single(&mut self, value: &[u8], allow_breaks: bool) {
        self.write_indicator(b"'", true, false, false);
        let (mut spaces, mut breaks) = (false, false);
        let mut i = 0;
        while i < value.len() {
            if value[i] == b' ' {
                if allow_breaks
                    && !spaces
                    && self.column > BEST_WIDTH
                    && i > 0
                    && i < value.len() - 1
                    && value.get(i + 1) != Some(&b' ')
                {
                    self.write_indent();
                    i += 1;
                } else {
                    i += self.write(value, i);
                }
                spaces = true;
            } else if is_break_at(value, i) {
                if !breaks && value[i] == b'\n' {
                    self.put_break();
                }
                i += self.write_break(value, i);
                self.indention = true;
                breaks = true;
            } else {
                if breaks {
                    self.write_indent();
                }
                if value[i] == b'\'' {
                    self.put(b'\'');
                }
                i += self.write(value, i);
                self.indention = false;
                spaces = false;
                breaks = false;
            }
        }
        self.write_indicator(b"'", false, false, false);
        self.whitespace = false;
        self.indention = false;
    }

    fn double(&mut self, value: &[u8], allow_breaks: bool) {
        let starts_bom = value.starts_with(b"\xEF\xBB\xBF");
        let mut spaces = false;
        self.write_indicator(b"\"", true, false, false);
        let mut i = 0;
        while i < value.len() {
            let c = value[i];
            if !is_printable_at(value, i)
                || starts_bom
                || is_break_at(value, i)
                || c == b'"'
                || c == b'\\'
            {
                let w = width(c).min(value.len() - i);
                let ch = std::str::from_utf8(&value[i..i + w])
                    .ok()
                    .and_then(|s| s.chars().next())
                    .map_or(0xFFFD, |c| c as u32);
                i += w;
                self.put(b'\\');
                match ch {
                    0x00 => self.put(b'0'),
                    0x07 => self.put(b'a'),
                    0x08 => self.put(b'b'),
                    0x09 => self.put(b't'),
                    0x0A => self.put(b'n'),
                    0x0B => self.put(b'v'),
                    0x0C => self.put(b'f'),
                    0x0D => self.put(b'r'),
                    0x1B => self.put(b'e'),
                    0x22 => self.put(b'"'),
                    0x5C => self.put(b'\\'),
                    0x85 => self.put(b'N'),
                    0xA0 => self.put(b'_'),
                    0x2028 => self.put(b'L'),
                    0x2029 => self.put(b'P'),
                    v => {
                        let (lead, digits) = if v <= 0xFF {
                            (b'x', 2)
                        } else if v <= 0xFFFF {
                            (b'u', 4)
                        } else {
                            (b'U', 8)
                        };
                        self.put(lead);
                        for k in (0..digits).rev() {
                            let d = ((v >> (k * 4)) & 0xF) as u8;
                            self.put(if d < 10 { b'0' + d } else { b'A' + d - 10 });
                        }
                    }
                }
                spaces = false;
            } else if c == b' ' {
                if allow_breaks
                    && !spaces
                    && self.column > BEST_WIDTH
                    && i > 0
                    && i < value.len() - 1
                {
                    self.write_indent();
                    if value.get(i + 1) == Some(&b' ') {
                        self.put(b'\\');
                    }
                    i += 1;
                } else {
                    i += self.write(value, i);
                }
                spaces = true;
            } else {
                i += self.write(value, i);
                spaces = false;
            }
        }
        self.write_indicator(b"\"", false, false, false);
        self.whitespace = false;
        self.indention = false;
    }

    fn literal(&mut self, value: &[u8]) {
        self.write_indicator(b"|", true, false, false);
        if value.first() == Some(&b' ') || is_break_at(value, 0) {
            self.write_indicator(&[b'0' + BEST_INDENT as u8], false, false, false);
        }
        self.open_ended = false;
        let chomp = if value.is_empty() {
            Some(b'-')
        } else {
            let mut i = value.len() - 1;
            while i > 0 && value[i] & 0xC0 == 0x80 {
                i -= 1;
            }
            if !is_break_at(value, i) {
                Some(b'-')
            } else if i == 0 {
                self.open_ended = true;
                Some(b'+')
            } else {
                i -= 1;
                while i > 0 && value[i] & 0xC0 == 0x80 {
                    i -= 1;
                }
                if is_break_at(value, i) {
                    self.open_ended = true;
                    Some(b'+')
                } else {
                    None
                }
            }
        };
        if let Some(c) = chomp {
            let keep = self.open_ended;
            self.write_indicator(&[c], false, false, false);
            self.open_ended = keep;
        }
        self.put_break();
        self.indention = true;
        self.whitespace = true;
        let mut breaks = true;
        let mut i = 0;
        while i < value.len() {
            if is_break_at(value, i) {
                i += self.write_break(value, i);
                self.indention = true;
                breaks = true;
            } else {
                if breaks {
                    self.write_indent();
                }
                i += self.write(value, i);
                self.indention = false;
                breaks = false;
            }
        }
    }
}

/// The document go-yaml v2 writes for `root` (a whole file, ending in a line break).
pub fn to_yaml(root: &Node) -> Vec<u8> {
    let mut e = Emitter {
        out: Vec::with_capacity(1024),
        column: 0,
        indent: -1,
        indents: Vec::new(),
        whitespace: true,
        indention: true,
        open_ended: false,
        flow_level: 0,
    };
    e.node(
        root,
        Ctx {
            root: true,
            mapping: false,
            simple_key: false,
        },
    );
    // Document end (implicit), then stream end.
    e.write_indent();
    if e.open_ended {
        e.write_indicator(b"...", true, false, false);
        e.write_indent();
    }
    e.out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn y(v: serde_json::Value) -> String {
        String::from_utf8(to_yaml(&Node::from_json(&v))).unwrap()
    }

    #[test]
    fn layout() {
        assert_eq!(
            y(json!({"name": "a", "version": "1.0.0", "apiVersion": "v2",
                "keywords": ["x", "yes"], "maintainers": [{"name": "nm", "email": "e"}],
                "dependencies": [{"name": "d", "repository": "", "tags": ["t"]}],
                "annotations": {"b": "1", "a10": "x", "a9": "y"}})),
            "annotations:\n  a9: \"y\"\n  a10: x\n  b: \"1\"\napiVersion: v2\ndependencies:\n\
             - name: d\n  repository: \"\"\n  tags:\n  - t\nkeywords:\n- x\n- \"yes\"\n\
             maintainers:\n- email: e\n  name: nm\nname: a\nversion: 1.0.0\n"
        );
    }

    #[test]
    fn scalar_styles() {
        assert_eq!(y(json!({"a": "x: y"})), "a: 'x: y'\n");
        assert_eq!(y(json!({"a": "it's: x"})), "a: 'it''s: x'\n");
        assert_eq!(y(json!({"a": "tab\there"})), "a: \"tab\\there\"\n");
        assert_eq!(y(json!({"a": "l1\nl2\n"})), "a: |\n  l1\n  l2\n");
        assert_eq!(y(json!({"a": "l1\nl2"})), "a: |-\n  l1\n  l2\n");
        assert_eq!(y(json!({"a": "l1\n\n"})), "a: |+\n  l1\n\n...\n");
        assert_eq!(y(json!({"a": " x\ny"})), "a: |2-\n   x\n  y\n");
        assert_eq!(y(json!({"a": "1:20"})), "a: \"1:20\"\n");
        assert_eq!(y(json!({"a": "2001-12-14"})), "a: \"2001-12-14\"\n");
        // go-yaml v2 as Helm uses it writes the merge key plain (measured with Helm 4.2).
        assert_eq!(y(json!({"a": "<<"})), "a: <<\n");
        assert_eq!(y(json!({"a": ""})), "a: \"\"\n");
        assert_eq!(
            y(json!({"a": [1, 1.5, 1e21, null, true]})),
            "a:\n- 1\n- 1.5\n- 1e+21\n- null\n- true\n"
        );
        assert_eq!(y(json!({"a": [], "b": {}})), "a: []\nb: {}\n");
    }

    #[test]
    fn folds_long_plain_text() {
        let s = "A chart in charge of creating Kubernetes Services/Endpoints to reference systems running outside of Kubernetes";
        assert_eq!(
            y(json!({"description": s})),
            "description: A chart in charge of creating Kubernetes Services/Endpoints to reference\n  systems running outside of Kubernetes\n"
        );
    }

    #[test]
    fn key_order_is_go_yamls() {
        let mut keys = vec!["b", "a10", "a9", "A", "_x", "a", "1", "10", "2"];
        keys.sort_by(|a, b| key_order(a, b));
        assert_eq!(keys, ["_x", "1", "2", "10", "A", "a", "a9", "a10", "b"]);
    }

    fn text_char() -> impl Strategy<Value = char> {
        prop_oneof![
            prop::char::range('a', 'c'),
            prop::sample::select(vec![
                ' ',
                ' ',
                '\n',
                '\t',
                ':',
                '#',
                '-',
                '?',
                '\'',
                '"',
                '\\',
                '[',
                '{',
                '&',
                '*',
                '!',
                '|',
                '>',
                '%',
                '@',
                '`',
                ',',
                '.',
                '0',
                '1',
                '~',
                '\u{85}',
                '\u{a0}',
                '\u{2028}',
                '\u{2029}',
                '\u{feff}',
                '\u{e9}',
                '\u{1f600}',
                '\r',
                '\u{1}',
            ]),
        ]
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]
        /// Whatever the text, the YAML written reads back (with the server's go-yaml v2
        /// reader) as the same strings.
        #[test]
        fn written_yaml_reads_back(
            key in prop::collection::vec(text_char(), 0..12).prop_map(String::from_iter),
            value in prop::collection::vec(text_char(), 0..120).prop_map(String::from_iter),
            list in prop::collection::vec(
                prop::collection::vec(text_char(), 0..30).prop_map(String::from_iter), 0..3),
        ) {
            let v = json!({"annotations": {key.clone(): value.clone()}, "keywords": list.clone()});
            let node = Node::from_json(&v);
            let text = to_yaml(&node);
            let back = crate::yaml11::parse(&text)
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&text)));
            let json = crate::chart_yaml::metadata_json(&back).unwrap();
            let expect_ann = Node::from_json(&json!({key.clone(): value.clone()}));
            let got_ann = Node::from_json(&json["annotations"]);
            prop_assert_eq!(got_ann, expect_ann, "{}", String::from_utf8_lossy(&text));
            let got_kw = Node::from_json(json.get("keywords").unwrap_or(&json!([])));
            let expect_kw = Node::from_json(&json!(list));
            prop_assert_eq!(got_kw, expect_kw, "{}", String::from_utf8_lossy(&text));
        }
    }
}
