//! A request body streamed to a concurrent (ASGI) application: handed over with its head,
//! read only as the application asks for it, `100 Continue` at its first ask.

use super::*;

/// A connection of a worker serving a concurrent application.
fn concurrent() -> Test {
    Test::with(Settings {
        concurrent_app: true,
        ..settings()
    })
}

const POST: &[u8] = b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n";

#[test]
fn a_body_still_arriving_goes_with_its_head_and_is_read_only_when_asked_for() {
    let mut test = concurrent();
    test.send(POST);
    test.send(b"hello");
    assert_eq!(names(&test.event()), ["begin POST /up"]);
    assert_eq!(test.state(), "in app");
    // What is not asked for waits in the socket.
    assert_eq!(names(&test.event()), Vec::<String>::new(), "not asked for");
    assert_eq!(test.conn.stream.input.len(), 1);
    // One piece per ask: what one read gave.
    assert_eq!(names(&test.run(Conn::want_body)), ["body \"hello\" more"]);
    test.send(b"world");
    assert_eq!(names(&test.event()), Vec::<String>::new(), "not asked for");
    assert_eq!(names(&test.run(Conn::want_body)), ["body \"world\""]);
    assert!(!test.conn.body_unfinished());
    let actions = test.respond(Response::text(200, "ok"));
    assert_eq!(names(&actions), ["log 200"]);
    assert!(test.conn.keep_alive, "the body was read in full");
}

