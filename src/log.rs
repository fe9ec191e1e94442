//! Logging to stderr, one line per event: human-readable with a timestamp on a terminal or in
//! a file; without timestamps and with syslog priority prefixes (`<6>`) under journald (when
//! `JOURNAL_STREAM` names stderr), so `journalctl -p` filters work; or JSON objects with
//! `--log-json`.
//!
//! The server buffers request lines ([`set_buffered`], [`log_batched`]) so that a busy server
//! does not make a write system call per request: a background thread writes what gathered
//! within [`FLUSH_INTERVAL`] (or sooner, once [`FLUSH_BYTES`] gathered) in one write of whole
//! lines, each still with its own priority prefix. Errors and the other (rare) lines are
//! written at once, after the lines before them; [`flush`] writes the rest at exit.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::timefmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    Error = 3,
    Warn = 4,
    Info = 6,
    Debug = 7,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

static MAX_LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);
static JSON: AtomicBool = AtomicBool::new(false);
static JOURNAL: AtomicBool = AtomicBool::new(false);

/// Applies logging settings; can be called again on reload.
pub fn configure(debug: bool, json: bool) {
    MAX_LEVEL.store(
        if debug { Level::Debug } else { Level::Info } as u8,
        Ordering::Relaxed,
    );
    JSON.store(json, Ordering::Relaxed);
    JOURNAL.store(stderr_is_journal(), Ordering::Relaxed);
}

/// Whether stderr is the journal stream systemd connected (`JOURNAL_STREAM` holds its
/// `device:inode`). Comparing them, as systemd.exec(5) recommends, keeps priority prefixes out
/// of a file or terminal that stderr was redirected to by a shell started from a service.
fn stderr_is_journal() -> bool {
    let Some((dev, ino)) = std::env::var("JOURNAL_STREAM").ok().and_then(|v| {
        let (d, i) = v.trim().split_once(':')?;
        Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?))
    }) else {
        return false;
    };
    // SAFETY: fstat writes into the zeroed stat buffer we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(2, &mut st) } != 0 {
        return false;
    }
    st.st_dev as u64 == dev && st.st_ino as u64 == ino
}

pub fn enabled(level: Level) -> bool {
    (level as u8) <= MAX_LEVEL.load(Ordering::Relaxed)
}

/// A field value: strings are quoted when needed in text form and always in JSON.
pub enum Val<'a> {
    Str(&'a str),
    Num(i128),
    F(f64),
}

