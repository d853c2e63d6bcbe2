//! Handshake tests: RFC 6455's accept example, which requests ask for a WebSocket, and a table
//! of requests with what `check` makes of them. Heads are decoded from bytes by `http::Decoder`.

use super::*;
use crate::http::{Decoded, Decoder, Limits};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// RFC 6455 §1.3 (and Python's hashlib) give `...9kYGzzhZ...`, not the brief's `...9kYGxzhZ...`.
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// The head of a whole request made of `request_line`, `fields` and, if any, `body`.
fn head(request_line: &str, fields: &[&str], body: &str) -> RequestHead {
    let mut text = format!("{request_line}\r\n");
    for field in fields {
        text.push_str(field);
        text.push_str("\r\n");
    }
    text.push_str("\r\n");
    text.push_str(body);
    let limits = Limits {
        request_line: 1000,
        headers: 100,
        header_field_size: 1000,
        header_bytes: 10_000,
        body: 10_000,
    };
    match Decoder::new(limits).decode(text.as_bytes()) {
        Ok(Decoded::Complete { head, .. }) => head,
        other => panic!("not a whole valid request: {other:?}\n{text}"),
    }
}

/// A valid handshake's fields, with each change applied: a field replaced (same name), removed
/// (`"Name:"` alone) or added (a name not there).
fn fields(changes: &[&'static str]) -> Vec<&'static str> {
    let mut fields = vec![
        "Host: example.com",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ];
    for change in changes {
        let name = change.split(':').next().unwrap_or_default();
        let at = fields
            .iter()
            .position(|f| f.split(':').next() == Some(name));
        let removal = change.ends_with(':');
        match (at, removal) {
            (Some(at), true) => {
                fields.remove(at);
            }
            (Some(at), false) => fields[at] = change,
            (None, _) => fields.push(change),
        }
    }
    fields
}

fn valid() -> Handshake {
    Handshake {
        accept: ACCEPT.to_owned(),
        subprotocols: vec![],
    }
}

#[test]
fn accept_key_of_the_rfc_example() {
    assert_eq!(accept_key(KEY.as_bytes()), ACCEPT);
}

#[test]
fn which_requests_want_a_websocket() {
    let cases: [(&[&str], bool); 7] = [
        (&["Upgrade: websocket"], true),
        (&["Upgrade: WebSocket"], true),
        (&["Upgrade: h2c, websocket"], true),
        (&["Upgrade: h2c", "Upgrade: websocket"], true),
        (&["Upgrade: h2c"], false),
        (&["Upgrade: websockets"], false),
        (&["Connection: upgrade"], false),
    ];
    for (fields, expected) in cases {
        let mut all = vec!["Host: a"];
        all.extend_from_slice(fields);
        let head = head("GET / HTTP/1.1", &all, "");
        assert_eq!(wants_websocket(&head), expected, "{fields:?}");
    }
}

/// The head of a GET request with a valid handshake's fields, changed as [`fields`] says.
fn get(changes: &[&'static str]) -> RequestHead {
    head("GET /chat HTTP/1.1", &fields(changes), "")
}

/// The head of a GET request with these fields after a valid handshake's.
fn get_with(extra: &[&'static str]) -> RequestHead {
    head(
        "GET /chat HTTP/1.1",
        &[fields(&[]), extra.to_vec()].concat(),
        "",
    )
}

#[test]
fn check_table() {
    let offered = |subprotocols: &[&str]| {
        Ok(Handshake {
            subprotocols: subprotocols.iter().map(|s| s.to_string()).collect(),
            ..valid()
        })
    };
    let other_key = "AAAAAAAAAAAAAAAAAAAAAA==";
    let cases: Vec<(&str, RequestHead, Result<Handshake, Refusal>)> = vec![
        ("valid", get(&[]), Ok(valid())),
        (
            "keep-alive, Upgrade",
            get(&["Connection: keep-alive, Upgrade"]),
            Ok(valid()),
        ),
        (
            "upgrade in a second Connection field",
            head(
                "GET /chat HTTP/1.1",
                &[
                    fields(&["Connection: keep-alive"]),
                    vec!["Connection: upgrade"],
                ]
                .concat(),
                "",
            ),
            Ok(valid()),
        ),
        (
            "Content-Length: 0",
            get(&["Content-Length: 0"]),
            Ok(valid()),
        ),
        (
            "subprotocols across two fields",
            get_with(&[
                "Sec-WebSocket-Protocol: chat, , superchat ",
                "Sec-WebSocket-Protocol: v2.json,",
            ]),
            offered(&["chat", "superchat", "v2.json"]),
        ),
        (
            "another key",
            get(&["Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA=="]),
            Ok(Handshake {
                accept: accept_key(other_key.as_bytes()),
                ..valid()
            }),
        ),
        (
            "wrong method",
            head("POST /chat HTTP/1.1", &fields(&[]), ""),
            Err(NOT_GET),
        ),
        (
            "HTTP/1.0",
            head("GET /chat HTTP/1.0", &fields(&[]), ""),
            Err(NOT_HTTP11),
        ),
        ("no Connection", get(&["Connection:"]), Err(NO_UPGRADE)),
        (
            "Connection: keep-alive",
            get(&["Connection: keep-alive"]),
            Err(NO_UPGRADE),
        ),
        ("no key", get(&["Sec-WebSocket-Key:"]), Err(NO_KEY)),
        (
            "key not base64",
            get(&["Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ!!"]),
            Err(BAD_KEY),
        ),
        (
            "key of 15 bytes",
            get(&["Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j"]),
            Err(BAD_KEY),
        ),
        (
            "key of 17 bytes",
            get(&["Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZSE="]),
            Err(BAD_KEY),
        ),
        (
            "several keys",
            get_with(&["Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA=="]),
            Err(SEVERAL_KEYS),
        ),
        (
            "version 8",
            get(&["Sec-WebSocket-Version: 8"]),
            Err(Refusal::Version),
        ),
        (
            "no version",
            get(&["Sec-WebSocket-Version:"]),
            Err(Refusal::Version),
        ),
        (
            "several versions",
            get_with(&["Sec-WebSocket-Version: 13"]),
            Err(SEVERAL_VERSIONS),
        ),
        (
            "a Content-Length body",
            head("GET /chat HTTP/1.1", &fields(&["Content-Length: 2"]), "hi"),
            Err(BODY),
        ),
        (
            "a chunked body",
            head(
                "GET /chat HTTP/1.1",
                &fields(&["Transfer-Encoding: chunked"]),
                "0\r\n\r\n",
            ),
            Err(BODY),
        ),
    ];
    for (name, head, expected) in cases {
        assert!(wants_websocket(&head), "{name}");
        assert_eq!(check(&head), expected, "{name}");
    }
}

#[test]
fn a_subprotocol_that_is_not_utf8_is_refused() {
    let mut head = get(&[]);
    head.headers
        .push(("Sec-WebSocket-Protocol".to_owned(), vec![b'c', 0xFF]));
    assert_eq!(check(&head), Err(PROTOCOL_NOT_UTF8));
}

#[test]
fn refusal_status_and_reason() {
    assert_eq!(NOT_GET.status(), 400);
    assert_eq!(NOT_GET.reason(), "the WebSocket handshake is not a GET");
    assert_eq!(Refusal::Version.status(), 426);
    assert!(Refusal::Version.reason().contains("Sec-WebSocket-Version"));
}
