//! One client connection's state machine.
//!
//! Each [`State`] owns what only it needs: `Reading` its decoder and the body received so far,
//! `InApp` what the response needs to know of its request, `Writing` the output, `Lingering`
//! when it gives up. A transition takes the old state out (leaving [`State::Taken`] in its
//! place for as long as it runs), builds the next one, and pushes [`Action`]s the worker
//! carries out: what needs the pool, the access log or the worker's counters. The machine
//! itself does the connection's own I/O, on any [`Socket`], so tests drive it in memory.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::budget::{BodyBudget, Need, Refused, Reservation, SPILLS_PER_TURN};
use super::out::{ChunkTaken, OutQueue, Output, Socket, WriteStep};
use super::peer_text;
use crate::handler::{BodyStream, RequestBody};
use crate::http::{self, DateCache, Decoded, Decoder, HttpError, RequestHead, Version};
use crate::websocket::{Message, handshake};
use body_in::BodyIn;
use proxy_header::ProxyWait;
use upgraded::Upgraded;
pub(super) use upgraded::{WsSettings, WsTimer};

/// How long a closing connection keeps draining the client's unread bytes, so the close does
/// not turn into a reset that destroys the response in flight.
const LINGER: Duration = Duration::from_secs(2);
/// When a worker recycles itself, how long an idle keep-alive connection stays open for a
/// request that may already be on its way.
const DRAIN_IDLE: Duration = Duration::from_secs(1);
/// The interim response to `Expect: 100-continue`.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// What every connection of a worker goes by.
#[derive(Debug, Clone, Copy)]
pub(super) struct Settings {
    /// Limits on request heads and bodies.
    pub(super) limits: http::Limits,
    /// Request bodies larger than this go to a temporary file as they arrive.
    pub(super) body_buffer: u64,
    /// `[server] keepalive`: how long an idle connection waits for its next request; zero
    /// turns keep-alive off.
    pub(super) keepalive: Duration,
    /// How long a request's head has to arrive.
    pub(super) header_timeout: Duration,
    /// How long the body, or a response's write, may stall.
    pub(super) body_timeout: Duration,
    /// `[server] min_body_rate`: the bytes per second a request body must average, from the
    /// end of its head, once `body_rate_grace` has passed; zero turns the check off.
    pub(super) min_body_rate: u64,
    /// `[server] body_rate_grace`: how long a body may arrive slower than `min_body_rate`.
    pub(super) body_rate_grace: Duration,
    /// How long the application may take to answer (zero: no limit).
    pub(super) request_timeout: Duration,
    /// The application runs requests concurrently on its own event loop (ASGI), so it can be
    /// told what a pool thread could not: a request body still arriving is handed over with
    /// its head and read as the application asks for it (see `body_in.rs`), and a client that
    /// closes its side while its request is with the application is noticed at once (ASGI's
    /// `http.disconnect`). Otherwise the body is read whole before dispatch, and a close is
    /// noticed when the response is written.
    pub(super) concurrent_app: bool,
    /// `[websocket]`: for the WebSockets of a concurrent application.
    pub(super) websocket: WsSettings,
}

impl Settings {
    /// How long a connection waits for its next request.
    pub(super) fn idle_wait(&self) -> Duration {
        if self.keepalive.is_zero() {
            self.header_timeout
        } else {
            self.keepalive
        }
    }
}

/// What a transition needs from the worker, and where it leaves its actions.
pub(super) struct Ctx<'a> {
    pub(super) settings: &'a Settings,
    /// Where reads from client sockets land first; see [`Conn::keep`].
    pub(super) scratch: &'a mut [u8],
    pub(super) dates: &'a mut DateCache,
    /// The worker is stopping: no keep-alive for responses begun now.
    pub(super) stopping: bool,
    /// The worker's budget for bodies being received.
    pub(super) budget: &'a Rc<BodyBudget>,
    pub(super) actions: &'a mut VecDeque<Action>,
}

/// What the worker does for a connection after a transition, in order.
pub(super) enum Action {
    /// A whole request arrived: hand it to the application. The connection is now with it.
    Dispatch {
        head: RequestHead,
        body: RequestBody,
    },
    /// A request whose body is still arriving: hand it to the (concurrent) application, which
    /// asks for its body a piece at a time. The connection is now with it.
    Begin { head: RequestHead },
    /// A valid WebSocket handshake: hand it to the (concurrent) application, which accepts
    /// or refuses it. The connection is now with it.
    Upgrade {
        head: RequestHead,
        subprotocols: Vec<String>,
    },
    /// The connection became a WebSocket (its `101` is queued): count it.
    Upgraded,
    /// A WebSocket's next message, for the application.
    Message(Message),
    /// The WebSocket is over: tell the application, with the close code and reason.
    Closed { code: u16, reason: String },
    /// The next piece of the body of the request begun with `Begin`, for the application;
    /// `more` says whether pieces follow.
    Body { chunk: Vec<u8>, more: bool },
    /// Ask a pool thread for the stream's next chunk.
    Pull(BodyStream),
    /// Hand a stream no longer needed to a pool thread to drop.
    Discard(BodyStream),
    /// A response is going out: record it on the scoreboard, and keep it for the access log
    /// until its `Sent`.
    Log(Answer),
    /// The response is over (written, or cut short): this many body bytes went out. The
    /// access log writes its line now.
    Sent(u64),
    /// The connection closes while its request is with the application or its response is
    /// being written: tell the application its client is gone. Comes before the `Close`.
    Gone,
    /// A response is ready: write it (see [`Conn::write`]). It comes after the response's
    /// `Log`, so the scoreboard and the access log have a response before its client does.
    Write,
    /// The client left (or shut its side down) while its request waited for a pool thread:
    /// take it back if no thread has started it, and then [`Conn::withdrawn`] closes the
    /// connection.
    Withdraw,
    /// The write budget (or the spill budget of a body being read) is spent with the socket
    /// still ready: continue after the poll.
    Backlog,
    /// The connection is over: forget it. Always the last action.
    Close,
}

