//! Issue 13's edges through the real binary: a higher minor HTTP version, a worker out of file
//! descriptors, the demo application's limits, and a metrics listener that silent clients
//! cannot starve.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use crate::util::{
    TempDir, TestServer, WAIT, connect, read_response, read_response_head, read_until_close,
    run_bounded, skip, wait_until,
};

#[test]
fn http_1_2_is_answered_as_http_1_1() {
    let server = TestServer::start("workers = 1\nthreads = 2");
    let mut stream = server.connect();
    stream
        .write_all(b"GET /bytes?n=3 HTTP/1.2\r\nHost: t\r\n\r\n")
        .unwrap();
    let response = read_response(&mut stream).unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"xxx".to_vec());
    // Persistent as 1.1 is; then the version on the status line, and 2.0 still 505.
    stream
        .write_all(b"GET /bytes?n=1 HTTP/1.9\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let raw = read_until_close(&mut stream).unwrap();
    assert!(raw.starts_with(b"HTTP/1.1 200 OK\r\n"), "{raw:?}");
    let old = server.request("GET / HTTP/2.0\r\nHost: t\r\n\r\n");
    assert_eq!(old.status, 505);
}

/// How many of the descriptor numbers below `limit` `pid` has open, from /proc. (A descriptor
/// inherited at a higher number, such as a test runner's jobserver pipe, takes no slot below
/// the limit.)
fn open_fds(pid: u32, limit: usize) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|entry| entry.file_name().to_str()?.parse::<usize>().ok())
                .filter(|&fd| fd < limit)
                .count()
        })
        .unwrap_or(0)
}

/// User plus system CPU time of `pid`, in clock ticks, from /proc/PID/stat.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = stat.rsplit_once(')').unwrap().1;
    // After the command name: state is field 3; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn clock_ticks_per_second() -> u64 {
    let out = run_bounded(Command::new("getconf").arg("CLK_TCK"), None, WAIT);
    out.stdout.trim().parse().unwrap_or(100)
}

