//! The scoreboard: one slot of shared memory per worker process, written by the worker's event
//! loop and read by the master. It carries the heartbeat (the loop's proof of progress), the
//! request and connection counts, and a worker's own decision to recycle itself.
//!
//! Apache httpd's scoreboard and unicorn's shared tick are the references: no syscall, no
//! message, just stores the master reads when it looks.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::sys::SharedMemory;

/// Words per slot: four cache lines, so workers never share a line.
const WORDS: usize = 32;
const PID: usize = 0;
const STATE: usize = 1;
const HEARTBEAT: usize = 2;
const REQUESTS: usize = 3;
const BUSY: usize = 4;
const CONNECTIONS: usize = 5;
const OLDEST_REQUEST: usize = 6;
const RETIRE: usize = 7;
const STATUS_CLASSES: usize = 8;
const DURATION_SUM_US: usize = 13;
const DURATION_BUCKETS: usize = 14;
const BODIES_REFUSED: usize = 28;
const WEBSOCKETS: usize = 29;
const _: () = assert!(WEBSOCKETS < WORDS, "the last word must fit in the slot");

/// Upper bounds of the request duration histogram's buckets, in microseconds; a last bucket
/// (`+Inf`) counts the rest. Prometheus-style, from 1 ms to 10 s.
pub const DURATION_BOUNDS_US: [u64; 13] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000,
];

/// How many worker processes the scoreboard can track at once, old and new generations and
/// retiring workers included.
pub const CAPACITY: usize = 4096;

/// What a worker says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    /// Forked; building its application.
    Starting,
    /// Serving.
    Ready,
    /// Recycling itself: no new connections, finishing what it has, then exiting.
    Retiring,
}

/// Why a worker recycles itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetireReason {
    /// It served `max_requests` (plus its jitter) requests; the count.
    MaxRequests(u64),
    /// Its private memory passed `max_worker_memory`; the bytes.
    Memory(u64),
    /// A request ran past `request_timeout`; that request's run time in ms.
    RequestTimeout(u64),
    /// It was told to make way (SIGUSR2: a reload, an upgrade, or an operator).
    Replaced,
    /// Its application's own event loop (ASGI) took nothing from the worker for longer than
    /// `timeout`: it is blocked; for how long, in ms.
    Blocked(u64),
}

impl RetireReason {
    fn encode(self) -> u64 {
        let (code, detail) = match self {
            RetireReason::MaxRequests(n) => (1, n),
            RetireReason::Memory(bytes) => (2, bytes),
            RetireReason::RequestTimeout(ms) => (3, ms),
            RetireReason::Replaced => (4, 0),
            RetireReason::Blocked(ms) => (5, ms),
        };
        (detail.min(u64::MAX >> 8) << 8) | code
    }

    fn decode(word: u64) -> Option<RetireReason> {
        let detail = word >> 8;
        match word & 0xff {
            1 => Some(RetireReason::MaxRequests(detail)),
            2 => Some(RetireReason::Memory(detail)),
            3 => Some(RetireReason::RequestTimeout(detail)),
            4 => Some(RetireReason::Replaced),
            5 => Some(RetireReason::Blocked(detail)),
            _ => None,
        }
    }
}

impl std::fmt::Display for RetireReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            RetireReason::MaxRequests(n) => write!(f, "served {n} requests (max_requests)"),
            RetireReason::Memory(bytes) => write!(
                f,
                "uses {} MiB of private memory (max_worker_memory)",
                bytes >> 20
            ),
            RetireReason::RequestTimeout(ms) => {
                write!(f, "a request ran {ms} ms, past request_timeout")
            }
            RetireReason::Replaced => write!(f, "was told to make way (SIGUSR2)"),
            RetireReason::Blocked(ms) => write!(
                f,
                "its application's event loop was blocked for {ms} ms, past timeout"
            ),
        }
    }
}

/// A snapshot of one slot, for the master and the status output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotView {
    /// The worker's pid, or 0 for a free slot.
    pub pid: u32,
    /// What the worker says it is doing.
    pub state: WorkerState,
    /// The monotonic time of its last heartbeat, in ms.
    pub heartbeat_ms: u64,
    /// Requests it has answered.
    pub requests: u64,
    /// Requests with its pool right now.
    pub busy: u64,
    /// Open client connections.
    pub connections: u64,
    /// Monotonic ms when its oldest request in the pool started; 0 when none.
    pub oldest_request_ms: u64,
    /// Why it is recycling itself, once it is.
    pub retire: Option<RetireReason>,
    /// Responses by status class: index 0 is 1xx, … 4 is 5xx.
    pub status_classes: [u64; 5],
    /// The sum of request durations, in microseconds.
    pub duration_sum_us: u64,
    /// Requests per duration bucket ([`DURATION_BOUNDS_US`], then `+Inf`), not cumulative.
    pub duration_buckets: [u64; 14],
    /// Request bodies refused (503) because the worker's body budget had no room.
    pub bodies_refused: u64,
    /// Open WebSockets: connections upgraded after their `101`, a part of `connections`.
    pub websockets: u64,
}

