//! From the command line to a running master: the modes that only print (`--check-config`,
//! `--print-config`, `status`), and for the others everything the master needs before its
//! loop starts: inherited and fresh sockets, the user to switch to, the log files, the pid
//! file, the built-in handlers, and the refusal to fork from a process that has threads.

use std::ffi::OsString;
use std::io;

use crate::cli::{self, Command, Mode, UsageError};
use crate::config::{self, Config, HandlerKind, Interface, LoadError, Workers};
use crate::error::Error;
use crate::handler::{self, BuildError, Handler, HandlerFactory, WorkerInfo};
use crate::master::sizing::Sizer;
use crate::master::{Loaded, Master, MasterSetup};
#[cfg(feature = "python")]
use crate::python;
use crate::{access_log, cpu, listeners, logging, pidfile, sys};

/// Does what the command line asked: print the help, the version, the config or the running
/// server's status, check the config, or start the master and return once it has stopped.
pub fn run(
    mut command: Command,
    config: Config,
    args: Vec<OsString>,
    factory: Option<&dyn HandlerFactory>,
) -> Result<(), Error> {
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
        // The certificate and key as the start (and a reload) would read them: under systemd,
        // `ExecReload` runs this first, so a broken renewal fails `systemctl reload`.
        let tls = config.tls.from_dir(config.server.chdir.as_deref());
        crate::listeners::tls::load(&tls)
            .map_err(|err| Error::Master(crate::master::MasterError::Tls(err)))?;
    }
    if let Mode::Status { json, watch } = command.mode {
        return print_status(&command, &config, json, watch);
    }
    let sizing = resolve_sizing(&config);
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
                    "{} application {} on {}",
                    match config.app.interface {
                        Interface::Auto => "python",
                        named => named.as_str(),
                    },
                    config.app.app.as_deref().unwrap_or("?"),
                    python.map_err(Error::Python)?
                ),
                (None, None) => format!("{} handler", config.app.handler),
            };
            println!(
                "{source}: ok ({} workers × {} threads, {application}, listening on {})",
                sizing.decide(None).workers,
                config.server.threads,
                binds.join(", ")
            );
            Ok(())
        }
        Mode::PrintConfig => {
            let workers = sizing.decide(None);
            let why = workers.explanation.trim_start_matches("auto: ");
            if factory.is_none()
                && let Some(python) = python_for(&config)
            {
                match python {
                    Ok(python) => println!("# {python}"),
                    Err(why) => println!("# python: {why}"),
                }
            }
            print!("{}", config.to_toml(Some((workers.workers, why))));
            Ok(())
        }
        _ => {
            // Reloads re-read the file after `chdir` may have moved the process: keep
            // its absolute path.
            if let Some(path) = command.config.take() {
                command.config = Some(std::path::absolute(&path).unwrap_or(path));
            }
            serve(&command, args, config, sizing, factory)
        }
    }
}

/// `tine status`: asks the running master over its control socket and prints the answer;
/// with `watch`, again every second until interrupted (or until what reads the output is
/// gone), redrawing the screen when the output is a terminal.
fn print_status(command: &Command, config: &Config, json: bool, watch: bool) -> Result<(), Error> {
    use std::io::{IsTerminal, Read, Write};
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
    let ask = || -> Result<String, Error> {
        let mut stream = std::os::unix::net::UnixStream::connect(path).map_err(failed)?;
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .map_err(failed)?;
        let request: &[u8] = if json { b"status json\n" } else { b"status\n" };
        stream.write_all(request).map_err(failed)?;
        let mut answer = String::new();
        stream
            .take(crate::status::MAX_ANSWER)
            .read_to_string(&mut answer)
            .map_err(failed)?;
        Ok(answer)
    };
    if !watch {
        print!("{}", ask()?);
        return Ok(());
    }
    let redraw = !json && std::io::stdout().is_terminal();
    let every = std::time::Duration::from_secs(1);
    let mut next = std::time::Instant::now();
    loop {
        let frame = crate::status::watch_frame(&ask()?, redraw);
        let mut out = std::io::stdout().lock();
        if out
            .write_all(frame.as_bytes())
            .and_then(|()| out.flush())
            .is_err()
        {
            // Whatever read the output is gone (`| head`): nothing more to show.
            return Ok(());
        }
        drop(out);
        let now = std::time::Instant::now();
        next = (next + every).max(now);
        std::thread::sleep(next - now);
    }
}

