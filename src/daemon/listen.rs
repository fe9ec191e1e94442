//! Listening sockets: inherited from systemd (`LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`) or
//! bound from the configuration.

use std::os::fd::{FromRawFd, RawFd};

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("invalid LISTEN_FDS value {0:?}")]
    BadCount(String),
    #[error(
        "cannot take the sockets passed by the service manager (LISTEN_PID={pid:?}, LISTEN_FDS={count:?}): {source}"
    )]
    Inherit {
        pid: String,
        count: String,
        source: std::io::Error,
    },
    #[error("inherited fd {fd}{name}: {why}")]
    BadFd {
        fd: RawFd,
        name: String,
        why: String,
    },
}

pub enum Listener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

impl Listener {
    pub fn describe(&self) -> String {
        match self {
            Listener::Tcp(l) => l
                .local_addr()
                .map(|a| format!("tcp:{a}"))
                .unwrap_or_else(|_| "tcp:?".into()),
            Listener::Unix(l) => l
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| format!("unix:{}", p.display())))
                .unwrap_or_else(|| "unix:(unnamed)".into()),
        }
    }
}

fn sockopt(fd: RawFd, opt: libc::c_int) -> std::io::Result<libc::c_int> {
    let mut val: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `val`, which we own.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&mut val as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r == 0 {
        Ok(val)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Takes the sockets systemd passed, if any were passed to this process, with their names
/// (`LISTEN_FDNAMES`, empty when not given). Each must be a listening stream socket (TCP over
/// IPv4/IPv6, or Unix).
///
/// `sd_notify::listen_fds` reads the variables as sd_listen_fds(3) does: the sockets are
/// ours only when `LISTEN_PID` names this process (variables inherited from a parent that
/// was socket-activated are not), and each is made close-on-exec. The names are read here:
/// the crate refuses a `LISTEN_FDNAMES` whose count differs from `LISTEN_FDS` and names
/// unnamed sockets "unknown", where a missing name is only a missing label in the log.
pub fn inherited() -> Result<Option<Vec<(Listener, String)>>, ListenError> {
    let Ok(count) = std::env::var("LISTEN_FDS") else {
        return Ok(None);
    };
    let fds = sd_notify::listen_fds().map_err(|e| {
        let pid = std::env::var("LISTEN_PID").unwrap_or_default();
        match count.trim().parse::<u32>() {
            Err(_) if pid.trim().parse::<u32>().is_ok() => ListenError::BadCount(count.clone()),
            _ => ListenError::Inherit {
                pid,
                count: count.clone(),
                source: e,
            },
        }
    })?;
    if fds.len() == 0 {
        // Not ours, or LISTEN_FDS=0, which sd_listen_fds(3) refuses as invalid.
        let ours = std::env::var("LISTEN_PID")
            .ok()
            .and_then(|pid| pid.trim().parse::<u32>().ok())
            == Some(std::process::id());
        return if ours {
            Err(ListenError::BadCount(count))
        } else {
            Ok(None)
        };
    }
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
        .map(|s| s.split(':').map(str::to_string).collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    for (i, fd) in fds.enumerate() {
        let fd_name = names.get(i).cloned().unwrap_or_default();
        let name = if fd_name.is_empty() {
            String::new()
        } else {
            format!(" ({fd_name})")
        };
        let bad = |why: String| ListenError::BadFd {
            fd,
            name: name.clone(),
            why,
        };
        let ty = sockopt(fd, libc::SO_TYPE).map_err(|e| bad(format!("not a socket: {e}")))?;
        if ty != libc::SOCK_STREAM {
            return Err(bad("not a stream socket".into()));
        }
        let listening = sockopt(fd, libc::SO_ACCEPTCONN).map_err(|e| bad(e.to_string()))?;
        if listening == 0 {
            return Err(bad("socket is not listening".into()));
        }
        let family = sockopt(fd, libc::SO_DOMAIN).map_err(|e| bad(e.to_string()))?;
        let listener = match family {
            libc::AF_INET | libc::AF_INET6 => {
                // SAFETY: a listening TCP socket we own (checked above).
                let std = unsafe { std::net::TcpListener::from_raw_fd(fd) };
                std.set_nonblocking(true).map_err(|e| bad(e.to_string()))?;
                Listener::Tcp(
                    tokio::net::TcpListener::from_std(std).map_err(|e| bad(e.to_string()))?,
                )
            }
            libc::AF_UNIX => {
                // SAFETY: a listening Unix stream socket we own (checked above).
                let std = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
                std.set_nonblocking(true).map_err(|e| bad(e.to_string()))?;
                Listener::Unix(
                    tokio::net::UnixListener::from_std(std).map_err(|e| bad(e.to_string()))?,
                )
            }
            other => return Err(bad(format!("unsupported address family {other}"))),
        };
        out.push((listener, fd_name));
    }
    Ok(Some(out))
}

/// Binds `host:port` (IPv6 literals with or without brackets).
pub async fn bind(host: &str, port: u16) -> Result<Listener, ListenError> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addr = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    tokio::net::TcpListener::bind(&addr)
        .await
        .map(Listener::Tcp)
        .map_err(|source| ListenError::Bind { addr, source })
}

/// Pacing of an accept loop after failed accepts. Running out of file descriptors (EMFILE,
/// ENFILE) or kernel memory leaves the listening socket readable, so retrying at once would
/// spin and log without end: after such a failure the loop waits, 100 ms at first, doubling
/// up to 1 s while the failures go on, and the failures are logged once per 10 s with how
/// many there were in between. Connections waiting meanwhile stay in the kernel's backlog and
/// are accepted as soon as descriptors free up. A connection that was reset before it could
/// be accepted (ECONNABORTED) is no reason to wait.
#[derive(Debug)]
pub struct AcceptBackoff {
    delay: std::time::Duration,
    last_log: Option<std::time::Instant>,
    /// Failures since the last line logged.
    suppressed: u64,
    /// Failures since the last accepted connection.
    failing: u64,
}

/// What to do after one failed accept.
#[derive(Debug, PartialEq, Eq)]
pub struct AcceptFailure {
    /// How long to wait before the next accept.
    pub wait: std::time::Duration,
    /// A warning to log now (`None`: counted, to be reported with the next warning).
    pub log: Option<String>,
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        AcceptBackoff::new()
    }
}

impl AcceptBackoff {
    pub const FIRST: std::time::Duration = std::time::Duration::from_millis(100);
    pub const MAX: std::time::Duration = std::time::Duration::from_secs(1);
    pub const LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

    pub fn new() -> AcceptBackoff {
        AcceptBackoff {
            delay: Self::FIRST,
            last_log: None,
            suppressed: 0,
            failing: 0,
        }
    }

    /// Whether an accept error is about the one connection only (it went away before it was
    /// accepted): the next accept may follow at once.
    pub fn transient(e: &std::io::Error) -> bool {
        matches!(
            e.raw_os_error(),
            Some(libc::ECONNABORTED | libc::ECONNRESET | libc::EINTR | libc::EPROTO)
        )
    }

    /// A failed accept at `now`.
    pub fn failed(&mut self, e: &std::io::Error, now: std::time::Instant) -> AcceptFailure {
        self.failing += 1;
        let wait = self.delay;
        self.delay = (self.delay * 2).min(Self::MAX);
        let due = self
            .last_log
            .is_none_or(|t| now.saturating_duration_since(t) >= Self::LOG_EVERY);
        let log = if due {
            let mut line = format!("accept failed: {e}");
            if self.suppressed > 0 {
                line.push_str(&format!(
                    " ({} more failures since the last report)",
                    self.suppressed
                ));
            }
            line.push_str(&format!(
                "; waiting up to {}s between tries, new connections wait in the backlog",
                Self::MAX.as_secs()
            ));
            self.last_log = Some(now);
            self.suppressed = 0;
            Some(line)
        } else {
            self.suppressed += 1;
            None
        };
        AcceptFailure { wait, log }
    }

    /// A connection was accepted: `Some(failures)` when accepts had been failing before it.
    pub fn accepted(&mut self) -> Option<u64> {
        self.delay = Self::FIRST;
        self.suppressed = 0;
        self.last_log = None;
        Some(std::mem::take(&mut self.failing)).filter(|n| *n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn backoff_grows_and_logs_once_per_interval() {
        let mut b = AcceptBackoff::new();
        let emfile = std::io::Error::from_raw_os_error(libc::EMFILE);
        let t0 = Instant::now();
        let mut now = t0;
        let mut waits = Vec::new();
        let mut logged = Vec::new();
        // 30 s of failures.
        while now < t0 + Duration::from_secs(30) {
            let f = b.failed(&emfile, now);
            waits.push(f.wait);
            if let Some(l) = f.log {
                logged.push(l);
            }
            now += f.wait;
        }
        assert_eq!(waits[0], Duration::from_millis(100));
        assert_eq!(waits[1], Duration::from_millis(200));
        assert!(waits.iter().all(|w| *w <= Duration::from_secs(1)));
        assert!(waits.len() < 45, "{} tries in 30 s", waits.len());
        assert_eq!(logged.len(), 3, "{logged:?}");
        assert!(logged[1].contains("more failures since the last report"));
        assert!(logged[0].contains("Too many open files"), "{}", logged[0]);
        assert_eq!(b.accepted(), Some(waits.len() as u64));
        assert_eq!(b.accepted(), None);
        let f = b.failed(&emfile, now);
        assert_eq!(f.wait, Duration::from_millis(100), "starts over");
        assert!(f.log.is_some(), "a new episode is reported at once");
        assert!(AcceptBackoff::transient(
            &std::io::Error::from_raw_os_error(libc::ECONNABORTED)
        ));
        assert!(!AcceptBackoff::transient(&emfile));
    }
}
