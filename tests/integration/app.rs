//! Embedded applications: the examples, built by `cargo test` alongside the tests, run as real
//! servers through `tine::Server`, with the tine command line, signals and processes.

use std::io::Write;
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::util::{
    Builder, TempDir, TestServer, read_response, rss_kib, unlinked_temp_files, wait_until,
};

/// The example binary `name` as `cargo test` built it (`target/debug/examples/NAME-HASH`),
/// the newest if there are several.
fn example(name: &str) -> Option<PathBuf> {
    let test_binary = std::env::current_exe().ok()?;
    let dir = test_binary.parent()?.parent()?.join("examples");
    let prefix = format!("{name}-");
    std::fs::read_dir(&dir)
        .ok()?
        .flatten()
        .filter(|entry| {
            let file = entry.file_name().to_string_lossy().into_owned();
            file.starts_with(&prefix) && !file.contains('.')
        })
        .max_by_key(|entry| entry.metadata().and_then(|m| m.modified()).ok())
        .map(|entry| entry.path())
}

/// The example `name` as a server on `config`, through the same builder as tine itself; `None`
/// (after [`crate::util::skip`]) when the example has not been built (`cargo test --test ...`
/// alone does not build examples).
fn example_server(name: &str, config: Builder) -> Option<TestServer> {
    let Some(binary) = example(name) else {
        crate::util::skip(&format!(
            "the example {name} is not built; run the whole `cargo test`"
        ));
        return None;
    };
    Some(config.program(&binary).start())
}

#[test]
fn the_hello_example_serves_with_the_tine_command_line() {
    let Some(mut server) = example_server("hello", TestServer::builder("workers = 2")) else {
        return;
    };
    assert_eq!(server.workers().len(), 2, "two forked workers");
    assert_eq!(server.get("/").text(), "Hello, World!\n");
    assert_eq!(server.get("/hello/t%C3%AEne+2").text(), "Hello, tîne+2!\n");
    assert_eq!(server.get("/nope").status, 404);
    server.signal(Signal::SIGTERM);
    assert_eq!(server.wait_exit().code(), Some(0), "log:\n{}", server.log());
}

#[test]
fn the_per_worker_example_keeps_state_in_each_worker() {
    let Some(server) = example_server(
        "per_worker",
        TestServer::builder("workers = 2\nthreads = 2"),
    ) else {
        return;
    };
    let workers = server.workers();
    // Each answer names its worker and that worker's own count; over many connections both
    // workers answer, and each counts only what it served.
    let mut last_count = std::collections::HashMap::new();
    for _ in 0..40 {
        let text = server.get("/").text();
        let pid: u32 = text
            .split("(pid ")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .and_then(|pid| pid.parse().ok())
            .unwrap_or_else(|| panic!("{text}"));
        assert!(workers.contains(&pid), "{pid} is not a worker: {text}");
        let count: u64 = text
            .split(": ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{text}"));
        let previous = last_count.insert(pid, count).unwrap_or(0);
        assert_eq!(count, previous + 1, "worker {pid} counts its own requests");
    }
    let first = server.get("/slow?n=12").text();
    assert!(first.starts_with("12² = 144"), "{first}");
}

