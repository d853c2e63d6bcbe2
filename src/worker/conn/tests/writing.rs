//! Writing: responses of every kind, streams, files, the write budget, and how writing ends.

use std::io::Write;
use std::time::{Duration, Instant};

use super::harness::*;
use crate::handler::{FileRegion, Response};
use crate::worker::conn::*;
use crate::worker::out::{LOW_WATER, WRITE_BUDGET};

#[test]
fn a_stream_is_pulled_chunk_by_chunk_and_ends_back_in_reading() {
    let mut test = Test::new();
    test.dispatch_get("");
    let actions = test.respond(Response::new(200).with_stream(chunks(&[])));
    assert_eq!(names(&actions), ["log 200", "pull"]);
    assert!(test.received().contains("Transfer-Encoding: chunked\r\n"));
    assert_eq!(test.state(), "writing");
    assert!(test.conn.app_since().is_some(), "the producer is working");
    let next = Some((b"abc".to_vec(), chunks(&[])));
    let actions = test.run(|conn, ctx| conn.take_chunk(next, ctx));
    assert_eq!(names(&actions), ["pull"]);
    assert_eq!(test.received(), "3\r\nabc\r\n");
    let actions = test.run(|conn, ctx| conn.take_chunk(None, ctx));
    assert!(names(&actions).is_empty(), "{:?}", names(&actions));
    assert_eq!(sent(&actions), [3], "the body's bytes, not its framing");
    assert_eq!(test.received(), "0\r\n\r\n");
    assert_eq!(test.state(), "reading");
}

#[test]
fn a_stream_slower_than_request_timeout_expires() {
    let mut test = Test::new();
    test.dispatch_get("");
    test.respond(Response::new(200).with_stream(chunks(&[])));
    let timeout = test.settings.request_timeout;
    assert_eq!(
        test.conn.expiry(later(200 * SEC), Duration::ZERO),
        None,
        "the write clock waits for the producer"
    );
    assert!(matches!(
        test.conn.expiry(later(31 * SEC), timeout),
        Some(Expired::Stream(_))
    ));
    // The producer is with the pool: nothing to discard; its application is told the
    // client is gone.
    assert_eq!(names(&test.run(Conn::close)), ["gone", "close"]);
}

#[test]
fn a_sized_stream_that_ends_short_closes_the_connection() {
    let mut test = Test::new();
    test.dispatch_get("");
    test.respond(Response::new(200).with_sized_stream(chunks(&[]), 10));
    assert!(test.received().contains("Content-Length: 10\r\n"));
    let next = Some((b"abc".to_vec(), chunks(&[])));
    assert_eq!(
        names(&test.run(|conn, ctx| conn.take_chunk(next, ctx))),
        ["pull"]
    );
    let actions = test.run(|conn, ctx| conn.take_chunk(None, ctx));
    assert_eq!(names(&actions), ["close"]);
    assert_eq!(test.received(), "abc");
}

#[test]
fn a_sized_stream_is_cut_at_its_length_and_its_producer_let_go() {
    let mut test = Test::new();
    test.dispatch_get("");
    test.respond(Response::new(200).with_sized_stream(chunks(&[]), 2));
    test.received();
    let next = Some((b"abc".to_vec(), chunks(&[])));
    let actions = test.run(|conn, ctx| conn.take_chunk(next, ctx));
    assert_eq!(names(&actions), ["discard"]);
    assert_eq!(test.received(), "ab");
    assert_eq!(test.state(), "reading");
}

#[test]
fn a_chunk_for_a_connection_not_streaming_is_discarded() {
    let mut test = Test::new();
    let next = Some((b"abc".to_vec(), chunks(&[])));
    assert_eq!(
        names(&test.run(|conn, ctx| conn.take_chunk(next, ctx))),
        ["discard"]
    );
    test.dispatch_get("");
    test.respond(Response::new(200).with_body("x".repeat(10)));
    let next = Some((b"abc".to_vec(), chunks(&[])));
    assert_eq!(
        names(&test.run(|conn, ctx| conn.take_chunk(next, ctx))),
        ["discard"]
    );
}

