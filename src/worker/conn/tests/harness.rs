//! An in-memory socket, and a connection over it with what its transitions need.

use std::cell::Cell;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use super::super::*;
use crate::handler::Response;
use crate::http::DateCache;
use crate::listeners::tls::Flushed;

/// What the client side of the in-memory socket does next when read from.
pub(super) enum Input {
    Bytes(Vec<u8>),
    /// The client closed its side: every read from now on returns 0.
    Eof,
    /// The read fails (a reset).
    Fail,
}

/// A socket in memory: reads follow a script (`WouldBlock` once it runs out), writes take at
/// most `max_write` bytes a call and `write_room` bytes in all (`WouldBlock` at 0) or fail.
pub(super) struct Mem {
    pub(super) input: VecDeque<Input>,
    pub(super) written: Vec<u8>,
    pub(super) max_write: usize,
    pub(super) write_room: usize,
    pub(super) write_fails: bool,
    pub(super) shut: Cell<bool>,
    /// Like TLS: written bytes are held (`held`) until [`Socket::flush_pending`] lets them
    /// out, `flush_room` bytes at most; no write is taken while any are held.
    pub(super) holds_back: bool,
    pub(super) held: usize,
    pub(super) flush_room: usize,
}

impl Read for Mem {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.input.front_mut() {
            None => Err(io::ErrorKind::WouldBlock.into()),
            Some(Input::Eof) => Ok(0),
            Some(Input::Fail) => {
                self.input.pop_front();
                Err(io::ErrorKind::ConnectionReset.into())
            }
            Some(Input::Bytes(bytes)) => {
                let n = bytes.len().min(buf.len());
                buf[..n].copy_from_slice(&bytes[..n]);
                bytes.drain(..n);
                if bytes.is_empty() {
                    self.input.pop_front();
                }
                Ok(n)
            }
        }
    }
}

impl Mem {
    /// Nothing to read yet, and room for any write.
    fn empty() -> Mem {
        Mem {
            input: VecDeque::new(),
            written: Vec::new(),
            max_write: usize::MAX,
            write_room: usize::MAX,
            write_fails: false,
            shut: Cell::new(false),
            holds_back: false,
            held: 0,
            flush_room: 0,
        }
    }

    /// How much the next write may take, or why it takes nothing.
    pub(super) fn room(&self, want: usize) -> io::Result<usize> {
        if self.write_fails {
            Err(io::ErrorKind::BrokenPipe.into())
        } else if self.max_write == 0 || self.write_room == 0 {
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            Ok(want.min(self.max_write).min(self.write_room))
        }
    }
}

impl Write for Mem {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.held > 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = self.room(buf.len())?;
        if self.holds_back {
            self.held = n;
        }
        self.write_room -= n;
        self.written.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Socket for Mem {
    fn shutdown_write(&mut self) {
        self.shut.set(true);
    }

    fn send_file(&mut self, file: &File, offset: &mut u64, count: usize) -> io::Result<usize> {
        let mut buf = vec![0; self.room(count)?];
        let n = file.read_at(&mut buf, *offset)?;
        self.write_room -= n;
        self.written.extend_from_slice(&buf[..n]);
        *offset += n as u64;
        Ok(n)
    }

    fn peer_closed(&self) -> bool {
        matches!(self.input.back(), Some(Input::Eof | Input::Fail))
    }

    /// Every byte scripted before the next end or failure, as a socket's buffer holds them.
    fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        for input in &self.input {
            match input {
                Input::Bytes(bytes) => {
                    let take = bytes.len().min(buf.len() - n);
                    buf[n..n + take].copy_from_slice(&bytes[..take]);
                    n += take;
                }
                Input::Eof => return Ok(n),
                Input::Fail if n == 0 => return Err(io::ErrorKind::ConnectionReset.into()),
                Input::Fail => return Ok(n),
            }
        }
        if n == 0 {
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            Ok(n)
        }
    }

    fn read_raw(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read(buf)
    }

    fn flush_pending(&mut self) -> io::Result<Flushed> {
        let bytes = self.held.min(self.flush_room);
        self.held -= bytes;
        self.flush_room -= bytes;
        Ok(Flushed {
            bytes,
            all: self.held == 0,
        })
    }
}

/// A connection over [`Mem`] and what its transitions need.
pub(super) struct Test {
    pub(super) conn: Conn<Mem>,
    pub(super) settings: Settings,
    pub(super) scratch: Vec<u8>,
    pub(super) dates: DateCache,
    pub(super) stopping: bool,
    /// The worker's budget for bodies being received: ample unless a test sets one.
    pub(super) budget: Rc<BodyBudget>,
}

pub(super) fn settings() -> Settings {
    Settings {
        limits: http::Limits::default(),
        body_buffer: 1024,
        keepalive: Duration::from_secs(5),
        header_timeout: Duration::from_secs(10),
        body_timeout: Duration::from_secs(100),
        min_body_rate: 0,
        body_rate_grace: Duration::from_secs(5),
        request_timeout: Duration::from_secs(30),
        concurrent_app: false,
        websocket: WsSettings {
            max_message: 1 << 20,
            ping_interval: Duration::from_secs(20),
            ping_timeout: Duration::from_secs(20),
        },
    }
}

impl Test {
    pub(super) fn new() -> Test {
        Test::with(settings())
    }

    pub(super) fn with(settings: Settings) -> Test {
        Test {
            conn: Conn::new(Mem::empty(), None, 0, 1, &settings),
            settings,
            scratch: vec![0; 64 * 1024],
            dates: DateCache::new(),
            stopping: false,
            budget: BodyBudget::new(u64::MAX, u64::MAX),
        }
    }

