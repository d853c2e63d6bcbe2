//! Whether a worker keeps up, from readings of its counters the master takes about once a
//! second: what it did over the last seconds ([`History`], [`Recent`]), and when its requests
//! have waited too long for long enough to say so ([`Episode`], [`Notice`]). Pure: the master
//! reads the scoreboard and the clock, and logs what these return.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::protocol::scoreboard::QueueWait;

/// The span "recent" covers: `tine status` shows requests per second and the queue wait's
/// p90 over about this long, and the warning judges the p90 over it.
pub const WINDOW: Duration = Duration::from_secs(5);

/// A span shorter than this says too little to show a rate or a p90 for.
const SHORTEST: Duration = Duration::from_millis(500);

/// The most readings a history keeps, whatever the master's pace.
const MAX_READINGS: usize = 64;

/// The quantile shown.
const P90: f64 = 0.9;

/// The share of waits, in percent, that must have exceeded the threshold for a warning: the
/// same 90th percentile, judged by bucket lower bounds rather than interpolated.
const WARN_PERCENT: u64 = 10;

/// One reading of a worker's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// When it was taken.
    pub at: Instant,
    /// Requests answered so far.
    pub requests: u64,
    /// Queue waits counted so far.
    pub queue_wait: QueueWait,
}

/// What a worker did over a recent span: the difference between two readings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recent {
    /// How long the span is.
    pub span: Duration,
    /// Requests answered in it.
    pub requests: u64,
    /// Queue waits of the requests taken up in it.
    pub queue_wait: QueueWait,
}

impl Recent {
    /// From `older` to `newer`; `None` when the span is too short to tell.
    pub fn between(older: &Reading, newer: &Reading) -> Option<Recent> {
        let span = newer.at.checked_duration_since(older.at)?;
        (span >= SHORTEST).then(|| Recent {
            span,
            // A count that went down started again (another process).
            requests: newer
                .requests
                .checked_sub(older.requests)
                .unwrap_or(newer.requests),
            queue_wait: newer.queue_wait.since(&older.queue_wait),
        })
    }

    /// Requests answered per second.
    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.span.as_secs_f64()
    }

    /// The 90th percentile of the queue waits; `None` when no request was taken up.
    pub fn p90(&self) -> Option<Duration> {
        self.queue_wait.quantile(P90)
    }

    /// A wait that at least 10 % of the waits exceeded, by bucket lower bounds: what the
    /// warning judges ([`QueueWait::floor`]); `None` when no request was taken up.
    pub fn p90_floor(&self) -> Option<Duration> {
        self.queue_wait.floor(WARN_PERCENT)
    }
}

/// The p90 of the queue waits of several workers' recent spans taken together.
pub fn p90_of<'a>(recent: impl IntoIterator<Item = &'a Recent>) -> Option<Duration> {
    let mut all = QueueWait::default();
    for recent in recent {
        all.add(&recent.queue_wait);
    }
    all.quantile(P90)
}

/// A worker's readings over the last [`WINDOW`] and a little more.
#[derive(Debug, Clone, Default)]
pub struct History {
    readings: VecDeque<Reading>,
}

impl History {
    /// Adds the newest reading, and forgets those no longer needed: the oldest kept is the
    /// newest that is at least [`WINDOW`] old.
    pub fn push(&mut self, reading: Reading) {
        self.readings.push_back(reading);
        while self.readings.len() > MAX_READINGS
            || self
                .readings
                .get(1)
                .is_some_and(|next| reading.at.saturating_duration_since(next.at) >= WINDOW)
        {
            self.readings.pop_front();
        }
    }

    /// What happened from the oldest reading kept to `now`.
    pub fn recent(&self, now: &Reading) -> Option<Recent> {
        Recent::between(self.readings.front()?, now)
    }
}

/// When requests are said to wait too long: `[server] queue_wait_warning` and
/// `queue_wait_warning_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WarnWhen {
    /// Too long, when at least 10 % of the waits were in buckets whose lower bound is at
    /// least this; zero is off.
    pub threshold: Duration,
    /// For at least this long; zero is off.
    pub after: Duration,
}

impl WarnWhen {
    /// Whether the warning is off.
    pub fn off(&self) -> bool {
        self.threshold.is_zero() || self.after.is_zero()
    }
}

