//! What the master knows about its workers, rendered three ways: a table for `tine status`,
//! JSON for scripts, and the Prometheus text format for `/metrics`. Pure: the master gathers a
//! [`Snapshot`] from its table, the scoreboard and /proc, and these functions only format it
//! (and read the listen queues, a bounded part, from the /proc/net/tcp reader they are given).
//!
//! [`saturation`] keeps what the master needs to show the last seconds (requests per second,
//! the queue wait's p90) and to warn when requests wait too long.

pub mod saturation;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::protocol::scoreboard::{DURATION_BOUNDS_US, QUEUE_WAIT_BOUNDS_US, QueueWait};
use crate::text::json_string;
use saturation::{Recent, p90_of};

/// One worker, as the status shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerStatus {
    /// Process id.
    pub pid: u32,
    /// Slot in the master's table.
    pub slot: usize,
    /// Which reload generation started it (0 for the first).
    pub generation: u32,
    /// How long it has lived.
    pub age: Duration,
    /// `starting`, `ready`, `recycling` or `stopping`.
    pub state: &'static str,
    /// Requests answered.
    pub requests: u64,
    /// Requests with its pool now.
    pub busy: u64,
    /// Open client connections.
    pub connections: u64,
    /// Open WebSockets, counted among `connections` too.
    pub websockets: u64,
    /// How long its oldest request in the pool has been running.
    pub oldest_request: Option<Duration>,
    /// Private memory in bytes, when it could be read.
    pub memory: Option<u64>,
    /// What it did over the last seconds ([`saturation::WINDOW`]), once the master has
    /// watched it that long.
    pub recent: Option<Recent>,
}

/// Counters that only grow: live workers' plus those of workers already gone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    /// Requests answered.
    pub requests: u64,
    /// Responses by status class, 1xx to 5xx.
    pub status_classes: [u64; 5],
    /// Sum of request durations in microseconds.
    pub duration_sum_us: u64,
    /// Requests per duration bucket (not cumulative), the last one `+Inf`.
    pub duration_buckets: [u64; 14],
    /// Request bodies refused for want of body budget (`[limits] body_memory`, `body_disk`).
    pub bodies_refused: u64,
    /// How long requests waited to be taken up, by worker slot: every worker that served in
    /// the slot, gone or live.
    pub queue_waits: BTreeMap<usize, QueueWait>,
}

impl Totals {
    /// Adds `other` into these totals.
    pub fn add(&mut self, other: &Totals) {
        self.requests += other.requests;
        self.duration_sum_us += other.duration_sum_us;
        self.bodies_refused += other.bodies_refused;
        for (mine, theirs) in self.status_classes.iter_mut().zip(other.status_classes) {
            *mine += theirs;
        }
        for (mine, theirs) in self.duration_buckets.iter_mut().zip(other.duration_buckets) {
            *mine += theirs;
        }
        for (slot, wait) in &other.queue_waits {
            self.queue_waits.entry(*slot).or_default().add(wait);
        }
    }
}

/// Everything the status outputs show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The master's pid.
    pub master_pid: u32,
    /// tine's version.
    pub version: &'static str,
    /// How long the master has run.
    pub uptime: Duration,
    /// `starting`, `running`, `reloading` or `stopping`.
    pub phase: &'static str,
    /// Workers wanted.
    pub desired: usize,
    /// Pool threads per worker.
    pub threads: usize,
    /// Every live worker.
    pub workers: Vec<WorkerStatus>,
    /// Counters of every worker that ever ran.
    pub totals: Totals,
    /// Worker restarts by reason (`crashed`, `hung`, `max_requests`, …), in a stable order.
    pub restarts: Vec<(&'static str, u64)>,
    /// Connections waiting in each TCP listener's accept queue, where Linux shows it.
    pub listen_queues: Vec<(String, u64)>,
}

impl Snapshot {
    /// Whether the server takes connections and wants more (for `/healthz`): not while it
    /// drains before a stop (`[server] drain_delay`), when it serves on but wants a balancer
    /// to send no more.
    pub fn healthy(&self) -> bool {
        matches!(self.phase, "running" | "reloading")
    }

