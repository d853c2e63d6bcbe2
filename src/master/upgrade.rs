//! SIGUSR2: the binary on disk started as a new master, handed every listening socket. The new
//! master tells this one to stop once its workers are ready; if it fails, or is not ready in
//! time, this one keeps serving.

use std::time::{Duration, Instant};

use super::reload::Next;
use super::{Master, Phase, format_lifetime};
use crate::protocol::{self, Intent};
use crate::sys::{self, ExitHow};

/// Marks, in the names handed to a new master, sockets that came from systemd.
pub const ACTIVATED_PREFIX: &str = "activated:";

/// What a new master gets on top of `boot_timeout` (its workers' bound to build their
/// application) to start itself: re-read the config, take over the sockets, fork.
pub const UPGRADE_MARGIN: Duration = Duration::from_secs(5);

/// How long a new master has to become ready before it is abandoned.
pub fn upgrade_limit(boot_timeout: Duration) -> Duration {
    boot_timeout + UPGRADE_MARGIN
}

/// A binary upgrade under way.
#[derive(Debug)]
pub struct Upgrade {
    /// The new master's pid.
    pub child: u32,
    /// When it was started.
    pub since: Instant,
    /// A reload asked for meanwhile, run if the new master does not take over.
    pub next: Option<Next>,
}

impl Master<'_> {
    /// Starts the binary on disk as a new master, handing it every listening socket. Called
    /// with nothing else under way (see `Master::ask`).
    pub(super) fn begin_upgrade(&mut self) {
        debug_assert!(matches!(self.phase, Phase::Running), "{:?}", self.phase);
        let fds: Vec<(std::os::fd::BorrowedFd<'_>, String)> = self
            .listeners
            .iter()
            .map(|l| {
                let name = if l.activated {
                    format!("{ACTIVATED_PREFIX}{}", l.bind)
                } else {
                    l.bind.to_string()
                };
                (l.as_fd(), name)
            })
            .collect();
        match sys::spawn_upgrade(&self.exe, &self.args, self.start_dir.as_deref(), &fds) {
            Ok(pid) => {
                log::info!(
                    "SIGUSR2: started {} as the new master (pid {pid}); serving until it is ready",
                    self.exe.display()
                );
                self.phase = Phase::Upgrading(Upgrade {
                    child: pid,
                    since: Instant::now(),
                    next: None,
                });
            }
            Err(err) => log::error!(
                "upgrade failed: could not start {}: {}; still serving",
                self.exe.display(),
                crate::text::describe_io(&err)
            ),
        }
    }

    /// A new master that is still not ready after [`upgrade_limit`] is told to stop, and this
    /// one goes on serving; a later SIGUSR2 starts afresh.
    pub(super) fn watch_upgrade(&mut self) {
        let limit = upgrade_limit(self.config.server.boot_timeout);
        let Phase::Upgrading(upgrade) = &self.phase else {
            return;
        };
        if upgrade.since.elapsed() <= limit {
            return;
        }
        let child = upgrade.child;
        log::error!(
            "upgrade abandoned: the new master (pid {child}) was not ready within {}; \
             stopping it, still serving",
            format_lifetime(limit)
        );
        if let Err(err) = protocol::tell_master(child, Intent::FastStop) {
            log::error!("could not signal the new master {child}: {err}");
        }
        let _ = sys::sd_notify(&format!(
            "READY=1\nSTATUS=upgrade abandoned: the new master (pid {child}) was not ready in time; still serving"
        ));
        self.abandoned_upgrade = Some(child);
        self.upgrade_ended();
    }

    /// The upgrade's new master exited; whether that was this upgrade's child.
    pub(super) fn upgrade_child_exited(&mut self, pid: u32, how: ExitHow) -> bool {
        match &self.phase {
            Phase::Upgrading(upgrade) if upgrade.child == pid => {
                log::error!("upgrade failed: the new master (pid {pid}) {how}; still serving");
                let _ = sys::sd_notify(&format!(
                    "READY=1\nSTATUS=upgrade failed: the new master {how}; still serving"
                ));
                self.upgrade_ended();
                true
            }
            // It took over, then stopped: its business now.
            Phase::Stopping(stop) => stop.successor == Some(pid),
            _ if self.abandoned_upgrade == Some(pid) => {
                self.abandoned_upgrade = None;
                self.reclaim_pidfile(pid);
                true
            }
            _ => false,
        }
    }

    /// Back to serving after an upgrade that did not take over, and on to what waited for it.
    /// The control socket is this master's again, and so is the pid file if the new master
    /// left its own pid there.
    fn upgrade_ended(&mut self) {
        if let Phase::Upgrading(upgrade) = std::mem::replace(&mut self.phase, Phase::Running) {
            // The new master took the control socket's path over when it started.
            if let (Some(ops), Some(poll)) = (self.ops.as_mut(), self.poll.as_ref())
                && let Err(err) = ops.reclaim_control(poll.registry())
            {
                log::error!("{err}; `tine status` cannot reach this master");
            }
            if self.abandoned_upgrade != Some(upgrade.child) {
                self.reclaim_pidfile(upgrade.child);
            }
            self.start_next(upgrade.next);
        }
    }

    /// Writes this master's pid back into the pid file if `child`, a new master that did not
    /// take over, left its own there.
    fn reclaim_pidfile(&self, child: u32) {
        if let Some(pidfile) = &self.pidfile {
            match pidfile.reclaim_from(child) {
                Ok(true) => log::info!(
                    "pid file {} names this master again",
                    pidfile.path().display()
                ),
                Ok(false) => {}
                Err(err) => log::error!(
                    "could not write this master's pid back to {}: {}",
                    pidfile.path().display(),
                    crate::text::describe_io(&err)
                ),
            }
        }
    }

    /// This master is up: the one it replaces (binary upgrade) can go.
    pub(super) fn retire_predecessor(old: u32) {
        log::info!("upgrade: this master is ready; telling the old master (pid {old}) to stop");
        let _ = sys::sd_notify(&format!("MAINPID={}", std::process::id()));
        if let Err(err) = protocol::tell_master(old, Intent::GracefulStop) {
            log::error!("could not signal the old master {old}: {err}");
        }
    }
}
