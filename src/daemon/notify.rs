//! sd_notify: status messages to systemd over the datagram socket named by `NOTIFY_SOCKET`
//! (a path, or an abstract socket when it starts with `@`). Without it, nothing is sent.
//!
//! The messages are the `sd-notify` crate's [`NotifyState`]s, the reload time its
//! [`NotifyState::monotonic_usec_now`] and the watchdog interval its
//! [`sd_notify::watchdog_enabled`]. The datagram itself is sent here: `sd_notify::notify`
//! (0.5) connects to `NOTIFY_SOCKET` as a file path, so an abstract socket (`@name`, used by
//! systemd in containers and by test harnesses) would not be reached, and it ends the
//! datagram with a newline after the last field, where sd_notify(3) and the exact messages
//! our systemd tests compare (`WATCHDOG=1`) have none. The fields are the same.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use sd_notify::NotifyState;

pub struct Notifier {
    socket: Option<(UnixDatagram, String)>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET` from the environment. The variable is left in place so that a
    /// process this daemon starts could not mistake it for its own (we start none).
    pub fn from_env() -> Notifier {
        Notifier::to(std::env::var("NOTIFY_SOCKET").ok().as_deref())
    }

    /// Sends to `socket` (a path, or `@name` for an abstract socket); `None` or empty: nothing
    /// is sent.
    pub fn to(socket: Option<&str>) -> Notifier {
        let socket = socket
            .filter(|p| !p.is_empty())
            .and_then(|p| UnixDatagram::unbound().ok().map(|s| (s, p.to_string())));
        Notifier { socket }
    }

    pub fn enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// Sends the states in one datagram, one `KEY=value` line each.
    pub fn notify(&self, states: &[NotifyState]) {
        let Some((sock, path)) = &self.socket else {
            return;
        };
        let msg = message(states);
        let res = if let Some(name) = path.strip_prefix('@') {
            send_abstract(sock, name.as_bytes(), msg.as_bytes())
        } else {
            sock.send_to(msg.as_bytes(), path).map(|_| ())
        };
        if let Err(e) = res {
            crate::warn!("cannot send to NOTIFY_SOCKET", "error" => &e.to_string());
        }
    }

    pub fn ready(&self, status: &str) {
        self.notify(&[NotifyState::Ready, NotifyState::Status(&one_line(status))]);
    }

    pub fn status(&self, status: &str) {
        self.notify(&[NotifyState::Status(&one_line(status))]);
    }

    /// `RELOADING=1` with the monotonic time systemd wants (Type=notify-reload), in the same
    /// datagram.
    pub fn reloading(&self) {
        let status = NotifyState::Status("reloading configuration");
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.notify(&[NotifyState::Reloading, now, status]),
            Err(e) => {
                crate::warn!("cannot read CLOCK_MONOTONIC for MONOTONIC_USEC", "error" => &e.to_string());
                self.notify(&[NotifyState::Reloading, status]);
            }
        }
    }

    pub fn stopping(&self) {
        self.notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    pub fn watchdog(&self) {
        self.notify(&[NotifyState::Watchdog]);
    }
}

/// The datagram: the states' `KEY=value` lines joined by newlines.
fn message(states: &[NotifyState]) -> String {
    states
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A STATUS= value must stay on one line: a newline would end the assignment and the rest
/// would be read as another (error messages from parsers can span lines).
fn one_line(s: &str) -> String {
    s.split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(target_os = "linux")]
fn send_abstract(sock: &UnixDatagram, name: &[u8], msg: &[u8]) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    sock.send_to_addr(msg, &addr).map(|_| ())
}

#[cfg(not(target_os = "linux"))]
fn send_abstract(_: &UnixDatagram, _: &[u8], _: &[u8]) -> std::io::Result<()> {
    Err(std::io::Error::other("abstract sockets need Linux"))
}

/// The watchdog interval systemd asked for (`WATCHDOG_USEC`, when `WATCHDOG_PID` is unset or
/// names this process), halved, as sd_watchdog_enabled(3) advises.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled()
        .filter(|d| !d.is_zero())
        .map(|d| d / 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn status_is_one_line() {
        assert_eq!(
            one_line("reload failed: bad yaml\n  at line 2\r\n"),
            "reload failed: bad yaml at line 2"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Whatever a status says, it is one line, and ready() sends exactly two fields.
        #[test]
        fn any_status_stays_one_field(s in "(?s).{0,80}") {
            let line = one_line(&s);
            prop_assert!(!line.contains(['\n', '\r']));
            let msg = message(&[NotifyState::Ready, NotifyState::Status(&line)]);
            prop_assert_eq!(msg.split('\n').count(), 2);
            prop_assert!(msg.starts_with("READY=1\nSTATUS="));
        }
    }

    fn usec_now() -> i128 {
        match NotifyState::monotonic_usec_now().unwrap() {
            NotifyState::MonotonicUsec(n) => n,
            other => panic!("{other:?}"),
        }
    }

    fn recv(sock: &UnixDatagram) -> String {
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    /// One datagram: RELOADING=1, MONOTONIC_USEC (taken at the call), STATUS; no trailing
    /// newline, as the systemd tests compare messages exactly.
    #[test]
    fn reloading_is_one_datagram_with_the_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::to(path.to_str());
        assert!(n.enabled());
        let before = usec_now();
        n.reloading();
        let after = usec_now();
        let msg = recv(&server);
        let lines: Vec<&str> = msg.split('\n').collect();
        assert_eq!(lines.len(), 3, "{msg:?}");
        assert_eq!(lines[0], "RELOADING=1");
        let usec: i128 = lines[1]
            .strip_prefix("MONOTONIC_USEC=")
            .unwrap()
            .parse()
            .unwrap();
        assert!(before <= usec && usec <= after, "{before} {usec} {after}");
        assert_eq!(lines[2], "STATUS=reloading configuration");
        n.watchdog();
        assert_eq!(recv(&server), "WATCHDOG=1");
        n.ready("serving\n2 charts");
        assert_eq!(recv(&server), "READY=1\nSTATUS=serving 2 charts");
        n.stopping();
        assert_eq!(recv(&server), "STOPPING=1\nSTATUS=stopping");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("chartroom-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let server = UnixDatagram::bind_addr(&addr).unwrap();
        let n = Notifier::to(Some(&format!("@{name}")));
        n.status("loading");
        assert_eq!(recv(&server), "STATUS=loading");
    }

    #[test]
    fn no_socket_sends_nothing() {
        assert!(!Notifier::to(None).enabled());
        assert!(!Notifier::to(Some("")).enabled());
        // A socket that is not there: a warning, no panic.
        Notifier::to(Some("/nonexistent/notify")).ready("x");
    }
}
