//! The scoreboard: one slot of shared memory per worker process, written by the worker's event
//! loop and read by the master. It carries the heartbeat (the loop's proof of progress), the
//! request and connection counts, and a worker's own decision to recycle itself.
//!
//! Apache httpd's scoreboard and unicorn's shared tick are the references: no syscall, no
//! message, just stores the master reads when it looks.
//!
//! Workers read one another's slots too, for one thing: whether they take connections now and
//! how many they hold (their *offer*), so that a worker that holds more than another lets it
//! take the next connection (see `src/worker/admission.rs`). A word after the slots says how
//! many of them were ever in use, so that reading the offers costs a few atomic loads per
//! worker and not a pass over every slot.
//!
//! The queue-wait histogram is counted by the threads that pick requests up (pool threads, or
//! an ASGI application's own loop) into this process's [`QUEUE_WAITS`], with atomic adds; the
//! worker's loop copies it into the slot on each heartbeat, so the slot keeps one writer.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::sys::SharedMemory;

/// Words per slot: six cache lines, so workers never share a line.
const WORDS: usize = 48;
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
const THREADS: usize = 30;
const QUEUE_WAIT: usize = 31;
/// 0 while the worker takes no connections (starting, full, backing off, stopping), else one
/// more than the connections it holds.
const OFFER: usize = QUEUE_WAIT + QUEUE_WAIT_WORDS;
const _: () = assert!(OFFER < WORDS, "the last word must fit in the slot");

/// Upper bounds of the request duration histogram's buckets, in microseconds; a last bucket
/// (`+Inf`) counts the rest. Prometheus-style, from 1 ms to 10 s.
pub const DURATION_BOUNDS_US: [u64; 13] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000,
];

/// Upper bounds of the queue-wait histogram's buckets, in microseconds; a last bucket
/// (`+Inf`) counts the rest. From 0.5 ms, which a request waits only on a busy pool, to 10 s.
pub const QUEUE_WAIT_BOUNDS_US: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

/// Buckets of the queue-wait histogram: one per bound, then `+Inf`.
pub const QUEUE_WAIT_BUCKETS: usize = QUEUE_WAIT_BOUNDS_US.len() + 1;

/// Words of a queue-wait histogram: its buckets, then the sum of the waits in microseconds.
const QUEUE_WAIT_WORDS: usize = QUEUE_WAIT_BUCKETS + 1;

/// The bucket `value` falls in: the first whose upper bound (inclusive) it does not exceed, or
/// `bounds.len()` (`+Inf`) past the last.
pub fn bucket_of(bounds: &[u64], value: u64) -> usize {
    bounds
        .iter()
        .position(|&bound| value <= bound)
        .unwrap_or(bounds.len())
}

/// How long requests waited between their hand-over to the application's runner and the
/// moment it took them up: a count per bucket ([`QUEUE_WAIT_BOUNDS_US`], then `+Inf`), not
/// cumulative, and the sum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueWait {
    /// Requests per bucket.
    pub buckets: [u64; QUEUE_WAIT_BUCKETS],
    /// The sum of the waits, in microseconds.
    pub sum_us: u64,
}

impl QueueWait {
    /// How many waits it counts.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// What was counted since `earlier`, a reading of the same counters. Counters only grow;
    /// a bucket that went down means they started again (another process in the slot), and
    /// then all of these are new.
    pub fn since(&self, earlier: &QueueWait) -> QueueWait {
        let restarted = self
            .buckets
            .iter()
            .zip(earlier.buckets)
            .any(|(now, then)| *now < then);
        if restarted {
            return *self;
        }
        QueueWait {
            buckets: std::array::from_fn(|i| self.buckets[i] - earlier.buckets[i]),
            sum_us: self.sum_us.saturating_sub(earlier.sum_us),
        }
    }

