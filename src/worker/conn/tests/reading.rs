//! Reading: the body's minimum data rate, the head pipelined behind a response, `100 Continue`
//! written in pieces, and which connections count as idle.

use super::harness::*;
use crate::handler::Response;
use crate::http::HttpError;
use crate::worker::conn::*;

fn with_rate(rate: u64) -> Test {
    Test::with(Settings {
        min_body_rate: rate,
        body_rate_grace: 5 * SEC,
        body_timeout: 100 * SEC,
        ..settings()
    })
}

const UPLOAD: &[u8] = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\n";

#[test]
fn a_body_slower_than_min_body_rate_is_answered_408_once_the_grace_is_over() {
    let mut test = with_rate(240);
    test.send(UPLOAD);
    test.send(b"x");
    assert!(test.event().is_empty());
    assert_eq!(test.expiry_in(4 * SEC), None, "within the grace");
    // One byte in 6 s is far below 240 bytes/s, and body_timeout (100 s) is far off.
    test.times_out_with_408(6 * SEC);
}

#[test]
fn a_body_trickling_a_byte_at_a_time_does_not_restart_the_rate_clock() {
    let mut test = with_rate(240);
    test.send(UPLOAD);
    test.event();
    for _ in 0..20 {
        test.send(b"x");
        assert!(test.event().is_empty());
    }
    assert_eq!(
        test.expiry_in(6 * SEC),
        Some(Expired::SlowRequest),
        "20 bytes are not 240 bytes/s, however often they come"
    );
}

#[test]
fn a_body_at_the_rate_goes_on_until_its_bytes_no_longer_cover_the_time() {
    let mut test = with_rate(240);
    test.send(UPLOAD);
    test.event();
    // 2400 bytes cover 10 s at 240 bytes/s.
    test.send(&[b'x'; 2400]);
    assert!(test.event().is_empty());
    assert_eq!(test.expiry_in(6 * SEC), None);
    assert_eq!(test.expiry_in(9 * SEC), None);
    assert_eq!(test.expiry_in(11 * SEC), Some(Expired::SlowRequest));
}

#[test]
fn a_body_spilled_to_a_file_counts_toward_the_rate() {
    let mut test = Test::with(Settings {
        body_buffer: 100,
        ..with_rate(240).settings
    });
    test.send(UPLOAD);
    test.event();
    test.send(&[b'x'; 2400]);
    test.event();
    assert!(matches!(
        &test.conn.state,
        State::Reading(Reading {
            body: RequestBody::File(_, 2400),
            ..
        })
    ));
    assert_eq!(test.expiry_in(9 * SEC), None);
    assert_eq!(test.expiry_in(11 * SEC), Some(Expired::SlowRequest));
}

#[test]
fn min_body_rate_zero_leaves_only_body_timeout() {
    let mut test = with_rate(0);
    test.send(UPLOAD);
    test.send(b"x");
    test.event();
    assert_eq!(test.expiry_in(99 * SEC), None);
    assert_eq!(test.expiry_in(101 * SEC), Some(Expired::SlowRequest));
}

#[test]
fn body_timeout_still_applies_before_the_rate_does() {
    let mut test = Test::with(Settings {
        body_timeout: 2 * SEC,
        ..with_rate(240).settings
    });
    test.send(UPLOAD);
    test.send(b"x");
    test.event();
    assert_eq!(
        test.expiry_in(3 * SEC),
        Some(Expired::SlowRequest),
        "no byte for 2 s, within the grace"
    );
}

/// keepalive 100 s, header_timeout 10 s.
fn keepalive_longer_than_header_timeout() -> Test {
    Test::with(Settings {
        keepalive: 100 * SEC,
        header_timeout: 10 * SEC,
        ..settings()
    })
}

