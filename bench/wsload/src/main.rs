//! wsload: the WebSocket load client of bench/websocket.sh, and the keep-alive HTTP client of
//! bench/wsgi.sh that counts the responses of each connection. Standard library only.
//!
//! It speaks the client side of RFC 6455: the opening handshake (with the RFC's own sample key,
//! so the server's `Sec-WebSocket-Accept` must be the RFC's sample answer), masked frames out,
//! unmasked frames in (fragmented messages reassembled, pings answered with pongs, the close
//! handshake). One thread per connection; the connections only ever go to a loopback address.
//!
//! ```text
//! wsload echo --url ws://127.0.0.1:PORT/ --connections C --duration S --size B
//! wsload idle --url ws://127.0.0.1:PORT/ --connections N --hold S
//! wsload http --url http://127.0.0.1:PORT/PATH --connections C --duration S
//! ```
//!
//! `echo`: C connections, each sends a B-byte binary message, waits for its echo, checks it and
//! sends the next, for S seconds counted from the moment every connection has finished its
//! handshake; prints one JSON object (messages/s, round-trip p50/p99 in µs, errors, mismatches).
//!
//! `idle`: opens N connections (at most `--open-concurrency` handshakes under way at once) and
//! prints `OPEN handshakes=H failed=F open_s=T` once every one has been tried; holds them idle
//! for S seconds (answering pings), then closes each with a close frame 1000 and prints one JSON
//! object: how many completed the handshake, how many the server dropped while idle, how many
//! got a close frame back.
//!
//! `http`: C keep-alive connections (see the `http` module), each sending `GET PATH` requests
//! back to back for S seconds; prints one JSON object with the responses each connection got.
//!
//! Options common to all: `--timeout S` (default 10): the longest wait for a connect, a
//! handshake, an echo, a close answer or a response; `--open-concurrency K` (default 128,
//! `idle` only).

use std::collections::BTreeMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

mod http;

/// RFC 6455 §1.3's sample nonce, and the `Sec-WebSocket-Accept` a server must answer it with.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// The largest message accepted from a server: far above what the bench sends.
const MAX_MESSAGE: u64 = 64 << 20;
/// How often an idle connection's thread looks up from its socket to see whether to stop.
const IDLE_TICK: Duration = Duration::from_secs(1);
/// Stack of each connection's thread: they hold little, and `idle` starts thousands.
const STACK: usize = 256 << 10;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse(&args).and_then(|opts| match opts.mode {
        Mode::Echo => echo(&opts),
        Mode::Idle => idle(&opts),
        Mode::Http => http::run(&opts),
    }) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("wsload: {why}");
            ExitCode::from(2)
        }
    }
}

// --- options ---------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Echo,
    Idle,
    Http,
}

struct Opts {
    mode: Mode,
    target: Target,
    connections: usize,
    duration: Duration,
    size: usize,
    hold: Duration,
    timeout: Duration,
    open_concurrency: usize,
}

/// Where the connections go: the resolved loopback address, and what the request line and
/// `Host` header say.
#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    host: String,
    path: String,
}

const USAGE: &str =
    "usage: wsload echo --url ws://127.0.0.1:PORT/PATH --connections C --duration S --size B
       wsload idle --url ws://127.0.0.1:PORT/PATH --connections N --hold S
       wsload http --url http://127.0.0.1:PORT/PATH --connections C --duration S
       (all: [--timeout S]; idle: [--open-concurrency K])";

