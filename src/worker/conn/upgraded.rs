//! A WebSocket: the connection after its `101`, when it carries RFC 6455 frames instead of
//! HTTP (InApp → Upgraded → Closed).
//!
//! The framing is done here, on the worker's loop, with `crate::websocket`'s codec: a client's
//! frames are unmasked, checked and put together into messages; pings are answered, and the
//! close handshake is carried out, without the application. The application's side is the
//! same conversation as a streamed request and response: it asks for a message
//! (`Reply::WantBody`) and gets one (`Action::Message`); the loop asks it for its next message
//! (`Action::Pull`) when the connection has room for one, and frames what comes.
//!
//! Flow control both ways, as for HTTP bodies: whole messages read and not yet asked for are
//! held, up to `max_message` bytes of them (or `MAX_HELD` messages), and then nothing more is
//! read until the application takes them (the client's sends stall in the kernel); the
//! application's `send` waits until its message before was taken, and the loop takes one only
//! while its output queue has room (under 64 KiB). Each ping is answered while the output has
//! room; beyond it, only the latest: a client that pings and does not read costs one pong.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{Action, Answer, Conn, Ctx, Got, State};
use crate::handler::{HeaderFields, Replied};
use crate::http::{self, Version};
use crate::websocket::{self, Event, Message, Opcode, ProtocolError, Reader};
use crate::worker::out::{Output, Socket, WriteStep};
use crate::worker::peer_text;

/// How long the connection waits for the client's close frame after sending its own.
const CLOSE_WAIT: Duration = Duration::from_secs(5);
/// The close code for a connection that ended without a close frame (RFC 6455 §7.1.5); it is
/// never sent, only told to the application.
const ABNORMAL: u16 = 1006;
/// The close code a close frame without one stands for (RFC 6455 §7.1.5).
const NO_STATUS: u16 = 1005;
/// Most messages held for an application that has not asked for them; then reading stops.
const MAX_HELD: usize = 16;
/// What a stopping worker tells its WebSockets.
const GOING_AWAY: (u16, &str) = (1001, "the server is going away");

/// What the `[websocket]` section asks of every WebSocket.
#[derive(Debug, Clone, Copy)]
pub(in crate::worker) struct WsSettings {
    /// The largest message a client may send, after reassembly.
    pub(in crate::worker) max_message: usize,
    /// A WebSocket silent this long is pinged; zero sends no pings.
    pub(in crate::worker) ping_interval: Duration,
    /// How long its pong may take.
    pub(in crate::worker) ping_timeout: Duration,
}

/// Which of a WebSocket's timers ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::worker) enum WsTimer {
    /// The close handshake took too long, or a write stalled: the connection closes.
    Over,
    /// The pong to a ping did not come: the connection closes with 1011.
    PongLate,
    /// The client has been silent for `ping_interval`: a ping goes out.
    PingDue,
}

/// Where the application's messages are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sending {
    /// The loop may ask for the next one.
    Ready,
    /// Asked for since then; not here yet.
    Pulling,
    /// No more: the application closed, or the connection is closing.
    Over,
}

/// A WebSocket's state.
pub(super) struct Upgraded {
    reader: Reader,
    /// Its pings, and how long a write may stall (`body_timeout`).
    ws: WsSettings,
    write_timeout: Duration,
    /// What is queued for the client: frames, the `101` first.
    out: Output,
    sending: Sending,
    /// The application waits for a message.
    wanted: bool,
    /// Whole messages read and not yet asked for, oldest first, and their bytes.
    held: VecDeque<Message>,
    held_bytes: usize,
    /// The pong owed to the latest ping, while the output has no room for it.
    pong: Option<Vec<u8>>,
    /// The close frame sent: its code and reason.
    close_sent: Option<(u16, String)>,
    /// The client's close frame: its code (1005 for none) and reason.
    close_received: Option<(u16, String)>,
    /// The close handshake must be over by then.
    closing_until: Option<Instant>,
    /// The connection closes as soon as its close frame is out, without waiting for the
    /// client's (a protocol error, a dead peer).
    drop_after_close: bool,
    /// When a frame (or part of one) last came from the client.
    last_heard: Instant,
    /// The ping waiting for its pong, since when.
    ping_sent: Option<Instant>,
    /// When a write last progressed, or output began to wait.
    write_since: Instant,
}

