//! The connection's state machine driven over an in-memory socket: every transition, with the
//! timeouts and failures of each state.

mod body_in;
mod budget;
mod harness;
mod proxy_header;
mod reading;
mod websocket;
mod writing;

use std::io::Read;
use std::time::{Duration, Instant};

use crate::handler::Response;
use crate::http::HttpError;
use crate::worker::conn::*;
use harness::*;

#[test]
fn a_whole_request_goes_to_the_application() {
    let mut test = Test::new();
    assert_eq!(names(&test.dispatch_get("")), ["dispatch GET /x"]);
    assert_eq!(test.state(), "in app");
    assert_eq!(test.conn.idle_since(), None, "a request came");
    assert!(test.conn.keep_alive);
}

#[test]
fn a_request_in_pieces_is_dispatched_once_complete() {
    let mut test = Test::new();
    test.scratch = vec![0; 4];
    test.send(b"GET / HT");
    assert!(test.event().is_empty());
    assert_eq!(test.state(), "reading");
    assert!(!test.conn.is_idle(), "a request has begun");
    test.send(b"TP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(names(&test.event()), ["dispatch GET /"]);
}

#[test]
fn keep_alive_goes_back_to_reading_and_takes_the_pipelined_request() {
    let mut test = Test::new();
    test.send(b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(names(&test.event()), ["dispatch GET /1"]);
    let actions = test.respond(Response::text(200, "one"));
    assert_eq!(names(&actions), ["log 200", "dispatch GET /2"]);
    let received = test.received();
    assert!(received.starts_with("HTTP/1.1 200 OK\r\n"), "{received}");
    assert!(received.ends_with("\r\n\r\none"), "{received}");
    assert_eq!(test.state(), "in app");
    test.respond(Response::text(200, "two"));
    assert_eq!(test.state(), "reading");
    assert!(test.conn.is_idle());
    assert!(test.received().ends_with("two"));
}

#[test]
fn a_response_is_recorded_before_its_client_sees_a_byte() {
    // A client that has its answer must find it counted in /metrics and the access log.
    let mut test = Test::new();
    test.dispatch_get("");
    let actions = test.run_alone(|conn, ctx| conn.respond(Response::text(200, "one"), ctx));
    assert_eq!(names(&actions), ["log 200", "write"]);
    assert_eq!(test.received(), "", "nothing written before the log");
    test.run(write);
    assert!(test.received().ends_with("\r\n\r\none"));
    let error = HttpError {
        status: 400,
        reason: "bad",
    };
    let mut test = Test::new();
    test.send(b"GET / HTTP/1.1\r\n");
    test.event();
    let actions = test.run_alone(|conn, ctx| conn.fail(&error, ctx));
    assert_eq!(names(&actions), ["log 400", "write"]);
    assert_eq!(test.received(), "");
    test.run(write);
    assert!(test.received().starts_with("HTTP/1.1 400 "));
}

#[test]
fn connection_close_closes_once_the_response_is_out() {
    let mut test = Test::new();
    test.dispatch_get("Connection: close\r\n");
    assert!(!test.conn.keep_alive);
    let actions = test.respond(Response::text(200, "bye"));
    assert_eq!(names(&actions), ["log 200", "close"]);
    assert!(test.received().contains("Connection: close\r\n"));
    assert!(
        !test.conn.stream.shut.get(),
        "nothing unread: a plain close"
    );
    assert_eq!(test.state(), "closed");
}

#[test]
fn bytes_after_a_closing_request_make_it_linger() {
    let mut test = Test::new();
    test.dispatch_get("Connection: close\r\n");
    test.send(b"GET /more");
    test.event(); // in the application: nothing is read
    let actions = test.respond(Response::text(200, "bye"));
    assert_eq!(names(&actions), ["log 200"]);
    assert_eq!(test.state(), "lingering");
    assert!(test.conn.stream.shut.get());
    assert!(
        test.conn.stream.input.is_empty(),
        "the unread bytes were drained"
    );
}

#[test]
fn a_stopping_worker_answers_with_connection_close() {
    let mut test = Test::new();
    test.dispatch_get("");
    test.stopping = true;
    assert_eq!(
        names(&test.respond(Response::text(200, "x"))),
        ["log 200", "close"]
    );
    assert!(test.received().contains("Connection: close\r\n"));
}

#[test]
fn a_stopping_worker_dispatches_without_keep_alive() {
    let mut test = Test::new();
    test.stopping = true;
    test.dispatch_get("");
    assert!(!test.conn.keep_alive);
}

#[test]
fn keepalive_off_dispatches_without_keep_alive() {
    let mut test = Test::with(Settings {
        keepalive: Duration::ZERO,
        ..settings()
    });
    test.dispatch_get("");
    assert!(!test.conn.keep_alive);
}

#[test]
fn a_bad_request_is_answered_then_the_connection_lingers_until_the_client_closes() {
    let mut test = Test::new();
    test.send(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n");
    assert_eq!(names(&test.event()), ["log 400"]);
    assert!(test.received().starts_with("HTTP/1.1 400 "));
    assert_eq!(test.state(), "lingering");
    assert!(test.conn.stream.shut.get());
    test.close_input();
    assert_eq!(names(&test.event()), ["close"]);
    assert_eq!(test.state(), "closed");
}

#[test]
fn lingering_ends_when_its_time_is_up() {
    let mut test = Test::new();
    test.send(b"\x01\r\n\r\n");
    test.event();
    assert_eq!(test.state(), "lingering");
    assert_eq!(test.conn.expiry(later(SEC), Duration::ZERO), None);
    let expired = test.conn.expiry(later(LINGER + SEC), Duration::ZERO);
    assert_eq!(expired, Some(Expired::Stalled));
    let actions = test.run(|conn, ctx| conn.on_expired(Expired::Stalled, ctx));
    assert_eq!(names(&actions), ["close"]);
}

#[test]
fn an_idle_connection_times_out_quietly() {
    let mut test = Test::new();
    assert!(test.event().is_empty());
    assert!(test.conn.is_idle());
    assert_eq!(test.conn.expiry(later(SEC), Duration::ZERO), None);
    let expired = test.conn.expiry(later(11 * SEC), Duration::ZERO);
    assert_eq!(expired, Some(Expired::Idle));
    let actions = test.run(|conn, ctx| conn.on_expired(Expired::Idle, ctx));
    assert_eq!(names(&actions), ["close"]);
    assert_eq!(test.received(), "");
}

#[test]
fn a_head_that_does_not_arrive_in_time_is_answered_408() {
    let mut test = Test::new();
    test.send(b"GET / HT");
    test.event();
    assert_eq!(test.expiry_in(9 * SEC), None);
    test.times_out_with_408(11 * SEC);
}

#[test]
fn a_body_has_the_body_timeout_from_its_last_progress() {
    let mut test = Test::new();
    test.send(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc");
    assert!(test.event().is_empty());
    // The head is in: its 10 s no longer apply, the body's 100 s do.
    assert_eq!(test.conn.expiry(later(50 * SEC), Duration::ZERO), None);
    let expired = test.conn.expiry(later(101 * SEC), Duration::ZERO);
    assert_eq!(expired, Some(Expired::SlowRequest));
    test.send(b"defghij");
    let actions = test.event();
    assert_eq!(names(&actions), ["dispatch POST /"]);
    let Action::Dispatch { body, .. } = &actions[0] else {
        unreachable!()
    };
    assert!(matches!(body, RequestBody::Memory(bytes) if bytes == b"abcdefghij"));
}

#[test]
fn a_body_past_body_buffer_arrives_in_a_file() {
    let mut test = Test::with(Settings {
        body_buffer: 4,
        ..settings()
    });
    test.send(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabcdef");
    assert!(test.event().is_empty());
    assert!(matches!(
        &test.conn.state,
        State::Reading(Reading {
            body: RequestBody::File(_, 6),
            ..
        })
    ));
    test.send(b"ghij");
    let actions = test.event();
    let [Action::Dispatch { body, .. }] = &actions[..] else {
        panic!("{:?}", names(&actions));
    };
    let mut bytes = Vec::new();
    body.reader().read_to_end(&mut bytes).unwrap();
    assert!(matches!(body, RequestBody::File(_, 10)));
    assert_eq!(bytes, b"abcdefghij");
}

#[test]
fn expect_100_continue_is_answered_before_the_body() {
    let mut test = Test::new();
    test.send(b"PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n");
    assert!(test.event().is_empty());
    assert_eq!(test.received(), "HTTP/1.1 100 Continue\r\n\r\n");
    test.send(b"ok");
    assert_eq!(names(&test.event()), ["dispatch PUT /"]);
}

#[test]
fn the_client_closing_while_reading_closes() {
    for sent in [&b""[..], b"GET / HTTP/1.1\r\n"] {
        let mut test = Test::new();
        if !sent.is_empty() {
            test.send(sent);
        }
        assert!(test.event().is_empty());
        test.close_input();
        assert_eq!(names(&test.event()), ["close"]);
        assert_eq!(test.received(), "");
    }
}

#[test]
fn a_failed_read_closes() {
    let mut test = Test::new();
    test.conn.stream.input.push_back(Input::Fail);
    assert_eq!(names(&test.event()), ["close"]);
}

#[test]
fn the_client_closing_while_its_request_runs_is_answered_and_then_closed() {
    let mut test = Test::new();
    test.dispatch_get("");
    test.close_input();
    // The worker is asked to take the request back; a thread has started it, so it cannot.
    assert_eq!(names(&test.event()), ["withdraw"]);
    assert_eq!(
        test.state(),
        "in app",
        "nothing is read while the handler runs"
    );
    // A client that only shut its side down still reads the answer.
    let actions = test.respond(Response::text(200, "late"));
    assert_eq!(names(&actions), ["log 200", "close"]);
    assert!(test.received().ends_with("late"));
}

#[test]
fn a_request_taken_back_before_it_started_is_logged_499_and_closed() {
    let mut test = Test::new();
    test.dispatch_get("");
    test.close_input();
    assert_eq!(names(&test.event()), ["withdraw"]);
    let actions = test.run(Conn::withdrawn);
    assert_eq!(names(&actions), ["log 499", "close"]);
    assert!(matches!(actions[..], [_, Action::Sent(0), _]));
    assert_eq!(test.received(), "");
    assert_eq!(test.state(), "closed");
}

#[test]
fn a_request_past_request_timeout_is_answered_504_and_its_late_answer_dropped() {
    let mut test = Test::new();
    test.dispatch_get("");
    assert_eq!(test.conn.label(), Some("GET /x"));
    let timeout = test.settings.request_timeout;
    assert_eq!(test.conn.expiry(later(29 * SEC), timeout), None);
    assert!(matches!(
        test.conn.expiry(later(31 * SEC), timeout),
        Some(Expired::Request(_))
    ));
    assert_eq!(
        test.conn.expiry(later(1000 * SEC), Duration::ZERO),
        None,
        "no limit without request_timeout"
    );
    let error = HttpError {
        status: 504,
        reason: "the application did not answer in time",
    };
    let actions = test.run(|conn, ctx| conn.fail(&error, ctx));
    // The application is told its request is over (a concurrent one cancels it).
    assert_eq!(names(&actions), ["gone", "log 504"]);
    assert!(test.received().starts_with("HTTP/1.1 504 "));
    assert_eq!(test.state(), "lingering");
    let late = Response::new(200).with_stream(chunks(&[b"late"]));
    assert_eq!(names(&test.respond(late)), ["discard"]);
    assert_eq!(test.received(), "", "the late answer is not written");
    assert_eq!(test.state(), "lingering");
}

#[test]
fn the_access_log_keeps_what_it_knew_of_a_request_that_timed_out() {
    let mut test = Test::new();
    test.dispatch_get("");
    test.conn.set_access(AccessInfo {
        remote: "10.0.0.1".to_owned(),
        method: "GET".to_owned(),
        target: "/x".to_owned(),
        version: "HTTP/1.1",
        user_agent: String::new(),
        referer: String::new(),
    });
    let error = HttpError {
        status: 504,
        reason: "late",
    };
    let actions = test.run(|conn, ctx| conn.fail(&error, ctx));
    let [Action::Gone, Action::Log(answer), Action::Sent(_)] = &actions[..] else {
        panic!("{:?}", names(&actions));
    };
    assert_eq!(
        answer.access.as_ref().map(|a| a.remote.as_str()),
        Some("10.0.0.1")
    );
}

#[test]
fn a_draining_stop_shortens_an_idle_wait_only() {
    let mut test = Test::with(Settings {
        header_timeout: Duration::from_secs(5),
        ..settings()
    });
    test.event();
    let now = Instant::now();
    assert_eq!(
        test.conn.expiry(now + DRAIN_IDLE + SEC, Duration::ZERO),
        None
    );
    test.conn.drain(test.settings.idle_wait(), now);
    assert_eq!(
        test.conn.expiry(now + DRAIN_IDLE + SEC, Duration::ZERO),
        Some(Expired::Idle)
    );
    let mut busy = Test::new();
    busy.send(b"GET / HT");
    busy.event();
    busy.conn.drain(busy.settings.idle_wait(), now);
    assert_eq!(
        busy.conn.expiry(now + DRAIN_IDLE + SEC, Duration::ZERO),
        None
    );
}
