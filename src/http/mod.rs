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

mod body;
mod date;
mod decoder;
mod request;
mod response;
mod target;

use std::fmt;

pub use date::{DateCache, http_date};
pub use decoder::{
    Decoded, Decoder, MAX_CHUNK_EXTENSIONS, MAX_CHUNK_LINE, MAX_LEADING_EMPTY_LINES,
};
pub use request::{Limits, RequestHead};
pub use response::{
    StatusLine, error_response, reason_phrase, status_allows_body, valid_header, write_chunk,
    write_last_chunk, write_response_head,
};

/// The protocol versions tine speaks; anything else is answered with 505 or 400.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// `HTTP/1.0`
    Http10,
    /// `HTTP/1.1`
    Http11,
}

impl Version {
    /// The version as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request the decoder refused: the status to answer with and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpError {
    /// The response status (400, 413, 414, 431, 501, 505).
    pub status: u16,
    /// Short plain-text description of what was wrong, safe to send to the client.
    pub reason: &'static str,
}

impl HttpError {
    pub(crate) const fn new(status: u16, reason: &'static str) -> Self {
        HttpError { status, reason }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let phrase = reason_phrase(self.status);
        if phrase.is_empty() {
            write!(f, "{}: {}", self.status, self.reason)
        } else {
            write!(f, "{} {}: {}", self.status, phrase, self.reason)
        }
    }
}

impl std::error::Error for HttpError {}

/// RFC 9110 `tchar`, shared by methods, field names, codings and chunk extensions.
pub(crate) const fn is_tchar(b: u8) -> bool {
    matches!(b,
        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9'
        | b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+'
        | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~')
}

/// RFC 9110 `token`: one or more `tchar`.
pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// Field-value bytes: VCHAR, SP, HTAB and obs-text; every other control (CR, LF, NUL, DEL...) is refused.
pub(crate) const fn is_field_value_byte(b: u8) -> bool {
    b == b'\t' || (b >= 0x20 && b != 0x7f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_display() {
        assert_eq!(Version::Http10.to_string(), "HTTP/1.0");
        assert_eq!(Version::Http11.to_string(), "HTTP/1.1");
    }

    #[test]
    fn error_display_includes_status_phrase_and_reason() {
        let e = HttpError::new(431, "too many header fields");
        assert_eq!(
            e.to_string(),
            "431 Request Header Fields Too Large: too many header fields"
        );
        assert_eq!(HttpError::new(599, "odd").to_string(), "599: odd");
    }

    #[test]
    fn token_and_value_classes() {
        assert!(is_token(b"GET"));
        assert!(is_token(b"X-Custom_Header.1~"));
        assert!(!is_token(b""));
        assert!(!is_token(b"Bad Name"));
        assert!(!is_token(b"a:b"));
        assert!(!is_token(b"\xc3\xa9"));
        assert!(is_field_value_byte(b'\t'));
        assert!(is_field_value_byte(b' '));
        assert!(is_field_value_byte(0x80));
        assert!(!is_field_value_byte(0));
        assert!(!is_field_value_byte(b'\r'));
        assert!(!is_field_value_byte(b'\n'));
        assert!(!is_field_value_byte(0x7f));
        assert!(!is_field_value_byte(0x0b));
    }
}
