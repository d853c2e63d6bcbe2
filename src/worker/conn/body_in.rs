//! A request body streamed to a concurrent (ASGI) application: the request goes to the
//! application as soon as its head is in, and its body is read from the socket only when the
//! application asks for more (`Reply::WantBody`), one piece per ask. While it does not ask,
//! the bytes wait in the socket and the client's sends stall there: flow control, with no
//! buffer growing on either side. A `100 Continue` the client asked for goes out at the first
//! ask, so a client is not invited to send a body the application never reads.
//!
//! The body is read while the request is with the application and while its response is
//! written (an application may read after it began answering). A response that begins before
//! the body is all in closes the connection after it: the rest of the body is not read.

use std::time::{Duration, Instant};

use super::{Action, CONTINUE, Conn, Ctx, Got, Settings, State, body_deadline};
use crate::http::{Decoded, Decoder, HttpError};
use crate::worker::out::Socket;
use crate::worker::peer_text;

/// What is left to read of a body streamed to the application.
pub(super) struct BodyIn {
    decoder: Decoder,
    /// The application waits for the next piece.
    wanted: bool,
    /// How many bytes at the end of [`CONTINUE`] are still to be written before the body is
    /// read; zero when none was asked for, or it is out.
    continue_left: u8,
    /// While the application waits: when the body must have progressed (`body_timeout`,
    /// `min_body_rate`).
    deadline: Instant,
    /// Bytes of the body handed to the application so far.
    received: u64,
    /// How long the application waited for the pieces it was given: the body's clock, for
    /// `min_body_rate`, runs only while it waits (it sets the pace otherwise).
    waited: Duration,
    /// When the application asked for the piece it waits for.
    asked_at: Instant,
}

impl BodyIn {
    /// When the piece the application waits for is due: within `body_timeout` of the last
    /// progress, and at `min_body_rate` over the time the application has waited.
    fn due(&self, settings: &Settings) -> Instant {
        let received = self.received + self.decoder.body_buffered() as u64;
        let began = self
            .asked_at
            .checked_sub(self.waited)
            .unwrap_or(self.asked_at);
        body_deadline(began, received, settings)
    }
}

impl<S: Socket> Conn<S> {
    /// Reading → InApp with the body still to come: hands the request's head to the
    /// application, and keeps the decoder to read the body with as the application asks.
    pub(super) fn begin(&mut self, ctx: &mut Ctx<'_>) {
        let State::Reading(mut reading) = self.take_state() else {
            debug_assert!(false, "beginning a request not being read");
            return;
        };
        let Some(head) = reading.decoder.head().cloned() else {
            debug_assert!(false, "beginning a request whose head is not in");
            self.state = State::Reading(reading);
            return;
        };
        if crate::websocket::handshake::wants_websocket(&head) {
            // A handshake with a body: malformed.
            self.state = State::Reading(reading);
            self.begin_websocket(head, ctx);
            return;
        }
        let continue_left = if reading.decoder.take_continue() {
            CONTINUE.len() as u8
        } else {
            0
        };
        self.body_in = Some(BodyIn {
            decoder: reading.decoder,
            wanted: false,
            continue_left,
            deadline: Instant::now(),
            received: 0,
            waited: Duration::ZERO,
            asked_at: Instant::now(),
        });
        // The reservation against the body budget goes with `reading`: pieces pass through
        // one at a time and are never gathered.
        self.enter_app(&head, ctx);
        ctx.actions.push_back(Action::Begin { head });
    }

