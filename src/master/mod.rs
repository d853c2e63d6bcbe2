//! The master process: forks the workers, then only supervises them.
//!
//! It is single-threaded and never starts a thread, so `fork` stays safe. Signals become intents
//! at the edge ([`Intent`]); each turn of the loop reaps exited children, then reconciles the
//! wanted workers against the live ones through the pure [`table::WorkerTable`].

pub mod ops;
pub mod table;

use std::ffi::OsString;
use std::fmt;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use nix::sys::signal::Signal;
#[cfg(test)]
use signal_hook::consts::SIGWINCH;
use signal_hook::consts::{
    SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGTTIN, SIGTTOU, SIGUSR1, SIGUSR2,
};
use signal_hook_mio::v1_0::Signals;

use crate::config::Config;
use crate::handler::HandlerFactory;
use crate::listeners::{Listener, UnixOptions};
use crate::scoreboard::{self, RetireReason, Scoreboard, WorkerState};
use crate::status;
use crate::sys::{self, ExitHow, Forked};
use crate::worker::{self, WorkerContext};
use table::{Action, WorkerTable};

const SIGNALS: Token = Token(0);
const REPORT_PIPE: Token = Token(1);

/// Whether `config` imports its application in the master.
fn preloads(config: &Config) -> bool {
    config.app.handler == crate::config::HandlerKind::Wsgi && config.app.preload
}

/// How long the loop sleeps at most between checks of its timers and the heartbeats.
const MAX_TICK: Duration = Duration::from_secs(1);
/// How long a hung worker has between SIGABRT (which may leave a core dump to debug it by)
/// and SIGKILL.
const HUNG_KILL_GRACE: Duration = Duration::from_secs(2);
/// How long a fast stop waits for workers to exit before killing them.
const FAST_STOP_GRACE: Duration = Duration::from_secs(5);

/// What the operator asked for, whatever signal carried it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// Finish in-flight requests, then exit (SIGTERM).
    GracefulStop,
    /// Exit now (SIGINT, SIGQUIT).
    FastStop,
    /// One more worker (SIGTTIN).
    AddWorker,
    /// One fewer worker, never below one (SIGTTOU).
    RemoveWorker,
    /// A child changed state (SIGCHLD).
    ReapChildren,
    /// Re-read the config and replace the workers with ones running it (SIGHUP).
    Reload,
    /// Start the binary on disk as a new master and hand it the sockets (SIGUSR2).
    Upgrade,
    /// Reopen the log files, after logrotate moved them (SIGUSR1).
    ReopenLogs,
    /// Any other signal the master listens for: logged and otherwise ignored, never fatal.
    Unsupported(i32),
}

impl Intent {
    /// The intent a signal carries.
    pub fn from_signal(signal: i32) -> Intent {
        match signal {
            SIGTERM => Intent::GracefulStop,
            SIGINT | SIGQUIT => Intent::FastStop,
            SIGTTIN => Intent::AddWorker,
            SIGTTOU => Intent::RemoveWorker,
            SIGCHLD => Intent::ReapChildren,
            SIGHUP => Intent::Reload,
            SIGUSR2 => Intent::Upgrade,
            SIGUSR1 => Intent::ReopenLogs,
            other => Intent::Unsupported(other),
        }
    }
}

/// The master failed in a way that ends it.
#[derive(Debug)]
pub enum MasterError {
    /// Setting up the event loop, signals or the readiness pipe failed.
    Setup {
        /// The step that failed.
        step: &'static str,
        /// What the OS said.
        source: io::Error,
    },
    /// `fork` failed while starting the first workers.
    Fork(io::Error),
    /// A worker failed while starting (the application could not be built, or the worker
    /// could not switch user), so no worker can serve.
    BootFailed {
        /// The slot whose worker reported it.
        slot: usize,
        /// The worker's exit code.
        code: i32,
    },
    /// The scoreboard has no free slot for another worker.
    ScoreboardFull,
    /// The control socket or the metrics address could not be opened.
    Ops(ops::OpsError),
}

impl fmt::Display for MasterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MasterError::Setup { step, source } => {
                write!(f, "could not {step}: {}", crate::describe_io(source))
            }
            MasterError::Fork(source) => {
                write!(f, "could not fork a worker: {}", crate::describe_io(source))
            }
            MasterError::BootFailed { slot, code } => write!(
                f,
                "worker {slot} failed to start (exit code {code}; its error is logged above), so no worker can; stopped"
            ),
            MasterError::Ops(err) => write!(f, "{err}"),
            MasterError::ScoreboardFull => write!(
                f,
                "no free scoreboard slot: {} worker processes at once is the most tine tracks",
                scoreboard::CAPACITY
            ),
        }
    }
}

impl std::error::Error for MasterError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Workers starting; READY not yet sent.
    Starting,
    /// Serving.
    Running,
    /// Stopping; `deadline` is when the remaining workers get SIGKILL.
    Stopping { deadline: Instant, killed: bool },
}