    fn busy(&self) -> u64 {
        self.sum(|w| w.busy)
    }

    /// One gauge of every live worker, added up.
    fn sum(&self, gauge: fn(&WorkerStatus) -> u64) -> u64 {
        self.workers.iter().map(gauge).sum()
    }
}

/// The `tine status` table's columns: heading and width. STATE, the only text, is aligned
/// left, the rest right. REQ/S and QWAIT p90 are over the last seconds.
const COLUMNS: [(&str, usize); 13] = [
    ("PID", 8),
    ("SLOT", 4),
    ("GEN", 4),
    ("AGE", 8),
    ("STATE", 10),
    ("REQUESTS", 10),
    ("REQ/S", 7),
    ("BUSY", 5),
    ("QWAIT p90", 9),
    ("CONNS", 6),
    ("WS", 5),
    ("OLDEST", 8),
    ("MEMORY", 9),
];

/// One line of the `tine status` table, its cells in [`COLUMNS`]' order.
fn table_row(out: &mut String, cells: [&dyn std::fmt::Display; 13]) {
    for (i, (cell, (heading, width))) in cells.into_iter().zip(COLUMNS).enumerate() {
        let gap = if i == 0 { "" } else { " " };
        let _ = if heading == "STATE" {
            write!(out, "{gap}{cell:<width$}")
        } else {
            write!(out, "{gap}{cell:>width$}")
        };
    }
    out.push('\n');
}

/// The `tine status` table.
pub fn render_table(snapshot: &Snapshot) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "tine {} master {} {}, up {}: {} of {} workers, {} threads each, {} busy, {} requests served",
        snapshot.version,
        snapshot.master_pid,
        snapshot.phase,
        human(snapshot.uptime),
        snapshot.workers.len(),
        snapshot.desired,
        snapshot.threads,
        snapshot.busy(),
        snapshot.totals.requests,
    );
    table_row(
        &mut out,
        COLUMNS.each_ref().map(|(heading, _)| heading as _),
    );
    for w in &snapshot.workers {
        table_row(
            &mut out,
            [
                &w.pid,
                &w.slot,
                &w.generation,
                &human(w.age),
                &w.state,
                &w.requests,
                &w.recent
                    .map_or_else(|| "-".to_owned(), |r| rate(r.per_second())),
                &w.busy,
                &wait_cell(w.recent.as_ref().and_then(Recent::p90)),
                &w.connections,
                &w.websockets,
                &w.oldest_request.map_or_else(|| "-".to_owned(), human),
                &w.memory.map_or_else(|| "-".to_owned(), mebibytes),
            ],
        );
    }
    let memory: u64 = snapshot.workers.iter().filter_map(|w| w.memory).sum();
    let recent: Vec<&Recent> = snapshot
        .workers
        .iter()
        .filter_map(|w| w.recent.as_ref())
        .collect();
    let total_rate = if recent.is_empty() {
        "-".to_owned()
    } else {
        rate(recent.iter().map(|r| r.per_second()).sum())
    };
    table_row(
        &mut out,
        [
            &"total",
            &"",
            &"",
            &"",
            &"",
            &snapshot.sum(|w| w.requests),
            &total_rate,
            &snapshot.busy(),
            &wait_cell(p90_of(recent)),
            &snapshot.sum(|w| w.connections),
            &snapshot.sum(|w| w.websockets),
            &"",
            &mebibytes(memory),
        ],
    );
    out
}

