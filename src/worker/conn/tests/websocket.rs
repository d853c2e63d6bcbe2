//! A WebSocket's connection: the handshake handed over, the `101`, frames both ways, pings,
//! the close handshake and its codes, and the flow control, against the in-memory socket.

use super::super::*;
use super::harness::*;
use crate::handler::Response;
use crate::websocket::Message;

/// A concurrent application's settings, for WebSockets.
fn ws_settings() -> Settings {
    let mut settings = settings();
    settings.concurrent_app = true;
    settings.websocket.max_message = 1000;
    settings
}

const HANDSHAKE: &str = "GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\
     Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
     Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, superchat\r\n\r\n";

/// A client frame: FIN and opcode in `first`, masked with a fixed key.
fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mask = [1u8, 2, 3, 4];
    let mut out = vec![first, 0x80 | payload.len() as u8];
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// A server frame, as tine must write it: unmasked, FIN set.
fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut out = vec![0x80 | opcode, payload.len() as u8];
    out.extend_from_slice(payload);
    out
}

fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    payload
}

/// A connection whose handshake went to the application, which accepted it.
fn accepted() -> Test {
    let mut test = Test::with(ws_settings());
    test.send(HANDSHAKE.as_bytes());
    let actions = test.event();
    assert_eq!(names(&actions), ["upgrade /chat [\"chat\", \"superchat\"]"]);
    assert_eq!(test.state(), "in app");
    let actions = test.run(|conn, ctx| {
        conn.accept(
            Some("chat".to_owned()),
            vec![("X-Extra".to_owned(), b"1".to_vec())],
            ctx,
        );
    });
    // Logged as a 101, then the application is asked for its first message.
    assert_eq!(names(&actions), ["log 101", "upgraded", "pull"]);
    let head = test.received();
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    for line in [
        "Upgrade: websocket\r\n",
        "Connection: Upgrade\r\n",
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n",
        "Sec-WebSocket-Protocol: chat\r\n",
        "X-Extra: 1\r\n",
    ] {
        assert!(head.contains(line), "no {line:?} in {head}");
    }
    assert!(
        head.ends_with("\r\n\r\n") && !head.contains("Content-Length"),
        "{head}"
    );
    assert_eq!(test.state(), "websocket");
    test
}

fn written(test: &mut Test) -> Vec<u8> {
    std::mem::take(&mut test.conn.stream.written)
}

#[test]
fn a_message_goes_to_the_application_when_it_asks() {
    let mut test = accepted();
    let actions = test.run(Conn::want_body);
    assert!(names(&actions).is_empty());
    test.send(&frame(0x81, b"hello"));
    let actions = test.event();
    assert_eq!(names(&actions), ["message Text(\"hello\")"]);
}

#[test]
fn a_message_not_asked_for_is_held_and_reading_stops() {
    let mut test = accepted();
    let mut both = frame(0x82, b"one");
    both.extend(frame(0x82, b"two"));
    test.send(&both);
    assert!(names(&test.event()).is_empty());
    // The first is held; the second waits unread.
    assert_eq!(
        names(&test.run(Conn::want_body)),
        ["message Binary([111, 110, 101])"]
    );
    assert_eq!(
        names(&test.run(Conn::want_body)),
        ["message Binary([116, 119, 111])"]
    );
}

#[test]
fn pings_are_answered_without_the_application() {
    let mut test = accepted();
    test.send(&frame(0x89, b"ping?"));
    assert!(names(&test.event()).is_empty());
    assert_eq!(written(&mut test), server_frame(0xA, b"ping?"));
}

#[test]
fn the_application_messages_are_framed_and_pulled_one_at_a_time() {
    let mut test = accepted();
    let actions = test.run(|conn, ctx| conn.ws_send(Message::Text("hi".into()), ctx));
    assert_eq!(names(&actions), ["pull"]);
    assert_eq!(written(&mut test), server_frame(0x1, b"hi"));
    let actions = test.run(|conn, ctx| conn.ws_send(Message::Binary(vec![]), ctx));
    assert_eq!(names(&actions), ["pull"]);
    assert_eq!(written(&mut test), server_frame(0x2, b""));
}

#[test]
fn a_slow_reader_stops_the_pulls() {
    let mut test = accepted();
    test.conn.stream.write_room = 0;
    let big = vec![b'x'; 70 * 1024];
    // Over LOW_WATER unsent: no pull until the client reads.
    let actions = test.run(|conn, ctx| conn.ws_send(Message::Binary(big), ctx));
    assert!(names(&actions).is_empty());
    test.conn.stream.write_room = usize::MAX;
    assert_eq!(names(&test.event()), ["pull"]);
    assert_eq!(written(&mut test).len(), 10 + 70 * 1024);
}

#[test]
fn a_close_from_the_client_is_echoed_then_the_connection_closes() {
    let mut test = accepted();
    test.send(&frame(0x88, &close_payload(4000, "bye")));
    let actions = test.event();
    assert_eq!(names(&actions), ["closed 4000 \"bye\"", "close"]);
    assert_eq!(
        written(&mut test),
        server_frame(0x8, &close_payload(4000, ""))
    );
    assert_eq!(test.state(), "closed");
}

