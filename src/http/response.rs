//! Response serialisation: status lines, heads with server-owned framing, chunks and the small
//! plain-text error responses, written straight into the connection's output buffer.

use super::status::{HttpError, reason_phrase, status_allows_body};
use super::syntax::{Version, is_token};

/// Writes a response head: status line, `Date` and `Server: tine` (unless `headers` has them),
/// the caller's headers, framing and `Connection`, and the blank line.
///
/// `body_len` Some(n) writes `Content-Length: n`; None writes `Transfer-Encoding: chunked` for
/// HTTP/1.1. For HTTP/1.0, None means a close-delimited body, so `Connection: close` is written
/// whatever `keep_alive` says and the caller must close after the body. 1xx and 204 get no framing
/// header; 304 gets the given length as-is and nothing for None. `Connection: close` is written
/// when `!keep_alive`, `Connection: keep-alive` for an HTTP/1.0 keep-alive response.
/// Content-Length, Transfer-Encoding and Connection in `headers` are skipped: framing and
/// persistence belong to the server. Names and values are written as given (see [`valid_header`]).
pub fn write_response_head<'a>(
    out: &mut Vec<u8>,
    version: Version,
    status: impl Into<StatusLine<'a>>,
    headers: &[(String, Vec<u8>)],
    body_len: Option<u64>,
    keep_alive: bool,
    date: &[u8],
) {
    let StatusLine {
        code: status,
        reason,
    } = status.into();
    write_status_line(out, version, status, reason);
    let has_date = headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("date"));
    let has_server = headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("server"));
    if !has_date {
        write_field(out, b"Date", date);
    }
    if !has_server {
        out.extend_from_slice(b"Server: tine\r\n");
    }
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("connection")
        {
            continue;
        }
        write_field(out, name.as_bytes(), value);
    }
    let mut close_delimited = false;
    if (100..200).contains(&status) || status == 204 {
        // RFC 9110 §8.6: no Content-Length in these, and no body to frame.
    } else {
        match (body_len, version) {
            (Some(n), _) => write_content_length(out, n),
            (None, _) if status == 304 => {}
            (None, Version::Http11) => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
            (None, Version::Http10) => close_delimited = true,
        }
    }
    if status == 101 {
        // The only 101 tine sends: an accepted WebSocket (RFC 6455 §4.2.2).
        out.extend_from_slice(b"Connection: Upgrade\r\n");
    } else if !keep_alive || close_delimited {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if version == Version::Http10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes one chunk of a chunked body; empty data writes nothing, since an empty chunk would
/// end the body.
pub fn write_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    write_hex(out, data.len() as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Writes the last chunk and the empty trailer section that end a chunked body.
pub fn write_last_chunk(out: &mut Vec<u8>) {
    out.extend_from_slice(b"0\r\n\r\n");
}

/// Writes a complete small error response for `err`, always closing the connection:
/// status line, Date, Server, `Content-Type: text/plain; charset=utf-8`, Content-Length,
/// `Connection: close`, and the body `"{status} {reason phrase}: {err.reason}\n"`
/// (`"{status}: {err.reason}\n"` for a status without a phrase). A `503` of the server's own
/// is a momentary refusal: it says `Retry-After: 1`.
pub fn error_response(out: &mut Vec<u8>, err: &HttpError, date: &[u8]) {
    let phrase = reason_phrase(err.status);
    write_status_line(out, Version::Http11, err.status, None);
    write_field(out, b"Date", date);
    out.extend_from_slice(b"Server: tine\r\n");
    if err.status == 503 {
        out.extend_from_slice(b"Retry-After: 1\r\n");
    }
    if err.status == 426 {
        // Only a WebSocket handshake of another version gets one (RFC 6455 §4.4).
        out.extend_from_slice(b"Sec-WebSocket-Version: 13\r\n");
    }
    let with_body = status_allows_body(err.status);
    if with_body {
        out.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\n");
        let phrase_len = if phrase.is_empty() {
            0
        } else {
            phrase.len() + 1
        };
        let len = decimal_len(u64::from(err.status)) + phrase_len + 2 + err.reason.len() + 1;
        write_content_length(out, len as u64);
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    if with_body {
        write_u64(out, u64::from(err.status));
        if !phrase.is_empty() {
            out.push(b' ');
            out.extend_from_slice(phrase.as_bytes());
        }
        out.extend_from_slice(b": ");
        out.extend_from_slice(err.reason.as_bytes());
        out.push(b'\n');
    }
}

/// True when `name` is a token and `value` holds no CR, LF or NUL: the bytes that would let a
/// handler's header split the response or truncate it in a C consumer.
pub fn valid_header(name: &str, value: &[u8]) -> bool {
    is_token(name.as_bytes()) && !value.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0))
}

/// A status code, and the reason phrase to send with it when not the standard one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusLine<'a> {
    /// The code.
    pub code: u16,
    /// The phrase (printable ASCII, checked by the caller); `None` sends the standard one.
    pub reason: Option<&'a str>,
}

