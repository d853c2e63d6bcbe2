//! The access log's bytes field: the body bytes that went out, counted when the response is
//! over, for streamed responses (whose length nobody announced) as for any other.

use crate::util::{TempDir, TestServer, wait_until};

#[test]
fn the_access_log_counts_the_body_bytes_sent_streams_included() {
    let dir = TempDir::new();
    let log = dir.path().join("access.log");
    let server = TestServer::builder("workers = 1")
        .tables(&format!(
            "[log]\naccess_log = \"{}\"\naccess_log_format = \"{{method}} {{target}} {{status}} {{bytes}}\"\n\
             [app]\nhandler = \"demo\"",
            log.display()
        ))
        .start();
    let requests = [
        // Chunked to HTTP/1.1: the chunks' bytes, not their framing.
        ("GET /stream?n=3&size=4 HTTP/1.1", 12),
        // Delimited by the close for HTTP/1.0.
        ("GET /stream?n=2&size=5 HTTP/1.0", 10),
        ("GET /bytes?n=7 HTTP/1.1", 7),
        // No body goes out for HEAD.
        ("HEAD /stream?n=3&size=4 HTTP/1.1", 0),
        ("HEAD /bytes?n=7 HTTP/1.1", 0),
    ];
    let mut expected = String::new();
    for (line, bytes) in requests {
        let mut stream = server.connect();
        std::io::Write::write_all(
            &mut stream,
            format!("{line}\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .unwrap();
        // Read to the close: the whole response went out.
        let mut all = Vec::new();
        std::io::Read::read_to_end(&mut stream, &mut all).unwrap();
        let (method, rest) = line.split_once(' ').unwrap();
        let target = rest.split(' ').next().unwrap();
        expected.push_str(&format!("{method} {target} 200 {bytes}\n"));
    }
    let text = wait_until(
        "every response in the access log",
        || std::fs::read_to_string(&log).unwrap_or_default(),
        |text| text.lines().count() >= requests.len(),
    );
    assert_eq!(text, expected);
}
