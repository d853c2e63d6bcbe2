//! The workers themselves: forking them, reading their reports, reaping them, and killing the
//! ones that hang or never finish starting.

use std::io::{self, Read};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::reload::ReloadEvent;
use super::table::{self, Action};
use super::{HUNG_KILL_GRACE, Master, MasterError, Phase, format_lifetime};
use crate::listeners::Listener;
use crate::protocol::{self, SCOREBOARD_CAPACITY, WorkerIntent, WorkerState};
use crate::sys::{self, ExitHow, Forked};
use crate::worker::{self, WorkerContext};

impl Master<'_> {
    /// Starts and retires workers until the table has what it wants.
    pub(super) fn reconcile(&mut self) -> Result<(), MasterError> {
        if self.phase.is_stopping() {
            return Ok(());
        }
        let now = Instant::now();
        for action in self.table.plan(now) {
            match action {
                Action::Spawn { slot } => {
                    let Some(board) = self.table.free_board(SCOREBOARD_CAPACITY) else {
                        return Err(MasterError::ScoreboardFull);
                    };
                    match self.spawn(slot, board) {
                        Ok(pid) => {
                            self.table.spawned(slot, pid, board, now);
                            log::debug!("started worker {slot} (pid {pid})");
                        }
                        Err(err) if matches!(self.phase, Phase::Starting { .. }) => {
                            return Err(MasterError::Fork(err));
                        }
                        Err(err) => {
                            // The slot stays empty and is retried on the next turn.
                            log::error!("could not fork worker {slot}: {err}");
                        }
                    }
                }
                Action::Retire { slot, pid } => {
                    log::info!("retiring worker {slot} (pid {pid})");
                    if let Err(err) = protocol::tell(pid, WorkerIntent::GracefulStop) {
                        log::error!("could not signal worker {pid}: {err}");
                    }
                    self.table.mark_retiring(pid);
                }
            }
        }
        if let Phase::Starting { replaces, next } = &mut self.phase
            && self.table.all_ready()
        {
            let (replaces, next) = (replaces.take(), next.take());
            self.phase = Phase::Running;
            self.announce_ready();
            if let Some(old) = replaces {
                Self::retire_predecessor(old);
            }
            self.start_next(next);
        }
        let check = self.reload_check();
        self.step_reload(check);
        Ok(())
    }

    fn spawn(&mut self, slot: usize, board: usize) -> io::Result<u32> {
        self.scoreboard.reset(board, sys::monotonic_ms());
        let blocked = sys::block_signals()?;
        self.factory.before_fork();
        match sys::fork() {
            Err(err) => {
                self.factory.after_fork_parent();
                let _ = blocked.restore();
                Err(err)
            }
            Ok(Forked::Parent(pid)) => {
                self.factory.after_fork_parent();
                blocked.restore()?;
                Ok(pid)
            }
            Ok(Forked::Child) => {
                // First, before the application or any thread: systemd's socket and watchdog
                // are the master's, not the application's to notify or feed.
                sys::forget_service_manager();
                self.factory.after_fork_child();
                // The worker must not share the master's event loop or run its signal actions.
                drop(self.ops.take());
                drop(self.signals.take());
                drop(self.report_rx.take());
                drop(self.poll.take());
                // The worker owns exactly the sockets its config serves: the others (an
                // address a reload dropped, still open in the master until the old workers
                // are gone) are closed here, or clients would queue on them unanswered.
                let binds = &self.config.server.bind;
                let listeners: Vec<Listener> = std::mem::take(&mut self.listeners)
                    .into_iter()
                    .filter(|l| l.kept_by(binds))
                    .collect();
                worker::run(WorkerContext {
                    slot,
                    config: &self.config,
                    listeners,
                    factory: self.factory,
                    report: &self.report_tx,
                    blocked,
                    scoreboard: &self.scoreboard,
                    board,
                    identity: &self.identity,
                    tls: self.tls.as_ref().map(|tls| Arc::clone(&tls.config)),
                })
            }
        }
    }

    /// Reads what workers wrote on the report pipe, and looks at the slots they name.
    pub(super) fn read_reports(&mut self) {
        let Some(pipe) = self.report_rx.as_mut() else {
            return;
        };
        let mut chunk = [0u8; 512];
        let mut reports = Vec::new();
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => reports.extend(self.reports.feed(&chunk[..n])),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        for pid in reports {
            let newly = !self.table.is_ready(pid);
            if let Some(slot) = self.table.mark_ready(pid)
                && newly
            {
                log::debug!("worker {slot} (pid {pid}) is ready");
                // Before the reload's step: a generation started small to be measured must
                // not look complete.
                self.size_from(slot, pid);
                self.step_reload(ReloadEvent::NewWorkerReady);
            }
        }
    }

    /// Hands the sizer the worker `pid` of `slot`, which is ready: measured when the sizer
    /// awaits a measurement, and the wanted count changed to what it gives.
    fn size_from(&mut self, slot: usize, pid: u32) {
        if let Some(count) = self.sizer.on_ready(slot, pid, self.table.desired()) {
            self.table.set_desired(count);
        }
    }

    /// Measures a worker that is already ready when the sizer awaits a measurement: after a
    /// rollback, the restored generation's workers reported ready while the reload held them
    /// aside, so none of them would report again.
    pub(super) fn size_from_ready_worker(&mut self) {
        if !self.sizer.awaits_measurement() {
            return;
        }
        if let Some((slot, pid)) = self.table.first_ready() {
            self.size_from(slot, pid);
        }
    }

    /// Collects every child that exited, and decides what its exit means.
    pub(super) fn reap(&mut self) {
        loop {
            let (pid, how) = match sys::reap_child() {
                Ok(Some(exit)) => exit,
                Ok(None) => return,
                Err(err) => {
                    log::error!("waitpid failed: {err}");
                    return;
                }
            };
            if self.upgrade_child_exited(pid, how) {
                continue;
            }
            let now = Instant::now();
            // A worker that recycled itself and exited before the master noticed: it is
            // still a recycle, not a crash (and no reason for a restart delay).
            let recycled = self.table.live().find(|(_, w)| {
                w.pid == pid
                    && !w.retiring
                    && self.scoreboard.view(w.board).state == WorkerState::Retiring
            });
            if let Some((slot, worker)) = recycled {
                self.recycling(slot, &worker);
            }
            let Some(departure) = self.table.exited(pid, now) else {
                log::debug!("reaped unknown child {pid} ({how})");
                continue;
            };
            self.count_departure(&departure, how);
            // Its slot may offer connections still (it died without saying otherwise).
            self.scoreboard.withdraw_offer(departure.board);
            let slot = departure.slot;
            let lived = format_lifetime(departure.lived);
            let expected = departure.was_retiring && how == ExitHow::Code(0);
            if expected {
                log::info!("worker {slot} (pid {pid}) exited after {lived}");
            } else if self.phase.is_stopping() {
                log::warn!("worker {slot} (pid {pid}) {how} after {lived} while stopping");
            } else if departure.restart_in.is_zero() {
                log::warn!("worker {slot} (pid {pid}) {how} after {lived}; starting a replacement");
            } else {
                log::warn!(
                    "worker {slot} (pid {pid}) {how} after {lived}, within {:?} of starting; restarting it in {:?}",
                    table::HEALTHY_LIFETIME,
                    departure.restart_in
                );
            }
            let boot_failure =
                matches!(how, ExitHow::Code(code) if protocol::is_boot_failure(code));
            match &self.phase {
                Phase::Reloading(_) if boot_failure && !departure.was_retiring => {
                    self.step_reload(ReloadEvent::NewWorkerFailed(how.to_string()));
                }
                Phase::Starting { .. } if boot_failure => {
                    // Every worker builds the same application as the same user: if one
                    // cannot, none can, and retrying for ever would hide the error from the
                    // operator.
                    let ExitHow::Code(code) = how else {
                        unreachable!("a boot failure is an exit code");
                    };
                    self.begin_stop(super::StopKind::Failed(MasterError::BootFailed {
                        slot,
                        code,
                    }));
                }
                _ if !departure.restart_in.is_zero() => {
                    let status = format!(
                        "STATUS=worker {slot} keeps dying ({how}); restarting it in {:?}",
                        departure.restart_in
                    );
                    let _ = sys::sd_notify(&status);
                }
                _ => {}
            }
        }
    }

    /// Worker `worker` in `slot` is recycling itself (its scoreboard says so, with why): logs
    /// why and detaches it, so that its replacement starts. Whether the master notices it
    /// while it finishes its requests or only once it has exited.
    fn recycling(&mut self, slot: usize, worker: &table::WorkerProcess) {
        let reason = self
            .scoreboard
            .view(worker.board)
            .retire
            .map_or_else(|| "it asked to".to_owned(), |r| r.to_string());
        log::info!(
            "worker {slot} (pid {}) is recycling: it {reason}; starting its replacement",
            worker.pid
        );
        self.table.detach(worker.pid);
    }

    /// Reads every worker's scoreboard slot: starts replacements for workers that are
    /// recycling themselves, and kills the ones whose heartbeat stopped.
    pub(super) fn watch_workers(&mut self) {
        if self.phase.is_stopping() {
            return;
        }
        let now = Instant::now();
        let now_ms = sys::monotonic_ms();
        let timeout = self.config.server.timeout;
        let boot_timeout = self.config.server.boot_timeout;
        let workers: Vec<(usize, table::WorkerProcess)> = self.table.live().collect();
        for (slot, worker) in workers {
            let view = self.scoreboard.view(worker.board);
            if view.state == WorkerState::Retiring && !worker.retiring {
                self.recycling(slot, &worker);
            }
            let silent = Duration::from_millis(now_ms.saturating_sub(view.heartbeat_ms));
            // A worker still building its application (importing a large project) is not
            // hung until boot_timeout; from its first heartbeat on, timeout applies.
            let limit = if worker.ready { timeout } else { boot_timeout };
            match worker.aborted_at {
                None if silent > limit => {
                    if worker.ready {
                        log::warn!(
                            "worker {} (slot {slot}) missed its heartbeat for {}; killing it",
                            worker.pid,
                            format_lifetime(silent)
                        );
                    } else {
                        log::warn!(
                            "worker {} (slot {slot}) did not finish starting within \
                             boot_timeout ({}); killing it",
                            worker.pid,
                            format_lifetime(boot_timeout)
                        );
                    }
                    if let Err(err) = protocol::tell(worker.pid, WorkerIntent::Abort) {
                        log::error!("could not signal worker {}: {err}", worker.pid);
                    }
                    self.table.mark_aborted(worker.pid, now);
                }
                Some(at) if now.duration_since(at) >= HUNG_KILL_GRACE => {
                    let _ = protocol::tell(worker.pid, WorkerIntent::Kill);
                }
                _ => {}
            }
        }
    }
}
