//! Spreading connections across workers: a burst of keep-alive connections lands on most of
//! the workers, not on the first one or two woken by the shared listener.

use std::collections::BTreeMap;
use std::io::Write;

use crate::util::{TestServer, read_response};

#[test]
fn a_burst_of_keep_alive_connections_is_spread_over_the_workers() {
    let server = TestServer::start("workers = 5\nthreads = 4\n");
    server.wait_workers("five workers", |w| w.len() == 5);
    // Ten connections opened at once, from as many threads, so that they queue together.
    let start = std::sync::Arc::new(std::sync::Barrier::new(10));
    let openers: Vec<_> = (0..10)
        .map(|_| {
            let start = std::sync::Arc::clone(&start);
            let addr = server.addr;
            std::thread::spawn(move || {
                start.wait();
                crate::util::connect(addr)
            })
        })
        .collect();
    let mut streams: Vec<_> = openers
        .into_iter()
        .map(|opener| opener.join().expect("connected"))
        .collect();
    for stream in &mut streams {
        stream
            .write_all(b"GET /pid HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
    }
    let mut by_worker: BTreeMap<String, usize> = BTreeMap::new();
    for stream in &mut streams {
        let response =
            read_response(stream).unwrap_or_else(|e| panic!("{e}; log:\n{}", server.log()));
        assert_eq!(response.status, 200);
        assert_ne!(response.header("Connection"), Some("close"), "kept alive");
        *by_worker
            .entry(response.text().trim().to_owned())
            .or_default() += 1;
    }
    // Each worker could take four (one per thread), and did, the first ones woken taking a
    // whole burst. Spread by the connections each holds, the five share ten.
    assert!(
        by_worker.len() >= 4 && by_worker.values().all(|&n| n <= 3),
        "connections per worker: {by_worker:?}"
    );
}
