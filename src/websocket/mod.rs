//! WebSocket protocol handling for tine (RFC 6455, the server's side), sans-io: the opening
//! handshake and the frame codec.
//!
//! Nothing here touches a socket, a clock or the log. The connection code asks
//! [`handshake::wants_websocket`] of a request head, [`handshake::check`]s it (a [`Refusal`] is a
//! 400 or a 426), and after its `101` feeds what it reads to a [`Reader`] and writes frames built
//! with [`frame_header`], [`control_frame`] and [`close_frame`].
//!
//! Decisions callers rely on:
//! - No extension is negotiated (`permessage-deflate` neither), so a frame with an RSV bit set
//!   is a protocol error.
//! - A [`ProtocolError`] carries the close code to answer with (1002, 1007 or 1009) and a short
//!   ASCII reason; the connection then sends that close frame and stops reading, since the
//!   reader never resynchronises. Every later call returns the same error.
//! - A message larger than the reader's `max_message` is refused when a frame header announces
//!   it, before any of its payload is held.
//! - A text message's UTF-8 is checked as its payload arrives, so an invalid byte ends the
//!   connection without waiting for the rest of the message.
//!
//! Layers: `frame` and `handshake` are independent; this root only declares and re-exports.

pub mod frame;
pub mod handshake;

pub use frame::{
    Event, Message, Opcode, ProtocolError, Reader, close_frame, control_frame, frame_header,
    valid_close_code,
};
pub use handshake::{Handshake, Refusal, accept_key, check, wants_websocket};
