//! Taking connections: the listeners' registration as [`Admission`](super::admission::Admission)
//! decides it, accepting in batches, each connection left to a worker that holds fewer when
//! one does (the offers read from the scoreboard), an idle connection giving way at
//! `max_connections`, a new connection's first read, and refusing a PROXY protocol listener's
//! connections from peers not trusted to send the header.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::{Interest, Token};

use super::conn::Conn;
use super::{FIRST_CONN, FIRST_LISTENER, Phase, Worker};
use crate::listeners::Stream;
use crate::sys;

/// What one `accept` came to.
enum Took {
    /// A connection, now the worker's.
    Conn,
    /// The listener has no connection waiting.
    Empty,
    /// Nothing taken, but the listener may hold more (a connection reset before it was
    /// taken, an interrupted call).
    Skipped,
    /// No room (an idle connection to give way was needed and there is none), or accepting
    /// failed for the whole worker: stop for now.
    Stop,
}

impl Worker<'_> {
    /// Re-weighs whether to take connections after the load changed, and publishes the load.
    pub(super) fn update_accepting(&mut self) {
        let load = self.admission.load;
        self.board.load(self.admission.busy(), load.live);
        if self.phase != Phase::Running {
            return;
        }
        // With the pool full there is no room whatever is idle: no need to look.
        let idle_to_spare = self.admission.pool_has_room() && self.idle_to_spare();
        let room = self.admission.decide(Instant::now(), idle_to_spare);
        if let Err(err) = self.set_accepting(room) {
            log::error!("could not change listener registration: {err}");
        }
    }

    /// Whether the worker, at `max_connections`, holds an idle connection that would give way
    /// to a new one; looked for only then (see [`Worker::longest_idle`]).
    fn idle_to_spare(&self) -> bool {
        self.admission.at_limit() && self.longest_idle().is_some()
    }

    /// The connection that has waited longest for a request of which no byte came: a
    /// keep-alive connection between requests, or a new one that has sent nothing. A linear
    /// scan, done only at `max_connections` (when the load changes, and per connection taken
    /// there): cheaper than keeping the connections ordered on every request for a case that is
    /// rare, and bounded by `max_connections`.
    fn longest_idle(&self) -> Option<usize> {
        self.conns
            .iter()
            .enumerate()
            .filter_map(|(index, conn)| Some((index, conn.as_ref()?.idle_since()?)))
            .min_by_key(|&(_, since)| since)
            .map(|(index, _)| index)
    }

    /// The idle connection that gives way to a new one at `max_connections`: the one idle
    /// longest that is still idle once its socket has been read again
    /// ([`Conn::look_again`]): its next request may be there already, reported by an event of
    /// this same poll not yet handled. A few candidates at most; `None` when none is idle or a
    /// candidate's client had gone (a slot is then free).
    fn idle_to_give_way(&mut self) -> Option<usize> {
        for _ in 0..4 {
            let idle = self.longest_idle()?;
            self.drive(idle, Conn::look_again);
            if !self.admission.at_limit() {
                return None;
            }
            if self.conns[idle].as_ref().is_some_and(|conn| conn.is_idle()) {
                return Some(idle);
            }
        }
        None
    }

    /// After the events of one poll: takes the connections a listener may still hold (a batch
    /// stopped at its size, or a deferral ran out; edge-triggered readiness does not report
    /// them again), and, for a full worker, one waiting connection every
    /// [`ACCEPT_NUDGE`](super::admission::ACCEPT_NUDGE)
    /// (see [`Admission::nudge`](super::admission::Admission::nudge)).
    pub(super) fn accept_waiting(&mut self) {
        if self.phase != Phase::Running {
            self.admission.stand_down();
            return;
        }
        // One clock read for the round's checks.
        let now = Instant::now();
        if self.admission.expire_claims(now) {
            self.update_accepting();
        }
        if self.admission.take_more_waiting() || self.admission.deferral_over(now) {
            for index in 0..self.listeners.len() {
                self.on_listener(index);
            }
            return;
        }
        if !self.admission.nudge_due(now) {
            return;
        }
        if !self.admission.nudge(now, self.idle_to_spare()) {
            return;
        }
        for index in 0..self.listeners.len() {
            match self.take_one(index) {
                Took::Empty | Took::Skipped => {}
                Took::Conn | Took::Stop => return,
            }
        }
    }

    /// Registers the listeners with the loop, or takes them off, and publishes the worker's
    /// offer (whether it takes connections, and how many it holds) for the other workers.
    pub(super) fn set_accepting(&mut self, on: bool) -> io::Result<()> {
        let registered = self.register_listeners(on);
        self.board
            .offer(self.accepting.then_some(self.admission.load.live));
        registered
    }

    fn register_listeners(&mut self, on: bool) -> io::Result<()> {
        if self.accepting == on {
            return Ok(());
        }
        let registry = self.poll.registry();
        for (i, listener) in self.listeners.iter_mut().enumerate() {
            if on {
                // Registering a listener whose queue already holds a connection reports it at
                // once (epoll checks readiness when a descriptor is added), so connections that
                // queued while the worker was full or backing off are not missed.
                registry.register(listener, Token(FIRST_LISTENER + i), Interest::READABLE)?;
            } else {
                registry.deregister(listener)?;
            }
        }
        self.accepting = on;
        Ok(())
    }

    /// The listener is readable: takes up to one batch of connections
    /// ([`Admission::batch`](super::admission::Admission::batch)); when it may hold more, the
    /// loop comes back for them after handling what it has polled. Before each, it leaves the
    /// connection to a worker that holds fewer, if one takes connections
    /// ([`Admission::defers`](super::admission::Admission::defers)); the loop comes back
    /// when the deferral runs out.
    pub(super) fn on_listener(&mut self, index: usize) {
        let mut left = self.admission.batch();
        let board = self.board;
        while left > 0 {
            if !self.accepting {
                return;
            }
            if self.admission.defers(Instant::now(), || {
                board.fewest_elsewhere(sys::monotonic_ms())
            }) {
                return;
            }
            match self.take_one(index) {
                Took::Conn | Took::Skipped => left -= 1,
                Took::Empty | Took::Stop => return,
            }
        }
        self.admission.set_more_waiting(true);
    }

    /// Accepts one connection from the listener at `index`. At `max_connections`, the
    /// connection idle longest gives way to it, and without one nothing is accepted.
    fn take_one(&mut self, index: usize) -> Took {
        let to_close = if self.admission.at_limit() {
            match self.idle_to_give_way() {
                Some(idle) => Some(idle),
                // Looking again, a connection's client had gone: a slot is free.
                None if !self.admission.at_limit() => None,
                None => {
                    self.update_accepting();
                    return Took::Stop;
                }
            }
        } else {
            None
        };
        let Some(listener) = self.listeners.get(index) else {
            return Took::Empty;
        };
        match listener.accept() {
            Ok((stream, peer)) => {
                // Refused before anything else: an untrusted peer must not make an idle
                // client give way, nor cost a TLS session.
                if self.refuses_untrusted(peer, index) {
                    return Took::Skipped;
                }
                let stream = match &self.tls {
                    None => stream,
                    Some(config) => match stream.into_tls(config) {
                        Ok(stream) => stream,
                        Err(err) => {
                            log::error!("could not begin TLS with a new connection: {err}");
                            return Took::Skipped;
                        }
                    },
                };
                if let Some(idle) = to_close {
                    log::debug!("at max_connections: closing the connection idle longest");
                    self.drive(idle, Conn::close);
                }
                self.add_conn(stream, peer, index);
                Took::Conn
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => Took::Empty,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => Took::Skipped,
            Err(err) if is_transient_accept_error(&err) => {
                log::debug!("accept: {err}");
                Took::Skipped
            }
            Err(err) => {
                // Out of file descriptors or memory: stop taking connections for a while
                // (nudge included); the sweep turns accepting back on, so this cannot spin.
                log::error!("accept failed: {err}; pausing accepts");
                self.admission.back_off(Instant::now());
                let _ = self.set_accepting(false);
                Took::Stop
            }
        }
    }

    pub(super) fn add_conn(
        &mut self,
        mut stream: Stream,
        peer: Option<SocketAddr>,
        listener: usize,
    ) {
        let proxy_protocol = self.takes_proxy_header(listener);
        let index = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        let token = Token(FIRST_CONN + index);
        if let Err(err) = self.poll.registry().register(
            &mut stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            log::error!("could not watch a new connection: {err}");
            self.free.push(index);
            return;
        }
        self.next_serial += 1;
        let conn = Conn::new(stream, peer, listener, self.next_serial, &self.settings);
        self.conns[index] = Some(if proxy_protocol {
            conn.expecting_proxy_header()
        } else {
            conn
        });
        self.admission.load.live += 1;
        self.admission.claim(index, Instant::now());
        self.update_accepting();
        // The client may already have sent its request; edge-triggered events for data that
        // arrived before registration are not guaranteed, so look now.
        self.drive(index, Conn::read);
    }

    /// Whether the listener at `listener` has `proxy_protocol` on.
    fn takes_proxy_header(&self, listener: usize) -> bool {
        self.listener_info
            .get(listener)
            .is_some_and(|info| info.proxy_protocol)
    }

    /// On a PROXY protocol listener, whether a connection from `peer` is refused because
    /// `peer` is not trusted to send the header; counted and (at most every
    /// [`REFUSALS_LOGGED_EVERY`]) logged. The caller drops the stream, which closes it:
    /// nothing is read from it, nothing written.
    fn refuses_untrusted(&mut self, peer: Option<SocketAddr>, listener: usize) -> bool {
        if !self.takes_proxy_header(listener) || self.trusts(peer) {
            return false;
        }
        self.untrusted_proxies.refused(peer, || {
            self.listener_info
                .get(listener)
                .map_or_else(String::new, |info| info.addr.to_string())
        });
        true
    }

    /// Whether `peer` may send a PROXY header: it is in `[server] forwarded_allow_ips`, as
    /// for forwarded headers (a unix socket's peer, which has no address, is not).
    fn trusts(&self, peer: Option<SocketAddr>) -> bool {
        peer.is_some_and(|peer| crate::forwarded::trusts(&self.trusted, peer.ip()))
    }
}

