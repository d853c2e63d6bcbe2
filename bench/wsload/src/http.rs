//! `wsload http`: keep-alive HTTP/1.1 load that counts the responses each connection got.
//!
//! C client connections ("slots") each connect, wait at a start line until every one has tried,
//! then send `GET PATH` and read its whole response, back to back, for S seconds. A slot whose
//! connection the server closes (after a response that says so) opens a new one; an error (a
//! refused connect, a reset, no response within `--timeout`) is counted by kind, and the slot
//! opens a new connection too, as wrk does. At the end every socket is shut down, so a slot still
//! waiting for an answer stops at once, and that wait is neither a response nor an error.
//!
//! wrk reports totals only. The per-slot counts show what totals hide: a server that serves a
//! few connections and starves the rest (one thread held per keep-alive connection) can reach a
//! good total while most clients get nothing.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::{
    Opts, Target, json_counts, kind, micros_since, percentile, protocol_error, spawn_each,
};

/// The longest response head accepted.
const MAX_HEAD: usize = 64 << 10;
/// How long a slot whose connect failed waits before it tries again.
const RETRY_PAUSE: Duration = Duration::from_millis(10);

/// `wsload http`: the run, as one JSON object.
pub(crate) fn run(opts: &Opts) -> Result<String, String> {
    Ok(load(&opts.target, opts.connections, opts.duration, opts.timeout)?.json())
}

/// What one response said about its connection.
#[derive(Debug, PartialEq)]
struct Response {
    status: u16,
    keep_alive: bool,
}

/// Reads one whole response from `reader` (its head, then its body by `Content-Length`, by
/// chunks, or to the end of the connection when it has neither) and discards the body.
fn read_response(reader: &mut impl BufRead) -> io::Result<Response> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let before = head.len();
        if reader.read_until(b'\n', &mut head)? == 0 {
            return Err(protocol_error(if before == 0 {
                "closed before a response"
            } else {
                "closed inside a response head"
            }));
        }
        if head.len() > MAX_HEAD {
            return Err(protocol_error("a response head over 64 KiB"));
        }
    }
    let head = String::from_utf8_lossy(&head);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.split(' ');
    let version = parts.next().unwrap_or_default();
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| version.starts_with("HTTP/1."))
        .ok_or_else(|| protocol_error(format!("a bad status line {status_line:?}")))?;
    let mut keep_alive = version == "HTTP/1.1";
    let (mut length, mut chunked) = (None, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<u64>()
                    .map_err(|_| protocol_error(format!("Content-Length {value:?}")))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                }
            }
        }
    }
    if status < 200 || status == 204 || status == 304 {
        // No body, whatever the head says (RFC 9112 §6.3).
    } else if chunked {
        read_chunks(reader)?;
    } else if let Some(n) = length {
        discard(reader, n)?;
    } else {
        io::copy(reader, &mut io::sink())?;
        keep_alive = false;
    }
    Ok(Response { status, keep_alive })
}

/// Reads exactly `n` bytes and drops them.
fn discard(reader: &mut impl BufRead, n: u64) -> io::Result<()> {
    if io::copy(&mut reader.by_ref().take(n), &mut io::sink())? == n {
        Ok(())
    } else {
        Err(protocol_error("closed inside a response body"))
    }
}

/// Reads a chunked body to its last chunk and its trailer, and drops it.
fn read_chunks(reader: &mut impl BufRead) -> io::Result<()> {
    let mut line = String::new();
    loop {
        line.clear();
        if reader.by_ref().take(1024).read_line(&mut line)? == 0 || !line.ends_with('\n') {
            return Err(protocol_error("a bad or missing chunk size line"));
        }
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = u64::from_str_radix(size, 16)
            .map_err(|_| protocol_error(format!("a bad chunk size {size:?}")))?;
        if size == 0 {
            break;
        }
        discard(reader, size + 2)?;
    }
    // The trailer: header lines up to an empty one.
    loop {
        line.clear();
        if reader.by_ref().take(MAX_HEAD as u64).read_line(&mut line)? == 0 {
            return Err(protocol_error("closed inside a chunked body's trailer"));
        }
        if line == "\r\n" || line == "\n" {
            return Ok(());
        }
    }
}

