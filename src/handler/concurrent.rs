//! Applications that run many requests at once on an event loop of their own (ASGI), instead
//! of one request per pool thread.
//!
//! The worker's event loop talks to such an application in messages that never block either
//! side: it hands over a request ([`Concurrent::start`]), asks for a streamed response's next
//! chunk when the connection has room for it ([`Concurrent::more`]), and says when the
//! response is no longer wanted or the client left. The application answers through
//! [`Replies`], which the worker reads on its loop as it reads the pool's answers. A reply is
//! only queued by [`Replies::send`]: the application must call [`Replies::wake`] after it, at
//! the latest when it is about to wait for more work, or the worker reads the reply only when
//! something else wakes it. In the same way the worker calls [`Concurrent::wake`] after it has
//! handed over what one round of its events brought, and an application that waits for its
//! own wake-up until then must not sleep before it.
//!
//! The conversation for one request, in order:
//!
//! ```text
//!  worker                          application
//!  start(ticket, request)  ---->
//!                          <----   Reply::WantBody               when its body follows
//!  body(ticket, chunk)     ---->                                 one per WantBody
//!                          <----   Reply::Respond(response)      exactly one per start
//!                          <----   Reply::Done                   exactly one per start, last
//!  more(ticket)            ---->                                 while the body streams
//!                          <----   Reply::Chunk | End | Failed   exactly one per more
//!  discard(ticket)         ---->   the rest of the body is not wanted (HEAD, a length reached)
//!  gone(ticket)            ---->   the client went away
//!  cancel(ticket)          ---->   ran past request_timeout
//! ```
//!
//! A WebSocket request ([`Begin::WebSocket`]) is answered with [`WsReply::Accept`] (the `101`
//! goes out and the connection carries frames from then on) or, refused, with a `Respond` as
//! above. Once accepted, the body pulled with `more` is the application's messages:
//!
//! ```text
//!  worker                          application
//!                          <----   WsReply::Accept               instead of Respond and Done
//!                          <----   Reply::WantBody               it waits for a message
//!  message(ticket, msg)    ---->                                 one per WantBody
//!  more(ticket)            ---->                                 room for the next message
//!                          <----   WsReply::Message | Close, or Reply::Failed: one per more
//!  closed(ticket, code)    ---->   the connection is over (last); a message not yet asked
//!                                  for comes before it
//! ```
//!
//! The promise of "exactly one" replies is what keeps the worker's count of requests and
//! chunks in flight right: an application must keep it even for a request it cancels or that
//! fails. A request counts against the worker's concurrency from its start to its `Done`, or
//! to its `Accept`: an accepted WebSocket is a connection, counted against `max_connections`,
//! and its task (however long it lives) sends no `Done`.

use std::sync::Arc;

use super::{HeaderFields, Request, Response};
use crate::websocket::Message;

/// How a request reaches the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// With all of its body.
    Whole,
    /// With its body still arriving: the application asks for it with [`Reply::WantBody`], a
    /// piece at a time.
    BodyFollows,
    /// A valid WebSocket opening handshake (RFC 6455 §4.2.1), offering `subprotocols`: the
    /// application accepts it ([`WsReply::Accept`]) or refuses it with a response.
    WebSocket {
        /// The subprotocols the client offered, in its order.
        subprotocols: Vec<String>,
    },
}

/// Which request a message is about: the worker's connection slot and that connection's
/// serial. A keep-alive connection's requests share a ticket, one after the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ticket {
    /// The connection's slot in the worker.
    pub conn: usize,
    /// The connection's serial, unique in the worker.
    pub serial: u64,
}

/// What a concurrent application says about a request.
#[derive(Debug)]
pub enum Reply {
    /// The response begins (or is whole): a [`Body::Stream`](super::Body::Stream) or
    /// [`Body::SizedStream`](super::Body::SizedStream) body is produced by `more` and
    /// `Chunk`; its iterator is never called.
    Respond(Response),
    /// The next chunk of the body, answering a `more`.
    Chunk(Vec<u8>),
    /// The body is over, answering a `more`.
    End,
    /// The body cannot be completed, answering a `more`: the connection is closed without
    /// its end.
    Failed,
    /// The application waits for more of the request's body (a request started with
    /// `body_follows`): the worker reads on and answers with one [`Concurrent::body`]. The
    /// first one also sends a `100 Continue` the client asked for.
    WantBody,
    /// The request's work is over (its task ended, after or long after its response: a
    /// background task): it no longer counts against the worker's concurrency.
    Done,
    /// About a WebSocket request.
    WebSocket(WsReply),
}