/// A response, as the scoreboard and the access log record it.
pub(super) struct Answer {
    pub(super) status: u16,
    /// How long the application took, in microseconds (0 for an error of the server's own).
    pub(super) micros: u64,
    /// What the access log records of the request, when there is a log and the request
    /// got as far as the application.
    pub(super) access: Option<AccessInfo>,
}

/// The request's side of an access log line, kept from dispatch to response.
pub(super) struct AccessInfo {
    pub(super) remote: String,
    pub(super) method: String,
    pub(super) target: String,
    pub(super) version: &'static str,
    pub(super) user_agent: String,
    pub(super) referer: String,
}

/// Where a connection is.
///
/// A request body streamed to a concurrent application while it runs is not a state but
/// `Conn::body_in`, beside `InApp` and `Writing`.
enum State {
    /// The placeholder a transition leaves while it runs (see [`Conn::take_state`]).
    Taken,
    /// The end: the worker forgets the connection.
    Closed,
    /// On a `proxy_protocol` listener, before anything else: waiting for the PROXY header
    /// (see `proxy_header.rs`).
    ProxyHeader(ProxyWait),
    /// Waiting for, or reading, a request.
    Reading(Reading),
    /// The request is with the application.
    InApp(InApp),
    /// Writing a response.
    Writing(Writing),
    /// A WebSocket, after its `101` (see `upgraded.rs`).
    Upgraded(Box<Upgraded>),
    /// Response done, write side shut; draining what the client still sends until `until`,
    /// then closing.
    Lingering { until: Instant },
}

struct Reading {
    decoder: Decoder,
    /// The body so far, once it went to a file (bytes not yet spilled are in the decoder).
    body: RequestBody,
    /// When the head or body being read (or the idle wait) runs out.
    deadline: Instant,
    /// When the wait for this request began: while no byte of it has come, the connection is
    /// idle since then (see [`Conn::idle_since`]). Once the head is in, when the body began,
    /// for `min_body_rate`.
    since: Instant,
    /// Whether `since` is the body's beginning.
    body_began: bool,
    /// How many bytes at the end of [`CONTINUE`] are still to be written; no body byte is read
    /// before they are out (see [`Conn::send_continue`]).
    continue_left: u8,
    /// What the body being received holds of the worker's budget, from its head on.
    reserved: Option<Reservation>,
}

impl Reading {
    /// Waiting up to `wait` for a request's first bytes.
    fn waiting(settings: &Settings, wait: Duration) -> State {
        let now = Instant::now();
        State::Reading(Reading {
            decoder: Decoder::new(settings.limits),
            body: RequestBody::default(),
            deadline: now + wait,
            since: now,
            body_began: false,
            continue_left: 0,
            reserved: None,
        })
    }

    /// The body's deadline after it progressed (or its head ended): see [`body_deadline`],
    /// with the body's clock from the head's end.
    fn body_deadline(&mut self, settings: &Settings) -> Instant {
        let now = Instant::now();
        if !self.body_began {
            self.body_began = true;
            self.since = now;
        }
        let received = self.body.len() + self.decoder.body_buffered() as u64;
        body_deadline(self.since, received, settings)
    }

    /// The rest of a `100 Continue` begun but not finished, which must precede any response;
    /// empty when none was begun (a final response may then take its place).
    fn continue_begun(&self) -> &'static [u8] {
        if usize::from(self.continue_left) < CONTINUE.len() {
            self.continue_unsent()
        } else {
            &[]
        }
    }

    /// What is still to be written of a `100 Continue`.
    fn continue_unsent(&self) -> &'static [u8] {
        &CONTINUE[CONTINUE.len() - usize::from(self.continue_left)..]
    }
}

struct InApp {
    /// When the request was handed over.
    since: Instant,
    /// When the application's own time began, for `request_timeout`: the hand-over, or the
    /// last piece of a streamed body it was given (the time a client takes to send its body
    /// is the client's, as it is for a body read before dispatch).
    working_since: Instant,
    /// The version and method of the request, which shape the response.
    version: Version,
    head_request: bool,
    /// With `request_timeout` on, its method and target for the log line should it run too
    /// long.
    label: Option<String>,
    access: Option<AccessInfo>,
    /// For a WebSocket handshake, the `Sec-WebSocket-Accept` its `101` will carry.
    websocket: Option<String>,
}

