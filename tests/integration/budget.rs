//! A worker's budget for the request bodies it is receiving (`[limits] body_memory`,
//! `body_disk`): many clients parking large uploads cannot fill its memory or the disk, the
//! bodies past the budget get `503` with `Retry-After`, and other clients are still served.

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use crate::util::{
    TempDir, TestServer, connect, read_response, read_response_head, rss_kib, wait_until,
};

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

/// The bytes in the files `pid` holds open that were unlinked from `dir` (spilled bodies).
fn spilled_bytes(pid: u32, dir: &Path) -> u64 {
    let dir = dir.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|entry| {
            std::fs::read_link(entry.path()).is_ok_and(|link| {
                let link = link.to_string_lossy();
                link.starts_with(&dir) && link.ends_with("(deleted)")
            })
        })
        .filter_map(|entry| std::fs::metadata(entry.path()).ok())
        .map(|meta| meta.len())
        .sum()
}

/// A connection that sends a `POST` head announcing `length` bytes, then `sent` of them.
fn park(server: &TestServer, length: usize, sent: usize) -> TcpStream {
    let mut stream = server.connect();
    let mut bytes =
        format!("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {length}\r\n\r\n").into_bytes();
    bytes.resize(bytes.len() + sent, b'x');
    stream.write_all(&bytes).unwrap();
    stream
}

/// Whether the server has answered on `stream` (without waiting).
fn answered(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let ready = matches!(stream.peek(&mut byte), Ok(1));
    stream.set_nonblocking(false).unwrap();
    ready
}

#[test]
fn parked_uploads_stay_within_the_body_budget_and_the_rest_get_503() {
    let tmp = TempDir::new();
    let server = TestServer::builder("workers = 1\nbody_timeout = \"60s\"")
        .tables(
            "[limits]\nbody = \"4MiB\"\nbody_buffer = \"256KiB\"\nbody_memory = \"4MiB\"\n\
             body_disk = \"8MiB\"\n[app]\nhandler = \"demo\"\n[metrics]\nbind = \"127.0.0.1:0\"",
        )
        .env("TMPDIR", tmp.path())
        .start();
    let worker = server.workers()[0];
    let rss_at_start = rss_kib(worker);
    // 25 uploads bound for a file (4 MiB announced, 1 MiB of it sent) and 25 held in memory
    // (200 KiB announced, 100 KiB of it sent), all stalled mid-body. A body holds what came of
    // it: the budget holds eight of the first kind (8 MiB of disk, and 256 KiB of memory each)
    // and, in the 2 MiB of memory left, 20 of the second.
    let mut parked: Vec<TcpStream> = (0..25).map(|_| park(&server, 4 * MIB, MIB)).collect();
    parked.extend((0..25).map(|_| park(&server, 200 * KIB, 100 * KIB)));

    // The eight file-bound bodies that fit are on disk, and nothing more is.
    wait_until(
        "the accepted uploads spilled",
        || spilled_bytes(worker, tmp.path()),
        |&bytes| bytes >= 8 * (MIB - 64 * KIB) as u64,
    );
    std::thread::sleep(Duration::from_millis(500));
    let spilled = spilled_bytes(worker, tmp.path());
    assert!(
        spilled <= 8 * MIB as u64,
        "{spilled} bytes spilled, past body_disk; log:\n{}",
        server.log()
    );

    // The others were refused at once, each with a 503 that says when to come back.
    let refused = wait_until(
        "the uploads past the budget answered",
        || parked.iter().filter(|s| answered(s)).count(),
        |&n| n >= 22,
    );
    assert_eq!(refused, 22, "17 of the first kind, 5 of the second");
    let mut held = Vec::new();
    for mut stream in parked {
        if !answered(&stream) {
            held.push(stream);
            continue;
        }
        let response = read_response_head(&mut stream).unwrap();
        assert_eq!(response.status, 503);
        assert_eq!(response.header("Retry-After"), Some("1"));
        assert_eq!(response.header("Connection"), Some("close"));
    }
    let log = server.log();
    assert_eq!(
        log.matches("refused a request body").count(),
        22,
        "one warning per refusal; log:\n{log}"
    );
    assert!(log.contains("body_disk = 8MiB"), "{log}");
    // And /metrics counts them.
    let metrics_addr = server.metrics_addr();
    wait_until(
        "the refusals in /metrics",
        || {
            let mut stream = connect(&metrics_addr);
            stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: m\r\n\r\n")
                .unwrap();
            read_response(&mut stream).unwrap().text()
        },
        |text| text.contains("\ntine_bodies_refused_total 22\n"),
    );

    // The bodies held in memory stay within body_memory (and the worker's own slack).
    let grown = rss_kib(worker).saturating_sub(rss_at_start);
    assert!(
        grown < 4 * 1024 + 8 * 1024,
        "the worker grew by {grown} KiB with 4 MiB of body_memory"
    );

    // Other clients are served meanwhile...
    assert_eq!(server.get("/").status, 200);
    // ...and once the parked uploads go, their budget is free again.
    drop(held);
    let body = vec![b'y'; 3 * MIB];
    let echoed = wait_until(
        "a large upload taken once the budget is free",
        || {
            let mut stream = server.connect();
            stream
                .write_all(
                    format!(
                        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    )
                    .as_bytes(),
                )
                .unwrap();
            let _ = stream.write_all(&body);
            read_response(&mut stream).map(|r| (r.status, r.body.len()))
        },
        |answer| matches!(answer, Ok((200, _))),
    );
    assert_eq!(echoed, Ok((200, 3 * MIB)));
}
