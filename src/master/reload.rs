//! SIGHUP: a new generation of workers with the re-read config, the old one retired as the new
//! one comes up, and a way back when it cannot.
//!
//! [`ReloadState`] is the pure part: it steps on what happens during a reload (another signal,
//! a new worker up, a new worker that cannot start, a turn of the loop) and says what to do, so
//! its rules are table-tested without processes. The master carries the steps out.

use std::time::{Duration, Instant};

use super::{Loaded, Master, Phase, format_lifetime, preloads, tick_for};
use crate::config::Config;
use crate::protocol::{self, WorkerIntent};
use crate::sys;

/// An operation that waits for the one under way (a start, a reload, an upgrade) to end.
/// An upgrade covers a reload: the new master reads the config itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Next {
    /// Reload the config (SIGHUP).
    Reload,
    /// Start a new master (SIGUSR2).
    Upgrade,
}

/// Adds `next` to what waits: one of each at most, an upgrade covering a reload.
pub fn queue(pending: &mut Option<Next>, next: Next) {
    *pending = (*pending).max(Some(next));
}

/// How long a new generation has to come up before the reload is rolled back: new workers that
/// keep crashing never report ready, and without a bound the old generation would serve for
/// ever and every later SIGHUP would wait behind this one.
pub fn reload_limit(timeout: Duration) -> Duration {
    timeout.max(Duration::from_secs(10))
}

/// A reload under way, as far as its rules go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadState {
    started: Instant,
    limit: Duration,
    next: Option<Next>,
}

/// What happened during a reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadEvent {
    /// A SIGHUP or SIGUSR2 arrived: it waits until this reload ends.
    Queue(Next),
    /// A worker of the new generation reported ready.
    NewWorkerReady,
    /// A worker of the new generation exited with a start-up failure; how it exited.
    NewWorkerFailed(String),
    /// A turn of the master's loop.
    Check {
        /// Now.
        now: Instant,
        /// Whether every wanted worker of the new generation is ready.
        all_ready: bool,
        /// How many workers of the previous generation still serve.
        previous_left: usize,
    },
}

/// What the master does about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadStep {
    /// Nothing yet.
    Wait,
    /// A new worker is up: one old worker makes way.
    RetireOnePrevious,
    /// Every new worker is up: the old workers left make way, then check again.
    RetirePrevious,
    /// The new generation serves alone.
    Complete {
        /// How long the reload took.
        took: Duration,
        /// What waited for it.
        next: Option<Next>,
    },
    /// The new generation cannot start: back to the previous config and workers.
    RollBack {
        /// Why, for the log.
        why: String,
        /// What waited for it.
        next: Option<Next>,
    },
}

impl ReloadState {
    /// A reload that started at `started` and has `limit` to bring its workers up.
    pub fn new(started: Instant, limit: Duration) -> ReloadState {
        ReloadState {
            started,
            limit,
            next: None,
        }
    }

    /// Takes in what happened and says what to do.
    pub fn step(&mut self, event: ReloadEvent) -> ReloadStep {
        match event {
            ReloadEvent::Queue(next) => {
                queue(&mut self.next, next);
                ReloadStep::Wait
            }
            ReloadEvent::NewWorkerReady => ReloadStep::RetireOnePrevious,
            ReloadEvent::NewWorkerFailed(how) => ReloadStep::RollBack {
                why: format!("a new worker {how} while starting"),
                next: self.next.take(),
            },
            ReloadEvent::Check {
                now,
                all_ready: true,
                previous_left: 0,
            } => ReloadStep::Complete {
                took: now.saturating_duration_since(self.started),
                next: self.next.take(),
            },
            ReloadEvent::Check {
                all_ready: true, ..
            } => ReloadStep::RetirePrevious,
            ReloadEvent::Check { now, .. }
                if now.saturating_duration_since(self.started) > self.limit =>
            {
                ReloadStep::RollBack {
                    why: format!(
                        "the new workers were not all ready within {}",
                        format_lifetime(self.limit)
                    ),
                    next: self.next.take(),
                }
            }
            ReloadEvent::Check { .. } => ReloadStep::Wait,
        }
    }
}

