//! When a worker takes connections from the shared listeners: the counts that make it full,
//! and the decision, kept free of I/O so the policy can be read (and tested) as a table.
//!
//! A worker takes connections only while there is room in its pool and it holds fewer than
//! `max_connections`; otherwise they wait in the kernel's queue for a worker that has room. A
//! full worker still takes one waiting connection every [`ACCEPT_NUDGE`], so that when every
//! worker is full the queued connections are not starved by the accepted keep-alive clients.

use std::time::{Duration, Instant};

/// How long a full worker leaves connections in the kernel's queue before it takes one
/// anyway (see [`Admission::nudge`]).
pub(super) const ACCEPT_NUDGE: Duration = Duration::from_millis(50);

/// What a worker holds, as far as taking more is concerned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Load {
    /// Open connections.
    pub(super) live: usize,
    /// Connections accepted that have not yet handed a request to the pool.
    pub(super) fresh: usize,
    /// Requests with the pool.
    pub(super) in_flight: usize,
    /// "Next chunk" jobs with the pool.
    pub(super) pulls: usize,
}

/// A worker's load and limits, and since when it has been full.
#[derive(Debug)]
pub(super) struct Admission {
    pub(super) load: Load,
    threads: usize,
    max_connections: usize,
    /// Since when the worker has been too full to take connections.
    paused_since: Option<Instant>,
}

impl Admission {
    /// An empty worker with `threads` pool threads and at most `max_connections`.
    pub(super) fn new(threads: usize, max_connections: usize) -> Admission {
        Admission {
            load: Load::default(),
            threads,
            max_connections,
            paused_since: None,
        }
    }

    /// Jobs with the pool: requests and chunk pulls.
    pub(super) fn busy(&self) -> usize {
        self.load.in_flight + self.load.pulls
    }

    /// Whether there is room for another connection. One accepted but not yet sent to the
    /// pool counts as work to come, so a worker that woke first cannot take a whole burst while
    /// others have idle threads.
    fn has_room(&self) -> bool {
        self.busy() + self.load.fresh < self.threads && self.load.live < self.max_connections
    }

    /// Decides, for a running worker whose load changed, whether it takes connections, and
    /// notes since when it has been full.
    pub(super) fn decide(&mut self, now: Instant) -> bool {
        let room = self.has_room();
        if room {
            self.paused_since = None;
        } else if self.paused_since.is_none() {
            self.paused_since = Some(now);
        }
        room
    }

    /// Whether a full, running worker takes one waiting connection now: every
    /// [`ACCEPT_NUDGE`] while full, unless it holds `max_connections`. Accepted, the
    /// connection's requests queue fairly in the pool with everyone else's.
    pub(super) fn nudge(&mut self, now: Instant) -> bool {
        let Some(since) = self.paused_since else {
            return false;
        };
        if now.duration_since(since) < ACCEPT_NUDGE || self.load.live >= self.max_connections {
            return false;
        }
        self.paused_since = Some(now);
        true
    }

    /// How long the loop may sleep at `now`: `tick`, or less when a nudge is due sooner.
    pub(super) fn wait(&self, now: Instant, tick: Duration) -> Duration {
        match self.paused_since {
            Some(since) => ACCEPT_NUDGE
                .saturating_sub(now.duration_since(since))
                .min(tick),
            None => tick,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(live: usize, fresh: usize, in_flight: usize, pulls: usize) -> Load {
        Load {
            live,
            fresh,
            in_flight,
            pulls,
        }
    }

    #[test]
    fn a_worker_takes_connections_while_its_pool_and_connection_limit_have_room() {
        // 4 threads, at most 10 connections.
        let table = [
            (load(0, 0, 0, 0), true),
            (load(3, 0, 3, 0), true),
            (load(4, 0, 4, 0), false),
            (load(4, 0, 2, 2), false),
            (load(4, 1, 3, 0), false),
            (load(4, 4, 0, 0), false),
            (load(9, 3, 0, 0), true),
            (load(10, 0, 0, 0), false),
            (load(10, 0, 1, 0), false),
            (load(12, 0, 0, 0), false),
        ];
        for (load, room) in table {
            let mut admission = Admission::new(4, 10);
            admission.load = load;
            assert_eq!(admission.has_room(), room, "{load:?}");
            assert_eq!(admission.decide(Instant::now()), room, "{load:?}");
        }
    }

    #[test]
    fn a_full_worker_remembers_since_when_and_forgets_once_it_has_room() {
        let start = Instant::now();
        let mut admission = Admission::new(1, 10);
        admission.load = load(1, 1, 0, 0);
        assert!(!admission.decide(start));
        assert_eq!(admission.paused_since, Some(start));
        assert!(!admission.decide(start + Duration::from_millis(30)));
        assert_eq!(
            admission.paused_since,
            Some(start),
            "still full: the first moment"
        );
        admission.load = load(1, 0, 0, 0);
        assert!(admission.decide(start + Duration::from_millis(40)));
        assert_eq!(admission.paused_since, None);
    }

    #[test]
    fn a_full_worker_takes_one_connection_per_nudge_below_its_connection_limit() {
        let start = Instant::now();
        let ms = Duration::from_millis;
        // (full since, live, now after start) -> (nudged, full since after)
        let table = [
            (None, 1, ms(100), false, None),
            (Some(ms(0)), 1, ms(49), false, Some(ms(0))),
            (Some(ms(0)), 1, ms(50), true, Some(ms(50))),
            (Some(ms(10)), 1, ms(70), true, Some(ms(70))),
            (Some(ms(0)), 10, ms(500), false, Some(ms(0))),
            (Some(ms(0)), 9, ms(500), true, Some(ms(500))),
        ];
        for (since, live, now, nudged, after) in table {
            let mut admission = Admission::new(1, 10);
            admission.load = load(live, 1, 0, 0);
            admission.paused_since = since.map(|at| start + at);
            assert_eq!(
                admission.nudge(start + now),
                nudged,
                "{since:?} {live} {now:?}"
            );
            assert_eq!(admission.paused_since, after.map(|at| start + at));
        }
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
}
