//! The master's worker table: which slots should have a worker, which have one, and what to do
//! about the difference. Pure bookkeeping (no processes, no clock reads), so every rule is
//! unit-tested; the master feeds it events and carries out the actions it plans.

use std::time::{Duration, Instant};

/// The first wait before restarting a worker that died young; it doubles with each further
/// early death of that slot, up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait before restarting a worker that keeps dying young.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A worker that lived at least this long died of something other than a crash loop.
pub const HEALTHY_LIFETIME: Duration = Duration::from_secs(5);

/// A live worker process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerProcess {
    /// Its pid.
    pub pid: u32,
    /// Its slot in the scoreboard.
    pub board: usize,
    /// When it was forked.
    pub started: Instant,
    /// Whether it has reported that its application is built and its loop is running.
    pub ready: bool,
    /// Whether it has been told to stop, or is recycling itself.
    pub retiring: bool,
    /// When it was found hung and sent SIGABRT.
    pub aborted_at: Option<Instant>,
    /// The reload generation that started it (0 for the workers started first).
    pub generation: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Slot {
    worker: Option<WorkerProcess>,
    /// Early deaths in a row, for the restart backoff.
    early_deaths: u32,
    /// No restart before this.
    not_before: Option<Instant>,
}

/// What the master should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Fork a worker into this slot (numbered from 1).
    Spawn {
        /// The slot.
        slot: usize,
    },
    /// Tell this worker to stop gracefully: its slot is no longer wanted.
    Retire {
        /// The slot.
        slot: usize,
        /// The worker's pid.
        pid: u32,
    },
}

/// What the table learned from a child's exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Departure {
    /// The worker's slot.
    pub slot: usize,
    /// Its scoreboard slot, now free.
    pub board: usize,
    /// How long it lived.
    pub lived: Duration,
    /// Whether it had reported ready.
    pub was_ready: bool,
    /// Whether it was told to stop (so its exit was expected).
    pub was_retiring: bool,
    /// Whether it was found hung and killed.
    pub was_hung: bool,
    /// How long its slot waits before a replacement starts (zero when the slot is not wanted
    /// or the worker lived long enough).
    pub restart_in: Duration,
}

/// Slots 1..=desired want a worker; slots above it are retired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerTable {
    slots: Vec<Slot>,
    desired: usize,
    /// Workers that left their slot to a replacement while they finish (recycling), with the
    /// slot they had.
    detached: Vec<(usize, WorkerProcess)>,
    /// The generation before a reload: still serving until the new one is up, one retired for
    /// each new worker that reports ready.
    previous: Vec<(usize, WorkerProcess)>,
    /// How many reloads have started a new generation.
    generation: u32,
}

impl WorkerTable {
    /// A table wanting `desired` workers, none running yet.
    pub fn new(desired: usize) -> Self {
        let mut table = WorkerTable {
            slots: Vec::new(),
            desired: 0,
            detached: Vec::new(),
            previous: Vec::new(),
            generation: 0,
        };
        table.set_desired(desired);
        table
    }

    /// How many workers are wanted.
    pub fn desired(&self) -> usize {
        self.desired
    }

    /// Changes how many workers are wanted; never below one.
    pub fn set_desired(&mut self, desired: usize) {
        self.desired = desired.max(1);
        while self.slots.len() < self.desired {
            self.slots.push(Slot {
                worker: None,
                early_deaths: 0,
                not_before: None,
            });
        }
    }

    /// The lowest scoreboard slot no live worker uses, below `capacity`.
    pub fn free_board(&self, capacity: usize) -> Option<usize> {
        let used: Vec<usize> = self.live().map(|(_, w)| w.board).collect();
        (0..capacity).find(|board| !used.contains(board))
    }

    /// Records a worker forked into `slot`, using scoreboard slot `board`.
    pub fn spawned(&mut self, slot: usize, pid: u32, board: usize, now: Instant) {
        if let Some(entry) = slot.checked_sub(1).and_then(|i| self.slots.get_mut(i)) {
            entry.worker = Some(WorkerProcess {
                pid,
                board,
                started: now,
                ready: false,
                retiring: false,
                aborted_at: None,
                generation: self.generation,
            });
            entry.not_before = None;
        }
    }

