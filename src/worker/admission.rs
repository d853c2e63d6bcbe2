//! When a worker takes connections from the shared listeners: the counts that make it full,
//! and the decision, kept free of I/O so the policy can be read (and tested) as a table.
//!
//! Admission depends only on work that occupies the worker: requests and stream pulls with its
//! pool, and open connections against `max_connections`. A connection that has sent nothing,
//! or only part of a request, costs a buffer and no thread, so it does not count: a client
//! cannot make a worker stop accepting by opening sockets and saying little.
//!
//! A worker takes connections while its pool has a free thread and it holds fewer than
//! `max_connections`, or holds that many but one of them is idle (waiting for a request of which
//! no byte came): that one gives way to the new connection, as nginx reuses its keep-alive
//! connections. So that a worker that woke first does not swallow a whole burst while others
//! have idle threads, it takes at most [`Admission::batch`] connections per readiness event and
//! comes back for more on the next turn of its loop, after the events already polled (which
//! include the new connections' first requests) are handled.
//!
//! A connection just taken whose first request has not arrived yet holds a thread's place for
//! [`CLAIM_FOR`] (a claim), until its request is handed to the application: a worker that woke
//! first would otherwise take a whole burst of connections, one batch per turn of its loop,
//! before their requests made it busy, and the other workers would get none of them (their
//! requests then queue behind one worker's threads while the others' stay idle). A claim
//! lapses after [`CLAIM_FOR`], so a client that connects and says nothing holds no place.
//!
//! Among the workers with room, connections go to the one that holds the fewest (least
//! connections, as nginx's `least_conn`): a worker about to take one compares the connections
//! it holds with what the other workers that take connections publish in the scoreboard, and
//! when one of them holds fewer it defers: it leaves the waiting connections to the others,
//! woken by the same readiness, for [`SPREAD_DEFER`] (see [`Admission::defers`]), comparing
//! again at each readiness meanwhile (it takes at once when it has become the least loaded).
//! When the deferral runs out it takes one whatever the others hold, and compares again for
//! the next, so a slow or hung worker that looks least loaded delays a connection by the
//! deferral, never more. Only while it holds fewer connections than it runs requests at once
//! (its threads, at most [`MAX_BATCH`]; see `Admission::spreads`): beyond that every worker
//! queues anyway, and deferring would only move each new connection off the CPU it is on. Connections, not
//! requests, are compared: keep-alive clients (a benchmark's, a proxy's upstream pool, a
//! service's HTTP client) place a connection once and send all its requests there, so the
//! connections a worker holds are the work it will get; its requests under way change with
//! every one of them, and a worker whose threads are all busy takes none anyway. A worker
//! with no other taking connections (`workers = 1`, or the others full or stopping) takes as
//! if alone.
//!
//! A full worker still takes one waiting connection every [`ACCEPT_NUDGE`], so that when every
//! worker is full the queued connections are not starved by the accepted keep-alive clients.
//! When `accept` fails for want of descriptors or memory, the worker stops accepting for
//! [`ACCEPT_BACKOFF`], nudge included, instead of retrying on every event.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long a full worker leaves connections in the kernel's queue before it takes one
/// anyway (see [`Admission::nudge`]).
pub(super) const ACCEPT_NUDGE: Duration = Duration::from_millis(50);
/// How long a connection just taken holds a thread's place while its first request has not
/// arrived (see the module documentation).
pub(super) const CLAIM_FOR: Duration = Duration::from_millis(50);
/// How long a worker stops accepting after `accept` failed with `EMFILE`, `ENFILE`, `ENOBUFS`
/// or `ENOMEM` (nginx waits 500 ms too). The sweep turns accepting back on after it.
pub(super) const ACCEPT_BACKOFF: Duration = Duration::from_millis(500);
/// How long a worker that holds more connections than another one that takes connections
/// leaves the waiting connections to the others (see [`Admission::defers`]): ample for a
/// worker's loop to answer the readiness of a listener they all watch, short beside any
/// request.
pub(super) const SPREAD_DEFER: Duration = Duration::from_millis(2);

/// What a worker holds, as far as taking more is concerned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Load {
    /// Open connections.
    pub(super) live: usize,
    /// Requests with the pool.
    pub(super) in_flight: usize,
    /// "Next chunk" jobs with the pool.
    pub(super) pulls: usize,
}

