//! Request heads: parsing a complete head with httparse, and tine's own validation (request line, fields, Host, connection persistence, body framing).

use std::borrow::Cow;

use super::head::{HeadSpan, TOO_MANY_FIELDS};
use super::limits::Limits;
use super::status::HttpError;
use super::syntax::{Version, is_field_value_byte, is_token};
use super::target::{Port, TargetForm, classify, valid_authority};

/// A parsed and validated request head.
#[derive(Debug, Clone)]
pub struct RequestHead {
    /// The method token, case kept (methods are case-sensitive).
    pub method: String,
    /// The request target exactly as received (origin-form, absolute-form, authority-form or `*`).
    pub target: String,
    /// The protocol version of the request.
    pub version: Version,
    /// Fields in the order received: names with their case kept, duplicates kept, values trimmed
    /// of surrounding SP/HTAB.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Whether the connection may carry another request after this one's response.
    pub keep_alive: bool,
    /// The target's form, which says where the authority and the path are.
    form: TargetForm,
}

impl RequestHead {
    /// The value of the first field named `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The effective authority (`host[:port]`, as received): an absolute-form target's, which
    /// takes precedence over Host (RFC 9112 §3.2.2), else the Host field's. None for an HTTP/1.0
    /// request without Host and for an empty Host, which RFC 9112 §3.3 leaves to a configured
    /// default. Both sources were validated, so the text holds no userinfo and a port is numeric.
    pub fn authority(&self) -> Option<&str> {
        let text = match &self.form {
            TargetForm::Absolute(span) => self.target.get(span.clone()),
            TargetForm::Origin | TargetForm::Asterisk | TargetForm::Authority => self
                .header("host")
                .and_then(|v| std::str::from_utf8(v).ok()),
        };
        text.filter(|t| !t.is_empty())
    }

    /// The target in origin-form (`/path?query`), the part an application routes on: an
    /// absolute-form target without its scheme and authority, with the empty path read as `/`
    /// (RFC 9112 §3.2.1), and `*` for `OPTIONS *`. Borrowed except for the rare `http://a?q`.
    pub fn path_and_query(&self) -> Cow<'_, str> {
        match &self.form {
            TargetForm::Absolute(span) => match self.target.get(span.end..) {
                Some(rest) if rest.starts_with('/') => Cow::Borrowed(rest),
                Some(rest) if !rest.is_empty() => Cow::Owned(format!("/{rest}")),
                _ => Cow::Borrowed("/"),
            },
            TargetForm::Origin | TargetForm::Asterisk | TargetForm::Authority => {
                Cow::Borrowed(&self.target)
            }
        }
    }

    /// All values of fields named `name` (compared case-insensitively), in order.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The items of every field named `name` as a comma-separated list (RFC 9110 §5.6.1), in
    /// order: trimmed of SP and HTAB, empty ones dropped.
    pub fn list_items<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.header_values(name)
            .flat_map(|value| value.split(|&b| b == b','))
            .map(trim_ows)
            .filter(|item| !item.is_empty())
    }

    /// Whether a field named `name` lists `token` (compared case-insensitively).
    pub fn lists(&self, name: &str, token: &[u8]) -> bool {
        self.list_items(name)
            .any(|item| item.eq_ignore_ascii_case(token))
    }
}

/// How the body of a request is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body at all.
    Empty,
    /// Exactly this many bytes (never 0: a zero length is `Empty`).
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
}

/// A head that passed validation, with what the decoder needs to read its body.
#[derive(Debug)]
pub(crate) struct ParsedHead {
    pub(crate) head: RequestHead,
    pub(crate) framing: Framing,
    pub(crate) expect_continue: bool,
}

/// Header slots kept on the stack; a head with more fields gets them from the heap.
const STACK_SLOTS: usize = 32;

