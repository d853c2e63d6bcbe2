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
#[cfg(feature = "python")]
pub mod python;
pub mod scoreboard;
pub mod status;
pub(crate) mod sys;
mod text;
pub mod worker;

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::process::ExitCode;

use cli::{Command, Mode, UsageError};
use config::{Config, HandlerKind, LoadError, Workers};
use handler::{BuildError, Handler, HandlerFactory, WorkerInfo};
use listeners::BindError;
use master::{Loaded, Master, MasterError, MasterSetup};
pub use text::describe_io;

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
            Error::AppLoad(_) => EXIT_INTERNAL,
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
            Error::Config(LoadError::Invalid(diagnostics)) => {
                let count = diagnostics.0.len();
                let noun = if count == 1 { "problem" } else { "problems" };
                write!(
                    f,
                    "{diagnostics}\n{count} {noun} in the config; nothing was changed"
                )
            }
            Error::Config(err) => write!(f, "{err}"),
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
            _ => load_config(&command)?,
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
            mut command,
            config,
            args,
        } = self;
        match command.mode {
            Mode::Help => {
                print!("{}", cli::HELP);
                return Ok(());
            }
            Mode::Version => {
                println!("tine {}", env!("CARGO_PKG_VERSION"));
                return Ok(());
            }
            _ => {}
        }
        if command.mode == Mode::CheckConfig {
            // Names that exist only on the machine are checked too, as the start would.
            resolve_identity(
                config.server.user.as_deref(),
                config.server.group.as_deref(),
            )?;
            unix_options(&config).map_err(Error::Identity)?;
        }
        if let Mode::Status { json } = command.mode {
            return print_status(&command, &config, json);
        }
        let workers = resolve_workers(&config);
        match command.mode {
            Mode::CheckConfig => {
                let source = command.config.as_ref().map_or_else(
                    || "built-in defaults".to_owned(),
                    |p| p.display().to_string(),
                );
                let binds: Vec<String> = config.server.bind.iter().map(|b| b.to_string()).collect();
                let application = match (factory, python_for(&config)) {
                    (Some(_), _) => "embedded application".to_owned(),
                    (None, Some(python)) => format!(
                        "wsgi application {} on {}",
                        config.app.app.as_deref().unwrap_or("?"),
                        python.map_err(Error::Python)?
                    ),
                    (None, None) => format!("{} handler", config.app.handler),
                };
                println!(
                    "{source}: ok ({} workers × {} threads, {application}, listening on {})",
                    workers.count,
                    config.server.threads,
                    binds.join(", ")
                );
                Ok(())
            }
            Mode::PrintConfig => {
                let why = workers.explanation.trim_start_matches("auto: ");
                if factory.is_none()
                    && let Some(python) = python_for(&config)
                {
                    match python {
                        Ok(python) => println!("# {python}"),
                        Err(why) => println!("# python: {why}"),
                    }
                }
                print!("{}", config.to_toml(Some((workers.count, why))));
                Ok(())
            }
            _ => {
                // Reloads re-read the file after `chdir` may have moved the process: keep
                // its absolute path.
                if let Some(path) = command.config.take() {
                    command.config = Some(std::path::absolute(&path).unwrap_or(path));
                }
                serve(&command, args, config, workers, factory)
            }
        }
    }
}

/// `tine status`: asks the running master over its control socket and prints the answer.
fn print_status(command: &Command, config: &Config, json: bool) -> Result<(), Error> {
    use std::io::{Read, Write};
    let source = command.config.as_ref().map_or_else(
        || "the built-in defaults".to_owned(),
        |p| p.display().to_string(),
    );
    let Some(path) = &config.server.control_socket else {
        return Err(Error::Usage(UsageError(format!(
            "{source} sets no [server] control_socket, so there is nothing to ask"
        ))));
    };
    let failed = |source: io::Error| Error::Control {
        path: path.clone(),
        source,
    };
    let mut stream = std::os::unix::net::UnixStream::connect(path).map_err(failed)?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .map_err(failed)?;
    let request: &[u8] = if json { b"status json\n" } else { b"status\n" };
    stream.write_all(request).map_err(failed)?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).map_err(failed)?;
    print!("{answer}");
    Ok(())
}

/// The file (or the defaults) with the command line's overrides applied; the file's checks
/// that involve several keys see the overrides too.
fn load_config(command: &Command) -> Result<Config, Error> {
    let overrides = |config: &mut Config| command.overrides.apply(config);
    match &command.config {
        Some(path) => Config::load_with(path, overrides).map_err(Error::Config),
        None => {
            let mut config = Config::default();
            overrides(&mut config);
            Ok(config)
        }
    }
}

/// The worker count and how it was decided.
#[derive(Debug, Clone)]
struct WorkerCount {
    count: usize,
    explanation: String,
}

