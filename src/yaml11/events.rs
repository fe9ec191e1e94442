//! The event stream of the first YAML document, from libyaml's parser (the same parser Go's
//! go-yaml ports): scalars keep their text, style, tag and anchor, which serde-based readers
//! do not expose. This is the only place that touches the C-style API.

use std::ffi::CStr;
use std::mem::MaybeUninit;

use unsafe_libyaml_norway as unsafe_libyaml;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    Literal,
    Folded,
}

#[derive(Debug, Clone)]
pub struct Scalar {
    pub anchor: Option<String>,
    pub tag: Option<String>,
    pub value: Vec<u8>,
    /// Untagged plain scalar: its type is resolved from its text.
    pub plain_implicit: bool,
    pub style: Style,
}

#[derive(Debug, Clone)]
pub enum Event {
    Scalar(Scalar),
    SequenceStart {
        anchor: Option<String>,
        tag: Option<String>,
    },
    SequenceEnd,
    MappingStart {
        anchor: Option<String>,
        tag: Option<String>,
    },
    MappingEnd,
    Alias(String),
}

/// A syntax error, with libyaml's wording and a 1-based position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub problem: String,
    pub line: u64,
    pub column: u64,
}

impl std::fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at line {} column {}",
            self.problem, self.line, self.column
        )
    }
}

/// Owns an initialised parser and frees it on every path out.
struct Parser(Box<MaybeUninit<unsafe_libyaml::yaml_parser_t>>);

impl Drop for Parser {
    fn drop(&mut self) {
        // SAFETY: the parser was initialised by `yaml_parser_initialize` (a `Parser` only
        // exists after that succeeded) and is deleted exactly once, here.
        unsafe { unsafe_libyaml::yaml_parser_delete(self.0.as_mut_ptr()) }
    }
}

/// Copies a NUL-terminated string owned by an event, if any.
///
/// # Safety
/// `p` is null or points to a NUL-terminated string that outlives the call.
unsafe fn owned(p: *const u8) -> Option<String> {
    if p.is_null() {
        return None;
    }
    // SAFETY: non-null, NUL-terminated per the caller's contract.
    let c = unsafe { CStr::from_ptr(p.cast()) };
    Some(String::from_utf8_lossy(c.to_bytes()).into_owned())
}

/// The events of the first document of `input` (a later document is never read, as Go's
/// `yaml.Unmarshal` does not read it), without the stream and document markers. An empty
/// stream gives no events. More than `max_events` events is an error.
pub fn first_document(input: &[u8], max_events: usize) -> Result<Vec<Event>, SyntaxError> {
    let mut parser = Box::new(MaybeUninit::<unsafe_libyaml::yaml_parser_t>::uninit());
    let p = parser.as_mut_ptr();
    // SAFETY: `p` points to writable memory for a parser; initialize fills it in.
    if unsafe { unsafe_libyaml::yaml_parser_initialize(p) }.fail {
        return Err(SyntaxError {
            problem: "cannot allocate a YAML parser".into(),
            line: 0,
            column: 0,
        });
    }
    let mut parser = Parser(parser);
    let p = parser.0.as_mut_ptr();
    // SAFETY: `input` outlives `parser` (both live until this function returns, and the
    // parser is dropped first, being declared later); the parser is initialised. The
    // encoding is left to detection (UTF-8, or UTF-16 by its byte-order mark), as in Go.
    unsafe { unsafe_libyaml::yaml_parser_set_input_string(p, input.as_ptr(), input.len() as _) };
    let mut events = Vec::new();
    loop {
        let mut raw = MaybeUninit::<unsafe_libyaml::yaml_event_t>::uninit();
        // SAFETY: the parser is initialised and `raw` is writable; on success the event is
        // initialised and owns its strings until `yaml_event_delete`.
        if unsafe { unsafe_libyaml::yaml_parser_parse(p, raw.as_mut_ptr()) }.fail {
            // SAFETY: after a failure the parser's prefix holds the problem (a static
            // string or null) and its position.
            let (problem, mark) = unsafe {
                let prefix = &**p;
                (owned(prefix.problem.cast()), prefix.problem_mark)
            };
            return Err(SyntaxError {
                problem: problem.unwrap_or_else(|| "invalid YAML".into()),
                line: mark.line + 1,
                column: mark.column + 1,
            });
        }
        // SAFETY: parse succeeded, so the event is initialised.
        let ev = unsafe { raw.assume_init_mut() };
        // SAFETY: the union member read is the one `type_` names; the pointers are owned by
        // the event and valid until it is deleted just below.
        let converted = unsafe { convert(ev) };
        // SAFETY: the event is initialised and deleted once.
        unsafe { unsafe_libyaml::yaml_event_delete(ev) };
        match converted {
            Step::Event(e) => {
                if events.len() >= max_events {
                    return Err(SyntaxError {
                        problem: format!("more than {max_events} YAML nodes"),
                        line: 0,
                        column: 0,
                    });
                }
                events.push(e);
            }
            Step::Skip => {}
            Step::End => break,
        }
    }
    drop(parser);
    Ok(events)
}

enum Step {
    Event(Event),
    Skip,
    End,
}

/// # Safety
/// `ev` is an initialised event whose strings are valid.
unsafe fn convert(ev: &unsafe_libyaml::yaml_event_t) -> Step {
    use unsafe_libyaml::yaml_event_type_t as T;
    // SAFETY (all blocks): each arm reads the union member of its event type.
    match ev.type_ {
        T::YAML_SCALAR_EVENT => {
            let s = unsafe { ev.data.scalar };
            let value = if s.value.is_null() {
                Vec::new()
            } else {
                unsafe { std::slice::from_raw_parts(s.value, s.length as usize) }.to_vec()
            };
            let style = match s.style {
                unsafe_libyaml::YAML_SINGLE_QUOTED_SCALAR_STYLE => Style::SingleQuoted,
                unsafe_libyaml::YAML_DOUBLE_QUOTED_SCALAR_STYLE => Style::DoubleQuoted,
                unsafe_libyaml::YAML_LITERAL_SCALAR_STYLE => Style::Literal,
                unsafe_libyaml::YAML_FOLDED_SCALAR_STYLE => Style::Folded,
                _ => Style::Plain,
            };
            Step::Event(Event::Scalar(Scalar {
                anchor: unsafe { owned(s.anchor) },
                tag: unsafe { owned(s.tag) },
                value,
                plain_implicit: s.plain_implicit,
                style,
            }))
        }
        T::YAML_SEQUENCE_START_EVENT => {
            let s = unsafe { ev.data.sequence_start };
            Step::Event(Event::SequenceStart {
                anchor: unsafe { owned(s.anchor) },
                tag: unsafe { owned(s.tag) },
            })
        }
        T::YAML_MAPPING_START_EVENT => {
            let s = unsafe { ev.data.mapping_start };
            Step::Event(Event::MappingStart {
                anchor: unsafe { owned(s.anchor) },
                tag: unsafe { owned(s.tag) },
            })
        }
        T::YAML_SEQUENCE_END_EVENT => Step::Event(Event::SequenceEnd),
        T::YAML_MAPPING_END_EVENT => Step::Event(Event::MappingEnd),
        T::YAML_ALIAS_EVENT => {
            let a = unsafe { ev.data.alias };
            Step::Event(Event::Alias(unsafe { owned(a.anchor) }.unwrap_or_default()))
        }
        T::YAML_DOCUMENT_END_EVENT | T::YAML_STREAM_END_EVENT => Step::End,
        _ => Step::Skip,
    }
}
