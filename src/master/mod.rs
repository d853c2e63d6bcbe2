//! The master process: forks the workers, then only supervises them.
//!
//! It is single-threaded and never starts a thread, so `fork` stays safe. Signals become intents
//! at the edge ([`Intent`], in [`crate::protocol`]); each turn of the loop reaps exited
//! children, then reconciles the wanted workers against the live ones through the pure
//! [`table::WorkerTable`]. What the master is doing at any moment is its `Phase`.
//!
//! - `mod.rs`: the [`Master`], its phase, its loop, and what each intent does.
//! - `supervise`: forking, reaping and watching workers.
//! - [`reload`]: SIGHUP, with its rules in the pure [`reload::ReloadState`].
//! - [`upgrade`]: binary upgrades (SIGUSR2).
//! - [`report`]: status, metrics, the service manager and the watchdog.
//! - [`sizing`]: the worker count under a cgroup memory limit, from measured workers.

pub mod ops;
pub mod reload;
pub mod report;
pub mod sizing;
mod supervise;
pub mod table;
pub mod upgrade;

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use nix::sys::signal::Signal;
use signal_hook_mio::v1_0::Signals;

use crate::config::Config;
use crate::handler::HandlerFactory;
use crate::listeners::tls::{self, TlsError};
use crate::listeners::{Listener, UnixOptions};
use crate::pidfile::Pidfile;
use crate::protocol::{self, ReportDecoder, SCOREBOARD_CAPACITY, Scoreboard, WorkerIntent};
use crate::status;
use crate::sys;
use reload::{Next, Reload};
use sizing::Sizer;
use table::WorkerTable;
use upgrade::Upgrade;

pub use crate::protocol::Intent;
pub use report::RESTART_REASONS;
pub use upgrade::ACTIVATED_PREFIX;

const SIGNALS: Token = Token(0);
const REPORT_PIPE: Token = Token(1);

/// Whether `config` imports its application in the master.
fn preloads(config: &Config) -> bool {
    config.app.handler == crate::config::HandlerKind::Python && config.app.preload
}

/// How long the loop sleeps at most between checks of its timers and the heartbeats.
const MAX_TICK: Duration = Duration::from_secs(1);
/// How long a hung worker has between SIGABRT (which may leave a core dump to debug it by)
/// and SIGKILL.
const HUNG_KILL_GRACE: Duration = Duration::from_secs(2);
/// How long a fast stop waits for workers to exit before killing them.
const FAST_STOP_GRACE: Duration = Duration::from_secs(5);

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
    /// A `[tls]` file could not be used.
    Tls(TlsError),
}

impl fmt::Display for MasterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MasterError::Setup { step, source } => {
                write!(f, "could not {step}: {}", crate::text::describe_io(source))
            }
            MasterError::Fork(source) => {
                write!(
                    f,
                    "could not fork a worker: {}",
                    crate::text::describe_io(source)
                )
            }
            MasterError::BootFailed { slot, code } => write!(
                f,
                "worker {slot} failed to start (exit code {code}; its error is logged above), so no worker can; stopped"
            ),
            MasterError::Ops(err) => write!(f, "{err}"),
            MasterError::Tls(err) => write!(f, "{err}"),
            MasterError::ScoreboardFull => write!(
                f,
                "no free scoreboard slot: {} worker processes at once is the most tine tracks",
                SCOREBOARD_CAPACITY
            ),
        }
    }
}

impl std::error::Error for MasterError {}

/// What the master is doing. Each phase owns the data only it needs, so a reload and an
/// upgrade at once, or a stop that forgets who took over, cannot be written down.
#[derive(Debug)]
enum Phase {
    /// Workers starting; READY not yet sent.
    Starting {
        /// The master this one replaces (binary upgrade), told to stop once this one is ready.
        replaces: Option<u32>,
        /// What was asked for meanwhile, done once ready.
        next: Option<Next>,
    },
    /// Serving, nothing under way.
    Running,
    /// Serving while a new generation of workers comes up (SIGHUP).
    Reloading(Reload),
    /// Serving while a new master starts (SIGUSR2).
    Upgrading(Upgrade),
    /// SIGTERM came with `[server] drain_delay`: `/healthz` answers 503 while the workers
    /// serve on, until the graceful stop begins.
    Draining(Drain),
    /// Stopping: the workers are told, and the master exits once they are gone.
    Stopping(Stop),
}

