//! Why a worker could not start, and the exit code that tells the master.

use std::fmt;
use std::io;

use crate::handler::BuildError;
use crate::protocol::{EXIT_APP_BUILD_FAILED, EXIT_PRIVILEGES_FAILED, EXIT_SETUP_FAILED};

/// Why a worker failed to start.
#[derive(Debug)]
pub enum WorkerError {
    /// A step of setting up the worker's event loop, pool, sockets or logs failed.
    Setup(SetupStep, io::Error),
    /// Switching to the configured user and group failed.
    Privileges(io::Error),
    /// The application could not be built.
    BuildApp {
        /// The configured handler.
        handler: String,
        /// What the application's factory said.
        error: BuildError,
    },
}

/// A step of a worker's set-up, before it serves anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupStep {
    /// Creating the event loop.
    EventLoop,
    /// Installing the signal handlers.
    SignalHandlers,
    /// Watching the signals from the event loop.
    WatchSignals,
    /// Unblocking the signals the master blocked around fork.
    UnblockSignals,
    /// Creating the waker the pool wakes the loop with.
    Waker,
    /// Starting the thread pool.
    Pool,
    /// Reading a listening socket's address.
    ListenerAddress,
    /// Taking over the pipe to the master.
    ReportPipe,
    /// Opening the access log.
    AccessLog,
    /// Registering the listening sockets with the event loop.
    WatchListeners,
    /// Telling the master the worker is up.
    ReportReady,
}

impl SetupStep {
    /// What failed, as the log line says it.
    fn failed(self) -> &'static str {
        match self {
            SetupStep::EventLoop => "could not create the event loop",
            SetupStep::SignalHandlers => "could not install signal handlers",
            SetupStep::WatchSignals => "could not watch signals",
            SetupStep::UnblockSignals => "could not unblock signals",
            SetupStep::Waker => "could not create the pool's waker",
            SetupStep::Pool => "could not start the thread pool",
            SetupStep::ListenerAddress => "could not read a listening socket's address",
            SetupStep::ReportPipe => "could not take over the report pipe",
            SetupStep::AccessLog => "could not open the access log",
            SetupStep::WatchListeners => "could not watch the listening sockets",
            SetupStep::ReportReady => "could not report readiness",
        }
    }
}

impl WorkerError {
    /// The worker's exit code for this failure: the master stops, rather than restarts,
    /// workers that fail like this at start-up (see [`is_boot_failure`](crate::protocol::is_boot_failure)).
    pub fn exit_code(&self) -> i32 {
        match self {
            WorkerError::Setup(..) => EXIT_SETUP_FAILED,
            WorkerError::Privileges(_) => EXIT_PRIVILEGES_FAILED,
            WorkerError::BuildApp { .. } => EXIT_APP_BUILD_FAILED,
        }
    }
}

impl fmt::Display for WorkerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkerError::Setup(step, err) => write!(f, "{}: {err}", step.failed()),
            WorkerError::Privileges(err) => write!(
                f,
                "could not switch to the configured user and group: {}",
                crate::text::describe_io(err)
            ),
            WorkerError::BuildApp { handler, error } => {
                write!(f, "could not build the {handler} application: {error}")
            }
        }
    }
}

impl std::error::Error for WorkerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WorkerError::Setup(_, err) | WorkerError::Privileges(err) => Some(err),
            WorkerError::BuildApp { error, .. } => Some(&**error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failed_step_says_what_it_was_and_exits_with_its_code() {
        let io = || io::Error::from_raw_os_error(libc::EMFILE);
        let table: [(WorkerError, &str, i32); 4] = [
            (
                WorkerError::Setup(SetupStep::EventLoop, io()),
                "could not create the event loop: ",
                EXIT_SETUP_FAILED,
            ),
            (
                WorkerError::Privileges(io()),
                "could not switch to the configured user and group: ",
                EXIT_PRIVILEGES_FAILED,
            ),
            (
                WorkerError::BuildApp {
                    handler: "wsgi".to_owned(),
                    error: "no module named app".into(),
                },
                "could not build the wsgi application: no module named app",
                EXIT_APP_BUILD_FAILED,
            ),
            (
                WorkerError::Setup(SetupStep::ReportReady, io()),
                "could not report readiness: ",
                EXIT_SETUP_FAILED,
            ),
        ];
        for (err, starts, code) in table {
            assert!(err.to_string().starts_with(starts), "{err}");
            assert_eq!(err.exit_code(), code, "{err}");
            assert!(crate::protocol::is_boot_failure(err.exit_code()));
        }
    }
}