fn parse(args: &[String]) -> Result<Opts, String> {
    let mode = match args.first().map(String::as_str) {
        Some("echo") => Mode::Echo,
        Some("idle") => Mode::Idle,
        Some("http") => Mode::Http,
        _ => return Err(USAGE.to_string()),
    };
    let mut values = BTreeMap::new();
    let mut rest = args[1..].iter();
    while let Some(flag) = rest.next() {
        let name = flag
            .strip_prefix("--")
            .filter(|n| {
                let known = [
                    "url",
                    "connections",
                    "duration",
                    "size",
                    "hold",
                    "timeout",
                    "open-concurrency",
                ];
                known.contains(n)
            })
            .ok_or_else(|| format!("unknown argument {flag:?}\n{USAGE}"))?;
        let value = rest.next().ok_or_else(|| format!("{flag} needs a value"))?;
        values.insert(name, value.as_str());
    }
    let number = |name: &str, default: Option<u64>| -> Result<u64, String> {
        match values.get(name) {
            Some(v) => match v.parse::<u64>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!(
                    "--{name} must be a positive whole number, got {v:?}"
                )),
            },
            None => default.ok_or_else(|| format!("--{name} is required\n{USAGE}")),
        }
    };
    let url = values
        .get("url")
        .ok_or_else(|| format!("--url is required\n{USAGE}"))?;
    let (duration, size, hold) = match mode {
        Mode::Echo => (number("duration", None)?, number("size", None)?, 0),
        Mode::Idle => (0, 0, number("hold", None)?),
        Mode::Http => (number("duration", None)?, 0, 0),
    };
    let scheme = if mode == Mode::Http { "http" } else { "ws" };
    Ok(Opts {
        mode,
        target: target(url, scheme)?,
        connections: usize::try_from(number("connections", None)?).map_err(|e| e.to_string())?,
        duration: Duration::from_secs(duration),
        size: usize::try_from(size).map_err(|e| e.to_string())?,
        hold: Duration::from_secs(hold),
        timeout: Duration::from_secs(number("timeout", Some(10))?),
        open_concurrency: usize::try_from(number("open-concurrency", Some(128))?)
            .map_err(|e| e.to_string())?,
    })
}

/// `SCHEME://HOST:PORT/PATH` with HOST a loopback address (or `localhost`).
fn target(url: &str, scheme: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix(scheme)
        .and_then(|rest| rest.strip_prefix("://"))
        .ok_or_else(|| format!("--url must start with {scheme}://, got {url:?}"))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = host
        .to_socket_addrs()
        .map_err(|e| format!("--url: cannot resolve {host:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("--url: {host:?} resolves to nothing"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "--url: {host} is not a loopback address; wsload sends only to this machine"
        ));
    }
    Ok(Target {
        addr,
        host: host.to_string(),
        path: path.to_string(),
    })
}

// --- the protocol ----------------------------------------------------------------------------

/// A random u64 from the standard library's per-process hashing keys.
fn seed() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish() | 1
}

/// One client connection after a successful opening handshake.
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    rng: u64,
    out: Vec<u8>,
}