    /// Records that the worker `pid` is up; returns its slot if it is one of the current
    /// generation's. A worker of the previous generation (one that reports while a reload
    /// runs) is marked all the same, so a rollback gets it back as ready.
    pub fn mark_ready(&mut self, pid: u32) -> Option<usize> {
        if let Some(worker) = self.worker_mut(pid) {
            worker.ready = true;
        }
        self.index_of(pid).map(|index| index + 1)
    }

    /// Records that the worker `pid` was told to stop.
    pub fn mark_retiring(&mut self, pid: u32) {
        if let Some(worker) = self.worker_mut(pid) {
            worker.retiring = true;
        }
    }

    /// Records that the worker `pid` was found hung and sent SIGABRT at `now`.
    pub fn mark_aborted(&mut self, pid: u32, now: Instant) {
        if let Some(worker) = self.worker_mut(pid) {
            worker.aborted_at = Some(now);
        }
    }

    /// Moves the worker `pid` out of its slot while it finishes its work, so a replacement
    /// can start in the slot at once; returns the slot. Recycling uses this: the new worker
    /// is up before the old one is gone.
    pub fn detach(&mut self, pid: u32) -> Option<usize> {
        let index = self.index_of(pid)?;
        let mut worker = self.slots[index].worker.take()?;
        worker.retiring = true;
        self.slots[index].not_before = None;
        self.detached.push((index + 1, worker));
        Some(index + 1)
    }

    fn worker_mut(&mut self, pid: u32) -> Option<&mut WorkerProcess> {
        self.slots
            .iter_mut()
            .filter_map(|entry| entry.worker.as_mut())
            .chain(self.detached.iter_mut().map(|(_, w)| w))
            .chain(self.previous.iter_mut().map(|(_, w)| w))
            .find(|w| w.pid == pid)
    }

    /// Whether the worker `pid` of the current generation has reported ready.
    pub fn is_ready(&self, pid: u32) -> bool {
        self.index_of(pid)
            .and_then(|i| self.slots[i].worker)
            .is_some_and(|w| w.ready)
    }

    /// The lowest slot with a worker that reported ready and is not retiring, and its pid.
    pub fn first_ready(&self) -> Option<(usize, u32)> {
        self.slots.iter().enumerate().find_map(|(index, entry)| {
            entry
                .worker
                .filter(|w| w.ready && !w.retiring)
                .map(|w| (index + 1, w.pid))
        })
    }

    /// Starts a new generation for a reload: every current worker moves to the previous
    /// generation and keeps serving, and every slot is free for a new worker.
    pub fn begin_generation(&mut self) {
        self.generation += 1;
        for (index, entry) in self.slots.iter_mut().enumerate() {
            entry.early_deaths = 0;
            entry.not_before = None;
            match entry.worker.take() {
                Some(worker) if !worker.retiring => self.previous.push((index + 1, worker)),
                Some(worker) => self.detached.push((index + 1, worker)),
                None => {}
            }
        }
    }

    /// Moves one worker of the previous generation to the retiring ones and returns its pid,
    /// to be told to stop; `None` once the previous generation is all gone.
    pub fn retire_one_previous(&mut self) -> Option<u32> {
        let (slot, mut worker) = self.previous.pop()?;
        worker.retiring = true;
        let pid = worker.pid;
        self.detached.push((slot, worker));
        Some(pid)
    }

    /// How many workers of the previous generation still serve.
    pub fn previous_count(&self) -> usize {
        self.previous.len()
    }

    /// Undoes a reload: the previous generation takes its slots back (the table wants as many
    /// workers as it has), and the new generation's workers are returned, to be stopped.
    pub fn rollback_generation(&mut self) -> Vec<u32> {
        self.generation = self.generation.saturating_sub(1);
        let mut stop = Vec::new();
        for (index, entry) in self.slots.iter_mut().enumerate() {
            if let Some(mut worker) = entry.worker.take() {
                worker.retiring = true;
                stop.push(worker.pid);
                self.detached.push((index + 1, worker));
            }
            entry.not_before = None;
            entry.early_deaths = 0;
        }
        let previous = std::mem::take(&mut self.previous);
        self.set_desired(previous.len());
        self.desired = previous.len().max(1);
        for (slot, worker) in previous {
            let free = match self.slots.get(slot - 1) {
                Some(entry) if entry.worker.is_none() && slot <= self.desired => slot,
                _ => match self.slots[..self.desired]
                    .iter()
                    .position(|e| e.worker.is_none())
                {
                    Some(index) => index + 1,
                    None => continue,
                },
            };
            self.slots[free - 1].worker = Some(worker);
        }
        stop
    }

