//! WebSockets of ASGI applications (RFC 6455 in tine's event loop): `tests/python/apps/ws_app.py`
//! and a FastAPI route, through a client written here from the RFC (masking, fragments,
//! control frames), independent of tine's own codec.
//!
//! As in the rest of `asgi`, the tests in `portable` and `frameworks` hold for uvicorn too
//! (`TINE_ASGI_REFERENCE=uvicorn`, with the `websockets` implementation); `tine_only` holds
//! tine's own promises: its limits, its pings, its close codes for broken frames, what a reload
//! does to open WebSockets, and what they cost.

use std::io::{Read, Write};
use std::net::TcpStream;

use super::{Asgi, Spec, start, start_tine};
use crate::util::{Response, WAIT, read_response_head};

/// The client's key: RFC 6455's example, whose accept value §1.3 gives.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
pub(super) const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
pub(super) const PING: u8 = 0x9;
pub(super) const PONG: u8 = 0xA;

/// One frame as it came from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Frame {
    fin: bool,
    rsv: u8,
    pub(super) opcode: u8,
    masked: bool,
    pub(super) payload: Vec<u8>,
}

impl Frame {
    /// The code and reason of a close frame (None for an empty one).
    fn close(&self) -> Option<(u16, String)> {
        assert_eq!(self.opcode, CLOSE, "not a close frame: {self:?}");
        (self.payload.len() >= 2).then(|| {
            (
                u16::from_be_bytes([self.payload[0], self.payload[1]]),
                String::from_utf8(self.payload[2..].to_vec()).expect("a UTF-8 close reason"),
            )
        })
    }

    pub(super) fn text(&self) -> String {
        assert_eq!(self.opcode, TEXT, "not a text frame: {self:?}");
        String::from_utf8(self.payload.clone()).expect("UTF-8 in a text frame")
    }
}

/// A WebSocket client, from the RFC: its frames masked, the server's read and checked.
pub(super) struct Ws {
    pub(super) stream: TcpStream,
    /// The 101's head.
    pub(super) response: Response,
    /// A counter for the masks, so they differ frame to frame.
    pub(super) masks: u32,
}