fn protocol_error(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

impl Conn {
    /// Connects and does the opening handshake, every step bounded by `timeout`: the answer
    /// must be `101` with the `Sec-WebSocket-Accept` RFC 6455 gives for its sample key.
    fn open(target: &Target, timeout: Duration) -> io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&target.addr, timeout)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let mut writer = stream.try_clone()?;
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n",
            target.path, target.host
        );
        writer.write_all(request.as_bytes())?;
        let mut reader = BufReader::with_capacity(1 << 16, stream);
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            if reader.read_until(b'\n', &mut head)? == 0 || head.len() > 16 << 10 {
                return Err(protocol_error(
                    "the handshake's answer ended early or is too long",
                ));
            }
        }
        let head = String::from_utf8_lossy(&head);
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap_or_default();
        if status.split(' ').nth(1) != Some("101") {
            return Err(protocol_error(format!(
                "handshake answered {status:?}, not 101"
            )));
        }
        let accept = lines.find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("sec-websocket-accept")
                .then(|| value.trim().to_string())
        });
        match accept.as_deref() {
            Some(ACCEPT) => Ok(Conn {
                reader,
                writer,
                rng: seed(),
                out: Vec::new(),
            }),
            Some(other) => Err(protocol_error(format!(
                "Sec-WebSocket-Accept is {other:?}, not {ACCEPT:?}"
            ))),
            None => Err(protocol_error("the 101 has no Sec-WebSocket-Accept")),
        }
    }

    /// Sends one whole frame, masked with a fresh key, in one write.
    fn send(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let key = (self.rng as u32).to_be_bytes();
        self.out.clear();
        self.out.push(0x80 | opcode);
        match payload.len() {
            n @ 0..=125 => self.out.push(0x80 | n as u8),
            n @ 126..=0xFFFF => {
                self.out.push(0x80 | 126);
                self.out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                self.out.push(0x80 | 127);
                self.out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        self.out.extend_from_slice(&key);
        let start = self.out.len();
        self.out.extend_from_slice(payload);
        // Eight bytes at a time: the mask repeats every 4, and each chunk starts on a multiple
        // of 4 from the payload's start.
        let key8 = u64::from_ne_bytes([
            key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
        ]);
        let mut chunks = self.out[start..].chunks_exact_mut(8);
        for chunk in &mut chunks {
            let word = u64::from_ne_bytes(chunk.try_into().expect("an 8-byte chunk")) ^ key8;
            chunk.copy_from_slice(&word.to_ne_bytes());
        }
        for (byte, k) in chunks.into_remainder().iter_mut().zip(key.iter().cycle()) {
            *byte ^= k;
        }
        self.writer.write_all(&self.out)
    }

    /// Reads one frame into `payload` (replacing what it held) and returns (FIN, opcode).
    /// Refuses what a server must not send: masked frames, reserved bits, control frames that
    /// are fragmented or longer than 125 bytes.
    fn read_frame(&mut self, payload: &mut Vec<u8>) -> io::Result<(bool, u8)> {
        let mut head = [0u8; 2];
        self.reader.read_exact(&mut head)?;
        let (fin, opcode) = (head[0] & 0x80 != 0, head[0] & 0x0F);
        if head[0] & 0x70 != 0 {
            return Err(protocol_error("a frame with reserved bits set"));
        }
        if head[1] & 0x80 != 0 {
            return Err(protocol_error("a masked frame from the server"));
        }
        let len = match head[1] & 0x7F {
            126 => {
                let mut b = [0u8; 2];
                self.reader.read_exact(&mut b)?;
                u64::from(u16::from_be_bytes(b))
            }
            127 => {
                let mut b = [0u8; 8];
                self.reader.read_exact(&mut b)?;
                u64::from_be_bytes(b)
            }
            n => u64::from(n),
        };
        if opcode >= OP_CLOSE && (!fin || len > 125) {
            return Err(protocol_error("a fragmented or oversized control frame"));
        }
        if len > MAX_MESSAGE {
            return Err(protocol_error(format!("a {len}-byte frame")));
        }
        payload.resize(len as usize, 0);
        self.reader.read_exact(payload)?;
        Ok((fin, opcode))
    }

    /// What a control frame read by `read_frame` asks for: a ping is answered with a pong
    /// (Ok(false)), a pong ignored (Ok(false)); a close is Ok(true); anything else is no control
    /// frame (an error).
    fn control(&mut self, opcode: u8, payload: &[u8]) -> io::Result<bool> {
        match opcode {
            OP_PING => self.send(OP_PONG, payload).map(|()| false),
            OP_PONG => Ok(false),
            OP_CLOSE => Ok(true),
            other => Err(protocol_error(format!("unexpected opcode {other:#x}"))),
        }
    }

    /// Reads the next whole message into `message`, fragments reassembled, control frames dealt
    /// with on the way; returns its opcode (text or binary). A close from the server is an error.
    fn recv(&mut self, message: &mut Vec<u8>) -> io::Result<u8> {
        let mut frame = Vec::new();
        let mut first = None;
        loop {
            // A message's first frame goes straight into `message`; the fragments after it
            // through `frame`.
            let (fin, opcode) =
                self.read_frame(if first.is_none() { message } else { &mut frame })?;
            match (opcode, first) {
                (OP_TEXT | OP_BINARY, None) if fin => return Ok(opcode),
                (OP_TEXT | OP_BINARY, None) => first = Some(opcode),
                (OP_CONTINUATION, Some(kind)) => {
                    message.extend_from_slice(&frame);
                    if fin {
                        return Ok(kind);
                    }
                }
                (OP_TEXT | OP_BINARY | OP_CONTINUATION, _) => {
                    return Err(protocol_error(
                        "a data frame out of place in a fragmented message",
                    ));
                }
                _ => {
                    let payload = if first.is_none() { &*message } else { &frame };
                    if self.control(opcode, payload)? {
                        return Err(protocol_error("the server closed the connection"));
                    }
                }
            }
        }
    }

    /// Sends a close frame 1000 and reads until the server's close frame, bounded by
    /// `timeout`; whether one came.
    fn close(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        if self.send(OP_CLOSE, &1000u16.to_be_bytes()).is_err() {
            return false;
        }
        let mut frame = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.reader.get_ref().set_read_timeout(Some(left)).is_err() {
                return false;
            }
            match self.read_frame(&mut frame) {
                Ok((_, OP_CLOSE)) => return true,
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
    }
}

/// A short name for an error, to count errors by kind.
fn kind(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::InvalidData => e.to_string(),
        k => format!("{k:?}"),
    }
}

fn json_counts(counts: &BTreeMap<String, u64>) -> String {
    let items: Vec<String> = counts
        .iter()
        .map(|(k, v)| format!("{}: {v}", json_string(k)))
        .collect();
    format!("{{{}}}", items.join(", "))
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Microseconds since `sent`, as the latency lists keep them (saturating at `u32::MAX`).
fn micros_since(sent: Instant) -> u32 {
    u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX)
}

/// The `p`th percentile of `sorted` (ascending), 0 when it is empty.
fn percentile(sorted: &[u32], p: usize) -> u32 {
    if sorted.is_empty() {
        0
    } else {
        sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
    }
}

/// Starts `n` threads, each running `body(index)`, and returns their handles.
fn spawn_each<T: Send + 'static>(
    n: usize,
    body: impl Fn(usize) -> T + Send + Sync + 'static,
) -> Result<Vec<thread::JoinHandle<T>>, String> {
    let body = Arc::new(body);
    (0..n)
        .map(|i| {
            let body = Arc::clone(&body);
            thread::Builder::new()
                .stack_size(STACK)
                .spawn(move || body(i))
                .map_err(|e| format!("cannot start thread {i}: {e}"))
        })
        .collect()
}