impl From<u16> for StatusLine<'_> {
    fn from(code: u16) -> Self {
        StatusLine { code, reason: None }
    }
}

fn write_status_line(out: &mut Vec<u8>, version: Version, status: u16, reason: Option<&str>) {
    out.extend_from_slice(version.as_str().as_bytes());
    out.push(b' ');
    write_u64(out, u64::from(status));
    // The SP stays even without a phrase: status-line = version SP code SP [reason-phrase].
    out.push(b' ');
    out.extend_from_slice(reason.unwrap_or_else(|| reason_phrase(status)).as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn write_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn write_content_length(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(b"Content-Length: ");
    write_u64(out, n);
    out.extend_from_slice(b"\r\n");
}

/// Decimal digits of `n` without going through `fmt`.
pub(crate) fn write_u64(out: &mut Vec<u8>, n: u64) {
    write_radix(out, n, 10);
}

fn write_hex(out: &mut Vec<u8>, n: u64) {
    write_radix(out, n, 16);
}

fn write_radix(out: &mut Vec<u8>, mut n: u64, radix: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    // u64::MAX has 20 decimal digits, fewer in any larger radix.
    let mut buf = [0u8; 20];
    let mut len = 0;
    for slot in buf.iter_mut().rev() {
        *slot = DIGITS
            .get(usize::try_from(n % radix).unwrap_or(0))
            .copied()
            .unwrap_or(b'0');
        n /= radix;
        len += 1;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(buf.get(buf.len() - len..).unwrap_or_default());
}

fn decimal_len(mut n: u64) -> usize {
    let mut len = 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &[u8] = b"Sun, 06 Nov 1994 08:49:37 GMT";

    fn head(
        version: Version,
        status: u16,
        headers: &[(&str, &str)],
        body_len: Option<u64>,
        keep_alive: bool,
    ) -> String {
        let headers: Vec<(String, Vec<u8>)> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect();
        let mut out = Vec::new();
        write_response_head(
            &mut out, version, status, &headers, body_len, keep_alive, DATE,
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn plain_200_with_length() {
        assert_eq!(
            head(
                Version::Http11,
                200,
                &[("Content-Type", "text/html")],
                Some(12),
                true
            ),
            "HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nServer: tine\r\n\
             Content-Type: text/html\r\nContent-Length: 12\r\n\r\n"
        );
    }

    #[test]
    fn a_reason_phrase_of_the_applications_own() {
        let mut out = Vec::new();
        let status = StatusLine {
            code: 200,
            reason: Some("Fine"),
        };
        write_response_head(&mut out, Version::Http11, status, &[], Some(0), true, DATE);
        assert!(out.starts_with(b"HTTP/1.1 200 Fine\r\n"));
    }

    #[test]
    fn chunked_and_close() {
        assert_eq!(
            head(Version::Http11, 404, &[], None, false),
            "HTTP/1.1 404 Not Found\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nServer: tine\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn http10_keep_alive_and_close() {
        assert_eq!(
            head(Version::Http10, 200, &[], Some(0), true),
            "HTTP/1.0 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nServer: tine\r\n\
             Content-Length: 0\r\nConnection: keep-alive\r\n\r\n"
        );
        assert_eq!(
            head(Version::Http10, 200, &[], Some(3), false),
            "HTTP/1.0 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nServer: tine\r\n\
             Content-Length: 3\r\nConnection: close\r\n\r\n"
        );
        // No length on HTTP/1.0 can only be delimited by closing.
        assert_eq!(
            head(Version::Http10, 200, &[], None, true),
            "HTTP/1.0 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nServer: tine\r\n\
             Connection: close\r\n\r\n"
        );
    }

    #[test]
    fn caller_date_server_kept_and_framing_headers_dropped() {
        assert_eq!(
            head(
                Version::Http11,
                200,
                &[
                    ("server", "custom"),
                    ("DATE", "yesterday"),
                    ("content-length", "99"),
                    ("Transfer-Encoding", "gzip"),
                    ("Connection", "upgrade"),
                    ("X-A", "1"),
                    ("X-A", "2"),
                ],
                Some(5),
                true
            ),
            "HTTP/1.1 200 OK\r\nserver: custom\r\nDATE: yesterday\r\nX-A: 1\r\nX-A: 2\r\n\
             Content-Length: 5\r\n\r\n"
        );
    }

    #[test]
    fn bodiless_statuses() {
        assert_eq!(
            head(Version::Http11, 204, &[], Some(10), true),
            "HTTP/1.1 204 No Content\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nServer: tine\r\n\r\n"
        );
        assert_eq!(
            head(Version::Http11, 204, &[], None, true),
            "HTTP/1.1 204 No Content\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nServer: tine\r\n\r\n"
        );
        assert_eq!(
            head(Version::Http11, 304, &[("ETag", "\"x\"")], Some(1234), true),
            "HTTP/1.1 304 Not Modified\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nServer: tine\r\n\
             ETag: \"x\"\r\nContent-Length: 1234\r\n\r\n"
        );
        assert_eq!(
            head(Version::Http11, 304, &[], None, true),
            "HTTP/1.1 304 Not Modified\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nServer: tine\r\n\r\n"
        );
        assert_eq!(
            head(Version::Http11, 103, &[("Link", "</a>")], Some(3), true),
            "HTTP/1.1 103 Early Hints\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nServer: tine\r\n\
             Link: </a>\r\n\r\n"
        );
    }

    #[test]
    fn unknown_status_keeps_the_space() {
        assert!(head(Version::Http11, 599, &[], Some(0), true).starts_with("HTTP/1.1 599 \r\n"));
    }

    #[test]
    fn chunks() {
        let mut out = Vec::new();
        write_chunk(&mut out, b"");
        assert!(out.is_empty());
        write_chunk(&mut out, b"hello");
        write_chunk(&mut out, &[b'x'; 26]);
        write_last_chunk(&mut out);
        let mut expected = b"5\r\nhello\r\n1a\r\n".to_vec();
        expected.extend_from_slice(&[b'x'; 26]);
        expected.extend_from_slice(b"\r\n0\r\n\r\n");
        assert_eq!(out, expected);
    }

    #[test]
    fn error_responses() {
        let mut out = Vec::new();
        error_response(&mut out, &HttpError::new(400, "invalid header name"), DATE);
        let body = "400 Bad Request: invalid header name\n";
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!(
                "HTTP/1.1 400 Bad Request\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nServer: tine\r\n\
                 Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            )
        );

        let mut out = Vec::new();
        error_response(&mut out, &HttpError::new(599, "odd"), DATE);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 599 \r\n"));
        assert!(text.ends_with("Content-Length: 9\r\nConnection: close\r\n\r\n599: odd\n"));
        assert!(!text.contains("Retry-After"));

        let mut out = Vec::new();
        error_response(&mut out, &HttpError::new(503, "busy"), DATE);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\r\nRetry-After: 1\r\n"), "{text}");
    }

    #[test]
    fn every_error_status_body_matches_its_length() {
        for status in [400, 408, 413, 414, 417, 431, 500, 501, 503, 505] {
            let mut out = Vec::new();
            error_response(&mut out, &HttpError::new(status, "why"), DATE);
            let text = String::from_utf8(out).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(len, body.len(), "{status}");
            assert_eq!(body, format!("{status} {}: why\n", reason_phrase(status)));
        }
    }

    #[test]
    fn numbers() {
        for n in [0u64, 7, 10, 99, 100, 65535, u64::MAX] {
            let mut out = Vec::new();
            write_u64(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
            assert_eq!(decimal_len(n), n.to_string().len());
            let mut out = Vec::new();
            write_hex(&mut out, n);
            assert_eq!(out, format!("{n:x}").as_bytes());
        }
    }

    #[test]
    fn header_validation() {
        assert!(valid_header("X-Ok", b"any value\twith tab \x80"));
        assert!(valid_header("x", b""));
        assert!(!valid_header("", b"v"));
        assert!(!valid_header("Bad Name", b"v"));
        assert!(!valid_header("Bad:Name", b"v"));
        assert!(!valid_header("X", b"a\r\nInjected: 1"));
        assert!(!valid_header("X", b"a\nb"));
        assert!(!valid_header("X", b"a\0b"));
    }
}
