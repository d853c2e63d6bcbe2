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
//!
//! A worker that exits before it is measured leaves the measurement to the next worker to
//! report ready (its replacement), up to [`MEASURE_ATTEMPTS`] in a row; after that, or when
//! `/proc` cannot be read, a warning says why and the CPUs decide until the next reload.
//! SIGTTIN and SIGTTOU received while a worker is measured change the count the measurement
//! gives by as much as they changed the table's. A rollback puts back a sizer that may still
//! await its measurement: the master then measures a ready worker of the generation it
//! restored, whose ready report came while the reload held it aside.

use crate::config::MAX_WORKERS;
use crate::cpu::{self, Decision, Measured, ProcessSize, Sizing, Unmeasured, WorkerRule};
use crate::sys;

/// How many workers in a row may exit before they are measured (each replaced, and the next to
/// report ready measured instead) before the count is decided without a measurement.
pub const MEASURE_ATTEMPTS: u32 = 3;

/// What the master knows about sizing the workers, and whether it waits for a measurement.
#[derive(Clone, Debug)]
pub struct Sizer {
    sizing: Sizing,
    /// The last worker size measured (or the preloading master's), reused at a reload.
    last: Option<ProcessSize>,
    /// Whether the next worker of the current generation to report ready is measured.
    pending: bool,
    /// The count this sizer last gave the worker table: where the table wants another when
    /// the measurement lands, SIGTTIN/SIGTTOU changed it meanwhile, and that change is kept
    /// on top of the measured count.
    asked: usize,
    /// Workers of this generation that exited before they could be measured.
    exited: u32,
}

