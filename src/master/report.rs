//! What the master tells the outside: `tine status` and `/metrics` snapshots, the service
//! manager's status line and readiness, the watchdog, the warning that requests wait too
//! long, and the counts behind them.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::{Master, Phase, ops, table};
use crate::protocol::{RetireReason, SlotView, WorkerState};
use crate::status;
use crate::status::saturation::{Episode, History, Notice, Observation, Reading, WarnWhen};
use crate::sys::{self, ExitHow};

/// How often the master reads its workers' counters for the recent figures and the warning.
const READ_EVERY: Duration = Duration::from_secs(1);

/// What the master remembers of each live worker, by pid, to show its last seconds and to
/// warn when its requests wait.
#[derive(Debug, Default)]
pub(super) struct Watch {
    workers: HashMap<u32, Watched>,
    last: Option<Instant>,
}

#[derive(Debug, Default)]
struct Watched {
    history: History,
    episode: Episode,
}

/// A reading of `view` taken at `at`.
fn reading(view: &SlotView, at: Instant) -> Reading {
    Reading {
        at,
        requests: view.requests,
        queue_wait: view.queue_wait,
    }
}

/// Why workers were replaced, as `/metrics` labels them.
pub const RESTART_REASONS: [&str; 7] = [
    "crashed",
    "exited",
    "hung",
    "max_requests",
    "max_worker_memory",
    "request_timeout",
    "reload",
];

/// The counters of the worker in `slot` as totals.
fn totals_of(view: &SlotView, slot: usize) -> status::Totals {
    status::Totals {
        queue_waits: [(slot, view.queue_wait)].into(),
        requests: view.requests,
        status_classes: view.status_classes,
        duration_sum_us: view.duration_sum_us,
        duration_buckets: view.duration_buckets,
        bodies_refused: view.bodies_refused,
    }
}

/// Half of systemd's `WATCHDOG_USEC`, when the watchdog is on and meant for this process
/// (`WATCHDOG_PID`, when set, names it or the master it upgrades).
pub(super) fn watchdog_interval(upgrade_from: Option<u32>) -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        let pid: u32 = pid.trim().parse().ok()?;
        if pid != std::process::id() && Some(pid) != upgrade_from {
            return None;
        }
        sys::claim_watchdog();
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

