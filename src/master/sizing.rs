//! The worker count under a cgroup memory limit: what the master measures, and when.
//!
//! Without a memory limit the count is known at once ([`crate::cpu::Sizing::decide`]). With
//! one, `workers = "auto"` needs the size of a worker with its application imported:
//!
//! - With `[app] preload`, the master imported it before forking: its own size is a worker's
//!   (copy-on-write pages stay shared at first, but reference counting dirties them as the
//!   workers run, so the whole is the honest cost).
//! - Otherwise the master starts one worker, measures it once it reports ready (its PSS, from
//!   `/proc/PID/smaps_rollup`), and only then starts the rest.
//! - A reload (SIGHUP) starts the new generation at the count the last measurement gives, and
//!   measures its first worker again, since new code may need more or less: the count follows
//!   (more workers started, or the highest slots retired). With preload a reload starts a new
//!   master, which measures itself.
//!
//! A fixed `workers = N` is never capped; the first worker is measured all the same, and a
//! warning says when N workers will not fit.

use crate::cpu::{self, Decision, Measured, ProcessSize, Sizing, WorkerRule};

/// What the master knows about sizing the workers, and whether it waits for a measurement.
#[derive(Clone, Debug)]
pub struct Sizer {
    sizing: Sizing,
    /// The last worker size measured (or the preloading master's), reused at a reload.
    last: Option<ProcessSize>,
    /// Whether the next worker of the current generation to report ready is measured.
    pending: bool,
}

impl Sizer {
    /// Decides the count to start with and logs the `workers:` line. `preloaded` says the
    /// application is already imported in this process, so its size is a worker's.
    pub fn start(sizing: Sizing, preloaded: bool) -> (Sizer, usize) {
        let mut sizer = Sizer {
            sizing,
            last: None,
            pending: false,
        };
        let decision = if !sizer.sizing.weighs_memory() {
            sizer.sizing.decide(None)
        } else if preloaded {
            let size = cpu::process_size(None);
            if size.is_none() {
                log::warn!(
                    "could not read the master's memory in /proc/self; the memory limit is not \
                     weighed"
                );
            }
            sizer.last = size;
            sizer.sizing.decide(size.map(|size| Measured {
                worker: size,
                master: size,
            }))
        } else {
            sizer.pending = true;
            sizer.sizing.before_measurement()
        };
        announce(&decision);
        (sizer, decision.workers)
    }

    /// A reload's sizing (never with preload: that reload is a new master): the count from
    /// the last measurement, if any, and the first new worker measured again.
    pub fn reload(&mut self, sizing: Sizing) -> usize {
        self.sizing = sizing;
        self.pending = self.sizing.weighs_memory();
        let decision = match (self.pending, self.last) {
            (true, Some(worker)) => self
                .sizing
                .decide(cpu::process_size(None).map(|master| Measured { worker, master })),
            (true, None) => self.sizing.before_measurement(),
            (false, _) => self.sizing.decide(None),
        };
        announce(&decision);
        decision.workers
    }

    /// A worker of the current generation reported ready: measures it when a measurement is
    /// awaited, and returns the count `auto` now asks for (`None` when nothing changes).
    pub fn on_ready(&mut self, slot: usize, pid: u32) -> Option<usize> {
        if !self.pending {
            return None;
        }
        self.pending = false;
        let measured = match (cpu::process_size(Some(pid)), cpu::process_size(None)) {
            (Some(worker), Some(master)) => {
                self.last = Some(worker);
                Some(Measured { worker, master })
            }
            _ => {
                log::warn!(
                    "could not read the memory of worker {slot} (pid {pid}) or the master in \
                     /proc; the memory limit is not weighed"
                );
                None
            }
        };
        let decision = self.sizing.decide(measured);
        announce(&decision);
        matches!(self.sizing.rule, WorkerRule::Auto(_)).then_some(decision.workers)
    }
}

/// The `workers: N (why)` line, and the warning of a fixed count that does not fit.
fn announce(decision: &Decision) {
    log::info!("workers: {} ({})", decision.workers, decision.explanation);
    if let Some(warning) = &decision.warning {
        log::warn!("{warning}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::{CpuBudget, MemoryLimit};

    fn auto_under(bytes: u64) -> Sizing {
        Sizing {
            rule: WorkerRule::Auto(CpuBudget {
                cpus: 2.0,
                workers: 5,
                explanation: "auto: 2 cpus in affinity; no cgroup cpu limit".to_owned(),
            }),
            memory: Some(MemoryLimit {
                bytes,
                file: "memory.max",
                dir: "/sys/fs/cgroup/app".into(),
            }),
        }
    }

    /// This test process stands in for the worker: its size is real, so the limits are
    /// chosen far from it (nothing fits beside it, or everything does).
    #[test]
    fn auto_starts_one_worker_then_sizes_from_its_measurement() {
        let me = std::process::id();
        let (mut sizer, first) = Sizer::start(auto_under(0), false);
        assert_eq!(first, 1, "one worker, to be measured");
        assert_eq!(sizer.on_ready(1, me), Some(1), "nothing fits in 0 bytes");
        assert_eq!(sizer.on_ready(2, me), None, "measured once only");
        assert!(sizer.last.is_some());

        let (mut roomy, first) = Sizer::start(auto_under(1 << 50), false);
        assert_eq!(first, 1);
        assert_eq!(
            roomy.on_ready(1, me),
            Some(5),
            "the cpus decide under 1 PiB"
        );
    }

    #[test]
    fn a_reload_starts_from_the_last_measurement_and_measures_again() {
        let me = std::process::id();
        let (mut sizer, _) = Sizer::start(auto_under(1 << 50), false);
        assert_eq!(sizer.reload(auto_under(1 << 50)), 1, "nothing measured yet");
        assert_eq!(sizer.on_ready(1, me), Some(5));
        assert_eq!(
            sizer.reload(auto_under(0)),
            1,
            "the last measurement weighed against the new limit"
        );
        assert_eq!(sizer.reload(auto_under(1 << 50)), 5);
        assert_eq!(sizer.on_ready(1, me), Some(5), "measured again");
        let no_limit = Sizing {
            memory: None,
            ..auto_under(1 << 50)
        };
        assert_eq!(sizer.reload(no_limit), 5);
        assert_eq!(sizer.on_ready(1, me), None, "no limit, nothing to measure");
    }

    #[test]
    fn a_preloading_master_measures_itself_and_a_fixed_count_stays() {
        let (mut sizer, count) = Sizer::start(auto_under(0), true);
        assert_eq!(count, 1);
        assert_eq!(
            sizer.on_ready(1, std::process::id()),
            None,
            "already measured"
        );
        assert!(sizer.last.is_some());

        let fixed = Sizing {
            rule: WorkerRule::Fixed(7),
            ..auto_under(0)
        };
        let (mut sizer, count) = Sizer::start(fixed, false);
        assert_eq!(count, 7, "a fixed count starts whole");
        assert_eq!(
            sizer.on_ready(1, std::process::id()),
            None,
            "and is never changed"
        );
        assert!(sizer.last.is_some(), "but measured, for the warning");
    }
}