/// The `tine status --json` object.
pub fn render_json(snapshot: &Snapshot) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "{{\"master_pid\":{},\"version\":{},\"phase\":{},\"uptime_seconds\":{},\"workers_desired\":{},\"threads\":{},\"requests\":{},\"busy\":{},\"recent_seconds\":{},\"workers\":[",
        snapshot.master_pid,
        json_string(snapshot.version),
        json_string(snapshot.phase),
        snapshot.uptime.as_secs(),
        snapshot.desired,
        snapshot.threads,
        snapshot.totals.requests,
        snapshot.busy(),
        saturation::WINDOW.as_secs(),
    );
    for (i, w) in snapshot.workers.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            "{{\"pid\":{},\"slot\":{},\"generation\":{},\"age_seconds\":{},\"state\":{},\"requests\":{},\"requests_per_second\":{},\"busy\":{},\"queue_wait_p90_seconds\":{},\"connections\":{},\"websockets\":{},\"oldest_request_ms\":{},\"memory_bytes\":{}}}",
            w.pid,
            w.slot,
            w.generation,
            w.age.as_secs(),
            json_string(w.state),
            w.requests,
            w.recent
                .map_or_else(|| "null".to_owned(), |r| format!("{:.1}", r.per_second())),
            w.busy,
            w.recent
                .and_then(|r| r.p90())
                .map_or_else(|| "null".to_owned(), |d| seconds(d.as_micros() as u64)),
            w.connections,
            w.websockets,
            w.oldest_request
                .map_or_else(|| "null".to_owned(), |d| d.as_millis().to_string()),
            w.memory
                .map_or_else(|| "null".to_owned(), |m| m.to_string()),
        );
    }
    out.push_str("],\"restarts\":{");
    for (i, (reason, count)) in snapshot.restarts.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{}:{count}", json_string(reason));
    }
    out.push_str("}}\n");
    out
}

/// The Prometheus text exposition format.
pub fn render_prometheus(snapshot: &Snapshot) -> String {
    let mut out = String::new();
    let metric = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
    };
    metric(
        &mut out,
        "tine_requests_total",
        "counter",
        "Responses sent, by status class.",
    );
    for (i, count) in snapshot.totals.status_classes.iter().enumerate() {
        let _ = writeln!(out, "tine_requests_total{{code=\"{}xx\"}} {count}", i + 1);
    }
    metric(
        &mut out,
        "tine_request_duration_seconds",
        "histogram",
        "Time from a request's hand-over to the pool to its response.",
    );
    histogram(
        &mut out,
        "tine_request_duration_seconds",
        "",
        &DURATION_BOUNDS_US,
        &snapshot.totals.duration_buckets,
        snapshot.totals.duration_sum_us,
    );
    metric(
        &mut out,
        "tine_queue_wait_seconds",
        "histogram",
        "Time a request waited between its hand-over to the application and the moment a \
         pool thread (or an ASGI application's task) took it up, per worker slot, every \
         worker that served in it counted.",
    );
    for (slot, wait) in &snapshot.totals.queue_waits {
        histogram(
            &mut out,
            "tine_queue_wait_seconds",
            &format!("worker=\"{slot}\","),
            &QUEUE_WAIT_BOUNDS_US,
            &wait.buckets,
            wait.sum_us,
        );
    }
    metric(
        &mut out,
        "tine_bodies_refused_total",
        "counter",
        "Request bodies answered 503 because the worker's body budget was spent.",
    );
    let _ = writeln!(
        out,
        "tine_bodies_refused_total {}",
        snapshot.totals.bodies_refused
    );
    metric(
        &mut out,
        "tine_busy_threads",
        "gauge",
        "Requests being handled by pool threads now.",
    );
    let _ = writeln!(out, "tine_busy_threads {}", snapshot.busy());
    metric(
        &mut out,
        "tine_threads",
        "gauge",
        "Pool threads across live workers.",
    );
    let _ = writeln!(
        out,
        "tine_threads {}",
        snapshot.workers.len() * snapshot.threads
    );
    metric(&mut out, "tine_workers", "gauge", "Live worker processes.");
    let _ = writeln!(out, "tine_workers {}", snapshot.workers.len());
    metric(
        &mut out,
        "tine_workers_desired",
        "gauge",
        "Worker processes wanted.",
    );
    let _ = writeln!(out, "tine_workers_desired {}", snapshot.desired);
    metric(
        &mut out,
        "tine_connections",
        "gauge",
        "Open client connections.",
    );
    let _ = writeln!(out, "tine_connections {}", snapshot.sum(|w| w.connections));
    metric(
        &mut out,
        "tine_websockets_open",
        "gauge",
        "Open WebSockets (upgraded connections, counted in tine_connections too).",
    );
    let _ = writeln!(
        out,
        "tine_websockets_open {}",
        snapshot.sum(|w| w.websockets)
    );
    metric(
        &mut out,
        "tine_worker_restarts_total",
        "counter",
        "Workers replaced, by reason.",
    );
    for (reason, count) in &snapshot.restarts {
        let _ = writeln!(
            out,
            "tine_worker_restarts_total{{reason=\"{reason}\"}} {count}"
        );
    }
    if !snapshot.listen_queues.is_empty() {
        metric(
            &mut out,
            "tine_listen_queue",
            "gauge",
            "Connections waiting in a listener's accept queue.",
        );
        for (addr, depth) in &snapshot.listen_queues {
            let _ = writeln!(out, "tine_listen_queue{{listener=\"{addr}\"}} {depth}");
        }
    }
    metric(
        &mut out,
        "tine_up",
        "gauge",
        "1 while the server takes connections, 0 while it starts or stops.",
    );
    let _ = writeln!(out, "tine_up {}", u8::from(snapshot.healthy()));
    out
}