#[test]
fn a_partial_head_pipelined_behind_a_request_has_header_timeout_not_keepalive() {
    let mut test = keepalive_longer_than_header_timeout();
    test.send(b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HT");
    assert_eq!(names(&test.event()), ["dispatch GET /1"]);
    test.respond(Response::text(200, "one"));
    assert_eq!(test.state(), "reading");
    assert!(!test.conn.is_idle(), "the next request has begun");
    assert_eq!(test.expiry_in(9 * SEC), None);
    assert_eq!(test.expiry_in(11 * SEC), Some(Expired::SlowRequest));
}

#[test]
fn a_partial_head_arriving_with_the_response_has_header_timeout_too() {
    let mut test = keepalive_longer_than_header_timeout();
    test.dispatch_get("");
    // Arrives while the application runs; read once the response is out.
    test.send(b"GET /2 HT");
    test.event();
    test.respond(Response::text(200, "one"));
    assert!(!test.conn.is_idle());
    assert_eq!(test.expiry_in(11 * SEC), Some(Expired::SlowRequest));
}

#[test]
fn a_keep_alive_connection_with_nothing_pipelined_waits_keepalive() {
    let mut test = keepalive_longer_than_header_timeout();
    test.dispatch_get("");
    test.respond(Response::text(200, "one"));
    assert!(test.conn.is_idle());
    assert_eq!(test.expiry_in(11 * SEC), None);
    assert_eq!(test.expiry_in(101 * SEC), Some(Expired::Idle));
}

const EXPECTING: &[u8] =
    b"PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n";

#[test]
fn a_100_continue_written_in_pieces_is_finished_before_the_body_is_read() {
    let mut test = Test::new();
    test.conn.stream.write_room = 10;
    test.send(EXPECTING);
    assert!(test.event().is_empty());
    assert_eq!(test.received(), "HTTP/1.1 1");
    // The body arrives while the socket takes nothing more: it is left unread.
    test.send(b"ok");
    test.conn.stream.write_room = 0;
    assert!(test.event().is_empty());
    assert_eq!(test.received(), "");
    assert_eq!(test.conn.stream.input.len(), 1, "no body byte was read");
    // A few more bytes: still not all of it.
    test.conn.stream.write_room = 5;
    assert!(test.event().is_empty());
    assert_eq!(test.received(), "00 Co");
    assert_eq!(test.conn.stream.input.len(), 1, "no body byte was read");
    test.conn.stream.write_room = usize::MAX;
    assert_eq!(names(&test.event()), ["dispatch PUT /"]);
    assert_eq!(test.received(), "ntinue\r\n\r\n");
}

#[test]
fn a_100_continue_written_a_few_bytes_a_call_goes_out_whole() {
    let mut test = Test::new();
    test.conn.stream.max_write = 3;
    test.send(EXPECTING);
    assert!(test.event().is_empty());
    assert_eq!(test.received(), "HTTP/1.1 100 Continue\r\n\r\n");
    test.send(b"ok");
    assert_eq!(names(&test.event()), ["dispatch PUT /"]);
}

#[test]
fn an_error_after_a_100_continue_begun_finishes_it_first() {
    let error = HttpError {
        status: 408,
        reason: "late",
    };
    let mut test = Test::new();
    test.conn.stream.write_room = 10;
    test.send(EXPECTING);
    test.event();
    test.conn.stream.write_room = usize::MAX;
    assert_eq!(
        names(&test.run(|conn, ctx| conn.fail(&error, ctx))),
        ["log 408"]
    );
    let received = test.received();
    assert!(
        received.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 408 "),
        "{received}"
    );
    // Not begun at all: the final response takes its place.
    let mut test = Test::new();
    test.conn.stream.write_room = 0;
    test.send(EXPECTING);
    test.event();
    test.conn.stream.write_room = usize::MAX;
    test.run(|conn, ctx| conn.fail(&error, ctx));
    assert!(test.received().starts_with("HTTP/1.1 408 "));
}

#[test]
fn new_and_keep_alive_connections_are_idle_since_their_wait_began() {
    let mut test = Test::new();
    let new = test
        .conn
        .idle_since()
        .expect("a new connection that sent nothing is idle");
    test.send(b"GET /x HT");
    test.event();
    assert_eq!(test.conn.idle_since(), None, "a request has begun");
    test.send(b"TP/1.1\r\nHost: h\r\n\r\n");
    test.event();
    assert_eq!(test.conn.idle_since(), None, "with the application");
    test.respond(Response::text(200, "x"));
    let kept = test.conn.idle_since().expect("idle between requests");
    assert!(kept >= new);
}

#[test]
fn an_error_after_a_100_continue_begun_logs_only_its_own_body() {
    let error = HttpError {
        status: 408,
        reason: "late",
    };
    let body_sent = |write_room: usize| {
        let mut test = Test::new();
        test.conn.stream.write_room = write_room;
        test.send(EXPECTING);
        test.event();
        test.conn.stream.write_room = usize::MAX;
        let actions = test.run(|conn, ctx| conn.fail(&error, ctx));
        let received = test.received();
        let body = received.split("\r\n\r\n").last().unwrap().len() as u64;
        (sent(&actions), body)
    };
    // The interim response's head, finished before it, is not the error's body.
    let (plain, body) = body_sent(0);
    assert_eq!(plain, [body]);
    assert_eq!(body_sent(10), (vec![body], body));
}

#[test]
fn min_body_rate_waits_for_a_100_continue_the_socket_does_not_take_yet() {
    let mut test = with_rate(240);
    test.conn.stream.write_room = 0;
    test.send(EXPECTING);
    assert!(test.event().is_empty());
    // The client waits for the interim response, and the server reads no body byte until it is
    // out: the body's rate cannot be held against it, only body_timeout (a stalled write).
    assert_eq!(
        test.expiry_in(6 * SEC),
        None,
        "the rate's clock has not started"
    );
    assert_eq!(test.expiry_in(101 * SEC), Some(Expired::SlowRequest));
    test.conn.stream.write_room = usize::MAX;
    assert!(test.event().is_empty());
    assert_eq!(test.received(), "HTTP/1.1 100 Continue\r\n\r\n");
    // Now it runs, with its grace, from the interim response on.
    assert_eq!(test.expiry_in(4 * SEC), None);
    test.times_out_with_408(6 * SEC);
}

#[test]
fn an_empty_line_after_a_body_leaves_the_connection_idle() {
    // Some clients send CRLF after a body; the next request-line may follow it (RFC 9112
    // §2.2), and until a byte of one does the connection waits for a request, quietly.
    let mut test = keepalive_longer_than_header_timeout();
    test.send(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nok\r\n");
    assert_eq!(names(&test.event()), ["dispatch POST /"]);
    test.respond(Response::text(200, "one"));
    assert!(test.conn.is_idle(), "no byte of a request came");
    assert!(test.conn.idle_since().is_some());
    assert_eq!(
        test.expiry_in(11 * SEC),
        None,
        "keepalive, not header_timeout"
    );
    assert_eq!(
        test.expiry_in(101 * SEC),
        Some(Expired::Idle),
        "closed, no 408"
    );
    // A request after it is read as ever.
    test.received();
    test.send(b"GET /2 HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(names(&test.event()), ["dispatch GET /2"]);
}

#[test]
fn an_idle_connection_about_to_give_way_first_reads_a_request_no_event_reported() {
    let mut test = Test::new();
    test.dispatch_get("");
    test.respond(Response::text(200, "one"));
    assert!(test.conn.is_idle());
    // The next request is in the socket, its event not yet handled: looking again finds it,
    // and the connection is no longer one that may be closed.
    test.send(b"GET /2 HTTP/1.1\r\nHost: h\r\n\r\n");
    assert!(test.conn.is_idle(), "no event yet");
    assert_eq!(
        names(&test.run(|conn, ctx| conn.look_again(ctx))),
        ["dispatch GET /2"]
    );
    assert!(!test.conn.is_idle());
    assert_eq!(test.conn.idle_since(), None);
    // With nothing in the socket it stays idle; with the client gone, it closes.
    test.respond(Response::text(200, "two"));
    assert!(test.run(|conn, ctx| conn.look_again(ctx)).is_empty());
    assert!(test.conn.is_idle());
    test.close_input();
    assert_eq!(
        names(&test.run(|conn, ctx| conn.look_again(ctx))),
        ["close"]
    );
}