/// How often, at most, connections refused for an untrusted PROXY peer are logged.
const REFUSALS_LOGGED_EVERY: Duration = Duration::from_secs(10);

/// Connections refused on PROXY protocol listeners because their peer is not trusted: the
/// first is logged at once, the rest at most every [`REFUSALS_LOGGED_EVERY`], counted.
#[derive(Debug, Default)]
pub(super) struct Refusals {
    /// When the last warning went out.
    logged: Option<Instant>,
    /// Refused since then, not yet logged.
    unlogged: u64,
}

impl Refusals {
    /// Counts a refusal of `peer`, and warns when one is due; `listener` names the listener.
    fn refused(&mut self, peer: Option<SocketAddr>, listener: impl FnOnce() -> String) {
        self.unlogged += 1;
        let now = Instant::now();
        if self
            .logged
            .is_some_and(|at| now.duration_since(at) < REFUSALS_LOGGED_EVERY)
        {
            return;
        }
        let others = match self.unlogged - 1 {
            0 => String::new(),
            n => format!(" ({n} more such connections since the last warning)"),
        };
        log::warn!(
            "closed a connection from {} on the PROXY protocol listener {}: the peer is not in \
             [server] forwarded_allow_ips, so its PROXY header would not be believed{others}; \
             add the load balancer's address to forwarded_allow_ips, or have clients connect \
             through the balancer",
            super::peer_text(peer),
            listener()
        );
        self.logged = Some(now);
        self.unlogged = 0;
    }
}