/// The most `tine status` reads of one answer: a table of every worker the scoreboard can
/// hold fits many times over.
pub const MAX_ANSWER: u64 = 4 << 20;

/// What `tine status --watch` prints of one `answer`: on a terminal (`redraw`), the screen
/// cleared and the answer from its top left; elsewhere the answer and a blank line after it,
/// so each refresh is one block.
pub fn watch_frame(answer: &str, redraw: bool) -> String {
    if redraw {
        format!("\x1b[H\x1b[2J{answer}")
    } else if answer.starts_with('{') {
        // JSON: one object per line already.
        answer.to_owned()
    } else {
        format!("{answer}\n")
    }
}

/// The most a scrape reads of each of `/proc/net/tcp` and `/proc/net/tcp6`. The kernel makes
/// those files as they are read, a line (150 bytes) a socket, under its socket-table locks; a
/// busy server's run to tens of megabytes. Their listening sockets come first, so reading
/// normally stops at the first line of another state, long before this; a listener whose line
/// lies past it (thousands of listening sockets on the host) gets no `tine_listen_queue` sample.
pub const PROC_NET_TCP_LIMIT: u64 = 1 << 20;

/// Connections waiting in the accept queue of each listening socket, read from `/proc/net/tcp`
/// or `/proc/net/tcp6` (`file`): for sockets in LISTEN state the `rx_queue` column is the
/// queue's length. Keys are `(hex address as the file writes it, port)`.
///
/// Reads up to the first line of a socket that is not listening (the kernel lists every
/// listening socket before any other), and never more than `limit` bytes: a line cut short by
/// the limit is left out.
pub fn read_listen_queues(file: impl std::io::Read, limit: u64) -> Vec<ListenQueue> {
    use std::io::BufRead;
    let mut reader = std::io::BufReader::new(file.take(limit));
    let mut line = Vec::new();
    let mut rows = Vec::new();
    let mut header = true;
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if !line.ends_with(b"\n") => break,
            Ok(_) if std::mem::take(&mut header) => continue,
            Ok(_) => {}
        }
        let Some(text) = std::str::from_utf8(&line).ok() else {
            break;
        };
        match listen_row(text) {
            Some(Some(row)) => rows.push(row),
            // Another state: the listening sockets are behind us.
            Some(None) => break,
            None => continue,
        }
    }
    rows
}

/// A listening socket's line: `((hex address, port), connections waiting)`.
pub type ListenQueue = ((String, u16), u64);

/// One line of /proc/net/tcp{,6}: `Some(Some(row))` for a listening socket, `Some(None)` for a
/// socket in another state, `None` for a line that does not parse.
fn listen_row(line: &str) -> Option<Option<ListenQueue>> {
    let mut fields = line.split_whitespace();
    let local = fields.nth(1)?;
    let state = fields.nth(1)?;
    let queues = fields.next()?;
    if state != "0A" {
        return Some(None);
    }
    let (address, port) = local.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let rx = u64::from_str_radix(queues.split_once(':')?.1, 16).ok()?;
    Some(Some(((address.to_owned(), port), rx)))
}