fn resolve_workers(config: &Config) -> WorkerCount {
    match config.server.workers {
        Workers::Fixed(n) => WorkerCount {
            count: n.get(),
            explanation: "set in the config or on the command line".to_owned(),
        },
        Workers::Auto => {
            let budget = cpu::detect(sys::affinity_cpus());
            WorkerCount {
                count: budget.workers,
                explanation: budget.explanation,
            }
        }
    }
}

/// Builds the built-in handler that the worker's `[app] handler` names (so a reload that
/// changes `[app]` takes effect in the new workers).
struct Builtin;

impl HandlerFactory for Builtin {
    fn build(&self, worker: &WorkerInfo) -> Result<Box<dyn Handler>, BuildError> {
        match worker.app.handler {
            HandlerKind::Demo => Ok(Box::new(handler::demo::Demo)),
            HandlerKind::Static => {
                let options = worker.app.clone();
                Ok(Box::new(handler::static_files::StaticFiles::new(options)?))
            }
            #[cfg(feature = "python")]
            HandlerKind::Wsgi => Ok(Box::new(python::Wsgi::build(&worker.app)?)),
            #[cfg(not(feature = "python"))]
            HandlerKind::Wsgi => Err(NO_PYTHON.into()),
        }
    }

    #[cfg(feature = "python")]
    fn before_fork(&self) {
        python::before_fork();
    }

    #[cfg(feature = "python")]
    fn after_fork_parent(&self) {
        python::after_fork_parent();
    }

    #[cfg(feature = "python")]
    fn after_fork_child(&self) {
        python::after_fork_child();
    }
}

/// Why a tine built without the `python` feature cannot serve `handler = "wsgi"`.
#[cfg(not(feature = "python"))]
const NO_PYTHON: &str = "this tine was built without Python support (cargo's `python` \
                         feature is off), so it cannot serve handler = \"wsgi\"; build it with \
                         the default features";

/// Which Python the config's application would run with: one line for `--check-config` and
/// `--print-config`, or why it cannot run. Nothing is imported.
fn python_for(config: &Config) -> Option<Result<String, String>> {
    if config.app.handler != HandlerKind::Wsgi {
        return None;
    }
    #[cfg(feature = "python")]
    return Some(python::describe(&config.app));
    #[cfg(not(feature = "python"))]
    return Some(Err(NO_PYTHON.to_owned()));
}