/// What the master sees of a worker at one reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    /// When.
    pub at: Instant,
    /// The p90 of the queue waits over the recent span; `None` when no request was taken up.
    pub p90: Option<Duration>,
    /// What at least 10 % of those waits exceeded ([`Recent::p90_floor`]).
    pub floor: Option<Duration>,
    /// Requests with its application now.
    pub busy: u64,
    /// Its pool threads; 0 for a concurrent (ASGI) application.
    pub threads: u64,
    /// How many requests it runs at once: its threads, or `[app] max_concurrency`.
    pub capacity: u64,
    /// Connections waiting in the TCP listeners' accept queues (shared by every worker), as
    /// /proc/net/tcp shows them; 0 when not read.
    pub accept_queue: u64,
}

impl Observation {
    fn all_busy(&self) -> bool {
        self.threads > 0 && self.busy >= self.threads
    }

    /// Whether it runs all the requests it can.
    pub fn full(&self) -> bool {
        self.capacity > 0 && self.busy >= self.capacity
    }

    /// The connections waiting to be accepted while it is full: clients that open a
    /// connection per request wait there, unseen by the queue-wait histogram.
    fn backlog(&self) -> u64 {
        if self.full() { self.accept_queue } else { 0 }
    }
}

/// Where a worker stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Stand {
    /// Its requests do not wait long.
    #[default]
    Calm,
    /// They have waited too long since `since`, not yet for long enough to say so.
    Waiting {
        since: Instant,
        /// Every thread was busy at every reading since.
        all_busy: bool,
    },
    /// It was said.
    Warned { since: Instant },
}

/// One worker's episodes of waiting: a warning once one has lasted
/// [`WarnWhen::after`], and a word when it ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Episode {
    stand: Stand,
}

/// What to log about a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// Its requests have waited too long for `lasted` (a warning).
    Saturated {
        /// How long, so far.
        lasted: Duration,
        /// What at least 10 % of the recent waits exceeded ([`Recent::p90_floor`]), when that
        /// was past the threshold.
        floor: Option<Duration>,
        /// Connections waiting to be accepted while it was full; 0 when there were none.
        backlog: u64,
        /// Its pool threads; 0 for a concurrent application.
        threads: u64,
        /// Every thread was busy at every reading of the episode.
        all_busy: bool,
    },
    /// The episode a warning was about is over.
    Relieved {
        /// How long it lasted.
        lasted: Duration,
        /// The p90 now, if any request was taken up.
        p90: Option<Duration>,
        /// Its pool threads; 0 for a concurrent application.
        threads: u64,
    },
}

impl Episode {
    /// Takes in a reading; says what to log, if anything: one warning per episode, once it
    /// has lasted `when.after`, and one notice when a warned episode ends.
    ///
    /// At least 10 % of the span's waits past the threshold by their buckets' lower bounds,
    /// or connections in the accept queue while the worker is full, continues an episode;
    /// neither ends it. No request taken up over the span ends it when the worker runs fewer
    /// requests than it can (a thread is free, or an ASGI application is under
    /// `max_concurrency`, idle included: nothing waits), and changes nothing when it is full
    /// with no connection waiting: the queue may be stuck behind long requests.
    pub fn observe(&mut self, seen: Observation, when: WarnWhen) -> Option<Notice> {
        if when.off() {
            self.stand = Stand::Calm;
            return None;
        }
        let waits_over = seen.floor.map(|floor| floor >= when.threshold);
        let over = match waits_over {
            _ if seen.backlog() > 0 => true,
            Some(over) => over,
            None if !seen.full() => false,
            None => return None,
        };
        match (self.stand, over) {
            (Stand::Calm, true) => {
                self.stand = Stand::Waiting {
                    since: seen.at,
                    all_busy: seen.all_busy(),
                };
                // Sustained means seen again at a later reading.
                None
            }
            (Stand::Waiting { since, all_busy }, true) => {
                let all_busy = all_busy && seen.all_busy();
                let lasted = seen.at.saturating_duration_since(since);
                if lasted < when.after {
                    self.stand = Stand::Waiting { since, all_busy };
                    return None;
                }
                self.stand = Stand::Warned { since };
                Some(Notice::Saturated {
                    lasted,
                    floor: seen.floor.filter(|_| waits_over == Some(true)),
                    backlog: seen.backlog(),
                    threads: seen.threads,
                    all_busy,
                })
            }
            (Stand::Warned { .. }, true) | (Stand::Calm, false) => None,
            (Stand::Waiting { .. }, false) => {
                self.stand = Stand::Calm;
                None
            }
            (Stand::Warned { since }, false) => {
                self.stand = Stand::Calm;
                Some(Notice::Relieved {
                    lasted: seen.at.saturating_duration_since(since),
                    p90: seen.p90,
                    threads: seen.threads,
                })
            }
        }
    }
}