/// How /proc/net/tcp{,6} writes a local address: the IP's bytes as little-endian 32-bit hex
/// words, and the port.
pub fn proc_net_key(addr: std::net::SocketAddr) -> (String, u16) {
    let hex = match addr.ip() {
        std::net::IpAddr::V4(ip) => format!("{:08X}", u32::from_le_bytes(ip.octets())),
        std::net::IpAddr::V6(ip) => ip
            .octets()
            .chunks_exact(4)
            .map(|w| format!("{:08X}", u32::from_le_bytes([w[0], w[1], w[2], w[3]])))
            .collect(),
    };
    (hex, addr.port())
}

/// The samples of one Prometheus histogram: cumulative buckets (`bounds` in microseconds, then
/// `+Inf`) from per-bucket `counts`, its sum and its count. `labels` come first in every
/// sample's braces, each followed by a comma.
fn histogram(out: &mut String, name: &str, labels: &str, bounds: &[u64], counts: &[u64], sum: u64) {
    let mut cumulative = 0;
    for (i, count) in counts.iter().enumerate() {
        cumulative += count;
        let le = bounds
            .get(i)
            .map_or_else(|| "+Inf".to_owned(), |us| seconds(*us));
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{le}\"}} {cumulative}");
    }
    let labels = labels.trim_end_matches(',');
    let labels = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    let _ = writeln!(out, "{name}_sum{labels} {}", seconds(sum));
    let _ = writeln!(out, "{name}_count{labels} {cumulative}");
}

/// Requests per second for the table: a decimal below 100.
fn rate(per_second: f64) -> String {
    if per_second < 100.0 {
        format!("{per_second:.1}")
    } else {
        format!("{per_second:.0}")
    }
}

/// A queue wait for the table: tenths of a millisecond below 10 ms; `-` when nothing was taken
/// up.
fn wait_cell(wait: Option<Duration>) -> String {
    match wait {
        None => "-".to_owned(),
        Some(d) if d < Duration::from_millis(10) => {
            format!("{:.1}ms", d.as_secs_f64() * 1000.0)
        }
        Some(d) => human(d),
    }
}

fn seconds(us: u64) -> String {
    let text = format!("{:.6}", us as f64 / 1e6);
    let text = text.trim_end_matches('0').trim_end_matches('.');
    text.to_owned()
}

fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 86_400 {
        format!("{}d{:02}h", secs / 86_400, secs % 86_400 / 3600)
    } else if secs >= 3600 {
        format!("{}h{:02}m", secs / 3600, secs % 3600 / 60)
    } else if secs >= 60 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else if secs >= 1 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}ms", d.as_millis())
    }
}