#[test]
fn an_empty_close_is_echoed_empty_and_told_as_1005() {
    let mut test = accepted();
    test.send(&frame(0x88, b""));
    assert_eq!(names(&test.event()), ["closed 1005 \"\"", "close"]);
    assert_eq!(written(&mut test), server_frame(0x8, b""));
}

#[test]
fn the_application_closes_and_waits_for_the_clients_close() {
    let mut test = accepted();
    let actions = test.run(|conn, ctx| conn.ws_app_close(4001, "done", ctx));
    assert!(names(&actions).is_empty());
    assert_eq!(
        written(&mut test),
        server_frame(0x8, &close_payload(4001, "done"))
    );
    assert_eq!(test.state(), "websocket");
    // Messages after the close are dropped; the client's close ends it.
    let mut late = frame(0x81, b"late");
    late.extend(frame(0x88, &close_payload(4001, "")));
    test.send(&late);
    assert_eq!(names(&test.event()), ["closed 4001 \"\"", "close"]);
}

#[test]
fn a_close_code_that_may_not_be_sent_becomes_1011() {
    let mut test = accepted();
    test.run(|conn, ctx| conn.ws_app_close(1005, "", ctx));
    assert_eq!(
        written(&mut test),
        server_frame(0x8, &close_payload(1011, ""))
    );
}

#[test]
fn a_protocol_error_sends_its_code_and_closes() {
    let mut test = accepted();
    // Unmasked.
    test.send(&[0x81, 0x02, b'h', b'i']);
    let actions = names(&test.event());
    assert_eq!(actions.len(), 2, "{actions:?}");
    assert!(actions[0].starts_with("closed 1002 "), "{actions:?}");
    assert_eq!(actions[1], "close");
    let sent = written(&mut test);
    assert_eq!(
        &sent[..4],
        &[0x88, sent[1], 0x03, 0xEA],
        "a close frame with 1002"
    );
    assert_eq!(test.state(), "closed");
}

#[test]
fn the_end_of_the_stream_without_a_close_is_1006() {
    let mut test = accepted();
    test.run(Conn::want_body);
    test.close_input();
    assert_eq!(names(&test.event()), ["closed 1006 \"\"", "close"]);
}

#[test]
fn a_held_message_reaches_the_application_before_the_close() {
    let mut test = accepted();
    test.send(&frame(0x81, b"last words"));
    assert!(names(&test.event()).is_empty());
    test.close_input();
    // Reading stopped at the held message; a stop closes it.
    let actions = test.run(Conn::close);
    assert_eq!(
        names(&actions),
        ["message Text(\"last words\")", "closed 1006 \"\"", "close"]
    );
}

#[test]
fn a_stopping_worker_says_going_away() {
    let mut test = accepted();
    test.run(Conn::go_away);
    assert_eq!(
        written(&mut test),
        server_frame(0x8, &close_payload(1001, "the server is going away"))
    );
    test.send(&frame(0x88, &close_payload(1001, "")));
    assert_eq!(names(&test.event()), ["closed 1001 \"\"", "close"]);
}

#[test]
fn a_silent_client_is_pinged_then_closed_when_no_pong_comes() {
    let mut test = accepted();
    let interval = test.settings.websocket.ping_interval;
    let timeout = test.settings.websocket.ping_timeout;
    assert_eq!(test.expiry_in(interval / 2), None);
    let due = Expired::WebSocket(WsTimer::PingDue);
    assert_eq!(test.expiry_in(interval), Some(due));
    test.run(|conn, ctx| conn.on_expired(due, ctx));
    assert_eq!(written(&mut test), server_frame(0x9, b"tine"));
    // A pong (anything) resets the clock.
    test.send(&frame(0x8A, b"tine"));
    test.event();
    assert_eq!(test.expiry_in(interval / 2), None);
    assert_eq!(test.expiry_in(interval), Some(due));
    // Pinged again, the client stays silent.
    test.run(|conn, ctx| conn.on_expired(due, ctx));
    assert_eq!(test.expiry_in(timeout / 2), None);
    let late = Expired::WebSocket(WsTimer::PongLate);
    assert_eq!(test.expiry_in(timeout), Some(late));
    let actions = test.run(|conn, ctx| conn.on_expired(late, ctx));
    assert_eq!(
        names(&actions),
        ["closed 1011 \"keepalive ping timeout\"", "close"]
    );
}

#[test]
fn a_client_that_stops_reading_is_closed_after_body_timeout() {
    let mut test = accepted();
    test.conn.stream.write_room = 3;
    test.run(|conn, ctx| conn.ws_send(Message::Text("not read".into()), ctx));
    let stall = test.settings.body_timeout;
    let over = Expired::WebSocket(WsTimer::Over);
    assert_eq!(test.expiry_in(stall), Some(over));
    let actions = test.run(|conn, ctx| conn.on_expired(over, ctx));
    assert_eq!(names(&actions), ["closed 1006 \"\"", "close"]);
}

