//! Request heads: finding where a head ends under the size limits, parsing it with httparse,
//! and tine's own validation (request line, fields, Host, connection persistence, body framing).

use std::borrow::Cow;

use super::decoder::MAX_LEADING_EMPTY_LINES;
use super::target::{Port, TargetForm, classify, valid_authority};
use super::{HttpError, Version, is_field_value_byte, is_tchar, is_token};

/// Size limits applied to every request; exceeding one is an error with the status noted.
/// The config's `[limits]` section is this type; its defaults live there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line in bytes, excluding its CRLF (414).
    pub request_line: usize,
    /// Most header fields (field lines) in a head, and most trailer fields in a chunked body (431).
    pub headers: usize,
    /// Longest single field line (`name: value` as received), excluding its CRLF (431).
    pub header_field_size: usize,
    /// Largest head in bytes, from the first byte of the request line through the blank line that
    /// ends it; also the largest trailer section (431).
    pub header_bytes: usize,
    /// Largest request body in bytes after chunked decoding (413).
    pub body: u64,
}

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

    /// All values of fields named `name`, in order.
    fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
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

/// Where a complete head sits in the buffer, as found by [`HeadScan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HeadSpan {
    /// First byte of the request line (after ignored empty lines).
    pub(crate) start: usize,
    /// One past the LF of the blank line ending the head.
    pub(crate) end: usize,
    /// Length of the request line without its CRLF.
    pub(crate) request_line_len: usize,
    /// Number of field lines.
    pub(crate) fields: usize,
}

const BARE_LF: HttpError = HttpError::new(400, "line ending without CR");
const LONE_CR: HttpError = HttpError::new(400, "CR not followed by LF");
const URI_TOO_LONG: HttpError = HttpError::new(414, "request line too long");
const FIELD_TOO_LONG: HttpError = HttpError::new(431, "header field too long");
const HEAD_TOO_LARGE: HttpError = HttpError::new(431, "request head too large");
const TOO_MANY_FIELDS: HttpError = HttpError::new(431, "too many header fields");

/// Incremental search for the end of a head, one byte at a time.
///
/// The head is not consumed until it is complete, so the caller hands the same (growing) bytes
/// back on every call; remembering how far we looked keeps a head trickled in one byte per read
/// linear instead of quadratic. Every limit is checked at the byte that breaks it, so the partial
/// head never exceeds the limits and the error is the same however the bytes were split.
#[derive(Debug, Default)]
pub(crate) struct HeadScan {
    /// Next byte to examine.
    pos: usize,
    /// First byte of the request line, valid once `started`.
    start: usize,
    /// Whether the request line has begun (leading empty lines are behind us).
    started: bool,
    empty_lines: usize,
    /// The previous byte was a CR that must be followed by LF.
    cr: bool,
    /// Bytes of the current line so far, excluding its CRLF.
    line_len: usize,
    request_line_len: Option<usize>,
    /// The request line's first SP has been seen (the method is behind us).
    method_done: bool,
    fields: usize,
}

impl HeadScan {
    /// True once a byte of a request line has been seen.
    pub(crate) fn started(&self) -> bool {
        self.started
    }

    /// True inside a line past the bytes that need a byte-by-byte look (the method, and the first
    /// byte of a field line), where only CR and LF change anything.
    fn in_line_body(&self) -> bool {
        self.started
            && !self.cr
            && self.line_len > 0
            && (self.method_done || self.request_line_len.is_some())
    }