/// The most connections one readiness event takes: a concurrent application's worker has room
/// for many requests, and would otherwise swallow a burst the other workers could share.
const MAX_BATCH: usize = 16;

/// Where a worker stands in spreading connections over the workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spread {
    /// It takes a connection unless another worker that takes connections holds fewer.
    Even,
    /// Another worker held fewer: the waiting connections are the others' until then.
    Deferred(Instant),
    /// The deferral ran out: it takes the next connection whatever the others hold, from
    /// whichever listener has one.
    Due,
}

/// A worker's load and limits, and since when it has been full.
#[derive(Debug)]
pub(super) struct Admission {
    pub(super) load: Load,
    /// How many requests the application runs at once: its pool threads, or
    /// `[app] max_concurrency` for a concurrent (ASGI) application.
    threads: usize,
    max_connections: usize,
    /// Since when the worker has been too full to take connections.
    paused_since: Option<Instant>,
    /// `accept` ran out of descriptors or memory: no accepting before this.
    backoff_until: Option<Instant>,
    /// A listener may still hold connections: a batch stopped at its size, not at
    /// `WouldBlock`, and edge-triggered readiness will not say so again.
    more_waiting: bool,
    /// Whether chunk pulls count as work: with a pool each holds a thread; a concurrent
    /// application's requests count whole, from start to `TaskDone`, pulls included.
    pulls_count: bool,
    /// Connections taken (slab index, when) whose first request has not been handed over yet,
    /// oldest first; each holds a thread's place until [`CLAIM_FOR`] has passed. A closed
    /// connection's claim goes before its slab index can be reused.
    claims: VecDeque<(usize, Instant)>,
    /// Whether it leaves waiting connections to a worker that holds fewer.
    spread: Spread,
    /// Whether its clients keep their connections for several requests, which is when
    /// spreading connections pays.
    reuse: Reuse,
}

/// How many requests the worker's connections carried when they closed: where each carries
/// one (a proxy without upstream keep-alive, `Connection: close` clients), where a connection
/// goes does not decide where later requests go, and spreading connections only moves work off
/// the CPU that took it.
#[derive(Debug, Clone, Copy)]
struct Reuse {
    /// Connections closed since the window began.
    closed: u32,
    /// The requests they carried, each counted up to [`REUSE_CAP`].
    requests: u32,
    /// When the last one closed.
    last_close: Option<Instant>,
    /// What the last whole window found: connections carried two requests or more on average.
    /// At first, and after a second with none closed, they count as reused, so that a burst
    /// of keep-alive connections (which do not close) is spread.
    reused: bool,
}

/// A window of [`Reuse`] ends after this many connections closed.
const REUSE_WINDOW: u32 = 64;
/// A connection counts at most this many requests in [`Reuse`], so that a few long-lived ones
/// do not outweigh many that carried one each.
const REUSE_CAP: u32 = 16;
/// With no connection closed for this long, the ones open are the clients' own to keep.
const REUSE_QUIET: Duration = Duration::from_secs(1);

impl Reuse {
    fn new() -> Reuse {
        Reuse {
            closed: 0,
            requests: 0,
            last_close: None,
            reused: true,
        }
    }

    /// A connection that carried `requests` closed at `now`. One that carried none (a
    /// balancer's TCP health check, a browser's preconnect) says nothing about reuse.
    fn closed(&mut self, requests: u32, now: Instant) {
        if requests == 0 {
            return;
        }
        self.closed += 1;
        self.requests += requests.min(REUSE_CAP);
        self.last_close = Some(now);
        if self.closed >= REUSE_WINDOW {
            self.reused = self.requests >= 2 * self.closed;
            self.closed = 0;
            self.requests = 0;
        }
    }

    /// Whether connections are kept for several requests, at `now`.
    fn reused(&self, now: Instant) -> bool {
        self.reused
            || self
                .last_close
                .is_none_or(|at| now.duration_since(at) >= REUSE_QUIET)
    }
}

impl Admission {
    /// An empty worker with `threads` pool threads and at most `max_connections`.
    pub(super) fn new(threads: usize, max_connections: usize) -> Admission {
        Admission {
            load: Load::default(),
            threads,
            max_connections,
            paused_since: None,
            backoff_until: None,
            more_waiting: false,
            pulls_count: true,
            claims: VecDeque::new(),
            spread: Spread::Even,
            reuse: Reuse::new(),
        }
    }