/// The file (or the defaults) with the command line's overrides applied; the file's checks
/// that involve several keys see the overrides too.
pub fn load_config(command: &Command) -> Result<Config, LoadError> {
    let overrides = |config: &mut Config| command.overrides.apply(config);
    match &command.config {
        Some(path) => Config::load_with(path, overrides),
        None => {
            let mut config = Config::default();
            overrides(&mut config);
            Ok(config)
        }
    }
}

/// What the worker count is worked out from: the `workers` key, the CPUs for `auto`, and the
/// cgroup memory limit (which caps `auto` once a worker is measured, and is weighed against a
/// fixed count only for a warning).
fn resolve_sizing(config: &Config) -> cpu::Sizing {
    let rule = match config.server.workers {
        Workers::Fixed(n) => cpu::WorkerRule::Fixed(n.get()),
        Workers::Auto => cpu::WorkerRule::Auto(cpu::detect(sys::affinity_cpus())),
    };
    cpu::Sizing {
        rule,
        memory: cpu::detect_memory(),
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
            HandlerKind::Python => python::build(&worker.app),
            #[cfg(not(feature = "python"))]
            HandlerKind::Python => Err(NO_PYTHON.into()),
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

/// Why a tine built without the `python` feature cannot serve `handler = "python"`.
#[cfg(not(feature = "python"))]
const NO_PYTHON: &str = "this tine was built without Python support (cargo's `python` \
                         feature is off), so it cannot serve handler = \"python\"; build it \
                         with the default features";

/// Which Python the config's application would run with: one line for `--check-config` and
/// `--print-config`, or why it cannot run. Nothing is imported.
fn python_for(config: &Config) -> Option<Result<String, String>> {
    if config.app.handler != HandlerKind::Python {
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
    sizing: cpu::Sizing,
    factory: Option<&dyn HandlerFactory>,
) -> Result<(), Error> {
    // The master forks its workers: a fork copies only the calling thread, so locks other
    // threads hold (the allocator's, a logger's) would stay locked for ever in every worker.
    match sys::thread_count() {
        Ok(threads) if threads > 1 => return Err(Error::Threaded { threads }),
        Ok(_) => {}
        Err(err) => log::debug!("could not count this process's threads: {err}"),
    }
    // First, before anything could start a thread or read the environment: sockets handed
    // over by systemd or by the master this one upgrades.
    let inherited = sys::take_listen_fds().map_err(|source| Error::Inherit { source })?;
    let server = &config.server;
    let identity = resolve_identity(server.user.as_deref(), server.group.as_deref())?;
    let unix = unix_options(&config).map_err(Error::Identity)?;
    // Before the first file this process creates: log files, the pid file, Unix sockets and
    // the control socket all get their permission bits through it.
    if let Some(mask) = server.umask {
        sys::set_umask(mask);
    }
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
    // A preloading master's own size is a worker's: with a memory limit to weigh it against,
    // the count waits until the application is imported; otherwise it is said here.
    let preloading = factory.is_none()
        && config.app.handler == HandlerKind::Python
        && config.app.preload
        && cfg!(feature = "python");
    let sized =
        (!(preloading && sizing.weighs_memory())).then(|| Sizer::start(sizing.clone(), false));
    if identity.is_unchanged() && sys::is_root() {
        log::warn!("running as root without [server] user: the application runs as root too");
    } else if identity.user.is_none() && sys::is_root() {
        log::warn!(
            "[server] group is set but user is not: the workers switch group and STILL RUN AS \
             ROOT (uid 0), and so does the application; set [server] user to the account they \
             should run as"
        );
    }
    // Each worker holds two descriptors a connection (its socket, and a spilled body or a file
    // being sent), the listeners, and its logs, pipes and the app's own files; the workers
    // inherit the limit raised here.
    let wanted_files = sys::open_files_needed(server.max_connections.get(), server.bind.len());
    match sys::ensure_open_files(wanted_files) {
        // Below what was wanted, the soft limit went as far as the hard one.
        Ok(hard) if hard < wanted_files => log::warn!(
            "the hard open files limit is {hard}, below the {wanted_files} that \
             [server] max_connections = {} needs (2 a connection, the listeners, {} spare): \
             lower max_connections or raise the hard limit (LimitNOFILE= under systemd)",
            server.max_connections,
            sys::SPARE_OPEN_FILES,
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
            Some(n) if upgrade_from.is_some() => {
                match n.strip_prefix(crate::master::ACTIVATED_PREFIX) {
                    Some(rest) => (Some(rest.to_owned()), true),
                    None => (Some(n.to_owned()), false),
                }
            }
            _ => (name.clone(), true),
        };
        let listener = listeners::Listener::adopt(fd, name.as_deref(), activated)
            .map_err(|source| Error::Inherit { source })?;
        // An old master's socket this config no longer lists is closed, not kept unserved.
        if !listener.kept_by(&server.bind) {
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
        // What a client must speak there: TLS (`[tls]`), a PROXY header first.
        let tls = config.tls.cert.is_some();
        let proxy = if server.proxy_protocol.contains(&listener.bind) {
            " (PROXY protocol)"
        } else {
            ""
        };
        match listener.local_addr() {
            Ok(config::BindAddr::Tcp(addr)) => {
                let scheme = if tls { "https" } else { "http" };
                log::info!("listening on {scheme}://{addr}{proxy}{how}");
            }
            Ok(addr) => {
                let tls = if tls { " (TLS)" } else { "" };
                log::info!("listening on {addr}{tls}{proxy}{how}");
            }
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
    if factory.is_none() && config.app.handler == HandlerKind::Python {
        if let Some(Err(why)) = python_for(&config) {
            return Err(Error::Python(why));
        }
        #[cfg(feature = "python")]
        if config.app.preload {
            python::preload(&config.app).map_err(Error::AppLoad)?;
        }
    }
    let (sizer, workers) = match sized {
        Some(sized) => sized,
        None => Sizer::start(sizing, true),
    };
    let factory = factory.unwrap_or(&Builtin);
    let reload = || -> Result<Loaded, LoadError> {
        let config = load_config(command)?;
        let sizing = resolve_sizing(&config);
        Ok(Loaded { config, sizing })
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
        workers,
        sizer,
        listeners,
        factory,
        identity,
        load: &reload,
        exe,
        args,
        upgrade_from,
        unix,
        start_dir,
        pidfile,
    })
    .map_err(Error::Master)?;
    master.run().map_err(Error::Master)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_are_counted() {
        assert!(sys::thread_count().unwrap() >= 1);
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || rx.recv());
        // Other tests start and end threads meanwhile: this one and the new one, at least.
        assert!(sys::thread_count().unwrap() >= 2);
        drop(tx);
        let _ = thread.join();
    }

    #[test]
    fn serving_from_a_process_with_threads_is_refused() {
        // This test runs on a thread of the test harness; one more makes sure of it.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || rx.recv());
        let server = crate::Server::with_args(["--bind", "127.0.0.1:0", "--workers", "1"]).unwrap();
        let factory = |_: &WorkerInfo| {
            Ok::<_, BuildError>(|_: handler::Request| handler::Response::text(200, "never\n"))
        };
        let err = server.serve(factory).expect_err("refused");
        drop(tx);
        let _ = other.join();
        assert!(
            matches!(err, Error::Threaded { threads } if threads >= 2),
            "{err:?}"
        );
        assert_eq!(err.exit_code(), crate::EXIT_INTERNAL);
        assert!(err.to_string().contains("single-threaded"), "{err}");
    }
}