    /// Adds `other`'s counts into these.
    pub fn add(&mut self, other: &QueueWait) {
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets) {
            *mine += theirs;
        }
        self.sum_us += other.sum_us;
    }

    /// The `q` quantile (0 to 1) of the waits counted, `None` when there are none. Within a
    /// bucket the waits are taken as spread evenly, as Prometheus's `histogram_quantile` does;
    /// a quantile in the `+Inf` bucket is given as the last bound, a floor.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * count as f64;
        let mut below = 0;
        for (i, &in_bucket) in self.buckets.iter().enumerate() {
            if in_bucket > 0 && (below + in_bucket) as f64 >= rank {
                let Some(&upper) = QUEUE_WAIT_BOUNDS_US.get(i) else {
                    break;
                };
                let lower = if i == 0 {
                    0
                } else {
                    QUEUE_WAIT_BOUNDS_US[i - 1]
                };
                let share = ((rank - below as f64) / in_bucket as f64).clamp(0.0, 1.0);
                let us = lower as f64 + (upper - lower) as f64 * share;
                return Some(Duration::from_micros(us.round() as u64));
            }
            below += in_bucket;
        }
        Some(Duration::from_micros(
            QUEUE_WAIT_BOUNDS_US[QUEUE_WAIT_BOUNDS_US.len() - 1],
        ))
    }

    /// A wait that at least `percent` % of the waits counted exceeded, as far as the buckets
    /// tell, with nothing interpolated: the lower bound of the highest bucket that, with the
    /// buckets above it, holds that share (zero for the first bucket). `None` when there are
    /// none. Unlike [`QueueWait::quantile`], which spreads a bucket's waits over its width,
    /// every wait counted in those buckets was longer than this.
    pub fn floor(&self, percent: u64) -> Option<Duration> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let mut above = 0;
        for (i, &in_bucket) in self.buckets.iter().enumerate().rev() {
            above += in_bucket;
            if above > 0 && above * 100 >= percent * count {
                let lower = i.checked_sub(1).map_or(0, |i| QUEUE_WAIT_BOUNDS_US[i]);
                return Some(Duration::from_micros(lower));
            }
        }
        Some(Duration::ZERO)
    }
}

#[cfg(test)]
impl QueueWait {
    /// `count` waits in `bucket`, each at its bound (none past the last): for tests.
    pub(crate) fn at_bound(bucket: usize, count: u64) -> QueueWait {
        let mut wait = QueueWait::default();
        wait.buckets[bucket] = count;
        wait.sum_us = count * QUEUE_WAIT_BOUNDS_US.get(bucket).copied().unwrap_or(0);
        wait
    }
}

/// Queue waits counted in one process by any of its threads, until the worker's loop copies
/// them into its slot ([`SlotHandle::queue_waits`]). Atomic adds, no lock.
#[derive(Debug)]
pub struct QueueWaits {
    words: [AtomicU64; QUEUE_WAIT_WORDS],
}

impl QueueWaits {
    /// Nothing counted yet.
    pub const fn new() -> QueueWaits {
        QueueWaits {
            words: [const { AtomicU64::new(0) }; QUEUE_WAIT_WORDS],
        }
    }

    /// Counts a request taken up now that was handed over at `queued`.
    pub fn record_since(&self, queued: Instant) {
        self.record(queued.elapsed());
    }

    /// Counts one wait.
    pub fn record(&self, wait: Duration) {
        let us = u64::try_from(wait.as_micros()).unwrap_or(u64::MAX);
        let bucket = bucket_of(&QUEUE_WAIT_BOUNDS_US, us);
        self.words[bucket].fetch_add(1, Ordering::Relaxed);
        self.words[QUEUE_WAIT_BUCKETS].fetch_add(us, Ordering::Relaxed);
    }

    /// What has been counted so far.
    pub fn read(&self) -> QueueWait {
        QueueWait {
            buckets: std::array::from_fn(|i| self.words[i].load(Ordering::Relaxed)),
            sum_us: self.words[QUEUE_WAIT_BUCKETS].load(Ordering::Relaxed),
        }
    }
}

impl Default for QueueWaits {
    fn default() -> Self {
        QueueWaits::new()
    }
}

/// This process's queue waits. Only a worker counts any (the master runs no request), from
/// zero: it is forked from a master that never did.
pub static QUEUE_WAITS: QueueWaits = QueueWaits::new();

/// How many worker processes the scoreboard can track at once, old and new generations and
/// retiring workers included.
pub const CAPACITY: usize = 4096;

/// Where, after the slots, the word that bounds the slots ever in use lies: one more than
/// the highest slot that ever offered to take connections.
const SLOTS_IN_USE: usize = CAPACITY * WORDS;