// --- echo ------------------------------------------------------------------------------------

#[derive(Default)]
struct EchoStats {
    messages: u64,
    mismatches: u64,
    latencies_us: Vec<u32>,
    errors: BTreeMap<String, u64>,
    handshake_failures: u64,
}

fn echo(opts: &Opts) -> Result<String, String> {
    let start_line = Arc::new(Barrier::new(opts.connections + 1));
    let stop = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(AtomicUsize::new(0));
    let (target, size, timeout) = (opts.target.clone(), opts.size, opts.timeout);
    let handles = {
        let (start_line, stop, opened) = (
            Arc::clone(&start_line),
            Arc::clone(&stop),
            Arc::clone(&opened),
        );
        spawn_each(opts.connections, move |_| {
            echo_connection(&target, size, timeout, &start_line, &opened, &stop)
        })?
    };
    start_line.wait();
    let started = Instant::now();
    // Nothing to measure when no handshake succeeded: the result says so at once.
    if opened.load(Ordering::Relaxed) > 0 {
        thread::sleep(opts.duration);
    }
    stop.store(true, Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    let mut all = EchoStats::default();
    for handle in handles {
        let one = handle
            .join()
            .map_err(|_| "a connection's thread panicked".to_string())?;
        all.messages += one.messages;
        all.mismatches += one.mismatches;
        all.handshake_failures += one.handshake_failures;
        all.latencies_us.extend(one.latencies_us);
        for (k, v) in one.errors {
            *all.errors.entry(k).or_default() += v;
        }
    }
    all.latencies_us.sort_unstable();
    let pct = |p| percentile(&all.latencies_us, p);
    let errors: u64 = all.errors.values().sum();
    Ok(format!(
        "{{\"mode\": \"echo\", \"connections\": {}, \"size\": {}, \"seconds\": {seconds:.3}, \
         \"messages\": {}, \"messages_per_s\": {:.1}, \"p50_us\": {}, \"p99_us\": {}, \
         \"errors\": {errors}, \"mismatches\": {}, \"handshake_failures\": {}, \"error_kinds\": {}}}",
        opts.connections,
        opts.size,
        all.messages,
        if seconds > 0.0 {
            all.messages as f64 / seconds
        } else {
            0.0
        },
        pct(50),
        pct(99),
        all.mismatches,
        all.handshake_failures,
        json_counts(&all.errors),
    ))
}

/// One echo connection: the handshake, then the start line (every connection waits there,
/// whether its handshake worked or not; `opened` counts those that did), then round trips until
/// `stop`, then a close.
fn echo_connection(
    target: &Target,
    size: usize,
    timeout: Duration,
    start_line: &Barrier,
    opened: &AtomicUsize,
    stop: &AtomicBool,
) -> EchoStats {
    let mut stats = EchoStats::default();
    let conn = Conn::open(target, timeout);
    if conn.is_ok() {
        opened.fetch_add(1, Ordering::Relaxed);
    }
    start_line.wait();
    let mut conn = match conn {
        Ok(conn) => conn,
        Err(e) => {
            stats.handshake_failures = 1;
            *stats
                .errors
                .entry(format!("handshake: {}", kind(&e)))
                .or_default() += 1;
            return stats;
        }
    };
    // A payload of random bytes, its first 8 the message's sequence number, so no two
    // consecutive messages are alike.
    let mut payload = vec![0u8; size];
    let mut rng = seed();
    for byte in payload.iter_mut() {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        *byte = rng as u8;
    }
    let mut echoed = Vec::with_capacity(size);
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let n = size.min(8);
        payload[..n].copy_from_slice(&seq.to_le_bytes()[..n]);
        let sent = Instant::now();
        let round = conn
            .send(OP_BINARY, &payload)
            .and_then(|()| conn.recv(&mut echoed));
        match round {
            Ok(opcode) => {
                stats.latencies_us.push(micros_since(sent));
                stats.messages += 1;
                if opcode != OP_BINARY || echoed != payload {
                    stats.mismatches += 1;
                }
            }
            Err(e) => {
                *stats.errors.entry(kind(&e)).or_default() += 1;
                return stats;
            }
        }
    }
    conn.close(timeout);
    stats
}