    /// Records that `pid` exited; `None` when it was not one of ours.
    pub fn exited(&mut self, pid: u32, now: Instant) -> Option<Departure> {
        let leaving = if let Some(position) = self.detached.iter().position(|(_, w)| w.pid == pid) {
            Some(self.detached.swap_remove(position))
        } else {
            self.previous
                .iter()
                .position(|(_, w)| w.pid == pid)
                .map(|position| self.previous.swap_remove(position))
        };
        if let Some((slot, worker)) = leaving {
            return Some(Departure {
                slot,
                board: worker.board,
                lived: now.saturating_duration_since(worker.started),
                was_ready: worker.ready,
                was_retiring: true,
                was_hung: worker.aborted_at.is_some(),
                restart_in: Duration::ZERO,
            });
        }
        let index = self.index_of(pid)?;
        let slot_number = index + 1;
        let wanted = slot_number <= self.desired;
        let entry = &mut self.slots[index];
        let worker = entry.worker.take()?;
        let lived = now.saturating_duration_since(worker.started);
        let mut restart_in = Duration::ZERO;
        if worker.retiring || lived >= HEALTHY_LIFETIME {
            entry.early_deaths = 0;
        } else {
            entry.early_deaths = entry.early_deaths.saturating_add(1);
            restart_in = backoff(entry.early_deaths);
        }
        if !wanted {
            restart_in = Duration::ZERO;
        }
        entry.not_before = (!restart_in.is_zero()).then(|| now + restart_in);
        Some(Departure {
            slot: slot_number,
            board: worker.board,
            lived,
            was_ready: worker.ready,
            was_retiring: worker.retiring,
            was_hung: worker.aborted_at.is_some(),
            restart_in,
        })
    }

    /// What to do now to bring the live workers in line with the wanted ones.
    pub fn plan(&self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        for (index, entry) in self.slots.iter().enumerate() {
            let slot = index + 1;
            match entry.worker {
                None if slot <= self.desired && entry.not_before.is_none_or(|at| now >= at) => {
                    actions.push(Action::Spawn { slot });
                }
                Some(worker) if slot > self.desired && !worker.retiring => {
                    actions.push(Action::Retire {
                        slot,
                        pid: worker.pid,
                    });
                }
                _ => {}
            }
        }
        actions
    }

    /// When the next delayed restart is due, if any is waiting.
    pub fn next_restart(&self) -> Option<Instant> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(index, entry)| *index < self.desired && entry.worker.is_none())
            .filter_map(|(_, entry)| entry.not_before)
            .min()
    }

    /// True when every wanted slot has a worker that reported ready.
    pub fn all_ready(&self) -> bool {
        self.slots[..self.desired]
            .iter()
            .all(|entry| entry.worker.is_some_and(|w| w.ready && !w.retiring))
    }

    /// Every live worker with its slot, those detached while recycling included.
    pub fn live(&self) -> impl Iterator<Item = (usize, WorkerProcess)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(index, entry)| entry.worker.map(|w| (index + 1, w)))
            .chain(self.detached.iter().copied())
            .chain(self.previous.iter().copied())
    }

    /// How many workers are alive.
    pub fn live_count(&self) -> usize {
        self.live().count()
    }

    fn index_of(&self, pid: u32) -> Option<usize> {
        self.slots
            .iter()
            .position(|entry| entry.worker.is_some_and(|w| w.pid == pid))
    }
}

