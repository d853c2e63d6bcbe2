//! Everything the master and its workers say to each other, in one place.
//!
//! - **Signals.** What each signal means to the master ([`Intent`]) and to a worker
//!   ([`WorkerIntent`]), and the one function the master tells a worker something with
//!   ([`tell`]): both ends read the same table, so a signal cannot mean one thing to the
//!   sender and another to the receiver.
//! - **The report pipe.** A worker wakes the master to look at its scoreboard slot by writing
//!   its pid to a pipe every worker shares: [`encode_report`] on one end, [`ReportDecoder`] on
//!   the other.
//! - **The scoreboard.** The shared-memory slots a worker writes and the master reads; the
//!   layout lives in [`scoreboard`].
//! - **Exit codes.** What a worker's exit code tells the master ([`is_boot_failure`]).

use std::io;

use nix::sys::signal::Signal;
use signal_hook::consts::{
    SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGTTIN, SIGTTOU, SIGUSR1, SIGUSR2,
};

use crate::sys;

pub mod scoreboard;

pub use scoreboard::{
    CAPACITY as SCOREBOARD_CAPACITY, RetireReason, Scoreboard, SlotHandle, SlotView, WorkerState,
};

/// What the operator asked the master for, whatever signal carried it.
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
    /// The signals the master listens for.
    pub const SIGNALS: [i32; 9] = [
        SIGTERM, SIGINT, SIGQUIT, SIGCHLD, SIGHUP, SIGUSR1, SIGUSR2, SIGTTIN, SIGTTOU,
    ];

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

    /// The signal that carries this intent to a master.
    pub fn signal(self) -> Option<Signal> {
        let number = match self {
            Intent::GracefulStop => SIGTERM,
            // SIGINT rather than SIGQUIT: a master that has no handlers yet (still importing a
            // preloaded application) is ended without a core dump.
            Intent::FastStop => SIGINT,
            Intent::AddWorker => SIGTTIN,
            Intent::RemoveWorker => SIGTTOU,
            Intent::ReapChildren => SIGCHLD,
            Intent::Reload => SIGHUP,
            Intent::Upgrade => SIGUSR2,
            Intent::ReopenLogs => SIGUSR1,
            Intent::Unsupported(other) => other,
        };
        Signal::try_from(number).ok()
    }
}

/// Tells another master (the one a binary upgrade replaces, or a new one that is abandoned)
/// what this one wants of it.
pub fn tell_master(pid: u32, intent: Intent) -> io::Result<()> {
    match intent.signal() {
        Some(signal) => sys::send_signal(pid, signal),
        None => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no signal carries this intent",
        )),
    }
}

/// What the master asks of a worker, whatever signal carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerIntent {
    /// Stop taking connections, finish the requests in flight, close idle connections, exit
    /// (SIGTERM).
    GracefulStop,
    /// Make way for a replacement (a reload, an upgrade, an operator): like a graceful stop,
    /// but idle keep-alive clients get a moment to send one more request, answered with
    /// `Connection: close`, so nothing is reset (SIGUSR2).
    Drain,
    /// Reopen the log files (SIGUSR1).
    ReopenLogs,
    /// Exit now (SIGINT, SIGQUIT, or any other signal the worker is sent).
    FastStop,
    /// The worker is hung: abort, leaving a core dump to debug it by (SIGABRT; the worker
    /// does not catch it).
    Abort,
    /// The worker did not exit in time: end it (SIGKILL; cannot be caught).
    Kill,
}

impl WorkerIntent {
    /// The signals a worker catches; the others keep their default action.
    pub const SIGNALS: [i32; 5] = [SIGTERM, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2];

    /// What a signal the worker caught asks of it. Signals the master never sends to say
    /// something else mean a fast stop, as SIGINT and SIGQUIT do.
    pub fn from_signal(signal: i32) -> WorkerIntent {
        match signal {
            SIGTERM => WorkerIntent::GracefulStop,
            SIGUSR2 => WorkerIntent::Drain,
            SIGUSR1 => WorkerIntent::ReopenLogs,
            _ => WorkerIntent::FastStop,
        }
    }

    /// The signal the master sends for this intent.
    pub fn signal(self) -> Signal {
        match self {
            WorkerIntent::GracefulStop => Signal::SIGTERM,
            WorkerIntent::Drain => Signal::SIGUSR2,
            WorkerIntent::ReopenLogs => Signal::SIGUSR1,
            WorkerIntent::FastStop => Signal::SIGQUIT,
            WorkerIntent::Abort => Signal::SIGABRT,
            WorkerIntent::Kill => Signal::SIGKILL,
        }
    }
}

