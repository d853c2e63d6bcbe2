//! The master's operator endpoints: the control socket that answers `tine status`, and the
//! HTTP listener for `/metrics` and `/healthz`. Both are served by the master's own event loop,
//! non-blocking and tiny, from the scoreboard: no worker or application thread is involved.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use mio::{Interest, Registry, Token};

use crate::sys;

/// Token of the control socket's listener.
pub const CONTROL: Token = Token(2);
/// Token of the metrics listener.
pub const METRICS: Token = Token(3);
/// Connection tokens start here.
const FIRST_CONN: usize = 1000;
/// Requests to these endpoints are a line or a short head; anything longer is refused.
const MAX_REQUEST: usize = 4096;
/// How long a client has to send its request and read the answer. The master's loop drops
/// connections past it on every turn, which comes at least once a second.
const DEADLINE: Duration = Duration::from_secs(5);
/// At most this many connections at once on each endpoint (the control socket, the metrics
/// port), so clients of one cannot crowd out the other; more wait in the listen queue and are
/// taken as connections close.
const MAX_CONNS: usize = 64;

/// What an operator asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpsRequest {
    /// `tine status`: the table.
    StatusTable,
    /// `tine status --json`.
    StatusJson,
    /// `GET /metrics`.
    Metrics,
    /// `GET /healthz`.
    Health,
    /// Anything else on the metrics port (404) or the control socket (an error line).
    Unknown,
}

enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

struct Conn {
    stream: Stream,
    http: bool,
    input: Vec<u8>,
    output: Vec<u8>,
    written: usize,
    answered: bool,
    deadline: Instant,
}

/// The listeners and their connections.
#[derive(Default)]
pub struct Ops {
    control: Option<(UnixListener, PathBuf)>,
    metrics: Option<TcpListener>,
    conns: Vec<Option<Conn>>,
    /// A listener that was left with connections waiting because its endpoint had all its
    /// slots taken, by token. Accepting is edge-triggered: no new event comes for clients
    /// already queued, so they are taken when a connection of the endpoint closes.
    waiting: Vec<Token>,
}

impl std::fmt::Debug for Ops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ops")
            .field("control", &self.control.as_ref().map(|(_, p)| p))
            .field("connections", &self.conns.iter().flatten().count())
            .finish()
    }
}

/// Opening an operator endpoint failed.
#[derive(Debug)]
pub struct OpsError {
    /// Which endpoint, as the operator wrote it.
    pub what: String,
    /// What the OS said.
    pub source: io::Error,
}

impl std::fmt::Display for OpsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "could not open {}: {}",
            self.what,
            crate::text::describe_io(&self.source)
        )
    }
}

impl Ops {
    /// Opens the configured endpoints. `replacing` is set during a binary upgrade: the old
    /// master's control socket file is then taken over rather than refused.
    pub fn open(
        control: Option<&Path>,
        metrics: Option<SocketAddr>,
        replacing: bool,
        registry: &Registry,
    ) -> Result<Ops, OpsError> {
        let mut ops = Ops::default();
        if let Some(path) = control {
            if replacing {
                let _ = std::fs::remove_file(path);
            }
            ops.control = Some((bind_control(path, registry)?, path.to_owned()));
        }
        if let Some(addr) = metrics {
            let error = |source| OpsError {
                what: format!("the metrics address {addr}"),
                source,
            };
            let listener = sys::bind_tcp(addr, 128).map_err(error)?;
            let mut listener = TcpListener::from_std(listener);
            registry
                .register(&mut listener, METRICS, Interest::READABLE)
                .map_err(error)?;
            ops.metrics = Some(listener);
        }
        Ok(ops)
    }

    /// The metrics address actually bound (port 0 resolved).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Whether `token` belongs to these endpoints.
    pub fn owns(token: Token) -> bool {
        token == CONTROL || token == METRICS || token.0 >= FIRST_CONN
    }

    /// Handles an event; returns the connections whose request is complete, to be answered
    /// with [`Ops::answer`].
    pub fn on_event(&mut self, token: Token, registry: &Registry) -> Vec<(usize, OpsRequest)> {
        match token {
            CONTROL | METRICS => {
                self.accept(token, registry);
                Vec::new()
            }
            Token(n) => {
                let index = n - FIRST_CONN;
                self.drive(index, registry)
            }
        }
    }