    /// An empty worker whose concurrent application runs at most `max_concurrency` requests
    /// at once, each counted from its start to its end (its response streamed, its
    /// background work done), and at most `max_connections`.
    pub(super) fn concurrent(max_concurrency: usize, max_connections: usize) -> Admission {
        Admission {
            pulls_count: false,
            ..Admission::new(max_concurrency, max_connections)
        }
    }

    /// Jobs with the pool: requests and chunk pulls (a concurrent application's requests).
    pub(super) fn busy(&self) -> usize {
        if self.pulls_count {
            self.load.in_flight + self.load.pulls
        } else {
            self.load.in_flight
        }
    }

    /// Whether the worker holds `max_connections`: a new connection then needs an idle one to
    /// give way.
    pub(super) fn at_limit(&self) -> bool {
        self.load.live >= self.max_connections
    }

    /// Jobs with the pool and the places claimed by connections just taken.
    fn claimed(&self) -> usize {
        self.busy() + self.claims.len()
    }

    /// Whether the pool has a free thread not claimed by a connection just taken, so that a
    /// connection taken now is served at once.
    pub(super) fn pool_has_room(&self) -> bool {
        self.claimed() < self.threads
    }

    /// Connection `conn` was just taken at `now`: it holds a thread's place until its first
    /// request is handed over or [`CLAIM_FOR`] has passed.
    pub(super) fn claim(&mut self, conn: usize, now: Instant) {
        self.claims.push_back((conn, now));
        if self.spread == Spread::Due {
            // The connection a deferral that ran out was for: the next one compares again.
            self.spread = Spread::Even;
        }
    }

    /// Connection `conn` handed a request to the application: it is in flight, and the
    /// connection's claim, if it still held one, is over.
    pub(super) fn hand_over(&mut self, conn: usize) {
        self.load.in_flight += 1;
        self.unclaim(conn);
    }

    /// Connection `conn` closed at `now`, having carried `requests`: its claim, if it still
    /// held one, is over, and its requests tell whether clients keep their connections.
    pub(super) fn closed(&mut self, conn: usize, requests: u32, now: Instant) {
        self.load.live -= 1;
        self.unclaim(conn);
        self.reuse.closed(requests, now);
    }

    /// Connection `conn` handed over its first request, or closed: its claim, if it still
    /// holds one, is over. A few entries at most: a worker stops taking connections once they
    /// fill its threads.
    pub(super) fn unclaim(&mut self, conn: usize) {
        if let Some(at) = self.claims.iter().position(|&(c, _)| c == conn) {
            self.claims.remove(at);
        }
    }

    /// Drops the claims older than [`CLAIM_FOR`] at `now`; returns whether any lapsed, so the
    /// worker weighs again whether it takes connections.
    pub(super) fn expire_claims(&mut self, now: Instant) -> bool {
        let before = self.claims.len();
        while self
            .claims
            .front()
            .is_some_and(|&(_, at)| now.duration_since(at) >= CLAIM_FOR)
        {
            self.claims.pop_front();
        }
        self.claims.len() != before
    }

    /// Whether there is room for another connection: a free thread, and a connection slot or an
    /// idle connection (`idle_to_spare`) that gives way.
    fn has_room(&self, idle_to_spare: bool) -> bool {
        self.pool_has_room() && (!self.at_limit() || idle_to_spare)
    }

    /// How many connections to take on one readiness event: one per free thread, at least one,
    /// at most [`MAX_BATCH`].
    pub(super) fn batch(&self) -> usize {
        self.threads
            .saturating_sub(self.claimed())
            .clamp(1, MAX_BATCH)
    }

    /// Decides, for a running worker whose load changed, whether it takes connections, and
    /// notes since when it has been full. `idle_to_spare` says that the worker, at
    /// `max_connections`, holds an idle connection that would give way.
    pub(super) fn decide(&mut self, now: Instant, idle_to_spare: bool) -> bool {
        if let Some(until) = self.backoff_until {
            if now < until {
                return false;
            }
            self.backoff_until = None;
        }
        let room = self.has_room(idle_to_spare);
        if room {
            self.paused_since = None;
        } else {
            self.stand_down();
            if self.paused_since.is_none() {
                self.paused_since = Some(now);
            }
        }
        room
    }