/// The shared table of slots.
#[derive(Debug)]
pub struct Scoreboard {
    memory: SharedMemory,
}

impl Scoreboard {
    /// Maps a scoreboard of [`CAPACITY`] slots; do this before forking any worker.
    pub fn new() -> io::Result<Scoreboard> {
        Ok(Scoreboard {
            memory: SharedMemory::new(CAPACITY * WORDS)?,
        })
    }

    fn word(&self, slot: usize, field: usize) -> &AtomicU64 {
        &self.memory.words()[slot * WORDS + field]
    }

    /// Prepares `slot` for a worker about to be forked, with a first heartbeat of `now_ms` so
    /// its start-up time counts against `timeout` like any other silence.
    pub fn reset(&self, slot: usize, now_ms: u64) {
        for field in 0..WORDS {
            self.word(slot, field).store(0, Ordering::Relaxed);
        }
        self.word(slot, STATE).store(0, Ordering::Relaxed);
        self.word(slot, HEARTBEAT).store(now_ms, Ordering::Release);
    }

    /// A worker's handle on its own slot.
    pub fn handle(&self, slot: usize) -> SlotHandle<'_> {
        SlotHandle { board: self, slot }
    }

    /// Reads a slot.
    pub fn view(&self, slot: usize) -> SlotView {
        let load = |field| self.word(slot, field).load(Ordering::Acquire);
        SlotView {
            pid: load(PID) as u32,
            state: match load(STATE) {
                1 => WorkerState::Ready,
                2 => WorkerState::Retiring,
                _ => WorkerState::Starting,
            },
            heartbeat_ms: load(HEARTBEAT),
            requests: load(REQUESTS),
            busy: load(BUSY),
            connections: load(CONNECTIONS),
            oldest_request_ms: load(OLDEST_REQUEST),
            retire: RetireReason::decode(load(RETIRE)),
            status_classes: std::array::from_fn(|i| load(STATUS_CLASSES + i)),
            duration_sum_us: load(DURATION_SUM_US),
            duration_buckets: std::array::from_fn(|i| load(DURATION_BUCKETS + i)),
            bodies_refused: load(BODIES_REFUSED),
            websockets: load(WEBSOCKETS),
        }
    }
}

/// What a worker writes into its slot. Only the worker's event loop writes, so plain stores
/// suffice; the master only reads.
#[derive(Debug, Clone, Copy)]
pub struct SlotHandle<'a> {
    board: &'a Scoreboard,
    slot: usize,
}