/// A reload in progress: its rules' state, and what to go back to.
#[derive(Debug)]
pub struct Reload {
    /// Where its rules stand.
    pub state: ReloadState,
    /// The config to return to if the new workers cannot start.
    pub old_config: Box<Config>,
    /// The TLS config that goes with it.
    pub old_tls: Option<crate::listeners::tls::Loaded>,
    /// How many workers it ran.
    pub old_desired: usize,
    /// How their count was decided.
    pub old_sizer: Box<super::Sizer>,
}

impl Master<'_> {
    /// Reads the config again and starts a new generation of workers with it. Nothing changes
    /// unless the whole file is valid and every new address could be bound.
    pub(super) fn begin_reload(&mut self) {
        let _ = sys::sd_notify(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading",
            sys::monotonic_ms().saturating_mul(1000)
        ));
        log::info!("SIGHUP: reloading the config");
        let loaded = match (self.load)() {
            Ok(loaded) => loaded,
            Err(err) => {
                for line in err.describe().lines() {
                    log::error!("reload failed: {line}");
                }
                log::error!("reload failed; still serving with the previous config");
                let _ = sys::sd_notify(
                    "READY=1\nSTATUS=reload failed: the config has errors (see the log); still serving the previous config",
                );
                return;
            }
        };
        let Loaded { mut config, sizing } = loaded;
        if preloads(&self.config) || preloads(&config) {
            // The application lives in this process: only a new master imports new code. It
            // starts as an upgrade does; this one serves until it is ready, and stays if it
            // fails (its log says why).
            log::info!(
                "reload: the application is preloaded in the master, so a new master imports \
                 the new code (as SIGUSR2 does)"
            );
            self.begin_upgrade();
            if !matches!(self.phase, Phase::Upgrading(_)) {
                let _ = sys::sd_notify("READY=1\nSTATUS=reload failed; still serving");
            }
            return;
        }
        for key in keep_restart_only_settings(&self.config, &mut config) {
            log::warn!("reload: {key} changed, which takes a restart; keeping the old value");
        }
        // Read again even when the paths are the same: a renewed certificate is the point.
        let tls = match crate::listeners::tls::load(&config.tls) {
            Ok(tls) => tls,
            Err(err) => return refused(&err),
        };
        let new = match crate::listeners::bind_missing(
            &config.server.bind,
            &self.listeners,
            config.server.backlog,
            // socket_mode and socket_owner take a restart: the running ones apply.
            &self.unix,
        ) {
            Ok(new) => new,
            Err(err) => return refused(&err),
        };
        for listener in &new {
            if let Ok(addr) = listener.local_addr() {
                log::info!("reload: now also listening on {addr}");
            }
        }
        self.listeners.extend(new);
        let wanted_files = sys::open_files_needed(
            config.server.max_connections.get(),
            config.server.bind.len(),
        );
        if let Ok(hard) = sys::ensure_open_files(wanted_files)
            && hard < wanted_files
        {
            log::warn!(
                "reload: the hard open files limit is {hard}, below the {wanted_files} that \
                 [server] max_connections = {} needs",
                config.server.max_connections
            );
        }
        crate::logging::set_level(config.log.level);
        if config.log.error_log != self.config.log.error_log
            && let Err(err) = crate::logging::set_file(config.log.error_log.as_deref())
        {
            log::error!("reload: could not open the new error log: {err}; keeping the old one");
            config.log.error_log = self.config.log.error_log.clone();
        }
        let old_sizer = self.sizer.clone();
        let workers = self.sizer.reload(sizing);
        match &tls {
            Some(tls) => log::info!("reload: {}", tls.describe()),
            None if self.tls.is_some() => log::info!("reload: TLS off, serving plain HTTP"),
            None => {}
        }
        let old_tls = std::mem::replace(&mut self.tls, tls);
        let old_config = std::mem::replace(&mut self.config, config);
        let old_desired = self.table.desired();
        self.tick = tick_for(&self.config);
        self.table.begin_generation();
        self.table.set_desired(workers);
        self.phase = Phase::Reloading(Reload {
            state: ReloadState::new(
                std::time::Instant::now(),
                reload_limit(self.config.server.timeout),
            ),
            old_config: Box::new(old_config),
            old_tls,
            old_desired,
            old_sizer: Box::new(old_sizer),
        });
        log::info!("reload: starting {workers} workers with the new config");
    }

    /// Feeds the reload under way (if any) `event` and carries out what it says.
    pub(super) fn step_reload(&mut self, event: ReloadEvent) {
        let mut event = Some(event);
        while let Some(current) = event.take() {
            let Phase::Reloading(reload) = &mut self.phase else {
                return;
            };
            match reload.state.step(current) {
                ReloadStep::Wait => {}
                ReloadStep::RetireOnePrevious => {
                    if let Some(old) = self.table.retire_one_previous() {
                        retire_old(old);
                    }
                }
                ReloadStep::RetirePrevious => {
                    while let Some(old) = self.table.retire_one_previous() {
                        retire_old(old);
                    }
                    event = Some(self.reload_check());
                }
                ReloadStep::Complete { took, next } => {
                    self.phase = Phase::Running;
                    self.finish_reload(took);
                    self.start_next(next);
                }
                ReloadStep::RollBack { why, next } => {
                    let Phase::Reloading(reload) =
                        std::mem::replace(&mut self.phase, Phase::Running)
                    else {
                        unreachable!("matched above");
                    };
                    self.rollback_reload(reload, &why);
                    self.start_next(next);
                }
            }
        }
    }

    /// The loop's turn, as the reload rules see it.
    pub(super) fn reload_check(&self) -> ReloadEvent {
        ReloadEvent::Check {
            now: Instant::now(),
            all_ready: self.table.all_ready(),
            previous_left: self.table.previous_count(),
        }
    }

    fn finish_reload(&mut self, took: Duration) {
        self.close_unused_listeners();
        let workers = self.table.desired();
        log::info!(
            "reload complete in {}: {workers} workers with the new config",
            format_lifetime(took)
        );
        let _ = sys::sd_notify(&format!(
            "READY=1\nSTATUS=reloaded: {workers} workers, {} threads each",
            self.config.server.threads
        ));
        self.last_status.clear();
    }

    /// Puts the previous generation back after the new one failed to start.
    pub(super) fn rollback_reload(&mut self, reload: Reload, why: &str) {
        log::error!("reload failed: {why}; going back to the previous config");
        self.config = *reload.old_config;
        self.tls = reload.old_tls;
        self.sizer = *reload.old_sizer;
        crate::logging::set_level(self.config.log.level);
        self.tick = tick_for(&self.config);
        for pid in self.table.rollback_generation() {
            let _ = protocol::tell(pid, WorkerIntent::GracefulStop);
        }
        // Old workers already retired for new ones that were up are started again.
        self.table.set_desired(reload.old_desired);
        // A measurement the old generation still awaited: its workers' ready reports came
        // while the reload held them aside, so one that is up is measured now.
        self.size_from_ready_worker();
        self.close_unused_listeners();
        let _ = sys::sd_notify(&format!(
            "READY=1\nSTATUS=reload failed: {why}; still serving the previous config"
        ));
    }

    /// Closes listeners the current config no longer lists (sockets systemd handed over stay).
    /// Workers hold only the listeners their own config lists, so once the master's copy is
    /// closed, clients of a dropped address are refused as soon as the old workers are gone.
    pub(super) fn close_unused_listeners(&mut self) {
        let binds = self.config.server.bind.clone();
        self.listeners.retain(|listener| {
            let keep = listener.kept_by(&binds);
            if !keep {
                log::info!("no longer listening on {}", listener.bind);
                listener.remove_socket_file();
            }
            keep
        });
    }
}