/// A slot whose heartbeat is older than this offers nothing, whatever it says: its worker
/// died or hangs, and its slot was not taken again yet. Workers beat at least once a second.
const OFFER_STALE_MS: u64 = 3_000;

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
    /// Its pool threads; 0 for a concurrent (ASGI) application, which runs on its own loop.
    pub threads: u64,
    /// How long its requests waited to be taken up, since it started.
    pub queue_wait: QueueWait,
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
            memory: SharedMemory::new(SLOTS_IN_USE + 1)?,
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

    /// The worker in `slot` is gone (reaped): it takes no connections, whatever it last
    /// said, so the other workers stop leaving connections to it at once rather than when its
    /// heartbeat is stale.
    pub fn withdraw_offer(&self, slot: usize) {
        self.word(slot, OFFER).store(0, Ordering::Release);
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
            threads: load(THREADS),
            queue_wait: QueueWait {
                buckets: std::array::from_fn(|i| load(QUEUE_WAIT + i)),
                sum_us: load(QUEUE_WAIT + QUEUE_WAIT_BUCKETS),
            },
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

    /// Says how many pool threads run its application: 0 for a concurrent (ASGI) one.
    pub fn threads(&self, threads: usize) {
        self.store(THREADS, threads as u64);
    }

    /// Publishes the queue waits counted so far in this process.
    pub fn queue_waits(&self, counted: &QueueWaits) {
        let counted = counted.read();
        for (i, count) in counted.buckets.into_iter().enumerate() {
            self.store(QUEUE_WAIT + i, count);
        }
        self.store(QUEUE_WAIT + QUEUE_WAIT_BUCKETS, counted.sum_us);
    }

    /// Publishes how busy the worker is now.
    pub fn load(&self, busy: usize, connections: usize) {
        self.store(BUSY, busy as u64);
        self.store(CONNECTIONS, connections as u64);
    }

    /// Publishes whether the worker takes connections now, and then how many it holds
    /// (`None`: it takes none), for the other workers to compare with theirs.
    pub fn offer(&self, taking: Option<usize>) {
        let offer = taking.map_or(0, |live| live as u64 + 1);
        let word = self.board.word(self.slot, OFFER);
        // Published on every change of the worker's load, about twice a request, and read by
        // every other worker: a store only when it changes keeps the line shared.
        if word.load(Ordering::Relaxed) != offer {
            word.store(offer, Ordering::Release);
        }
        if taking.is_some() {
            let in_use = &self.board.memory.words()[SLOTS_IN_USE];
            let needed = self.slot as u64 + 1;
            // Read first: the word is shared by every worker and changes only as the
            // scoreboard first fills.
            if in_use.load(Ordering::Relaxed) < needed {
                in_use.fetch_max(needed, Ordering::AcqRel);
            }
        }
    }

    /// The fewest connections held by another worker that takes connections now, by what
    /// the slots in use say at `now_ms` (monotonic); `None` when no other worker takes any.
    /// A slot whose heartbeat is [`OFFER_STALE_MS`] old does not count.
    pub fn fewest_elsewhere(&self, now_ms: u64) -> Option<usize> {
        let board = self.board;
        let in_use = board.memory.words()[SLOTS_IN_USE].load(Ordering::Acquire);
        let in_use = usize::try_from(in_use).unwrap_or(CAPACITY).min(CAPACITY);
        (0..in_use)
            .filter(|&slot| slot != self.slot)
            .filter_map(|slot| {
                let offer = board.word(slot, OFFER).load(Ordering::Acquire);
                let beat = board.word(slot, HEARTBEAT).load(Ordering::Acquire);
                (offer > 0 && now_ms.saturating_sub(beat) < OFFER_STALE_MS)
                    .then(|| usize::try_from(offer - 1).unwrap_or(usize::MAX))
            })
            .min()
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
        add(
            DURATION_BUCKETS + bucket_of(&DURATION_BOUNDS_US, duration_us),
            1,
        );
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
    fn a_worker_reads_what_the_others_that_take_connections_hold() {
        let board = Scoreboard::new().unwrap();
        let now = 100_000;
        for slot in 0..4 {
            board.reset(slot, now);
        }
        let [a, b, c, d] = [0, 1, 2, 3].map(|slot| board.handle(slot));
        assert_eq!(
            a.fewest_elsewhere(now),
            None,
            "nobody takes connections yet"
        );
        a.offer(Some(3));
        assert_eq!(a.fewest_elsewhere(now), None, "its own slot does not count");
        assert_eq!(b.fewest_elsewhere(now), Some(3));
        c.offer(Some(1));
        d.offer(Some(0));
        d.offer(None);
        assert_eq!(
            a.fewest_elsewhere(now),
            Some(1),
            "a worker that is full offers nothing"
        );
        assert_eq!(c.fewest_elsewhere(now), Some(3));
        b.offer(Some(0));
        assert_eq!(
            a.fewest_elsewhere(now),
            Some(0),
            "none held is an offer too"
        );
        // A worker whose heartbeat stopped (dead or hung) offers nothing.
        let later = now + OFFER_STALE_MS;
        a.beat(later);
        c.beat(later);
        assert_eq!(a.fewest_elsewhere(later), Some(1), "b's heartbeat is stale");
        // A slot taken again offers nothing until its new worker says so.
        board.reset(2, later);
        assert_eq!(a.fewest_elsewhere(later), None);
        // A worker reaped offers nothing from then on.
        c.offer(Some(1));
        assert_eq!(a.fewest_elsewhere(later), Some(1));
        board.withdraw_offer(2);
        assert_eq!(a.fewest_elsewhere(later), None);
        assert_eq!(board.view(2).connections, 0);
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
    fn queue_waits_are_counted_by_bucket_and_published_into_the_slot() {
        let counted = QueueWaits::new();
        counted.record(Duration::from_micros(300));
        counted.record(Duration::from_micros(500));
        counted.record(Duration::from_millis(30));
        counted.record(Duration::from_secs(60));
        let read = counted.read();
        assert_eq!(read.buckets[0], 2, "300 us and 500 us are <= 0.5 ms");
        assert_eq!(read.buckets[6], 1, "30 ms <= 50 ms");
        assert_eq!(read.buckets[14], 1, "a minute goes to +Inf");
        assert_eq!(read.count(), 4);
        assert_eq!(read.sum_us, 300 + 500 + 30_000 + 60_000_000);

        let board = Scoreboard::new().unwrap();
        board.reset(2, 0);
        let handle = board.handle(2);
        handle.threads(4);
        assert_eq!(
            board.view(2).queue_wait,
            QueueWait::default(),
            "not yet published"
        );
        handle.queue_waits(&counted);
        let view = board.view(2);
        assert_eq!((view.queue_wait, view.threads), (read, 4));
        assert_eq!(
            board.view(3).queue_wait.count(),
            0,
            "neighbouring slots are untouched"
        );
        board.reset(2, 0);
        assert_eq!(board.view(2).queue_wait, QueueWait::default());
    }

    fn waits(counts: &[(usize, u64)]) -> QueueWait {
        let mut wait = QueueWait::default();
        for &(bucket, count) in counts {
            wait.add(&QueueWait::at_bound(bucket, count));
        }
        wait
    }

    #[test]
    fn what_was_counted_since_an_earlier_reading() {
        let before = waits(&[(0, 10), (3, 2)]);
        let after = waits(&[(0, 15), (3, 2), (7, 4)]);
        let recent = after.since(&before);
        assert_eq!(recent, waits(&[(0, 5), (7, 4)]));
        assert_eq!(recent.count(), 9);
        // Another process took the slot: its counters started again from zero.
        let restarted = waits(&[(1, 3)]);
        assert_eq!(restarted.since(&after), restarted);
        let mut both = before;
        both.add(&recent);
        assert_eq!(both, after);
    }

    #[test]
    fn quantiles_are_interpolated_within_their_bucket() {
        assert_eq!(QueueWait::default().quantile(0.9), None);
        // Ten waits: nine at most 0.5 ms, one in (100 ms, 250 ms].
        let wait = waits(&[(0, 9), (8, 1)]);
        assert_eq!(wait.quantile(0.9), Some(Duration::from_micros(500)));
        assert_eq!(wait.quantile(1.0), Some(Duration::from_millis(250)));
        // A hundred waits spread evenly over (100 ms, 250 ms]: the 90th is at 235 ms.
        let wait = waits(&[(8, 100)]);
        assert_eq!(wait.quantile(0.9), Some(Duration::from_millis(235)));
        assert_eq!(wait.quantile(0.5), Some(Duration::from_millis(175)));
        // Past the last bound, the last bound is all that is known.
        let wait = waits(&[(0, 1), (14, 9)]);
        assert_eq!(wait.quantile(0.9), Some(Duration::from_secs(10)));
    }

    #[test]
    fn a_floor_is_a_bucket_lower_bound_that_a_share_of_the_waits_exceeded() {
        assert_eq!(QueueWait::default().floor(10), None);
        // A hundred waits of 120 ms: all in (100 ms, 250 ms], so 100 ms is all that is known,
        // where the interpolated p90 says 235 ms.
        let wait = waits(&[(8, 100)]);
        assert_eq!(wait.floor(10), Some(Duration::from_millis(100)));
        // Ten of a hundred is enough, nine is not.
        let wait = waits(&[(0, 90), (9, 10)]);
        assert_eq!(wait.floor(10), Some(Duration::from_millis(250)));
        let wait = waits(&[(0, 91), (9, 9)]);
        assert_eq!(wait.floor(10), Some(Duration::ZERO));
        // Spread over several buckets from the top down, and past the last bound.
        let wait = waits(&[(0, 80), (8, 5), (10, 8), (14, 2)]);
        assert_eq!(wait.floor(10), Some(Duration::from_millis(500)));
        assert_eq!(wait.floor(2), Some(Duration::from_secs(10)));
    }

    #[test]
    fn buckets_take_their_upper_bound() {
        assert_eq!(bucket_of(&QUEUE_WAIT_BOUNDS_US, 0), 0);
        assert_eq!(bucket_of(&QUEUE_WAIT_BOUNDS_US, 501), 1);
        assert_eq!(bucket_of(&QUEUE_WAIT_BOUNDS_US, 10_000_000), 13);
        assert_eq!(bucket_of(&QUEUE_WAIT_BOUNDS_US, 10_000_001), 14);
        assert_eq!(bucket_of(&DURATION_BOUNDS_US, 1_000), 0);
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