/// A drain under way: the graceful stop it leads to begins at `until`.
#[derive(Debug)]
struct Drain {
    until: Instant,
}

/// A stop under way.
#[derive(Debug)]
struct Stop {
    /// When the remaining workers get SIGKILL.
    deadline: Instant,
    /// Whether they have.
    killed: bool,
    /// The new master that took over (binary upgrade): the sockets are its now, and nothing
    /// of theirs is removed on exit.
    successor: Option<u32>,
    /// Whether the shared files (unix socket files, the control socket) are this master's
    /// to remove on exit: not once a successor took them over, nor for a master started by an
    /// upgrade that stops before it took over from the one it was to replace.
    owns_files: bool,
    /// What ends the master with an error once the workers are gone.
    failure: Option<MasterError>,
}

/// Why the master stops.
#[derive(Debug)]
enum StopKind {
    /// Finish in-flight requests (SIGTERM); `why` is for the log.
    Graceful(&'static str),
    /// Now (SIGINT, SIGQUIT).
    Fast(&'static str),
    /// A new master took over: the workers drain their clients for it.
    HandedOver(u32),
    /// Something that makes every worker useless: stop fast, and fail.
    Failed(MasterError),
}

impl Phase {
    /// The phase as `tine status` names it.
    fn name(&self) -> &'static str {
        match self {
            Phase::Starting { .. } => "starting",
            Phase::Running | Phase::Upgrading(_) => "running",
            Phase::Reloading(_) => "reloading",
            Phase::Draining(_) => "draining",
            Phase::Stopping(_) => "stopping",
        }
    }

    fn is_stopping(&self) -> bool {
        matches!(self, Phase::Stopping(_))
    }

    /// Whether the workers are up and serving (status lines are worth sending).
    fn is_serving(&self) -> bool {
        matches!(
            self,
            Phase::Running | Phase::Reloading(_) | Phase::Upgrading(_)
        )
    }
}

/// A config re-read for a reload, with what the master works out from it.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The validated config, command-line overrides applied.
    pub config: Config,
    /// What its worker count is worked out from.
    pub sizing: crate::cpu::Sizing,
}

/// Re-reads the config; the error keeps every problem found.
pub type LoadConfig<'a> = &'a dyn Fn() -> Result<Loaded, crate::config::LoadError>;

/// What the master starts with.
pub struct MasterSetup<'a> {
    /// The config.
    pub config: Config,
    /// How many workers to run.
    pub workers: usize,
    /// How that count was decided, and whether a worker is still to be measured for it.
    pub sizer: Sizer,
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
    /// The pid file, removed when the master exits (unless a new master took it over).
    pub pidfile: Option<Pidfile>,
}

/// Everything the master needs to run.
pub struct Master<'a> {
    config: Config,
    load: LoadConfig<'a>,
    unix: UnixOptions,
    exe: PathBuf,
    args: Vec<OsString>,
    start_dir: Option<PathBuf>,
    /// The pid file, if any: removed when the master exits, reclaimed from a failed upgrade.
    pidfile: Option<Pidfile>,
    /// The new master of an upgrade abandoned while it was still starting: the pid file is
    /// reclaimed from it once it has exited, since on its way out it removes the file if the
    /// file names it (reclaimed before, the file could go with it).
    abandoned_upgrade: Option<u32>,
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
    /// `[tls]`, read from its files: the workers forked serve every connection with it.
    tls: Option<tls::Loaded>,
    factory: &'a dyn HandlerFactory,
    table: WorkerTable,
    /// How the worker count is decided under a memory limit.
    sizer: Sizer,
    /// What the master is doing.
    phase: Phase,
    scoreboard: Scoreboard,
    identity: sys::Identity,
    tick: Duration,
    last_status: String,
    last_status_at: Option<Instant>,
    /// The workers' recent counters and episodes of waiting.
    watch: report::Watch,
    // Master-only state, dropped in each child right after fork.
    poll: Option<Poll>,
    signals: Option<Signals>,
    report_rx: Option<mio::unix::pipe::Receiver>,
    report_tx: OwnedFd,
    reports: ReportDecoder,
}