impl Sizer {
    /// Decides the count to start with and logs the `workers:` line. `preloaded` says the
    /// application is already imported in this process, so its size is a worker's.
    pub fn start(sizing: Sizing, preloaded: bool) -> (Sizer, usize) {
        let mut sizer = Sizer {
            sizing,
            last: None,
            pending: false,
            asked: 0,
            exited: 0,
        };
        let decision = if !sizer.sizing.weighs_memory() {
            sizer.sizing.decide(None)
        } else if preloaded {
            let size = cpu::process_size(None)
                .inspect_err(|why| {
                    log::warn!(
                        "could not read the master's memory in /proc/self ({why}); the memory \
                         limit is not weighed"
                    );
                })
                .ok();
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
        sizer.asked = decision.workers;
        (sizer, decision.workers)
    }

    /// A reload's sizing (never with preload: that reload is a new master): the count from
    /// the last measurement, if any, and the first new worker measured again.
    pub fn reload(&mut self, sizing: Sizing) -> usize {
        self.sizing = sizing;
        self.pending = self.sizing.weighs_memory();
        self.exited = 0;
        let decision = match (self.pending, self.last) {
            (true, Some(worker)) => self.sizing.decide(
                cpu::process_size(None)
                    .ok()
                    .map(|master| Measured { worker, master }),
            ),
            (true, None) => self.sizing.before_measurement(),
            (false, _) => self.sizing.decide(None),
        };
        announce(&decision);
        self.asked = decision.workers;
        decision.workers
    }

    /// Whether the next worker of the current generation to report ready is to be measured.
    pub fn awaits_measurement(&self) -> bool {
        self.pending
    }

    /// A worker of the current generation reported ready while the table wants `desired`
    /// workers: measures it when a measurement is awaited, and returns the count `auto` now
    /// asks for (`None` when nothing changes). SIGTTIN/SIGTTOU received since this sizer last
    /// set the count are added to the measured count. A worker that exited before it could
    /// be measured leaves the measurement to the next one to report ready, up to
    /// [`MEASURE_ATTEMPTS`] workers; after that, or when `/proc` cannot be read, the count is
    /// decided without a measurement.
    pub fn on_ready(&mut self, slot: usize, pid: u32, desired: usize) -> Option<usize> {
        if !self.pending {
            return None;
        }
        let measured = match measure(pid) {
            Ok(measured) => {
                self.last = Some(measured.worker);
                Some(measured)
            }
            Err(Unmeasured::Exited) if self.exited + 1 < MEASURE_ATTEMPTS => {
                self.exited += 1;
                log::info!(
                    "worker {slot} (pid {pid}) exited before it could be measured; measuring \
                     the next worker to report ready"
                );
                return None;
            }
            Err(Unmeasured::Exited) => {
                log::warn!(
                    "could not measure a worker: {MEASURE_ATTEMPTS} in a row exited before \
                     they could be; the memory limit is not weighed until the next reload"
                );
                None
            }
            Err(why) => {
                log::warn!(
                    "could not measure worker {slot} (pid {pid}): {why}; the memory limit is \
                     not weighed until the next reload"
                );
                None
            }
        };
        self.pending = false;
        let decision = self.sizing.decide(measured);
        announce(&decision);
        if !matches!(self.sizing.rule, WorkerRule::Auto(_)) {
            return None;
        }
        // What SIGTTIN and SIGTTOU did to the count meanwhile, as a difference kept on top.
        let workers = (decision.workers + desired)
            .saturating_sub(self.asked)
            .clamp(1, MAX_WORKERS);
        if desired != self.asked {
            log::info!(
                "workers: {workers} ({} as measured, with the {} by SIGTTIN/SIGTTOU while the \
                 worker was measured)",
                decision.workers,
                if desired > self.asked {
                    format!("{} more", desired - self.asked)
                } else {
                    format!("{} fewer", self.asked - desired)
                }
            );
        }
        self.asked = workers;
        Some(workers)
    }
}

/// The sizes of worker `pid` and of the master; a worker whose `/proc` directory is gone
/// because it exited counts as [`Unmeasured::Exited`], one `/proc` hides while it runs as
/// unreadable.
fn measure(pid: u32) -> Result<Measured, Unmeasured> {
    let worker = match cpu::process_size(Some(pid)) {
        Err(Unmeasured::Missing) if sys::process_exists(pid) => {
            return Err(Unmeasured::Unreadable(format!(
                "/proc/{pid} is not there though the worker runs (/proc mounted with hidepid?)"
            )));
        }
        Err(Unmeasured::Missing) => return Err(Unmeasured::Exited),
        other => other?,
    };
    let master = cpu::process_size(None).map_err(|why| {
        Unmeasured::Unreadable(format!("the master's own memory in /proc/self: {why}"))
    })?;
    Ok(Measured { worker, master })
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
        assert_eq!(sizer.on_ready(1, me, 1), Some(1), "nothing fits in 0 bytes");
        assert_eq!(sizer.on_ready(2, me, 1), None, "measured once only");
        assert!(sizer.last.is_some());

        let (mut roomy, first) = Sizer::start(auto_under(1 << 50), false);
        assert_eq!(first, 1);
        assert_eq!(
            roomy.on_ready(1, me, 1),
            Some(5),
            "the cpus decide under 1 PiB"
        );
    }

    #[test]
    fn a_reload_starts_from_the_last_measurement_and_measures_again() {
        let me = std::process::id();
        let (mut sizer, _) = Sizer::start(auto_under(1 << 50), false);
        assert_eq!(sizer.reload(auto_under(1 << 50)), 1, "nothing measured yet");
        assert_eq!(sizer.on_ready(1, me, 1), Some(5));
        assert_eq!(
            sizer.reload(auto_under(0)),
            1,
            "the last measurement weighed against the new limit"
        );
        assert_eq!(sizer.reload(auto_under(1 << 50)), 5);
        assert_eq!(sizer.on_ready(1, me, 5), Some(5), "measured again");
        let no_limit = Sizing {
            memory: None,
            ..auto_under(1 << 50)
        };
        assert_eq!(sizer.reload(no_limit), 5);
        assert_eq!(
            sizer.on_ready(1, me, 1),
            None,
            "no limit, nothing to measure"
        );
    }