impl Notice {
    /// The log line, for the worker in `slot`.
    pub fn message(&self, slot: usize) -> String {
        match *self {
            Notice::Saturated {
                lasted,
                floor,
                backlog,
                threads,
                all_busy,
            } => {
                let mut why = Vec::new();
                if let Some(floor) = floor {
                    why.push(format!("requests waited {} or more at p90", spoken(floor)));
                }
                if backlog > 0 {
                    let s = if backlog == 1 { "" } else { "s" };
                    why.push(format!("{backlog} connection{s} waiting to be accepted"));
                }
                let why = why.join(", ");
                let lasted = spoken(lasted);
                if threads == 0 {
                    format!(
                        "worker {slot}: {why} for {lasted} — consider more workers, a higher \
                         max_concurrency, or look for blocking calls in async code"
                    )
                } else if all_busy {
                    let busy = if threads == 1 {
                        "its one thread".to_owned()
                    } else {
                        format!("all {threads} threads")
                    };
                    format!(
                        "worker {slot}: {busy} busy for {lasted}; {why} — consider more threads \
                         or workers"
                    )
                } else {
                    format!(
                        "worker {slot}: {why} for {lasted} ({threads} threads) — consider more \
                         threads or workers"
                    )
                }
            }
            Notice::Relieved {
                lasted,
                p90: Some(p90),
                ..
            } => format!(
                "worker {slot}: requests no longer wait long ({} at p90 over the last {}), \
                 after {}",
                spoken(p90),
                spoken(WINDOW),
                spoken(lasted)
            ),
            Notice::Relieved {
                lasted,
                p90: None,
                threads,
            } => format!(
                "worker {slot}: requests no longer wait ({}), after {}",
                if threads > 0 {
                    "a thread is free"
                } else {
                    "it runs fewer than max_concurrency"
                },
                spoken(lasted)
            ),
        }
    }
}