/// A config re-read for a reload, with what the master works out from it.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The validated config, command-line overrides applied.
    pub config: Config,
    /// How many workers it asks for.
    pub workers: usize,
}

/// Re-reads the config; the error is the full text to log (every problem, one per line).
pub type LoadConfig<'a> = &'a dyn Fn() -> Result<Loaded, String>;

/// What the master starts with.
pub struct MasterSetup<'a> {
    /// The config.
    pub config: Config,
    /// How many workers to run.
    pub workers: usize,
    /// The listening sockets, bound or inherited.
    pub listeners: Vec<Listener>,
    /// Builds the application in each worker.
    pub factory: &'a dyn HandlerFactory,
    /// The user and group workers switch to.
    pub identity: sys::Identity,
    /// Re-reads the config on SIGHUP.
    pub load: LoadConfig<'a>,
    /// The binary and arguments SIGUSR2 starts as the new master.
    pub exe: PathBuf,
    /// The arguments this master was started with.
    pub args: Vec<OsString>,
    /// The master this one replaces (binary upgrade), told to stop once this one is ready.
    pub upgrade_from: Option<u32>,
    /// How Unix sockets are created.
    pub unix: UnixOptions,
    /// The directory the master started in, where an upgrade starts the next one.
    pub start_dir: Option<PathBuf>,
}

/// A reload in progress.
#[derive(Debug)]
struct Reload {
    /// The config to return to if the new workers cannot start.
    old_config: Config,
    /// How many workers it ran.
    old_desired: usize,
    started: Instant,
}

/// Everything the master needs to run.
pub struct Master<'a> {
    config: Config,
    load: LoadConfig<'a>,
    unix: UnixOptions,
    reload: Option<Reload>,
    reload_again: bool,
    exe: PathBuf,
    args: Vec<OsString>,
    upgrade_from: Option<u32>,
    start_dir: Option<PathBuf>,
    /// The new master started by SIGUSR2, until it takes over or fails.
    upgrade_child: Option<u32>,
    /// Set once the sockets belong to a new master: nothing of theirs is removed on exit.
    handed_over: bool,
    /// How often to send `WATCHDOG=1` (half of systemd's `WATCHDOG_USEC`), and when it was
    /// last sent.
    watchdog: Option<(Duration, Instant)>,
    /// The control socket and metrics endpoint.
    ops: Option<ops::Ops>,
    started: Instant,
    /// Counters of workers that are gone, so totals never go down.
    retired: status::Totals,
    /// Replacements by reason, in [`RESTART_REASONS`] order.
    restarts: [u64; RESTART_REASONS.len()],
    listeners: Vec<Listener>,
    factory: &'a dyn HandlerFactory,
    table: WorkerTable,
    phase: Phase,
    scoreboard: Scoreboard,
    identity: sys::Identity,
    tick: Duration,
    last_status: String,
    last_status_at: Option<Instant>,
    // Master-only state, dropped in each child right after fork.
    poll: Option<Poll>,
    signals: Option<Signals>,
    report_rx: Option<mio::unix::pipe::Receiver>,
    report_tx: OwnedFd,
    report_buf: Vec<u8>,
    failure: Option<MasterError>,
}

impl<'a> Master<'a> {
    /// Prepares the master: event loop, signal handlers and the pipe workers report ready on.
    pub fn new(setup: MasterSetup<'a>) -> Result<Self, MasterError> {
        let MasterSetup {
            config,
            workers,
            listeners,
            factory,
            identity,
            load,
            exe,
            args,
            upgrade_from,
            unix,
            start_dir,
        } = setup;
        let setup =
            |step: &'static str| move |source: io::Error| MasterError::Setup { step, source };
        let poll = Poll::new().map_err(setup("create the event loop"))?;
        let mut signals = Signals::new([
            SIGTERM, SIGINT, SIGQUIT, SIGCHLD, SIGHUP, SIGUSR1, SIGUSR2, SIGTTIN, SIGTTOU,
        ])
        .map_err(setup("install signal handlers"))?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .map_err(setup("watch signals"))?;
        let (read_end, write_end) = sys::pipe().map_err(setup("create the report pipe"))?;
        let mut report_rx = mio::unix::pipe::Receiver::from(read_end);
        poll.registry()
            .register(&mut report_rx, REPORT_PIPE, Interest::READABLE)
            .map_err(setup("watch the report pipe"))?;
        let scoreboard = Scoreboard::new().map_err(setup("map the scoreboard"))?;
        let ops = ops::Ops::open(
            config.server.control_socket.as_deref(),
            config.metrics.bind,
            upgrade_from.is_some(),
            poll.registry(),
        )
        .map_err(MasterError::Ops)?;
        if let Some(path) = &config.server.control_socket {
            log::info!("control socket at {} (tine status)", path.display());
        }
        if let Some(addr) = ops.metrics_addr() {
            log::info!("metrics on http://{addr}/metrics and /healthz");
        }
        let tick = (config.server.timeout / 4).clamp(Duration::from_millis(10), MAX_TICK);
        Ok(Master {
            load,
            unix,
            reload: None,
            reload_again: false,
            exe,
            args,
            upgrade_from,
            upgrade_child: None,
            start_dir,
            handed_over: false,
            watchdog: watchdog_interval(upgrade_from).map(|every| (every, Instant::now())),
            ops: Some(ops),
            started: Instant::now(),
            retired: status::Totals::default(),
            restarts: [0; RESTART_REASONS.len()],
            scoreboard,
            identity,
            tick,
            last_status: String::new(),
            last_status_at: None,
            config,
            listeners,
            factory,
            table: WorkerTable::new(workers),
            phase: Phase::Starting,
            poll: Some(poll),
            signals: Some(signals),
            report_rx: Some(report_rx),
            report_tx: write_end,
            report_buf: Vec::new(),
            failure: None,
        })
    }