impl Upgraded {
    /// Which of its timers has run out at `now`, if one has: the close handshake or a
    /// stalled write first, then the pong awaited, then the next ping.
    fn expired(&self, now: Instant) -> Option<WsTimer> {
        let stalled = !self.out.queue.is_empty() && now >= self.write_since + self.write_timeout;
        if stalled || self.closing_until.is_some_and(|until| now >= until) {
            return Some(WsTimer::Over);
        }
        if self.ws.ping_interval.is_zero() || self.close_sent.is_some() || self.held_full() {
            // While nothing is read (the application is behind), a pong could not be seen.
            return None;
        }
        match self.ping_sent {
            Some(sent) => (now >= sent + self.ws.ping_timeout).then_some(WsTimer::PongLate),
            None => (now >= self.last_heard + self.ws.ping_interval).then_some(WsTimer::PingDue),
        }
    }

    /// Whether to read on: not once the close handshake is over or the connection failed,
    /// not while as much waits for the application as may (see [`Upgraded::held_full`]), and
    /// not while the output queue, which the answers to pings join, has no room.
    fn reading(&self) -> bool {
        self.close_received.is_none()
            && !self.drop_after_close
            && (!self.held_full() || self.close_sent.is_some())
            && self.out.queue.has_room()
    }

    /// Decodes frames from `input` while it may read on (see [`Upgraded::reading`]): messages
    /// go to the application when it waits for one and are held otherwise, pings are owed a
    /// pong, a close frame is answered and ends reading. Returns how much of `input` it used;
    /// an error is the client's breach of the protocol.
    fn take(
        &mut self,
        input: &[u8],
        actions: &mut VecDeque<Action>,
    ) -> Result<usize, ProtocolError> {
        let mut used = 0;
        while self.reading() {
            let (consumed, event) = self.reader.decode(&input[used..])?;
            if consumed == 0 && event.is_none() {
                break;
            }
            used += consumed;
            match event {
                None | Some(Event::Pong(_)) => {}
                // After its own close, the connection only waits for the client's.
                Some(Event::Message(_)) if self.close_sent.is_some() => {}
                Some(Event::Message(message)) if self.wanted => {
                    self.wanted = false;
                    actions.push_back(Action::Message(message));
                }
                Some(Event::Message(message)) => self.hold(message),
                Some(Event::Ping(payload)) if self.close_sent.is_none() => {
                    if self.out.queue.has_room() {
                        self.queue_control(Opcode::Pong, &payload);
                    } else {
                        // The answers do not go out: only the latest ping will be answered
                        // (RFC 6455 §5.5.3), so a flood of them costs one pong.
                        self.pong = Some(payload);
                    }
                }
                Some(Event::Ping(_)) => {}
                Some(Event::Close(close)) => {
                    // Answered with the same code (RFC 6455 §5.5.1); the connection closes
                    // once the answer is out.
                    match &close {
                        Some((code, _)) => self.send_close(*code, ""),
                        None if self.close_sent.is_none() => {
                            self.out
                                .queue
                                .push(websocket::control_frame(Opcode::Close, b""));
                            self.close_sent = Some((NO_STATUS, String::new()));
                        }
                        None => {}
                    }
                    self.close_received = Some(close.unwrap_or((NO_STATUS, String::new())));
                }
            }
        }
        if used > 0 {
            // The client is alive: its ping clock starts again.
            self.last_heard = Instant::now();
            self.ping_sent = None;
        }
        Ok(used)
    }

    /// Whether as much is held for the application as it may be.
    fn held_full(&self) -> bool {
        self.held_bytes >= self.ws.max_message || self.held.len() >= MAX_HELD
    }

    /// Holds a message the application has not asked for yet.
    fn hold(&mut self, message: Message) {
        self.held_bytes += message_len(&message);
        self.held.push_back(message);
    }

    /// The oldest message held, if any.
    fn unhold(&mut self) -> Option<Message> {
        let message = self.held.pop_front()?;
        self.held_bytes -= message_len(&message);
        if self.held.is_empty() && self.held.capacity() > MAX_HELD {
            self.held = VecDeque::new();
        }
        Some(message)
    }