    /// A connection from `peer` on a `proxy_protocol` listener.
    pub(super) fn proxied(peer: &str) -> Test {
        let mut test = Test::new();
        test.conn = Conn::new(
            Mem::empty(),
            Some(peer.parse().unwrap()),
            0,
            1,
            &test.settings,
        )
        .expecting_proxy_header();
        test
    }

    pub(super) fn send(&mut self, bytes: &[u8]) {
        self.conn
            .stream
            .input
            .push_back(Input::Bytes(bytes.to_vec()));
    }

    pub(super) fn close_input(&mut self) {
        self.conn.stream.input.push_back(Input::Eof);
    }

    /// Runs one transition and returns its actions, carrying out each `Write` as the worker's
    /// `drive` does: the write's own actions join the queue behind what came before it.
    pub(super) fn run(
        &mut self,
        transition: impl FnOnce(&mut Conn<Mem>, &mut Ctx<'_>),
    ) -> Vec<Action> {
        let mut queue = VecDeque::from(self.run_alone(transition));
        let mut carried = Vec::new();
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Write => queue.extend(self.run_alone(write)),
                other => carried.push(other),
            }
        }
        carried
    }

    /// Runs one transition and returns its actions as they are, `Write` included.
    pub(super) fn run_alone(
        &mut self,
        transition: impl FnOnce(&mut Conn<Mem>, &mut Ctx<'_>),
    ) -> Vec<Action> {
        let mut actions = VecDeque::new();
        let mut ctx = Ctx {
            settings: &self.settings,
            scratch: &mut self.scratch,
            dates: &mut self.dates,
            stopping: self.stopping,
            budget: &self.budget,
            actions: &mut actions,
        };
        transition(&mut self.conn, &mut ctx);
        actions.into()
    }

    /// A readable (or writable) event.
    pub(super) fn event(&mut self) -> Vec<Action> {
        self.run(|conn, ctx| conn.on_event(true, ctx))
    }

    pub(super) fn respond(&mut self, response: Response) -> Vec<Action> {
        self.run(|conn, ctx| conn.respond(response, ctx))
    }

    /// What the client received since the last call.
    pub(super) fn received(&mut self) -> String {
        String::from_utf8_lossy(&std::mem::take(&mut self.conn.stream.written)).into_owned()
    }

    pub(super) fn state(&self) -> &'static str {
        match self.conn.state {
            State::Closed => "closed",
            State::Taken => "taken",
            State::Reading(_) => "reading",
            State::ProxyHeader(_) => "proxy header",
            State::InApp(_) => "in app",
            State::Writing(_) => "writing",
            State::Lingering { .. } => "lingering",
            State::Upgraded(_) => "websocket",
        }
    }

    /// Which of the connection's waits has run out `by` from now (`request_timeout` off).
    pub(super) fn expiry_in(&self, by: Duration) -> Option<Expired> {
        self.conn.expiry(later(by), Duration::ZERO)
    }

    /// The request being read has run out of time `by` from now: it is answered 408, and the
    /// connection lingers.
    pub(super) fn times_out_with_408(&mut self, by: Duration) {
        assert_eq!(self.expiry_in(by), Some(Expired::SlowRequest));
        let actions = self.run(|conn, ctx| conn.on_expired(Expired::SlowRequest, ctx));
        assert_eq!(names(&actions), ["log 408"]);
        assert!(self.received().starts_with("HTTP/1.1 408 "));
        assert_eq!(self.state(), "lingering");
    }

    /// Sends a GET and returns it dispatched.
    pub(super) fn dispatch_get(&mut self, extra: &str) -> Vec<Action> {
        self.send(format!("GET /x HTTP/1.1\r\nHost: h\r\n{extra}\r\n").as_bytes());
        self.event()
    }
}

/// The actions, named, to compare with a list; a response's `Sent` is left out (see
/// [`sent`]).
pub(super) fn names(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter(|action| !matches!(action, Action::Sent(_)))
        .map(|action| match action {
            Action::Dispatch { head, .. } => format!("dispatch {} {}", head.method, head.target),
            Action::Begin { head } => format!("begin {} {}", head.method, head.target),
            Action::Body { chunk, more } => format!(
                "body {:?}{}",
                String::from_utf8_lossy(chunk),
                if *more { " more" } else { "" }
            ),
            Action::Upgrade { head, subprotocols } => {
                format!("upgrade {} {subprotocols:?}", head.target)
            }
            Action::Upgraded => "upgraded".to_owned(),
            Action::Message(message) => format!("message {message:?}"),
            Action::Closed { code, reason } => format!("closed {code} {reason:?}"),
            Action::Gone => "gone".to_owned(),
            Action::Pull(_) => "pull".to_owned(),
            Action::Discard(_) => "discard".to_owned(),
            Action::Log(answer) => format!("log {}", answer.status),
            Action::Backlog => "backlog".to_owned(),
            Action::Write => "write".to_owned(),
            Action::Withdraw => "withdraw".to_owned(),
            Action::Close => "close".to_owned(),
            Action::Sent(_) => unreachable!("filtered out"),
        })
        .collect()
}

/// The body bytes each response over in `actions` sent, in order.
pub(super) fn sent(actions: &[Action]) -> Vec<u64> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Sent(bytes) => Some(*bytes),
            _ => None,
        })
        .collect()
}

pub(super) fn chunks(parts: &[&[u8]]) -> BodyStream {
    Box::new(
        parts
            .iter()
            .map(|part| part.to_vec())
            .collect::<Vec<_>>()
            .into_iter(),
    )
}

pub(super) fn later(by: Duration) -> Instant {
    Instant::now() + by
}

pub(super) const SEC: Duration = Duration::from_secs(1);

/// The transition a `Write` action asks for.
pub(super) fn write(conn: &mut Conn<Mem>, ctx: &mut Ctx<'_>) {
    conn.write(ctx);
}
