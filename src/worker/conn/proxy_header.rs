//! A connection on a `proxy_protocol` listener, before its PROXY header is in: the header is
//! read from the socket beneath (under TLS, before the handshake), peeked first so that no
//! byte after it is taken; the client it names becomes the connection's peer.

use std::io;
use std::time::Instant;

use super::{Conn, Ctx, Reading, State};
use crate::proxy_protocol::{self, MAX_HEADER, Status};
use crate::worker::out::Socket;
use crate::worker::peer_text;

/// Waiting for a PROXY header: `State::ProxyHeader`.
pub(super) struct ProxyWait {
    /// When the connection was accepted: idle since then while nothing has come.
    pub(super) since: Instant,
    /// `header_timeout` from then: the header and the first request's head share it.
    pub(super) deadline: Instant,
    /// The header's bytes so far, taken off the socket (all of them belong to the header, as
    /// the header is not whole yet): with them taken, the end of the stream shows.
    got: Vec<u8>,
}

impl ProxyWait {
    pub(super) fn new(since: Instant, deadline: Instant) -> ProxyWait {
        ProxyWait {
            since,
            deadline,
            got: Vec::new(),
        }
    }

    /// Whether nothing of the header has come.
    pub(super) fn is_idle(&self) -> bool {
        self.got.is_empty()
    }
}

/// What peeking brought.
enum Peeked {
    /// The header is whole: its client (if it names one) and how many bytes of it are still
    /// in the socket.
    Whole(proxy_protocol::Header, usize),
    /// Part of it: this many more bytes, all the socket has.
    Part(usize),
    /// Nothing for now.
    Nothing,
    /// The connection is over: why, for the log.
    Over(String),
}

impl<S: Socket> Conn<S> {
    /// ProxyHeader → Reading once the header is whole; true when the connection reads on.
    /// A partial header waits for more (edge-triggered epoll reports new bytes); a bad one,
    /// anything else in its place, or the client leaving closes the connection.
    pub(super) fn read_proxy_header(&mut self, ctx: &mut Ctx<'_>) -> bool {
        loop {
            let State::ProxyHeader(wait) = &mut self.state else {
                return true;
            };
            match peek(&self.stream, wait, ctx.scratch) {
                Peeked::Nothing => return false,
                Peeked::Part(n) => {
                    if !self.take_raw(n, ctx.scratch) {
                        self.proxy_header_failed("the read failed", ctx);
                        return false;
                    }
                    if let State::ProxyHeader(wait) = &mut self.state {
                        wait.got.extend_from_slice(&ctx.scratch[..n]);
                    }
                }
                Peeked::Whole(header, rest) => {
                    if !self.take_raw(rest, ctx.scratch) {
                        self.proxy_header_failed("the read failed", ctx);
                        return false;
                    }
                    let State::ProxyHeader(wait) = &self.state else {
                        return false;
                    };
                    let left = wait.deadline.saturating_duration_since(Instant::now());
                    if let Some(source) = header.source {
                        self.peer = Some(source);
                    }
                    self.balancer_tls = header.tls;
                    self.state = Reading::waiting(ctx.settings, left);
                    // What follows the header may have come with it.
                    self.unread = true;
                    return true;
                }
                Peeked::Over(why) => {
                    self.proxy_header_failed(&why, ctx);
                    return false;
                }
            }
        }
    }

    /// Takes exactly `n` bytes the peek saw off the socket beneath.
    fn take_raw(&mut self, mut n: usize, scratch: &mut [u8]) -> bool {
        while n > 0 {
            match self.stream.read_raw(&mut scratch[..n]) {
                Ok(0) => return false,
                Ok(got) => n -= got,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    }

    /// Closes a connection whose PROXY header did not come, logged with why.
    pub(super) fn proxy_header_failed(&mut self, why: &str, ctx: &mut Ctx<'_>) {
        log::info!(
            "closed a connection from {} on a PROXY protocol listener: {why}",
            peer_text(self.peer)
        );
        self.close(ctx);
    }
}

/// Peeks at what the socket holds after the header's bytes taken so far, and judges them
/// all.
fn peek(stream: &impl Socket, wait: &ProxyWait, scratch: &mut [u8]) -> Peeked {
    let have = wait.got.len();
    let room = &mut scratch[..MAX_HEADER - have];
    let n = loop {
        match stream.peek(room) {
            Ok(0) if have == 0 => return Peeked::Over("it closed before sending anything".into()),
            Ok(0) => {
                return Peeked::Over(format!("it closed after {have} bytes of its PROXY header"));
            }
            Ok(n) => break n,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Peeked::Nothing,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Peeked::Over(format!("the read failed: {err}")),
        }
    };
    // Most headers come whole in the first segment: judged where they were peeked.
    let joined;
    let bytes = if have == 0 {
        &room[..n]
    } else {
        joined = [&wait.got[..], &room[..n]].concat();
        &joined[..]
    };
    match proxy_protocol::parse(bytes) {
        Ok(Status::Partial) => Peeked::Part(n),
        Ok(Status::Complete(header)) => Peeked::Whole(header, header.len - have),
        Err(invalid) => Peeked::Over(invalid.to_string()),
    }
}