    fn accept(&mut self, token: Token, registry: &Registry) {
        let http = token == METRICS;
        loop {
            if self
                .conns
                .iter()
                .flatten()
                .filter(|c| c.http == http)
                .count()
                >= MAX_CONNS
            {
                // Full, and a client waits (the listener said so): the oldest connection that
                // has not been answered gives way, so clients that connect and say nothing
                // cannot keep a scraper out even until their deadline. A client with a request
                // is answered in the turn its bytes arrive, so the oldest is one that is silent.
                // With every slot being flushed instead, what waits is taken when one closes.
                match self.oldest_unanswered(http) {
                    Some(index) => self.close(index, registry),
                    None => {
                        if !self.waiting.contains(&token) {
                            self.waiting.push(token);
                        }
                        return;
                    }
                }
            }
            let accepted = match token {
                CONTROL => match &self.control {
                    Some((listener, _)) => listener.accept().map(|(s, _)| (Stream::Unix(s), false)),
                    None => return,
                },
                _ => match &self.metrics {
                    Some(listener) => listener.accept().map(|(s, _)| (Stream::Tcp(s), true)),
                    None => return,
                },
            };
            let (mut stream, http) = match accepted {
                Ok(accepted) => accepted,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    log::debug!("operator endpoint accept: {err}");
                    return;
                }
            };
            let index = match self.conns.iter().position(Option::is_none) {
                Some(index) => index,
                None => {
                    self.conns.push(None);
                    self.conns.len() - 1
                }
            };
            let token = Token(FIRST_CONN + index);
            let registered = match &mut stream {
                Stream::Unix(s) => {
                    registry.register(s, token, Interest::READABLE | Interest::WRITABLE)
                }
                Stream::Tcp(s) => {
                    registry.register(s, token, Interest::READABLE | Interest::WRITABLE)
                }
            };
            if registered.is_err() {
                continue;
            }
            self.conns[index] = Some(Conn {
                stream,
                http,
                input: Vec::new(),
                output: Vec::new(),
                written: 0,
                answered: false,
                deadline: Instant::now() + DEADLINE,
            });
        }
    }

    /// The endpoint's connection (`http`: the metrics port, else the control socket) that
    /// was accepted first among those not yet answered: every connection gets the same
    /// [`DEADLINE`] at its accept, so the earliest deadline is the oldest.
    fn oldest_unanswered(&self, http: bool) -> Option<usize> {
        self.conns
            .iter()
            .enumerate()
            .filter_map(|(index, conn)| {
                let conn = conn.as_ref()?;
                (conn.http == http && !conn.answered).then_some((index, conn.deadline))
            })
            .min_by_key(|&(_, deadline)| deadline)
            .map(|(index, _)| index)
    }

    fn drive(&mut self, index: usize, registry: &Registry) -> Vec<(usize, OpsRequest)> {
        let Some(conn) = self.conns.get_mut(index).and_then(Option::as_mut) else {
            return Vec::new();
        };
        if conn.answered {
            self.flush(index, registry);
            return Vec::new();
        }
        let mut chunk = [0u8; 1024];
        loop {
            let read = match &mut conn.stream {
                Stream::Unix(s) => s.read(&mut chunk),
                Stream::Tcp(s) => s.read(&mut chunk),
            };
            match read {
                Ok(0) => break,
                Ok(n) => {
                    conn.input.extend_from_slice(&chunk[..n]);
                    if conn.input.len() > MAX_REQUEST {
                        self.close(index, registry);
                        return Vec::new();
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.close(index, registry);
                    return Vec::new();
                }
            }
        }
        match parse_request(&conn.input, conn.http) {
            Some(request) => vec![(index, request)],
            None => Vec::new(),
        }
    }

    /// Sends `response` on connection `index` and closes it once written.
    pub fn answer(&mut self, index: usize, response: Vec<u8>, registry: &Registry) {
        if let Some(conn) = self.conns.get_mut(index).and_then(Option::as_mut) {
            conn.output = response;
            conn.answered = true;
            self.flush(index, registry);
        }
    }

    /// Whether connection `index` speaks HTTP (the metrics port) rather than lines.
    pub fn is_http(&self, index: usize) -> bool {
        self.conns
            .get(index)
            .and_then(Option::as_ref)
            .is_some_and(|c| c.http)
    }

    fn flush(&mut self, index: usize, registry: &Registry) {
        let Some(conn) = self.conns.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        while conn.written < conn.output.len() {
            let rest = &conn.output[conn.written..];
            let wrote = match &mut conn.stream {
                Stream::Unix(s) => s.write(rest),
                Stream::Tcp(s) => s.write(rest),
            };
            match wrote {
                Ok(0) => break,
                Ok(n) => conn.written += n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        self.close(index, registry);
    }

    /// Closes connection `index`, and takes the clients waiting for its slot, if any.
    fn close(&mut self, index: usize, registry: &Registry) {
        if let Some(mut conn) = self.conns.get_mut(index).and_then(Option::take) {
            let _ = match &mut conn.stream {
                Stream::Unix(s) => registry.deregister(s),
                Stream::Tcp(s) => registry.deregister(s),
            };
            let token = if conn.http { METRICS } else { CONTROL };
            if let Some(at) = self.waiting.iter().position(|&t| t == token) {
                self.waiting.swap_remove(at);
                self.accept(token, registry);
            }
        }
    }

    /// Drops connections past their deadline.
    pub fn expire(&mut self, registry: &Registry) {
        let now = Instant::now();
        for index in 0..self.conns.len() {
            if self.conns[index]
                .as_ref()
                .is_some_and(|c| now >= c.deadline)
            {
                self.close(index, registry);
            }
        }
    }

    /// Binds the control socket afresh at its path: a new master started by an upgrade took
    /// the path over, and is gone without taking over from this one.
    pub fn reclaim_control(&mut self, registry: &Registry) -> Result<(), OpsError> {
        let Some((listener, path)) = self.control.take() else {
            return Ok(());
        };
        // Closing it takes it out of the poll.
        drop(listener);
        let _ = std::fs::remove_file(&path);
        let listener = bind_control(&path, registry)?;
        self.control = Some((listener, path));
        Ok(())
    }

    /// Removes the control socket's file (on a clean exit that hands nothing over).
    pub fn remove_control_file(&self) {
        if let Some((_, path)) = &self.control {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Binds the control socket at `path` (only the owner may connect) and watches it.
fn bind_control(path: &Path, registry: &Registry) -> Result<UnixListener, OpsError> {
    let error = |source| OpsError {
        what: format!("the control socket {}", path.display()),
        source,
    };
    let listener = sys::bind_unix(path, 16, Some(0o600), None).map_err(error)?;
    let mut listener = UnixListener::from_std(listener);
    registry
        .register(&mut listener, CONTROL, Interest::READABLE)
        .map_err(error)?;
    Ok(listener)
}

/// Reads an operator request: a line on the control socket, a request head on the metrics
/// port; `None` until it is complete.
pub fn parse_request(input: &[u8], http: bool) -> Option<OpsRequest> {
    if http {
        let end = input.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = std::str::from_utf8(&input[..end]).ok()?;
        let mut words = head.lines().next()?.split(' ');
        let (method, target) = (words.next()?, words.next()?);
        let path = target.split('?').next().unwrap_or(target);
        return Some(match (method, path) {
            ("GET" | "HEAD", "/metrics") => OpsRequest::Metrics,
            ("GET" | "HEAD", "/healthz") => OpsRequest::Health,
            _ => OpsRequest::Unknown,
        });
    }
    let end = input.iter().position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(&input[..end]).ok()?.trim();
    Some(match line {
        "status" => OpsRequest::StatusTable,
        "status json" => OpsRequest::StatusJson,
        _ => OpsRequest::Unknown,
    })
}

/// A complete HTTP/1.1 response that closes the connection.
pub fn http_response(status: u16, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        crate::http::reason_phrase(status),
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_lines() {
        assert_eq!(
            parse_request(b"status\n", false),
            Some(OpsRequest::StatusTable)
        );
        assert_eq!(
            parse_request(b"status json\n", false),
            Some(OpsRequest::StatusJson)
        );
        assert_eq!(parse_request(b"reboot\n", false), Some(OpsRequest::Unknown));
        assert_eq!(parse_request(b"stat", false), None);
    }

    #[test]
    fn metrics_requests() {
        assert_eq!(
            parse_request(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", true),
            Some(OpsRequest::Metrics)
        );
        assert_eq!(
            parse_request(b"GET /healthz?probe=1 HTTP/1.0\r\n\r\n", true),
            Some(OpsRequest::Health)
        );
        assert_eq!(
            parse_request(b"POST /metrics HTTP/1.1\r\n\r\n", true),
            Some(OpsRequest::Unknown)
        );
        assert_eq!(parse_request(b"GET /metrics HTTP/1.1\r\n", true), None);
    }

    #[test]
    fn responses_close() {
        let response = String::from_utf8(http_response(503, "text/plain", "stopping\n")).unwrap();
        assert!(response.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(response.contains("Content-Length: 9\r\n"));
        assert!(response.contains("Connection: close\r\n"));
    }
}
