//! The connection's state machine driven over an in-memory socket: every transition, with the
//! timeouts and failures of each state.

use std::cell::Cell;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use super::*;
use crate::handler::{FileRegion, Response};
use crate::http::{DateCache, HttpError};
use crate::worker::out::{LOW_WATER, WRITE_BUDGET};

/// What the client side of the in-memory socket does next when read from.
enum Input {
    Bytes(Vec<u8>),
    /// The client closed its side: every read from now on returns 0.
    Eof,
    /// The read fails (a reset).
    Fail,
}

/// A socket in memory: reads follow a script (`WouldBlock` once it runs out), writes take at
/// most `max_write` bytes a call (`WouldBlock` at 0) or fail.
struct Mem {
    input: VecDeque<Input>,
    written: Vec<u8>,
    max_write: usize,
    write_fails: bool,
    shut: Cell<bool>,
}

impl Read for Mem {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.input.front_mut() {
            None => Err(io::ErrorKind::WouldBlock.into()),
            Some(Input::Eof) => Ok(0),
            Some(Input::Fail) => {
                self.input.pop_front();
                Err(io::ErrorKind::ConnectionReset.into())
            }
            Some(Input::Bytes(bytes)) => {
                let n = bytes.len().min(buf.len());
                buf[..n].copy_from_slice(&bytes[..n]);
                bytes.drain(..n);
                if bytes.is_empty() {
                    self.input.pop_front();
                }
                Ok(n)
            }
        }
    }
}

impl Mem {
    /// How much the next write may take, or why it takes nothing.
    fn room(&self, want: usize) -> io::Result<usize> {
        if self.write_fails {
            Err(io::ErrorKind::BrokenPipe.into())
        } else if self.max_write == 0 {
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            Ok(want.min(self.max_write))
        }
    }
}

impl Write for Mem {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.room(buf.len())?;
        self.written.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Socket for Mem {
    fn shutdown_write(&self) {
        self.shut.set(true);
    }

    fn send_file(&mut self, file: &File, offset: &mut u64, count: usize) -> io::Result<usize> {
        let mut buf = vec![0; self.room(count)?];
        let n = file.read_at(&mut buf, *offset)?;
        self.written.extend_from_slice(&buf[..n]);
        *offset += n as u64;
        Ok(n)
    }
}

/// A connection over [`Mem`] and what its transitions need.
struct Test {
    conn: Conn<Mem>,
    settings: Settings,
    scratch: Vec<u8>,
    dates: DateCache,
    stopping: bool,
}

fn settings() -> Settings {
    Settings {
        limits: http::Limits::default(),
        body_buffer: 1024,
        keepalive: Duration::from_secs(5),
        header_timeout: Duration::from_secs(10),
        body_timeout: Duration::from_secs(100),
        request_timeout: Duration::from_secs(30),
    }
}

impl Test {
    fn new() -> Test {
        Test::with(settings())
    }

