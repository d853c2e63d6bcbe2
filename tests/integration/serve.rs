//! Serving HTTP: the demo routes, keep-alive, request bodies, bad requests and the pool.

use std::io::Write;

use crate::util::{TestServer, read_response, read_response_head, wait_until};

const ONE_WORKER: &str = "workers = 1\nthreads = 4\n";

#[test]
fn demo_routes_answer() {
    let server = TestServer::start(ONE_WORKER);
    let hello = server.get("/");
    assert_eq!(hello.status, 200);
    assert_eq!(hello.text(), "Hello, World!");
    assert_eq!(
        hello.header("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(hello.header("Server"), Some("tine"));
    assert!(hello.header("Date").is_some_and(|d| d.ends_with(" GMT")));

    assert_eq!(server.get("/bytes?n=100000").body.len(), 100_000);
    assert_eq!(server.get("/sleep?ms=10").status, 200);
    assert_eq!(server.get("/cpu?n=1000").status, 200);
    assert_eq!(server.get("/nothing-here").status, 404);

    let pid: u32 = server.get("/pid").text().trim().parse().unwrap();
    assert_eq!(server.workers(), vec![pid], "/pid names the only worker");
}

#[test]
fn a_handler_panic_is_a_500_and_the_worker_keeps_serving() {
    let server = TestServer::start(ONE_WORKER);
    let before = server.workers();
    assert_eq!(server.get("/panic").status, 500);
    assert_eq!(server.get("/").status, 200);
    assert_eq!(server.workers(), before, "no worker was replaced");
    assert!(server.log().contains("panic"), "the panic is logged");
}

#[test]
fn echo_returns_content_length_and_chunked_bodies() {
    let server = TestServer::start(ONE_WORKER);
    let body = "x".repeat(70_000);
    let response = server.request(&format!(
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), body);

    let chunked = server.request(
        "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n",
    );
    assert_eq!(chunked.status, 200);
    assert_eq!(chunked.text(), "hello, world");
}

#[test]
fn keep_alive_serves_many_requests_on_one_connection_including_pipelined() {
    let server = TestServer::start(ONE_WORKER);
    let mut stream = server.connect();
    for _ in 0..3 {
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let response = read_response(&mut stream).unwrap();
        assert_eq!(response.text(), "Hello, World!");
        assert_eq!(response.header("Connection"), None);
    }
    // Three requests in one write: three responses, in order.
    stream
        .write_all(
            b"GET /bytes?n=1 HTTP/1.1\r\nHost: t\r\n\r\nGET /bytes?n=2 HTTP/1.1\r\nHost: t\r\n\r\n\
              GET /bytes?n=3 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    for n in 1..=3 {
        let response = read_response(&mut stream).unwrap();
        assert_eq!(response.body.len(), n);
    }
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut stream, &mut rest).unwrap();
    assert!(rest.is_empty(), "the server closed after Connection: close");
}

#[test]
fn head_gets_the_length_but_no_body() {
    let server = TestServer::start(ONE_WORKER);
    let mut stream = server.connect();
    stream
        .write_all(b"HEAD /bytes?n=5000 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let head = read_response_head(&mut stream).unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("Content-Length"), Some("5000"));
    // The next response on the connection starts right away: no body bytes came in between.
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut stream).unwrap().text(), "Hello, World!");
}

#[test]
fn http_1_0_closes_unless_keep_alive_is_asked_for() {
    let server = TestServer::start(ONE_WORKER);
    let response = server.request("GET / HTTP/1.0\r\n\r\n");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("Connection"), Some("close"));
    let mut stream = server.connect();
    stream
        .write_all(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .unwrap();
    let response = read_response(&mut stream).unwrap();
    assert_eq!(response.header("Connection"), Some("keep-alive"));
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut stream).unwrap().status, 200);
}

#[test]
fn malformed_requests_get_a_4xx_and_a_close() {
    let server = TestServer::start(ONE_WORKER);
    let cases = [
        ("GARBAGE\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\n\r\n", 400), // no Host
        ("GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505),
        ("GET / HTTP/1.1\r\nHost: t\r\nBad Name: x\r\n\r\n", 400),
        (
            "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        (
            "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
            400,
        ),
    ];
    for (raw, status) in cases {
        let mut stream = server.connect();
        stream.write_all(raw.as_bytes()).unwrap();
        let response = read_response(&mut stream).unwrap();
        assert_eq!(response.status, status, "for {raw:?}");
        assert_eq!(response.header("Connection"), Some("close"), "for {raw:?}");
    }
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(10_000));
    assert_eq!(server.request(&long_target).status, 414);
    // The worker is unharmed.
    assert_eq!(server.get("/").status, 200);
}

#[test]
fn a_body_over_the_limit_is_413_before_it_is_read() {
    let server = TestServer::builder("workers = 1")
        .tables("[limits]\nbody = \"1KiB\"")
        .start();
    let mut stream = server.connect();
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n")
        .unwrap();
    let response = read_response(&mut stream).unwrap();
    assert_eq!(response.status, 413);
}