struct Writing {
    out: Output,
    /// When the write stalls too long.
    deadline: Instant,
    /// A response that must not be cut short by a reset: drain what the client still sends
    /// before closing (error responses, whose request may not have been read in full).
    linger: bool,
}

/// Why a connection's wait ran out; see [`Conn::expiry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expired {
    /// The application ran past `request_timeout` on its request.
    Request(Duration),
    /// The producer of a streamed response took longer than `request_timeout` for a chunk.
    Stream(Duration),
    /// No request came in the idle wait.
    Idle,
    /// A request began but did not arrive in time.
    SlowRequest,
    /// A response's write stalled, or the lingering is over.
    Stalled,
    /// The application waited for more of its request's body longer than `body_timeout`.
    SlowBody,
    /// A WebSocket's timer ran out.
    WebSocket(WsTimer),
    /// The PROXY header did not arrive within `header_timeout`.
    ProxyHeader,
}

/// What decides whether the connection stays open after the response being written.
enum KeepAlive {
    /// A request was dispatched: the client's wish, unless the worker is stopping or
    /// keep-alive is off.
    Dispatched { client: bool, stopping: bool },
    /// A response is begun: not once the worker stops, nor for an HTTP/1.0 body that only the
    /// close delimits.
    Responding {
        stopping: bool,
        close_delimited: bool,
    },
    /// The response cannot be completed as framed (a stream ended short, an error response).
    Broken,
}

/// One client connection.
pub(super) struct Conn<S> {
    pub(super) stream: S,
    pub(super) peer: Option<SocketAddr>,
    /// Index of the listener that accepted it.
    pub(super) listener: usize,
    pub(super) serial: u64,
    state: State,
    /// Bytes read from the client; `read_start..read_end` are not yet decoded.
    read_buf: Vec<u8>,
    read_start: usize,
    read_end: usize,
    /// Whether the connection stays open after the response being written; set only by
    /// [`Conn::decide_keep_alive`].
    keep_alive: bool,
    /// The socket may hold bytes not yet read: set by a readable event and by a read that
    /// filled the buffer, cleared by a short read. Saves the read that would only say EAGAIN.
    unread: bool,
    /// The last response's emptied output queue, kept so the next response on a keep-alive
    /// connection reuses its allocation.
    spare: OutQueue,
    /// The body of the request with the application, while it is still arriving (a
    /// concurrent application's request begun before its body was in).
    body_in: Option<BodyIn>,
    /// The connection became a WebSocket (it stays true once it is closed).
    upgraded: bool,
    /// Requests it handed to the application.
    requests: u32,
    /// The balancer in front took the client's connection over TLS, its PROXY header says:
    /// the scheme is `https`, as on a TLS listener.
    pub(super) balancer_tls: bool,
}

impl<S: Socket> Conn<S> {
    /// A connection just accepted, waiting for its first request.
    pub(super) fn new(
        stream: S,
        peer: Option<SocketAddr>,
        listener: usize,
        serial: u64,
        settings: &Settings,
    ) -> Self {
        Conn {
            stream,
            peer,
            listener,
            serial,
            // A new connection's first request has header_timeout to arrive, as nginx's
            // client_header_timeout: an idle connection that never spoke costs less time.
            state: Reading::waiting(settings, settings.header_timeout),
            read_buf: Vec::new(),
            read_start: 0,
            read_end: 0,
            keep_alive: true,
            // The client may have sent its request already.
            unread: true,
            spare: OutQueue::default(),
            body_in: None,
            upgraded: false,
            requests: 0,
            balancer_tls: false,
        }
    }

    /// A connection on a `proxy_protocol` listener: it reads its PROXY header before
    /// anything else, within the `header_timeout` its first request has.
    pub(super) fn expecting_proxy_header(mut self) -> Self {
        if let State::Reading(reading) = &self.state {
            self.state = State::ProxyHeader(ProxyWait::new(reading.since, reading.deadline));
        }
        self
    }

    /// How many requests the connection handed to the application.
    pub(super) fn requests(&self) -> u32 {
        self.requests
    }

    /// Takes the state out for a transition, which must put the next one in.
    fn take_state(&mut self) -> State {
        std::mem::replace(&mut self.state, State::Taken)
    }

    fn pending_input(&self) -> &[u8] {
        &self.read_buf[self.read_start..self.read_end]
    }

    /// The one place that decides whether the connection stays open after its response.
    fn decide_keep_alive(&mut self, why: KeepAlive, settings: &Settings) {
        self.keep_alive = match why {
            KeepAlive::Dispatched { client, stopping } => {
                client && !stopping && !settings.keepalive.is_zero()
            }
            KeepAlive::Responding {
                stopping,
                close_delimited,
            } => self.keep_alive && !stopping && !close_delimited,
            KeepAlive::Broken => false,
        };
    }

