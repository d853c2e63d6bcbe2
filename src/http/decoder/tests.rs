//! Decoder tests over whole requests: rule tables with expected statuses, identical results for
//! every way of splitting the input, pipelining, chunked bodies, limits, smuggling attempts,
//! `Expect: 100-continue`, idleness, and a deterministic fuzz loop.

use super::super::Version;
use super::super::limits::{MAX_CHUNK_EXTENSIONS, MAX_CHUNK_LINE, MAX_LEADING_EMPTY_LINES};
use super::*;

fn lim() -> Limits {
    Limits {
        request_line: 100,
        headers: 10,
        header_field_size: 100,
        header_bytes: 1000,
        body: 1000,
    }
}

/// One request's outcome, comparable across ways of feeding the input.
#[derive(Debug, PartialEq)]
enum Out {
    Req {
        method: String,
        target: String,
        version: Version,
        headers: Vec<(String, Vec<u8>)>,
        keep_alive: bool,
        body: Vec<u8>,
    },
    Err(HttpError),
}

fn out(head: RequestHead, body: Vec<u8>) -> Out {
    Out::Req {
        method: head.method,
        target: head.target,
        version: head.version,
        headers: head.headers,
        keep_alive: head.keep_alive,
        body,
    }
}

/// Feeds `input` in pieces of the given sizes into a growing buffer the way a connection does,
/// dropping consumed bytes; returns the outcomes and the bytes left unconsumed at the end (0 after
/// an error, when how much was fed depends on the split and the connection is closed anyway).
fn run_split(limits: Limits, input: &[u8], mut piece: impl FnMut() -> usize) -> (Vec<Out>, usize) {
    let mut decoder = Decoder::new(limits);
    let mut buf = Vec::new();
    let mut outs = Vec::new();
    let mut fed = 0;
    while fed < input.len() {
        let n = piece().clamp(1, input.len() - fed);
        buf.extend_from_slice(&input[fed..fed + n]);
        fed += n;
        loop {
            match decoder.decode(&buf) {
                Ok(Decoded::Complete {
                    consumed,
                    head,
                    body,
                }) => {
                    assert!(consumed > 0 && consumed <= buf.len());
                    buf.drain(..consumed);
                    outs.push(out(head, body));
                }
                Ok(Decoded::NeedMore { consumed }) => {
                    assert!(consumed <= buf.len());
                    buf.drain(..consumed);
                    break;
                }
                Err(e) => {
                    assert_eq!(
                        decoder.decode(&buf).err(),
                        Some(e.clone()),
                        "errors are sticky"
                    );
                    outs.push(Out::Err(e));
                    return (outs, 0);
                }
            }
        }
    }
    (outs, buf.len())
}

fn run_whole(limits: Limits, input: &[u8]) -> (Vec<Out>, usize) {
    run_split(limits, input, || usize::MAX)
}

/// Feeds `input` in pieces of exactly these sizes (the rest in one piece).
fn run_pieces(limits: Limits, input: &[u8], sizes: &[usize]) -> (Vec<Out>, usize) {
    let mut sizes = sizes.iter().copied();
    run_split(limits, input, || sizes.next().unwrap_or(usize::MAX))
}

/// Piece sizes that cut `input` right after every CRLF and between every CR and its LF: the
/// boundaries where a line-oriented parser is most likely to lose its place.
fn crlf_pieces(input: &[u8]) -> Vec<usize> {
    let mut cuts = vec![0];
    for (i, pair) in input.windows(2).enumerate() {
        if pair == b"\r\n" {
            cuts.extend([i + 1, i + 2]);
        }
    }
    cuts.push(input.len());
    cuts.windows(2).map(|w| w[1] - w[0]).collect()
}

/// Runs `input` whole, one byte at a time, cut at every CRLF and in random pieces; asserts that
/// all agree, and returns the outcomes.
fn run(limits: Limits, input: &[u8]) -> Vec<Out> {
    let text = String::from_utf8_lossy(input);
    let whole = run_whole(limits, input);
    assert_eq!(whole, run_split(limits, input, || 1), "bytewise: {text}");
    assert_eq!(
        whole,
        run_pieces(limits, input, &crlf_pieces(input)),
        "at CRLFs: {text}"
    );
    let mut rng = XorShift(input.len() as u64 * 0x9E37_79B9 + 1);
    for _ in 0..3 {
        let max = 1 + rng.below(input.len().min(64));
        assert_eq!(
            whole,
            run_split(limits, input, || 1 + rng.below(max)),
            "random pieces up to {max}: {text}"
        );
    }
    whole.0
}

/// The single outcome of `input`: Ok(body) for one complete request, Err(status) for an error.
fn single(limits: Limits, input: &[u8]) -> Result<Vec<u8>, u16> {
    let outs = run(limits, input);
    match outs.as_slice() {
        [Out::Req { body, .. }] => Ok(body.clone()),
        [Out::Err(e)] => Err(e.status),
        other => panic!(
            "expected one outcome for {:?}, got {other:?}",
            String::from_utf8_lossy(input)
        ),
    }
}