    /// Skips the ordinary bytes up to the next CR or LF in one step: the per-byte loop below is
    /// most of the cost of a head, and httparse checks these bytes again anyway. Fails exactly as
    /// the per-byte loop would, at the byte that first breaks a limit (the line limit first when
    /// one byte breaks both).
    fn skip_line_body(&mut self, buf: &[u8], limits: &Limits) -> Result<(), HttpError> {
        let rest = buf.get(self.pos..).unwrap_or_default();
        let run = line_end(rest);
        if run == 0 {
            return Ok(());
        }
        let (line_limit, line_error) = if self.request_line_len.is_some() {
            (limits.header_field_size, FIELD_TOO_LONG)
        } else {
            (limits.request_line, URI_TOO_LONG)
        };
        // The 1-based index within the run of the first byte past each limit.
        let line_break = (line_limit + 1).saturating_sub(self.line_len).max(1);
        let head_break = (limits.header_bytes + 1)
            .saturating_sub(self.pos - self.start)
            .max(1);
        if line_break <= run && line_break <= head_break {
            return Err(line_error);
        }
        if head_break <= run {
            return Err(HEAD_TOO_LARGE);
        }
        self.pos += run;
        self.line_len += run;
        Ok(())
    }

    /// Looks for the end of the head in `buf`, which must start where the previous call's did.
    pub(crate) fn scan(
        &mut self,
        buf: &[u8],
        limits: &Limits,
    ) -> Result<Option<HeadSpan>, HttpError> {
        if buf.len() < self.pos {
            // The caller broke the contract (dropped unconsumed bytes); rescanning is the only
            // answer that cannot go wrong.
            *self = HeadScan::default();
        }
        loop {
            if self.in_line_body() {
                self.skip_line_body(buf, limits)?;
            }
            let Some(&b) = buf.get(self.pos) else { break };
            self.pos += 1;
            if !self.started {
                match (self.cr, b) {
                    (false, b'\r') => self.cr = true,
                    (true, b'\n') => {
                        self.cr = false;
                        self.empty_lines += 1;
                        if self.empty_lines > MAX_LEADING_EMPTY_LINES {
                            return Err(HttpError::new(
                                400,
                                "too many empty lines before the request line",
                            ));
                        }
                    }
                    (true, _) => return Err(LONE_CR),
                    (false, b'\n') => return Err(BARE_LF),
                    (false, _) => {
                        self.started = true;
                        self.start = self.pos - 1;
                    }
                }
                if !self.started {
                    continue;
                }
            }
            match b {
                b'\r' if self.cr => return Err(LONE_CR),
                b'\r' => self.cr = true,
                b'\n' if !self.cr => return Err(BARE_LF),
                b'\n' => {
                    self.cr = false;
                    match self.request_line_len {
                        None => self.request_line_len = Some(self.line_len),
                        Some(request_line_len) if self.line_len == 0 => {
                            if self.pos - self.start > limits.header_bytes {
                                return Err(HEAD_TOO_LARGE);
                            }
                            return Ok(Some(HeadSpan {
                                start: self.start,
                                end: self.pos,
                                request_line_len,
                                fields: self.fields,
                            }));
                        }
                        Some(_) => {}
                    }
                    self.line_len = 0;
                }
                _ if self.cr => return Err(LONE_CR),
                _ => {
                    if self.request_line_len.is_some() {
                        if self.line_len == 0 {
                            if b == b' ' || b == b'\t' {
                                // obs-fold, or whitespace before the first field: RFC 9112 §5.2
                                // and §2.2 allow rejecting both, and unfolding invites smuggling.
                                return Err(HttpError::new(400, "obsolete line folding"));
                            }
                            self.fields += 1;
                            if self.fields > limits.headers {
                                return Err(TOO_MANY_FIELDS);
                            }
                        }
                        self.line_len += 1;
                        if self.line_len > limits.header_field_size {
                            return Err(FIELD_TOO_LONG);
                        }
                    } else {
                        if !self.method_done {
                            // Checking the method as it arrives turns away TLS handshakes and
                            // other non-HTTP traffic at once instead of after a full line.
                            if b == b' ' && self.line_len > 0 {
                                self.method_done = true;
                            } else if !is_tchar(b) {
                                return Err(HttpError::new(400, "invalid method"));
                            }
                        }
                        self.line_len += 1;
                        if self.line_len > limits.request_line {
                            return Err(URI_TOO_LONG);
                        }
                    }
                }
            }
            if self.pos - self.start > limits.header_bytes {
                return Err(HEAD_TOO_LARGE);
            }
        }
        Ok(None)
    }
}