#[test]
fn four_threads_run_four_slow_requests_at_once_and_a_fifth_waits_for_one() {
    let server = TestServer::builder("workers = 1\nthreads = 4")
        .control_socket()
        .start();
    // Sleeps sent longest first, each once the one before it is in the worker (the scoreboard
    // counts requests handed to the pool, running or queued): with four threads they all run
    // at once and finish shortest first; one at a time, they would finish in the order sent.
    // The 2 s steps are margins for a slow machine, not measurements: nothing here reads a
    // clock.
    let finished = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let send = |ms: u64| {
        let mut stream = server.connect();
        let finished = finished.clone();
        std::thread::spawn(move || {
            stream
                .write_all(
                    format!("GET /sleep?ms={ms} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                )
                .unwrap();
            let response = read_response(&mut stream).unwrap();
            assert_eq!(response.status, 200);
            (
                ms,
                finished.fetch_add(1, std::sync::atomic::Ordering::SeqCst),
            )
        })
    };
    let mut clients = Vec::new();
    for (n, ms) in [8000, 6000, 4000, 2000].into_iter().enumerate() {
        clients.push(send(ms));
        server.wait_busy(n as u64 + 1);
    }
    // A fifth, of one second, queued behind the four: it runs only when a thread is free, so
    // it finishes a second after the shortest of the four (with a fifth thread, a second
    // before it).
    clients.push(send(1000));
    server.wait_busy(5);
    let mut order: Vec<(u64, usize)> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    order.sort_by_key(|&(_, place)| place);
    let by_place: Vec<u64> = order.iter().map(|&(ms, _)| ms).collect();
    assert_eq!(
        by_place,
        [2000, 1000, 4000, 6000, 8000],
        "the order the requests finished in"
    );
}

#[test]
fn serves_on_a_unix_socket() {
    let dir = crate::util::TempDir::new();
    let socket = dir.path().join("tine.sock");
    let server = TestServer::builder("workers = 1")
        .bind(&format!("unix:{}", socket.display()))
        .start();
    let mut stream = crate::util::connect_unix(&socket);
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut stream, &mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(out.ends_with("Hello, World!"), "{out}");
    drop(server);
}

#[test]
fn a_handler_header_with_crlf_becomes_a_500_never_a_split_response() {
    let server = TestServer::start(ONE_WORKER);
    let fine = server.get("/header?name=X-Demo&value=ok");
    assert_eq!(fine.status, 200);
    assert_eq!(fine.header("X-Demo"), Some("ok"));
    let split = server.get("/header?name=X-Demo&value=a%0d%0aX-Injected:%201");
    assert_eq!(split.status, 500);
    assert_eq!(split.header("X-Injected"), None);
    assert_eq!(split.header("X-Demo"), None);
    let bad_name = server.get("/header?name=Bad%20Name&value=x");
    assert_eq!(bad_name.status, 500);
    assert!(server.log().contains("invalid header field"));
}

#[test]
fn expect_100_continue_is_answered_before_the_body_and_other_expectations_are_417() {
    let server = TestServer::start(ONE_WORKER);
    let mut stream = server.connect();
    stream
        .write_all(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
        )
        .unwrap();
    let interim = read_response_head(&mut stream).unwrap();
    assert_eq!(interim.status, 100);
    stream.write_all(b"hello").unwrap();
    let response = read_response(&mut stream).unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "hello");
    let refused = server.request(
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: something-else\r\n\r\nhello",
    );
    assert_eq!(refused.status, 417);
    // A body over the limit is refused without a 100 Continue first.
    let server = TestServer::builder("workers = 1")
        .tables("[limits]\nbody = \"4\"")
        .start();
    let mut stream = server.connect();
    stream
        .write_all(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
        )
        .unwrap();
    assert_eq!(read_response(&mut stream).unwrap().status, 413);
}

#[test]
fn a_slow_drip_head_gets_408() {
    let server = TestServer::start("workers = 1\nheader_timeout = \"1s\"\n");
    let mut stream = server.connect();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n").unwrap();
    // Never finished: the head must arrive within header_timeout.
    let response = read_response(&mut stream).unwrap();
    assert_eq!(response.status, 408);
    assert_eq!(response.header("Connection"), Some("close"));
}

#[test]
fn a_queued_request_whose_client_left_is_taken_back_and_logged_499() {
    let dir = crate::util::TempDir::new();
    let log = dir.path().join("access.log");
    let server = TestServer::builder("workers = 1\nthreads = 1")
        .tables(&format!(
            "[log]\naccess_log = \"{}\"\naccess_log_format = \"{{target}} {{status}} {{bytes}}\"\n\
             [app]\nhandler = \"demo\"",
            log.display()
        ))
        .control_socket()
        .start();
    let send = |target: &str| {
        let mut stream = server.connect();
        stream
            .write_all(format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
            .unwrap();
        stream
    };
    // The one thread is held for a minute; a second request queues behind it (the scoreboard
    // counts both), and then its client leaves.
    let _held = send("/sleep?ms=60000");
    server.wait_busy(1);
    let left = send("/sleep?ms=60000&left");
    server.wait_busy(2);
    drop(left);
    // Taken back at once, not a minute later when the thread would have run it for no one.
    server.wait_busy(1);
    let text = wait_until(
        "the 499 in the access log",
        || std::fs::read_to_string(&log).unwrap_or_default(),
        |text| !text.is_empty(),
    );
    assert_eq!(text, "/sleep?ms=60000&left 499 0\n");
}
