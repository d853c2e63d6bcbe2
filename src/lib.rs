//! tine: a pre-fork HTTP/1.1 application server daemon for Linux.
//!
//! A master process reads one TOML file, works out how many workers to run, binds the listening
//! sockets and forks the workers, which share them. Each worker runs a mio event loop that owns
//! every client socket and a fixed thread pool that runs the application's [`handler::Handler`],
//! so blocking application code never stalls the loop and a slow client never holds a thread.
//!
//! The binary is a thin shell over [`main_with_args`]. A Rust program embeds the same server,
//! with the same command line, config file, signals and processes, and its own application,
//! through [`Server`]:
//!
//! ```no_run
//! use std::process::ExitCode;
//! use tine::handler::{BuildError, Request, Response, WorkerInfo};
//!
//! fn hello(_request: Request) -> Response {
//!     Response::text(200, "Hello from an embedded app\n")
//! }
//!
//! fn main() -> ExitCode {
//!     // The factory runs in each worker, after fork.
//!     let factory = |_worker: &WorkerInfo| Ok::<_, BuildError>(hello);
//!     tine::exit_status(tine::Server::from_args().and_then(|server| server.serve(factory)))
//! }
//! ```

pub mod access_log;
pub mod cli;
pub mod config;
pub mod cpu;
pub mod forwarded;
pub mod handler;
pub mod http;
pub mod listeners;
pub mod logging;
pub mod master;
pub mod pidfile;
pub mod pool;
pub mod protocol;
#[cfg(feature = "python")]
pub mod python;
pub mod scoreboard;
pub mod status;
pub mod sys;
pub mod worker;

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::process::ExitCode;

use cli::{Command, Mode, UsageError};
use config::{Config, LoadError};
use handler::HandlerFactory;
use listeners::BindError;
use master::MasterError;

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
            Error::Master(_) => EXIT_OS,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(err) => write!(f, "{err}"),
            Error::Config(err) => write!(f, "{}", master::boot::describe_config_error(err)),
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

/// Describes an I/O error the way a log line should: `permission denied`, not
/// `Permission denied (os error 13)`.
pub fn describe_io(err: &io::Error) -> String {
    if err.raw_os_error().is_some() {
        let text = err.to_string();
        let text = match text.find(" (os error") {
            Some(end) => &text[..end],
            None => &text,
        };
        let mut chars = text.chars();
        match chars.next() {
            Some(first) => first.to_lowercase().chain(chars).collect(),
            None => String::new(),
        }
    } else {
        err.to_string()
    }
}

/// Runs the `tine` command line (arguments after the program name) with the built-in
/// handlers, and returns the process exit status. Errors are printed to stderr.
pub fn main_with_args<I>(args: I) -> ExitCode
where
    I: IntoIterator<Item = OsString>,
{
    exit_status(run(args, None))
}

/// Turns what [`Server::serve`] (or [`run`]) returned into the process's exit status, printing
/// an error to stderr the way the `tine` binary does: 0, or the status [`Error::exit_code`]
/// gives.
pub fn exit_status(outcome: Result<(), Error>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(err) => {
            eprintln!("tine: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}

/// Runs tine with the given command-line arguments. `factory` builds the application in each
/// worker; without one, the config's `[app] handler` chooses a built-in handler.
pub fn run<I>(args: I, factory: Option<&dyn HandlerFactory>) -> Result<(), Error>
where
    I: IntoIterator<Item = OsString>,
{
    Server::with_args(args)?.run(factory)
}

/// tine with your application: the same command line, config file, signals, processes and
/// exit statuses as the `tine` binary, with a handler factory of yours in place of
/// `[app] handler`.
///
/// [`Server::from_args`] reads the command line (and the config file it names);
/// [`Server::serve`] then does what the command line asked: print the help, check the config,
/// or start the master, which forks the workers, each of which builds its handler with your
/// factory after fork. `serve` returns when the server has stopped.
///
/// ```no_run
/// use std::process::ExitCode;
/// use tine::handler::{BuildError, Request, Response, WorkerInfo};
///
/// fn run() -> Result<(), tine::Error> {
///     let server = tine::Server::from_args()?;
///     println!("listening on {:?}", server.config().server.bind);
///     server.serve(|worker: &WorkerInfo| {
///         let greeting = format!("hello from worker {}\n", worker.slot);
///         Ok::<_, BuildError>(move |_request: Request| Response::text(200, greeting.clone()))
///     })
/// }
///
/// fn main() -> ExitCode {
///     tine::exit_status(run())
/// }
/// ```
#[derive(Debug)]
pub struct Server {
    command: Command,
    config: Config,
    /// The arguments as given, which a binary upgrade passes to the new master.
    args: Vec<OsString>,
}

impl Server {
    /// Reads the process's command line, and the config file it names.
    ///
    /// # Errors
    ///
    /// [`Error::Usage`] for a bad command line, [`Error::Config`] for a config file that cannot
    /// be read or is invalid (every problem listed).
    pub fn from_args() -> Result<Server, Error> {
        Server::with_args(std::env::args_os().skip(1))
    }

    /// Like [`Server::from_args`], with the arguments given (without the program name).
    ///
    /// ```
    /// let server = tine::Server::with_args(["--threads", "8", "--bind", "127.0.0.1:0"])?;
    /// assert_eq!(server.config().server.threads.get(), 8);
    /// assert!(tine::Server::with_args(["--no-such-flag"]).is_err());
    /// # Ok::<(), tine::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`Server::from_args`].
    pub fn with_args<I, A>(args: I) -> Result<Server, Error>
    where
        I: IntoIterator<Item = A>,
        A: Into<OsString>,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let command = cli::parse(args.clone()).map_err(Error::Usage)?;
        let config = match command.mode {
            // Help and version must work whatever state the config file is in.
            Mode::Help | Mode::Version => Config::default(),
            _ => master::boot::load_config(&command).map_err(Error::Config)?,
        };
        Ok(Server {
            command,
            config,
            args,
        })
    }

    /// The effective config: the file, its defaults and the command line's overrides.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Does what the command line asked, with `factory` building the application in each
    /// worker; `[app] handler` is not used. Returns once the server has stopped (at once for
    /// `--help`, `--version`, `--check-config` and `--print-config`).
    ///
    /// # Errors
    ///
    /// Whatever stopped the server; [`Error::exit_code`] gives the exit status to use, and
    /// [`exit_status`] prints the error and gives it.
    pub fn serve<F: HandlerFactory>(self, factory: F) -> Result<(), Error> {
        self.run(Some(&factory))
    }

    fn run(self, factory: Option<&dyn HandlerFactory>) -> Result<(), Error> {
        let Server {
            command,
            config,
            args,
        } = self;
        master::boot::run(command, config, args, factory)
    }
}

/// The README's code examples, compiled and run as doc tests so they cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_read_like_prose() {
        let denied = io::Error::from_raw_os_error(libc::EACCES);
        assert_eq!(describe_io(&denied), "permission denied");
        let custom = io::Error::new(
            io::ErrorKind::AddrInUse,
            "another server is listening on it",
        );
        assert_eq!(describe_io(&custom), "another server is listening on it");
    }

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