/// Opens a connection that asks for `target` and reads only the response head, so the worker
/// holds the file open while the socket's buffers are full.
fn slow_reader(server: &TestServer, target: &str) -> TcpStream {
    let mut stream = server.connect();
    stream
        .write_all(format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .unwrap();
    let head = read_response_head(&mut stream).unwrap();
    assert_eq!(head.status, 200);
    stream
}

#[test]
fn out_of_descriptors_a_static_file_is_503_never_404_and_the_worker_does_not_spin() {
    if Command::new("prlimit").arg("--version").output().is_err() {
        return skip("prlimit (util-linux) is not installed");
    }
    // A hard limit low enough to reach with a few dozen sockets.
    const LIMIT: usize = 64;
    let site = TempDir::new();
    let root = site.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    // Sparse: 256 MiB of zeros that take no disk, more than the socket buffers hold.
    std::fs::File::create(root.join("big.bin"))
        .unwrap()
        .set_len(256 << 20)
        .unwrap();
    std::fs::write(root.join("small.txt"), "small\n").unwrap();
    let server = TestServer::builder("workers = 1\nthreads = 2\nheader_timeout = \"30s\"")
        .tables(&format!(
            "[app]\nhandler = \"static\"\nroot = {}\n",
            crate::util::toml_string(&root.to_string_lossy())
        ))
        .wrapper(&["prlimit", &format!("--nofile={LIMIT}:{LIMIT}"), "--"])
        .start();
    // The master says the hard limit is below what max_connections needs, and which key.
    let log = server.wait_log("the hard open files limit is 64, below the 2065");
    assert!(log.contains("[server] max_connections = 1000"), "{log}");
    let worker = server.wait_workers("one worker", |w| w.len() == 1)[0];
    assert_eq!(server.get("/small.txt").status, 200);

    // Slow readers of the large file take two descriptors each (socket and file), until exactly
    // one is free: the next connection can be accepted, and its file cannot be opened.
    let mut held = Vec::new();
    let free = |fds: usize| LIMIT - fds;
    let settled = || {
        // The count moves only when the worker acts on a connection: read it until it stays.
        let mut last = open_fds(worker, LIMIT);
        loop {
            std::thread::sleep(Duration::from_millis(50));
            let now = open_fds(worker, LIMIT);
            if now == last {
                return now;
            }
            last = now;
        }
    };
    if free(settled()) % 2 == 0 {
        // Parity: a connection that has sent half a head holds one descriptor.
        let mut partial = server.connect();
        partial.write_all(b"GET /small.txt HTTP/1.1\r\n").unwrap();
        let before = free(settled());
        wait_until(
            "the partial connection accepted",
            || free(open_fds(worker, LIMIT)),
            |&f| f < before || f % 2 == 1,
        );
        held.push(partial);
    }
    while free(settled()) > 1 {
        held.push(slow_reader(&server, "/big.bin"));
    }
    assert_eq!(free(settled()), 1, "exactly one descriptor left");

    // A new client asks for a file that exists: 503 with Retry-After, never 404 (nor 500).
    let response = server.get("/small.txt");
    assert_eq!(response.status, 503, "{response:?}\n{}", server.log());
    assert_eq!(response.header("Retry-After"), Some("1"));

    // That connection closed; another that sends half a head takes the last descriptor. Now
    // accept fails (EMFILE) for a client waiting in the listen queue, and the worker must not
    // spin on it.
    assert_eq!(free(settled()), 1);
    let mut plug = server.connect();
    plug.write_all(b"GET /small.txt HTTP/1.1\r\n").unwrap();
    wait_until(
        "the last descriptor taken",
        || free(open_fds(worker, LIMIT)),
        |&f| f == 0,
    );
    let mut waiting = server.connect();
    waiting
        .write_all(b"GET /small.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let ticks = clock_ticks_per_second();
    let before = cpu_ticks(worker);
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(worker) - before;
    assert!(
        used < ticks,
        "the worker used {used} ticks of CPU in 2 s ({ticks} a second): it spins"
    );

    // It was not taken: no descriptor for it, and no answer.
    assert_eq!(free(open_fds(worker, LIMIT)), 0);
    waiting
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut byte = [0u8; 1];
    let unanswered = waiting.peek(&mut byte);
    assert!(
        unanswered
            .as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock),
        "{unanswered:?}"
    );
    waiting.set_read_timeout(Some(WAIT)).unwrap();

    // The slow readers go: the waiting client and new ones are served.
    held.clear();
    drop(plug);
    let response = read_response(&mut waiting).unwrap();
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.body, b"small\n".to_vec());
    assert_eq!(server.get("/small.txt").status, 200);
    let mut big = connect(server.addr);
    big.write_all(
        b"GET /big.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=0-9\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut raw = Vec::new();
    big.read_to_end(&mut raw).unwrap();
    assert!(raw.starts_with(b"HTTP/1.1 206"), "{raw:?}");
}

#[test]
fn the_demo_caps_its_bodies_and_refuses_framing_and_cookie_headers() {
    let server = TestServer::start("workers = 1\nthreads = 2");
    assert_eq!(server.get("/bytes?n=16777216").body.len(), 16 << 20);
    assert_eq!(server.get("/bytes?n=16777217").status, 400);
    assert_eq!(server.get("/stream?n=65&size=1048576").status, 400);
    assert_eq!(server.get("/stream?n=100000&size=65536").status, 400);
    let mut stream = server.connect();
    stream
        .write_all(b"HEAD /stream?n=64&size=1048576 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response_head(&mut stream).unwrap().status, 200);
    for name in [
        "Set-Cookie",
        "Location",
        "Refresh",
        "Clear-Site-Data",
        "Content-Length",
        "Transfer-Encoding",
        "Connection",
        "Proxy-Authenticate",
    ] {
        let response = server.get(&format!("/header?name={name}&value=x"));
        assert_eq!(response.status, 400, "{name}");
        assert!(response.text().contains("refused header"), "{name}");
        assert_eq!(response.header(name).filter(|v| *v == "x"), None, "{name}");
    }
    let allowed = server.get("/header?name=X-Demo&value=x");
    assert_eq!(allowed.header("X-Demo"), Some("x"));
}

/// The metrics address the master logged.
fn metrics_addr(server: &TestServer) -> std::net::SocketAddr {
    let log = server.wait_log("metrics on http://");
    log.lines()
        .find_map(|line| line.split("metrics on http://").nth(1))
        .and_then(|rest| rest.split('/').next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no metrics address in the log:\n{log}"))
}

#[test]
fn silent_clients_cannot_starve_the_metrics_listener() {
    let server = TestServer::builder("workers = 1\nthreads = 2")
        .tables("[metrics]\nbind = \"127.0.0.1:0\"")
        .control_socket()
        .start();
    let addr = metrics_addr(&server);
    // More silent clients than the endpoint's 64 slots: the last ones wait in the listen queue.
    let silent: Vec<TcpStream> = (0..70).map(|_| connect(addr)).collect();
    // The control socket has slots of its own.
    assert!(server.status_json().contains("\"workers\""));
    // A scraper that connects while every slot is taken is answered: the oldest silent
    // connection gives way to it (before, it waited for the silent ones' 5 s deadline, and
    // before that fix for ever: its connection arrived while the listener was full).
    let mut scraper = connect(addr);
    scraper
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let response = read_response(&mut scraper)
        .unwrap_or_else(|e| panic!("the waiting scrape: {e}; log:\n{}", server.log()));
    assert_eq!(response.status, 200);
    assert!(response.text().contains("tine_workers 1\n"));
    // Answered while most silent clients were still connected: the oldest gave way, rather
    // than every one of the first 64 reaching its deadline.
    let open = silent.iter().filter(|stream| still_open(stream)).count();
    assert!(
        open >= 60,
        "only {open} of 70 silent clients still connected: the scrape waited for deadlines"
    );
    assert!(open < 70, "the oldest silent clients gave way");
    for path in ["/metrics", "/healthz"] {
        let mut client = connect(addr);
        client
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
            .unwrap();
        assert_eq!(read_response(&mut client).unwrap().status, 200, "{path}");
    }
    drop(silent);
}

/// Whether the server still holds `stream` open: nothing to read yet, neither an end nor a
/// reset.
fn still_open(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let open =
        matches!(stream.peek(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    stream.set_nonblocking(false).unwrap();
    open
}