/// Errors from `accept` that concern only the one connection (it was reset before we took it).
fn is_transient_accept_error(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::ECONNABORTED | libc::EPROTO | libc::EPERM)
    )
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::Duration;

    use mio::net::TcpListener;
    use mio::{Events, Interest, Poll, Token};

    /// What resuming after a pause relies on: a listener registered again while a connection
    /// waits in its queue is reported readable at once, edge-triggered as it is.
    #[test]
    fn registering_a_listener_again_reports_a_connection_already_queued() {
        let mut poll = Poll::new().unwrap();
        let mut listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let token = Token(7);
        let mut events = Events::with_capacity(8);
        poll.registry()
            .register(&mut listener, token, Interest::READABLE)
            .unwrap();
        poll.registry().deregister(&mut listener).unwrap();
        let mut client = std::net::TcpStream::connect(addr).unwrap();
        client.write_all(b"x").unwrap();
        poll.poll(&mut events, Some(Duration::from_millis(50)))
            .unwrap();
        assert!(events.is_empty(), "not registered: nothing reported");
        poll.registry()
            .register(&mut listener, token, Interest::READABLE)
            .unwrap();
        poll.poll(&mut events, Some(Duration::from_secs(5)))
            .unwrap();
        assert!(
            events.iter().any(|e| e.token() == token && e.is_readable()),
            "the queued connection is reported on registration"
        );
        assert!(listener.accept().is_ok());
    }
}