/// `180 ms`, `2.5 s`, `30 s`: for a log line.
fn spoken(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else if d < Duration::from_secs(10) {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{} s", d.as_secs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::scoreboard::QueueWaits;

    /// `count` waits in `bucket`, each at its bound.
    fn waits(bucket: usize, count: u64) -> QueueWait {
        QueueWait::at_bound(bucket, count)
    }

    fn reading(start: Instant, ms: u64, requests: u64, queue_wait: QueueWait) -> Reading {
        Reading {
            at: start + Duration::from_millis(ms),
            requests,
            queue_wait,
        }
    }

    #[test]
    fn recent_is_the_difference_over_the_last_seconds() {
        let start = Instant::now();
        let mut history = History::default();
        assert_eq!(history.recent(&reading(start, 0, 0, waits(0, 0))), None);
        // A reading a second, 10 requests a second, the later ones waiting longer.
        for second in 0..=10u64 {
            let bucket = if second < 6 { 0 } else { 8 };
            let mut counted = waits(0, 10 * second.min(6));
            counted.add(&waits(bucket, 10 * second.saturating_sub(6)));
            history.push(reading(start, second * 1000, 10 * second, counted));
        }
        assert!(history.readings.len() <= 6, "{:?}", history.readings.len());
        let now = *history.readings.back().unwrap();
        let recent = history.recent(&now).unwrap();
        assert_eq!(
            recent.span, WINDOW,
            "from the reading 5 s before the newest"
        );
        assert_eq!(recent.requests, 50);
        assert_eq!(recent.per_second(), 10.0);
        // Seconds 5 to 10: ten fast waits, then forty in (100 ms, 250 ms].
        assert_eq!(recent.queue_wait.count(), 50);
        assert_eq!(recent.p90(), Some(Duration::from_micros(231_250)));
        // Too short a span says nothing.
        let mut fresh = History::default();
        fresh.push(reading(start, 0, 0, waits(0, 0)));
        assert_eq!(fresh.recent(&reading(start, 100, 5, waits(0, 5))), None);
        let recent = fresh.recent(&reading(start, 500, 5, waits(0, 5))).unwrap();
        assert_eq!((recent.requests, recent.per_second()), (5, 10.0));
    }

    #[test]
    fn a_history_stays_bounded_whatever_the_pace() {
        let start = Instant::now();
        let mut history = History::default();
        for ms in 0..1000 {
            history.push(reading(start, ms, ms, waits(0, ms)));
        }
        assert_eq!(history.readings.len(), MAX_READINGS);
    }

    #[test]
    fn p90_of_several_workers_counts_their_waits_together() {
        let recent = |queue_wait| Recent {
            span: WINDOW,
            requests: 0,
            queue_wait,
        };
        let slow = recent(waits(8, 10));
        let fast = recent(waits(0, 90));
        assert_eq!(p90_of([&slow, &fast]), Some(Duration::from_micros(500)));
        assert_eq!(p90_of([&slow]), Some(Duration::from_micros(235_000)));
        assert_eq!(p90_of([]), None);
    }

    const WHEN: WarnWhen = WarnWhen {
        threshold: Duration::from_millis(100),
        after: Duration::from_secs(3),
    };

    /// Feeds `episode` one observation a second from `start`, each `(p90 in ms, busy)` (the
    /// p90 taken as its floor too), with four threads; returns what it said, by second.
    fn feed(
        episode: &mut Episode,
        start: Instant,
        seconds: std::ops::Range<u64>,
        seen: impl Fn(u64) -> (Option<u64>, u64),
    ) -> Vec<(u64, Notice)> {
        seconds
            .filter_map(|second| {
                let (p90, busy) = seen(second);
                let observation = Observation {
                    at: start + Duration::from_secs(second),
                    p90: p90.map(Duration::from_millis),
                    floor: p90.map(Duration::from_millis),
                    busy,
                    threads: 4,
                    capacity: 4,
                    accept_queue: 0,
                };
                episode.observe(observation, WHEN).map(|n| (second, n))
            })
            .collect()
    }

    #[test]
    fn one_warning_per_episode_once_it_lasted_and_one_word_when_it_ends() {
        let start = Instant::now();
        let mut episode = Episode::default();
        // Calm, then waiting from second 2 to 9, then calm again.
        let said = feed(&mut episode, start, 0..14, |s| match s {
            2..=9 => (Some(180), 4),
            _ => (Some(3), 1),
        });
        assert_eq!(
            said,
            [
                (
                    5,
                    Notice::Saturated {
                        lasted: Duration::from_secs(3),
                        floor: Some(Duration::from_millis(180)),
                        backlog: 0,
                        threads: 4,
                        all_busy: true,
                    }
                ),
                (
                    10,
                    Notice::Relieved {
                        lasted: Duration::from_secs(8),
                        p90: Some(Duration::from_millis(3)),
                        threads: 4,
                    }
                ),
            ]
        );
        assert_eq!(
            said[0].1.message(3),
            "worker 3: all 4 threads busy for 3.0 s; requests waited 180 ms or more at p90 — \
             consider more threads or workers"
        );
        assert_eq!(
            said[1].1.message(3),
            "worker 3: requests no longer wait long (3 ms at p90 over the last 5.0 s), after \
             8.0 s"
        );
    }

    #[test]
    fn an_episode_shorter_than_after_is_not_told() {
        let start = Instant::now();
        let mut episode = Episode::default();
        // Over for three readings (two seconds), under, over again for two: never three
        // seconds in a row.
        let said = feed(&mut episode, start, 0..10, |s| match s {
            1..=3 | 5..=6 => (Some(500), 4),
            _ => (Some(50), 4),
        });
        assert_eq!(said, []);
        assert_eq!(episode, Episode::default());
    }

    #[test]
    fn a_stuck_queue_neither_starts_nor_ends_an_episode_and_a_free_thread_ends_it() {
        let start = Instant::now();
        let mut episode = Episode::default();
        // Nothing taken up while every thread is busy: no news either way.
        assert_eq!(feed(&mut episode, start, 0..5, |_| (None, 4)), []);
        assert_eq!(episode, Episode::default());
        let said = feed(&mut episode, start, 5..20, |s| match s {
            5..=8 => (Some(150), 4),
            9..=14 => (None, 6),
            _ => (None, 2),
        });
        let seconds: Vec<u64> = said.iter().map(|(s, _)| *s).collect();
        assert_eq!(seconds, [8, 15], "{said:?}");
        assert_eq!(
            said[1].1,
            Notice::Relieved {
                lasted: Duration::from_secs(10),
                p90: None,
                threads: 4,
            }
        );
        assert!(said[1].1.message(1).contains("a thread is free"));
        let one = Notice::Saturated {
            lasted: Duration::from_secs(2),
            floor: Some(Duration::from_millis(300)),
            backlog: 0,
            threads: 1,
            all_busy: true,
        };
        assert!(
            one.message(1).starts_with(
                "worker 1: its one thread busy for 2.0 s; requests waited 300 ms or more"
            ),
            "{}",
            one.message(1)
        );
    }

    #[test]
    fn the_warning_says_whether_every_thread_was_busy_or_the_event_loop_was_late() {
        let start = Instant::now();
        let mut episode = Episode::default();
        let said = feed(&mut episode, start, 0..4, |s| (Some(2500), 3 + s % 2));
        let [(3, notice)] = said[..] else {
            panic!("{said:?}");
        };
        assert_eq!(
            notice.message(2),
            "worker 2: requests waited 2.5 s or more at p90 for 3.0 s (4 threads) — consider \
             more threads or workers"
        );
        let asgi = Notice::Saturated {
            lasted: Duration::from_secs(45),
            floor: Some(Duration::from_millis(300)),
            backlog: 0,
            threads: 0,
            all_busy: false,
        };
        assert!(
            asgi.message(1).starts_with(
                "worker 1: requests waited 300 ms or more at p90 for 45 s — consider more workers"
            ),
            "{}",
            asgi.message(1)
        );
    }

    /// Feeds a fresh history and `episode`, over `seconds`, a hundred waits of `wait_ms` a
    /// second, as the master reads them; returns what it said and the p90s it showed.
    fn waits_of(
        episode: &mut Episode,
        when: WarnWhen,
        seconds: u64,
        wait_ms: u64,
    ) -> (Vec<Notice>, Vec<Duration>) {
        let start = Instant::now();
        let mut history = History::default();
        let counted = QueueWaits::new();
        let (mut said, mut shown) = (Vec::new(), Vec::new());
        for second in 0..seconds {
            for _ in 0..100 {
                counted.record(Duration::from_millis(wait_ms));
            }
            let now = reading(start, second * 1000, 100 * second, counted.read());
            let recent = history.recent(&now);
            history.push(now);
            let seen = Observation {
                at: now.at,
                p90: recent.and_then(|r| r.p90()),
                floor: recent.and_then(|r| r.p90_floor()),
                busy: 4,
                threads: 4,
                capacity: 4,
                accept_queue: 0,
            };
            shown.extend(seen.p90);
            said.extend(episode.observe(seen, when));
        }
        (said, shown)
    }

    #[test]
    fn the_warning_judges_bucket_lower_bounds_not_the_interpolated_p90() {
        // The reviewer's case: a hundred waits of 120 ms a second (all in (100 ms, 250 ms],
        // an interpolated p90 of 235 ms) never reached a 200 ms threshold.
        let when = WarnWhen {
            threshold: Duration::from_millis(200),
            ..WHEN
        };
        let mut episode = Episode::default();
        let (said, shown) = waits_of(&mut episode, when, 20, 120);
        assert_eq!(said, []);
        assert!(
            !shown.is_empty() && shown.iter().all(|p90| *p90 > when.threshold),
            "the p90 shown is still the interpolated one: {shown:?}"
        );
        // Waits of 300 ms do warn, and say what is known: over 250 ms.
        let (said, _) = waits_of(&mut episode, when, 5, 300);
        let [notice] = said[..] else {
            panic!("{said:?}");
        };
        assert!(
            notice
                .message(1)
                .contains("requests waited 250 ms or more at p90"),
            "{}",
            notice.message(1)
        );
    }

    #[test]
    fn connections_waiting_to_be_accepted_while_every_thread_is_busy_are_saturation_too() {
        // Clients that open a connection per request: the histogram sees short waits (or
        // none), the accept queue holds the rest.
        let start = Instant::now();
        let seen = |second, floor: Option<u64>, busy, accept_queue| Observation {
            at: start + Duration::from_secs(second),
            p90: floor.map(Duration::from_millis),
            floor: floor.map(Duration::from_millis),
            busy,
            threads: 4,
            capacity: 4,
            accept_queue,
        };
        let mut episode = Episode::default();
        let mut said = Vec::new();
        for second in 0..4 {
            let floor = (second % 2 == 0).then_some(1);
            said.extend(episode.observe(seen(second, floor, 4, 7), WHEN));
        }
        let [notice] = said[..] else {
            panic!("{said:?}");
        };
        assert_eq!(
            notice.message(2),
            "worker 2: all 4 threads busy for 3.0 s; 7 connections waiting to be accepted — \
             consider more threads or workers"
        );
        // A free thread, or an empty queue, is not saturation: the episode ends.
        assert!(matches!(
            episode.observe(seen(4, Some(1), 4, 0), WHEN),
            Some(Notice::Relieved { .. })
        ));
        let mut episode = Episode::default();
        for second in 0..10 {
            assert_eq!(episode.observe(seen(second, Some(1), 3, 9), WHEN), None);
        }
        assert_eq!(episode, Episode::default());
        // Both, for an ASGI worker at max_concurrency.
        let both = Notice::Saturated {
            lasted: Duration::from_secs(30),
            floor: Some(Duration::from_millis(250)),
            backlog: 1,
            threads: 0,
            all_busy: false,
        };
        assert_eq!(
            both.message(1),
            "worker 1: requests waited 250 ms or more at p90, 1 connection waiting to be \
             accepted for 30 s — consider more workers, a higher max_concurrency, or look for \
             blocking calls in async code"
        );
    }

    #[test]
    fn an_idle_asgi_worker_ends_its_episode() {
        let start = Instant::now();
        let at = |second| start + Duration::from_secs(second);
        let asgi = |second, floor: Option<u64>, busy| Observation {
            at: at(second),
            p90: floor.map(Duration::from_millis),
            floor: floor.map(Duration::from_millis),
            busy,
            threads: 0,
            capacity: 100,
            accept_queue: 0,
        };
        let mut episode = Episode::default();
        let mut said = Vec::new();
        for second in 0..5 {
            said.extend(episode.observe(asgi(second, Some(400), 100), WHEN));
        }
        // Nothing taken up while it runs all it may: no news.
        said.extend(episode.observe(asgi(5, None, 100), WHEN));
        assert_eq!(said.len(), 1, "{said:?}");
        // Traffic stops: nothing running, nothing taken up.
        let relieved = episode.observe(asgi(6, None, 0), WHEN).unwrap();
        assert_eq!(
            relieved.message(1),
            "worker 1: requests no longer wait (it runs fewer than max_concurrency), after 6.0 s"
        );
        assert_eq!(episode, Episode::default());
        // A pool worker with every thread idle ends it too.
        let mut episode = Episode::default();
        let pool = |second, floor: Option<u64>| Observation {
            threads: 4,
            capacity: 4,
            ..asgi(second, floor, 0)
        };
        for second in 0..5 {
            episode.observe(
                Observation {
                    busy: 4,
                    ..pool(second, Some(400))
                },
                WHEN,
            );
        }
        assert!(matches!(
            episode.observe(pool(5, None), WHEN),
            Some(Notice::Relieved {
                p90: None,
                threads: 4,
                ..
            })
        ));
    }

    #[test]
    fn off_is_never_told_and_turning_it_off_forgets_the_episode() {
        let start = Instant::now();
        let mut episode = Episode::default();
        let off = WarnWhen {
            threshold: Duration::ZERO,
            ..WHEN
        };
        for second in 0..10 {
            let seen = Observation {
                at: start + Duration::from_secs(second),
                p90: Some(Duration::from_secs(5)),
                floor: Some(Duration::from_secs(5)),
                busy: 4,
                threads: 4,
                capacity: 4,
                accept_queue: 0,
            };
            assert_eq!(episode.observe(seen, off), None);
            let never = WarnWhen {
                after: Duration::ZERO,
                ..WHEN
            };
            assert_eq!(episode.observe(seen, never), None);
        }
        assert_eq!(episode, Episode::default());
    }
}