    /// `accept` failed for want of descriptors or memory: no accepting, and no nudge, for
    /// [`ACCEPT_BACKOFF`].
    pub(super) fn back_off(&mut self, now: Instant) {
        self.backoff_until = Some(now + ACCEPT_BACKOFF);
        self.paused_since = None;
        self.stand_down();
    }

    /// The worker takes no connections for now (full, backing off or stopping): it forgets
    /// that a listener may hold more and any deferral; registering the listeners again
    /// reports what they hold.
    pub(super) fn stand_down(&mut self) {
        self.more_waiting = false;
        self.spread = Spread::Even;
    }

    /// Whether the worker leaves the next waiting connection to the other workers at `now`:
    /// another that takes connections holds fewer than it does (`fewest_elsewhere`). The
    /// first time, it defers for [`SPREAD_DEFER`]; each readiness within the deferral
    /// compares again, so a worker that has become the least loaded (the others took
    /// connections meanwhile) takes at once, and does not sit out the rest of the deferral
    /// while everyone else does too. Once the deferral has run out, it takes the next
    /// connection whatever the others hold (they had their chance), and compares again for the
    /// one after.
    pub(super) fn defers(
        &mut self,
        now: Instant,
        fewest_elsewhere: impl FnOnce() -> Option<usize>,
    ) -> bool {
        match self.spread {
            // Until a connection is taken: a pass over several listeners takes from whichever
            // holds one, and none of them starts a new deferral.
            Spread::Due => return false,
            Spread::Deferred(until) if now >= until => {
                self.spread = Spread::Due;
                return false;
            }
            Spread::Deferred(_) | Spread::Even => {}
        }
        let fewer =
            self.spreads(now) && fewest_elsewhere().is_some_and(|fewest| fewest < self.load.live);
        self.spread = match (fewer, self.spread) {
            (false, _) => Spread::Even,
            (true, Spread::Even) => Spread::Deferred(now + SPREAD_DEFER),
            (true, deferred) => deferred,
        };
        fewer
    }

    /// Whether where a connection goes matters at `now`: its clients keep their connections
    /// for several requests (see [`Reuse`]), and it holds fewer connections than it runs
    /// requests at once (its threads; at most [`MAX_BATCH`] for a concurrent application). Up
    /// to there, a connection placed on a worker that already holds more queues its requests
    /// behind the others' while another worker's threads idle. Beyond it, every worker's
    /// requests queue anyway and one whose threads are all busy takes none (claims included),
    /// and leaving each new connection to another worker only moves the work off the CPU it
    /// is on.
    fn spreads(&self, now: Instant) -> bool {
        self.load.live < self.threads.min(MAX_BATCH) && self.reuse.reused(now)
    }

    /// Whether a deferral ran out at `now`: the loop then looks at the listeners again and
    /// takes a connection they still hold (see [`Admission::defers`]). Once per deferral.
    pub(super) fn deferral_over(&mut self, now: Instant) -> bool {
        match self.spread {
            Spread::Deferred(until) if now >= until => {
                self.spread = Spread::Due;
                true
            }
            _ => false,
        }
    }

    /// Notes whether a listener may still hold connections after a batch (see
    /// [`Admission::batch`]).
    pub(super) fn set_more_waiting(&mut self, more: bool) {
        self.more_waiting = more;
    }

    /// Whether the loop should take another batch now: a listener may hold more and the
    /// worker has room. Clears the mark; the next batch sets it again if it stops short.
    pub(super) fn take_more_waiting(&mut self) -> bool {
        std::mem::take(&mut self.more_waiting) && self.paused_since.is_none()
    }

    /// Whether a full, running worker takes one waiting connection now: every
    /// [`ACCEPT_NUDGE`] while full, unless it holds `max_connections` and no idle connection
    /// gives way, or accepting is backing off. Accepted, the connection's requests queue
    /// fairly in the pool with everyone else's. A nudge that is due but refused is still
    /// spent, so a worker at `max_connections` with none idle looks again a nudge later, not
    /// in a busy loop.
    pub(super) fn nudge(&mut self, now: Instant, idle_to_spare: bool) -> bool {
        if !self.nudge_due(now) {
            return false;
        }
        self.paused_since = Some(now);
        !self.at_limit() || idle_to_spare
    }