#[test]
fn a_handshake_to_a_wsgi_application_is_plain_http() {
    let mut test = Test::new();
    test.send(HANDSHAKE.as_bytes());
    assert_eq!(names(&test.event()), ["dispatch GET /chat"]);
}

#[test]
fn a_malformed_handshake_is_refused() {
    let mut test = Test::with(ws_settings());
    test.send(
        b"GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
    );
    assert_eq!(names(&test.event()), ["log 426"]);
    let response = test.received();
    assert!(response.starts_with("HTTP/1.1 426 "), "{response}");
    assert!(
        response.contains("Sec-WebSocket-Version: 13\r\n"),
        "{response}"
    );
}

#[test]
fn a_refused_websocket_closes_after_its_response() {
    let mut test = Test::with(ws_settings());
    test.send(HANDSHAKE.as_bytes());
    test.event();
    test.respond(Response::new(403));
    let response = test.received();
    assert!(response.starts_with("HTTP/1.1 403 "), "{response}");
    assert!(response.contains("Connection: close\r\n"), "{response}");
}

#[test]
fn an_interim_status_from_the_application_is_a_500() {
    let mut test = Test::new();
    test.dispatch_get("");
    test.respond(Response::new(101));
    assert!(test.received().starts_with("HTTP/1.1 500 "));
}

#[test]
fn a_ping_flood_from_a_client_that_does_not_read_is_answered_as_far_as_the_queue_goes() {
    let mut test = accepted();
    test.conn.stream.write_room = 0;
    let ping = frame(0x89, &[7; 125]);
    let pings: Vec<u8> = std::iter::repeat_n(ping, 1000).flatten().collect();
    test.send(&pings);
    test.event();
    // Unread pongs fill the output queue (64 buffers); then nothing more is read.
    test.conn.stream.write_room = usize::MAX;
    test.run(Conn::ws_write);
    let pong = server_frame_long_repeat(0xA, &[7; 125], 1);
    let sent = written(&mut test);
    let pongs = sent.len() / pong.len();
    assert!((1..=65).contains(&pongs), "{pongs} pongs queued");
    assert_eq!(sent, server_frame_long_repeat(0xA, &[7; 125], pongs));
    // Reading again, it answers the rest.
    test.event();
    let rest = written(&mut test).len() / pong.len();
    assert!(
        pongs + rest > 65 && pongs + rest <= 1000,
        "{pongs} + {rest}"
    );
}

/// `count` server frames with `payload`.
fn server_frame_long_repeat(opcode: u8, payload: &[u8], count: usize) -> Vec<u8> {
    let mut one = vec![0x80 | opcode, payload.len() as u8];
    one.extend_from_slice(payload);
    std::iter::repeat_n(one, count).flatten().collect()
}

#[test]
fn a_close_in_the_same_read_as_the_handshake_is_counted_after_the_websocket() {
    let mut test = Test::with(ws_settings());
    let mut bytes = HANDSHAKE.as_bytes().to_vec();
    bytes.extend(frame(0x88, &close_payload(1000, "")));
    test.send(&bytes);
    assert_eq!(
        names(&test.event()),
        ["upgrade /chat [\"chat\", \"superchat\"]"]
    );
    let actions = test.run(|conn, ctx| conn.accept(None, Vec::new(), ctx));
    assert_eq!(
        names(&actions),
        ["log 101", "upgraded", "pull", "closed 1000 \"\"", "close"]
    );
}

#[test]
fn pings_are_answered_while_a_message_waits_for_the_application() {
    let mut test = accepted();
    test.send(&frame(0x81, b"subscribe"));
    test.event();
    test.send(&frame(0x89, b"still there?"));
    test.event();
    assert_eq!(written(&mut test), server_frame(0xA, b"still there?"));
    // The silence is the client's: the ping clock runs.
    let interval = test.settings.websocket.ping_interval;
    assert_eq!(
        test.expiry_in(interval),
        Some(Expired::WebSocket(WsTimer::PingDue))
    );
}

#[test]
fn with_as_much_held_as_allowed_nothing_more_is_read_and_no_ping_is_sent() {
    let mut test = accepted();
    let many: Vec<u8> = (0..16u8).flat_map(|i| frame(0x82, &[i])).collect();
    test.send(&many);
    test.event();
    test.send(&frame(0x89, b"unread"));
    test.event();
    assert!(written(&mut test).is_empty(), "the ping was read");
    // A pong could not be seen: no ping goes out, nobody is closed for being late.
    let interval = test.settings.websocket.ping_interval;
    assert_eq!(test.expiry_in(interval * 3), None);
    // The application takes one: reading resumes, and the ping is answered.
    assert_eq!(names(&test.run(Conn::want_body)), ["message Binary([0])"]);
    assert_eq!(written(&mut test), server_frame(0xA, b"unread"));
}