/// What the run measured.
struct Load {
    seconds: f64,
    /// The responses each slot got, in the order the slots were started.
    per_connection: Vec<u64>,
    /// Connections opened after each slot's first.
    reconnects: u64,
    /// Every slot's together, the latencies sorted.
    all: Slot,
}

impl Load {
    fn json(&self) -> String {
        let all = &self.all;
        let requests = all.responses;
        let class = |name| all.errors.get(name).copied().unwrap_or(0);
        let counts: Vec<String> = self.per_connection.iter().map(u64::to_string).collect();
        format!(
            "{{\"mode\": \"http\", \"connections\": {}, \"seconds\": {:.3}, \"duration_us\": {}, \
             \"requests\": {requests}, \"requests_per_s\": {:.1}, \"p50_us\": {}, \"p99_us\": {}, \
             \"connect\": {}, \"read\": {}, \"write\": {}, \"timeout\": {}, \"status\": {}, \
             \"reconnects\": {}, \"error_kinds\": {}, \"per_connection\": [{}]}}",
            self.per_connection.len(),
            self.seconds,
            (self.seconds * 1e6).round() as u64,
            if self.seconds > 0.0 {
                requests as f64 / self.seconds
            } else {
                0.0
            },
            percentile(&all.latencies_us, 50),
            percentile(&all.latencies_us, 99),
            class("connect"),
            class("read"),
            class("write"),
            class("timeout"),
            all.status_errors,
            self.reconnects,
            json_counts(&all.error_kinds),
            counts.join(", "),
        )
    }
}

/// What one slot (or, added up, every slot) measured.
#[derive(Default)]
struct Slot {
    responses: u64,
    /// Each counted response's time from its request's write to its last byte.
    latencies_us: Vec<u32>,
    /// Responses with a status of 400 or more (they count in `responses` too).
    status_errors: u64,
    /// Errors by wrk's classes: connect, read, write, timeout.
    errors: BTreeMap<&'static str, u64>,
    /// The same errors by class and kind, to say what went wrong.
    error_kinds: BTreeMap<String, u64>,
    connections: u64,
}

impl Slot {
    fn add(&mut self, other: Slot) {
        self.responses += other.responses;
        self.latencies_us.extend(other.latencies_us);
        self.status_errors += other.status_errors;
        self.connections += other.connections;
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        for (k, v) in other.error_kinds {
            *self.error_kinds.entry(k).or_default() += v;
        }
    }

    fn error(&mut self, class: &'static str, e: &io::Error) {
        let class = match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut if class == "read" => "timeout",
            _ => class,
        };
        *self.errors.entry(class).or_default() += 1;
        *self
            .error_kinds
            .entry(format!("{class}: {}", kind(e)))
            .or_default() += 1;
    }
}

/// What every slot shares: the stop flag, and each slot's current socket so that the main
/// thread can shut it down at the end.
struct Shared {
    stop: AtomicBool,
    sockets: Mutex<Vec<Option<TcpStream>>>,
}

impl Shared {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Connects slot `index`, every step bounded by `timeout`, and records its socket; None
    /// when the run has stopped meanwhile.
    fn connect(
        &self,
        index: usize,
        target: &Target,
        timeout: Duration,
    ) -> Option<io::Result<BufReader<TcpStream>>> {
        let open = || -> io::Result<(TcpStream, TcpStream)> {
            let stream = TcpStream::connect_timeout(&target.addr, timeout)?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(timeout))?;
            stream.set_write_timeout(Some(timeout))?;
            let handle = stream.try_clone()?;
            Ok((stream, handle))
        };
        let opened = open();
        let mut sockets = self.sockets.lock().unwrap_or_else(|e| e.into_inner());
        // Checked under the lock the main thread shuts the sockets down under: a socket recorded
        // after that is this slot's to drop.
        if self.stopped() {
            return None;
        }
        Some(opened.map(|(stream, handle)| {
            sockets[index] = Some(handle);
            BufReader::with_capacity(16 << 10, stream)
        }))
    }
}