/// The handshake's request for `target`, with `extra` header lines (each ending in CRLF).
pub(super) fn handshake(target: &str, extra: &str) -> String {
    format!(
        "GET {target} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// Sends `request` and reads the response's head (a 101's frames stay in the socket).
fn open_raw(w: &Asgi, request: &str) -> (TcpStream, Response) {
    let mut stream = w.connect();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let response = read_response_head(&mut stream)
        .unwrap_or_else(|e| panic!("{}: {e}; log:\n{}", w.name(), w.log()));
    (stream, response)
}

impl Ws {
    /// Opens a WebSocket to `target`, which must be accepted.
    pub(super) fn open(w: &Asgi, target: &str) -> Ws {
        Ws::open_with(w, target, "")
    }

    /// Opens a WebSocket to `target` with `extra` header lines; it must be accepted.
    fn open_with(w: &Asgi, target: &str, extra: &str) -> Ws {
        let (stream, response) = open_raw(w, &handshake(target, extra));
        assert_eq!(
            response.status,
            101,
            "{}: {response:?}; log:\n{}",
            w.name(),
            w.log()
        );
        assert_eq!(response.header("Sec-WebSocket-Accept"), Some(ACCEPT));
        assert!(
            response
                .header("Upgrade")
                .is_some_and(|v| v.eq_ignore_ascii_case("websocket")),
            "{response:?}"
        );
        assert!(
            response
                .header("Connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("upgrade")),
            "{response:?}"
        );
        Ws {
            stream,
            response,
            masks: 0x1234_5678,
        }
    }

    /// Sends one frame: `first` is FIN, RSV1-3 and the opcode; masked unless `unmasked`.
    fn send_raw(&mut self, first: u8, payload: &[u8], unmasked: bool) {
        let mut frame = vec![first];
        let mask_bit = if unmasked { 0 } else { 0x80 };
        match payload.len() {
            n if n < 126 => frame.push(mask_bit | n as u8),
            n if n <= 0xFFFF => {
                frame.push(mask_bit | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(mask_bit | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if unmasked {
            frame.extend_from_slice(payload);
        } else {
            self.masks = self.masks.wrapping_mul(2_654_435_761).wrapping_add(1);
            let mask = self.masks.to_be_bytes();
            frame.extend_from_slice(&mask);
            frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        }
        self.stream.write_all(&frame).unwrap();
    }

    /// Sends one whole frame with FIN set.
    pub(super) fn send(&mut self, opcode: u8, payload: &[u8]) {
        self.send_raw(0x80 | opcode, payload, false);
    }

    pub(super) fn send_text(&mut self, text: &str) {
        self.send(TEXT, text.as_bytes());
    }

    pub(super) fn send_close(&mut self, code: u16, reason: &str) {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason.as_bytes());
        self.send(CLOSE, &payload);
    }

    /// The next frame from the server; it must come within [`WAIT`].
    fn read_frame(&mut self) -> Frame {
        self.try_read_frame()
            .unwrap_or_else(|e| panic!("no frame from the server: {e}"))
    }

    /// The next frame, or why none came (the connection's end, a timeout).
    fn try_read_frame(&mut self) -> Result<Frame, String> {
        let mut head = [0u8; 2];
        self.read_exact(&mut head)?;
        let len = match head[1] & 0x7F {
            126 => {
                let mut n = [0u8; 2];
                self.read_exact(&mut n)?;
                u64::from(u16::from_be_bytes(n))
            }
            127 => {
                let mut n = [0u8; 8];
                self.read_exact(&mut n)?;
                u64::from_be_bytes(n)
            }
            n => u64::from(n),
        };
        let masked = head[1] & 0x80 != 0;
        let mut mask = [0u8; 4];
        if masked {
            self.read_exact(&mut mask)?;
        }
        let mut payload = vec![0u8; len as usize];
        self.read_exact(&mut payload)?;
        Ok(Frame {
            fin: head[0] & 0x80 != 0,
            rsv: (head[0] >> 4) & 0x7,
            opcode: head[0] & 0x0F,
            masked,
            payload,
        })
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), String> {
        self.stream.read_exact(buf).map_err(|e| e.to_string())
    }

    /// The next data frame, checked as a server's must be: unmasked, no RSV bits, whole.
    pub(super) fn recv(&mut self) -> Frame {
        let frame = self.read_frame();
        assert!(
            !frame.masked,
            "a server frame must not be masked: {frame:?}"
        );
        assert_eq!(frame.rsv, 0, "{frame:?}");
        frame
    }

    pub(super) fn recv_text(&mut self) -> String {
        self.recv().text()
    }

    /// Reads until the server's close frame; returns its code and reason. Data frames before
    /// it are skipped.
    pub(super) fn recv_close(&mut self) -> Option<(u16, String)> {
        loop {
            let frame = self.recv();
            if frame.opcode == CLOSE {
                return frame.close();
            }
        }
    }

    /// After the close handshake: the server closes the TCP connection (RFC 6455 §7.1.1).
    pub(super) fn expect_end(&mut self) {
        let mut byte = [0u8; 1];
        match self.stream.read(&mut byte) {
            Ok(0) => {}
            Ok(_) => panic!("bytes after the close frame"),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("the server did not close the connection: {e}"),
        }
    }

    /// The whole close handshake begun by the client: the server echoes the code and closes.
    pub(super) fn close(mut self, code: u16) {
        self.send_close(code, "done");
        assert_eq!(self.recv_close().map(|(c, _)| c), Some(code));
        self.expect_end();
    }
}

/// The pattern /flood sends: byte i of message k is (k + i) % 251.
pub(super) fn flood_message(k: usize, size: usize) -> Vec<u8> {
    (0..size).map(|i| ((k + i) % 251) as u8).collect()
}

mod portable {
    use super::*;

    #[test]
    fn echoes_text_and_binary_messages() {
        let w = start(&Spec::new("ws_app:app"));
        let mut ws = Ws::open(&w, "/echo");
        ws.send_text("hello, world");
        assert_eq!(ws.recv_text(), "hello, world");
        ws.send_text("héllo ✓ 🎉");
        assert_eq!(ws.recv_text(), "héllo ✓ 🎉");
        let bytes: Vec<u8> = (0..=255).collect();
        ws.send(BINARY, &bytes);
        let frame = ws.recv();
        assert_eq!((frame.opcode, frame.fin), (BINARY, true));
        assert_eq!(frame.payload, bytes);
        // Empty messages are messages too.
        ws.send(TEXT, b"");
        assert_eq!(ws.recv_text(), "");
        ws.close(1000);
    }

    #[test]
    fn a_fragmented_message_arrives_whole_with_pings_between_its_fragments() {
        let w = start(&Spec::new("ws_app:app"));
        let mut ws = Ws::open(&w, "/echo");
        ws.send_raw(TEXT, "frag".as_bytes(), false);
        ws.send(PING, b"in between");
        let pong = ws.recv();
        assert_eq!(
            (pong.opcode, pong.payload.as_slice()),
            (PONG, &b"in between"[..])
        );
        // A multi-byte character split across fragments.
        let snowman = "☃".as_bytes();
        ws.send_raw(CONTINUATION, &[b'-', snowman[0]], false);
        ws.send_raw(0x80 | CONTINUATION, &snowman[1..], false);
        assert_eq!(ws.recv_text(), "frag-☃");
        ws.close(1000);
    }

    #[test]
    fn one_mib_messages_go_both_ways() {
        let w = start(&Spec::new("ws_app:app"));
        let mut ws = Ws::open(&w, "/echo");
        let big = flood_message(7, 1 << 20);
        ws.send(BINARY, &big);
        let frame = ws.recv();
        assert_eq!(frame.payload.len(), big.len());
        assert!(frame.payload == big, "the echo differs");
        // The same in 64 fragments.
        for (i, piece) in big.chunks(big.len() / 64).enumerate() {
            let opcode = if i == 0 { BINARY } else { CONTINUATION };
            let fin = if i == 63 { 0x80 } else { 0 };
            ws.send_raw(fin | opcode, piece, false);
        }
        assert!(ws.recv().payload == big, "the echo differs");
        ws.close(1000);
    }

    #[test]
    fn a_ping_is_answered_with_its_payload() {
        let w = start(&Spec::new("ws_app:app"));
        let mut ws = Ws::open(&w, "/echo");
        ws.send(PING, b"are you there");
        let pong = ws.recv();
        assert_eq!(pong.opcode, PONG);
        assert_eq!(pong.payload, b"are you there");
        // An unasked pong is ignored.
        ws.send(PONG, b"unasked");
        ws.send_text("still here");
        assert_eq!(ws.recv_text(), "still here");
        ws.close(1000);
    }

    #[test]
    fn a_close_from_the_client_is_echoed_and_the_application_gets_its_code() {
        let w = start(&Spec::new("ws_app:app"));
        let mut ws = Ws::open(&w, "/echo?tag=client");
        ws.send_text("one");
        assert_eq!(ws.recv_text(), "one");
        ws.send_close(4321, "see you");
        assert_eq!(ws.recv_close().map(|(c, _)| c), Some(4321));
        ws.expect_end();
        assert_eq!(w.wait_recorded("closed-client"), "4321 see you");
    }

    #[test]
    fn the_application_closes_with_its_code_and_reason() {
        let w = start(&Spec::new("ws_app:app"));
        let mut ws = Ws::open(&w, "/close?code=4001&reason=bye%20now&tag=server");
        assert_eq!(ws.recv_text(), "hello");
        assert_eq!(ws.recv_close(), Some((4001, "bye now".to_owned())));
        ws.send_close(4001, "");
        ws.expect_end();
        assert_eq!(
            w.wait_recorded("closed-server").split(' ').next(),
            Some("4001")
        );
    }

    #[test]
    fn an_application_that_returns_closes_with_1000() {
        let w = start(&Spec::new("ws_app:app"));
        let mut ws = Ws::open(&w, "/return");
        assert_eq!(ws.recv_text(), "bye");
        if w.is_tine() {
            // uvicorn closes the connection without a close frame (the client sees 1006);
            // tine completes the close handshake with a normal closure.
            assert_eq!(ws.recv_close().map(|(c, _)| c), Some(1000));
            ws.send_close(1000, "");
        }
        ws.expect_end();
    }

    #[test]
    fn a_close_before_accept_is_a_403() {
        let w = start(&Spec::new("ws_app:app"));
        let (_, response) = open_raw(&w, &handshake("/refuse", ""));
        assert_eq!(response.status, 403, "{response:?}");
    }

    #[test]
    fn after_a_refusal_receive_says_the_client_is_gone() {
        let w = start(&Spec::new("ws_app:app"));
        let (_, response) = open_raw(&w, &handshake("/refuse-then-receive?tag=r", ""));
        assert_eq!(response.status, 403, "{response:?}");
        assert_eq!(
            w.wait_recorded("after-refusal-r").split(' ').next(),
            Some("websocket.disconnect")
        );
    }

    #[test]
    fn a_denial_response_is_sent_as_the_application_wrote_it() {
        let w = start(&Spec::new("ws_app:app"));
        let (mut stream, response) = open_raw(&w, &handshake("/deny", ""));
        assert_eq!(response.status, 401, "{response:?}");
        assert_eq!(response.header("Content-Length"), Some("9"));
        let mut body = vec![0u8; 9];
        stream.read_exact(&mut body).unwrap();
        assert_eq!(body, b"no entry\n");
    }

    #[test]
    fn the_application_chooses_a_subprotocol_and_adds_headers() {
        let w = start(&Spec::new("ws_app:app"));
        let ws = Ws::open_with(
            &w,
            "/echo?choose=graphql-ws,chat&header=yes",
            "Sec-WebSocket-Protocol: soap, chat\r\nSec-WebSocket-Protocol: graphql-ws\r\n",
        );
        assert_eq!(
            ws.response.header("Sec-WebSocket-Protocol"),
            Some("graphql-ws")
        );
        assert_eq!(ws.response.header("x-extra"), Some("yes"));
        ws.close(1000);
        let ws = Ws::open_with(&w, "/echo?choose=mqtt", "Sec-WebSocket-Protocol: chat\r\n");
        assert_eq!(ws.response.header("Sec-WebSocket-Protocol"), None);
        ws.close(1000);
    }

    #[test]
    fn an_application_that_raises_before_accepting_gets_a_500() {
        let w = start(&Spec::new("ws_app:app"));
        let (_, response) = open_raw(&w, &handshake("/raise-before", ""));
        assert_eq!(response.status, 500, "{response:?}");
    }

    #[test]
    fn a_message_too_big_is_refused_with_1009() {
        let w = start(&Spec::new("ws_app:app").max_message(64 * 1024));
        let mut ws = Ws::open(&w, "/echo");
        ws.send(BINARY, &vec![7u8; 64 * 1024]);
        assert_eq!(ws.recv().payload.len(), 64 * 1024);
        ws.send(BINARY, &vec![7u8; 64 * 1024 + 1]);
        assert_eq!(ws.recv_close().map(|(c, _)| c), Some(1009));
    }

    #[test]
    fn invalid_utf8_in_a_text_message_is_refused_with_1007() {
        let w = start(&Spec::new("ws_app:app"));
        let mut ws = Ws::open(&w, "/echo");
        ws.send(TEXT, b"caf\xc3");
        assert_eq!(ws.recv_close().map(|(c, _)| c), Some(1007));
    }

    #[test]
    fn broken_frames_are_refused_with_1002() {
        let w = start(&Spec::new("ws_app:app"));
        // An unmasked client frame; a reserved bit; a reserved opcode; a fragmented ping; a
        // ping over 125 bytes; a continuation that continues nothing; a close of one byte.
        let cases: [(&str, u8, Vec<u8>, bool); 7] = [
            ("unmasked", 0x80 | TEXT, b"hi".to_vec(), true),
            ("rsv1", 0x80 | 0x40 | TEXT, b"hi".to_vec(), false),
            ("opcode 3", 0x80 | 0x3, b"hi".to_vec(), false),
            ("fragmented ping", PING, b"hi".to_vec(), false),
            ("long ping", 0x80 | PING, vec![1; 126], false),
            (
                "lone continuation",
                0x80 | CONTINUATION,
                b"hi".to_vec(),
                false,
            ),
            ("one-byte close", 0x80 | CLOSE, vec![3], false),
        ];
        for (what, first, payload, unmasked) in cases {
            let mut ws = Ws::open(&w, "/echo");
            ws.send_raw(first, &payload, unmasked);
            assert_eq!(ws.recv_close().map(|(c, _)| c), Some(1002), "{what}");
            ws.expect_end();
        }
    }

    #[test]
    fn malformed_handshakes_are_refused_before_the_application() {
        let w = start(&Spec::new("ws_app:app"));
        let base =
            "GET /echo HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n";
        let (_, response) = open_raw(&w, &format!("{base}Sec-WebSocket-Version: 13\r\n\r\n"));
        assert_eq!(response.status, 400, "no key: {response:?}");
        let (_, response) = open_raw(
            &w,
            &format!("{base}Sec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n"),
        );
        assert_eq!(response.status, 400, "a key of 5 bytes: {response:?}");
        let (_, response) = open_raw(
            &w,
            &format!("{base}Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 8\r\n\r\n"),
        );
        if w.is_tine() {
            // RFC 6455 §4.4's answer; uvicorn answers 400.
            assert_eq!(response.status, 426, "version 8: {response:?}");
            assert_eq!(response.header("Sec-WebSocket-Version"), Some("13"));
        } else {
            assert_eq!(response.status, 400, "version 8: {response:?}");
        }
    }
}

/// What /scope sent: `key<TAB>type<TAB>repr` lines, as asgi_app's /scope answers.
fn scope_of(ws: &mut Ws) -> super::Scope {
    let text = ws.recv_text();
    super::Scope::parse(&Response {
        status: 200,
        headers: Vec::new(),
        body: text.into_bytes(),
    })
}

mod scope {
    use super::*;

    #[test]
    fn the_websocket_scope_has_what_asgi_says() {
        let w = start(&Spec::new("ws_app:app"));
        let mut ws = Ws::open_with(
            &w,
            "/scope?a=1&b=%C3%A9",
            "Sec-WebSocket-Protocol: chat, superchat\r\nX-Custom: yes\r\n",
        );
        let scope = scope_of(&mut ws);
        assert_eq!(scope.repr("type", "str"), "'websocket'");
        assert_eq!(scope.repr("scheme", "str"), "'ws'");
        assert_eq!(scope.repr("http_version", "str"), "'1.1'");
        assert_eq!(scope.repr("path", "str"), "'/scope'");
        assert_eq!(scope.repr("raw_path", "bytes"), "b'/scope'");
        assert_eq!(scope.repr("query_string", "bytes"), "b'a=1&b=%C3%A9'");
        assert_eq!(scope.repr("root_path", "str"), "''");
        assert_eq!(scope.repr("subprotocols", "list"), "['chat', 'superchat']");
        assert!(!scope.has("method"), "a websocket scope has no method");
        assert!(
            scope.repr("asgi", "dict").contains("'version': '3.0'"),
            "{}",
            scope.repr("asgi", "dict")
        );
        assert!(
            scope
                .repr("extensions", "dict")
                .contains("'websocket.http.response': {}"),
            "the denial response extension is offered"
        );
        let client = scope.repr("client", "tuple");
        assert!(client.starts_with("('127.0.0.1', "), "{client}");
        assert_eq!(
            scope.repr("server", "tuple"),
            format!("('127.0.0.1', {})", w.addr().port())
        );
        let headers = scope.headers();
        for header in [
            "(b'upgrade', b'websocket')",
            "(b'sec-websocket-version', b'13')",
            "(b'x-custom', b'yes')",
        ] {
            assert!(
                headers.iter().any(|h| h == header),
                "no {header} in {headers:?}"
            );
        }
        assert_eq!(ws.recv_close().map(|(c, _)| c), Some(1000));
    }
}

mod tine_only {
    use super::*;
    use crate::util::{python_apps, toml_string};

    #[test]
    fn an_upgrade_to_a_wsgi_application_is_a_plain_http_request() {
        // As under gunicorn: the application sees the request and answers it; no 101.
        let config = crate::reference::ServerSpec::default().tine_config(
            "",
            &format!(
                "[app]\nhandler = \"python\"\napp = \"validated_app:application\"\npythonpath = [{}]\n",
                toml_string(&python_apps().to_string_lossy())
            ),
        );
        let w = Asgi::start_tine(config, crate::util::TempDir::new());
        let (_, response) = open_raw(&w, &handshake("/", ""));
        assert_eq!(response.status, 200, "{response:?}");
        assert_eq!(response.header("Upgrade"), None);
    }

    #[test]
    fn a_message_that_cannot_be_sent_raises_in_the_application_and_the_websocket_goes_on() {
        let w = start_tine(&Spec::new("ws_app:app"));
        let mut ws = Ws::open(&w, "/bad-text");
        ws.send_text("go");
        assert_eq!(ws.recv_text(), "refused: UnicodeEncodeError");
        assert_eq!(ws.recv_close().map(|(c, _)| c), Some(1000));
        ws.send_close(1000, "");
        ws.expect_end();
    }

    #[test]
    fn the_application_raising_after_accept_closes_with_1011() {
        let w = start_tine(&Spec::new("ws_app:app"));
        let mut ws = Ws::open(&w, "/raise-after");
        assert_eq!(ws.recv_text(), "boom");
        assert_eq!(ws.recv_close().map(|(c, _)| c), Some(1011));
        ws.send_close(1011, "");
        ws.expect_end();
        w.wait_log("deliberate failure after websocket.accept");
    }
}

mod frameworks {
    use super::*;

    #[test]
    fn a_fastapi_websocket_route_works_as_under_uvicorn() {
        let w = start(&Spec::new("fastapi_app:app"));
        let mut ws = Ws::open_with(&w, "/ws?name=tester", "Sec-WebSocket-Protocol: chat\r\n");
        assert_eq!(ws.response.header("Sec-WebSocket-Protocol"), Some("chat"));
        assert_eq!(
            ws.recv_text(),
            r#"{"hello":"tester","motto":"made in the lifespan"}"#
        );
        for text in ["hi", "héllo", ""] {
            ws.send_text(text);
            assert_eq!(ws.recv_text(), format!("echo: {text}"));
        }
        ws.send_text("close");
        assert_eq!(ws.recv_close(), Some((4000, "asked to".to_owned())));
        ws.send_close(4000, "");
        ws.expect_end();
        // A route that does not exist: Starlette closes before accepting (403).
        let (_, response) = open_raw(&w, &handshake("/nowhere", ""));
        assert_eq!(response.status, 403, "{response:?}");
    }
}