    /// Queues a close frame and notes it sent; the handshake has `CLOSE_WAIT` to finish.
    fn send_close(&mut self, code: u16, reason: &str) {
        if self.close_sent.is_some() {
            return;
        }
        self.out.queue.push(websocket::close_frame(code, reason));
        self.close_sent = Some((code, reason.to_owned()));
        self.closing_until = Some(Instant::now() + CLOSE_WAIT);
        if self.sending == Sending::Ready {
            self.sending = Sending::Over;
        }
    }

    /// Queues a control frame.
    fn queue_control(&mut self, opcode: Opcode, payload: &[u8]) {
        if self.out.queue.is_empty() {
            self.write_since = Instant::now();
        }
        self.out
            .queue
            .push(websocket::control_frame(opcode, payload));
    }

    /// Queues one message's frame.
    fn queue(&mut self, message: Message) {
        let (opcode, payload) = match message {
            Message::Text(text) => (Opcode::Text, text.into_bytes()),
            Message::Binary(bytes) => (Opcode::Binary, bytes),
        };
        if self.out.queue.is_empty() {
            self.write_since = Instant::now();
        }
        self.out
            .queue
            .push(websocket::frame_header(opcode, payload.len()));
        self.out.queue.push(payload);
    }
}

impl<S: Socket> Conn<S> {
    /// InApp → Upgraded: the application accepted the WebSocket; its `101` goes out, with
    /// the `subprotocol` chosen and the application's `headers`. An acceptance that finds the
    /// connection no longer waiting for it (its client left) is dropped.
    pub(in crate::worker) fn accept(
        &mut self,
        subprotocol: Option<String>,
        headers: HeaderFields,
        ctx: &mut Ctx<'_>,
    ) {
        let in_app = match self.take_state() {
            State::InApp(in_app) if in_app.websocket.is_some() => in_app,
            other => {
                self.state = other;
                return;
            }
        };
        let accept = in_app.websocket.unwrap_or_default();
        let mut fields: HeaderFields = Vec::with_capacity(headers.len() + 3);
        fields.push(("Upgrade".to_owned(), b"websocket".to_vec()));
        fields.push(("Sec-WebSocket-Accept".to_owned(), accept.into_bytes()));
        if let Some(chosen) = subprotocol {
            fields.push(("Sec-WebSocket-Protocol".to_owned(), chosen.into_bytes()));
        }
        fields.extend(headers.into_iter().filter(|(name, _)| {
            !name.eq_ignore_ascii_case("upgrade")
                && !name.eq_ignore_ascii_case("sec-websocket-accept")
                && !name.eq_ignore_ascii_case("sec-websocket-extensions")
        }));
        ctx.actions.push_back(Action::Log(Answer {
            status: 101,
            micros: in_app.since.elapsed().as_micros() as u64,
            access: in_app.access,
        }));
        let mut head = Vec::with_capacity(256);
        http::write_response_head(
            &mut head,
            Version::Http11,
            101,
            &fields,
            None,
            true,
            ctx.dates.get(std::time::SystemTime::now()),
        );
        let out = Output::new(std::mem::take(&mut self.spare), head);
        let now = Instant::now();
        self.upgraded = true;
        self.state = State::Upgraded(Box::new(Upgraded {
            reader: Reader::new(ctx.settings.websocket.max_message),
            ws: ctx.settings.websocket,
            write_timeout: ctx.settings.body_timeout,
            out,
            sending: Sending::Ready,
            wanted: false,
            held: VecDeque::new(),
            held_bytes: 0,
            pong: None,
            close_sent: None,
            close_received: None,
            closing_until: None,
            drop_after_close: false,
            last_heard: now,
            ping_sent: None,
            write_since: now,
        }));
        // Counted before anything can close it.
        ctx.actions.push_back(Action::Upgraded);
        self.ws_write(ctx);
        // Frames the client sent right after its handshake may be buffered or in the socket.
        self.ws_read(ctx);
    }

    /// Whether the connection is a WebSocket.
    pub(in crate::worker) fn is_websocket(&self) -> bool {
        matches!(self.state, State::Upgraded(_))
    }

    /// Whether the connection became a WebSocket, open or closed since.
    pub(in crate::worker) fn was_websocket(&self) -> bool {
        self.upgraded
    }