    /// Whether the connection waits for a request of which no byte has come.
    pub(super) fn is_idle(&self) -> bool {
        match &self.state {
            State::Reading(reading) => {
                reading.decoder.is_idle() && !request_begun(self.pending_input())
            }
            State::ProxyHeader(wait) => wait.is_idle(),
            _ => false,
        }
    }

    /// Since when the connection has waited for a request of which no byte has come, if it
    /// does: the worker at `max_connections` closes the one idle longest for a new one.
    pub(super) fn idle_since(&self) -> Option<Instant> {
        match &self.state {
            State::Reading(reading) if self.is_idle() => Some(reading.since),
            State::ProxyHeader(wait) if wait.is_idle() => Some(wait.since),
            _ => None,
        }
    }

    /// Before an idle connection gives way at `max_connections`: reads what its socket holds
    /// that no event has reported yet (its next request may have come in the same poll as the
    /// new connection), so a connection is not closed under a request that already arrived.
    /// Afterwards it is idle still, or reading, dispatched or closed like any other.
    pub(super) fn look_again(&mut self, ctx: &mut Ctx<'_>) {
        self.unread = true;
        self.read(ctx);
    }

    /// Whether the connection is with the application, waiting for its answer.
    fn in_app(&self) -> bool {
        matches!(self.state, State::InApp(_))
    }

    /// For a stopping worker that lets idle connections drain: an idle connection waits at
    /// most [`DRAIN_IDLE`] more after its last activity for a request already on its way.
    pub(super) fn drain(&mut self, idle_wait: Duration, now: Instant) {
        if !self.is_idle() {
            return;
        }
        match &mut self.state {
            State::Reading(reading) => {
                let last_active = reading.deadline.checked_sub(idle_wait).unwrap_or(now);
                reading.deadline = reading.deadline.min((last_active + DRAIN_IDLE).max(now));
            }
            // Nothing has come since it was accepted: a header on its way has a moment.
            State::ProxyHeader(wait) => {
                wait.deadline = wait.deadline.min((wait.since + DRAIN_IDLE).max(now));
            }
            _ => {}
        }
    }

    /// The request's label for a log line (method and target), when it is with the
    /// application and `request_timeout` is on.
    pub(super) fn label(&self) -> Option<&str> {
        match &self.state {
            State::InApp(in_app) => in_app.label.as_deref(),
            _ => None,
        }
    }

    /// Keeps what the access log records of the request just dispatched.
    pub(super) fn set_access(&mut self, access: AccessInfo) {
        debug_assert!(
            self.in_app(),
            "access info for a request not with the application"
        );
        if let State::InApp(in_app) = &mut self.state {
            in_app.access = Some(access);
        }
    }

    /// Since when the application has been working for this connection: on its request, or
    /// on its stream's next chunk.
    pub(super) fn app_since(&self) -> Option<Instant> {
        match &self.state {
            // Waiting for more of its body, the application waits for the client.
            State::InApp(_) if self.body_wanted() => None,
            State::InApp(in_app) => Some(in_app.working_since),
            State::Writing(writing) => writing.out.pulling_since(),
            _ => None,
        }
    }

    /// Which of the connection's waits ran out at `now`, if any. The application's waits
    /// (on the request, on a stream's chunk) are bounded by `request_timeout` only.
    pub(super) fn expiry(&self, now: Instant, request_timeout: Duration) -> Option<Expired> {
        if let Some(timer) = self.ws_expiry(now) {
            return timer.map(Expired::WebSocket);
        }
        if self.body_deadline().is_some_and(|due| now >= due) {
            return Some(Expired::SlowBody);
        }
        if let Some(since) = self.app_since() {
            let ran = now.duration_since(since);
            if request_timeout.is_zero() || ran <= request_timeout {
                return None;
            }
            return Some(if self.in_app() {
                Expired::Request(ran)
            } else {
                Expired::Stream(ran)
            });
        }
        let deadline = match &self.state {
            State::ProxyHeader(wait) => {
                return (now >= wait.deadline).then_some(Expired::ProxyHeader);
            }
            State::Reading(reading) => reading.deadline,
            State::Writing(writing) => writing.deadline,
            State::Lingering { until } => *until,
            State::InApp(_) | State::Upgraded(_) | State::Closed | State::Taken => return None,
        };
        if now < deadline {
            None
        } else if self.is_idle() {
            Some(Expired::Idle)
        } else if matches!(self.state, State::Reading(_)) {
            Some(Expired::SlowRequest)
        } else {
            Some(Expired::Stalled)
        }
    }

    /// Acts on a wait that ran out (other than the application's, which the worker handles).
    pub(super) fn on_expired(&mut self, expired: Expired, ctx: &mut Ctx<'_>) {
        match expired {
            Expired::SlowRequest => {
                log::debug!("request from {} timed out", peer_text(self.peer));
                self.fail(
                    &HttpError {
                        status: 408,
                        reason: "the request did not arrive in time",
                    },
                    ctx,
                );
            }
            Expired::SlowBody => self.body_timed_out(ctx),
            Expired::ProxyHeader => {
                self.proxy_header_failed(
                    "its PROXY header did not arrive within header_timeout",
                    ctx,
                );
            }
            Expired::WebSocket(timer) => self.ws_timer(timer, ctx),
            Expired::Idle | Expired::Stalled | Expired::Request(_) | Expired::Stream(_) => {
                self.close(ctx);
            }
        }
    }