    /// Runs until the master is told to stop and every worker has exited.
    pub fn run(mut self) -> Result<(), MasterError> {
        let mut events = Events::with_capacity(64);
        loop {
            self.watch_workers();
            self.reconcile()?;
            self.report_status();
            if let Phase::Stopping { deadline, killed } = self.phase {
                if self.table.live_count() == 0 {
                    self.finish();
                    return match self.failure.take() {
                        Some(failure) => Err(failure),
                        None => Ok(()),
                    };
                }
                if !killed && Instant::now() >= deadline {
                    let left = self.table.live_count();
                    log::warn!("{left} workers still running at the stop deadline; killing them");
                    self.signal_all(Signal::SIGKILL);
                    self.phase = Phase::Stopping {
                        deadline,
                        killed: true,
                    };
                }
            }
            self.feed_watchdog();
            if let (Some(ops), Some(poll)) = (self.ops.as_mut(), self.poll.as_ref()) {
                ops.expire(poll.registry());
            }
            let timeout = self.poll_timeout();
            let poll = self.poll.as_mut().expect("the master keeps its poll");
            if let Err(err) = poll.poll(&mut events, Some(timeout))
                && err.kind() != io::ErrorKind::Interrupted
            {
                return Err(MasterError::Setup {
                    step: "wait for events",
                    source: err,
                });
            }
            let mut intents = Vec::new();
            let mut ops_requests = Vec::new();
            for event in events.iter() {
                match event.token() {
                    token if ops::Ops::owns(token) => {
                        if let (Some(ops), Some(poll)) = (self.ops.as_mut(), self.poll.as_ref()) {
                            ops_requests.extend(ops.on_event(token, poll.registry()));
                        }
                    }
                    SIGNALS => {
                        let signals = self.signals.as_mut().expect("the master keeps its signals");
                        intents.extend(signals.pending().map(Intent::from_signal));
                    }
                    REPORT_PIPE => self.read_reports(),
                    _ => {}
                }
            }
            // Children are reaped every turn, so a coalesced SIGCHLD never leaves one behind.
            self.reap();
            self.answer_operators(ops_requests);
            for intent in intents {
                self.apply(intent);
            }
        }
    }

    fn poll_timeout(&self) -> Duration {
        let now = Instant::now();
        let mut timeout = self.tick;
        if let Some((every, _)) = self.watchdog {
            timeout = timeout.min(every);
        }
        if let Some(at) = self.table.next_restart() {
            timeout = timeout.min(at.saturating_duration_since(now));
        }
        if let Phase::Stopping {
            deadline,
            killed: false,
        } = self.phase
        {
            timeout = timeout.min(deadline.saturating_duration_since(now));
        }
        timeout
    }

    fn apply(&mut self, intent: Intent) {
        match intent {
            Intent::GracefulStop => {
                if let Some(child) = self.upgrade_child
                    && sys::process_exists(child)
                {
                    // The new master is ready and asks this one to go.
                    log::info!("upgrade: the new master (pid {child}) has taken over");
                    let _ = sys::sd_notify(&format!("MAINPID={child}"));
                    self.handed_over = true;
                    self.begin_stop(true, "upgrade complete");
                } else {
                    self.begin_stop(true, "SIGTERM");
                }
            }
            Intent::FastStop => self.begin_stop(false, "SIGINT/SIGQUIT"),
            Intent::AddWorker | Intent::RemoveWorker if self.stopping() => {}
            Intent::AddWorker if self.table.desired() >= crate::config::MAX_WORKERS => {
                log::warn!(
                    "SIGTTIN: already at the maximum of {} workers",
                    crate::config::MAX_WORKERS
                );
            }
            Intent::AddWorker => {
                self.table.set_desired(self.table.desired() + 1);
                log::info!("SIGTTIN: now {} workers", self.table.desired());
            }
            Intent::RemoveWorker => {
                let before = self.table.desired();
                self.table.set_desired(before.saturating_sub(1));
                if self.table.desired() == before {
                    log::info!("SIGTTOU: already at the minimum of 1 worker");
                } else {
                    log::info!("SIGTTOU: now {} workers", self.table.desired());
                }
            }
            Intent::ReapChildren => {}
            Intent::Reload if self.stopping() => {}
            Intent::Reload => {
                if self.reload.is_some() || self.phase == Phase::Starting {
                    // One reload at a time; this one starts when the current one ends.
                    self.reload_again = true;
                } else {
                    self.begin_reload();
                }
            }
            Intent::Upgrade if self.stopping() => {}
            Intent::Upgrade => self.begin_upgrade(),
            Intent::ReopenLogs => {
                let owner = self.identity.user.as_ref().map(|(_, uid)| *uid);
                if let Some(crate::access_log::Target::File(path)) = &self.config.log.access_log
                    && let Err(err) = crate::logging::prepare_file(path, owner)
                {
                    log::error!("SIGUSR1: could not create the new access log: {err}");
                }
                match crate::logging::reopen_for(owner) {
                    Ok(()) => log::info!("SIGUSR1: log files reopened"),
                    Err(err) => log::error!("SIGUSR1: could not reopen the error log: {err}"),
                }
                let pids: Vec<u32> = self.table.live().map(|(_, w)| w.pid).collect();
                for pid in pids {
                    let _ = sys::send_signal(pid, Signal::SIGUSR1);
                }
            }
            Intent::Unsupported(signal) => {
                let name = Signal::try_from(signal).map_or("signal", |s| s.as_str());
                log::warn!("{name} received; this version of tine does not act on it, ignored");
            }
        }
    }