fn serve(
    command: &Command,
    args: Vec<OsString>,
    config: Config,
    workers: WorkerCount,
    factory: Option<&dyn HandlerFactory>,
) -> Result<(), Error> {
    // First, before anything could start a thread or read the environment: sockets handed
    // over by systemd or by the master this one upgrades.
    let inherited = sys::take_listen_fds().map_err(|source| Error::Inherit { source })?;
    let server = &config.server;
    let identity = resolve_identity(server.user.as_deref(), server.group.as_deref())?;
    let unix = unix_options(&config).map_err(Error::Identity)?;
    logging::init(config.log.level);
    if let Some(path) = &config.log.error_log {
        logging::set_file(Some(path)).map_err(|source| Error::ErrorLog {
            path: path.clone(),
            source,
        })?;
        if let Some((_, uid)) = &identity.user {
            logging::give_to(*uid).map_err(|source| Error::ErrorLog {
                path: path.clone(),
                source,
            })?;
        }
    }
    if let Some(access_log::Target::File(path)) = &config.log.access_log {
        let owner = identity.user.as_ref().map(|(_, uid)| *uid);
        logging::prepare_file(path, owner).map_err(|source| Error::ErrorLog {
            path: path.clone(),
            source,
        })?;
    }
    sys::set_thread_name("tine: master");
    log::info!(
        "tine {} starting (pid {})",
        env!("CARGO_PKG_VERSION"),
        std::process::id()
    );
    log::info!("workers: {} ({})", workers.count, workers.explanation);
    if identity.is_unchanged() && sys::is_root() {
        log::warn!("running as root without [server] user: the application runs as root too");
    }
    if let Some(mask) = server.umask {
        sys::set_umask(mask);
    }
    // Each worker holds its connections plus the listeners, its pipes and the app's own files.
    let wanted_files = server.max_connections.get() as u64 + 256;
    match sys::ensure_open_files(wanted_files) {
        Ok(limit) if limit < wanted_files => log::warn!(
            "the open files limit is {limit}, but max_connections = {} needs about {wanted_files}; \
             raise the hard limit (LimitNOFILE= under systemd)",
            server.max_connections
        ),
        Ok(_) => {}
        Err(err) => log::warn!("could not raise the open files limit: {err}"),
    }
    let upgrade_from = inherited.upgrade_from;
    // Where an upgrade starts the next master: here, whatever `chdir` does later.
    let start_dir = std::env::current_dir().ok();
    let mut listeners = Vec::new();
    for (fd, name) in inherited.fds {
        // From an upgrade, names are the configured addresses (sockets systemd gave the old
        // master carry a prefix); from systemd, every socket is an activated one.
        let (name, activated) = match name.as_deref() {
            Some(n) if upgrade_from.is_some() => match n.strip_prefix(master::ACTIVATED_PREFIX) {
                Some(rest) => (Some(rest.to_owned()), true),
                None => (Some(n.to_owned()), false),
            },
            _ => (name.clone(), true),
        };
        let listener = listeners::Listener::adopt(fd, name.as_deref(), activated)
            .map_err(|source| Error::Inherit { source })?;
        // An old master's socket this config no longer lists is closed, not kept unserved.
        if !listener.activated && !server.bind.iter().any(|b| listener.serves(b)) {
            log::info!("not keeping {}: no longer in bind", listener.bind);
            continue;
        }
        listeners.push(listener);
    }
    let fresh = listeners::bind_missing(&server.bind, &listeners, server.backlog, &unix)
        .map_err(Error::Bind)?;
    listeners.extend(fresh);
    for listener in &listeners {
        let how = if upgrade_from.is_some() {
            " (inherited from the old master)"
        } else if listener.activated {
            " (from systemd)"
        } else {
            ""
        };
        match listener.local_addr() {
            Ok(config::BindAddr::Tcp(addr)) => log::info!("listening on http://{addr}{how}"),
            Ok(addr) => log::info!("listening on {addr}{how}"),
            Err(err) => log::warn!("listening on a socket whose address is unknown: {err}"),
        }
    }
    let pidfile = match &server.pidfile {
        Some(path) => Some(pidfile::Pidfile::create(path, upgrade_from).map_err(Error::Pidfile)?),
        None => None,
    };
    if let Some(dir) = &server.chdir {
        std::env::set_current_dir(dir).map_err(|source| Error::Chdir {
            path: dir.clone(),
            source,
        })?;
    }
    if factory.is_none() && config.app.handler == HandlerKind::Wsgi {
        if let Some(Err(why)) = python_for(&config) {
            return Err(Error::Python(why));
        }
        #[cfg(feature = "python")]
        if config.app.preload {
            python::preload(&config.app).map_err(Error::AppLoad)?;
        }
    }
    let factory = factory.unwrap_or(&Builtin);
    let reload = || -> Result<Loaded, String> {
        let config = load_config(command).map_err(|err| err.to_string())?;
        let workers = resolve_workers(&config);
        log::info!("workers: {} ({})", workers.count, workers.explanation);
        Ok(Loaded {
            config,
            workers: workers.count,
        })
    };
    // The path the binary was started from: after a deploy it names the new build, which
    // is what an upgrade should run.
    let exe = std::env::current_exe().unwrap_or_else(|_| std::path::PathBuf::from("tine"));
    let exe = exe
        .to_str()
        .and_then(|s| s.strip_suffix(" (deleted)"))
        .map(std::path::PathBuf::from)
        .unwrap_or(exe);
    let master = Master::new(MasterSetup {
        config,
        workers: workers.count,
        listeners,
        factory,
        identity,
        load: &reload,
        exe,
        args,
        upgrade_from,
        unix,
        start_dir,
    })
    .map_err(Error::Master)?;
    let outcome = master.run().map_err(Error::Master);
    drop(pidfile);
    outcome
}

/// `[server] socket_mode` and `socket_owner`, resolved.
fn unix_options(config: &Config) -> Result<listeners::UnixOptions, String> {
    let owner = match &config.server.socket_owner {
        None => None,
        Some(spec) => {
            let (user, group) = match spec.split_once(':') {
                Some((user, group)) => (user, Some(group)),
                None => (spec.as_str(), None),
            };
            let identity = sys::resolve_identity(Some(user), group)
                .map_err(|why| format!("server.socket_owner: {why}"))?;
            Some((identity.user.map(|(_, uid)| uid), identity.gid))
        }
    };
    Ok(listeners::UnixOptions {
        mode: config.server.socket_mode,
        owner,
    })
}

/// Resolves `[server] user` and `group`, and checks that switching to them is possible.
fn resolve_identity(user: Option<&str>, group: Option<&str>) -> Result<sys::Identity, Error> {
    let identity = sys::resolve_identity(user, group)
        .map_err(|why| Error::Identity(format!("server.user/group: {why}")))?;
    if !identity.is_unchanged() && !sys::is_root() {
        let (uid, gid) = sys::current_ids();
        let same_user = identity.user.as_ref().is_none_or(|(_, u)| *u == uid);
        if !same_user || identity.gid.is_some_and(|g| g != gid) {
            return Err(Error::Identity(
                "server.user/group: switching user or group needs tine to be started as root"
                    .to_owned(),
            ));
        }
        // Already that user and group: nothing to switch, and no privilege to do it with.
        return Ok(sys::Identity {
            user: None,
            gid: None,
        });
    }
    Ok(identity)
}

/// The README's code examples, compiled and run as doc tests so they cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

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