impl SlotHandle<'_> {
    fn store(&self, field: usize, value: u64) {
        self.board
            .word(self.slot, field)
            .store(value, Ordering::Release);
    }

    /// Records the worker's pid and that it is serving.
    pub fn ready(&self, pid: u32) {
        self.store(PID, u64::from(pid));
        self.store(STATE, 1);
    }

    /// Proves progress.
    pub fn beat(&self, now_ms: u64) {
        self.store(HEARTBEAT, now_ms);
    }

    /// Publishes how busy the worker is now.
    pub fn load(&self, busy: usize, connections: usize) {
        self.store(BUSY, busy as u64);
        self.store(CONNECTIONS, connections as u64);
    }

    /// Publishes how many of its connections are WebSockets now (upgraded, after their
    /// `101`).
    pub fn websockets(&self, open: usize) {
        self.store(WEBSOCKETS, open as u64);
    }

    /// Publishes when the oldest request now in the pool started (0 for none).
    pub fn oldest_request(&self, started_ms: u64) {
        self.store(OLDEST_REQUEST, started_ms);
    }

    /// Counts one response with `status` that took `duration_us` from hand-over to answer.
    pub fn record(&self, status: u16, duration_us: u64) {
        let add = |field: usize, n: u64| {
            let word = self.board.word(self.slot, field);
            // One writer (this worker's loop): a load and a store, no locked instruction.
            word.store(
                word.load(Ordering::Relaxed).wrapping_add(n),
                Ordering::Relaxed,
            );
        };
        add(REQUESTS, 1);
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        add(STATUS_CLASSES + class, 1);
        add(DURATION_SUM_US, duration_us);
        let bucket = DURATION_BOUNDS_US
            .iter()
            .position(|&bound| duration_us <= bound)
            .unwrap_or(DURATION_BOUNDS_US.len());
        add(DURATION_BUCKETS + bucket, 1);
    }

    /// Publishes how many request bodies the worker has refused for want of budget.
    pub fn bodies_refused(&self, count: u64) {
        self.store(BODIES_REFUSED, count);
    }

    /// Announces that the worker is recycling itself, so the master starts its replacement.
    pub fn retire(&self, reason: RetireReason) {
        self.store(RETIRE, reason.encode());
        self.store(STATE, 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_writes_and_the_master_reads() {
        let board = Scoreboard::new().unwrap();
        board.reset(5, 1000);
        let fresh = board.view(5);
        assert_eq!(fresh.state, WorkerState::Starting);
        assert_eq!(fresh.heartbeat_ms, 1000);
        let handle = board.handle(5);
        handle.ready(4242);
        handle.beat(2000);
        handle.load(3, 9);
        for _ in 0..17 {
            handle.record(200, 1);
        }
        handle.oldest_request(1500);
        handle.bodies_refused(6);
        let view = board.view(5);
        assert_eq!(view.pid, 4242);
        assert_eq!(view.state, WorkerState::Ready);
        assert_eq!(
            (
                view.heartbeat_ms,
                view.requests,
                view.busy,
                view.connections
            ),
            (2000, 17, 3, 9)
        );
        assert_eq!(view.oldest_request_ms, 1500);
        assert_eq!(view.bodies_refused, 6);
        assert_eq!(view.retire, None);
        assert_eq!(board.view(4).pid, 0, "neighbouring slots are untouched");
        handle.retire(RetireReason::MaxRequests(1000));
        let view = board.view(5);
        assert_eq!(view.state, WorkerState::Retiring);
        assert_eq!(view.retire, Some(RetireReason::MaxRequests(1000)));
        board.reset(5, 3000);
        assert_eq!(board.view(5).retire, None);
        assert_eq!(board.view(5).pid, 0);
    }

    #[test]
    fn open_websockets_are_stored_not_added_and_cleared_by_a_reset() {
        let board = Scoreboard::new().unwrap();
        board.reset(7, 0);
        board.reset(8, 0);
        assert_eq!(
            board.view(7).websockets,
            0,
            "none before the worker says so"
        );
        let handle = board.handle(7);
        handle.load(1, 12);
        handle.websockets(10);
        handle.websockets(4);
        let view = board.view(7);
        assert_eq!((view.websockets, view.connections, view.busy), (4, 12, 1));
        assert_eq!(
            board.view(8).websockets,
            0,
            "neighbouring slots are untouched"
        );
        board.reset(7, 0);
        assert_eq!(board.view(7).websockets, 0);
    }

    #[test]
    fn responses_are_counted_by_class_and_duration() {
        let board = Scoreboard::new().unwrap();
        board.reset(0, 0);
        let handle = board.handle(0);
        handle.record(200, 800);
        handle.record(204, 3_000);
        handle.record(404, 20_000_000);
        handle.record(503, 50_000);
        let view = board.view(0);
        assert_eq!(view.status_classes, [0, 2, 0, 1, 1]);
        assert_eq!(view.duration_sum_us, 800 + 3_000 + 20_000_000 + 50_000);
        assert_eq!(view.duration_buckets[0], 1, "800 us <= 1 ms");
        assert_eq!(view.duration_buckets[2], 1, "3 ms <= 5 ms");
        assert_eq!(view.duration_buckets[5], 1, "50 ms <= 50 ms");
        assert_eq!(view.duration_buckets[13], 1, "20 s goes to +Inf");
        board.reset(0, 0);
        assert_eq!(board.view(0).status_classes, [0; 5]);
    }

    #[test]
    fn retire_reasons_round_trip_and_read_well() {
        for reason in [
            RetireReason::MaxRequests(1),
            RetireReason::Memory(600 << 20),
            RetireReason::RequestTimeout(1234),
            RetireReason::Replaced,
            RetireReason::Blocked(31_000),
        ] {
            assert_eq!(RetireReason::decode(reason.encode()), Some(reason));
        }
        assert_eq!(RetireReason::decode(0), None);
        assert_eq!(
            RetireReason::Memory(600 << 20).to_string(),
            "uses 600 MiB of private memory (max_worker_memory)"
        );
    }
}