    /// The socket has news (`readable`: bytes or the end came in).
    pub(super) fn on_event(&mut self, readable: bool, ctx: &mut Ctx<'_>) {
        if readable {
            // New bytes (or the end): worth a read once the connection reads again.
            self.unread = true;
        }
        // What TLS could not write before (a handshake's answer, a close_notify) goes out in
        // states that write nothing of their own; a failure shows at their next read. Writing
        // and Upgraded flush in their own writes, which count the bytes as progress (for
        // body_timeout and the WebSocket's write clock): flushed here, those would be lost.
        if !matches!(self.state, State::Writing(_) | State::Upgraded(_)) {
            let _ = self.stream.flush_pending();
        }
        match self.state {
            State::Reading(_) | State::ProxyHeader(_) => self.read(ctx),
            State::Writing(_) => {
                self.write(ctx);
                if self.body_wanted() {
                    self.read_body(ctx);
                }
            }
            State::Lingering { .. } => self.linger(ctx),
            // Writing first: reading may have stopped for want of room to answer.
            State::Upgraded(_) => {
                self.ws_write(ctx);
                self.ws_read(ctx);
            }
            // Bytes that arrive while the handler runs wait in the socket; they are read once
            // the response is out, or when the application asks for more of its body. The end
            // of the stream may be noticed now.
            State::InApp(_) if self.body_wanted() => self.read_body(ctx),
            State::InApp(_) => {
                if !(readable && self.stream.peer_closed()) {
                    return;
                }
                if ctx.settings.concurrent_app {
                    log::debug!(
                        "{} went away while its request was with the application",
                        peer_text(self.peer)
                    );
                    self.close(ctx);
                } else {
                    // A request no thread has started yet is taken back; one that runs is
                    // answered (a client that only shut its side down still reads it).
                    ctx.actions.push_back(Action::Withdraw);
                }
            }
            State::Closed | State::Taken => {}
        }
    }

    /// Decodes what is buffered, reading more until a request is complete or the socket has
    /// nothing more for now.
    pub(super) fn read(&mut self, ctx: &mut Ctx<'_>) {
        if !self.read_proxy_header(ctx) {
            return;
        }
        let settings = *ctx.settings;
        let mut spills = 0;
        loop {
            if !self.send_continue(ctx) {
                return;
            }
            let State::Reading(reading) = &mut self.state else {
                return;
            };
            match reading
                .decoder
                .decode(&self.read_buf[self.read_start..self.read_end])
            {
                Err(err) => {
                    log::debug!("bad request from {}: {err}", peer_text(self.peer));
                    self.fail(&err, ctx);
                    return;
                }
                Ok(Decoded::Complete {
                    consumed,
                    head,
                    body,
                }) => {
                    self.read_start += consumed;
                    if self.read_start == self.read_end {
                        // Nothing pipelined behind it: give the buffer back now, so the
                        // connection holds none while the request runs and while it is idle.
                        self.read_buf = Vec::new();
                        self.read_start = 0;
                        self.read_end = 0;
                    }
                    if settings.concurrent_app && handshake::wants_websocket(&head) {
                        self.begin_websocket(head, ctx);
                        return;
                    }
                    let so_far = std::mem::take(&mut reading.body);
                    match so_far.finish(body, settings.body_buffer) {
                        Ok(body) => self.dispatch(head, body, ctx),
                        Err(err) => self.body_not_stored(&err, ctx),
                    }
                    return;
                }
                Ok(Decoded::NeedMore { consumed }) => {
                    self.read_start += consumed;
                    if settings.concurrent_app && reading.decoder.reading_body() {
                        // The head is in and its body is not: the application gets the
                        // request now and its body as it asks for it.
                        self.begin(ctx);
                        return;
                    }
                    if reading.decoder.reading_body() {
                        let received = reading.body.len() + reading.decoder.body_buffered() as u64;
                        let need = Need::of_body(received, settings.body_buffer);
                        if let Err(refused) = ctx.budget.reserve(&mut reading.reserved, need) {
                            self.body_refused(&refused, ctx);
                            return;
                        }
                    }
                    if reading
                        .body
                        .spill_due(reading.decoder.body_buffered(), settings.body_buffer)
                    {
                        let bytes = reading.decoder.take_body();
                        if let Err(err) = reading.body.spill(&bytes) {
                            self.body_not_stored(&err, ctx);
                            return;
                        }
                        spills += 1;
                    }
                    if consumed > 0 {
                        // Head bytes are consumed only with the whole head, so this is body
                        // progress (or the head just completed): the body clock restarts.
                        reading.deadline = reading.body_deadline(&settings);
                    }
                    if reading.decoder.take_continue() {
                        // Written before any body byte is read (the loop's first step). Until
                        // it is out the client waits and no body byte is read: only a stalled
                        // write times it out, and the body's rate runs from its end.
                        reading.continue_left = CONTINUE.len() as u8;
                        reading.deadline = Instant::now() + settings.body_timeout;
                        continue;
                    }
                    if spills >= SPILLS_PER_TURN && self.unread {
                        // Enough disk writes for one turn: the other connections, and the
                        // heartbeat, go first.
                        ctx.actions.push_back(Action::Backlog);
                        return;
                    }
                }
            }
            if !self.unread {
                // The last read came back short: the socket is empty, and edge-triggered epoll
                // reports the next bytes. Reading again now would only return EAGAIN.
                return;
            }
            let idle_before = self.is_idle();
            match self.read_socket(ctx.scratch) {
                // The client closed its side; whatever partial request there was is gone.
                Got::End => {
                    self.close(ctx);
                    return;
                }
                Got::Bytes => {
                    if idle_before && let State::Reading(reading) = &mut self.state {
                        // A new request started: its head has `header_timeout` to arrive.
                        reading.deadline = Instant::now() + settings.header_timeout;
                    }
                }
                Got::Nothing => return,
            }
        }
    }

