//! The opening handshake (RFC 6455 §4.2): which requests ask for a WebSocket, whether one that
//! does asks correctly, and the `Sec-WebSocket-Accept` value of the `101` answering it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::http::{RequestHead, Version};

/// The GUID a key is hashed with (§1.3).
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// The one protocol version tine speaks (§4.1).
const VERSION: &[u8] = b"13";
/// How many bytes a `Sec-WebSocket-Key` must decode to (§4.1).
const KEY_BYTES: usize = 16;

/// What the opening handshake of a valid WebSocket request (RFC 6455 §4.2.1) says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// The `Sec-WebSocket-Accept` value for the response (§4.2.2: base64(SHA-1(key + GUID))).
    pub accept: String,
    /// The subprotocols the client offered (`Sec-WebSocket-Protocol`, every field, split on
    /// commas, trimmed, empty items dropped), in order.
    pub subprotocols: Vec<String>,
}

/// Why a WebSocket request is refused before the application sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 400: malformed (not GET, not HTTP/1.1, no `Connection: upgrade` token, no or bad
    /// `Sec-WebSocket-Key` (must be base64 of 16 bytes), a body (Content-Length > 0 or
    /// Transfer-Encoding), several Sec-WebSocket-Key or Sec-WebSocket-Version fields, a
    /// `Sec-WebSocket-Protocol` that is not UTF-8). The reason says which.
    BadRequest(&'static str),
    /// 426: `Sec-WebSocket-Version` is missing or not 13 (the response carries `Sec-WebSocket-Version: 13`).
    Version,
}

impl Refusal {
    /// The response's status: 400 or 426.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::BadRequest(_) => 400,
            Refusal::Version => 426,
        }
    }

    /// One line saying why, for the response body and the log.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::BadRequest(reason) => reason,
            Refusal::Version => "the WebSocket handshake's Sec-WebSocket-Version is not 13",
        }
    }
}

/// Whether the request asks for a WebSocket: an `Upgrade` field one of whose comma-separated
/// tokens is `websocket` (case-insensitive). Only such requests are checked.
pub fn wants_websocket(head: &RequestHead) -> bool {
    head.lists("upgrade", b"websocket")
}

const NOT_GET: Refusal = Refusal::BadRequest("the WebSocket handshake is not a GET");
const NOT_HTTP11: Refusal =
    Refusal::BadRequest("the WebSocket handshake is not an HTTP/1.1 request");
const NO_UPGRADE: Refusal =
    Refusal::BadRequest("the WebSocket handshake has no Connection: upgrade");
const BODY: Refusal = Refusal::BadRequest("the WebSocket handshake has a body");
const NO_KEY: Refusal = Refusal::BadRequest("the WebSocket handshake has no Sec-WebSocket-Key");
const SEVERAL_KEYS: Refusal =
    Refusal::BadRequest("the WebSocket handshake has several Sec-WebSocket-Key fields");
const BAD_KEY: Refusal =
    Refusal::BadRequest("the WebSocket handshake's Sec-WebSocket-Key is not base64 of 16 bytes");
const SEVERAL_VERSIONS: Refusal =
    Refusal::BadRequest("the WebSocket handshake has several Sec-WebSocket-Version fields");
const PROTOCOL_NOT_UTF8: Refusal =
    Refusal::BadRequest("the WebSocket handshake's Sec-WebSocket-Protocol is not UTF-8");

/// Checks a request for which `wants_websocket` is true.
///
/// # Errors
///
/// A [`Refusal`] for a request that breaks RFC 6455 §4.2.1: [`Refusal::Version`] when only its
/// `Sec-WebSocket-Version` is wrong, else [`Refusal::BadRequest`].
pub fn check(head: &RequestHead) -> Result<Handshake, Refusal> {
    if head.method != "GET" {
        return Err(NOT_GET);
    }
    if head.version != Version::Http11 {
        return Err(NOT_HTTP11);
    }
    if !head.lists("connection", b"upgrade") {
        return Err(NO_UPGRADE);
    }
    let length = head.header("content-length").unwrap_or(b"0");
    if length.iter().any(|&b| b != b'0') || head.header("transfer-encoding").is_some() {
        return Err(BODY);
    }
    let key = match only(head, "sec-websocket-key") {
        Only::One(key) => key,
        Only::None => return Err(NO_KEY),
        Only::Several => return Err(SEVERAL_KEYS),
    };
    if !STANDARD
        .decode(key)
        .is_ok_and(|nonce| nonce.len() == KEY_BYTES)
    {
        return Err(BAD_KEY);
    }
    match only(head, "sec-websocket-version") {
        Only::One(VERSION) => {}
        Only::One(_) | Only::None => return Err(Refusal::Version),
        Only::Several => return Err(SEVERAL_VERSIONS),
    }
    let subprotocols = head
        .list_items("sec-websocket-protocol")
        .map(|item| std::str::from_utf8(item).map(str::to_owned))
        .collect::<Result<_, _>>()
        .map_err(|_| PROTOCOL_NOT_UTF8)?;
    Ok(Handshake {
        accept: accept_key(key),
        subprotocols,
    })
}

/// §4.2.2's accept value for `key` (the field's value as sent).
pub fn accept_key(key: &[u8]) -> String {
    let mut sha1 = sha1_smol::Sha1::new();
    sha1.update(key);
    sha1.update(GUID);
    STANDARD.encode(sha1.digest().bytes())
}

/// How many fields a request has of one name, and the value when it has one.
enum Only<'a> {
    None,
    One(&'a [u8]),
    Several,
}

fn only<'a>(head: &'a RequestHead, name: &'a str) -> Only<'a> {
    let mut values = head.header_values(name);
    match (values.next(), values.next()) {
        (None, _) => Only::None,
        (Some(value), None) => Only::One(value),
        (Some(_), Some(_)) => Only::Several,
    }
}

#[cfg(test)]
mod tests;