    fn stopping(&self) -> bool {
        matches!(self.phase, Phase::Stopping { .. })
    }

    fn begin_stop(&mut self, graceful: bool, why: &str) {
        self.reload_again = false;
        let now = Instant::now();
        let wait = if graceful {
            // Workers enforce graceful_timeout themselves; the margin lets them exit on their own.
            self.config.server.graceful_timeout + Duration::from_secs(1)
        } else {
            FAST_STOP_GRACE
        };
        let deadline = match self.phase {
            Phase::Stopping { deadline, killed } => {
                if graceful || killed {
                    return;
                }
                // A fast stop during a graceful one shortens the wait.
                deadline.min(now + wait)
            }
            _ => now + wait,
        };
        let workers = self.table.live_count();
        if graceful {
            log::info!(
                "{why}: graceful stop, {workers} workers finishing in-flight requests (up to {:?})",
                self.config.server.graceful_timeout
            );
        } else {
            log::info!("{why}: fast stop of {workers} workers");
        }
        let _ = sys::sd_notify("STOPPING=1");
        self.phase = Phase::Stopping {
            deadline,
            killed: false,
        };
        // Handing over to a new master, the workers drain their keep-alive connections
        // instead of closing them: the new master's workers take over the clients.
        self.signal_all(match (graceful, self.handed_over) {
            (true, false) => Signal::SIGTERM,
            (true, true) => Signal::SIGUSR2,
            (false, _) => Signal::SIGQUIT,
        });
    }

    fn signal_all(&mut self, signal: Signal) {
        let pids: Vec<u32> = self.table.live().map(|(_, w)| w.pid).collect();
        for pid in pids {
            if let Err(err) = sys::send_signal(pid, signal) {
                log::error!("could not send {} to worker {pid}: {err}", signal.as_str());
            }
            self.table.mark_retiring(pid);
        }
    }

