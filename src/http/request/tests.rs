//! Head parsing tests: the request line, fields, Host, persistence, framing and expectations.

use super::super::head::HeadScan;
use super::super::limits::TEST_LIMITS;
use super::*;

fn scan_all(buf: &[u8]) -> Result<Option<HeadSpan>, HttpError> {
    HeadScan::default().scan(buf, &TEST_LIMITS)
}

fn parse(buf: &[u8]) -> Result<ParsedHead, HttpError> {
    let span = scan_all(buf)?.expect("complete head");
    parse_head(&buf[span.start..span.end], &span, &TEST_LIMITS)
}

#[test]
fn request_line_checks() {
    assert_eq!(check_request_line(b"GET / HTTP/1.1"), Ok(Version::Http11));
    assert_eq!(check_request_line(b"GET * HTTP/1.0"), Ok(Version::Http10));
    assert_eq!(
        check_request_line(b"GET /caf\xc3\xa9 HTTP/1.1"),
        Ok(Version::Http11)
    );
    // A higher minor of HTTP/1 is processed as 1.1 (RFC 9110 §2.5).
    assert_eq!(check_request_line(b"GET / HTTP/1.2"), Ok(Version::Http11));
    assert_eq!(check_request_line(b"GET / HTTP/1.9"), Ok(Version::Http11));
    for (line, status, reason) in [
        (&b"GET / HTTP/2.0"[..], 505, "unsupported HTTP version"),
        (b"GET / HTTP/3.0", 505, "unsupported HTTP version"),
        (b"GET / HTTP/0.9", 505, "unsupported HTTP version"),
        (b"GET / HTTP/1.x", 400, "invalid HTTP version"),
        (b"GET / HTTP/1.", 400, "invalid HTTP version"),
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
        let buf =
            format!("PUT / HTTP/1.1\r\nHost: a\r\nExpect: {value}\r\nContent-Length: 1\r\n\r\n");
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

#[test]
fn a_higher_minor_version_is_processed_as_http11() {
    let p = parse(b"POST /a HTTP/1.2\r\nHost: h\r\nContent-Length: 3\r\n\r\n").unwrap();
    assert_eq!(p.head.version, Version::Http11);
    assert_eq!(p.head.target, "/a");
    assert!(p.head.keep_alive, "1.1 persistence");
    assert_eq!(p.framing, Framing::Length(3));
    assert_eq!(p.head.authority(), Some("h"));
    // 1.1's rules apply: Host is required, chunked is allowed.
    assert_eq!(
        parse(b"GET / HTTP/1.3\r\n\r\n").unwrap_err(),
        HttpError::new(400, "missing Host header")
    );
    let p = parse(b"POST / HTTP/1.9\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
    assert_eq!(p.framing, Framing::Chunked);
}