    /// A response begins: a `100 Continue` must not follow it. What is unsent of one begun
    /// goes first (returned); one not begun is never sent.
    pub(super) fn continue_before_response(&mut self) -> &'static [u8] {
        let Some(body) = self.body_in.as_mut() else {
            return &[];
        };
        let left = usize::from(std::mem::take(&mut body.continue_left));
        if left == CONTINUE.len() {
            &[]
        } else {
            &CONTINUE[CONTINUE.len() - left..]
        }
    }

    /// Whether the application waits for more of its request's body.
    pub(super) fn body_wanted(&self) -> bool {
        self.body_in.as_ref().is_some_and(|body| body.wanted)
    }

    /// Whether a body streamed to the application is not all read yet.
    pub(super) fn body_unfinished(&self) -> bool {
        self.body_in.is_some()
    }

    /// When the piece of body the application waits for is due, if it waits.
    pub(super) fn body_deadline(&self) -> Option<Instant> {
        self.body_in
            .as_ref()
            .filter(|body| body.wanted)
            .map(|body| body.deadline)
    }

    /// A piece of body goes to the application: its own time runs again from now.
    fn hand_over(&mut self, chunk: Vec<u8>, more: bool, ctx: &mut Ctx<'_>) {
        let now = Instant::now();
        if let State::InApp(in_app) = &mut self.state {
            in_app.working_since = now;
        }
        if let Some(body) = self.body_in.as_mut() {
            body.waited += now.saturating_duration_since(body.asked_at);
            body.received += chunk.len() as u64;
        }
        ctx.actions.push_back(Action::Body { chunk, more });
    }

    /// The application asks for the next piece of its request's body.
    pub(in crate::worker) fn want_body(&mut self, ctx: &mut Ctx<'_>) {
        if self.is_websocket() {
            self.ws_want(ctx);
            return;
        }
        let Some(body) = self.body_in.as_mut() else {
            // The body is over (or the connection moved on): its end was already handed over.
            return;
        };
        body.wanted = true;
        body.asked_at = Instant::now();
        body.deadline = body.due(ctx.settings);
        self.read_body(ctx);
    }

    /// Reads and decodes until a piece of body is ready for the application (or its end),
    /// the socket is empty, or the connection fails.
    pub(super) fn read_body(&mut self, ctx: &mut Ctx<'_>) {
        loop {
            let Some(body) = self.body_in.as_mut() else {
                return;
            };
            if !body.wanted {
                return;
            }
            if body.continue_left > 0 {
                let mut left = body.continue_left;
                let written = self.write_continue(&mut left);
                if let Some(body) = self.body_in.as_mut() {
                    body.continue_left = left;
                }
                match written {
                    Ok(true) => continue,
                    Ok(false) => return,
                    Err(_) => {
                        self.close(ctx);
                        return;
                    }
                }
            }
            match body
                .decoder
                .decode(&self.read_buf[self.read_start..self.read_end])
            {
                Err(err) => {
                    log::debug!("bad request body from {}: {err}", peer_text(self.peer));
                    self.body_failed(&err, ctx);
                    return;
                }
                Ok(Decoded::Complete {
                    consumed,
                    body: rest,
                    ..
                }) => {
                    self.read_start += consumed;
                    self.body_in = None;
                    self.hand_over(rest, false, ctx);
                    return;
                }
                Ok(Decoded::NeedMore { consumed }) => {
                    self.read_start += consumed;
                    if body.decoder.body_buffered() > 0 {
                        body.wanted = false;
                        let chunk = body.decoder.take_body();
                        self.hand_over(chunk, true, ctx);
                        return;
                    }
                }
            }
            if !self.unread {
                return;
            }
            match self.read_socket(ctx.scratch) {
                Got::End => {
                    log::debug!(
                        "{} left in the middle of a request body",
                        peer_text(self.peer)
                    );
                    self.close(ctx);
                    return;
                }
                Got::Bytes => {
                    if let Some(body) = self.body_in.as_mut() {
                        body.deadline = body.due(ctx.settings);
                    }
                }
                Got::Nothing => return,
            }
        }
    }

    /// The body turned out malformed or too large: answered with `err` while the response has
    /// not begun, else the connection is closed under it.
    fn body_failed(&mut self, err: &HttpError, ctx: &mut Ctx<'_>) {
        self.body_in = None;
        if matches!(self.state, State::InApp(_)) {
            self.fail(err, ctx);
        } else {
            self.close(ctx);
        }
    }

    /// The application waited for body longer than `body_timeout`: 408 while its response has
    /// not begun, else the connection is closed.
    pub(super) fn body_timed_out(&mut self, ctx: &mut Ctx<'_>) {
        log::debug!(
            "the request body from {} stalled while the application waited for it",
            peer_text(self.peer)
        );
        self.body_failed(
            &HttpError {
                status: 408,
                reason: "the request body did not arrive in time",
            },
            ctx,
        );
    }
}