    /// Reads what the socket has (once) into the connection's buffer: see [`Got`]. A failed
    /// read is logged and counts as the end.
    fn read_socket(&mut self, scratch: &mut [u8]) -> Got {
        match self.read_scratch(scratch) {
            Ok(n) => {
                self.keep(&scratch[..n]);
                Got::Bytes
            }
            Err(got) => got,
        }
    }

    /// Reads once into the worker's one scratch buffer: how many bytes came, or why none did
    /// ([`Got::Nothing`], [`Got::End`]; a failed read is logged and counts as the end).
    fn read_scratch(&mut self, scratch: &mut [u8]) -> Result<usize, Got> {
        loop {
            match self.stream.read(scratch) {
                Ok(0) => return Err(Got::End),
                Ok(n) => {
                    // Fewer bytes than asked for: the socket is drained (a full read may have
                    // left more).
                    self.unread = n == scratch.len();
                    return Ok(n);
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    self.unread = false;
                    return Err(Got::Nothing);
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    log::debug!("read from {}: {err}", peer_text(self.peer));
                    return Err(Got::End);
                }
            }
        }
    }

    /// Writes some more of a `100 Continue` whose last `left` bytes are unsent, counting them
    /// down: `Ok(true)` when bytes went out, `Ok(false)` when the socket takes none now, an
    /// error (logged) when the write failed.
    fn write_continue(&mut self, left: &mut u8) -> io::Result<bool> {
        let unsent = &CONTINUE[CONTINUE.len() - usize::from(*left)..];
        loop {
            match self.stream.write(unsent) {
                // At most what was asked for, so the count only goes down.
                Ok(n) if n > 0 => {
                    *left -= n.min(unsent.len()) as u8;
                    return Ok(true);
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Ok(_) | Err(_) => {
                    log::debug!("could not write 100 Continue to {}", peer_text(self.peer));
                    return Err(io::ErrorKind::WriteZero.into());
                }
            }
        }
    }

    /// Writes what is left of a `100 Continue`; true once none is left. Until then no body
    /// byte is read and no response begins: a writable event resumes it.
    fn send_continue(&mut self, ctx: &mut Ctx<'_>) -> bool {
        loop {
            let State::Reading(reading) = &mut self.state else {
                return false;
            };
            if reading.continue_left == 0 {
                return true;
            }
            let mut left = reading.continue_left;
            match self.write_continue(&mut left) {
                Ok(true) => {
                    let State::Reading(reading) = &mut self.state else {
                        return false;
                    };
                    reading.continue_left = left;
                    reading.deadline = if left == 0 {
                        // The body begins now, as far as its rate is concerned.
                        reading.body_began = false;
                        reading.body_deadline(ctx.settings)
                    } else {
                        Instant::now() + ctx.settings.body_timeout
                    };
                }
                Ok(false) => return false,
                Err(_) => {
                    self.close(ctx);
                    return false;
                }
            }
        }
    }

    /// Keeps `bytes` (read into the scratch buffer) behind the bytes not yet decoded, reclaiming
    /// the space of decoded ones first: only what a connection has not decoded is its own, so
    /// an idle keep-alive connection holds no read buffer at all.
    fn keep(&mut self, bytes: &[u8]) {
        if self.read_start == self.read_end {
            self.read_buf.clear();
            self.read_start = 0;
            self.read_end = 0;
        } else if self.read_start > 0 && self.read_start >= self.read_buf.len() / 2 {
            self.read_buf.drain(..self.read_start);
            self.read_end -= self.read_start;
            self.read_start = 0;
        }
        self.read_buf.extend_from_slice(bytes);
        self.read_end = self.read_buf.len();
    }

    /// Answers 500 for a request whose body could not be written to its temporary file.
    fn body_not_stored(&mut self, err: &io::Error, ctx: &mut Ctx<'_>) {
        log::error!(
            "could not write a request body to a temporary file in {}: {err}",
            std::env::temp_dir().display()
        );
        self.fail(
            &HttpError {
                status: 500,
                reason: "the request body could not be stored",
            },
            ctx,
        );
    }

    /// Answers 503 for a body the worker's budget has no room for.
    fn body_refused(&mut self, refused: &Refused, ctx: &mut Ctx<'_>) {
        log::warn!(
            "refused a request body from {} with 503: {refused}",
            peer_text(self.peer)
        );
        self.fail(
            &HttpError {
                status: 503,
                reason: "the server is receiving too many request bodies; retry shortly",
            },
            ctx,
        );
    }

    /// Reading → InApp: the request goes to the application.
    fn dispatch(&mut self, head: RequestHead, body: RequestBody, ctx: &mut Ctx<'_>) {
        debug_assert!(matches!(self.state, State::Reading(_)));
        self.enter_app(&head, ctx);
        ctx.actions.push_back(Action::Dispatch { head, body });
    }

    /// Reading → InApp with a WebSocket handshake, which goes to the application; or, when it
    /// is malformed, Writing its 400 (426 for a version other than 13).
    fn begin_websocket(&mut self, head: RequestHead, ctx: &mut Ctx<'_>) {
        match handshake::check(&head) {
            Ok(handshake) => {
                self.enter_app(&head, ctx);
                if let State::InApp(in_app) = &mut self.state {
                    in_app.websocket = Some(handshake.accept);
                }
                ctx.actions.push_back(Action::Upgrade {
                    head,
                    subprotocols: handshake.subprotocols,
                });
            }
            Err(refusal) => {
                log::debug!(
                    "refused a WebSocket handshake from {}: {}",
                    peer_text(self.peer),
                    refusal.reason()
                );
                self.fail(
                    &HttpError {
                        status: refusal.status(),
                        reason: refusal.reason(),
                    },
                    ctx,
                );
            }
        }
    }

    /// → InApp, for the request `head`: the keep-alive decision, and what the response will
    /// need to know of the request.
    fn enter_app(&mut self, head: &RequestHead, ctx: &mut Ctx<'_>) {
        self.requests = self.requests.saturating_add(1);
        self.decide_keep_alive(
            KeepAlive::Dispatched {
                client: head.keep_alive,
                stopping: ctx.stopping,
            },
            ctx.settings,
        );
        let now = Instant::now();
        self.state = State::InApp(InApp {
            since: now,
            working_since: now,
            version: head.version,
            head_request: head.method == "HEAD",
            label: (!ctx.settings.request_timeout.is_zero())
                .then(|| format!("{} {}", head.method, head.target)),
            access: None,
            websocket: None,
        });
    }

    fn start_writing(&mut self, out: Output, linger: bool, ctx: &mut Ctx<'_>) {
        debug_assert!(matches!(self.state, State::Taken));
        self.state = State::Writing(Writing {
            out,
            deadline: Instant::now() + ctx.settings.body_timeout,
            linger,
        });
        ctx.actions.push_back(Action::Write);
    }

    /// Writes what the response has left until the socket is full or the response is out;
    /// see [`Output::write`]. A connection with more to send and a socket still taking it is
    /// queued to continue after the next poll, so one fast download cannot starve the others.
    pub(super) fn write(&mut self, ctx: &mut Ctx<'_>) {
        let State::Writing(writing) = &mut self.state else {
            return;
        };
        let written = writing.out.write(&mut self.stream, self.peer);
        if written.progressed {
            writing.deadline = Instant::now() + ctx.settings.body_timeout;
        }
        if let Some(producer) = written.pull {
            ctx.actions.push_back(if written.step == WriteStep::Close {
                Action::Discard(producer)
            } else {
                Action::Pull(producer)
            });
        }
        match written.step {
            WriteStep::Done => self.finish(ctx),
            WriteStep::Paused => ctx.actions.push_back(Action::Backlog),
            WriteStep::Waiting => {}
            WriteStep::Close => self.close(ctx),
        }
    }

    /// Queues a streamed body's next chunk (or its end, with `None`) and writes on.
    pub(super) fn take_chunk(&mut self, next: Option<(Vec<u8>, BodyStream)>, ctx: &mut Ctx<'_>) {
        if self.is_websocket() && next.is_none() {
            // A WebSocket's messages came to an end without a close: a normal closure.
            self.ws_app_close(1000, "", ctx);
            return;
        }
        let State::Writing(writing) = &mut self.state else {
            if let Some((_, producer)) = next {
                ctx.actions.push_back(Action::Discard(producer));
            }
            return;
        };
        match writing.out.take_chunk(next, self.peer) {
            ChunkTaken::Unexpected(producer) => {
                ctx.actions.extend(producer.map(Action::Discard));
                return;
            }
            ChunkTaken::Queued { finished, short } => {
                writing.deadline = Instant::now() + ctx.settings.body_timeout;
                if short {
                    self.decide_keep_alive(KeepAlive::Broken, ctx.settings);
                }
                // Its promised length is out: its end (and its clean-up) is the pool's
                // business.
                ctx.actions.extend(finished.map(Action::Discard));
            }
        }
        self.write(ctx);
    }

    /// Writing → Reading (keep-alive), Lingering or the close: the response is out.
    fn finish(&mut self, ctx: &mut Ctx<'_>) {
        let State::Writing(writing) = self.take_state() else {
            debug_assert!(false, "finishing a response not being written");
            return;
        };
        ctx.actions.push_back(Action::Sent(writing.out.body_sent()));
        if self.keep_alive {
            self.spare = writing.out.queue;
            // A response begun before a stop (a long download, a stream) promised keep-alive.
            // Now the connection is idle, and a stopping worker does not wait long for idle
            // connections: a request already on its way is still answered, with
            // `Connection: close`.
            let wait = if request_begun(self.pending_input()) {
                // Part of the next request came with this one: its head has header_timeout,
                // as it would if it came now.
                ctx.settings.header_timeout
            } else if ctx.stopping {
                DRAIN_IDLE
            } else {
                ctx.settings.idle_wait()
            };
            self.state = Reading::waiting(ctx.settings, wait);
            // A pipelined request may already be buffered or waiting in the socket.
            self.read(ctx);
        } else if writing.linger
            || self.unread
            || !self.pending_input().is_empty()
            || self.body_unfinished()
        {
            self.stream.shutdown_write();
            self.state = State::Lingering {
                until: Instant::now() + LINGER,
            };
            self.linger(ctx);
        } else {
            // The request was read in full and nothing followed it: no reset can overtake the
            // response, so close now (the close sends the FIN) rather than wait for the client.
            self.stream.close_notify();
            self.close(ctx);
        }
    }

    /// Drains what the client still sends; closes at its end.
    fn linger(&mut self, ctx: &mut Ctx<'_>) {
        let mut sink = [0u8; 4096];
        loop {
            match self.stream.read(&mut sink) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        self.close(ctx);
    }

    /// InApp → closed: the client left before a thread started its request, which the
    /// worker took back from the pool. Logged as nginx logs a client that closed before its
    /// answer: `499`, nothing sent.
    pub(super) fn withdrawn(&mut self, ctx: &mut Ctx<'_>) {
        let in_app = match self.take_state() {
            State::InApp(in_app) => in_app,
            other => {
                debug_assert!(false, "withdrawn while not with the application");
                self.state = other;
                return;
            }
        };
        log::debug!(
            "{} went away before its request started; it was taken back from the queue",
            peer_text(self.peer)
        );
        ctx.actions.push_back(Action::Log(Answer {
            status: 499,
            micros: in_app.since.elapsed().as_micros() as u64,
            access: in_app.access,
        }));
        ctx.actions.push_back(Action::Sent(0));
        self.state = State::Closed;
        ctx.actions.push_back(Action::Close);
    }

    /// Any state → closed. A request still with the pool stays counted in flight until its
    /// answer comes back, finds the serial gone, and is dropped; so does a stream's chunk
    /// being pulled.
    pub(super) fn close(&mut self, ctx: &mut Ctx<'_>) {
        match self.take_state() {
            State::Closed => {
                self.state = State::Closed;
                return;
            }
            State::Writing(mut writing) => {
                let producer = writing.out.take_producer();
                if producer.is_some() || writing.out.pulling_since().is_some() {
                    // A streamed response not over: its application is still producing it.
                    ctx.actions.push_back(Action::Gone);
                }
                ctx.actions.extend(producer.map(Action::Discard));
                ctx.actions.push_back(Action::Sent(writing.out.body_sent()));
            }
            State::InApp(_) => ctx.actions.push_back(Action::Gone),
            State::Upgraded(up) => Self::ws_closed(up, ctx),
            State::Reading(_) | State::ProxyHeader(_) | State::Lingering { .. } | State::Taken => {}
        }
        self.state = State::Closed;
        ctx.actions.push_back(Action::Close);
    }
}

/// When a body whose clock began at `began` and of which `received` bytes came is due: the
/// next byte within `body_timeout` from now, and, once `body_rate_grace` has passed, an average
/// of `min_body_rate` (Kestrel's `MinRequestBodyDataRate`), which with `received` bytes holds
/// until `received / min_body_rate` after `began`.
fn body_deadline(began: Instant, received: u64, settings: &Settings) -> Instant {
    let stalled = Instant::now() + settings.body_timeout;
    if settings.min_body_rate == 0 {
        return stalled;
    }
    let nanos = u128::from(received) * 1_000_000_000 / u128::from(settings.min_body_rate);
    let earned = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
    began
        .checked_add(earned.max(settings.body_rate_grace))
        .map_or(stalled, |slow| slow.min(stalled))
}

/// What a read from the socket brought.
enum Got {
    /// Bytes, now in the read buffer.
    Bytes,
    /// Nothing for now: the socket is empty, and the next bytes come with an event.
    Nothing,
    /// The end of the stream, or a failed read: the connection is over.
    End,
}

/// Whether `pending`, bytes read while waiting for a request, begin one: the empty lines a
/// client may send after a body (RFC 9112 §2.2, at most `MAX_LEADING_EMPTY_LINES`) do not.
fn request_begun(pending: &[u8]) -> bool {
    pending.iter().any(|&b| b != b'\r' && b != b'\n')
}

mod body_in;
mod proxy_header;
mod respond;
mod upgraded;

#[cfg(test)]
mod tests;