/// How many leading bytes of `s` are neither CR nor LF. Sixteen bytes at a time without an early
/// exit inside a block, so the compiler can compare them all at once.
fn line_end(s: &[u8]) -> usize {
    let mut blocks = s.chunks_exact(16);
    let mut skipped = 0;
    for block in blocks.by_ref() {
        let has_end = block
            .iter()
            .fold(false, |found, &b| found | (b == b'\r') | (b == b'\n'));
        if has_end {
            break;
        }
        skipped += 16;
    }
    let tail = s.get(skipped..).unwrap_or_default();
    skipped
        + tail
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
            .unwrap_or(tail.len())
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
/// speak) from 400 (garbage), and give a precise reason for the rest.
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
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            Err(HttpError::new(505, "unsupported HTTP version"))
        }
        _ => Err(HttpError::new(400, "invalid HTTP version")),
    }
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
    let mut close = false;
    let mut keep = false;
    for v in head.header_values("connection") {
        close |= list_has(v, b"close");
        keep |= list_has(v, b"keep-alive");
    }
    match head.version {
        Version::Http11 => !close,
        Version::Http10 => keep && !close,
    }
}

/// Whether a comma-separated field value lists `token` (case-insensitive).
fn list_has(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|item| trim_ows(item).eq_ignore_ascii_case(token))
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
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            request_line: 64,
            headers: 4,
            header_field_size: 64,
            header_bytes: 512,
            body: 1000,
        }
    }

    fn scan_all(buf: &[u8]) -> Result<Option<HeadSpan>, HttpError> {
        HeadScan::default().scan(buf, &limits())
    }

    fn parse(buf: &[u8]) -> Result<ParsedHead, HttpError> {
        let span = scan_all(buf)?.expect("complete head");
        parse_head(&buf[span.start..span.end], &span, &limits())
    }

    #[test]
    fn scan_finds_span_after_leading_empty_lines() {
        let buf = b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\nrest";
        let span = scan_all(buf).unwrap().unwrap();
        assert_eq!(span.start, 4);
        assert_eq!(span.end, buf.len() - 4);
        assert_eq!(span.request_line_len, 14);
        assert_eq!(span.fields, 1);
    }

    #[test]
    fn line_end_finds_the_first_cr_or_lf() {
        assert_eq!(line_end(b""), 0);
        assert_eq!(line_end(b"abc"), 3);
        assert_eq!(line_end(b"\rabc"), 0);
        for at in 0..40 {
            for end in [b'\r', b'\n'] {
                let mut s = vec![b'x'; 40];
                s[at] = end;
                s[39] = b'\n';
                assert_eq!(line_end(&s), at, "{at}");
            }
        }
        assert_eq!(line_end(&[b'x'; 48]), 48);
    }

    #[test]
    fn scan_resumes_where_it_stopped() {
        let buf = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let mut scan = HeadScan::default();
        for n in 0..buf.len() {
            assert_eq!(scan.scan(&buf[..n], &limits()), Ok(None), "prefix {n}");
        }
        assert_eq!(scan.scan(buf, &limits()).unwrap().unwrap().end, buf.len());
    }

    #[test]
    fn scan_survives_a_shrinking_buffer() {
        let mut scan = HeadScan::default();
        assert_eq!(scan.scan(b"GET / HTTP/1.1\r\nHost: a", &limits()), Ok(None));
        let span = scan.scan(b"GET / HTTP/1.1\r\n\r\n", &limits()).unwrap();
        assert_eq!(span.map(|s| s.end), Some(18));
    }

    #[test]
    fn too_many_leading_empty_lines() {
        let mut buf = b"\r\n".repeat(MAX_LEADING_EMPTY_LINES);
        assert_eq!(scan_all(&buf), Ok(None));
        buf.extend_from_slice(b"\r\n");
        assert_eq!(scan_all(&buf).unwrap_err().status, 400);
    }

    #[test]
    fn request_line_checks() {
        assert_eq!(check_request_line(b"GET / HTTP/1.1"), Ok(Version::Http11));
        assert_eq!(check_request_line(b"GET * HTTP/1.0"), Ok(Version::Http10));
        assert_eq!(
            check_request_line(b"GET /caf\xc3\xa9 HTTP/1.1"),
            Ok(Version::Http11)
        );
        for (line, status, reason) in [
            (&b"GET / HTTP/2.0"[..], 505, "unsupported HTTP version"),
            (b"GET / HTTP/0.9", 505, "unsupported HTTP version"),
            (b"GET / HTTP/1.2", 505, "unsupported HTTP version"),
            (b"GET / HTTP/2", 400, "invalid HTTP version"),
            (b"GET / http/1.1", 400, "invalid HTTP version"),
            (b"GET / HTTP/1.1 ", 400, "invalid HTTP version"),
            (b"GET /  HTTP/1.1", 400, "invalid HTTP version"),
            (b"GET / HTTP/1.10", 400, "invalid HTTP version"),
            (b"GET /", 400, "malformed request line"),
            (b"GET", 400, "malformed request line"),
            (b" GET / HTTP/1.1", 400, "invalid method"),
            (b"G(T / HTTP/1.1", 400, "invalid method"),
            (b"GET  / HTTP/1.1", 400, "empty request target"),
            (b"GET /a\x01 HTTP/1.1", 400, "invalid request target"),
            (b"GET /a\x7f HTTP/1.1", 400, "invalid request target"),
            (b"GET /a\tb HTTP/1.1", 400, "invalid request target"),
            (b"GET /\xff HTTP/1.1", 400, "invalid request target"),
        ] {
            assert_eq!(
                check_request_line(line),
                Err(HttpError::new(status, reason)),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn values_are_trimmed_and_order_kept() {
        let p = parse(b"GET / HTTP/1.1\r\nHost: a\r\nX-A:  1 \t\r\nx-a:\t2\r\nE:\r\n\r\n").unwrap();
        assert_eq!(
            p.head.headers,
            vec![
                ("Host".to_owned(), b"a".to_vec()),
                ("X-A".to_owned(), b"1".to_vec()),
                ("x-a".to_owned(), b"2".to_vec()),
                ("E".to_owned(), b"".to_vec()),
            ]
        );
        assert_eq!(p.head.header("X-a"), Some(&b"1"[..]));
        assert_eq!(p.head.header("missing"), None);
        assert_eq!(p.framing, Framing::Empty);
    }

    #[test]
    fn host_rules() {
        assert_eq!(
            parse(b"GET / HTTP/1.0\r\n\r\n").unwrap().head.version,
            Version::Http10
        );
        assert!(parse(b"GET / HTTP/1.1\r\nHost:\r\n\r\n").is_ok());
        assert!(parse(b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n").is_ok());
        assert!(parse(b"GET / HTTP/1.1\r\nHost: a.example:65535\r\n\r\n").is_ok());
        for (buf, reason) in [
            (&b"GET / HTTP/1.1\r\n\r\n"[..], "missing Host header"),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
                "more than one Host header",
            ),
            (
                b"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n",
                "more than one Host header",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
                "invalid Host header",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
                "invalid Host header",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: user@a\r\n\r\n",
                "invalid Host header",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a:65536\r\n\r\n",
                "invalid Host header",
            ),
            (b"GET / HTTP/1.1\r\nHost: a:\r\n\r\n", "invalid Host header"),
            (
                b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n",
                "invalid Host header",
            ),
            (
                b"GET / HTTP/1.0\r\nHost: a:b\r\n\r\n",
                "invalid Host header",
            ),
            // Absolute-form overrides Host but does not excuse a missing or bad one.
            (b"GET http://a/ HTTP/1.1\r\n\r\n", "missing Host header"),
            (
                b"GET http://a/ HTTP/1.1\r\nHost: a b\r\n\r\n",
                "invalid Host header",
            ),
        ] {
            assert_eq!(parse(buf).unwrap_err(), HttpError::new(400, reason));
        }
    }

    #[test]
    fn keep_alive_rules() {
        for (buf, expected) in [
            (&b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..], true),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
                false,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, CLOSE\r\n\r\n",
                false,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n",
                true,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n",
                true,
            ),
            (b"GET / HTTP/1.0\r\n\r\n", false),
            (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true),
            (
                b"GET / HTTP/1.0\r\nConnection: te,\tkeep-alive \r\n\r\n",
                true,
            ),
            (
                b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
                false,
            ),
            (b"GET / HTTP/1.0\r\nConnection: keep-alives\r\n\r\n", false),
        ] {
            assert_eq!(
                parse(buf).unwrap().head.keep_alive,
                expected,
                "{}",
                String::from_utf8_lossy(buf)
            );
        }
    }

    #[test]
    fn decimal_parsing() {
        assert_eq!(parse_decimal(b"0"), Some(0));
        assert_eq!(parse_decimal(b"007"), Some(7));
        assert_eq!(parse_decimal(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_decimal(b"18446744073709551616"), None);
        for bad in [&b""[..], b"+1", b"-1", b" 1", b"1 ", b"0x1", b"1_0", b"1.0"] {
            assert_eq!(parse_decimal(bad), None);
        }
    }

    #[test]
    fn framing_table() {
        let cases: &[(&[u8], Result<Framing, u16>)] = &[
            (b"Content-Length: 5", Ok(Framing::Length(5))),
            (b"Content-Length: 0", Ok(Framing::Empty)),
            (b"Content-Length: 5, 5", Err(400)),
            (b"Content-Length: 5,5", Err(400)),
            (
                b"Content-Length: 5\r\nContent-Length: 5",
                Ok(Framing::Length(5)),
            ),
            (b"Content-Length: 5\r\nContent-Length: 6", Err(400)),
            (b"Content-Length: 5, 6", Err(400)),
            (b"Content-Length: 5,", Err(400)),
            (b"Content-Length: +5", Err(400)),
            (b"Content-Length: 1000", Ok(Framing::Length(1000))),
            (b"Content-Length: 1001", Err(413)),
            (b"Content-Length: 99999999999999999999", Err(400)),
            (b"Transfer-Encoding: chunked", Ok(Framing::Chunked)),
            (b"Transfer-Encoding: CHUNKED", Ok(Framing::Chunked)),
            (b"Transfer-Encoding:   chunked", Ok(Framing::Chunked)),
            (b"Transfer-Encoding: gzip, chunked", Err(501)),
            (
                b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked",
                Err(501),
            ),
            (b"Transfer-Encoding: foo;q=\"1\", chunked", Err(501)),
            (b"Transfer-Encoding: chunked, gzip", Err(400)),
            (b"Transfer-Encoding: chunked, identity", Err(400)),
            (b"Transfer-Encoding: chunked, chunked", Err(400)),
            (
                b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
                Err(400),
            ),
            (b"Transfer-Encoding: xchunked", Err(400)),
            (b"Transfer-Encoding: identity", Err(400)),
            (b"Transfer-Encoding: chunked;a=b", Err(400)),
            (b"Transfer-Encoding: chunked,", Err(400)),
            (b"Transfer-Encoding: ,chunked", Err(400)),
            (b"Transfer-Encoding:", Err(400)),
            (b"Transfer-Encoding: \"chunked\"", Err(400)),
            (b"Transfer-Encoding: chunked\r\nContent-Length: 5", Err(400)),
            (b"Content-Length: 5\r\nTransfer-Encoding: chunked", Err(400)),
        ];
        for (fields, expected) in cases {
            let mut buf = b"POST / HTTP/1.1\r\nHost: a\r\n".to_vec();
            buf.extend_from_slice(fields);
            buf.extend_from_slice(b"\r\n\r\n");
            let got = parse(&buf).map(|p| p.framing).map_err(|e| e.status);
            assert_eq!(&got, expected, "{}", String::from_utf8_lossy(fields));
        }
    }

    #[test]
    fn transfer_encoding_on_http10_is_refused() {
        let err = parse(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap_err();
        assert_eq!(
            err,
            HttpError::new(400, "Transfer-Encoding in an HTTP/1.0 request")
        );
    }

    #[test]
    fn expect_continue_needs_http11_and_a_body() {
        let expect = |buf: &[u8]| parse(buf).unwrap().expect_continue;
        assert!(expect(
            b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n"
        ));
        assert!(expect(
            b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
        assert!(!expect(
            b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n"
        ));
        assert!(!expect(
            b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n"
        ));
        assert!(!expect(
            b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n"
        ));
        assert!(!expect(
            b"PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\n"
        ));
    }

    #[test]
    fn authority_prefers_the_absolute_target() {
        let head = |buf: &[u8]| parse(buf).unwrap().head;
        let cases: &[(&[u8], Option<&str>, &str)] = &[
            (
                b"GET /x?y HTTP/1.1\r\nHost: a.example:8080\r\n\r\n",
                Some("a.example:8080"),
                "/x?y",
            ),
            (
                b"GET http://b.example/x HTTP/1.1\r\nHost: a.example\r\n\r\n",
                Some("b.example"),
                "/x",
            ),
            (
                b"GET HTTPS://[::1]:443 HTTP/1.1\r\nHost: a\r\n\r\n",
                Some("[::1]:443"),
                "/",
            ),
            (
                b"GET http://b?q=1 HTTP/1.1\r\nHost: a\r\n\r\n",
                Some("b"),
                "/?q=1",
            ),
            (b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", Some("a"), "*"),
            (b"GET / HTTP/1.1\r\nHost:\r\n\r\n", None, "/"),
            (b"GET / HTTP/1.0\r\n\r\n", None, "/"),
            (b"GET http://b/ HTTP/1.0\r\n\r\n", Some("b"), "/"),
        ];
        for (buf, authority, path) in cases {
            let h = head(buf);
            assert_eq!(
                h.authority(),
                *authority,
                "{}",
                String::from_utf8_lossy(buf)
            );
            assert_eq!(
                h.path_and_query(),
                *path,
                "{}",
                String::from_utf8_lossy(buf)
            );
        }
        // A caller that rewrites the public target never makes authority() panic.
        let mut h = head(b"GET http://b.example/x HTTP/1.1\r\nHost: a\r\n\r\n");
        h.target = "/".to_owned();
        assert_eq!(h.authority(), None);
        assert_eq!(h.path_and_query(), "/");
    }

    #[test]
    fn target_form_must_suit_the_method() {
        let status = |buf: &[u8]| parse(buf).map(|_| 200).unwrap_or_else(|e| e.status);
        assert_eq!(
            status(b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n"),
            501
        );
        assert_eq!(status(b"CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET a:443 HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET * HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"), 200);
        assert_eq!(status(b"GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        // A malformed CONNECT is a 400 before it is a 501.
        assert_eq!(status(b"CONNECT a:443 HTTP/1.1\r\n\r\n"), 400);
    }

    #[test]
    fn expectations() {
        let expect = |value: &str| {
            let buf = format!(
                "PUT / HTTP/1.1\r\nHost: a\r\nExpect: {value}\r\nContent-Length: 1\r\n\r\n"
            );
            parse(buf.as_bytes())
                .map(|p| p.expect_continue)
                .map_err(|e| e.status)
        };
        assert_eq!(expect("100-continue"), Ok(true));
        assert_eq!(expect("100-CONTINUE"), Ok(true));
        assert_eq!(expect("100-continue, 100-continue"), Ok(true));
        assert_eq!(expect(""), Ok(false));
        assert_eq!(expect(" , "), Ok(false));
        assert_eq!(expect("200-ok"), Err(417));
        assert_eq!(expect("100-continue, foo"), Err(417));
        assert_eq!(expect("100-continue=1"), Err(417));
        assert_eq!(expect("100-continuex"), Err(417));
        // Unknown expectations are refused whatever the version or body.
        assert_eq!(
            parse(b"GET / HTTP/1.0\r\nExpect: foo\r\n\r\n").unwrap_err(),
            HttpError::new(417, "unsupported expectation")
        );
    }
}
