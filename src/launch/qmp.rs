//! A small QMP client (QEMU Machine Protocol: JSON objects, one per line, over a unix socket).
//!
//! The session: qemu sends a greeting (`{"QMP": {...}}`), the client sends `qmp_capabilities`
//! to leave negotiation mode, then commands get `{"return": ...}` or `{"error": ...}` replies
//! and asynchronous `{"event": NAME, "data": ..., "timestamp": ...}` messages arrive in between.
//! Events that arrive while a command waits for its reply are queued, never lost.

use crate::err;
use crate::error::{Error, Result};
use serde_json::Value;
use std::collections::VecDeque;
use std::io::{ErrorKind as IoKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// An asynchronous QMP event.
#[derive(Debug, Clone, PartialEq)]
pub struct QmpEvent {
    /// Event name (`SHUTDOWN`, `GUEST_PANICKED`, `STOP`, `RESET`...).
    pub name: String,
    /// Its `data` member (`Null` when absent).
    pub data: Value,
}

/// One message from qemu.
#[derive(Debug, Clone, PartialEq)]
pub enum QmpMessage {
    /// The greeting.
    Greeting(Value),
    /// A successful reply.
    Return(Value),
    /// A failed reply: `class: desc`.
    Error(String),
    /// An event.
    Event(QmpEvent),
}

/// What QMP messages are called in errors.
const QMP_WHAT: &str = "a QMP message from qemu";

/// Parses one line of QMP, within the JSON limits of [`crate::limits::parse_json`]
/// (`MAX_JSON_BYTES`, `MAX_JSON_DEPTH`: qemu's replies to the commands sent here are a few KiB
/// and nest a few levels), checked before serde_json sees the line.
pub fn parse_message(line: &[u8]) -> Result<QmpMessage> {
    let v = crate::limits::parse_json(line, QMP_WHAT)?;
    if let Some(name) = v.get("event").and_then(Value::as_str) {
        return Ok(QmpMessage::Event(QmpEvent {
            name: name.to_string(),
            data: v.get("data").cloned().unwrap_or(Value::Null),
        }));
    }
    if let Some(r) = v.get("return") {
        return Ok(QmpMessage::Return(r.clone()));
    }
    if let Some(e) = v.get("error") {
        let class = e.get("class").and_then(Value::as_str).unwrap_or("Error");
        let desc = e.get("desc").and_then(Value::as_str).unwrap_or("");
        return Ok(QmpMessage::Error(format!("{class}: {desc}")));
    }
    if let Some(g) = v.get("QMP") {
        return Ok(QmpMessage::Greeting(g.clone()));
    }
    Err(err!(External, "QMP message of no known kind: {v}"))
}

/// A connected, negotiated QMP session.
#[derive(Debug)]
pub struct Qmp {
    stream: UnixStream,
    buf: Vec<u8>,
    /// How much of `buf` is known to hold no newline.
    scanned: usize,
    events: VecDeque<QmpEvent>,
    closed: bool,
}

/// How long a command may wait for its reply.
const REPLY_LIMIT: Duration = Duration::from_secs(30);

impl Qmp {
    /// Connects to qemu's QMP socket, retrying until `limit` while `alive()` says qemu still
    /// runs (it returns an error describing qemu's death otherwise), then negotiates.
    pub fn connect(
        path: &Path,
        limit: Duration,
        alive: &mut dyn FnMut() -> Result<()>,
    ) -> Result<Qmp> {
        let start = Instant::now();
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) => {
                    alive()?;
                    if start.elapsed() >= limit {
                        return Err(Error::io(e, "connecting to qemu's QMP socket").with_path(path));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        };
        let mut q = Qmp {
            stream,
            buf: Vec::new(),
            scanned: 0,
            events: VecDeque::new(),
            closed: false,
        };
        match q.read_message(REPLY_LIMIT)? {
            Some(QmpMessage::Greeting(_)) => {}
            other => return Err(err!(External, "QMP greeting expected, got {other:?}")),
        }
        q.execute("qmp_capabilities", None)?;
        Ok(q)
    }

    /// Runs a command and returns its `return` value; events seen meanwhile are queued.
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value> {
        let mut msg = serde_json::json!({ "execute": command });
        if let Some(a) = arguments {
            msg["arguments"] = a;
        }
        let mut line = msg.to_string();
        line.push('\n');
        self.stream
            .write_all(line.as_bytes())
            .map_err(|e| Error::io(e, format!("sending QMP command {command}")))?;
        let start = Instant::now();
        loop {
            let left = REPLY_LIMIT.saturating_sub(start.elapsed());
            match self.read_message(left)? {
                Some(QmpMessage::Return(v)) => return Ok(v),
                Some(QmpMessage::Error(e)) => {
                    return Err(err!(External, "QMP command {command} failed: {e}"));
                }
                Some(QmpMessage::Event(ev)) => self.events.push_back(ev),
                Some(QmpMessage::Greeting(_)) => {}
                None if self.closed => {
                    return Err(err!(External, "qemu closed QMP before answering {command}"));
                }
                None if left.is_zero() => {
                    return Err(err!(External, "no QMP reply to {command} in time"));
                }
                None => {}
            }
        }
    }

    /// The next event, waiting up to `wait`; `None` on timeout or once qemu closed the socket
    /// (see [`Qmp::is_closed`]).
    pub fn next_event(&mut self, wait: Duration) -> Result<Option<QmpEvent>> {
        if let Some(e) = self.events.pop_front() {
            return Ok(Some(e));
        }
        let start = Instant::now();
        loop {
            let left = wait.saturating_sub(start.elapsed());
            match self.read_message(left)? {
                Some(QmpMessage::Event(e)) => return Ok(Some(e)),
                Some(_) => {}
                None => return Ok(None),
            }
            if left.is_zero() {
                return Ok(None);
            }
        }
    }

    /// Whether qemu closed the connection (it exited).
    pub fn is_closed(&self) -> bool {
        self.closed && self.events.is_empty()
    }

    /// Reads one complete message, waiting up to `wait` for more bytes.
    fn read_message(&mut self, wait: Duration) -> Result<Option<QmpMessage>> {
        let start = Instant::now();
        loop {
            // bytes before `scanned` hold no newline: each byte is searched once
            if let Some(pos) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=self.scanned + pos).collect();
                self.scanned = 0;
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return parse_message(&line).map(Some);
            }
            self.scanned = self.buf.len();
            // a line longer than any message parsed is refused before it fills memory
            crate::limits::check_size(
                self.buf.len(),
                crate::limits::MAX_JSON_BYTES,
                "MAX_JSON_BYTES",
                QMP_WHAT,
            )?;
            if self.closed {
                return Ok(None);
            }
            let left = wait.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Ok(None);
            }
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .map_err(|e| Error::io(e, "setting the QMP read timeout"))?;
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => self.closed = true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), IoKind::WouldBlock | IoKind::TimedOut) => {
                    return Ok(None);
                }
                Err(e) if e.kind() == IoKind::Interrupted => {}
                Err(e) if e.kind() == IoKind::ConnectionReset => self.closed = true,
                Err(e) => return Err(Error::io(e, "reading from qemu's QMP socket")),
            }
        }
    }
}