impl<'a> From<&'a str> for Val<'a> {
    fn from(s: &'a str) -> Self {
        Val::Str(s)
    }
}
impl<'a> From<&'a String> for Val<'a> {
    fn from(s: &'a String) -> Self {
        Val::Str(s)
    }
}
macro_rules! num_val {
    ($($t:ty),*) => {$(impl From<$t> for Val<'_> { fn from(n: $t) -> Self { Val::Num(n as i128) } })*};
}
num_val!(u16, u32, u64, usize, i64, i32);
impl From<f64> for Val<'_> {
    fn from(n: f64) -> Self {
        Val::F(n)
    }
}

pub fn format_line(
    level: Level,
    msg: &str,
    fields: &[(&str, Val<'_>)],
    json: bool,
    journal: bool,
) -> String {
    if json {
        let mut obj = serde_json::Map::new();
        obj.insert(
            "time".into(),
            serde_json::Value::String(timefmt::rfc3339(timefmt::now_ns(), true)),
        );
        obj.insert("level".into(), level.name().into());
        obj.insert("msg".into(), msg.into());
        for (k, v) in fields {
            let v = match v {
                Val::Str(s) => serde_json::Value::String((*s).to_string()),
                Val::Num(n) => serde_json::Value::from(*n as i64),
                Val::F(f) => serde_json::Value::from(*f),
            };
            obj.insert((*k).to_string(), v);
        }
        let mut s = serde_json::Value::Object(obj).to_string();
        if journal {
            s.insert_str(0, &format!("<{}>", level as u8));
        }
        return s;
    }
    let mut s = String::with_capacity(96);
    if journal {
        s.push_str(&format!("<{}>", level as u8));
    } else {
        s.push_str(&timefmt::rfc3339(timefmt::now_ns(), true));
        s.push(' ');
        s.push_str(&level.name().to_uppercase());
        s.push(' ');
    }
    s.push_str(msg);
    for (k, v) in fields {
        s.push(' ');
        s.push_str(k);
        s.push('=');
        match v {
            Val::Str(t) => {
                if !t.is_empty() && !t.contains([' ', '"', '=']) && !t.chars().any(char::is_control)
                {
                    s.push_str(t);
                } else {
                    s.push_str(&format!("{t:?}"));
                }
            }
            Val::Num(n) => s.push_str(&n.to_string()),
            Val::F(f) => s.push_str(&format!("{f:.3}")),
        }
    }
    s
}

/// How long a buffered line may wait before it is written.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(50);
/// Buffered bytes that make the background thread write at once.
pub const FLUSH_BYTES: usize = 64 << 10;

static BUFFERED: AtomicBool = AtomicBool::new(false);
/// Lines not written yet.
static PENDING: Mutex<Vec<u8>> = Mutex::new(Vec::new());
static WAKE: Condvar = Condvar::new();
/// Held while writing, so that lines reach stderr in the order they were logged.
static WRITER: Mutex<()> = Mutex::new(());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Buffers lines from now on (the server); started once, with its background writer.
/// Without it (tests, one-shot commands) each line is written as it is logged.
pub fn set_buffered() {
    if BUFFERED.swap(true, Ordering::SeqCst) {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(|| {
            loop {
                let mut g = lock(&PENDING);
                while g.is_empty() {
                    g = WAKE.wait(g).unwrap_or_else(|e| e.into_inner());
                }
                let (g, _) = WAKE
                    .wait_timeout_while(g, FLUSH_INTERVAL, |b| b.len() < FLUSH_BYTES)
                    .unwrap_or_else(|e| e.into_inner());
                drop(g);
                flush();
            }
        });
    if spawned.is_err() {
        BUFFERED.store(false, Ordering::SeqCst);
    }
}

/// Writes every buffered line now (at exit, and for errors).
pub fn flush() {
    use std::io::Write;
    let _w = lock(&WRITER);
    let buf = std::mem::take(&mut *lock(&PENDING));
    if !buf.is_empty() {
        // Nothing better to do with an error writing to stderr than to drop the lines.
        let _ = std::io::stderr().lock().write_all(&buf);
    }
}

/// Logs a line, written at once (after any buffered lines before it).
pub fn log(level: Level, msg: &str, fields: &[(&str, Val<'_>)]) {
    emit(level, msg, fields, false);
}

/// Logs a line of a kind that comes in volume under load (the request log): buffered when
/// the server buffers, except errors.
pub fn log_batched(level: Level, msg: &str, fields: &[(&str, Val<'_>)]) {
    emit(level, msg, fields, true);
}

fn emit(level: Level, msg: &str, fields: &[(&str, Val<'_>)], batched: bool) {
    if !enabled(level) {
        return;
    }
    let line = format_line(
        level,
        msg,
        fields,
        JSON.load(Ordering::Relaxed),
        JOURNAL.load(Ordering::Relaxed),
    );
    if !BUFFERED.load(Ordering::Relaxed) {
        // eprintln! (not a raw stderr handle) so test harnesses capture it.
        eprintln!("{line}");
        return;
    }
    let wake = {
        let mut b = lock(&PENDING);
        let was_empty = b.is_empty();
        b.extend_from_slice(line.as_bytes());
        b.push(b'\n');
        was_empty || b.len() >= FLUSH_BYTES
    };
    if !batched || level == Level::Error {
        flush();
    } else if wake {
        WAKE.notify_one();
    }
}

#[macro_export]
macro_rules! log_at {
    ($lvl:expr, $msg:expr $(, $k:literal => $v:expr)* $(,)?) => {
        $crate::log::log($lvl, &$msg, &[$(($k, $crate::log::Val::from($v))),*])
    };
}
#[macro_export]
macro_rules! info { ($($t:tt)*) => { $crate::log_at!($crate::log::Level::Info, $($t)*) }; }
#[macro_export]
macro_rules! warn { ($($t:tt)*) => { $crate::log_at!($crate::log::Level::Warn, $($t)*) }; }
#[macro_export]
macro_rules! error { ($($t:tt)*) => { $crate::log_at!($crate::log::Level::Error, $($t)*) }; }
#[macro_export]
macro_rules! debug { ($($t:tt)*) => { $crate::log_at!($crate::log::Level::Debug, $($t)*) }; }

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_lines_have_priority_and_no_time() {
        let l = format_line(
            Level::Warn,
            "hello",
            &[("path", Val::Str("/a b"))],
            false,
            true,
        );
        assert_eq!(l, "<4>hello path=\"/a b\"");
        let j = format_line(Level::Error, "x", &[("status", Val::Num(500))], true, false);
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["status"], 500);
    }
}