/// Tells the worker `pid` what the master wants of it.
pub fn tell(pid: u32, intent: WorkerIntent) -> io::Result<()> {
    sys::send_signal(pid, intent.signal())
}

/// How many bytes one report takes on the pipe.
pub const REPORT_LEN: usize = 4;

/// A worker's report: its pid, little-endian. Writes of up to `PIPE_BUF` bytes are atomic, so
/// reports from workers writing at once never interleave.
pub fn encode_report(pid: u32) -> [u8; REPORT_LEN] {
    pid.to_le_bytes()
}

/// The master's end of the report pipe: bytes in as the pipe gives them (a read may end inside
/// a report), whole reports out.
#[derive(Debug, Default)]
pub struct ReportDecoder {
    pending: Vec<u8>,
}

impl ReportDecoder {
    /// Takes bytes read from the pipe and returns the pids of the reports they complete, in
    /// order; a partial report waits for the rest.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<u32> {
        self.pending.extend_from_slice(bytes);
        let whole = self.pending.len() / REPORT_LEN * REPORT_LEN;
        let pids = self.pending[..whole]
            .chunks_exact(REPORT_LEN)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        self.pending.drain(..whole);
        pids
    }
}

/// Exit code of a worker that could not build its application (gunicorn's `WORKER_BOOT_ERROR`).
pub const EXIT_APP_BUILD_FAILED: i32 = 3;
/// Exit code of a worker that could not set up its event loop or pool.
pub const EXIT_SETUP_FAILED: i32 = 4;
/// Exit code of a worker that could not switch to the configured user and group.
pub const EXIT_PRIVILEGES_FAILED: i32 = 5;

/// Whether a worker's exit code says it failed while starting, before serving anything: at
/// start-up the master stops rather than restart workers that can never come up.
pub fn is_boot_failure(code: i32) -> bool {
    matches!(
        code,
        EXIT_APP_BUILD_FAILED | EXIT_SETUP_FAILED | EXIT_PRIVILEGES_FAILED
    )
}

#[cfg(test)]
mod tests {
    use signal_hook::consts::SIGWINCH;

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
        for signal in Intent::SIGNALS {
            let intent = Intent::from_signal(signal);
            assert!(
                !matches!(intent, Intent::Unsupported(_)),
                "the master listens for {signal} and acts on it"
            );
            let sent = intent.signal().expect("a real signal") as i32;
            assert_eq!(Intent::from_signal(sent), intent, "{intent:?} round-trips");
        }
    }

    #[test]
    fn a_worker_reads_what_the_master_sends() {
        for intent in [
            WorkerIntent::GracefulStop,
            WorkerIntent::Drain,
            WorkerIntent::ReopenLogs,
            WorkerIntent::FastStop,
        ] {
            let signal = intent.signal() as i32;
            assert!(
                WorkerIntent::SIGNALS.contains(&signal),
                "{intent:?} is caught"
            );
            assert_eq!(WorkerIntent::from_signal(signal), intent);
        }
        assert_eq!(WorkerIntent::from_signal(SIGINT), WorkerIntent::FastStop);
        assert_eq!(WorkerIntent::from_signal(SIGQUIT), WorkerIntent::FastStop);
        // The last resorts are never caught: they work on a worker that is stuck.
        for intent in [WorkerIntent::Abort, WorkerIntent::Kill] {
            assert!(!WorkerIntent::SIGNALS.contains(&(intent.signal() as i32)));
        }
    }

    #[test]
    fn reports_round_trip_across_partial_reads() {
        let mut wire = Vec::new();
        for pid in [1, 4242, u32::MAX] {
            wire.extend_from_slice(&encode_report(pid));
        }
        let mut decoder = ReportDecoder::default();
        assert_eq!(decoder.feed(&wire[..3]), Vec::<u32>::new(), "not yet whole");
        assert_eq!(decoder.feed(&wire[3..6]), vec![1]);
        assert_eq!(decoder.feed(&wire[6..]), vec![4242, u32::MAX]);
        assert_eq!(decoder.feed(&[]), Vec::<u32>::new(), "nothing left over");
    }

    #[test]
    fn boot_failures_are_the_start_up_exit_codes() {
        for code in [
            EXIT_APP_BUILD_FAILED,
            EXIT_SETUP_FAILED,
            EXIT_PRIVILEGES_FAILED,
        ] {
            assert!(is_boot_failure(code));
        }
        assert!(!is_boot_failure(0));
        assert!(!is_boot_failure(1));
    }
}