/// Parses and validates a complete head: `head` runs from the request line through the blank line.
pub(crate) fn parse_head(
    head: &[u8],
    span: &HeadSpan,
    limits: &Limits,
) -> Result<ParsedHead, HttpError> {
    let request_line = head.get(..span.request_line_len).unwrap_or_default();
    let version = check_request_line(request_line)?;
    // httparse speaks only 1.0 and 1.1: a higher 1.x minor, already read as 1.1, is handed to it
    // as `HTTP/1.1` (the same length, so the span's offsets stay true). Rare, so a copy is fine.
    let relabelled;
    let head = if version == Version::Http11 && !request_line.ends_with(b"HTTP/1.1") {
        relabelled = relabel_http11(head, span.request_line_len);
        relabelled.as_slice()
    } else {
        head
    };

    // Slots on the stack for ordinary heads, saving an allocation per request.
    let mut stack_slots = [httparse::EMPTY_HEADER; STACK_SLOTS];
    let mut heap_slots = Vec::new();
    let slots = match stack_slots.get_mut(..span.fields) {
        Some(slots) => slots,
        None => {
            heap_slots.resize(span.fields, httparse::EMPTY_HEADER);
            heap_slots.as_mut_slice()
        }
    };
    let mut req = httparse::Request::new(slots);
    match req.parse(head) {
        Ok(httparse::Status::Complete(n)) if n == head.len() => {}
        Ok(_) => return Err(HttpError::new(400, "malformed request head")),
        Err(e) => return Err(map_httparse_error(e)),
    }
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return Err(HttpError::new(400, "malformed request line"));
    };

    let mut headers = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        if !is_token(h.name.as_bytes()) {
            return Err(HttpError::new(400, "invalid header name"));
        }
        // httparse enforces the same byte rules today; checking again keeps them tine's own
        // rather than a dependency's default.
        let value = trim_ows(h.value);
        // A fold rather than `all`: no early exit, so the compiler checks many bytes at once;
        // values are short and a bad one ends the connection anyway.
        let valid = value
            .iter()
            .fold(true, |ok, &b| ok & is_field_value_byte(b));
        if !valid {
            return Err(HttpError::new(400, "invalid header value"));
        }
        headers.push((h.name.to_owned(), value.to_vec()));
    }
    let form = classify(method.as_bytes(), target.as_bytes())?;
    let mut head = RequestHead {
        method: method.to_owned(),
        target: target.to_owned(),
        version,
        headers,
        keep_alive: false,
        form,
    };

    check_host(&head)?;
    head.keep_alive = keep_alive(&head);
    let framing = framing(&head, limits)?;
    if head.form == TargetForm::Authority {
        // Only CONNECT gets here. Tunnelling is a proxy's job; the request was well-formed, so
        // the answer is "not implemented" rather than "bad request".
        return Err(HttpError::new(501, "CONNECT is not supported"));
    }
    let expect_continue =
        expects_continue(&head)? && version == Version::Http11 && framing != Framing::Empty;
    Ok(ParsedHead {
        head,
        framing,
        expect_continue,
    })
}

/// RFC 9110 §10.1.1: `100-continue` is the only expectation there is; any other is answered 417.
/// An HTTP/1.0 client's `100-continue` is checked the same way and then ignored by the caller.
fn expects_continue(head: &RequestHead) -> Result<bool, HttpError> {
    let mut found = false;
    for value in head.header_values("expect") {
        for item in value.split(|&b| b == b',') {
            let item = trim_ows(item);
            if item.eq_ignore_ascii_case(b"100-continue") {
                found = true;
            } else if !item.is_empty() {
                // Empty list elements are no expectation at all (RFC 9110 §5.6.1).
                return Err(HttpError::new(417, "unsupported expectation"));
            }
        }
    }
    Ok(found)
}

fn map_httparse_error(e: httparse::Error) -> HttpError {
    match e {
        httparse::Error::HeaderName => HttpError::new(400, "invalid header name"),
        httparse::Error::HeaderValue => HttpError::new(400, "invalid header value"),
        httparse::Error::NewLine => HttpError::new(400, "invalid line ending"),
        httparse::Error::TooManyHeaders => TOO_MANY_FIELDS,
        httparse::Error::Status | httparse::Error::Token | httparse::Error::Version => {
            HttpError::new(400, "malformed request line")
        }
    }
}

/// Checks `method SP request-target SP HTTP-version` ourselves, before httparse, because httparse
/// reports one error for every bad version and we must tell 505 (a well-formed version we do not
/// speak) from 400 (garbage), and give a precise reason for the rest. A higher minor version of
/// HTTP/1 (`HTTP/1.2` .. `HTTP/1.9`) is read as HTTP/1.1, the highest minor tine speaks (RFC 9110
/// §2.5, RFC 9112 §2.3): it is answered as 1.1; another major (`HTTP/2.0`, `HTTP/0.9`) is 505.
fn check_request_line(line: &[u8]) -> Result<Version, HttpError> {
    let mut parts = line.splitn(3, |&b| b == b' ');
    let method = parts.next().unwrap_or_default();
    let (Some(target), Some(version)) = (parts.next(), parts.next()) else {
        return Err(HttpError::new(400, "malformed request line"));
    };
    if !is_token(method) {
        return Err(HttpError::new(400, "invalid method"));
    }
    if target.is_empty() {
        return Err(HttpError::new(400, "empty request target"));
    }
    if target.iter().any(|&b| b <= b' ' || b == 0x7f) || std::str::from_utf8(target).is_err() {
        return Err(HttpError::new(400, "invalid request target"));
    }
    match version {
        b"HTTP/1.1" => Ok(Version::Http11),
        b"HTTP/1.0" => Ok(Version::Http10),
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', minor] if minor.is_ascii_digit() => {
            Ok(Version::Http11)
        }
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            Err(HttpError::new(505, "unsupported HTTP version"))
        }
        _ => Err(HttpError::new(400, "invalid HTTP version")),
    }
}

