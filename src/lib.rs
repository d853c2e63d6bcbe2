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
mod boot;
pub mod cli;
pub mod config;
pub mod cpu;
mod error;
pub mod forwarded;
pub mod handler;
pub mod http;
pub mod listeners;
pub mod logging;
pub mod master;
pub mod pidfile;
pub mod pool;
pub mod protocol;
pub mod proxy_protocol;
#[cfg(feature = "python")]
pub mod python;
pub mod status;
pub(crate) mod sys;
mod text;
pub mod websocket;
pub mod worker;

use std::ffi::OsString;
use std::process::ExitCode;

use cli::{Command, Mode};
use config::Config;
use handler::HandlerFactory;

pub use error::{EXIT_INTERNAL, EXIT_OK, EXIT_OS, EXIT_USAGE, Error};
pub use text::describe_io;

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
            _ => boot::load_config(&command).map_err(Error::Config)?,
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
        boot::run(command, config, args, factory)
    }
}

/// The README's code examples, compiled and run as doc tests so they cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