impl<'a> Master<'a> {
    /// Prepares the master: event loop, signal handlers and the pipe workers report ready on.
    pub fn new(setup: MasterSetup<'a>) -> Result<Self, MasterError> {
        let MasterSetup {
            config,
            workers,
            sizer,
            listeners,
            factory,
            identity,
            load,
            exe,
            args,
            upgrade_from,
            unix,
            start_dir,
            pidfile,
        } = setup;
        // First: a certificate that cannot be served stops tine before anything else starts.
        let tls = tls::load(&config.tls).map_err(MasterError::Tls)?;
        if let Some(tls) = &tls {
            log::info!("{}", tls.describe());
        }
        let setup =
            |step: &'static str| move |source: io::Error| MasterError::Setup { step, source };
        let poll = Poll::new().map_err(setup("create the event loop"))?;
        let mut signals =
            Signals::new(Intent::SIGNALS).map_err(setup("install signal handlers"))?;
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
        let tick = tick_for(&config);
        Ok(Master {
            load,
            unix,
            exe,
            args,
            start_dir,
            pidfile,
            abandoned_upgrade: None,
            watchdog: report::watchdog_interval(upgrade_from).map(|every| (every, Instant::now())),
            ops: Some(ops),
            started: Instant::now(),
            retired: status::Totals::default(),
            restarts: [0; RESTART_REASONS.len()],
            scoreboard,
            identity,
            tick,
            last_status: String::new(),
            last_status_at: None,
            watch: report::Watch::default(),
            config,
            listeners,
            tls,
            factory,
            table: WorkerTable::new(workers),
            sizer,
            phase: Phase::Starting {
                replaces: upgrade_from,
                next: None,
            },
            poll: Some(poll),
            signals: Some(signals),
            report_rx: Some(report_rx),
            report_tx: write_end,
            reports: ReportDecoder::default(),
        })
    }