/// A copy of `head` whose request line (`line_len` bytes long, ending in an 8-byte version) says
/// `HTTP/1.1`.
fn relabel_http11(head: &[u8], line_len: usize) -> Vec<u8> {
    let mut copy = head.to_vec();
    if let Some(version) = line_len
        .checked_sub(8)
        .and_then(|start| copy.get_mut(start..line_len))
    {
        version.copy_from_slice(b"HTTP/1.1");
    }
    copy
}

/// RFC 9112 §3.2: one Host in HTTP/1.1, never more than one, and a valid `uri-host [":" port]`.
/// An empty Host is allowed (RFC 9112 §3.3 leaves the authority to a configured default). Host is
/// validated even when an absolute-form target overrides it: a proxy in front may route on it.
fn check_host(head: &RequestHead) -> Result<(), HttpError> {
    let mut hosts = head.header_values("host");
    let first = hosts.next();
    if hosts.next().is_some() {
        return Err(HttpError::new(400, "more than one Host header"));
    }
    match first {
        None if head.version == Version::Http11 => Err(HttpError::new(400, "missing Host header")),
        Some(v) if !v.is_empty() && !valid_authority(v, Port::Optional) => {
            Err(HttpError::new(400, "invalid Host header"))
        }
        _ => Ok(()),
    }
}

/// RFC 9112 §9.3: HTTP/1.1 persists unless `close`; HTTP/1.0 only with `keep-alive` (and no `close`).
fn keep_alive(head: &RequestHead) -> bool {
    let close = head.lists("connection", b"close");
    let keep = head.lists("connection", b"keep-alive");
    match head.version {
        Version::Http11 => !close,
        Version::Http10 => keep && !close,
    }
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Body framing per RFC 9112 §6, strict wherever two parsers could disagree about where the body
/// ends: such disagreement between a proxy and us is request smuggling.
fn framing(head: &RequestHead, limits: &Limits) -> Result<Framing, HttpError> {
    let has_te = head.header("transfer-encoding").is_some();
    let has_cl = head.header("content-length").is_some();
    if has_te && has_cl {
        return Err(HttpError::new(
            400,
            "Content-Length and Transfer-Encoding together",
        ));
    }
    if has_te {
        if head.version == Version::Http10 {
            return Err(HttpError::new(
                400,
                "Transfer-Encoding in an HTTP/1.0 request",
            ));
        }
        return transfer_encoding(head);
    }
    if !has_cl {
        return Ok(Framing::Empty);
    }
    // A list (`5, 5`) is refused even when its values agree: RFC 9110 §8.6 lets us, and the
    // parsers in front of us disagree on lists. Repeated fields must all say the same.
    let mut length: Option<u64> = None;
    for value in head.header_values("content-length") {
        let n = parse_decimal(value).ok_or(HttpError::new(400, "invalid Content-Length"))?;
        match length {
            Some(prev) if prev != n => {
                return Err(HttpError::new(400, "conflicting Content-Length values"));
            }
            _ => length = Some(n),
        }
    }
    match length {
        Some(n) if n > limits.body => Err(HttpError::new(413, "request body too large")),
        Some(0) | None => Ok(Framing::Empty),
        Some(n) => Ok(Framing::Length(n)),
    }
}

/// `1*DIGIT` as a u64; no sign, no whitespace, no overflow.
fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// Only a lone `chunked` is accepted: we implement no other coding, so anything stacked before it
/// is 501, and a list that does not end in `chunked` leaves the body length undeterminable (400).
fn transfer_encoding(head: &RequestHead) -> Result<Framing, HttpError> {
    let mut codings = 0usize;
    let mut chunked_seen = false;
    let mut last_is_chunked = false;
    for value in head.header_values("transfer-encoding") {
        for item in value.split(|&b| b == b',') {
            let item = trim_ows(item);
            let (name, has_params) = match item.iter().position(|&b| b == b';') {
                Some(i) => (trim_ows(item.get(..i).unwrap_or_default()), true),
                None => (item, false),
            };
            // This also refuses empty list elements, which RFC 9110 §5.6.1 would have us skip:
            // no client sends them, and a parser that counted them would see another final coding.
            if !is_token(name) {
                return Err(HttpError::new(400, "invalid Transfer-Encoding"));
            }
            let is_chunked = name.eq_ignore_ascii_case(b"chunked");
            if is_chunked {
                if chunked_seen {
                    return Err(HttpError::new(400, "chunked applied more than once"));
                }
                if has_params {
                    return Err(HttpError::new(400, "parameters on chunked"));
                }
                chunked_seen = true;
            }
            last_is_chunked = is_chunked;
            codings += 1;
        }
    }
    if !last_is_chunked {
        return Err(HttpError::new(400, "final transfer coding is not chunked"));
    }
    if codings > 1 {
        return Err(HttpError::new(501, "unsupported transfer coding"));
    }
    Ok(Framing::Chunked)
}

#[cfg(test)]
mod tests;