    /// The application waits for the WebSocket's next message: the one held goes at once,
    /// else the next one read.
    pub(super) fn ws_want(&mut self, ctx: &mut Ctx<'_>) {
        let State::Upgraded(up) = &mut self.state else {
            return;
        };
        match up.unhold() {
            Some(message) => {
                ctx.actions.push_back(Action::Message(message));
                // Reading may have stopped for what was held.
                self.ws_read(ctx);
            }
            None => {
                up.wanted = true;
                self.ws_read(ctx);
            }
        }
    }

    /// The application's next message, answering a pull.
    pub(in crate::worker) fn ws_send(&mut self, message: Message, ctx: &mut Ctx<'_>) {
        let State::Upgraded(up) = &mut self.state else {
            return;
        };
        if up.sending == Sending::Pulling {
            up.sending = Sending::Ready;
        }
        if up.close_sent.is_none() {
            up.queue(message);
        }
        self.ws_write(ctx);
    }

    /// The application closes its WebSocket (answering a pull): its close frame goes out,
    /// and the connection waits for the client's.
    pub(in crate::worker) fn ws_app_close(&mut self, code: u16, reason: &str, ctx: &mut Ctx<'_>) {
        let State::Upgraded(up) = &mut self.state else {
            return;
        };
        up.sending = Sending::Over;
        let code = if websocket::valid_close_code(code) {
            code
        } else {
            log::error!(
                "the application closed a WebSocket with code {code}, which may not be sent; \
                 sent 1011 instead"
            );
            1011
        };
        up.send_close(code, reason);
        self.ws_write(ctx);
    }

    /// The application cannot go on (it raised, or ended without closing): a streamed
    /// response is cut short; a WebSocket is closed with 1011.
    pub(in crate::worker) fn app_failed(&mut self, ctx: &mut Ctx<'_>) {
        if self.is_websocket() {
            self.ws_app_close(1011, "Internal Error", ctx);
        } else {
            self.close(ctx);
        }
    }

    /// A stopping worker closes its WebSockets with `1001 Going Away`; other connections are
    /// left as they are.
    pub(in crate::worker) fn go_away(&mut self, ctx: &mut Ctx<'_>) {
        let State::Upgraded(up) = &mut self.state else {
            return;
        };
        up.send_close(GOING_AWAY.0, GOING_AWAY.1);
        self.ws_write(ctx);
    }

    /// For a WebSocket, which of its timers has run out at `now`, if one has; `None` for
    /// any other connection.
    pub(super) fn ws_expiry(&self, now: Instant) -> Option<Option<WsTimer>> {
        match &self.state {
            State::Upgraded(up) => Some(up.expired(now)),
            _ => None,
        }
    }

    /// A WebSocket's timer ran out: the close handshake or a write took too long (the
    /// connection closes), the pong did not come (closed with 1011), or a ping is due.
    pub(super) fn ws_timer(&mut self, timer: WsTimer, ctx: &mut Ctx<'_>) {
        let State::Upgraded(up) = &mut self.state else {
            return;
        };
        match timer {
            WsTimer::Over => {
                log::debug!(
                    "the WebSocket of {} stopped reading, or did not finish its close \
                     handshake; closing it",
                    peer_text(self.peer)
                );
                self.close(ctx);
            }
            WsTimer::PongLate => {
                log::debug!(
                    "the WebSocket of {} did not answer a ping within {:?}; closing it",
                    peer_text(self.peer),
                    up.ws.ping_timeout
                );
                up.drop_after_close = true;
                up.send_close(1011, "keepalive ping timeout");
                self.ws_write(ctx);
                // The peer is gone: the frame is sent if the socket takes it, and that is all.
                self.close(ctx);
            }
            WsTimer::PingDue => {
                let now = Instant::now();
                up.ping_sent = Some(now);
                up.queue_control(Opcode::Ping, b"tine");
                self.ws_write(ctx);
            }
        }
    }