/// What a concurrent application says about a WebSocket request.
#[derive(Debug)]
pub enum WsReply {
    /// The WebSocket request is accepted, in place of a `Respond` and a `Done`: the `101` goes out with
    /// the `subprotocol` the application chose (one the client offered) and its extra header
    /// fields.
    Accept {
        /// The subprotocol chosen, if any.
        subprotocol: Option<String>,
        /// More fields for the `101`.
        headers: HeaderFields,
    },
    /// A message for the WebSocket's client, answering a `more`.
    Message(Message),
    /// Close the WebSocket with `code` and `reason`, answering a `more`: the application
    /// sends nothing more.
    Close {
        /// The close code (RFC 6455 §7.4).
        code: u16,
        /// Why, for the client: UTF-8, cut to fit a close frame.
        reason: String,
    },
}

/// Where a concurrent application sends its replies; cheap to clone and callable from any
/// thread.
///
/// [`Replies::send`] only queues a reply; [`Replies::wake`] wakes the worker's event loop for
/// what was queued since. An application on an event loop of its own sends the replies of one
/// turn of its loop and then wakes the worker once: woken at each reply, the worker's thread
/// would preempt the application's on its CPU mid-turn, a context switch there and back per
/// reply.
#[derive(Clone)]
pub struct Replies {
    send: Arc<dyn Fn(Ticket, Reply) + Send + Sync>,
    wake: Arc<dyn Fn() + Send + Sync>,
}

impl Replies {
    /// Replies queued by `send` and the worker woken for them by `wake`.
    pub fn new(
        send: impl Fn(Ticket, Reply) + Send + Sync + 'static,
        wake: impl Fn() + Send + Sync + 'static,
    ) -> Replies {
        Replies {
            send: Arc::new(send),
            wake: Arc::new(wake),
        }
    }

    /// Queues `reply` for the request of `ticket`; the worker sees it once woken.
    pub fn send(&self, ticket: Ticket, reply: Reply) {
        (self.send)(ticket, reply);
    }

    /// Wakes the worker's event loop for the replies queued since the last wake (nothing when
    /// there are none).
    pub fn wake(&self) {
        (self.wake)();
    }
}

impl std::fmt::Debug for Replies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Replies")
    }
}

/// An application that runs requests concurrently on its own event loop; see the module
/// documentation for the conversation. Every method returns at once: it is called on the
/// worker's event loop.
pub trait Concurrent: Send + Sync {
    /// Starts serving, before the first request: `replies` is where the answers go.
    fn serve(&self, replies: Replies);

    /// The worker's loop has handed over what one turn brought (it calls this before it waits
    /// again): an application that holds back waking its own loop until now wakes it. The
    /// other methods may leave that wake-up to this one.
    fn wake(&self) {}

    /// A request to run; `begin` says whether its body is all in the request, still arriving
    /// (the application asks for it with [`Reply::WantBody`], a piece at a time, and gets each
    /// through [`Concurrent::body`]) or a WebSocket handshake (answered with
    /// [`WsReply::Accept`] or a response).
    fn start(&self, ticket: Ticket, request: Request, begin: Begin);

    /// The next piece of the body of `ticket`, answering a [`Reply::WantBody`]; `more` says
    /// whether pieces follow.
    fn body(&self, ticket: Ticket, chunk: Vec<u8>, more: bool);

    /// The next message from the client of WebSocket `ticket`, answering a
    /// [`Reply::WantBody`] (or, once, just before [`Concurrent::closed`]).
    fn message(&self, ticket: Ticket, message: Message);

    /// WebSocket `ticket` is over: `code` and `reason` are the client's close frame's, or the
    /// close tine sent (1001 at a stop, 1002, 1007, 1009, 1011 for a dead peer), or 1006 when
    /// the connection ended without one. Nothing more comes for it.
    fn closed(&self, ticket: Ticket, code: u16, reason: String);

    /// The connection has room for the next chunk of the streamed response of `ticket` (or
    /// the next message of WebSocket `ticket`).
    fn more(&self, ticket: Ticket);

    /// The rest of the response of `ticket` is not wanted (the request was `HEAD`, the
    /// status allows no body, or the length the application gave is reached): what it still
    /// sends is dropped without an error.
    fn discard(&self, ticket: Ticket);

    /// The client of `ticket` went away: what the application still sends fails.
    fn gone(&self, ticket: Ticket);

    /// The request of `ticket` ran past `request_timeout` (or its streamed response's next
    /// chunk did): stop it, and log where it was.
    fn cancel(&self, ticket: Ticket);

    /// Since when the oldest message the application has not taken yet has waited, if one
    /// has: an application that takes none for long is blocked (code that never yields to
    /// its event loop), and the worker replaces itself.
    fn waiting_since(&self) -> Option<std::time::Instant>;

    /// The worker found the application blocked for `how_long`: log where it is (the line
    /// it is stuck on). Returns at once.
    fn blocked(&self, how_long: std::time::Duration);
}

/// A streamed body's producer for a concurrent application: its chunks come as replies, so
/// this is only a place-holder that the worker hands back and forth; asked for a chunk, it
/// has none.
#[derive(Debug, Default)]
pub struct Replied;

impl Iterator for Replied {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        None
    }
}