    /// Whether a nudge is due at `now` (see [`Admission::nudge`]), so the caller looks for an
    /// idle connection only then.
    pub(super) fn nudge_due(&self, now: Instant) -> bool {
        self.paused_since
            .is_some_and(|since| now.duration_since(since) >= ACCEPT_NUDGE)
    }

    /// How long the loop may sleep at `now`: `tick`; nothing when a listener may still hold
    /// connections and the worker has room; less when a nudge, the end of a deferral or a
    /// claim's lapse is due sooner.
    pub(super) fn wait(&self, now: Instant, tick: Duration) -> Duration {
        let wait = match self.paused_since {
            Some(since) => ACCEPT_NUDGE
                .saturating_sub(now.duration_since(since))
                .min(tick),
            None if self.more_waiting => Duration::ZERO,
            None => tick,
        };
        let wait = match self.spread {
            Spread::Deferred(until) => wait.min(until.saturating_duration_since(now)),
            Spread::Even | Spread::Due => wait,
        };
        // A claim that lapses may give room back.
        match self.claims.front() {
            Some(&(_, at)) => wait.min(CLAIM_FOR.saturating_sub(now.duration_since(at))),
            None => wait,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(live: usize, in_flight: usize, pulls: usize) -> Load {
        Load {
            live,
            in_flight,
            pulls,
        }
    }

    #[test]
    fn a_worker_takes_connections_while_its_pool_and_connection_limit_have_room() {
        // 4 threads, at most 10 connections: (load, an idle connection to spare) -> room.
        let table = [
            (load(0, 0, 0), false, true),
            (load(3, 3, 0), false, true),
            (load(4, 4, 0), false, false),
            (load(4, 2, 2), false, false),
            (load(4, 3, 0), false, true),
            // Connections that have sent nothing, or part of a request, occupy no thread.
            (load(4, 0, 0), false, true),
            (load(9, 0, 0), false, true),
            (load(9, 3, 0), false, true),
            (load(10, 0, 0), false, false),
            (load(10, 1, 0), false, false),
            (load(12, 0, 0), false, false),
            // At the limit, an idle connection gives way; a busy pool still says no.
            (load(10, 0, 0), true, true),
            (load(10, 3, 0), true, true),
            (load(10, 4, 0), true, false),
            (load(10, 2, 2), true, false),
        ];
        for (load, idle, room) in table {
            let mut admission = Admission::new(4, 10);
            admission.load = load;
            assert_eq!(admission.has_room(idle), room, "{load:?} {idle}");
            assert_eq!(admission.decide(Instant::now(), idle), room, "{load:?}");
        }
    }

    #[test]
    fn a_concurrent_application_counts_its_requests_whole_and_not_their_pulls() {
        let mut admission = Admission::concurrent(2, 100);
        admission.load = load(5, 1, 3);
        assert_eq!(admission.busy(), 1, "pulls are part of their requests");
        assert!(admission.pool_has_room());
        admission.load = load(5, 2, 0);
        assert!(
            !admission.pool_has_room(),
            "two requests alive, background work included"
        );
        let mut pool = Admission::new(2, 100);
        pool.load = load(5, 1, 1);
        assert_eq!(pool.busy(), 2, "a pull holds a pool thread");
    }

    #[test]
    fn a_readiness_event_takes_one_connection_per_free_thread() {
        // (threads, load) -> connections taken before the loop comes back.
        let table = [
            (4, load(0, 0, 0), 4),
            (4, load(5, 1, 0), 3),
            (4, load(5, 3, 1), 1),
            (4, load(5, 6, 0), 1),
            (1, load(0, 0, 0), 1),
            (1000, load(0, 0, 0), 16),
            (1000, load(990, 990, 0), 10),
        ];
        for (threads, load, batch) in table {
            let mut admission = Admission::new(threads, 100);
            admission.load = load;
            assert_eq!(admission.batch(), batch, "{threads} {load:?}");
        }
    }

    #[test]
    fn connections_just_taken_hold_a_thread_until_their_request_comes_or_the_claim_lapses() {
        let start = Instant::now();
        let tick = Duration::from_secs(1);
        let mut admission = Admission::new(2, 10);
        admission.load = load(2, 0, 0);
        admission.claim(1, start);
        assert_eq!(admission.batch(), 1, "one place left");
        admission.claim(2, start);
        assert!(
            !admission.decide(start, false),
            "both threads claimed: a burst waits for the other workers"
        );
        assert_eq!(
            admission.busy(),
            0,
            "a claim is not work: status shows none"
        );
        // The first connection's request is handed over: it counts as work, not as a claim.
        admission.load = load(2, 1, 0);
        admission.unclaim(1);
        assert!(!admission.pool_has_room());
        // The other one never said anything: its claim lapses, and the loop wakes for it.
        let later = start + CLAIM_FOR / 2;
        assert_eq!(admission.wait(later, tick), CLAIM_FOR / 2);
        assert!(!admission.expire_claims(later));
        assert!(admission.expire_claims(start + CLAIM_FOR));
        assert!(admission.decide(start + CLAIM_FOR, false));
        // A connection closed before its request holds nothing either.
        admission.claim(3, later);
        admission.unclaim(3);
        assert!(admission.pool_has_room());
    }

    #[test]
    fn a_listener_left_with_connections_is_taken_again_without_sleeping_but_not_when_full() {
        let start = Instant::now();
        let tick = Duration::from_secs(1);
        let mut admission = Admission::new(2, 10);
        assert!(admission.decide(start, false));
        admission.set_more_waiting(true);
        assert_eq!(admission.wait(start, tick), Duration::ZERO);
        assert!(admission.take_more_waiting());
        assert!(!admission.take_more_waiting(), "taken once");
        assert_eq!(admission.wait(start, tick), tick);
        // Full: the connections wait for the nudge, never a busy loop.
        admission.set_more_waiting(true);
        admission.load = load(2, 2, 0);
        assert!(!admission.decide(start, false));
        assert_eq!(admission.wait(start, tick), ACCEPT_NUDGE);
        assert!(!admission.take_more_waiting());
    }

    #[test]
    fn a_full_worker_remembers_since_when_and_forgets_once_it_has_room() {
        let start = Instant::now();
        let mut admission = Admission::new(1, 10);
        admission.load = load(1, 1, 0);
        assert!(!admission.decide(start, false));
        assert_eq!(admission.paused_since, Some(start));
        assert!(!admission.decide(start + Duration::from_millis(30), false));
        assert_eq!(
            admission.paused_since,
            Some(start),
            "still full: the first moment"
        );
        admission.load = load(1, 0, 0);
        assert!(admission.decide(start + Duration::from_millis(40), false));
        assert_eq!(admission.paused_since, None);
    }

    #[test]
    fn a_full_worker_takes_one_connection_per_nudge_below_its_limit_or_with_an_idle_one() {
        let start = Instant::now();
        let ms = Duration::from_millis;
        // (full since, live, idle to spare, now after start) -> (nudged, full since after)
        let table = [
            (None, 1, false, ms(100), false, None),
            (Some(ms(0)), 1, false, ms(49), false, Some(ms(0))),
            (Some(ms(0)), 1, false, ms(50), true, Some(ms(50))),
            (Some(ms(10)), 1, false, ms(70), true, Some(ms(70))),
            (Some(ms(0)), 10, false, ms(500), false, Some(ms(500))),
            (Some(ms(0)), 10, true, ms(500), true, Some(ms(500))),
            (Some(ms(0)), 9, false, ms(500), true, Some(ms(500))),
        ];
        for (since, live, idle, now, nudged, after) in table {
            let mut admission = Admission::new(1, 10);
            admission.load = load(live, 1, 0);
            admission.paused_since = since.map(|at| start + at);
            assert_eq!(
                admission.nudge_due(start + now),
                since.is_some() && now >= since.unwrap() + ACCEPT_NUDGE
            );
            assert_eq!(
                admission.nudge(start + now, idle),
                nudged,
                "{since:?} {live} {now:?}"
            );
            assert_eq!(admission.paused_since, after.map(|at| start + at));
        }
    }

    #[test]
    fn a_worker_at_its_limit_with_none_idle_looks_again_a_nudge_later_without_a_busy_loop() {
        let start = Instant::now();
        let mut admission = Admission::new(4, 10);
        admission.load = load(10, 4, 0);
        assert!(!admission.decide(start, false));
        let due = start + ACCEPT_NUDGE;
        assert_eq!(admission.wait(due, Duration::from_secs(1)), Duration::ZERO);
        assert!(!admission.nudge(due, false));
        assert_eq!(admission.wait(due, Duration::from_secs(1)), ACCEPT_NUDGE);
    }

    #[test]
    fn the_loop_wakes_in_time_for_the_next_nudge() {
        let start = Instant::now();
        let ms = Duration::from_millis;
        let mut admission = Admission::new(1, 10);
        assert_eq!(admission.wait(start, ms(1000)), ms(1000));
        admission.paused_since = Some(start);
        assert_eq!(admission.wait(start + ms(20), ms(1000)), ms(30));
        assert_eq!(admission.wait(start + ms(20), ms(10)), ms(10));
        assert_eq!(admission.wait(start + ms(80), ms(1000)), Duration::ZERO);
    }

    #[test]
    fn a_worker_takes_a_connection_unless_another_taking_connections_holds_fewer() {
        // (threads, connections held, the fewest another worker taking connections holds)
        // -> defers.
        let table = [
            (4, 0, None, false),
            (4, 3, None, false),
            (4, 0, Some(0), false),
            (4, 2, Some(2), false),
            (4, 1, Some(3), false),
            (4, 1, Some(0), true),
            (4, 3, Some(2), true),
            // As many connections as threads, or more: the requests queue wherever they go.
            (4, 4, Some(3), false),
            (4, 100, Some(0), false),
            // A concurrent application's hundreds of places: compared up to a batch.
            (1000, 15, Some(14), true),
            (1000, 16, Some(0), false),
        ];
        for (threads, live, fewest, defers) in table {
            let start = Instant::now();
            let mut admission = Admission::new(threads, 1000);
            admission.load = load(live, 0, 0);
            assert_eq!(
                admission.defers(start, || fewest),
                defers,
                "{threads} {live} {fewest:?}"
            );
            let spread = if defers {
                Spread::Deferred(start + SPREAD_DEFER)
            } else {
                Spread::Even
            };
            assert_eq!(admission.spread, spread, "{threads} {live} {fewest:?}");
        }
    }

    #[test]
    fn a_deferral_delays_one_connection_by_its_length_and_no_more() {
        let start = Instant::now();
        let tick = Duration::from_secs(1);
        let asked = std::cell::Cell::new(0);
        let fewer = || {
            asked.set(asked.get() + 1);
            Some(0)
        };
        let mut admission = Admission::new(4, 100);
        admission.load = load(1, 0, 0);
        assert!(admission.defers(start, fewer));
        // While it lasts, each readiness compares again; its end does not move.
        let half = start + SPREAD_DEFER / 2;
        assert!(admission.defers(half, fewer));
        assert_eq!(asked.get(), 2);
        assert_eq!(admission.spread, Spread::Deferred(start + SPREAD_DEFER));
        assert_eq!(
            admission.wait(half, tick),
            SPREAD_DEFER / 2,
            "wakes at its end"
        );
        assert!(!admission.deferral_over(half));
        // Over: the loop looks at the listeners once, and takes one whatever the others hold.
        let end = start + SPREAD_DEFER;
        assert_eq!(admission.wait(end, tick), Duration::ZERO);
        assert!(admission.deferral_over(end));
        assert!(!admission.deferral_over(end), "once");
        assert_eq!(
            admission.wait(end, tick),
            tick,
            "no busy loop on a listener left"
        );
        assert!(!admission.defers(end, fewer));
        assert_eq!(asked.get(), 2, "taken without looking");
        // A second listener in the same pass (the first had none): it takes, too.
        assert!(!admission.defers(end, fewer));
        assert_eq!(asked.get(), 2);
        assert_eq!(admission.wait(end, tick), tick, "no new deferral");
        // Once one is taken, the next compares again.
        admission.claim(7, end);
        assert!(admission.defers(end, fewer));
        assert_eq!(asked.get(), 3);
        // An event after the end, before the loop looked, takes one as well.
        let later = end + SPREAD_DEFER;
        assert!(!admission.defers(later, fewer));
        assert_eq!(asked.get(), 3);
    }

    #[test]
    fn connections_that_carry_one_request_each_are_not_spread() {
        let start = Instant::now();
        let mut admission = Admission::new(4, 1000);
        admission.load = load(4 * REUSE_WINDOW as usize + 10, 0, 0);
        let spreads = |admission: &Admission, at| {
            let mut probe = Admission::new(4, 1000);
            probe.reuse = admission.reuse;
            probe.load = load(1, 0, 0);
            probe.spreads(at)
        };
        assert!(spreads(&admission, start), "at first, as if kept alive");
        // A window of connections that closed after one request each.
        for conn in 0..REUSE_WINDOW as usize - 1 {
            admission.closed(conn, 1, start);
        }
        assert!(spreads(&admission, start), "the window is not whole yet");
        admission.closed(99, 1, start);
        assert!(!spreads(&admission, start));
        assert!(!spreads(&admission, start + REUSE_QUIET / 2));
        // None closed for a while: the connections open are kept.
        assert!(spreads(&admission, start + REUSE_QUIET));
        // Two requests a connection on average (one long-lived counts up to the cap).
        for conn in 0..REUSE_WINDOW as usize - 1 {
            admission.closed(conn, 1, start);
        }
        admission.closed(99, 1000, start);
        assert!(
            !spreads(&admission, start),
            "63 + 16 requests for 64 connections"
        );
        for conn in 0..REUSE_WINDOW as usize {
            admission.closed(conn, 2, start);
        }
        assert!(spreads(&admission, start), "two each");
        // Health checks (connections that carried nothing) count for nothing.
        for conn in 0..REUSE_WINDOW as usize {
            admission.closed(conn, 0, start + REUSE_QUIET);
        }
        assert!(spreads(&admission, start), "the verdict stands");
        assert_eq!(admission.reuse.closed, 0);
        assert_eq!(admission.load.live, 10, "each close counted");
    }

    #[test]
    fn a_deferring_worker_that_has_become_the_least_loaded_takes_at_once() {
        // Every worker that deferred on one connection would otherwise sit out the deferral
        // on the next ones too, while the one that took it defers in its turn: nobody would
        // take connections for the length of a deferral, at every connection.
        let start = Instant::now();
        let mut admission = Admission::new(4, 100);
        admission.load = load(2, 0, 0);
        assert!(admission.defers(start, || Some(1)));
        let soon = start + SPREAD_DEFER / 4;
        assert!(!admission.defers(soon, || Some(2)), "a tie: it takes");
        assert_eq!(admission.spread, Spread::Even);
        assert!(
            !admission.deferral_over(start + SPREAD_DEFER),
            "no deferral left"
        );
        assert!(admission.defers(soon, || Some(0)));
        assert!(
            !admission.defers(soon, || None),
            "the others stopped taking any"
        );
    }

    #[test]
    fn a_worker_that_stops_taking_connections_forgets_its_deferral() {
        let start = Instant::now();
        let tick = Duration::from_secs(1);
        let end = start + SPREAD_DEFER;
        // (how it stops) for a worker deferring, then for one whose deferral just ran out.
        let stops: [fn(&mut Admission); 3] = [
            |a| {
                a.load = load(4, 4, 0);
                assert!(!a.decide(Instant::now(), false), "full");
            },
            |a| a.back_off(Instant::now()),
            Admission::stand_down,
        ];
        for stop in stops {
            for over in [false, true] {
                let mut admission = Admission::new(4, 100);
                admission.load = load(1, 0, 0);
                assert!(admission.defers(start, || Some(0)));
                if over {
                    assert!(admission.deferral_over(end));
                }
                stop(&mut admission);
                assert_eq!(admission.spread, Spread::Even);
                assert!(!admission.deferral_over(end));
                assert!(
                    admission.wait(start, tick) > SPREAD_DEFER,
                    "no wake-up for it"
                );
            }
        }
    }

    #[test]
    fn out_of_descriptors_stops_accepting_and_nudging_for_a_while_without_a_busy_loop() {
        let start = Instant::now();
        let ms = Duration::from_millis;
        let tick = ms(1000);
        let mut admission = Admission::new(4, 10);
        admission.paused_since = Some(start);
        admission.set_more_waiting(true);
        admission.back_off(start);
        // No wake-up of its own: the sweep, every tick, turns accepting back on.
        assert_eq!(admission.wait(start + ms(100), tick), tick);
        assert!(!admission.nudge_due(start + ms(100)));
        assert!(!admission.nudge(start + ms(100), true));
        assert!(!admission.decide(start + ms(100), false));
        assert_eq!(
            admission.wait(start + ms(200), tick),
            tick,
            "still no nudge"
        );
        assert!(admission.decide(start + ACCEPT_BACKOFF, false), "resumes");
        assert_eq!(admission.backoff_until, None);
    }
}