#[test]
fn requests_know_their_peer_and_the_listener_they_came_in_on() {
    let dir = TempDir::new();
    let socket = dir.path().join("app.sock");
    let unix_bind = format!("unix:{}", socket.display());
    let Some(server) = example_server(
        "per_worker",
        TestServer::builder("workers = 1").bind(&unix_bind),
    ) else {
        return;
    };
    let mut tcp = crate::util::connect(server.addr);
    let local = tcp.local_addr().unwrap();
    tcp.write_all(b"GET /whoami HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let text = read_response(&mut tcp).unwrap().text();
    assert_eq!(text, format!("peer {local} on {}\n", server.addr));

    let mut unix = crate::util::connect_unix(&socket);
    unix.write_all(b"GET /whoami HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw = String::new();
    std::io::Read::read_to_string(&mut unix, &mut raw).unwrap();
    assert!(
        raw.ends_with(&format!("peer a unix socket client on {unix_bind}\n")),
        "{raw}"
    );
}

#[test]
fn a_graceful_stop_tells_each_worker_s_application_then_drops_it() {
    let Some(mut server) = example_server(
        "per_worker",
        TestServer::builder("workers = 2").control_socket(),
    ) else {
        return;
    };
    assert!(server.get("/slow?n=3").text().ends_with("(computed)\n"));
    // A request still running when the stop begins is answered before the drop.
    let mut slow = server.connect();
    slow.write_all(b"GET /slow?n=99 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    // In the application (busy), or, if the machine was quicker than the status query, already
    // answered: either way the stop comes after it reached the worker.
    wait_until(
        "the slow request in the worker",
        || server.busy() == 1 || answer_waiting(&slow),
        |&reached| reached,
    );
    server.signal(Signal::SIGTERM);
    assert_eq!(server.wait_exit().code(), Some(0), "log:\n{}", server.log());
    let answer = read_response(&mut slow).unwrap();
    assert!(answer.text().starts_with("99² = 9801"), "{}", answer.text());
    let log = server.log();
    for slot in [1, 2] {
        let stopping = log
            .find(&format!("app in worker {slot} stopping after"))
            .unwrap_or_else(|| panic!("no on_stop in worker {slot}; log:\n{log}"));
        let dropped = log
            .find(&format!("app in worker {slot} dropped with"))
            .unwrap_or_else(|| panic!("no drop in worker {slot}; log:\n{log}"));
        assert!(stopping < dropped, "told first, then dropped; log:\n{log}");
    }
}

/// Whether bytes of an answer are waiting on `stream` (without reading them).
fn answer_waiting(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let waiting = stream.peek(&mut [0u8; 1]).is_ok_and(|n| n > 0);
    stream.set_nonblocking(false).unwrap();
    waiting
}

/// Reads one chunk of a chunked body: `Some(data)`, or `None` at the last chunk (whose empty
/// trailer section is read too).
fn read_chunk(reader: &mut impl std::io::BufRead) -> Option<Vec<u8>> {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let size = usize::from_str_radix(line.trim_end(), 16)
        .unwrap_or_else(|_| panic!("bad chunk line {line:?}"));
    let mut data = vec![0u8; size + 2];
    reader.read_exact(&mut data).unwrap();
    assert!(data.ends_with(b"\r\n"), "a chunk must end with CRLF");
    data.truncate(size);
    if size == 0 {
        return None;
    }
    Some(data)
}

#[test]
fn a_streamed_body_to_a_slow_reader_keeps_memory_flat_and_the_worker_serving() {
    let server = TestServer::start("workers = 1\nthreads = 2\n");
    let worker = server.workers()[0];
    // 1000 × 64 KiB: just under the demo's 64 MiB cap on a stream.
    let (chunks, size) = (1000, 64 * 1024);
    let mut stream = server.connect();
    stream
        .write_all(
            format!("GET /stream?n={chunks}&size={size} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes(),
        )
        .unwrap();
    let head = crate::util::read_response_head(&mut stream).unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("Transfer-Encoding"), Some("chunked"));
    assert_eq!(head.header("Content-Length"), None);
    let mut reader = std::io::BufReader::with_capacity(16 * 1024, stream);

    let rss_at_start = rss_kib(worker);
    let mut received = 0;
    // Twenty chunks, slowly: the sleep is the behaviour (a client that reads slowly), and
    // between chunks other requests on the same worker are answered (each within the read
    // timeout, `WAIT`, a hang detector).
    for _ in 0..20 {
        let chunk = read_chunk(&mut reader).expect("the stream is far from over");
        let letter = b'a' + (received % 26) as u8;
        assert!(chunk.len() == size && chunk.iter().all(|&b| b == letter));
        received += 1;
        assert_eq!(server.get("/sleep?ms=5").status, 200);
        std::thread::sleep(Duration::from_millis(30));
    }
    let rss_while_slow = rss_kib(worker);
    // A producer racing ahead would have buffered much of the 62.5 MiB by now.
    assert!(
        rss_while_slow < rss_at_start + 16 * 1024,
        "the worker grew from {rss_at_start} KiB to {rss_while_slow} KiB"
    );

    // The rest at full speed: every chunk, in order, then the end.
    while let Some(chunk) = read_chunk(&mut reader) {
        let letter = b'a' + (received % 26) as u8;
        assert!(chunk.len() == size && chunk.iter().all(|&b| b == letter));
        received += 1;
    }
    assert_eq!(received, chunks);
    // Keep-alive survives the stream.
    let mut stream = reader.into_inner();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut stream).unwrap().text(), "Hello, World!");
}

#[test]
fn streams_are_close_delimited_for_http_1_0_and_bodiless_for_head() {
    let server = TestServer::start("workers = 1\n");
    let old = server.request("GET /stream?n=3&size=5 HTTP/1.0\r\n\r\n");
    assert_eq!(old.status, 200);
    assert_eq!(old.header("Transfer-Encoding"), None);
    assert_eq!(old.header("Connection"), Some("close"));
    assert_eq!(old.text(), "aaaaabbbbbccccc");

    let mut stream = server.connect();
    stream
        .write_all(b"HEAD /stream?n=3&size=5 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let head = crate::util::read_response_head(&mut stream).unwrap();
    assert_eq!(head.header("Transfer-Encoding"), Some("chunked"));
    stream
        .write_all(b"GET /stream?n=0 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let empty = crate::util::read_response_head(&mut stream).unwrap();
    assert_eq!(
        empty.status, 200,
        "no body bytes came between the two heads"
    );
    let mut reader = std::io::BufReader::new(stream);
    assert_eq!(
        read_chunk(&mut reader),
        None,
        "an empty stream is just the last chunk"
    );

    // A client that leaves mid-stream costs the worker nothing lasting.
    let mut quitter = server.connect();
    quitter
        .write_all(b"GET /stream?n=1000&size=65536 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    crate::util::read_response_head(&mut quitter).unwrap();
    drop(quitter);
    assert_eq!(server.get("/").text(), "Hello, World!");
}

#[test]
fn a_request_body_over_body_buffer_goes_to_an_unlinked_file_not_memory() {
    let server = TestServer::builder("workers = 1")
        .tables("[limits]\nbody = \"1GiB\"\nbody_buffer = \"64KiB\"")
        .start();
    let worker = server.workers()[0];
    let rss_at_start = rss_kib(worker);
    let size = 32 << 20;
    let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
    let mut stream = server.connect();
    stream
        .write_all(
            format!("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {size}\r\n\r\n").as_bytes(),
        )
        .unwrap();
    let (first, rest) = data.split_at(24 << 20);
    stream.write_all(first).unwrap();
    // Mid-body: the worker writes what arrived to a file with no name...
    wait_until(
        "an unlinked temporary file in the worker",
        || unlinked_temp_files(worker),
        |files| !files.is_empty(),
    );
    // ...and does not hold the body in memory.
    let rss_mid_body = rss_kib(worker);
    assert!(
        rss_mid_body < rss_at_start + 8 * 1024,
        "the worker grew from {rss_at_start} KiB to {rss_mid_body} KiB"
    );
    stream.write_all(rest).unwrap();
    let echoed = read_response(&mut stream).unwrap();
    assert_eq!(echoed.status, 200);
    assert!(echoed.body == data, "the echoed body differs");
    // Once answered, the file is gone with the request.
    wait_until(
        "the temporary file gone with its request",
        || unlinked_temp_files(worker),
        |files| files.is_empty(),
    );
    // A small body never touches a file.
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nsmall")
        .unwrap();
    assert_eq!(read_response(&mut stream).unwrap().text(), "small");
}

#[test]
fn a_graceful_stop_lets_a_stream_finish_then_exits_without_waiting_for_keep_alive() {
    // Keep-alive and the graceful timeout far beyond `WAIT`: exiting within `wait_exit`'s
    // bound (a hang detector) shows the master waited for neither.
    let mut server =
        TestServer::start("workers = 1\ngraceful_timeout = \"1h\"\nkeepalive = \"1h\"");
    let mut stream = server.connect();
    stream
        .write_all(b"GET /stream?n=200&size=65536 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    crate::util::read_response_head(&mut stream).unwrap();
    let mut reader = std::io::BufReader::new(stream);
    assert!(read_chunk(&mut reader).is_some());
    server.signal(Signal::SIGTERM);
    let mut received = 1;
    while read_chunk(&mut reader).is_some() {
        received += 1;
    }
    assert_eq!(received, 200, "the stream in flight completes");
    assert_eq!(server.wait_exit().code(), Some(0), "log:\n{}", server.log());
}