    /// Runs until the master is told to stop and every worker has exited.
    pub fn run(mut self) -> Result<(), MasterError> {
        let mut events = Events::with_capacity(64);
        loop {
            self.watch_workers();
            self.reconcile()?;
            self.report_status();
            self.watch_workers_load();
            self.watch_upgrade();
            if let Phase::Draining(drain) = &self.phase
                && Instant::now() >= drain.until
            {
                self.begin_stop(StopKind::Graceful("drain_delay over"));
            }
            if let Phase::Stopping(stop) = &mut self.phase {
                if self.table.live_count() == 0 {
                    let failure = stop.failure.take();
                    self.finish();
                    return match failure {
                        Some(failure) => Err(failure),
                        None => Ok(()),
                    };
                }
                if !stop.killed && Instant::now() >= stop.deadline {
                    stop.killed = true;
                    let left = self.table.live_count();
                    log::warn!("{left} workers still running at the stop deadline; killing them");
                    self.tell_all(WorkerIntent::Kill);
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
        match &self.phase {
            Phase::Stopping(stop) if !stop.killed => {
                timeout = timeout.min(stop.deadline.saturating_duration_since(now));
            }
            Phase::Draining(drain) => {
                timeout = timeout.min(drain.until.saturating_duration_since(now));
            }
            _ => {}
        }
        timeout
    }

    fn apply(&mut self, intent: Intent) {
        match intent {
            Intent::GracefulStop => match &self.phase {
                Phase::Upgrading(upgrade) if sys::process_exists(upgrade.child) => {
                    // The new master is ready and asks this one to go.
                    let child = upgrade.child;
                    log::info!("upgrade: the new master (pid {child}) has taken over");
                    let _ = sys::sd_notify(&format!("MAINPID={child}"));
                    self.begin_stop(StopKind::HandedOver(child));
                }
                Phase::Draining(_) => {
                    log::info!("SIGTERM again: the drain ends now");
                    self.begin_stop(StopKind::Graceful("SIGTERM"));
                }
                Phase::Running if !self.config.server.drain_delay.is_zero() => {
                    self.begin_drain();
                }
                // The generation serving is the previous one: its config says whether to
                // drain (the reload's is not in force until it completes).
                Phase::Reloading(reload) if !reload.old_config.server.drain_delay.is_zero() => {
                    // The reload is given up: its workers would otherwise be restarted (or
                    // waited for) through the drain, beside the generation they replace.
                    let Phase::Reloading(reload) =
                        std::mem::replace(&mut self.phase, Phase::Running)
                    else {
                        unreachable!("matched above");
                    };
                    self.rollback_reload(reload, "SIGTERM came before it was complete");
                    self.begin_drain();
                }
                _ => self.begin_stop(StopKind::Graceful("SIGTERM")),
            },
            Intent::FastStop => self.begin_stop(StopKind::Fast("SIGINT/SIGQUIT")),
            Intent::AddWorker | Intent::RemoveWorker if self.phase.is_stopping() => {}
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
            Intent::Reload => self.ask(Next::Reload),
            Intent::Upgrade => self.ask(Next::Upgrade),
            Intent::ReopenLogs => {
                let owner = self.identity.user.as_ref().map(|(_, uid)| *uid);
                if let Some(crate::access_log::Target::File(path)) = &self.config.log.access_log
                    && let Err(err) = crate::logging::prepare_file(path, owner)
                {
                    log::error!(
                        "SIGUSR1: could not open the new access log {}: {err}",
                        path.display()
                    );
                }
                match crate::logging::reopen_for(owner) {
                    Ok(()) => log::info!("SIGUSR1: log files reopened"),
                    Err(err) => log::error!("SIGUSR1: could not reopen the error log: {err}"),
                }
                let pids: Vec<u32> = self.table.live().map(|(_, w)| w.pid).collect();
                for pid in pids {
                    let _ = protocol::tell(pid, WorkerIntent::ReopenLogs);
                }
            }
            Intent::Unsupported(signal) => {
                let name = Signal::try_from(signal).map_or("signal", |s| s.as_str());
                log::warn!("{name} received; this version of tine does not act on it, ignored");
            }
        }
    }

    /// A reload or an upgrade: now when nothing else is under way, else once it ends (one at
    /// a time; never while stopping).
    fn ask(&mut self, next: Next) {
        let signal = match next {
            Next::Reload => "SIGHUP",
            Next::Upgrade => "SIGUSR2",
        };
        match &mut self.phase {
            Phase::Stopping(_) => {}
            Phase::Draining(_) => {
                log::info!("{signal} ignored: draining before the stop");
            }
            Phase::Running => self.start_next(Some(next)),
            Phase::Starting { next: pending, .. } => {
                log::info!("{signal}: runs once every worker is up");
                reload::queue(pending, next);
            }
            Phase::Reloading(_) => {
                log::info!("{signal}: runs once the reload under way ends");
                self.step_reload(reload::ReloadEvent::Queue(next));
            }
            Phase::Upgrading(upgrade) if next == Next::Upgrade => log::warn!(
                "SIGUSR2: an upgrade is already under way (new master pid {})",
                upgrade.child
            ),
            // Run if the new master does not take over; if it does, it read the file itself.
            Phase::Upgrading(upgrade) => {
                log::info!("{signal}: runs if the upgrade under way does not take over");
                reload::queue(&mut upgrade.next, next);
            }
        }
    }

    /// Starts what waited for the operation that just ended, if anything did.
    fn start_next(&mut self, next: Option<Next>) {
        match next {
            None => {}
            Some(Next::Reload) => self.begin_reload(),
            Some(Next::Upgrade) => self.begin_upgrade(),
        }
    }

    /// SIGTERM with `drain_delay`: `/healthz` turns 503 (the phase says `draining`) while
    /// the workers keep serving; the graceful stop begins when the delay is over. A reload
    /// under way was rolled back first: the previous generation serves the drain.
    fn begin_drain(&mut self) {
        let delay = self.config.server.drain_delay;
        self.phase = Phase::Draining(Drain {
            until: Instant::now() + delay,
        });
        let delay = crate::config::format_duration(delay);
        log::info!(
            "SIGTERM: draining for {delay} before stopping (drain_delay): /healthz answers 503"
        );
        let _ = sys::sd_notify(&format!(
            "STOPPING=1\nSTATUS=draining for {delay} before stopping"
        ));
    }

    fn begin_stop(&mut self, kind: StopKind) {
        let now = Instant::now();
        let (graceful, why) = match &kind {
            StopKind::Graceful(why) => (true, *why),
            StopKind::HandedOver(_) => (true, "upgrade complete"),
            StopKind::Fast(why) => (false, *why),
            StopKind::Failed(_) => (false, "a worker failed to start"),
        };
        let wait = if graceful {
            // Workers enforce graceful_timeout themselves; the margin lets them exit on their own.
            self.config.server.graceful_timeout + Duration::from_secs(1)
        } else {
            FAST_STOP_GRACE
        };
        if let Phase::Stopping(stop) = &mut self.phase {
            if graceful || stop.killed {
                return;
            }
            // A fast stop during a graceful one shortens the wait.
            stop.deadline = stop.deadline.min(now + wait);
        } else {
            let (successor, failure) = match kind {
                StopKind::HandedOver(child) => (Some(child), None),
                StopKind::Failed(failure) => (None, Some(failure)),
                StopKind::Graceful(_) | StopKind::Fast(_) => (None, None),
            };
            let took_over = !matches!(
                self.phase,
                Phase::Starting {
                    replaces: Some(_),
                    ..
                }
            );
            self.phase = Phase::Stopping(Stop {
                deadline: now + wait,
                killed: false,
                successor,
                failure,
                owns_files: successor.is_none() && took_over,
            });
        }
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
        // Handing over to a new master, the workers drain their keep-alive connections
        // instead of closing them: the new master's workers take over the clients.
        let handed_over = matches!(&self.phase, Phase::Stopping(stop) if stop.successor.is_some());
        self.tell_all(match (graceful, handed_over) {
            (true, false) => WorkerIntent::GracefulStop,
            (true, true) => WorkerIntent::Drain,
            (false, _) => WorkerIntent::FastStop,
        });
    }

    fn tell_all(&mut self, intent: WorkerIntent) {
        let pids: Vec<u32> = self.table.live().map(|(_, w)| w.pid).collect();
        for pid in pids {
            if let Err(err) = protocol::tell(pid, intent) {
                log::error!(
                    "could not send {} to worker {pid}: {err}",
                    intent.signal().as_str()
                );
            }
            self.table.mark_retiring(pid);
        }
    }

    fn finish(&mut self) {
        if matches!(&self.phase, Phase::Stopping(stop) if stop.owns_files) {
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

/// How often the loop turns with nothing to wake it: a quarter of `timeout`, so a hung worker
/// is caught soon after its limit, within bounds.
fn tick_for(config: &Config) -> Duration {
    (config.server.timeout / 4).clamp(Duration::from_millis(10), MAX_TICK)
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
    fn lifetimes_read_well() {
        assert_eq!(format_lifetime(Duration::from_millis(1234)), "1.2s");
        assert_eq!(format_lifetime(Duration::from_secs(184)), "3m04s");
        assert_eq!(format_lifetime(Duration::from_secs(7500)), "2h05m");
    }
}