/// How a QMP event ends (or does not end) a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    /// `SHUTDOWN` with reason `guest-shutdown`: the guest powered itself off (success).
    PoweredOff,
    /// `SHUTDOWN` with reason `guest-reset` (a reboot under `-no-reboot`).
    Reset,
    /// `GUEST_PANICKED`, or `SHUTDOWN` with reason `guest-panic`.
    Panicked(String),
    /// `SHUTDOWN` for any other reason (`host-signal`, `host-qmp-quit`...).
    HostShutdown(String),
}

/// What an event means for the run; `None` for events that do not end it.
pub fn classify(event: &QmpEvent) -> Option<RunEnd> {
    match event.name.as_str() {
        "SHUTDOWN" => {
            let reason = event
                .data
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or("unknown");
            Some(match reason {
                "guest-shutdown" => RunEnd::PoweredOff,
                "guest-reset" => RunEnd::Reset,
                "guest-panic" => RunEnd::Panicked("qemu shut the VM down on a guest panic".into()),
                other => RunEnd::HostShutdown(other.to_string()),
            })
        }
        "GUEST_PANICKED" => Some(RunEnd::Panicked(format!(
            "GUEST_PANICKED {}",
            event.data.get("info").unwrap_or(&Value::Null)
        ))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(line: &str) -> QmpEvent {
        match parse_message(line.as_bytes()).unwrap() {
            QmpMessage::Event(e) => e,
            other => panic!("not an event: {other:?}"),
        }
    }

    #[test]
    fn parses_every_message_kind() {
        assert!(matches!(
            parse_message(br#"{"QMP": {"version": {}, "capabilities": []}}"#).unwrap(),
            QmpMessage::Greeting(_)
        ));
        assert_eq!(
            parse_message(br#"{"return": {}}"#).unwrap(),
            QmpMessage::Return(serde_json::json!({}))
        );
        assert_eq!(
            parse_message(br#"{"error": {"class": "GenericError", "desc": "no"}}"#).unwrap(),
            QmpMessage::Error("GenericError: no".into())
        );
        assert!(parse_message(b"not json").is_err());
        assert!(parse_message(br#"{"what": 1}"#).is_err());
    }

    #[test]
    fn only_guest_shutdown_is_a_power_off() {
        let off = ev(
            r#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}}"#,
        );
        assert_eq!(classify(&off), Some(RunEnd::PoweredOff));
        let reset =
            ev(r#"{"event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-reset"}}"#);
        assert_eq!(classify(&reset), Some(RunEnd::Reset));
        let host =
            ev(r#"{"event": "SHUTDOWN", "data": {"guest": false, "reason": "host-signal"}}"#);
        assert_eq!(
            classify(&host),
            Some(RunEnd::HostShutdown("host-signal".into()))
        );
        let panic =
            ev(r#"{"event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-panic"}}"#);
        assert!(matches!(classify(&panic), Some(RunEnd::Panicked(_))));
        let gp = ev(r#"{"event": "GUEST_PANICKED", "data": {"action": "pause"}}"#);
        assert!(matches!(classify(&gp), Some(RunEnd::Panicked(_))));
        assert_eq!(classify(&ev(r#"{"event": "RESUME"}"#)), None);
        assert_eq!(classify(&ev(r#"{"event": "STOP"}"#)), None);
    }

    #[test]
    fn hostile_qmp_lines_name_the_json_limits() {
        use crate::limits::{MAX_JSON_BYTES, MAX_JSON_DEPTH};
        // 100k levels: serde_json alone said "recursion limit exceeded" at level 128
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        let e = parse_message(format!("{{\"return\": {deep}}}").as_bytes()).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::LimitExceeded);
        assert!(
            e.to_string()
                .contains("a QMP message from qemu nests deeper than MAX_JSON_DEPTH (64 levels)"),
            "{e}"
        );
        let ok = "[".repeat(MAX_JSON_DEPTH - 1) + &"]".repeat(MAX_JSON_DEPTH - 1);
        parse_message(format!("{{\"return\": {ok}}}").as_bytes()).unwrap();
        let mut long = br#"{"return": ""#.to_vec();
        long.resize(MAX_JSON_BYTES + 1, b'x');
        long.extend_from_slice(b"\"}");
        let e = parse_message(&long).unwrap_err();
        assert!(
            e.to_string()
                .contains("over MAX_JSON_BYTES (1048576 bytes)"),
            "{e}"
        );
    }

    /// A QMP socket in a temporary directory whose one connection `serve` answers:
    /// (directory, socket path, server thread).
    fn qmp_server(
        serve: impl FnOnce(UnixStream) + Send + 'static,
    ) -> (
        tempfile::TempDir,
        std::path::PathBuf,
        std::thread::JoinHandle<()>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("q.sock");
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let server = std::thread::spawn(move || serve(listener.accept().unwrap().0));
        (dir, sock, server)
    }

    #[test]
    fn an_endless_qmp_line_is_refused_at_the_json_size_limit() {
        let (_dir, sock, server) = qmp_server(|mut s| {
            // 64 MiB without a newline: held whole (and searched from its start on every
            // read) before
            let chunk = vec![b' '; 1 << 20];
            for _ in 0..64 {
                if s.write_all(&chunk).is_err() {
                    return; // refused and closed: the client stopped reading
                }
            }
        });
        let e = Qmp::connect(&sock, Duration::from_secs(5), &mut || Ok(())).unwrap_err();
        assert!(e.to_string().contains("a QMP message from qemu is "), "{e}");
        assert!(
            e.to_string()
                .contains("over MAX_JSON_BYTES (1048576 bytes)"),
            "{e}"
        );
        server.join().unwrap();
    }

    #[test]
    fn events_during_a_command_are_kept_and_split_lines_join() {
        let (_dir, sock, server) = qmp_server(|mut s| {
            s.write_all(b"{\"QMP\": {\"version\": {}}}\n").unwrap();
            let mut b = [0u8; 256];
            let n = s.read(&mut b).unwrap();
            assert!(String::from_utf8_lossy(&b[..n]).contains("qmp_capabilities"));
            // An event before the reply, the reply split across writes.
            s.write_all(b"{\"event\": \"RESUME\"}\n{\"ret").unwrap();
            std::thread::sleep(Duration::from_millis(50));
            s.write_all(
                b"urn\": {}}\n{\"event\": \"SHUTDOWN\", \"data\": {\"reason\": \"guest-reset\"}}\n",
            )
            .unwrap();
        });
        let mut q = Qmp::connect(&sock, Duration::from_secs(5), &mut || Ok(())).unwrap();
        server.join().unwrap();
        assert_eq!(
            q.next_event(Duration::from_secs(1)).unwrap().unwrap().name,
            "RESUME"
        );
        let e = q.next_event(Duration::from_secs(1)).unwrap().unwrap();
        assert_eq!(classify(&e), Some(RunEnd::Reset));
        assert_eq!(q.next_event(Duration::from_millis(100)).unwrap(), None);
        assert!(q.is_closed());
    }
}