#[test]
fn each_ask_gets_one_piece_and_the_socket_is_not_read_in_between() {
    let mut test = concurrent();
    test.send(b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_eq!(names(&test.event()), ["begin POST /up"]);
    test.send(b"3\r\nabc\r\n");
    assert_eq!(names(&test.event()), Vec::<String>::new(), "not asked for");
    assert_eq!(names(&test.run(Conn::want_body)), ["body \"abc\" more"]);
    test.send(b"2\r\nde\r\n");
    test.event();
    assert_eq!(
        test.conn.stream.input.len(),
        1,
        "what the application did not ask for stays in the socket"
    );
    assert_eq!(names(&test.run(Conn::want_body)), ["body \"de\" more"]);
    assert_eq!(names(&test.run(Conn::want_body)), Vec::<String>::new());
    test.send(b"0\r\n\r\n");
    assert_eq!(names(&test.event()), ["body \"\""]);
}

#[test]
fn continue_goes_out_at_the_first_ask_not_before() {
    let mut test = concurrent();
    test.send(b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(names(&test.event()), ["begin POST /up"]);
    assert_eq!(
        test.received(),
        "",
        "no 100 Continue before the application asks"
    );
    assert_eq!(names(&test.run(Conn::want_body)), Vec::<String>::new());
    assert_eq!(test.received(), "HTTP/1.1 100 Continue\r\n\r\n");
    test.send(b"ok");
    assert_eq!(names(&test.event()), ["body \"ok\""]);
}

#[test]
fn an_answer_before_the_whole_body_closes_the_connection_after_it() {
    let mut test = concurrent();
    test.send(b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n");
    test.event();
    let actions = test.respond(Response::text(413, "too big"));
    assert_eq!(names(&actions), ["log 413"]);
    assert_eq!(
        test.state(),
        "lingering",
        "the client may still send the body: no reset under the response"
    );
    let received = test.received();
    assert!(received.starts_with("HTTP/1.1 413 "), "{received}");
    assert!(!received.contains("100 Continue"), "{received}");
    assert!(received.contains("Connection: close"), "{received}");
    assert!(!test.conn.keep_alive);
}

#[test]
fn a_body_that_stalls_while_the_application_waits_is_408() {
    let mut test = concurrent();
    test.send(POST);
    test.event();
    assert_eq!(
        test.expiry_in(Duration::from_secs(1000)),
        None,
        "not asked for yet"
    );
    test.run(Conn::want_body);
    assert_eq!(
        test.expiry_in(test.settings.body_timeout + Duration::from_secs(1)),
        Some(Expired::SlowBody)
    );
    let actions = test.run(|conn, ctx| conn.on_expired(Expired::SlowBody, ctx));
    assert_eq!(names(&actions), ["gone", "log 408"]);
    assert!(test.received().starts_with("HTTP/1.1 408 "));
}

#[test]
fn a_malformed_body_is_answered_while_the_response_has_not_begun() {
    let mut test = concurrent();
    test.send(b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
    test.event();
    test.send(b"zz\r\n");
    test.event();
    let actions = test.run(Conn::want_body);
    assert_eq!(names(&actions), ["gone", "log 400"]);
}

#[test]
fn a_client_that_leaves_while_its_request_is_with_the_application_is_noticed() {
    let mut test = concurrent();
    assert_eq!(names(&test.dispatch_get("")), ["dispatch GET /x"]);
    test.close_input();
    assert_eq!(names(&test.event()), ["gone", "close"]);
    // A pool's application is not told: the worker takes the request back if no thread has
    // started it (tests/mod.rs), and otherwise the response is written.
    let mut test = Test::new();
    test.dispatch_get("");
    test.close_input();
    assert_eq!(names(&test.event()), ["withdraw"]);
    assert_eq!(test.state(), "in app");
}

#[test]
fn a_whole_body_is_dispatched_with_its_request_as_before() {
    let mut test = concurrent();
    test.send(&[POST, b"helloworld"].concat());
    assert_eq!(names(&test.event()), ["dispatch POST /up"]);
}

#[test]
fn the_time_a_client_takes_to_send_its_body_is_not_the_applications() {
    let mut test = concurrent();
    let timeout = Duration::from_secs(30);
    test.send(POST);
    test.event();
    assert!(
        matches!(
            test.conn.expiry(later(Duration::from_secs(31)), timeout),
            Some(Expired::Request(_))
        ),
        "the application's time runs until it asks for the body"
    );
    test.run(Conn::want_body);
    assert_eq!(
        test.conn.expiry(later(Duration::from_secs(60)), timeout),
        None,
        "while it waits for the body, only body_timeout counts"
    );
    test.send(b"helloworld");
    test.event();
    assert!(
        matches!(
            test.conn.expiry(later(Duration::from_secs(31)), timeout),
            Some(Expired::Request(ran)) if ran < Duration::from_secs(32)
        ),
        "from the last piece on, request_timeout counts again"
    );
}

#[test]
fn a_continue_begun_goes_out_whole_before_the_response_and_none_after_it() {
    let expect =
        b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n";
    let mut test = concurrent();
    test.send(expect);
    test.event();
    test.conn.stream.max_write = 5;
    test.conn.stream.write_room = 5;
    test.run(Conn::want_body);
    assert_eq!(test.received(), "HTTP/");
    test.conn.stream.write_room = usize::MAX;
    test.conn.stream.max_write = usize::MAX;
    test.respond(Response::text(200, "ok"));
    let received = test.received();
    assert!(
        received.starts_with("1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"),
        "{received:?}"
    );
    // Not begun before the response: never sent, even if the application asks after it.
    let mut test = concurrent();
    test.send(expect);
    test.event();
    test.respond(Response::new(200).with_stream(chunks(&[])));
    assert!(test.received().starts_with("HTTP/1.1 200 OK\r\n"));
    test.run(Conn::want_body);
    assert!(!test.received().contains("100 Continue"));
}

#[test]
fn a_body_slower_than_min_body_rate_while_the_application_waits_is_408() {
    let mut test = Test::with(Settings {
        concurrent_app: true,
        min_body_rate: 100,
        body_rate_grace: Duration::from_secs(5),
        ..settings()
    });
    test.send(POST);
    test.event();
    assert_eq!(
        test.expiry_in(Duration::from_secs(60)),
        None,
        "the application sets the pace: no clock before it asks"
    );
    test.run(Conn::want_body);
    assert_eq!(
        test.expiry_in(Duration::from_secs(4)),
        None,
        "within the grace"
    );
    assert_eq!(
        test.expiry_in(Duration::from_secs(6)),
        Some(Expired::SlowBody),
        "no byte in the grace, far below 100 bytes/s"
    );
    test.send(b"hello");
    test.event();
    // 5 bytes handed over: the grace still bounds the next piece, counted from the ask.
    test.run(Conn::want_body);
    assert_eq!(test.expiry_in(Duration::from_secs(4)), None);
    assert_eq!(
        test.expiry_in(Duration::from_secs(6)),
        Some(Expired::SlowBody)
    );
}