#[test]
fn closing_with_a_stream_in_hand_lets_its_producer_go() {
    let mut test = Test::new();
    test.dispatch_get("");
    test.respond(Response::new(200).with_stream(chunks(&[])));
    test.conn.stream.max_write = 0;
    let big = Some((vec![b'x'; LOW_WATER * 2], chunks(&[])));
    let actions = test.run(|conn, ctx| conn.take_chunk(big, ctx));
    assert!(
        actions.is_empty(),
        "a full socket: the producer waits with the loop"
    );
    assert_eq!(names(&test.run(Conn::close)), ["gone", "discard", "close"]);
}

#[test]
fn a_write_error_closes_and_lets_the_stream_go() {
    let mut test = Test::new();
    test.dispatch_get("");
    test.conn.stream.write_fails = true;
    let actions = test.respond(Response::new(200).with_stream(chunks(&[])));
    assert_eq!(names(&actions), ["log 200", "discard", "gone", "close"]);
    assert_eq!(test.state(), "closed");
}

#[test]
fn a_client_that_stops_reading_times_out_while_writing() {
    let mut test = Test::new();
    test.dispatch_get("");
    test.conn.stream.max_write = 0;
    assert_eq!(names(&test.respond(Response::text(200, "x"))), ["log 200"]);
    assert_eq!(test.state(), "writing");
    assert_eq!(test.conn.expiry(later(99 * SEC), Duration::ZERO), None);
    let expired = test.conn.expiry(later(101 * SEC), Duration::ZERO);
    assert_eq!(expired, Some(Expired::Stalled));
    let actions = test.run(|conn, ctx| conn.on_expired(Expired::Stalled, ctx));
    assert_eq!(names(&actions), ["close"]);
}

#[test]
fn a_write_resumes_where_the_socket_stopped_taking() {
    let mut test = Test::new();
    test.dispatch_get("");
    test.conn.stream.max_write = 7;
    test.respond(Response::text(200, "0123456789"));
    // 7 bytes a call: the whole response goes out over several writes in one go.
    assert!(test.received().ends_with("0123456789"));
    assert_eq!(test.state(), "reading");
}

#[test]
fn a_long_response_stops_at_the_write_budget_and_goes_on_from_the_backlog() {
    let mut test = Test::new();
    test.dispatch_get("");
    test.conn.stream.max_write = 64 * 1024;
    let actions = test.respond(Response::new(200).with_body(vec![b'x'; WRITE_BUDGET + 10]));
    assert_eq!(names(&actions), ["log 200", "backlog"]);
    assert_eq!(test.state(), "writing");
    let actions = test.run(Conn::write);
    assert!(names(&actions).is_empty());
    assert_eq!(sent(&actions), [WRITE_BUDGET as u64 + 10]);
    assert_eq!(test.state(), "reading");
    let received = test.received();
    assert!(received.ends_with(&"x".repeat(WRITE_BUDGET + 10)));
}

#[test]
fn a_file_region_is_sent_from_its_offset() {
    let mut test = Test::new();
    test.dispatch_get("");
    let mut file = crate::sys::anonymous_temp_file().unwrap();
    file.write_all(b"0123456789").unwrap();
    test.conn.stream.max_write = 3;
    test.respond(Response::new(200).with_file(FileRegion::new(file, 2, 5)));
    let received = test.received();
    assert!(received.contains("Content-Length: 5\r\n"), "{received}");
    assert!(received.ends_with("\r\n\r\n23456"), "{received}");
    assert_eq!(test.state(), "reading");
}

#[test]
fn a_file_shorter_than_announced_closes() {
    let mut test = Test::new();
    test.dispatch_get("");
    let mut file = crate::sys::anonymous_temp_file().unwrap();
    file.write_all(b"0123").unwrap();
    let actions = test.respond(Response::new(200).with_file(FileRegion::new(file, 0, 8)));
    assert_eq!(names(&actions), ["log 200", "close"]);
}