    #[test]
    fn a_preloading_master_measures_itself_and_a_fixed_count_stays() {
        let (mut sizer, count) = Sizer::start(auto_under(0), true);
        assert_eq!(count, 1);
        assert_eq!(
            sizer.on_ready(1, std::process::id(), 1),
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
            sizer.on_ready(1, std::process::id(), 7),
            None,
            "and is never changed"
        );
        assert!(sizer.last.is_some(), "but measured, for the warning");
    }

    /// A pid no process has (above the kernel's largest `pid_max`): a worker gone before it
    /// could be measured.
    const GONE: u32 = i32::MAX as u32;

    #[test]
    fn signals_during_the_measurement_are_kept_on_top_of_it() {
        let me = std::process::id();
        // SIGTTIN twice while the first worker was measured: the table wants 3, not 1.
        let (mut sizer, first) = Sizer::start(auto_under(1 << 50), false);
        assert_eq!(first, 1);
        assert_eq!(
            sizer.on_ready(1, me, 3),
            Some(7),
            "5 measured, 2 more by hand"
        );

        // SIGTTOU after a reload started at the last measurement's 5.
        assert_eq!(sizer.reload(auto_under(1 << 50)), 5);
        assert_eq!(
            sizer.on_ready(1, me, 4),
            Some(4),
            "5 measured, 1 fewer by hand"
        );

        // Fewer by hand than the measurement gives: never below one.
        assert_eq!(sizer.reload(auto_under(0)), 1);
        assert_eq!(sizer.on_ready(1, me, 1), Some(1));
        assert_eq!(sizer.reload(auto_under(1 << 50)), 5);
        assert_eq!(sizer.on_ready(1, me, 1), Some(1), "4 fewer by hand than 5");
    }

    #[test]
    fn a_worker_gone_before_it_is_measured_leaves_it_to_the_next() {
        let me = std::process::id();
        let (mut sizer, _) = Sizer::start(auto_under(0), false);
        assert_eq!(sizer.on_ready(1, GONE, 1), None, "nothing decided yet");
        assert!(sizer.awaits_measurement());
        assert_eq!(sizer.on_ready(1, me, 1), Some(1), "the next one measured");
        assert!(!sizer.awaits_measurement());
        assert!(sizer.last.is_some());
    }

    #[test]
    fn workers_that_keep_exiting_unmeasured_leave_the_cpus_to_decide() {
        let (mut sizer, _) = Sizer::start(auto_under(0), false);
        for attempt in 1..MEASURE_ATTEMPTS {
            assert_eq!(sizer.on_ready(1, GONE, 1), None, "attempt {attempt}");
        }
        assert_eq!(
            sizer.on_ready(1, GONE, 1),
            Some(5),
            "the cpus' count, the limit not weighed"
        );
        assert!(!sizer.awaits_measurement());
        assert!(sizer.last.is_none());
        assert_eq!(sizer.reload(auto_under(0)), 1, "a reload measures again");
        assert_eq!(sizer.on_ready(1, GONE, 1), None, "with its own attempts");
    }

    /// The sizer part of a rollback during the first measurement: the sizer put back still
    /// awaits it (the master then measures a ready worker of the restored generation, see
    /// `WorkerTable::first_ready`).
    #[test]
    fn a_sizer_put_back_by_a_rollback_still_awaits_its_measurement() {
        let (mut sizer, _) = Sizer::start(auto_under(0), false);
        assert_eq!(sizer.on_ready(1, GONE, 1), None);
        let old = sizer.clone();
        assert_eq!(sizer.reload(auto_under(1 << 50)), 1);
        let mut sizer = old;
        assert!(sizer.awaits_measurement());
        assert_eq!(sizer.on_ready(1, std::process::id(), 1), Some(1));
    }
}