/// A reload that could not begin (`why`): logged, and told to systemd; nothing changed.
fn refused(why: &dyn std::fmt::Display) {
    log::error!("reload failed: {why}; still serving with the previous config");
    let _ = sys::sd_notify(&format!(
        "READY=1\nSTATUS=reload failed: {why}; still serving the previous config"
    ));
}

/// Tells a worker of the previous generation to finish what it has and exit.
fn retire_old(pid: u32) {
    // Draining gives its idle keep-alive clients a moment to send a request, answered with
    // `Connection: close`, so a reload resets no connection.
    if let Err(err) = protocol::tell(pid, WorkerIntent::Drain) {
        log::error!("could not signal worker {pid}: {err}");
    }
}

/// Keeps the settings a reload cannot change in a running server (the master's own identity
/// and files) at their running values in `new`; returns the keys that differed.
fn keep_restart_only_settings(running: &Config, new: &mut Config) -> Vec<&'static str> {
    let (old, server) = (&running.server, &mut new.server);
    let mut changed = Vec::new();
    macro_rules! keep {
        ($($key:ident),+) => {
            $(
                if server.$key != old.$key {
                    changed.push(concat!("server.", stringify!($key)));
                    server.$key = old.$key.clone();
                }
            )+
        };
    }
    keep!(
        user,
        group,
        pidfile,
        umask,
        chdir,
        socket_owner,
        socket_mode,
        control_socket
    );
    if new.metrics.bind != running.metrics.bind {
        changed.push("metrics.bind");
        new.metrics.bind = running.metrics.bind;
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(state: &ReloadState, after: u64, all_ready: bool, left: usize) -> ReloadEvent {
        ReloadEvent::Check {
            now: state.started + Duration::from_secs(after),
            all_ready,
            previous_left: left,
        }
    }

    #[test]
    fn a_reload_steps_through_its_rules() {
        let started = Instant::now();
        let limit = Duration::from_secs(10);
        // (event, step) in order, on one reload each row list.
        type Row = (fn(&ReloadState) -> ReloadEvent, ReloadStep);
        let tables: Vec<Vec<Row>> = vec![
            // The new workers come up one by one; the old ones make way; done.
            vec![
                (|s| check(s, 1, false, 2), ReloadStep::Wait),
                (
                    |_| ReloadEvent::NewWorkerReady,
                    ReloadStep::RetireOnePrevious,
                ),
                (|s| check(s, 2, true, 1), ReloadStep::RetirePrevious),
                (
                    |s| check(s, 3, true, 0),
                    ReloadStep::Complete {
                        took: Duration::from_secs(3),
                        next: None,
                    },
                ),
            ],
            // A SIGHUP and a SIGUSR2 meanwhile: the upgrade, which covers both, comes next.
            vec![
                (|_| ReloadEvent::Queue(Next::Reload), ReloadStep::Wait),
                (|_| ReloadEvent::Queue(Next::Upgrade), ReloadStep::Wait),
                (|_| ReloadEvent::Queue(Next::Reload), ReloadStep::Wait),
                (
                    |s| check(s, 1, true, 0),
                    ReloadStep::Complete {
                        took: Duration::from_secs(1),
                        next: Some(Next::Upgrade),
                    },
                ),
            ],
            // A new worker cannot start: back to the old config, the queued reload next.
            vec![
                (|_| ReloadEvent::Queue(Next::Reload), ReloadStep::Wait),
                (
                    |_| ReloadEvent::NewWorkerFailed("exited with code 3".into()),
                    ReloadStep::RollBack {
                        why: "a new worker exited with code 3 while starting".into(),
                        next: Some(Next::Reload),
                    },
                ),
            ],
            // New workers that never come up: rolled back once the limit passes, not before.
            vec![
                (|s| check(s, 10, false, 2), ReloadStep::Wait),
                (
                    |s| check(s, 11, false, 2),
                    ReloadStep::RollBack {
                        why: "the new workers were not all ready within 10.0s".into(),
                        next: None,
                    },
                ),
            ],
        ];
        for (index, rows) in tables.into_iter().enumerate() {
            let mut state = ReloadState::new(started, limit);
            for (row, (event, expected)) in rows.into_iter().enumerate() {
                let event = event(&state);
                assert_eq!(
                    state.step(event.clone()),
                    expected,
                    "table {index}, row {row}: {event:?}"
                );
            }
        }
    }

    #[test]
    fn an_upgrade_covers_a_reload() {
        let mut pending = None;
        queue(&mut pending, Next::Reload);
        assert_eq!(pending, Some(Next::Reload));
        queue(&mut pending, Next::Upgrade);
        queue(&mut pending, Next::Reload);
        assert_eq!(pending, Some(Next::Upgrade));
    }

    #[test]
    fn the_reload_limit_is_the_timeout_with_a_floor() {
        assert_eq!(
            reload_limit(Duration::from_secs(1)),
            Duration::from_secs(10)
        );
        assert_eq!(
            reload_limit(Duration::from_secs(30)),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn a_reload_keeps_restart_only_settings() {
        let running = Config::default();
        let mut new = Config::default();
        new.server.user = Some("nobody".to_owned());
        new.server.threads = std::num::NonZeroUsize::new(9).unwrap();
        assert_eq!(
            keep_restart_only_settings(&running, &mut new),
            vec!["server.user"]
        );
        assert_eq!(new.server.user, None, "kept at the running value");
        assert_eq!(new.server.threads.get(), 9, "applies to new workers");
    }
}