// --- idle ------------------------------------------------------------------------------------

/// What every idle connection's thread reports into, and what the main thread waits on.
#[derive(Default)]
struct IdleState {
    tried: usize,
    under_way: usize,
    handshakes: u64,
    failures: BTreeMap<String, u64>,
}

#[derive(Default)]
struct IdleEnd {
    held: bool,
    dropped: Option<String>,
    pings: u64,
    close_back: bool,
}

fn idle(opts: &Opts) -> Result<String, String> {
    let shared = Arc::new((Mutex::new(IdleState::default()), Condvar::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let open_deadline =
        started + opts.timeout * 2 + Duration::from_millis(opts.connections as u64 * 10);
    let mut handles = Vec::with_capacity(opts.connections);
    let (lock, changed) = &*shared;
    for _ in 0..opts.connections {
        {
            let mut state = lock.lock().map_err(|_| "poisoned")?;
            while state.under_way >= opts.open_concurrency {
                state = changed.wait(state).map_err(|_| "poisoned")?;
            }
            state.under_way += 1;
        }
        let (target, timeout) = (opts.target.clone(), opts.timeout);
        let (shared, stop) = (Arc::clone(&shared), Arc::clone(&stop));
        let handle = thread::Builder::new()
            .stack_size(STACK)
            .spawn(move || idle_connection(&target, timeout, &shared, &stop))
            .map_err(|e| {
                format!(
                    "cannot start a thread for connection {}: {e}",
                    handles.len()
                )
            })?;
        handles.push(handle);
    }
    {
        let mut state = lock.lock().map_err(|_| "poisoned")?;
        while state.tried < opts.connections {
            let left = open_deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = changed.wait_timeout(state, left).map_err(|_| "poisoned")?.0;
        }
        let failed: u64 = state.failures.values().sum();
        println!(
            "OPEN handshakes={} failed={failed} open_s={:.1}",
            state.handshakes,
            started.elapsed().as_secs_f64()
        );
        io::stdout().flush().map_err(|e| e.to_string())?;
    }
    thread::sleep(opts.hold);
    stop.store(true, Ordering::Relaxed);
    let (mut held, mut close_back, mut pings) = (0u64, 0u64, 0u64);
    let mut dropped = BTreeMap::new();
    for handle in handles {
        let end = handle
            .join()
            .map_err(|_| "a connection's thread panicked".to_string())?;
        held += u64::from(end.held);
        close_back += u64::from(end.close_back);
        pings += end.pings;
        if let Some(why) = end.dropped {
            *dropped.entry(why).or_default() += 1;
        }
    }
    let state = lock.lock().map_err(|_| "poisoned")?;
    let dropped_n: u64 = dropped.values().sum();
    Ok(format!(
        "{{\"mode\": \"idle\", \"connections\": {}, \"handshakes\": {}, \"failed\": {}, \
         \"failures\": {}, \"held_to_the_end\": {}, \"dropped_while_idle\": {dropped_n}, \
         \"dropped\": {}, \"pings_answered\": {pings}, \"close_sent\": {held}, \"close_back\": {close_back}}}",
        opts.connections,
        state.handshakes,
        state.failures.values().sum::<u64>(),
        json_counts(&state.failures),
        held,
        json_counts(&dropped),
    ))
}

/// One idle connection: the handshake (reported to the main thread), then waiting on the
/// socket, answering pings, until `stop`; then the close handshake.
fn idle_connection(
    target: &Target,
    timeout: Duration,
    shared: &(Mutex<IdleState>, Condvar),
    stop: &AtomicBool,
) -> IdleEnd {
    let opened = Conn::open(target, timeout);
    {
        let (lock, changed) = shared;
        let mut state = lock.lock().unwrap_or_else(|e| e.into_inner());
        state.tried += 1;
        state.under_way -= 1;
        match &opened {
            Ok(_) => state.handshakes += 1,
            Err(e) => *state.failures.entry(kind(e)).or_default() += 1,
        }
        changed.notify_all();
    }
    let mut end = IdleEnd::default();
    let Ok(mut conn) = opened else { return end };
    let mut frame = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        // Wait for a byte without consuming it, looking up every IDLE_TICK; a whole frame is
        // then read under the full timeout.
        if conn
            .reader
            .get_ref()
            .set_read_timeout(Some(IDLE_TICK))
            .is_err()
        {
            end.dropped = Some("setsockopt".into());
            return end;
        }
        match conn.reader.fill_buf() {
            Ok([]) => {
                end.dropped = Some("eof".into());
                return end;
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => {
                end.dropped = Some(kind(&e));
                return end;
            }
        }
        let read = conn
            .reader
            .get_ref()
            .set_read_timeout(Some(timeout))
            .and_then(|()| conn.read_frame(&mut frame));
        let why = match read
            .and_then(|(_, opcode)| conn.control(opcode, &frame).map(|closed| (opcode, closed)))
        {
            Ok((OP_PING, false)) => {
                end.pings += 1;
                continue;
            }
            Ok((_, false)) => continue,
            Ok((_, true)) => "close from the server".to_string(),
            Err(e) => kind(&e),
        };
        end.dropped = Some(why);
        return end;
    }
    end.held = true;
    end.close_back = conn.close(timeout);
    end
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Reads one frame as a server does: it must be masked; returns (FIN, opcode, unmasked payload).
    fn server_read(stream: &mut TcpStream) -> (bool, u8, Vec<u8>) {
        let mut head = [0u8; 2];
        stream.read_exact(&mut head).unwrap();
        assert_ne!(head[1] & 0x80, 0, "a client frame must be masked");
        let len = match head[1] & 0x7F {
            126 => {
                let mut b = [0u8; 2];
                stream.read_exact(&mut b).unwrap();
                usize::from(u16::from_be_bytes(b))
            }
            127 => {
                let mut b = [0u8; 8];
                stream.read_exact(&mut b).unwrap();
                usize::try_from(u64::from_be_bytes(b)).unwrap()
            }
            n => usize::from(n),
        };
        let mut key = [0u8; 4];
        stream.read_exact(&mut key).unwrap();
        let mut payload = vec![0u8; len];
        stream.read_exact(&mut payload).unwrap();
        for (i, byte) in payload.iter_mut().enumerate() {
            *byte ^= key[i % 4];
        }
        (head[0] & 0x80 != 0, head[0] & 0x0F, payload)
    }

    /// Writes one unmasked server frame.
    fn server_write(stream: &mut TcpStream, fin: bool, opcode: u8, payload: &[u8]) {
        let mut frame = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            n @ 0..=125 => frame.push(n as u8),
            n @ 126..=0xFFFF => {
                frame.push(126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(payload);
        stream.write_all(&frame).unwrap();
    }

    /// A one-connection server on 127.0.0.1: reads the request head, answers it with `answer`,
    /// then runs `then` on the stream. Returns the target to connect to and the server's thread.
    fn serve(
        answer: &'static str,
        then: impl FnOnce(&mut TcpStream) + Send + 'static,
    ) -> (Target, thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                stream.read_exact(&mut byte).unwrap();
                head.push(byte[0]);
            }
            stream.write_all(answer.as_bytes()).unwrap();
            then(&mut stream);
            String::from_utf8(head).unwrap()
        });
        (
            Target {
                addr,
                host: addr.to_string(),
                path: "/echo".into(),
            },
            server,
        )
    }

    const SWITCHING: &str = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                             Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
    const SIZES: [usize; 8] = [0, 1, 7, 125, 126, 65535, 65536, 70001];

    #[test]
    fn messages_of_every_length_class_round_trip_masked_and_reassembled() {
        let (target, server) = serve(SWITCHING, |stream| {
            for _ in SIZES {
                let (fin, opcode, payload) = server_read(stream);
                assert!(fin);
                assert_eq!(opcode, OP_BINARY);
                // A ping first, then the echo in two fragments.
                server_write(stream, true, OP_PING, b"hi");
                let (_, pong, body) = server_read(stream);
                assert_eq!((pong, body.as_slice()), (OP_PONG, &b"hi"[..]));
                let half = payload.len() / 2;
                server_write(stream, false, OP_BINARY, &payload[..half]);
                server_write(stream, true, OP_CONTINUATION, &payload[half..]);
            }
            let (_, opcode, body) = server_read(stream);
            assert_eq!(
                (opcode, body.as_slice()),
                (OP_CLOSE, &1000u16.to_be_bytes()[..])
            );
            server_write(stream, true, OP_CLOSE, &body);
        });
        let mut conn = Conn::open(&target, Duration::from_secs(10)).unwrap();
        let mut echoed = Vec::new();
        for size in SIZES {
            let payload: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
            conn.send(OP_BINARY, &payload).unwrap();
            assert_eq!(conn.recv(&mut echoed).unwrap(), OP_BINARY);
            assert_eq!(echoed, payload, "{size} bytes");
        }
        assert!(conn.close(Duration::from_secs(10)));
        let head = server.join().unwrap();
        assert!(head.starts_with("GET /echo HTTP/1.1\r\n"), "{head}");
        assert!(
            head.contains(&format!("Sec-WebSocket-Key: {KEY}\r\n")),
            "{head}"
        );
        assert!(head.contains("Sec-WebSocket-Version: 13\r\n"), "{head}");
    }

    #[test]
    fn a_wrong_accept_or_a_refusal_fails_the_handshake() {
        let wrong = "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: AAAA\r\n\r\n";
        let refused = "HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n";
        let missing = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";
        for (answer, why) in [
            (wrong, "not \"s3p"),
            (refused, "not 101"),
            (missing, "no Sec-WebSocket-Accept"),
        ] {
            let (target, server) = serve(answer, |_| {});
            let err = Conn::open(&target, Duration::from_secs(10))
                .err()
                .expect("a failed handshake");
            assert!(err.to_string().contains(why), "{answer:?}: {err}");
            server.join().unwrap();
        }
    }

    #[test]
    fn a_masked_or_reserved_server_frame_and_a_server_close_are_errors() {
        for bad in [[0x82u8, 0x80], [0xC2, 0x00], [0x88, 0x02]] {
            let (target, server) = serve(SWITCHING, move |stream| {
                stream.write_all(&bad).unwrap();
                stream.write_all(&[0x03, 0xE8, 0, 0, 0, 0]).unwrap();
            });
            let mut conn = Conn::open(&target, Duration::from_secs(10)).unwrap();
            let err = conn.recv(&mut Vec::new()).expect_err("an error");
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{bad:?}: {err}");
            server.join().unwrap();
        }
    }

    #[test]
    fn only_loopback_urls_are_taken() {
        assert_eq!(target("ws://127.0.0.1:9/x", "ws").unwrap().path, "/x");
        assert_eq!(target("ws://[::1]:9", "ws").unwrap().path, "/");
        assert!(target("ws://192.0.2.1:9/", "ws").is_err());
        assert!(target("http://127.0.0.1:9/", "ws").is_err());
        assert_eq!(
            target("http://127.0.0.1:9/sleep?n=1", "http").unwrap().path,
            "/sleep?n=1"
        );
        assert!(target("ws://127.0.0.1:9/", "http").is_err());
        assert!(target("http://192.0.2.1:9/", "http").is_err());
    }
}