/// What a table row expects: the decoded body, or the error status.
type Expected = Result<&'static [u8], u16>;

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[test]
fn head_rule_table() {
    let cases: &[(&[u8], Expected)] = &[
        (b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", Ok(b"")),
        (
            b"GET http://example.com/x?y=1 HTTP/1.1\r\nHost: example.com\r\n\r\n",
            Ok(b""),
        ),
        (b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", Ok(b"")),
        (
            b"GET HTTP://example.com HTTP/1.1\r\nHost: other\r\n\r\n",
            Ok(b""),
        ),
        (
            b"GET https://[2001:db8::1]:8443/x HTTP/1.1\r\nHost: a\r\n\r\n",
            Ok(b""),
        ),
        (b"GET //x HTTP/1.1\r\nHost: a\r\n\r\n", Ok(b"")),
        // CONNECT is well-formed but not implemented.
        (
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
            Err(501),
        ),
        (b"M-SEARCH /ssdp HTTP/1.1\r\nHost: a\r\n\r\n", Ok(b"")),
        // `*` is for OPTIONS alone (RFC 9112 §3.2.4); SSDP's M-SEARCH * is a UDP affair.
        (b"M-SEARCH * HTTP/1.1\r\nHost: a\r\n\r\n", Err(400)),
        (b"get /lower HTTP/1.1\r\nHost: a\r\n\r\n", Ok(b"")),
        (b"GET / HTTP/1.0\r\n\r\n", Ok(b"")),
        (b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", Ok(b"")),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Obs: caf\xc3\xa9 \x80\xff\r\n\r\n",
            Ok(b""),
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Tab:\tv\tw\t\r\nX-Empty:\r\n\r\n",
            Ok(b""),
        ),
        (b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", Ok(b"")),
        // version
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", Err(505)),
        (b"GET / HTTP/3.0\r\nHost: a\r\n\r\n", Err(505)),
        (b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", Ok(b"")),
        (b"GET / HTTP/1.9\r\n\r\n", Err(400)),
        (b"GET / HTTP/0.9\r\n\r\n", Err(505)),
        (b"GET / HTTP/1.1x\r\nHost: a\r\n\r\n", Err(400)),
        (b"GET / HTTP/1\r\nHost: a\r\n\r\n", Err(400)),
        (b"GET / HTTPS/1.1\r\nHost: a\r\n\r\n", Err(400)),
        (b"GET /\r\nHost: a\r\n\r\n", Err(400)),
        (b"GARBAGE\r\n\r\n", Err(400)),
        (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", Err(400)),
        // method and target
        (b"G@T / HTTP/1.1\r\nHost: a\r\n\r\n", Err(400)),
        (b" GET / HTTP/1.1\r\nHost: a\r\n\r\n", Err(400)),
        (b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", Err(400)),
        (b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", Err(400)),
        (b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", Err(400)),
        (b"GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n", Err(400)),
        (b"GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n", Err(400)),
        (b"GET /\t HTTP/1.1\r\nHost: a\r\n\r\n", Err(400)),
        (b"GET /\xc3 HTTP/1.1\r\nHost: a\r\n\r\n", Err(400)),
        // target forms
        (b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", Err(400)),
        (b"GET example.com:80 HTTP/1.1\r\nHost: a\r\n\r\n", Err(400)),
        (b"GET x HTTP/1.1\r\nHost: a\r\n\r\n", Err(400)),
        (b"GET /a#f HTTP/1.1\r\nHost: a\r\n\r\n", Err(400)),
        (b"GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n", Err(400)),
        (b"GET http:/a HTTP/1.1\r\nHost: a\r\n\r\n", Err(400)),
        (b"GET http:///a HTTP/1.1\r\nHost: a\r\n\r\n", Err(400)),
        (b"GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n", Err(400)),
        (b"GET http://a:99999/ HTTP/1.1\r\nHost: a\r\n\r\n", Err(400)),
        (b"CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n", Err(400)),
        (b"CONNECT a HTTP/1.1\r\nHost: a\r\n\r\n", Err(400)),
        // field names
        (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", Err(400)),
        (b"GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", Err(400)),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX Y: z\r\n\r\n", Err(400)),
        (b"GET / HTTP/1.1\r\nHost: a\r\n: novalue\r\n\r\n", Err(400)),
        (b"GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", Err(400)),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nX-\xc3\xa9: v\r\n\r\n",
            Err(400),
        ),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX(y): v\r\n\r\n", Err(400)),
        // field values
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", Err(400)),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", Err(400)),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x0bb\r\n\r\n", Err(400)),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n", Err(400)),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", Err(400)),
        // obs-fold and whitespace before the first field
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", Err(400)),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n",
            Err(400),
        ),
        (b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", Err(400)),
        // line endings
        (b"GET / HTTP/1.1\nHost: a\n\n", Err(400)),
        (b"GET / HTTP/1.1\r\nHost: a\n\r\n", Err(400)),
        (b"GET / HTTP/1.1\r\nHost: a\r\n\n", Err(400)),
        (b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", Err(400)),
        (b"\rGET / HTTP/1.1\r\nHost: a\r\n\r\n", Err(400)),
        (b"GET / HTTP/1.1\r\r\nHost: a\r\n\r\n", Err(400)),
        (b"GET / HTTP/1.1\r\nHost: a\r\n\rX", Err(400)),
        // Host
        (b"GET / HTTP/1.1\r\n\r\n", Err(400)),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", Err(400)),
        (b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", Err(400)),
        (b"GET / HTTP/1.1\r\nHost: a@b\r\n\r\n", Err(400)),
        (b"GET / HTTP/1.1\r\nHost: a:99999\r\n\r\n", Err(400)),
        (b"GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n", Err(400)),
        (b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", Err(400)),
        (b"GET / HTTP/1.1\r\nHost: a, b\r\n\r\n", Err(400)),
        (b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", Ok(b"")),
        (b"GET / HTTP/1.1\r\nHost:  a.example:80 \r\n\r\n", Ok(b"")),
        (b"GET http://a/ HTTP/1.1\r\n\r\n", Err(400)),
        // Expect
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
            Ok(b""),
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nExpect: foo\r\n\r\n",
            Err(417),
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nExpect: x\r\n\r\n",
            Err(417),
        ),
    ];
    for (input, expected) in cases {
        let expected = expected.map(<[u8]>::to_vec);
        assert_eq!(
            single(lim(), input),
            expected,
            "{}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn parsed_head_fields() {
    let outs = run(
        lim(),
        b"POST /p?q HTTP/1.1\r\nHost: h\r\nX-Dup: 1\r\nx-dup:  2 \r\nContent-Length: 3\r\n\r\nabc",
    );
    assert_eq!(
        outs,
        vec![Out::Req {
            method: "POST".into(),
            target: "/p?q".into(),
            version: Version::Http11,
            headers: vec![
                ("Host".into(), b"h".to_vec()),
                ("X-Dup".into(), b"1".to_vec()),
                ("x-dup".into(), b"2".to_vec()),
                ("Content-Length".into(), b"3".to_vec()),
            ],
            keep_alive: true,
            body: b"abc".to_vec(),
        }]
    );
}

#[test]
fn keep_alive_through_the_decoder() {
    let keep = |input: &[u8]| match run(lim(), input).as_slice() {
        [Out::Req { keep_alive, .. }] => *keep_alive,
        other => panic!("{other:?}"),
    };
    assert!(keep(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
    assert!(!keep(
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n"
    ));
    assert!(!keep(b"GET / HTTP/1.0\r\n\r\n"));
    assert!(keep(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
}

#[test]
fn framing_and_smuggling_table() {
    let post = |fields: &[u8], body: &[u8]| {
        cat(&[b"POST / HTTP/1.1\r\nHost: a\r\n", fields, b"\r\n", body])
    };
    let cases: Vec<(Vec<u8>, Expected)> = vec![
        (post(b"Content-Length: 5\r\n", b"hello"), Ok(b"hello")),
        (post(b"Content-Length:  5 \r\n", b"hello"), Ok(b"hello")),
        (post(b"Content-Length: 005\r\n", b"hello"), Ok(b"hello")),
        (post(b"Content-Length: 0\r\n", b""), Ok(b"")),
        (post(b"Content-Length: 5, 5\r\n", b"hello"), Err(400)),
        (
            post(b"Content-Length: 5\r\nContent-Length: 5\r\n", b"hello"),
            Ok(b"hello"),
        ),
        (
            post(b"Content-Length: 5\r\nContent-Length: 6\r\n", b"hello!"),
            Err(400),
        ),
        (post(b"Content-Length: 5, 6\r\n", b"hello!"), Err(400)),
        (post(b"Content-Length: 5,\r\n", b"hello"), Err(400)),
        (post(b"Content-Length: -1\r\n", b""), Err(400)),
        (post(b"Content-Length: +5\r\n", b"hello"), Err(400)),
        (post(b"Content-Length: 1e3\r\n", b""), Err(400)),
        (post(b"Content-Length: 0x10\r\n", b""), Err(400)),
        (post(b"Content-Length: 5 5\r\n", b""), Err(400)),
        (post(b"Content-Length:\r\n", b""), Err(400)),
        (
            post(b"Content-Length: 18446744073709551616\r\n", b""),
            Err(400),
        ),
        (
            post(b"Content-Length: 18446744073709551615\r\n", b""),
            Err(413),
        ),
        (
            post(
                b"Transfer-Encoding: chunked\r\n",
                b"5\r\nhello\r\n0\r\n\r\n",
            ),
            Ok(b"hello"),
        ),
        (
            post(
                b"Transfer-Encoding:  chunked\r\n",
                b"5\r\nhello\r\n0\r\n\r\n",
            ),
            Ok(b"hello"),
        ),
        (
            post(
                b"Transfer-Encoding: Chunked\r\n",
                b"5\r\nhello\r\n0\r\n\r\n",
            ),
            Ok(b"hello"),
        ),
        (
            post(
                b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                b"0\r\n\r\n",
            ),
            Err(400),
        ),
        (
            post(
                b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
                b"0\r\n\r\n",
            ),
            Err(400),
        ),
        (
            post(b"Transfer-Encoding: chunked, identity\r\n", b"0\r\n\r\n"),
            Err(400),
        ),
        (
            post(
                b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
                b"",
            ),
            Err(400),
        ),
        (
            post(b"Transfer-Encoding: identity, chunked\r\n", b"0\r\n\r\n"),
            Err(501),
        ),
        (
            post(b"Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n"),
            Err(501),
        ),
        (
            post(b"Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n"),
            Err(400),
        ),
        (
            post(b"Transfer-Encoding: chunked, chunked\r\n", b"0\r\n\r\n"),
            Err(400),
        ),
        (
            post(b"Transfer-Encoding: chunkedx\r\n", b"0\r\n\r\n"),
            Err(400),
        ),
        (
            post(b"Transfer-Encoding: chunked;x=y\r\n", b"0\r\n\r\n"),
            Err(400),
        ),
        (
            post(b"Transfer-Encoding: \x0bchunked\r\n", b"0\r\n\r\n"),
            Err(400),
        ),
        (
            post(b"Transfer-Encoding : chunked\r\n", b"0\r\n\r\n"),
            Err(400),
        ),
        (
            post(b" Transfer-Encoding: chunked\r\n", b"0\r\n\r\n"),
            Err(400),
        ),
        (
            post(b"X: y\r\n Transfer-Encoding: chunked\r\n", b"0\r\n\r\n"),
            Err(400),
        ),
        (
            post(b"Transfer-Encoding: chunked\n", b"0\r\n\r\n"),
            Err(400),
        ),
        (post(b"Transfer-Encoding: chunked\r\n", b"0\n\n"), Err(400)),
        (
            post(b"Transfer-Encoding: chunked\r\n", b"0\r\n\n"),
            Err(400),
        ),
        (
            cat(&[b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"]),
            Err(400),
        ),
        (
            cat(&[b"POST / HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi"]),
            Ok(b"hi"),
        ),
        // No Content-Length and no Transfer-Encoding: no body, whatever the method.
        (cat(&[b"POST / HTTP/1.1\r\nHost: a\r\n\r\n"]), Ok(b"")),
    ];
    for (input, expected) in cases {
        assert_eq!(
            single(lim(), &input),
            expected.map(<[u8]>::to_vec),
            "{}",
            String::from_utf8_lossy(&input)
        );
    }
}

#[test]
fn smuggled_request_after_a_chunked_body_is_a_separate_request() {
    let input = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
                  0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";
    let outs = run(lim(), input);
    assert_eq!(outs.len(), 2);
    assert!(matches!(&outs[1], Out::Req { target, .. } if target == "/smuggled"));
}

const CHUNKED_HEAD: &[u8] = b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";

fn chunked(limits: Limits, body: &[u8]) -> Result<Vec<u8>, u16> {
    single(limits, &cat(&[CHUNKED_HEAD, body]))
}

#[test]
fn chunked_bodies() {
    let cases: &[(&[u8], &[u8])] = &[
        (
            b"4\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n\r\n",
            b"Wikipedia in\r\n\r\nchunks.",
        ),
        (b"0\r\n\r\n", b""),
        (b"0000\r\n\r\n", b""),
        (b"0005\r\nhello\r\n0\r\n\r\n", b"hello"),
        (
            b"A\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n",
            b"01234567890123456789",
        ),
        (b"5;name=value;flag\r\nhello\r\n0;last\r\n\r\n", b"hello"),
        (b"5;a=\"q \\\" ;x\"\r\nhello\r\n0\r\n\r\n", b"hello"),
        (b"5;a=\"\"\r\nhello\r\n0\r\n\r\n", b"hello"),
        (b"5;a=\"tab\there \x80\"\r\nhello\r\n0\r\n\r\n", b"hello"),
        (b"5 ; a = b ;c\r\nhello\r\n0\r\n\r\n", b"hello"),
        (b"5;a=\"x\" ;b\r\nhello\r\n0\r\n\r\n", b"hello"),
        (b"5;a=\"x\";b=\"y\"\r\nhello\r\n0\r\n\r\n", b"hello"),
        (
            b"5\r\nhello\r\n0\r\nX-Trailer: v\r\nAnother:w \x80\r\nEmpty:\r\n\r\n",
            b"hello",
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(
            chunked(lim(), body),
            Ok(expected.to_vec()),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn trailers_are_not_headers() {
    let input = cat(&[CHUNKED_HEAD, b"0\r\nX-Trailer: v\r\n\r\n"]);
    match run(lim(), &input).as_slice() {
        [Out::Req { headers, .. }] => {
            assert!(headers.iter().all(|(n, _)| n != "X-Trailer"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn chunked_malformations() {
    let long_ext = cat(&[
        b"5;",
        &vec![b'a'; MAX_CHUNK_LINE],
        b"\r\nhello\r\n0\r\n\r\n",
    ]);
    let cases: &[&[u8]] = &[
        b"-5\r\nhello\r\n0\r\n\r\n",
        b"+5\r\nhello\r\n0\r\n\r\n",
        b" 5\r\nhello\r\n0\r\n\r\n",
        b"0x5\r\nhello\r\n0\r\n\r\n",
        b"5_0\r\n",
        b"\r\nhello\r\n0\r\n\r\n",
        b"g\r\n",
        b"5 \r\nhello\r\n0\r\n\r\n",
        b"5\t\r\nhello\r\n0\r\n\r\n",
        b"5\nhello\r\n0\r\n\r\n",
        b"5\r\rhello",
        b"5\rX",
        b"5;\r\nhello\r\n0\r\n\r\n",
        b"5;=v\r\nhello\r\n0\r\n\r\n",
        b"5;a=\r\nhello\r\n0\r\n\r\n",
        b"5;a= \r\nhello\r\n0\r\n\r\n",
        b"5;a \r\nhello\r\n0\r\n\r\n",
        b"5;a=\"open\r\nhello\r\n0\r\n\r\n",
        b"5;a=b c\r\nhello\r\n0\r\n\r\n",
        b"5;a=\"x\"y\r\nhello\r\n0\r\n\r\n",
        b"5;a@b\r\nhello\r\n0\r\n\r\n",
        b"5;a=\"\x01\"\r\nhello\r\n0\r\n\r\n",
        b"5;a=\"\\\x7f\"\r\nhello\r\n0\r\n\r\n",
        b"5;a=b;\r\nhello\r\n0\r\n\r\n",
        b"5\r\nhelloX\r\n0\r\n\r\n",
        b"5\r\nhello\rX0\r\n\r\n",
        b"5\r\nhello\n0\r\n\r\n",
        b"5\r\nhello0\r\n\r\n",
        b"0\r\nX\r\n\r\n",
        b"0\r\nX : v\r\n\r\n",
        b"0\r\nX: v\r\n w\r\n\r\n",
        b"0\r\n X: v\r\n\r\n",
        b"0\r\nX: v\n\r\n",
        b"0\r\nX: \x00\r\n\r\n",
        b"0\r\nX: v\r\n\rX",
        b"0\r\n\rX",
        b"0\r\n:v\r\n\r\n",
        &long_ext,
    ];
    for body in cases {
        assert_eq!(
            chunked(lim(), body),
            Err(400),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn chunk_line_limit_is_exact() {
    // "5;" plus the name fills the line to exactly MAX_CHUNK_LINE bytes.
    let name = vec![b'a'; MAX_CHUNK_LINE - 2];
    let at_limit = cat(&[b"5;", &name, b"\r\nhello\r\n0\r\n\r\n"]);
    assert_eq!(chunked(lim(), &at_limit), Ok(b"hello".to_vec()));
    let over = cat(&[b"5;", &name, b"a\r\nhello\r\n0\r\n\r\n"]);
    assert_eq!(chunked(lim(), &over), Err(400));
}

#[test]
fn chunk_size_overflow() {
    let unlimited = Limits {
        body: u64::MAX,
        ..lim()
    };
    // The largest size is accepted (and then waits for data)...
    let input = cat(&[CHUNKED_HEAD, b"FFFFFFFFFFFFFFFF\r\nabc"]);
    assert_eq!(run(unlimited, &input), vec![]);
    // ...one more digit overflows.
    assert_eq!(
        chunked(unlimited, b"10000000000000000\r\n"),
        Err(400),
        "overflow"
    );
    assert_eq!(
        chunked(
            unlimited,
            b"0000000000000000000000005\r\nhello\r\n0\r\n\r\n"
        ),
        Ok(b"hello".to_vec())
    );
    // Under a real limit the size is refused as too large before it can overflow.
    assert_eq!(chunked(lim(), b"10000000000000000\r\n"), Err(413));
}

#[test]
fn chunked_body_limit() {
    let exactly = cat(&[b"3e8\r\n", &[b'x'; 1000], b"\r\n0\r\n\r\n"]);
    assert_eq!(chunked(lim(), &exactly), Ok(vec![b'x'; 1000]));
    let split = cat(&[
        b"1f4\r\n",
        &[b'x'; 500],
        b"\r\n1F4\r\n",
        &[b'y'; 500],
        b"\r\n0\r\n\r\n",
    ]);
    assert_eq!(chunked(lim(), &split).map(|b| b.len()), Ok(1000));

    // 0x3e9 = 1001 is refused at the size line, before any data.
    let mut d = Decoder::new(lim());
    assert_eq!(
        d.decode(&cat(&[CHUNKED_HEAD, b"3e9"])).unwrap_err(),
        HttpError::new(413, "request body too large")
    );
    // Over the limit across chunks: refused as soon as the second size digit is read.
    let mut d = Decoder::new(lim());
    let input = cat(&[CHUNKED_HEAD, b"3e8\r\n", &[b'x'; 1000], b"\r\n1"]);
    assert_eq!(d.decode(&input).unwrap_err().status, 413);
}

#[test]
fn trailer_limits() {
    // The same limits bound the head, which must itself fit: CHUNKED_HEAD is 57 bytes and its
    // longest field line 26.
    let limits = Limits {
        headers: 3,
        header_field_size: 26,
        header_bytes: 57,
        ..lim()
    };
    assert_eq!(
        chunked(limits, b"0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"),
        Ok(vec![])
    );
    assert_eq!(
        chunked(limits, b"0\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n"),
        Err(431)
    );
    // A field line of exactly 26 bytes, then 27.
    let field = |len: usize| cat(&[b"0\r\nA: ", &vec![b'v'; len - 3], b"\r\n\r\n"]);
    assert_eq!(chunked(limits, &field(26)), Ok(vec![]));
    assert_eq!(chunked(limits, &field(27)), Err(431));
    // A section of exactly 57 bytes (lines of 18, 18 and 19 bytes with CRLF, then CRLF), then 58.
    assert_eq!(
        chunked(
            limits,
            b"0\r\nA: 1234567890123\r\nB: 1234567890123\r\nC: 12345678901234\r\n\r\n"
        ),
        Ok(vec![])
    );
    assert_eq!(
        chunked(
            limits,
            b"0\r\nA: 1234567890123\r\nB: 12345678901234\r\nC: 12345678901234\r\n\r\n"
        ),
        Err(431)
    );
}

/// A head of exactly `len` bytes: request line, Host, and one filler field.
fn head_of_len(len: usize) -> Vec<u8> {
    let fixed = b"GET / HTTP/1.1\r\nHost: a\r\nX: \r\n\r\n".len();
    cat(&[
        b"GET / HTTP/1.1\r\nHost: a\r\nX: ",
        &vec![b'x'; len - fixed],
        b"\r\n\r\n",
    ])
}

#[test]
fn request_line_limit() {
    let line = |len: usize| {
        let path = "/".repeat(len - "GET  HTTP/1.1".len());
        format!("GET {path} HTTP/1.1")
    };
    let ok = format!("{}\r\nHost: a\r\n\r\n", line(100));
    assert_eq!(single(lim(), ok.as_bytes()), Ok(vec![]));
    let over = format!("{}\r\nHost: a\r\n\r\n", line(101));
    assert_eq!(single(lim(), over.as_bytes()), Err(414));

    // Detected while the line is still partial: 101 bytes and no CRLF yet.
    let mut d = Decoder::new(lim());
    let partial = vec![b'/'; 97];
    let input = cat(&[b"GET ", &partial]);
    assert_eq!(input.len(), 101);
    assert!(matches!(
        d.decode(&input[..100]),
        Ok(Decoded::NeedMore { consumed: 0 })
    ));
    assert_eq!(d.decode(&input).unwrap_err().status, 414);
    // A trailing CR is not counted: exactly 100 bytes plus CR still waits.
    let mut d = Decoder::new(lim());
    let at_limit = cat(&[line(100).as_bytes(), b"\r"]);
    assert!(matches!(
        d.decode(&at_limit),
        Ok(Decoded::NeedMore { consumed: 0 })
    ));
}

#[test]
fn header_count_limit() {
    let with_fields = |n: usize| {
        let mut s = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 1..n {
            s.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        s.extend_from_slice(b"\r\n");
        s
    };
    assert_eq!(single(lim(), &with_fields(10)), Ok(vec![]));
    assert_eq!(single(lim(), &with_fields(11)), Err(431));
}

#[test]
fn field_size_limit() {
    let with_field = |len: usize| {
        let value = "v".repeat(len - "X: ".len());
        format!("GET / HTTP/1.1\r\nHost: a\r\nX: {value}\r\n\r\n").into_bytes()
    };
    assert_eq!(single(lim(), &with_field(100)), Ok(vec![]));
    assert_eq!(single(lim(), &with_field(101)), Err(431));
    // Detected while the field is partial.
    let partial = with_field(101);
    let cut = partial.len() - 4;
    let mut d = Decoder::new(lim());
    assert_eq!(d.decode(&partial[..cut]).unwrap_err().status, 431);
}

#[test]
fn head_size_limit() {
    let limits = Limits {
        header_bytes: 200,
        header_field_size: 1000,
        ..lim()
    };
    let exactly = head_of_len(200);
    assert_eq!(exactly.len(), 200);
    assert_eq!(single(limits, &exactly), Ok(vec![]));
    assert_eq!(single(limits, &head_of_len(201)), Err(431));
    // Detected before the blank line arrives: the first 201 bytes are already too many.
    let mut d = Decoder::new(limits);
    let big = head_of_len(260);
    assert!(matches!(
        d.decode(&big[..200]),
        Ok(Decoded::NeedMore { consumed: 0 })
    ));
    assert_eq!(d.decode(&big[..201]).unwrap_err().status, 431);
    // Leading empty lines are not part of the head.
    let led = cat(&[b"\r\n\r\n", &exactly]);
    assert_eq!(single(limits, &led), Ok(vec![]));
}

#[test]
fn content_length_limit() {
    let post = |n: usize| {
        cat(&[
            format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {n}\r\n\r\n").as_bytes(),
            &vec![b'b'; n],
        ])
    };
    assert_eq!(single(lim(), &post(1000)), Ok(vec![b'b'; 1000]));
    // 413 is decided from the head alone, before any body byte is read.
    let mut d = Decoder::new(lim());
    let head = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n";
    assert_eq!(d.decode(head).unwrap_err().status, 413);
}

#[test]
fn zero_body_limit_refuses_every_body() {
    let none = Limits { body: 0, ..lim() };
    let cl = |n: u8| {
        format!(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {n}\r\n\r\n{}",
            "x".repeat(n.into())
        )
    };
    assert_eq!(single(none, cl(0).as_bytes()), Ok(vec![]));
    assert_eq!(single(none, cl(1).as_bytes()), Err(413));
    assert_eq!(chunked(none, b"0\r\n\r\n"), Ok(vec![]));
    assert_eq!(chunked(none, b"1\r\nx\r\n0\r\n\r\n"), Err(413));
}

#[test]
fn leading_empty_lines_limit() {
    let ok = cat(&[
        &b"\r\n".repeat(MAX_LEADING_EMPTY_LINES),
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    ]);
    assert_eq!(single(lim(), &ok), Ok(vec![]));
    let over = cat(&[
        &b"\r\n".repeat(MAX_LEADING_EMPTY_LINES + 1),
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    ]);
    assert_eq!(single(lim(), &over), Err(400));
}

#[test]
fn pipelined_requests() {
    let first = b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n";
    let second = b"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc";
    let third =
        b"POST /3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n";
    let fourth = b"\r\nGET /4 HTTP/1.0\r\n\r\n";
    let all = cat(&[first, second, third, fourth, b"GET /5"]);

    let mut d = Decoder::new(lim());
    let mut pos = 0;
    for (len, target, body) in [
        (first.len(), "/1", &b""[..]),
        (second.len(), "/2", b"abc"),
        (third.len(), "/3", b"z"),
        (fourth.len(), "/4", b""),
    ] {
        match d.decode(&all[pos..]) {
            Ok(Decoded::Complete {
                consumed,
                head,
                body: got,
            }) => {
                assert_eq!(consumed, len, "{target}");
                assert_eq!(head.target, target);
                assert_eq!(got, body);
            }
            other => panic!("{target}: {other:?}"),
        }
        pos += len;
    }
    assert!(matches!(
        d.decode(&all[pos..]),
        Ok(Decoded::NeedMore { consumed: 0 })
    ));
    assert!(!d.is_idle());

    let outs = run(lim(), &all);
    assert_eq!(outs.len(), 4);
    assert_eq!(run_whole(lim(), &all).1, b"GET /5".len());
}

#[test]
fn body_bytes_are_consumed_as_they_arrive() {
    let mut d = Decoder::new(lim());
    let head = b"PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\n";
    let mut buf = head.to_vec();
    buf.extend_from_slice(b"ab");
    assert!(matches!(
        d.decode(&buf),
        Ok(Decoded::NeedMore { consumed }) if consumed == head.len() + 2
    ));
    assert!(matches!(
        d.decode(b"cd"),
        Ok(Decoded::NeedMore { consumed: 2 })
    ));
    match d.decode(b"efGET") {
        Ok(Decoded::Complete { consumed, body, .. }) => {
            assert_eq!(consumed, 2);
            assert_eq!(body, b"abcdef");
        }
        other => panic!("{other:?}"),
    }

    let mut d = Decoder::new(lim());
    let head = cat(&[CHUNKED_HEAD, b"5;x=\"y"]);
    assert!(matches!(
        d.decode(&head),
        Ok(Decoded::NeedMore { consumed }) if consumed == head.len()
    ));
    assert!(matches!(
        d.decode(b"\"\r\nhel"),
        Ok(Decoded::NeedMore { consumed: 6 })
    ));
    match d.decode(b"lo\r\n0\r\n\r\nX") {
        Ok(Decoded::Complete { consumed, body, .. }) => {
            assert_eq!(consumed, 9);
            assert_eq!(body, b"hello");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn expect_continue() {
    let head = b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
    let mut d = Decoder::new(lim());
    assert!(!d.take_continue());
    assert!(matches!(
        d.decode(&head[..10]),
        Ok(Decoded::NeedMore { .. })
    ));
    assert!(!d.take_continue());
    assert!(matches!(d.decode(head), Ok(Decoded::NeedMore { .. })));
    assert!(d.take_continue());
    assert!(!d.take_continue(), "only once");
    assert!(matches!(d.decode(b"hi"), Ok(Decoded::Complete { .. })));
    assert!(!d.take_continue());

    // The body arrived with the head: the client is not waiting.
    let mut d = Decoder::new(lim());
    assert!(matches!(
        d.decode(&cat(&[head, b"h"])),
        Ok(Decoded::NeedMore { .. })
    ));
    assert!(!d.take_continue());

    // Part of the body arrived before the caller asked: too late for 100 Continue.
    let mut d = Decoder::new(lim());
    assert!(matches!(d.decode(head), Ok(Decoded::NeedMore { .. })));
    assert!(matches!(d.decode(b"h"), Ok(Decoded::NeedMore { .. })));
    assert!(!d.take_continue());

    // No body expected, or HTTP/1.0: never.
    let mut d = Decoder::new(lim());
    let get = b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n";
    assert!(matches!(d.decode(get), Ok(Decoded::Complete { .. })));
    assert!(!d.take_continue());
    let mut d = Decoder::new(lim());
    let old = b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
    assert!(matches!(d.decode(old), Ok(Decoded::NeedMore { .. })));
    assert!(!d.take_continue());
}

#[test]
fn idleness() {
    let mut d = Decoder::new(lim());
    assert!(d.is_idle());
    assert!(matches!(
        d.decode(b""),
        Ok(Decoded::NeedMore { consumed: 0 })
    ));
    assert!(d.is_idle());
    assert!(matches!(
        d.decode(b"\r\n"),
        Ok(Decoded::NeedMore { consumed: 0 })
    ));
    assert!(d.is_idle(), "an empty line is not a request");
    assert!(matches!(
        d.decode(b"\r\nG"),
        Ok(Decoded::NeedMore { consumed: 0 })
    ));
    assert!(!d.is_idle());
    let req = b"\r\nGET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\n";
    assert!(matches!(d.decode(req), Ok(Decoded::NeedMore { .. })));
    assert!(!d.is_idle(), "waiting for the body");
    assert!(matches!(d.decode(b"x"), Ok(Decoded::Complete { .. })));
    assert!(d.is_idle());
    assert!(d.decode(b"\x00").is_err());
    assert!(!d.is_idle());
}

#[test]
fn errors_are_sticky() {
    let mut d = Decoder::new(lim());
    let err = d.decode(b"GET / HTTP/3.0\r\n\r\n").unwrap_err();
    assert_eq!(err, HttpError::new(505, "unsupported HTTP version"));
    assert_eq!(
        d.decode(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap_err(),
        err
    );
}

#[test]
fn reasons_name_the_problem() {
    let reason = |input: &[u8]| Decoder::new(lim()).decode(input).unwrap_err().reason;
    assert_eq!(
        reason(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
        "Content-Length and Transfer-Encoding together"
    );
    assert_eq!(
        reason(b"GET / HTTP/1.1\r\nHo st: a\r\n\r\n"),
        "invalid header name"
    );
    assert_eq!(
        reason(b"GET / HTTP/1.1\r\nHost: \x01\r\n\r\n"),
        "invalid header value"
    );
    assert_eq!(
        reason(b"GET / HTTP/1.1\nHost: a\n\n"),
        "line ending without CR"
    );
    assert_eq!(reason(b"GET / HTTP/1.1\r\n\r\n"), "missing Host header");
}

/// Fixed-seed xorshift64: deterministic, dependency-free randomness for the fuzz loop.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn corpus() -> Vec<Vec<u8>> {
    vec![
        b"GET / HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n".to_vec(),
        b"GET /a?b=c HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".to_vec(),
        b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
        cat(&[
            CHUNKED_HEAD,
            b"4;a=b\r\nWiki\r\n5;q=\"x\\\"y\"\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nT: v\r\n\r\n",
        ]),
        b"\r\nPUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi\
          GET /next HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
            .to_vec(),
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n".to_vec(),
        b"OPTIONS * HTTP/1.1\r\nHost: [::1]:80\r\n\r\n\
          GET http://a.example:8080/x?y HTTP/1.1\r\nHost: b\r\n\r\n"
            .to_vec(),
    ]
}

fn mutate(rng: &mut XorShift, input: &mut Vec<u8>) {
    const INTERESTING: &[u8] = b"\r\n\t :;,=\"\\0159aFx-\x00\x7f\x80\xff";
    // Zero to two edits: a third of the inputs stay valid, so the split comparison also covers
    // complete requests and not only early errors.
    for _ in 0..rng.below(3) {
        let at = rng.below(input.len() + 1);
        match rng.below(6) {
            0 if at < input.len() => input[at] = rng.next() as u8,
            1 if at < input.len() => input[at] = INTERESTING[rng.below(INTERESTING.len())],
            2 => input.insert(at, INTERESTING[rng.below(INTERESTING.len())]),
            3 if at < input.len() => {
                input.remove(at);
            }
            4 => {
                let len = rng.below(16);
                let from = rng.below(input.len().saturating_sub(len) + 1);
                let piece: Vec<u8> = input.iter().skip(from).take(len).copied().collect();
                input.splice(at..at, piece);
            }
            _ => input.truncate(at),
        }
    }
}

#[test]
fn fuzz_never_panics_and_splits_agree() {
    let corpus = corpus();
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let (mut completes, mut errors) = (0, 0);
    for round in 0..5000 {
        let mut input = if round % 10 == 9 {
            (0..rng.below(64)).map(|_| rng.next() as u8).collect()
        } else {
            let mut v = corpus[rng.below(corpus.len())].clone();
            mutate(&mut rng, &mut v);
            v
        };
        if round % 7 == 0 {
            input.extend_from_slice(&corpus[rng.below(corpus.len())]);
        }
        let limits = if round % 2 == 0 {
            lim()
        } else {
            Limits {
                request_line: 8 + rng.below(64),
                headers: rng.below(6),
                header_field_size: 4 + rng.below(48),
                header_bytes: 16 + rng.below(200),
                body: rng.below(40) as u64,
            }
        };
        let whole = run_whole(limits, &input);
        let bytewise = run_split(limits, &input, || 1);
        let at_crlf = run_pieces(limits, &input, &crlf_pieces(&input));
        let mut split_rng = XorShift(rng.next() | 1);
        let random = run_split(limits, &input, || 1 + split_rng.below(8));
        assert_eq!(whole, bytewise, "round {round}: {input:?}");
        assert_eq!(whole, at_crlf, "round {round}: {input:?}");
        assert_eq!(whole, random, "round {round}: {input:?}");
        for o in &whole.0 {
            match o {
                Out::Req { body, .. } => {
                    assert!(body.len() as u64 <= limits.body, "round {round}");
                    completes += 1;
                }
                Out::Err(_) => errors += 1,
            }
        }
    }
    // Guard against a mutator so aggressive (or so tame) that one path is never reached.
    assert!(
        completes > 1000 && errors > 1000,
        "{completes} completes, {errors} errors"
    );
}

#[test]
fn fuzz_corpus_is_valid_unmutated() {
    // The fuzz loop is only as good as its seeds: each must decode cleanly (the gzip one is the
    // deliberate exception, exercising the 501 path).
    for (i, input) in corpus().iter().enumerate() {
        let outs = run(lim(), input);
        let errors = outs.iter().filter(|o| matches!(o, Out::Err(_))).count();
        if i == 5 {
            assert_eq!(
                outs,
                vec![Out::Err(HttpError::new(501, "unsupported transfer coding"))]
            );
        } else {
            assert_eq!(errors, 0, "seed {i}: {outs:?}");
            assert!(!outs.is_empty(), "seed {i}");
        }
    }
}

#[test]
fn trailers_never_carry_framing_fields() {
    for trailer in [
        &b"Content-Length: 5"[..],
        b"content-length:5",
        b"CONTENT-LENGTH: 0",
        b"Transfer-Encoding: chunked",
        b"transfer-encoding: gzip",
        b"Host: evil.example",
        b"HOST:",
    ] {
        let body = cat(&[b"3\r\nabc\r\n0\r\nX-Ok: 1\r\n", trailer, b"\r\n\r\n"]);
        assert_eq!(
            Decoder::new(lim())
                .decode(&cat(&[CHUNKED_HEAD, &body]))
                .unwrap_err(),
            HttpError::new(400, "framing field in trailers"),
            "{}",
            String::from_utf8_lossy(trailer)
        );
        assert_eq!(chunked(lim(), &body), Err(400));
    }
    // Names that merely start like, end like or contain a forbidden one are ordinary trailers.
    for trailer in [
        &b"Content-Lengthx: 5"[..],
        b"Content-Lengt: 5",
        b"X-Content-Length: 5",
        b"Hostname: a",
        b"Hos: a",
        b"Transfer-Encodings: x",
        b"Content-Type: text/plain",
        b"H: a",
    ] {
        let body = cat(&[b"3\r\nabc\r\n0\r\n", trailer, b"\r\n\r\n"]);
        assert_eq!(
            chunked(lim(), &body),
            Ok(b"abc".to_vec()),
            "{}",
            String::from_utf8_lossy(trailer)
        );
    }
}

#[test]
fn chunk_extensions_are_bounded_across_the_body() {
    // Sixteen one-byte chunks, each with ";" and a 1023-byte name: 16 KiB of extensions exactly.
    let chunk = |name_len: usize| cat(&[b"1;", &vec![b'e'; name_len], b"\r\nx\r\n"]);
    let body = |extra: usize| {
        let mut b = Vec::new();
        for i in 0..16 {
            b.extend_from_slice(&chunk(if i == 0 { 1023 + extra } else { 1023 }));
        }
        b.extend_from_slice(b"0\r\n\r\n");
        b
    };
    assert_eq!(MAX_CHUNK_EXTENSIONS, 16 * 1024);
    assert_eq!(chunked(lim(), &body(0)), Ok(vec![b'x'; 16]));
    let mut d = Decoder::new(lim());
    assert_eq!(
        d.decode(&cat(&[CHUNKED_HEAD, &body(1)])).unwrap_err(),
        HttpError::new(400, "chunk extensions too long")
    );
    // Leading zeros of sizes count too, so a body cannot be padded out with them instead.
    let padded: Vec<u8> = cat(&[&b"0".repeat(MAX_CHUNK_LINE - 1), b"1\r\nx\r\n"]).repeat(5);
    assert_eq!(chunked(lim(), &cat(&[&padded, b"0\r\n\r\n"])), Err(400));
}

#[test]
fn reading_body_spans_head_to_end_of_body() {
    let mut d = Decoder::new(lim());
    assert!(!d.reading_body());
    let head = b"PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n";
    assert!(matches!(
        d.decode(&head[..head.len() - 1]),
        Ok(Decoded::NeedMore { consumed: 0 })
    ));
    assert!(!d.reading_body(), "the head is not complete yet");
    assert!(matches!(d.decode(head), Ok(Decoded::NeedMore { .. })));
    assert!(d.reading_body(), "head complete, no body yet");
    assert!(matches!(d.decode(b"ab"), Ok(Decoded::NeedMore { .. })));
    assert!(d.reading_body());
    assert!(matches!(d.decode(b"c"), Ok(Decoded::Complete { .. })));
    assert!(!d.reading_body());
    assert!(d.is_idle());

    // A bodiless request never enters the body state.
    assert!(matches!(
        d.decode(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
        Ok(Decoded::Complete { .. })
    ));
    assert!(!d.reading_body());

    // Chunked: true through the trailers, false once an error closes the body.
    let mut d = Decoder::new(lim());
    assert!(matches!(
        d.decode(&cat(&[CHUNKED_HEAD, b"1\r\nx\r\n0\r\nT: 1\r\n"])),
        Ok(Decoded::NeedMore { .. })
    ));
    assert!(d.reading_body());
    assert!(d.decode(b"\x00").is_err());
    assert!(!d.reading_body());
}

#[test]
fn continue_is_never_signalled_for_a_rejected_request() {
    for head in [
        // Over the body limit: 413 before any body is asked for.
        &b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1001\r\n\r\n"[..],
        // An expectation we cannot meet alongside the one we can.
        b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue, x-other\r\nContent-Length: 1\r\n\r\n",
        b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1, 1\r\n\r\n",
        b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
        b"PUT * HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
    ] {
        let mut d = Decoder::new(lim());
        assert!(d.decode(head).is_err(), "{}", String::from_utf8_lossy(head));
        assert!(!d.take_continue(), "{}", String::from_utf8_lossy(head));
    }
}

#[test]
fn requests_inside_bodies_stay_bodies() {
    let inner = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";
    let outer_cl = cat(&[
        format!(
            "POST /c HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
            inner.len()
        )
        .as_bytes(),
        inner,
    ]);
    let outer_chunked = cat(&[
        CHUNKED_HEAD,
        format!("{:x}\r\n", inner.len()).as_bytes(),
        inner,
        b"\r\n0\r\n\r\n",
    ]);
    // A chunk that holds what looks like the end of the body and a request after it.
    let fake_end = b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";
    let outer_fake_end = cat(&[
        CHUNKED_HEAD,
        format!("{:x}\r\n", fake_end.len()).as_bytes(),
        fake_end,
        b"\r\n0\r\n\r\n",
    ]);
    let after = b"GET /after HTTP/1.1\r\nHost: a\r\n\r\n";
    for (outer, body) in [
        (outer_cl, &inner[..]),
        (outer_chunked, inner),
        (outer_fake_end, fake_end),
    ] {
        let outs = run(lim(), &cat(&[&outer, after]));
        let targets: Vec<&str> = outs
            .iter()
            .map(|o| match o {
                Out::Req { target, .. } => target.as_str(),
                Out::Err(e) => panic!("{e}"),
            })
            .collect();
        assert_eq!(
            targets,
            ["/c", "/after"],
            "{}",
            String::from_utf8_lossy(&outer)
        );
        assert!(matches!(&outs[0], Out::Req { body: b, .. } if b == body));
    }
}

#[test]
fn crlf_pieces_cut_where_promised() {
    assert_eq!(crlf_pieces(b"ab\r\ncd\r\n"), [3, 1, 3, 1, 0]);
    assert_eq!(crlf_pieces(b"abc"), [3]);
}

#[test]
fn body_bytes_can_be_taken_as_they_arrive_and_limits_still_count_them() {
    let input = b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
                  5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    for step in 1..input.len() {
        let mut decoder = Decoder::new(lim());
        let (mut buf, mut fed, mut taken) = (Vec::new(), 0, Vec::new());
        let complete = loop {
            let end = (fed + step).min(input.len());
            buf.extend_from_slice(&input[fed..end]);
            fed = end;
            match decoder.decode(&buf).unwrap() {
                Decoded::NeedMore { consumed } => {
                    buf.drain(..consumed);
                    assert_eq!(decoder.body_buffered(), {
                        let now = decoder.take_body();
                        taken.extend_from_slice(&now);
                        now.len()
                    });
                    assert_eq!(decoder.body_buffered(), 0);
                }
                Decoded::Complete { body, .. } => break body,
            }
        };
        taken.extend_from_slice(&complete);
        assert_eq!(taken, b"hello world", "step {step}");
    }

    let mut decoder = Decoder::new(Limits { body: 8, ..lim() });
    let head = b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n";
    assert!(matches!(decoder.decode(head), Ok(Decoded::NeedMore { .. })));
    assert_eq!(decoder.take_body(), b"hello");
    assert_eq!(decoder.decode(b"5\r\nworld\r\n").unwrap_err().status, 413);
}

#[test]
fn a_byte_that_breaks_two_limits_reports_the_line_limit() {
    // The 21st byte of the request line is past both the line and the head limit: the line
    // limit is checked first, whether that byte arrives alone or in the middle of a read.
    let limits = Limits {
        request_line: 20,
        header_bytes: 20,
        ..lim()
    };
    let line = b"GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_eq!(
        run(limits, line),
        vec![Out::Err(HttpError::new(414, "request line too long"))]
    );
    // Likewise a field line: its 11th byte is the 36th of the head (25 bytes precede it).
    let limits = Limits {
        header_field_size: 10,
        header_bytes: 35,
        ..lim()
    };
    let field = b"GET / HTTP/1.1\r\nHost: a\r\nX: vvvvvvvvvvvvvvv\r\n\r\n";
    assert_eq!(
        run(limits, field),
        vec![Out::Err(HttpError::new(431, "header field too long"))]
    );
}