    /// Reads and decodes frames: messages go to the application when it waits for one (else
    /// one is held and reading stops), pings are answered, a close frame is answered and ends
    /// reading, a protocol error closes the connection with its code.
    pub(super) fn ws_read(&mut self, ctx: &mut Ctx<'_>) {
        loop {
            let State::Upgraded(up) = &mut self.state else {
                return;
            };
            // What is buffered first.
            match up.take(&self.read_buf[self.read_start..self.read_end], ctx.actions) {
                Ok(used) => self.read_start += used,
                Err(err) => {
                    self.ws_protocol_error(err, ctx);
                    return;
                }
            }
            let State::Upgraded(up) = &self.state else {
                return;
            };
            if !up.reading() || !self.unread {
                break;
            }
            if self.read_start < self.read_end {
                // The start of a frame waits in the buffer: read behind it.
                match self.read_socket(ctx.scratch) {
                    Got::Bytes => continue,
                    Got::Nothing => break,
                    Got::End => {
                        self.close(ctx);
                        return;
                    }
                }
            }
            // Nothing buffered: decode straight from the scratch buffer, and keep only what is
            // left of it (a frame's start cut short, or what waits for the application).
            let read = match self.read_scratch(ctx.scratch) {
                Ok(read) => read,
                Err(Got::Nothing) => break,
                Err(_) => {
                    self.close(ctx);
                    return;
                }
            };
            let State::Upgraded(up) = &mut self.state else {
                return;
            };
            match up.take(&ctx.scratch[..read], ctx.actions) {
                Ok(used) => self.keep(&ctx.scratch[used..read]),
                Err(err) => {
                    self.ws_protocol_error(err, ctx);
                    return;
                }
            }
        }
        if self.read_start == self.read_end {
            // An idle WebSocket holds no read buffer.
            self.read_buf = Vec::new();
            self.read_start = 0;
            self.read_end = 0;
        }
        self.ws_write(ctx);
    }

    /// The client broke the protocol: its close code goes out, then the connection closes.
    fn ws_protocol_error(&mut self, err: ProtocolError, ctx: &mut Ctx<'_>) {
        log::debug!(
            "WebSocket protocol error from {}: {} ({})",
            peer_text(self.peer),
            err.reason,
            err.code
        );
        if let State::Upgraded(up) = &mut self.state {
            up.drop_after_close = true;
            up.send_close(err.code, err.reason);
        }
        self.ws_write(ctx);
    }

    /// Writes what is queued, until the socket is full or the budget spent; asks the
    /// application for its next message while little is left; closes the connection once the
    /// close handshake is over.
    pub(super) fn ws_write(&mut self, ctx: &mut Ctx<'_>) {
        let State::Upgraded(up) = &mut self.state else {
            return;
        };
        if up.out.queue.has_room()
            && let Some(payload) = up.pong.take()
        {
            up.queue_control(Opcode::Pong, &payload);
        }
        let written = up.out.write(&mut self.stream, self.peer);
        if written.progressed {
            up.write_since = Instant::now();
        }
        match written.step {
            WriteStep::Close => {
                self.close(ctx);
                return;
            }
            WriteStep::Paused => ctx.actions.push_back(Action::Backlog),
            WriteStep::Done | WriteStep::Waiting => {}
        }
        // Done, not only queued: over TLS the close frame may still be with rustls.
        if written.step == WriteStep::Done
            && up.close_sent.is_some()
            && (up.drop_after_close || up.close_received.is_some())
        {
            // The server closes the TCP connection first (RFC 6455 §7.1.1).
            self.close(ctx);
            return;
        }
        if up.sending == Sending::Ready && up.close_sent.is_none() && up.out.queue.has_room() {
            up.sending = Sending::Pulling;
            ctx.actions.push_back(Action::Pull(Box::new(Replied)));
        }
    }

    /// Upgraded → Closed: the application is told, after the message it had not asked for
    /// yet, with the client's close code, the one sent, or 1006.
    pub(super) fn ws_closed(up: Box<Upgraded>, ctx: &mut Ctx<'_>) {
        let Upgraded {
            held,
            close_received,
            close_sent,
            out,
            ..
        } = *up;
        ctx.actions.extend(held.into_iter().map(Action::Message));
        let (code, reason) = close_received
            .or(close_sent)
            .unwrap_or((ABNORMAL, String::new()));
        ctx.actions.push_back(Action::Closed { code, reason });
        ctx.actions.push_back(Action::Sent(out.body_sent()));
    }
}

/// A message's payload length.
fn message_len(message: &Message) -> usize {
    match message {
        Message::Text(text) => text.len(),
        Message::Binary(bytes) => bytes.len(),
    }
}