    fn reconcile(&mut self) -> Result<(), MasterError> {
        if self.stopping() {
            return Ok(());
        }
        let now = Instant::now();
        for action in self.table.plan(now) {
            match action {
                Action::Spawn { slot } => {
                    let Some(board) = self.table.free_board(scoreboard::CAPACITY) else {
                        return Err(MasterError::ScoreboardFull);
                    };
                    match self.spawn(slot, board) {
                        Ok(pid) => {
                            self.table.spawned(slot, pid, board, now);
                            log::debug!("started worker {slot} (pid {pid})");
                        }
                        Err(err) if self.phase == Phase::Starting => {
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
                    if let Err(err) = sys::send_signal(pid, Signal::SIGTERM) {
                        log::error!("could not signal worker {pid}: {err}");
                    }
                    self.table.mark_retiring(pid);
                }
            }
        }
        if self.phase == Phase::Starting && self.table.all_ready() {
            self.phase = Phase::Running;
            self.announce_ready();
            if let Some(old) = self.upgrade_from.take() {
                // This master is up: the one it replaces can go.
                log::info!(
                    "upgrade: this master is ready; telling the old master (pid {old}) to stop"
                );
                let _ = sys::sd_notify(&format!("MAINPID={}", std::process::id()));
                if let Err(err) = sys::send_signal(old, Signal::SIGTERM) {
                    log::error!("could not signal the old master {old}: {err}");
                }
            }
            if self.reload_again {
                self.reload_again = false;
                self.begin_reload();
            }
        }
        if self.reload.is_some() && self.table.all_ready() {
            // Every new worker is up: whatever remains of the old generation goes now.
            while let Some(pid) = self.table.retire_one_previous() {
                self.retire_old(pid);
            }
            if self.table.previous_count() == 0 {
                self.finish_reload();
            }
        } else if let Some(reload) = &self.reload {
            // New workers that keep crashing never report ready: without a bound the old
            // generation would serve for ever and every later HUP would wait behind this one.
            let limit = self.config.server.timeout.max(Duration::from_secs(10));
            if reload.started.elapsed() > limit {
                self.rollback_reload(&format!(
                    "the new workers were not all ready within {}",
                    format_lifetime(limit)
                ));
                if self.reload_again {
                    self.reload_again = false;
                    self.begin_reload();
                }
            }
        }
        Ok(())
    }

    /// Reads the config again and starts a new generation of workers with it. Nothing changes
    /// unless the whole file is valid and every new address could be bound.
    fn begin_reload(&mut self) {
        let _ = sys::sd_notify(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading",
            sys::monotonic_ms().saturating_mul(1000)
        ));
        log::info!("SIGHUP: reloading the config");
        let loaded = match (self.load)() {
            Ok(loaded) => loaded,
            Err(text) => {
                for line in text.lines() {
                    log::error!("reload failed: {line}");
                }
                log::error!("reload failed; still serving with the previous config");
                let _ = sys::sd_notify(
                    "READY=1\nSTATUS=reload failed: the config has errors (see the log); still serving the previous config",
                );
                return;
            }
        };
        let Loaded {
            mut config,
            workers,
        } = loaded;
        if preloads(&self.config) || preloads(&config) {
            // The application lives in this process: only a new master imports new code. It
            // starts as an upgrade does; this one serves until it is ready, and stays if it
            // fails (its log says why).
            log::info!(
                "reload: the application is preloaded in the master, so a new master imports \
                 the new code (as SIGUSR2 does)"
            );
            self.begin_upgrade();
            if self.upgrade_child.is_none() {
                let _ = sys::sd_notify("READY=1\nSTATUS=reload failed; still serving");
            }
            return;
        }
        for key in keep_restart_only_settings(&self.config, &mut config) {
            log::warn!("reload: {key} changed, which takes a restart; keeping the old value");
        }
        let new = match crate::listeners::bind_missing(
            &config.server.bind,
            &self.listeners,
            config.server.backlog,
            // socket_mode and socket_owner take a restart: the running ones apply.
            &self.unix,
        ) {
            Ok(new) => new,
            Err(err) => {
                log::error!("reload failed: {err}; still serving with the previous config");
                let _ = sys::sd_notify(&format!(
                    "READY=1\nSTATUS=reload failed: {err}; still serving the previous config"
                ));
                return;
            }
        };
        for listener in &new {
            if let Ok(addr) = listener.local_addr() {
                log::info!("reload: now also listening on {addr}");
            }
        }
        self.listeners.extend(new);
        let wanted_files = config.server.max_connections.get() as u64 + 256;
        if let Ok(limit) = sys::ensure_open_files(wanted_files)
            && limit < wanted_files
        {
            log::warn!(
                "reload: the open files limit is {limit}, below the {wanted_files} max_connections needs"
            );
        }
        crate::logging::set_level(config.log.level);
        if config.log.error_log != self.config.log.error_log
            && let Err(err) = crate::logging::set_file(config.log.error_log.as_deref())
        {
            log::error!("reload: could not open the new error log: {err}; keeping the old one");
            config.log.error_log = self.config.log.error_log.clone();
        }
        let old_config = std::mem::replace(&mut self.config, config);
        let old_desired = self.table.desired();
        self.tick = (self.config.server.timeout / 4).clamp(Duration::from_millis(10), MAX_TICK);
        self.table.begin_generation();
        self.table.set_desired(workers);
        self.reload = Some(Reload {
            old_config,
            old_desired,
            started: Instant::now(),
        });
        log::info!("reload: starting {workers} workers with the new config");
    }

    /// Tells a worker of the previous generation to finish what it has and exit.
    fn retire_old(&mut self, pid: u32) {
        // SIGUSR2 asks a worker to drain: its idle keep-alive clients get a moment to send a
        // request, answered with `Connection: close`, so a reload resets no connection.
        if let Err(err) = sys::send_signal(pid, Signal::SIGUSR2) {
            log::error!("could not signal worker {pid}: {err}");
        }
    }

    fn finish_reload(&mut self) {
        let Some(reload) = self.reload.take() else {
            return;
        };
        self.close_unused_listeners();
        let workers = self.table.desired();
        log::info!(
            "reload complete in {}: {workers} workers with the new config",
            format_lifetime(reload.started.elapsed())
        );
        let _ = sys::sd_notify(&format!(
            "READY=1\nSTATUS=reloaded: {workers} workers, {} threads each",
            self.config.server.threads
        ));
        self.last_status.clear();
        if self.reload_again {
            self.reload_again = false;
            self.begin_reload();
        }
    }

    /// Puts the previous generation back after the new one failed to start.
    fn rollback_reload(&mut self, why: &str) {
        let Some(reload) = self.reload.take() else {
            return;
        };
        log::error!("reload failed: {why}; going back to the previous config");
        self.config = reload.old_config;
        crate::logging::set_level(self.config.log.level);
        self.tick = (self.config.server.timeout / 4).clamp(Duration::from_millis(10), MAX_TICK);
        for pid in self.table.rollback_generation() {
            let _ = sys::send_signal(pid, Signal::SIGTERM);
        }
        // Old workers already retired for new ones that were up are started again.
        self.table.set_desired(reload.old_desired);
        self.close_unused_listeners();
        let _ = sys::sd_notify(&format!(
            "READY=1\nSTATUS=reload failed: {why}; still serving the previous config"
        ));
    }

    /// Closes listeners the current config no longer lists (sockets systemd handed over stay).
    fn close_unused_listeners(&mut self) {
        let binds = self.config.server.bind.clone();
        self.listeners.retain(|listener| {
            let keep = listener.activated || binds.iter().any(|b| listener.serves(b));
            if !keep {
                log::info!("no longer listening on {}", listener.bind);
                listener.remove_socket_file();
            }
            keep
        });
    }

    /// Starts the binary on disk as a new master, handing it every listening socket. The new
    /// master tells this one to stop once its workers are ready; if it fails, this one keeps
    /// serving.
    fn begin_upgrade(&mut self) {
        if let Some(pid) = self.upgrade_child {
            log::warn!("SIGUSR2: an upgrade is already under way (new master pid {pid})");
            return;
        }
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
                self.upgrade_child = Some(pid);
            }
            Err(err) => log::error!(
                "upgrade failed: could not start {}: {}; still serving",
                self.exe.display(),
                crate::describe_io(&err)
            ),
        }
    }

    /// Reads every worker's scoreboard slot: starts replacements for workers that are
    /// recycling themselves, and kills the ones whose heartbeat stopped.
    fn watch_workers(&mut self) {
        if self.stopping() {
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
                let reason = view
                    .retire
                    .map_or_else(|| "it asked to".to_owned(), |r| r.to_string());
                log::info!(
                    "worker {slot} (pid {}) is recycling: it {reason}; starting its replacement",
                    worker.pid
                );
                self.table.detach(worker.pid);
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
                    if let Err(err) = sys::send_signal(worker.pid, Signal::SIGABRT) {
                        log::error!("could not signal worker {}: {err}", worker.pid);
                    }
                    self.table.mark_aborted(worker.pid, now);
                }
                Some(at) if now.duration_since(at) >= HUNG_KILL_GRACE => {
                    let _ = sys::send_signal(worker.pid, Signal::SIGKILL);
                }
                _ => {}
            }
        }
    }

    /// Proves to systemd that this loop turns: sent from the loop itself, so a master stuck
    /// anywhere stops feeding the watchdog and systemd restarts it.
    fn feed_watchdog(&mut self) {
        if let Some((every, last)) = self.watchdog
            && last.elapsed() >= every
        {
            let _ = sys::sd_notify("WATCHDOG=1");
            self.watchdog = Some((every, Instant::now()));
        }
    }

    /// Keeps a departed worker's counters in the totals and counts why it went.
    fn count_departure(&mut self, departure: &table::Departure, how: ExitHow) {
        let view = self.scoreboard.view(departure.board);
        self.retired.add(&totals_of(&view));
        if self.stopping() {
            return;
        }
        let reason = match view.retire {
            Some(RetireReason::MaxRequests(_)) => "max_requests",
            Some(RetireReason::Memory(_)) => "max_worker_memory",
            Some(RetireReason::RequestTimeout(_)) => "request_timeout",
            Some(RetireReason::Replaced) => "reload",
            None if departure.was_hung => "hung",
            None if departure.was_retiring => "reload",
            None if how == ExitHow::Code(0) => "exited",
            None => "crashed",
        };
        if let Some(i) = RESTART_REASONS.iter().position(|r| *r == reason) {
            self.restarts[i] += 1;
        }
    }

    /// What `tine status` and `/metrics` show.
    fn snapshot(&self) -> status::Snapshot {
        let now_ms = sys::monotonic_ms();
        let mut totals = self.retired.clone();
        let mut workers = Vec::new();
        for (slot, worker) in self.table.live() {
            let view = self.scoreboard.view(worker.board);
            totals.add(&totals_of(&view));
            let state = if worker.retiring {
                "stopping"
            } else if view.state == WorkerState::Retiring {
                "recycling"
            } else if worker.ready {
                "ready"
            } else {
                "starting"
            };
            workers.push(status::WorkerStatus {
                pid: worker.pid,
                slot,
                generation: worker.generation,
                age: worker.started.elapsed(),
                state,
                requests: view.requests,
                busy: view.busy,
                connections: view.connections,
                oldest_request: (view.oldest_request_ms > 0)
                    .then(|| Duration::from_millis(now_ms.saturating_sub(view.oldest_request_ms))),
                memory: sys::private_memory_of(worker.pid).ok(),
            });
        }
        workers.sort_by_key(|w| (w.slot, w.generation));
        let phase = match self.phase {
            Phase::Starting => "starting",
            Phase::Stopping { .. } => "stopping",
            Phase::Running if self.reload.is_some() => "reloading",
            Phase::Running => "running",
        };
        status::Snapshot {
            master_pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION"),
            uptime: self.started.elapsed(),
            phase,
            desired: self.table.desired(),
            threads: self.config.server.threads.get(),
            workers,
            totals,
            restarts: RESTART_REASONS
                .iter()
                .copied()
                .zip(self.restarts.iter().copied())
                .collect(),
            listen_queues: self.listen_queues(),
        }
    }

    /// Accept-queue lengths of the TCP listeners, from /proc/net/tcp{,6}.
    fn listen_queues(&self) -> Vec<(String, u64)> {
        let mut rows = Vec::new();
        for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
            if let Ok(text) = std::fs::read_to_string(file) {
                rows.extend(status::parse_listen_queues(&text));
            }
        }
        self.listeners
            .iter()
            .filter_map(|l| match l.local_addr() {
                Ok(crate::config::BindAddr::Tcp(addr)) => {
                    let key = status::proc_net_key(addr);
                    let depth = rows.iter().find(|(k, _)| *k == key).map(|(_, d)| *d)?;
                    Some((addr.to_string(), depth))
                }
                _ => None,
            })
            .collect()
    }

    fn answer_operators(&mut self, requests: Vec<(usize, ops::OpsRequest)>) {
        if requests.is_empty() {
            return;
        }
        let snapshot = self.snapshot();
        let (Some(ops), Some(poll)) = (self.ops.as_mut(), self.poll.as_ref()) else {
            return;
        };
        for (index, request) in requests {
            let response = match request {
                ops::OpsRequest::StatusTable => status::render_table(&snapshot).into_bytes(),
                ops::OpsRequest::StatusJson => status::render_json(&snapshot).into_bytes(),
                ops::OpsRequest::Metrics => ops::http_response(
                    200,
                    "text/plain; version=0.0.4; charset=utf-8",
                    &status::render_prometheus(&snapshot),
                ),
                ops::OpsRequest::Health if snapshot.healthy() => {
                    ops::http_response(200, "text/plain; charset=utf-8", "ok\n")
                }
                ops::OpsRequest::Health => ops::http_response(
                    503,
                    "text/plain; charset=utf-8",
                    &format!("{}\n", snapshot.phase),
                ),
                ops::OpsRequest::Unknown if ops.is_http(index) => ops::http_response(
                    404,
                    "text/plain; charset=utf-8",
                    "try /metrics or /healthz\n",
                ),
                ops::OpsRequest::Unknown => {
                    b"unknown command; try \"status\" or \"status json\"\n".to_vec()
                }
            };
            ops.answer(index, response, poll.registry());
        }
    }

    /// Tells the service manager how things stand, at most once a second and only on change.
    fn report_status(&mut self) {
        if self.phase != Phase::Running
            || self
                .last_status_at
                .is_some_and(|at| at.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        let (mut busy, mut served) = (0, 0);
        let mut workers = 0;
        for (_, worker) in self.table.live() {
            let view = self.scoreboard.view(worker.board);
            busy += view.busy;
            served += view.requests;
            workers += 1;
        }
        let status = format!("{workers} workers, {busy} busy, {served} requests served");
        if status != self.last_status {
            let _ = sys::sd_notify(&format!("STATUS={status}"));
            self.last_status = status;
        }
        self.last_status_at = Some(Instant::now());
    }

    fn announce_ready(&self) {
        let workers = self.table.desired();
        let threads = self.config.server.threads;
        log::info!("ready: {workers} workers × {threads} threads");
        let status = format!("READY=1\nSTATUS={workers} workers, {threads} threads each");
        if let Err(err) = sys::sd_notify(&status) {
            log::warn!("could not notify the service manager: {err}");
        }
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
                    .filter(|l| l.activated || binds.iter().any(|b| l.serves(b)))
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
                })
            }
        }
    }

    fn read_reports(&mut self) {
        let Some(pipe) = self.report_rx.as_mut() else {
            return;
        };
        let mut chunk = [0u8; 512];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => self.report_buf.extend_from_slice(&chunk[..n]),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        let whole = self.report_buf.len() / 4 * 4;
        let reports: Vec<u32> = self.report_buf[..whole]
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        self.report_buf.drain(..whole);
        for pid in reports {
            let newly = !self.table.is_ready(pid);
            if let Some(slot) = self.table.mark_ready(pid)
                && newly
            {
                log::debug!("worker {slot} (pid {pid}) is ready");
                if self.reload.is_some()
                    && let Some(old) = self.table.retire_one_previous()
                {
                    self.retire_old(old);
                }
            }
        }
    }

    fn reap(&mut self) {
        loop {
            let (pid, how) = match sys::reap_child() {
                Ok(Some(exit)) => exit,
                Ok(None) => return,
                Err(err) => {
                    log::error!("waitpid failed: {err}");
                    return;
                }
            };
            if Some(pid) == self.upgrade_child {
                self.upgrade_child = None;
                if self.handed_over {
                    continue;
                }
                log::error!("upgrade failed: the new master (pid {pid}) {how}; still serving");
                let _ = sys::sd_notify(&format!(
                    "READY=1\nSTATUS=upgrade failed: the new master {how}; still serving"
                ));
                continue;
            }
            let now = Instant::now();
            // A worker that recycled itself and exited before the master noticed: it is
            // still a recycle, not a crash (and no reason for a restart delay).
            let recycled = self.table.live().any(|(_, w)| {
                w.pid == pid
                    && !w.retiring
                    && self.scoreboard.view(w.board).state == WorkerState::Retiring
            });
            if recycled {
                self.table.detach(pid);
            }
            let Some(departure) = self.table.exited(pid, now) else {
                log::debug!("reaped unknown child {pid} ({how})");
                continue;
            };
            self.count_departure(&departure, how);
            let slot = departure.slot;
            let lived = format_lifetime(departure.lived);
            let expected = departure.was_retiring && how == ExitHow::Code(0);
            if expected {
                log::info!("worker {slot} (pid {pid}) exited after {lived}");
            } else if self.stopping() {
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
            let boot_failure = matches!(how, ExitHow::Code(code) if worker::is_boot_failure(code));
            if boot_failure && self.reload.is_some() && !departure.was_retiring {
                self.rollback_reload(&format!("a new worker {how} while starting"));
            } else if let ExitHow::Code(code) = how
                && worker::is_boot_failure(code)
                && self.phase == Phase::Starting
            {
                // Every worker builds the same application as the same user: if one cannot,
                // none can, and retrying for ever would hide the error from the operator.
                self.failure = Some(MasterError::BootFailed { slot, code });
                self.begin_stop(false, "a worker failed to start");
            } else if !departure.restart_in.is_zero() {
                let status = format!(
                    "STATUS=worker {slot} keeps dying ({how}); restarting it in {:?}",
                    departure.restart_in
                );
                let _ = sys::sd_notify(&status);
            }
        }
    }

    fn finish(&mut self) {
        if !self.handed_over {
            for listener in &self.listeners {
                listener.remove_socket_file();
            }
            if let Some(ops) = &self.ops {
                ops.remove_control_file();
            }
        }
        log::info!("stopped");
    }
}