fn mebibytes(bytes: u64) -> String {
    format!("{:.1}MiB", bytes as f64 / (1 << 20) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `count` waits in `bucket`, each at its bound.
    fn waits(bucket: usize, count: u64) -> QueueWait {
        QueueWait::at_bound(bucket, count)
    }

    fn sample() -> Snapshot {
        let mut totals = Totals {
            requests: 3,
            status_classes: [0, 2, 0, 1, 0],
            duration_sum_us: 1_500,
            duration_buckets: [0; 14],
            bodies_refused: 4,
            queue_waits: [(1, waits(8, 30)), (2, waits(0, 100))].into(),
        };
        totals.duration_buckets[0] = 2;
        totals.duration_buckets[13] = 1;
        Snapshot {
            master_pid: 10,
            version: "0.1.0",
            uptime: Duration::from_secs(75),
            phase: "running",
            desired: 2,
            threads: 4,
            workers: vec![
                WorkerStatus {
                    pid: 11,
                    slot: 1,
                    generation: 0,
                    age: Duration::from_secs(70),
                    state: "ready",
                    requests: 2,
                    busy: 1,
                    connections: 3,
                    websockets: 2,
                    oldest_request: Some(Duration::from_millis(250)),
                    memory: Some(3 << 20),
                    recent: Some(Recent {
                        span: Duration::from_secs(5),
                        requests: 60,
                        // Ten waits over 100 ms and up to 250 ms: a p90 of 235 ms.
                        queue_wait: waits(8, 10),
                    }),
                },
                WorkerStatus {
                    pid: 12,
                    slot: 2,
                    generation: 1,
                    age: Duration::from_secs(5),
                    state: "starting",
                    requests: 1,
                    busy: 0,
                    connections: 6,
                    websockets: 5,
                    oldest_request: None,
                    memory: None,
                    recent: Some(Recent {
                        span: Duration::from_secs(4),
                        requests: 2,
                        // 85 waits up to 0.5 ms, 5 up to 1 ms: a p90 of 476 us.
                        queue_wait: {
                            let mut both = waits(0, 85);
                            both.add(&waits(1, 5));
                            both
                        },
                    }),
                },
            ],
            totals,
            restarts: vec![("crashed", 1), ("hung", 0)],
            listen_queues: vec![("127.0.0.1:8000".to_owned(), 4)],
        }
    }

    #[test]
    fn only_a_serving_master_is_healthy() {
        for (phase, healthy) in [
            ("starting", false),
            ("running", true),
            ("reloading", true),
            // SIGTERM with drain_delay: the workers serve on, the balancer is told to leave.
            ("draining", false),
            ("stopping", false),
        ] {
            let snapshot = Snapshot { phase, ..sample() };
            assert_eq!(snapshot.healthy(), healthy, "{phase}");
            let up = format!("tine_up {}\n", u8::from(healthy));
            assert!(render_prometheus(&snapshot).contains(&up), "{phase}");
        }
    }

    #[test]
    fn the_table_has_a_row_per_worker_and_totals() {
        let table = render_table(&sample());
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 5, "{table}");
        assert!(lines[0].contains("2 of 2 workers, 4 threads each, 1 busy, 3 requests served"));
        assert!(lines[1].contains("PID") && lines[1].contains("MEMORY"));
        assert!(
            lines[2].contains("ready") && lines[2].contains("250ms") && lines[2].contains("3.0MiB")
        );
        assert!(lines[3].contains("starting"));
        assert!(lines[4].starts_with("   total"));
    }

    #[test]
    fn the_table_counts_websockets_per_worker_and_in_total() {
        let table = render_table(&sample());
        let lines: Vec<&str> = table.lines().skip(1).collect();
        assert!(
            lines.iter().all(|l| l.len() == lines[0].len()),
            "the columns line up:\n{table}"
        );
        assert!(lines[0].contains(" CONNS    WS "), "{table}");
        assert_eq!(column(&table, "WS"), ["2", "5", "7"], "{table}");
        assert_eq!(column(&table, "CONNS"), ["3", "6", "9"], "{table}");
    }

    /// The cells under `heading` (its last word) of every row of `table` below the headings.
    /// Numbers are aligned right: a column's cell ends where its heading does.
    fn column(table: &str, heading: &str) -> Vec<String> {
        let lines: Vec<&str> = table.lines().skip(1).collect();
        let end = lines[0].find(&format!(" {heading}")).unwrap() + 1 + heading.len();
        lines[1..]
            .iter()
            .map(|line| line[..end].rsplit(' ').next().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn the_table_shows_the_last_seconds_rate_and_queue_wait() {
        let mut snapshot = sample();
        snapshot.workers.push(WorkerStatus {
            pid: 13,
            slot: 3,
            recent: None,
            ..snapshot.workers[1].clone()
        });
        let table = render_table(&snapshot);
        let headings = table.lines().nth(1).unwrap();
        assert!(headings.contains("  REQ/S ") && headings.contains(" QWAIT p90 "));
        assert_eq!(
            column(&table, "REQ/S"),
            ["12.0", "0.5", "-", "12.5"],
            "{table}"
        );
        // The total is the p90 of every worker's waits together: of 100 waits, the 90th is
        // the fast worker's slowest, at the top of its (0.5 ms, 1 ms] bucket.
        assert_eq!(
            column(&table, "p90"),
            ["235ms", "0.5ms", "-", "1.0ms"],
            "{table}"
        );
        snapshot.workers.iter_mut().for_each(|w| w.recent = None);
        let table = render_table(&snapshot);
        let total = table.lines().last().unwrap();
        assert_eq!(total.matches(" - ").count(), 2, "{table}");
    }

    #[test]
    fn watch_frames_redraw_a_terminal_and_stack_elsewhere() {
        let table = render_table(&sample());
        let frame = watch_frame(&table, true);
        assert!(frame.starts_with("\x1b[H\x1b[2J") && frame.ends_with(&table));
        assert_eq!(watch_frame(&table, false), format!("{table}\n"));
        let json = render_json(&sample());
        assert_eq!(watch_frame(&json, false), json);
        assert_eq!(json.lines().count(), 1, "one object per line");
    }

    #[test]
    fn json_is_well_formed_enough_to_read_back() {
        let json = render_json(&sample());
        assert!(json.starts_with("{\"master_pid\":10,\"version\":\"0.1.0\",\"phase\":\"running\""));
        assert!(json.contains("\"oldest_request_ms\":250"));
        assert!(json.contains("\"oldest_request_ms\":null"));
        assert!(json.contains("\"connections\":3,\"websockets\":2,"));
        assert!(json.contains("\"connections\":6,\"websockets\":5,"));
        assert!(json.contains("\"restarts\":{\"crashed\":1,\"hung\":0}"));
        assert!(json.contains("\"recent_seconds\":5,"));
        assert!(
            json.contains(
                "\"requests_per_second\":12.0,\"busy\":1,\"queue_wait_p90_seconds\":0.235,"
            )
        );
        assert!(json.contains(
            "\"requests_per_second\":0.5,\"busy\":0,\"queue_wait_p90_seconds\":0.000476,"
        ));
        assert_eq!(json.matches('{').count(), json.matches('}').count());
        assert_eq!(json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }

    #[test]
    fn prometheus_histogram_is_cumulative() {
        let text = render_prometheus(&sample());
        assert!(text.contains("tine_requests_total{code=\"2xx\"} 2\n"));
        assert!(text.contains("tine_request_duration_seconds_bucket{le=\"0.001\"} 2\n"));
        assert!(text.contains("tine_request_duration_seconds_bucket{le=\"10\"} 2\n"));
        assert!(text.contains("tine_request_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("tine_request_duration_seconds_count 3\n"));
        assert!(text.contains("tine_request_duration_seconds_sum 0.0015\n"));
        assert!(text.contains("tine_worker_restarts_total{reason=\"crashed\"} 1\n"));
        assert!(text.contains("tine_listen_queue{listener=\"127.0.0.1:8000\"} 4\n"));
        assert!(text.contains("tine_up 1\n"));
        assert!(text.contains("tine_busy_threads 1\n"));
        assert!(text.contains("tine_bodies_refused_total 4\n"));
    }

    #[test]
    fn prometheus_has_a_queue_wait_histogram_per_worker() {
        let mut snapshot = sample();
        // A worker gone from slot 1 counted two waits past 5 s: they stay in the slot's
        // histogram, as a gone worker's requests stay in the request-duration histogram.
        let gone = Totals {
            queue_waits: [(1, waits(13, 2))].into(),
            ..Totals::default()
        };
        snapshot.totals.add(&gone);
        let text = render_prometheus(&snapshot);
        for line in [
            "\n# TYPE tine_queue_wait_seconds histogram\n",
            "\ntine_queue_wait_seconds_bucket{worker=\"1\",le=\"0.0005\"} 0\n",
            "\ntine_queue_wait_seconds_bucket{worker=\"1\",le=\"0.25\"} 30\n",
            "\ntine_queue_wait_seconds_bucket{worker=\"1\",le=\"10\"} 32\n",
            "\ntine_queue_wait_seconds_bucket{worker=\"1\",le=\"+Inf\"} 32\n",
            "\ntine_queue_wait_seconds_sum{worker=\"1\"} 27.5\n",
            "\ntine_queue_wait_seconds_count{worker=\"1\"} 32\n",
            "\ntine_queue_wait_seconds_bucket{worker=\"2\",le=\"0.0005\"} 100\n",
            "\ntine_queue_wait_seconds_count{worker=\"2\"} 100\n",
        ] {
            assert!(text.contains(line), "{line:?} in\n{text}");
        }
        assert_eq!(
            text.matches("tine_queue_wait_seconds_count").count(),
            2,
            "{text}"
        );
        let mut empty = sample();
        empty.totals.queue_waits.clear();
        let text = render_prometheus(&empty);
        assert!(text.contains("# TYPE tine_queue_wait_seconds histogram\n"));
        assert!(!text.contains("tine_queue_wait_seconds_count"));
    }

    #[test]
    fn prometheus_counts_open_websockets_of_every_worker() {
        let text = render_prometheus(&sample());
        for line in [
            "\n# HELP tine_websockets_open Open WebSockets",
            "\n# TYPE tine_websockets_open gauge\n",
            "\ntine_websockets_open 7\n",
            "\ntine_connections 9\n",
        ] {
            assert!(text.contains(line), "{line:?} in\n{text}");
        }
        let mut empty = sample();
        empty.workers.clear();
        assert!(render_prometheus(&empty).contains("\ntine_websockets_open 0\n"));
    }

    #[test]
    fn proc_net_keys() {
        assert_eq!(
            proc_net_key("127.0.0.1:8000".parse().unwrap()),
            ("0100007F".to_owned(), 8000)
        );
        assert_eq!(
            proc_net_key("[::1]:80".parse().unwrap()),
            ("00000000000000000000000001000000".to_owned(), 80)
        );
    }

    const HEADER: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";

    /// A /proc/net/tcp line for a socket on 127.0.0.1:`port` in `state` with `rx` queued.
    fn row(sl: usize, port: u16, state: &str, rx: u64) -> String {
        format!(
            "{sl:4}: 0100007F:{port:04X} 00000000:0000 {state} 00000000:{rx:08X} 00:00000000 00000000     0        0 {sl} 1 0 100 0 0 10 0\n"
        )
    }

    fn read(text: &str, limit: u64) -> Vec<ListenQueue> {
        read_listen_queues(text.as_bytes(), limit)
    }

    #[test]
    fn listen_queues_come_from_listening_rows_only() {
        let text = format!("{HEADER}{}{}", row(0, 8000, "0A", 5), row(1, 8000, "01", 0));
        assert_eq!(
            read(&text, PROC_NET_TCP_LIMIT),
            vec![(("0100007F".to_owned(), 8000), 5)]
        );
    }

    #[test]
    fn reading_stops_at_the_first_socket_that_is_not_listening() {
        // The kernel lists listeners first: a listening line after the connections (which
        // it never writes) is not read, and neither is anything else after them.
        let mut text = format!("{HEADER}{}{}", row(0, 80, "0A", 1), row(1, 81, "0A", 2));
        for sl in 2..10_000 {
            text.push_str(&row(sl, 80, "01", 0));
        }
        text.push_str(&row(10_000, 82, "0A", 3));
        let ports: Vec<u16> = read(&text, PROC_NET_TCP_LIMIT)
            .into_iter()
            .map(|((_, port), _)| port)
            .collect();
        assert_eq!(ports, [80, 81]);
    }

    #[test]
    fn reading_is_bounded_and_a_cut_line_is_left_out() {
        let mut text = HEADER.to_owned();
        for sl in 0..20_000 {
            text.push_str(&row(sl, 1000 + sl as u16, "0A", 7));
        }
        let line = row(0, 1000, "0A", 7).len();
        let limit = (HEADER.len() + 3 * line + line / 2) as u64;
        let rows = read(&text, limit);
        assert_eq!(rows.len(), 3, "three whole lines fit");
        assert!(text.len() as u64 > 2 * PROC_NET_TCP_LIMIT);
        assert!(read(&text, PROC_NET_TCP_LIMIT).len() < 20_000);
        assert!(read("", PROC_NET_TCP_LIMIT).is_empty());
        assert!(read(HEADER, PROC_NET_TCP_LIMIT).is_empty());
    }
}
