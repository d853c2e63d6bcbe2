//! Why tine stopped with an error, and the exit status each reason gives.

use std::fmt;
use std::io;

use crate::cli::UsageError;
use crate::config::LoadError;
use crate::listeners::BindError;
use crate::master::MasterError;
use crate::pidfile;
use crate::text::describe_io;

/// Exit status: success.
pub const EXIT_OK: u8 = 0;
/// Exit status: a usage or config error (`EX_USAGE`).
pub const EXIT_USAGE: u8 = 64;
/// Exit status: an internal error (`EX_SOFTWARE`).
pub const EXIT_INTERNAL: u8 = 70;
/// Exit status: an OS error such as a failed bind (`EX_OSERR`).
pub const EXIT_OS: u8 = 71;

/// Why tine stopped with an error.
#[derive(Debug)]
pub enum Error {
    /// The command line was wrong.
    Usage(UsageError),
    /// The config file could not be read or is invalid.
    Config(LoadError),
    /// A listening socket could not be opened.
    Bind(BindError),
    /// The master could not set itself up or keep running.
    Master(MasterError),
    /// `[server] user` or `group` cannot be used.
    Identity(String),
    /// The pid file is held by a live process, or cannot be written.
    Pidfile(pidfile::PidfileError),
    /// `[log] error_log` or `access_log` could not be opened.
    ErrorLog {
        /// The file.
        path: std::path::PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// `tine status` could not talk to the master.
    Control {
        /// The control socket.
        path: std::path::PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// Sockets handed over by systemd or an old master could not be taken over.
    Inherit {
        /// What went wrong.
        source: io::Error,
    },
    /// The Python the application needs cannot be used (a virtualenv for another version, a
    /// tine built without Python).
    Python(String),
    /// The application could not be imported in the master (`[app] preload`).
    AppLoad(String),
    /// The process already runs other threads: the master forks its workers, which is only
    /// sound in a single-threaded process.
    Threaded {
        /// How many threads it runs.
        threads: usize,
    },
    /// `[server] chdir` failed.
    Chdir {
        /// The directory.
        path: std::path::PathBuf,
        /// What the OS said.
        source: io::Error,
    },
}

impl Error {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) | Error::Config(LoadError::Invalid(_)) => EXIT_USAGE,
            Error::Config(LoadError::Read { .. }) => EXIT_USAGE,
            Error::Identity(_) | Error::Python(_) => EXIT_USAGE,
            Error::AppLoad(_) | Error::Threaded { .. } => EXIT_INTERNAL,
            Error::Bind(_)
            | Error::Pidfile(_)
            | Error::Chdir { .. }
            | Error::Inherit { .. }
            | Error::Control { .. }
            | Error::ErrorLog { .. } => EXIT_OS,
            Error::Master(MasterError::BootFailed { .. }) => EXIT_INTERNAL,
            // The `[tls]` files are configuration, as the file naming them is.
            Error::Master(MasterError::Tls(_)) => EXIT_USAGE,
            Error::Master(_) => EXIT_OS,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(err) => write!(f, "{err}"),
            Error::Config(err) => write!(f, "{}", err.describe()),
            Error::Bind(err) => write!(f, "{err}"),
            Error::Master(err) => write!(f, "{err}"),
            Error::Identity(why) | Error::Python(why) => write!(f, "{why}"),
            Error::AppLoad(why) => write!(f, "{why}"),
            Error::Pidfile(err) => write!(f, "{err}"),
            Error::ErrorLog { path, source } => write!(
                f,
                "could not open the log file {}: {}",
                path.display(),
                describe_io(source)
            ),
            Error::Control { path, source } => write!(
                f,
                "could not ask the master at {}: {} (is tine running with this config?)",
                path.display(),
                describe_io(source)
            ),
            Error::Inherit { source } => write!(
                f,
                "could not take over the inherited listening sockets: {}",
                describe_io(source)
            ),
            Error::Threaded { threads } => write!(
                f,
                "this process already runs {threads} threads, but the master forks its workers, \
                 which is only sound in a single-threaded process: serve before starting any \
                 thread"
            ),
            Error::Chdir { path, source } => write!(
                f,
                "could not change to directory {}: {}",
                path.display(),
                describe_io(source)
            ),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_sysexits() {
        let usage = Error::Usage(UsageError("x".into()));
        assert_eq!(usage.exit_code(), EXIT_USAGE);
        let bind = Error::Bind(BindError {
            addr: "0.0.0.0:80".parse().unwrap(),
            source: io::Error::from_raw_os_error(libc::EACCES),
        });
        assert_eq!(bind.exit_code(), EXIT_OS);
        assert_eq!(
            bind.to_string(),
            "could not bind 0.0.0.0:80: permission denied"
        );
    }
}