/// Why workers were replaced, as `/metrics` labels them.
pub const RESTART_REASONS: [&str; 7] = [
    "crashed",
    "exited",
    "hung",
    "max_requests",
    "max_worker_memory",
    "request_timeout",
    "reload",
];

/// A worker's counters as totals.
fn totals_of(view: &crate::scoreboard::SlotView) -> status::Totals {
    status::Totals {
        requests: view.requests,
        status_classes: view.status_classes,
        duration_sum_us: view.duration_sum_us,
        duration_buckets: view.duration_buckets,
    }
}

/// Half of systemd's `WATCHDOG_USEC`, when the watchdog is on and meant for this process
/// (`WATCHDOG_PID`, when set, names it or the master it upgrades).
fn watchdog_interval(upgrade_from: Option<u32>) -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        let pid: u32 = pid.trim().parse().ok()?;
        if pid != std::process::id() && Some(pid) != upgrade_from {
            return None;
        }
        sys::claim_watchdog();
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// Marks, in the names handed to a new master, sockets that came from systemd.
pub const ACTIVATED_PREFIX: &str = "activated:";

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

/// `1.2s`, `3m04s`, `2h05m`: short and exact enough for a log line.
fn format_lifetime(lived: Duration) -> String {
    let secs = lived.as_secs();
    if secs < 60 {
        format!("{:.1}s", lived.as_secs_f64())
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3600, secs % 3600 / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_become_intents() {
        assert_eq!(Intent::from_signal(SIGTERM), Intent::GracefulStop);
        assert_eq!(Intent::from_signal(SIGINT), Intent::FastStop);
        assert_eq!(Intent::from_signal(SIGQUIT), Intent::FastStop);
        assert_eq!(Intent::from_signal(SIGTTIN), Intent::AddWorker);
        assert_eq!(Intent::from_signal(SIGTTOU), Intent::RemoveWorker);
        assert_eq!(Intent::from_signal(SIGCHLD), Intent::ReapChildren);
        assert_eq!(Intent::from_signal(SIGHUP), Intent::Reload);
        assert_eq!(Intent::from_signal(SIGUSR2), Intent::Upgrade);
        assert_eq!(Intent::from_signal(SIGUSR1), Intent::ReopenLogs);
        assert_eq!(Intent::from_signal(SIGWINCH), Intent::Unsupported(SIGWINCH));
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

    #[test]
    fn lifetimes_read_well() {
        assert_eq!(format_lifetime(Duration::from_millis(1234)), "1.2s");
        assert_eq!(format_lifetime(Duration::from_secs(184)), "3m04s");
        assert_eq!(format_lifetime(Duration::from_secs(7500)), "2h05m");
    }
}