    fn with(settings: Settings) -> Test {
        let mem = Mem {
            input: VecDeque::new(),
            written: Vec::new(),
            max_write: usize::MAX,
            write_fails: false,
            shut: Cell::new(false),
        };
        Test {
            conn: Conn::new(mem, None, 0, 1, &settings),
            settings,
            scratch: vec![0; 64 * 1024],
            dates: DateCache::new(),
            stopping: false,
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.conn
            .stream
            .input
            .push_back(Input::Bytes(bytes.to_vec()));
    }

    fn close_input(&mut self) {
        self.conn.stream.input.push_back(Input::Eof);
    }

    /// Runs one transition and returns its actions.
    fn run(&mut self, transition: impl FnOnce(&mut Conn<Mem>, &mut Ctx<'_>)) -> Vec<Action> {
        let mut actions = Vec::new();
        let mut ctx = Ctx {
            settings: &self.settings,
            scratch: &mut self.scratch,
            dates: &mut self.dates,
            stopping: self.stopping,
            actions: &mut actions,
        };
        transition(&mut self.conn, &mut ctx);
        actions
    }

    /// A readable (or writable) event.
    fn event(&mut self) -> Vec<Action> {
        self.run(|conn, ctx| conn.on_event(true, ctx))
    }

    fn respond(&mut self, response: Response) -> Vec<Action> {
        self.run(|conn, ctx| conn.respond(response, ctx))
    }

    /// What the client received since the last call.
    fn received(&mut self) -> String {
        String::from_utf8_lossy(&std::mem::take(&mut self.conn.stream.written)).into_owned()
    }

    fn state(&self) -> &'static str {
        match self.conn.state {
            State::Closed => "closed",
            State::Taken => "taken",
            State::Reading(_) => "reading",
            State::InApp(_) => "in app",
            State::Writing(_) => "writing",
            State::Lingering { .. } => "lingering",
        }
    }

    /// Sends a GET and returns it dispatched.
    fn dispatch_get(&mut self, extra: &str) -> Vec<Action> {
        self.send(format!("GET /x HTTP/1.1\r\nHost: h\r\n{extra}\r\n").as_bytes());
        self.event()
    }
}

/// The actions, named, to compare with a list.
fn names(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .map(|action| match action {
            Action::Dispatch { head, first, .. } => {
                format!(
                    "dispatch {} {}{}",
                    head.method,
                    head.target,
                    if *first { " first" } else { "" }
                )
            }
            Action::Pull(_) => "pull".to_owned(),
            Action::Discard(_) => "discard".to_owned(),
            Action::Log(answer) => format!("log {}", answer.status),
            Action::Backlog => "backlog".to_owned(),
            Action::Close => "close".to_owned(),
        })
        .collect()
}

fn chunks(parts: &[&[u8]]) -> BodyStream {
    Box::new(
        parts
            .iter()
            .map(|part| part.to_vec())
            .collect::<Vec<_>>()
            .into_iter(),
    )
}

fn later(by: Duration) -> Instant {
    Instant::now() + by
}

const SEC: Duration = Duration::from_secs(1);

#[test]
fn a_whole_request_goes_to_the_application() {
    let mut test = Test::new();
    assert_eq!(names(&test.dispatch_get("")), ["dispatch GET /x first"]);
    assert_eq!(test.state(), "in app");
    assert!(
        !test.conn.fresh,
        "its first request is out: no longer fresh"
    );
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
    assert_eq!(names(&test.event()), ["dispatch GET / first"]);
}

#[test]
fn keep_alive_goes_back_to_reading_and_takes_the_pipelined_request() {
    let mut test = Test::new();
    test.send(b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(names(&test.event()), ["dispatch GET /1 first"]);
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
    assert_eq!(test.conn.expiry(later(9 * SEC), Duration::ZERO), None);
    let expired = test.conn.expiry(later(11 * SEC), Duration::ZERO);
    assert_eq!(expired, Some(Expired::SlowRequest));
    let actions = test.run(|conn, ctx| conn.on_expired(Expired::SlowRequest, ctx));
    assert_eq!(names(&actions), ["log 408"]);
    assert!(test.received().starts_with("HTTP/1.1 408 "));
    assert_eq!(test.state(), "lingering");
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
    assert_eq!(names(&actions), ["dispatch POST / first"]);
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
    assert_eq!(names(&test.event()), ["dispatch PUT / first"]);
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
fn the_client_closing_while_in_the_application_is_noticed_after_the_response() {
    let mut test = Test::new();
    test.dispatch_get("");
    test.close_input();
    assert!(
        test.event().is_empty(),
        "nothing is read while the handler runs"
    );
    assert_eq!(test.state(), "in app");
    let actions = test.respond(Response::text(200, "late"));
    assert_eq!(names(&actions), ["log 200", "close"]);
    assert!(test.received().ends_with("late"));
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
    assert_eq!(names(&actions), ["log 504"]);
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
    let [Action::Log(answer)] = &actions[..] else {
        panic!("{:?}", names(&actions));
    };
    assert_eq!(
        answer.access.as_ref().map(|a| a.remote.as_str()),
        Some("10.0.0.1")
    );
}

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
    assert!(actions.is_empty(), "{:?}", names(&actions));
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
    // The producer is with the pool: nothing to discard.
    assert_eq!(names(&test.run(Conn::close)), ["close"]);
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
    assert_eq!(names(&test.run(Conn::close)), ["discard", "close"]);
}

#[test]
fn a_write_error_closes_and_lets_the_stream_go() {
    let mut test = Test::new();
    test.dispatch_get("");
    test.conn.stream.write_fails = true;
    let actions = test.respond(Response::new(200).with_stream(chunks(&[])));
    assert_eq!(names(&actions), ["log 200", "discard", "close"]);
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
    assert!(actions.is_empty());
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