impl Master<'_> {
    /// What `tine status` and `/metrics` show.
    pub(super) fn snapshot(&self) -> status::Snapshot {
        let now_ms = sys::monotonic_ms();
        let now = Instant::now();
        let mut totals = self.retired.clone();
        let mut workers = Vec::new();
        for (slot, worker) in self.table.live() {
            let view = self.scoreboard.view(worker.board);
            totals.add(&totals_of(&view, slot));
            let state = if worker.retiring {
                "stopping"
            } else if view.state == WorkerState::Retiring {
                "recycling"
            } else if worker.ready {
                "ready"
            } else {
                "starting"
            };
            workers.push(status::WorkerStatus {
                pid: worker.pid,
                slot,
                generation: worker.generation,
                age: worker.started.elapsed(),
                state,
                requests: view.requests,
                busy: view.busy,
                connections: view.connections,
                websockets: view.websockets,
                oldest_request: (view.oldest_request_ms > 0)
                    .then(|| Duration::from_millis(now_ms.saturating_sub(view.oldest_request_ms))),
                memory: sys::private_memory_of(worker.pid).ok(),
                recent: self
                    .watch
                    .workers
                    .get(&worker.pid)
                    .and_then(|w| w.history.recent(&reading(&view, now))),
            });
        }
        workers.sort_by_key(|w| (w.slot, w.generation));
        status::Snapshot {
            master_pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION"),
            uptime: self.started.elapsed(),
            phase: self.phase.name(),
            desired: self.table.desired(),
            threads: self.config.server.threads.get(),
            workers,
            totals,
            restarts: RESTART_REASONS
                .iter()
                .copied()
                .zip(self.restarts.iter().copied())
                .collect(),
            listen_queues: self.listen_queues(),
        }
    }

    /// Accept-queue lengths of the TCP listeners, from /proc/net/tcp{,6} (their listening
    /// lines only, and at most `PROC_NET_TCP_LIMIT` bytes of each).
    fn listen_queues(&self) -> Vec<(String, u64)> {
        let mut rows = Vec::new();
        for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
            if let Ok(file) = std::fs::File::open(file) {
                rows.extend(status::read_listen_queues(file, status::PROC_NET_TCP_LIMIT));
            }
        }
        self.listeners
            .iter()
            .filter_map(|l| match l.local_addr() {
                Ok(crate::config::BindAddr::Tcp(addr)) => {
                    let key = status::proc_net_key(addr);
                    let depth = rows.iter().find(|(k, _)| *k == key).map(|(_, d)| *d)?;
                    Some((addr.to_string(), depth))
                }
                _ => None,
            })
            .collect()
    }

    pub(super) fn answer_operators(&mut self, requests: Vec<(usize, ops::OpsRequest)>) {
        if requests.is_empty() {
            return;
        }
        let snapshot = self.snapshot();
        let (Some(ops), Some(poll)) = (self.ops.as_mut(), self.poll.as_ref()) else {
            return;
        };
        for (index, request) in requests {
            let response = match request {
                ops::OpsRequest::StatusTable => status::render_table(&snapshot).into_bytes(),
                ops::OpsRequest::StatusJson => status::render_json(&snapshot).into_bytes(),
                ops::OpsRequest::Metrics => ops::http_response(
                    200,
                    "text/plain; version=0.0.4; charset=utf-8",
                    &status::render_prometheus(&snapshot),
                ),
                ops::OpsRequest::Health if snapshot.healthy() => {
                    ops::http_response(200, "text/plain; charset=utf-8", "ok\n")
                }
                ops::OpsRequest::Health => ops::http_response(
                    503,
                    "text/plain; charset=utf-8",
                    &format!("{}\n", snapshot.phase),
                ),
                ops::OpsRequest::Unknown if ops.is_http(index) => ops::http_response(
                    404,
                    "text/plain; charset=utf-8",
                    "try /metrics or /healthz\n",
                ),
                ops::OpsRequest::Unknown => {
                    b"unknown command; try \"status\" or \"status json\"\n".to_vec()
                }
            };
            ops.answer(index, response, poll.registry());
        }
    }

    /// Reads every serving worker's counters, once a [`READ_EVERY`]: keeps them for the
    /// recent figures of `tine status`, and logs a warning when at least 10 % of a worker's
    /// requests have waited longer than `[server] queue_wait_warning` (by the histogram's
    /// bucket lower bounds) for `queue_wait_warning_after`, and a word when that is over.
    pub(super) fn watch_workers_load(&mut self) {
        let now = Instant::now();
        if self.watch.last.is_some_and(|at| now - at < READ_EVERY) {
            return;
        }
        self.watch.last = Some(now);
        let when = WarnWhen {
            threshold: self.config.server.queue_wait_warning,
            after: self.config.server.queue_wait_warning_after,
        };
        let mut live = HashSet::new();
        // The listeners' accept queues: read once, and only when a worker is full.
        let mut accept_queue = None;
        let workers: Vec<_> = self.table.live().collect();
        for (slot, worker) in workers {
            if !worker.ready || worker.retiring {
                continue;
            }
            live.insert(worker.pid);
            let view = self.scoreboard.view(worker.board);
            let watched = self.watch.workers.entry(worker.pid).or_default();
            let now_read = reading(&view, now);
            let recent = watched.history.recent(&now_read);
            watched.history.push(now_read);
            let mut seen = Observation {
                at: now,
                p90: recent.and_then(|r| r.p90()),
                floor: recent.and_then(|r| r.p90_floor()),
                busy: view.busy,
                threads: view.threads,
                capacity: if view.threads > 0 {
                    view.threads
                } else {
                    self.config.app.max_concurrency as u64
                },
                accept_queue: 0,
            };
            if seen.full() && !when.off() {
                seen.accept_queue = *accept_queue.get_or_insert_with(|| {
                    self.listen_queues().iter().map(|(_, depth)| depth).sum()
                });
            }
            let episode = &mut self.watch.workers.entry(worker.pid).or_default().episode;
            match episode.observe(seen, when) {
                Some(notice @ Notice::Saturated { .. }) => log::warn!("{}", notice.message(slot)),
                Some(notice @ Notice::Relieved { .. }) => log::info!("{}", notice.message(slot)),
                None => {}
            }
        }
        self.watch.workers.retain(|pid, _| live.contains(pid));
    }

    /// Tells the service manager how things stand, at most once a second and only on change.
    pub(super) fn report_status(&mut self) {
        if !self.phase.is_serving()
            || self
                .last_status_at
                .is_some_and(|at| at.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        let (mut busy, mut served) = (0, 0);
        let mut workers = 0;
        for (_, worker) in self.table.live() {
            let view = self.scoreboard.view(worker.board);
            busy += view.busy;
            served += view.requests;
            workers += 1;
        }
        let status = format!("{workers} workers, {busy} busy, {served} requests served");
        if status != self.last_status {
            let _ = sys::sd_notify(&format!("STATUS={status}"));
            self.last_status = status;
        }
        self.last_status_at = Some(Instant::now());
    }

    pub(super) fn announce_ready(&self) {
        let workers = self.table.desired();
        let threads = self.config.server.threads;
        log::info!("ready: {workers} workers × {threads} threads");
        let status = format!("READY=1\nSTATUS={workers} workers, {threads} threads each");
        if let Err(err) = sys::sd_notify(&status) {
            log::warn!("could not notify the service manager: {err}");
        }
    }

    /// Proves to systemd that this loop turns: sent from the loop itself, so a master stuck
    /// anywhere stops feeding the watchdog and systemd restarts it.
    pub(super) fn feed_watchdog(&mut self) {
        if let Some((every, last)) = self.watchdog
            && last.elapsed() >= every
        {
            let _ = sys::sd_notify("WATCHDOG=1");
            self.watchdog = Some((every, Instant::now()));
        }
    }

    /// Keeps a departed worker's counters in the totals and counts why it went.
    pub(super) fn count_departure(&mut self, departure: &table::Departure, how: ExitHow) {
        let view = self.scoreboard.view(departure.board);
        self.retired.add(&totals_of(&view, departure.slot));
        if matches!(self.phase, Phase::Stopping(_)) {
            return;
        }
        let reason = match view.retire {
            Some(RetireReason::MaxRequests(_)) => "max_requests",
            Some(RetireReason::Memory(_)) => "max_worker_memory",
            Some(RetireReason::RequestTimeout(_)) => "request_timeout",
            Some(RetireReason::Replaced) => "reload",
            Some(RetireReason::Blocked(_)) => "hung",
            None if departure.was_hung => "hung",
            None if departure.was_retiring => "reload",
            None if how == ExitHow::Code(0) => "exited",
            None => "crashed",
        };
        if let Some(i) = RESTART_REASONS.iter().position(|r| *r == reason) {
            self.restarts[i] += 1;
        }
    }
}