#[test]
fn a_head_request_gets_no_body_and_its_stream_is_let_go() {
    let mut test = Test::new();
    test.send(b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n");
    test.event();
    let actions = test.respond(Response::new(200).with_stream(chunks(&[b"body"])));
    assert_eq!(names(&actions), ["log 200", "discard"]);
    assert!(test.received().ends_with("\r\n\r\n"));
    assert_eq!(test.state(), "reading");
}

#[test]
fn an_http_10_stream_ends_with_the_connection() {
    let mut test = Test::new();
    test.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    test.event();
    assert!(test.conn.keep_alive);
    test.respond(Response::new(200).with_stream(chunks(&[])));
    assert!(!test.conn.keep_alive, "no chunked coding in HTTP/1.0");
    assert!(!test.received().contains("chunked"));
}

#[test]
fn an_invalid_header_from_the_handler_becomes_a_500() {
    let mut test = Test::new();
    test.dispatch_get("");
    let actions = test.respond(Response::text(200, "x").with_header("X-Bad", "a\r\nb"));
    assert_eq!(names(&actions), ["log 500"]);
    assert!(test.received().starts_with("HTTP/1.1 500 "));
}

#[test]
fn the_client_closing_while_a_response_is_written_is_noticed_once_it_is_out() {
    let mut test = Test::new();
    test.dispatch_get("");
    test.conn.stream.max_write = 0;
    test.respond(Response::text(200, "x"));
    test.close_input();
    assert!(test.event().is_empty(), "a full socket: still writing");
    assert_eq!(test.state(), "writing");
    test.conn.stream.max_write = usize::MAX;
    assert_eq!(names(&test.event()), ["close"]);
    assert!(test.received().ends_with("\r\n\r\nx"));
}

#[test]
fn a_response_over_says_how_many_body_bytes_went_out() {
    // A bytes body: its length; HEAD: none; an error of the server's own: its text.
    let mut test = Test::new();
    test.dispatch_get("");
    assert_eq!(sent(&test.respond(Response::text(200, "hello"))), [5]);
    test.send(b"HEAD /x HTTP/1.1\r\nHost: h\r\n\r\n");
    test.event();
    assert_eq!(sent(&test.respond(Response::text(200, "hello"))), [0]);
    test.send(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n");
    let actions = test.event();
    let received = test.received();
    let body = received.rsplit("\r\n\r\n").next().unwrap();
    assert!(body.starts_with("400 Bad Request: "), "{received}");
    assert_eq!(sent(&actions), [body.len() as u64]);
}

#[test]
fn a_response_cut_short_says_what_went_out() {
    let mut test = Test::new();
    test.dispatch_get("");
    test.conn.stream.max_write = 64 * 1024;
    let actions = test.respond(Response::new(200).with_body(vec![b'x'; 2 * WRITE_BUDGET]));
    assert_eq!(names(&actions), ["log 200", "backlog"]);
    assert!(sent(&actions).is_empty(), "not over yet");
    let received = test.received();
    let body_out = received.len() - received.find("\r\n\r\n").unwrap() - 4;
    test.conn.stream.write_fails = true;
    let actions = test.run(Conn::write);
    assert_eq!(names(&actions), ["close"]);
    assert_eq!(sent(&actions), [body_out as u64]);
}

/// Over TLS a slow client drains what rustls holds a little at a time: each bit flushed on a
/// writable event is progress and restarts the write clock (`body_timeout`), as a plain
/// socket's writes do; else a slow download would be cut while bytes still reach it.
#[test]
fn ciphertext_flushed_on_a_writable_event_restarts_the_write_clock() {
    let mut test = Test::new();
    test.conn.stream.holds_back = true;
    test.conn.stream.max_write = 64 * 1024;
    test.dispatch_get("");
    test.respond(Response::new(200).with_body(vec![b'x'; 512 * 1024]));
    // The head goes out whole; the body's first 64 KiB then wait with "TLS".
    test.conn.stream.flush_room = test.conn.stream.held;
    test.event();
    assert_eq!(test.conn.stream.held, 64 * 1024);
    let before = Instant::now();
    let State::Writing(writing) = &mut test.conn.state else {
        panic!("not writing: {}", test.state());
    };
    writing.deadline = before;
    let held = test.conn.stream.held;
    // The writable event: the kernel takes 10 KiB of what "TLS" holds.
    test.conn.stream.flush_room = 10 * 1024;
    test.event();
    assert_eq!(test.conn.stream.held, held - 10 * 1024);
    let State::Writing(writing) = &test.conn.state else {
        panic!("not writing: {}", test.state());
    };
    assert!(
        writing.deadline > before,
        "bytes reached the client, but the write clock did not restart"
    );
}