/// Runs `connections` slots against `target` for `duration`, counted from the moment every slot
/// has made its first connect (or failed to).
fn load(
    target: &Target,
    connections: usize,
    duration: Duration,
    timeout: Duration,
) -> Result<Load, String> {
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        sockets: Mutex::new((0..connections).map(|_| None).collect()),
    });
    let start_line = Arc::new(Barrier::new(connections + 1));
    let handles = {
        let (shared, start_line, target) =
            (Arc::clone(&shared), Arc::clone(&start_line), target.clone());
        spawn_each(connections, move |index| {
            slot(index, &target, timeout, &start_line, &shared)
        })?
    };
    start_line.wait();
    let started = Instant::now();
    thread::sleep(duration);
    let seconds = {
        let sockets = shared.sockets.lock().unwrap_or_else(|e| e.into_inner());
        shared.stop.store(true, Ordering::SeqCst);
        for socket in sockets.iter().flatten() {
            // It may be closed already; nothing to do then.
            let _ = socket.shutdown(Shutdown::Both);
        }
        started.elapsed().as_secs_f64()
    };
    let mut run = Load {
        seconds,
        per_connection: Vec::with_capacity(connections),
        reconnects: 0,
        all: Slot::default(),
    };
    for handle in handles {
        let one = handle
            .join()
            .map_err(|_| "a connection's thread panicked".to_string())?;
        run.per_connection.push(one.responses);
        run.reconnects += one.connections.saturating_sub(1);
        run.all.add(one);
    }
    run.all.latencies_us.sort_unstable();
    Ok(run)
}