/// 100 ms, 200 ms, 400 ms, … capped at [`MAX_BACKOFF`].
fn backoff(early_deaths: u32) -> Duration {
    let factor = 1u32 << early_deaths.saturating_sub(1).min(16);
    FIRST_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spawn_all(table: &mut WorkerTable, now: Instant, first_pid: u32) {
        for (n, action) in table.plan(now).into_iter().enumerate() {
            match action {
                Action::Spawn { slot } => table.spawned(slot, first_pid + n as u32, n, now),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn a_new_table_spawns_every_slot() {
        let now = Instant::now();
        let table = WorkerTable::new(3);
        assert_eq!(
            table.plan(now),
            vec![
                Action::Spawn { slot: 1 },
                Action::Spawn { slot: 2 },
                Action::Spawn { slot: 3 }
            ]
        );
    }

    #[test]
    fn ready_only_when_every_wanted_worker_reported() {
        let now = Instant::now();
        let mut table = WorkerTable::new(2);
        spawn_all(&mut table, now, 100);
        assert!(table.plan(now).is_empty());
        assert!(!table.all_ready());
        assert_eq!(table.mark_ready(100), Some(1));
        assert!(!table.all_ready());
        assert_eq!(table.mark_ready(101), Some(2));
        assert!(table.all_ready());
        assert_eq!(table.mark_ready(999), None);
    }

    #[test]
    fn a_healthy_worker_that_dies_is_replaced_at_once() {
        let start = Instant::now();
        let mut table = WorkerTable::new(2);
        spawn_all(&mut table, start, 100);
        let later = start + Duration::from_secs(60);
        let departure = table.exited(101, later).expect("known pid");
        assert_eq!(departure.slot, 2);
        assert_eq!(departure.lived, Duration::from_secs(60));
        assert_eq!(departure.restart_in, Duration::ZERO);
        assert_eq!(table.plan(later), vec![Action::Spawn { slot: 2 }]);
        assert_eq!(table.exited(4242, later), None);
    }

    #[test]
    fn a_crash_loop_backs_off_exponentially_and_resets_when_healthy() {
        let mut now = Instant::now();
        let mut table = WorkerTable::new(1);
        let mut waits = Vec::new();
        for pid in 1..=9 {
            table.spawned(1, pid, 0, now);
            now += Duration::from_millis(10);
            let departure = table.exited(pid, now).unwrap();
            waits.push(departure.restart_in);
            assert!(table.plan(now).is_empty(), "must wait before restarting");
            assert_eq!(table.next_restart(), Some(now + departure.restart_in));
            now += departure.restart_in;
            assert_eq!(table.plan(now), vec![Action::Spawn { slot: 1 }]);
        }
        assert_eq!(waits[0], Duration::from_millis(100));
        assert_eq!(waits[1], Duration::from_millis(200));
        assert_eq!(waits[2], Duration::from_millis(400));
        assert_eq!(*waits.last().unwrap(), MAX_BACKOFF);
        table.spawned(1, 50, 0, now);
        let departure = table.exited(50, now + HEALTHY_LIFETIME).unwrap();
        assert_eq!(departure.restart_in, Duration::ZERO);
    }

    #[test]
    fn fewer_workers_retires_the_highest_slots_once() {
        let now = Instant::now();
        let mut table = WorkerTable::new(3);
        spawn_all(&mut table, now, 100);
        table.set_desired(1);
        let plan = table.plan(now);
        assert_eq!(
            plan,
            vec![
                Action::Retire { slot: 2, pid: 101 },
                Action::Retire { slot: 3, pid: 102 }
            ]
        );
        table.mark_retiring(101);
        table.mark_retiring(102);
        assert!(table.plan(now).is_empty());
        let departure = table.exited(102, now).unwrap();
        assert!(departure.was_retiring);
        assert_eq!(departure.restart_in, Duration::ZERO);
        assert!(table.plan(now).is_empty(), "a retired slot is not refilled");
        assert_eq!(table.live_count(), 2);
    }

    #[test]
    fn a_detached_worker_is_replaced_at_once_and_still_tracked() {
        let now = Instant::now();
        let mut table = WorkerTable::new(2);
        spawn_all(&mut table, now, 100);
        table.mark_ready(100);
        table.mark_ready(101);
        assert_eq!(table.detach(100), Some(1));
        assert_eq!(table.plan(now), vec![Action::Spawn { slot: 1 }]);
        assert_eq!(
            table.free_board(8),
            Some(2),
            "boards 0 and 1 are still in use"
        );
        table.spawned(1, 102, 2, now);
        assert_eq!(table.live_count(), 3);
        assert!(!table.all_ready(), "the replacement has not reported yet");
        table.mark_ready(102);
        assert!(table.all_ready());
        let departure = table.exited(100, now + Duration::from_secs(1)).unwrap();
        assert_eq!((departure.slot, departure.board), (1, 0));
        assert!(departure.was_retiring);
        assert_eq!(departure.restart_in, Duration::ZERO);
        assert!(
            table.plan(now).is_empty(),
            "the slot already has its replacement"
        );
        assert_eq!(table.free_board(8), Some(0));
        assert_eq!(table.live_count(), 2);
    }

    #[test]
    fn a_new_generation_replaces_the_old_one_worker_by_worker() {
        let now = Instant::now();
        let mut table = WorkerTable::new(2);
        spawn_all(&mut table, now, 100);
        table.mark_ready(100);
        table.mark_ready(101);
        table.set_desired(3);
        table.begin_generation();
        assert_eq!(table.previous_count(), 2);
        assert_eq!(table.live_count(), 2, "the old generation still serves");
        assert_eq!(table.plan(now).len(), 3, "three new workers to start");
        for (n, slot) in (1..=3).enumerate() {
            table.spawned(slot, 200 + n as u32, 10 + n, now);
        }
        assert!(!table.is_ready(200));
        table.mark_ready(200);
        assert!(table.is_ready(200));
        let first = table.retire_one_previous().unwrap();
        table.mark_ready(201);
        let second = table.retire_one_previous().unwrap();
        assert_eq!(table.retire_one_previous(), None);
        let mut retired = vec![first, second];
        retired.sort_unstable();
        assert_eq!(retired, vec![100, 101]);
        let departure = table.exited(100, now).unwrap();
        assert!(departure.was_retiring);
        assert_eq!(departure.restart_in, Duration::ZERO);
        assert!(table.plan(now).is_empty());
    }

    #[test]
    fn a_failed_generation_rolls_back() {
        let now = Instant::now();
        let mut table = WorkerTable::new(2);
        spawn_all(&mut table, now, 100);
        table.mark_ready(100);
        table.mark_ready(101);
        table.set_desired(4);
        table.begin_generation();
        table.spawned(1, 300, 5, now);
        let stop = table.rollback_generation();
        assert_eq!(stop, vec![300]);
        assert_eq!(table.desired(), 2);
        assert!(table.all_ready(), "the old workers are back in their slots");
        assert!(table.plan(now).is_empty());
        assert_eq!(table.previous_count(), 0);
        let departure = table.exited(300, now).unwrap();
        assert!(departure.was_retiring);
    }

    #[test]
    fn a_rollback_keeps_ready_reports_that_came_during_the_reload() {
        let now = Instant::now();
        let mut table = WorkerTable::new(1);
        spawn_all(&mut table, now, 100);
        assert_eq!(table.first_ready(), None, "not ready yet");
        table.begin_generation();
        assert_eq!(
            table.mark_ready(100),
            None,
            "not of the current generation: the reload rules do not count it"
        );
        assert!(!table.is_ready(100));
        table.spawned(1, 200, 1, now);
        assert_eq!(table.first_ready(), None, "the new worker is not ready");
        assert_eq!(table.rollback_generation(), vec![200]);
        assert!(table.all_ready(), "the old worker is back, and it is up");
        assert_eq!(table.first_ready(), Some((1, 100)), "to be measured");
    }

    #[test]
    fn aborted_workers_are_remembered() {
        let now = Instant::now();
        let mut table = WorkerTable::new(1);
        spawn_all(&mut table, now, 7);
        table.mark_aborted(7, now);
        assert_eq!(table.live().next().unwrap().1.aborted_at, Some(now));
    }

    #[test]
    fn desired_never_drops_below_one_and_grows_new_slots() {
        let now = Instant::now();
        let mut table = WorkerTable::new(1);
        table.set_desired(0);
        assert_eq!(table.desired(), 1);
        spawn_all(&mut table, now, 1);
        table.set_desired(2);
        assert_eq!(table.plan(now), vec![Action::Spawn { slot: 2 }]);
    }
}
