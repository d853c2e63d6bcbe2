//! HTTP/1.1 protocol handling for tine, sans-io: request decoding, response serialisation and dates.
//!
//! Nothing here touches a socket. The connection code feeds its read buffer to a [`Decoder`],
//! writes the bytes produced by the response writers, and closes the connection after any
//! [`HttpError`], since the decoder never resynchronises after malformed input.
//!
//! Decisions callers rely on:
//! - Line endings must be CRLF everywhere (head, chunk lines, trailers). A bare LF is rejected
//!   with 400 even though httparse would accept it: a front proxy that splits lines differently
//!   from us is a request smuggling vector, and every real client sends CRLF.
//! - Up to [`MAX_LEADING_EMPTY_LINES`] empty lines before a request line are ignored
//!   (RFC 9112 §2.2); they stay in the buffer until the head completes and are then consumed
//!   with it.
//! - Transfer-Encoding is accepted only as exactly `chunked`: codings stacked before `chunked`
//!   (gzip, unknown ones) get 501, a list whose final coding is not `chunked` gets 400, because
//!   the body length cannot then be determined, and so do empty list elements.
//! - Content-Length must be digits only; a list (`5, 5`) is 400, and repeated fields must agree.
//! - The request target may hold UTF-8 beyond ASCII in its path and query (clients send raw
//!   paths); invalid UTF-8, whitespace, controls and a fragment are 400. Its form must suit the
//!   method: `*` only with OPTIONS, `host:port` only with CONNECT, which is then answered 501.
//!   Absolute-form must be http or https with a valid authority, and takes precedence over Host
//!   ([`RequestHead::authority`]). Host, wherever it is required or present, must be a valid
//!   `uri-host [":" port]` without userinfo; more than one Host is 400 in HTTP/1.0 too.
//! - `Expect` may only hold `100-continue`; anything else is 417.
//! - Trailer fields are checked like header fields, bounded by the header limits and dropped;
//!   one that names a framing or routing field (Content-Length, Transfer-Encoding, Host) is 400.
//! - Every limit is checked at the byte that breaks it, and the chunked decoder is a byte-level
//!   state machine, so a request gets the same result however its bytes are split across reads.
//!
//! Layers, leaves first (each file imports only the ones above it): `syntax` and `status`
//! (versions, byte classes, [`HttpError`], reason phrases), `limits`, `target`, `head` (where a
//! head ends), `request` (parsing it), `body`, `decoder`; `response` and `date` on the side.
//! This root only declares and re-exports; nothing here is imported back.

mod body;
mod date;
mod decoder;
mod head;
mod limits;
mod request;
mod response;
mod status;
mod syntax;
mod target;

pub use date::{DateCache, http_date};
pub use decoder::{Decoded, Decoder};
pub use limits::{Limits, MAX_CHUNK_EXTENSIONS, MAX_CHUNK_LINE, MAX_LEADING_EMPTY_LINES};
pub use request::RequestHead;
pub use response::{
    StatusLine, error_response, valid_header, write_chunk, write_last_chunk, write_response_head,
};
pub use status::{HttpError, reason_phrase, status_allows_body};
pub use syntax::Version;