/// One slot: its first connect, the start line, then requests until the stop.
fn slot(
    index: usize,
    target: &Target,
    timeout: Duration,
    start_line: &Barrier,
    shared: &Shared,
) -> Slot {
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\n\r\n",
        target.path, target.host
    );
    let mut stats = Slot::default();
    let mut conn = match shared.connect(index, target, timeout) {
        Some(Ok(conn)) => {
            stats.connections += 1;
            Some(conn)
        }
        Some(Err(e)) => {
            stats.error("connect", &e);
            None
        }
        None => None,
    };
    start_line.wait();
    while !shared.stopped() {
        let mut reader = match conn.take() {
            Some(reader) => reader,
            None => match shared.connect(index, target, timeout) {
                Some(Ok(reader)) => {
                    stats.connections += 1;
                    reader
                }
                Some(Err(e)) => {
                    stats.error("connect", &e);
                    thread::sleep(RETRY_PAUSE);
                    continue;
                }
                None => break,
            },
        };
        let sent = Instant::now();
        if let Err(e) = reader.get_mut().write_all(request.as_bytes()) {
            if !shared.stopped() {
                stats.error("write", &e);
            }
            continue;
        }
        let response = read_response(&mut reader);
        // A response completed after the stop is not counted, nor a wait the stop cut short.
        if shared.stopped() {
            break;
        }
        match response {
            Ok(response) => {
                stats.latencies_us.push(micros_since(sent));
                stats.responses += 1;
                if response.status >= 400 {
                    stats.status_errors += 1;
                }
                if response.keep_alive {
                    conn = Some(reader);
                }
            }
            Err(e) => stats.error("read", &e),
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use std::net::TcpListener;

    fn read_all(bytes: &[u8]) -> Vec<io::Result<Response>> {
        let mut reader = Cursor::new(bytes.to_vec());
        let mut out = Vec::new();
        while (reader.position() as usize) < bytes.len() {
            let got = read_response(&mut reader);
            let failed = got.is_err();
            out.push(got);
            if failed {
                break;
            }
        }
        out
    }

    #[test]
    fn responses_are_read_whole_by_length_by_chunks_and_to_the_end() {
        let stream = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, World!\
            HTTP/1.1 404 Not Found\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
            5;ext=1\r\nHello\r\n8\r\n, World!\r\n0\r\nX-Trailer: 1\r\n\r\n\
            HTTP/1.1 204 No Content\r\nContent-Length: 99\r\n\r\n\
            HTTP/1.0 200 OK\r\nConnection: keep-alive\r\ncontent-length: 2\r\n\r\nok\
            HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n\
            HTTP/1.0 200 OK\r\n\r\nthe rest of the connection";
        let got: Vec<Response> = read_all(stream).into_iter().map(Result::unwrap).collect();
        let want = [
            (200, true),
            (404, true),
            (204, true),
            (200, true),
            (200, false),
            (200, false),
        ];
        let want: Vec<Response> = want
            .iter()
            .map(|&(status, keep_alive)| Response { status, keep_alive })
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_cut_or_malformed_response_is_an_error() {
        for bad in [
            &b""[..],
            b"HTTP/1.1 200 OK\r\nContent-Le",
            b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nHel",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"SSH-2.0-OpenSSH\r\n\r\n",
        ] {
            let got = read_response(&mut Cursor::new(bad));
            let err = got.expect_err(&String::from_utf8_lossy(bad));
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        }
    }

    /// Reads one request head from `stream`; false at its end.
    fn read_request(stream: &mut BufReader<TcpStream>) -> bool {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read_until(b'\n', &mut head) {
                Ok(0) | Err(_) => return false,
                Ok(_) => {}
            }
        }
        assert!(head.starts_with(b"GET /path?x=1 HTTP/1.1\r\nHost: "));
        true
    }

    #[test]
    fn each_connection_is_counted_a_starved_one_as_zero_and_a_closed_one_reopens() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let server_done = Arc::clone(&done);
        // The first connection accepted is read and never answered; every later one gets three
        // keep-alive responses, then one with `Connection: close`.
        let server = thread::spawn(move || {
            let mut served = Vec::new();
            for (n, stream) in listener.incoming().enumerate() {
                let stream = stream.unwrap();
                if server_done.load(Ordering::SeqCst) {
                    break; // the test's own wake-up connection, below
                }
                served.push(thread::spawn(move || {
                    let mut reader = BufReader::new(stream);
                    let mut answered = 0;
                    while read_request(&mut reader) {
                        if n == 0 {
                            continue;
                        }
                        answered += 1;
                        let last = answered == 4;
                        let close = if last { "Connection: close\r\n" } else { "" };
                        let reply =
                            format!("HTTP/1.1 200 OK\r\n{close}Content-Length: 2\r\n\r\nok");
                        if reader.get_mut().write_all(reply.as_bytes()).is_err() || last {
                            return;
                        }
                    }
                }));
            }
            for one in served {
                one.join().unwrap();
            }
        });
        let target = Target {
            addr,
            host: addr.to_string(),
            path: "/path?x=1".into(),
        };
        let run = load(
            &target,
            3,
            Duration::from_millis(500),
            Duration::from_secs(10),
        )
        .unwrap();
        // Wakes the accept loop to see that the run is over.
        done.store(true, Ordering::SeqCst);
        drop(TcpStream::connect(addr));
        server.join().unwrap();
        let mut counts = run.per_connection.clone();
        counts.sort_unstable();
        assert_eq!(counts[0], 0, "{}", run.json());
        assert!(counts[1] >= 4 && counts[2] >= 4, "{}", run.json());
        assert!(run.reconnects >= 2, "{}", run.json());
        assert!(run.all.errors.is_empty(), "{}", run.json());
        assert_eq!(
            run.all.latencies_us.len() as u64,
            counts.iter().sum::<u64>()
        );
        assert_eq!(run.all.responses, counts.iter().sum::<u64>());
        let json = run.json();
        assert!(json.contains("\"per_connection\": ["), "{json}");
        assert!(json.contains("\"status\": 0"), "{json}");
    }
}
