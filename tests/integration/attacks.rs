//! Attacks with a handful of sockets, against the real binary: slow and stalled uploads must
//! not stop a worker from taking new connections, a body below `min_body_rate` is answered 408
//! once `body_rate_grace` is over, and idle keep-alive connections give way at
//! `max_connections`.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::util::{TestServer, read_response, wait_until};

/// One worker with 4 threads, a control socket, and `server` keys.
fn start_with(server: &str) -> TestServer {
    TestServer::builder(format!("workers = 1\nthreads = 4\n{server}"))
        .control_socket()
        .start()
}

/// New connections served one after another, each with one `Connection: close` request, per
/// second.
fn new_connection_rate(server: &TestServer, count: u32) -> f64 {
    let started = Instant::now();
    for _ in 0..count {
        let response = server.get("/");
        assert_eq!(response.status, 200);
    }
    f64::from(count) / started.elapsed().as_secs_f64()
}

/// The open connections the workers report.
fn connections(server: &TestServer) -> u64 {
    let json = server.status_json();
    json.split("\"connections\":")
        .skip(1)
        .filter_map(|rest| rest.split([',', '}']).next()?.trim().parse::<u64>().ok())
        .sum()
}

/// A connection that sent the head of a 100 000-byte upload and one byte of its body.
fn slow_upload(server: &TestServer) -> TcpStream {
    let mut stream = server.connect();
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\nx")
        .unwrap();
    stream
}

/// The rate of new connections under attack: the best of up to three rounds, measured again
/// only while it stays under a quarter of `baseline`, so that a moment when a loaded machine
/// runs something else is not taken for the attack working (before the fix every round was
/// about 1% of the baseline).
fn rate_under_attack(server: &TestServer, baseline: f64) -> f64 {
    let mut best: f64 = 0.0;
    for _ in 0..3 {
        best = best.max(new_connection_rate(server, 200));
        if best >= baseline / 4.0 {
            break;
        }
    }
    best
}

/// The rate of new connections under attack is compared with the rate without: the one
/// timing-derived check, kept generous (a quarter; before the fix it was about 1%).
fn assert_served_under_attack(baseline: f64, attacked: f64) {
    assert!(
        attacked >= baseline / 4.0,
        "new connections: {attacked:.0}/s under attack, {baseline:.0}/s without"
    );
}

#[test]
fn slow_uploads_do_not_stop_a_worker_taking_new_connections() {
    let server = start_with("body_timeout = \"60s\"\nbody_rate_grace = \"60s\"\n");
    let baseline = new_connection_rate(&server, 200);
    let uploads: Vec<TcpStream> = (0..40).map(|_| slow_upload(&server)).collect();
    wait_until(
        "the worker holding the 40 uploads",
        || connections(&server),
        |n| *n >= 40,
    );
    let attacked = rate_under_attack(&server, baseline);
    assert_served_under_attack(baseline, attacked);
    wait_until(
        "the uploads still open, the new connections closed",
        || connections(&server),
        |n| *n == 40,
    );
    drop(uploads);
}

#[test]
fn uploads_below_min_body_rate_get_408_after_the_grace_while_others_are_served() {
    let server = start_with("body_timeout = \"30s\"\nbody_rate_grace = \"1s\"\n");
    let baseline = new_connection_rate(&server, 200);
    let stalled: Vec<TcpStream> = (0..50).map(|_| slow_upload(&server)).collect();
    let trickling: Vec<TcpStream> = (0..50).map(|_| slow_upload(&server)).collect();
    // One byte every half second on each: every byte restarts body_timeout, but 2 bytes/s
    // are far below min_body_rate (240 bytes/s by default).
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<TcpStream> = trickling.iter().map(|s| s.try_clone().unwrap()).collect();
    let trickle = std::thread::spawn({
        let stop = Arc::clone(&stop);
        move || {
            let mut writers = writers;
            let until = Instant::now() + Duration::from_secs(15);
            while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                for writer in &mut writers {
                    // Refused once the server closed it: that is the point.
                    let _ = writer.write_all(b"x");
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    });
    let attacked = rate_under_attack(&server, baseline);
    let answered = |mut stream: TcpStream| {
        let response = read_response(&mut stream).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(response.status, 408, "{response:?}");
        assert_eq!(response.header("Connection"), Some("close"));
    };
    for stream in trickling.into_iter().step_by(10) {
        answered(stream);
    }
    for stream in stalled.into_iter().step_by(10) {
        answered(stream);
    }
    stop.store(true, Ordering::Relaxed);
    trickle.join().unwrap();
    assert_served_under_attack(baseline, attacked);
    wait_until(
        "the slow uploads closed",
        || connections(&server),
        |n| *n == 0,
    );
    assert_eq!(server.get("/").status, 200);
}

#[test]
fn idle_keep_alive_connections_give_way_at_max_connections() {
    let server =
        TestServer::start("workers = 1\nthreads = 4\nmax_connections = 20\nkeepalive = \"120s\"\n");
    let mut idle: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut stream = server.connect();
            stream
                .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
            assert_eq!(read_response(&mut stream).unwrap().status, 200);
            stream
        })
        .collect();
    // The worker holds max_connections, all idle: a new client is still answered (before the
    // fix it waited for a keep-alive connection to time out).
    let response = server.get("/");
    assert_eq!(response.status, 200);
    // The connection idle longest was closed for it; the others are kept.
    let mut byte = [0u8; 1];
    assert_eq!(
        idle[0].read(&mut byte).unwrap(),
        0,
        "closed for the new one"
    );
    for stream in &mut idle[1..] {
        stream.set_nonblocking(true).unwrap();
        let read = stream.read(&mut byte);
        assert_eq!(
            read.map_err(|e| e.kind()).err(),
            Some(ErrorKind::WouldBlock),
            "still open and idle"
        );
    }
    // And they still serve.
    idle[1].set_nonblocking(false).unwrap();
    idle[1]
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut idle[1]).unwrap().status, 200);
}
