//! The command line: raw arguments in, a validated [`Command`] out. Nothing here touches the
//! config file or the OS.
//!
//! Most options set one config key each (`KEY_FLAGS`); their values are checked by the
//! config's own reader of that key, so a flag accepts exactly what its key accepts and says
//! the same about anything else.

use std::ffi::OsString;
use std::num::NonZeroUsize;
use std::path::PathBuf;

use crate::config::{
    BindAddr, Config, HandlerKind, Workers, parse_app_spec, suggest, toml_array, toml_string,
};

/// The usage text printed by `--help` (and pointed to by usage errors).
pub const HELP: &str = "\
tine - a pre-fork HTTP/1.1 application server

USAGE:
    tine [OPTIONS] [APP]
    tine status [-c FILE] [--json] [--watch]

ARGUMENTS:
    APP                 The Python application to serve (WSGI or ASGI, detected;
                        --interface overrides): MODULE:CALLABLE, like
                        myproject.wsgi:application or main:app, or a factory to
                        call, MODULE:FUNC(ARGS), like 'app:create_app(\"prod\")'.
                        Sets [app] handler = \"python\" and app = APP

COMMANDS:
    status              Ask the running master (through [server] control_socket)
                        for each worker's pid, slot, generation, age, state,
                        requests, requests/s and queue wait p90 over the last
                        5 s, busy threads, oldest request and memory

OPTIONS:
    -c, --config FILE   Read the TOML config FILE (without it: built-in defaults,
                        the demo app on 127.0.0.1:8000)
        --check-config  Validate the config, print a summary and exit
        --print-config  Print the effective config as TOML and exit
        --json          With status: print JSON instead of a table
        --watch         With status: ask again every second until interrupted
    -V, --version       Print the version and exit
    -h, --help          Print this help and exit

The options below override the config key named in parentheses, at start and
on every reload. A DURATION is like 30s, 500ms or 1m30s; a bare number is
seconds. uvicorn's names are taken too; uvicorn flags tine does not have are
refused, each with what tine does instead.

SERVER OPTIONS:
    -b, --bind ADDR     Listen on ADDR; repeat for more (127.0.0.1:8000,
                        [::1]:8000, unix:/run/tine.sock) (server.bind)
        --host HOST     uvicorn's: listen on HOST:PORT, HOST an IP address
                        (127.0.0.1 when only --port is given); not with --bind
        --port PORT     uvicorn's: the port for --host (8000 when only --host
                        is given)
        --uds PATH      uvicorn's: listen on the unix socket PATH, as
                        --bind unix:PATH
        --proxy-protocol
                        Every --bind (or server.bind) address expects a PROXY
                        protocol header (v1 or v2) from a balancer in
                        forwarded_allow_ips, as gunicorn's flag
    -w, --workers N     Worker processes: a positive number or \"auto\"
                        (2 x cpus + 1, cgroup quotas and affinity honoured;
                        under a cgroup memory limit, no more workers than fit
                        in it) (server.workers)
    -t, --threads N     Pool threads per worker (server.threads); gunicorn's -t
                        is tine's --timeout
        --timeout DURATION
                        A worker silent this long is hung and replaced
                        (server.timeout)
        --graceful-timeout DURATION, --timeout-graceful-shutdown DURATION
                        How long workers may finish their requests on a stop
                        or restart (server.graceful_timeout)
        --keep-alive DURATION, --timeout-keep-alive DURATION
                        How long an idle connection stays open; 0 disables
                        keep-alive (server.keepalive)
        --boot-timeout DURATION
                        How long a worker may take to start before it is hung
                        (server.boot_timeout)
        --max-requests N, --limit-max-requests N
                        Recycle a worker after N requests; 0 never
                        (server.max_requests)
        --max-requests-jitter N
                        Up to N more requests per worker, chosen at random
                        (server.max_requests_jitter)
        --chdir DIR     Change to DIR once the sockets are bound (server.chdir)
    -p, --pid FILE      Write the master's pid to FILE (server.pidfile)
    -u, --user USER     Run the workers as USER (server.user)
    -g, --group GROUP   Run the workers as GROUP (server.group)
        --forwarded-allow-ips LIST
                        Believe Forwarded/X-Forwarded-* headers from these
                        comma-separated IPs or networks, or *
                        (server.forwarded_allow_ips)
    -k, --worker-class CLASS
                        uvicorn.workers.UvicornWorker (or UvicornH11Worker, or
                        either from uvicorn_worker) is --interface asgi; tine
                        has no other worker classes and refuses them

TLS OPTIONS (every --bind listener serves HTTPS; the master reads the files,
on every reload too):
        --certfile FILE, --ssl-certfile FILE
                        The certificate chain, PEM, own certificate first
                        (tls.cert)
        --keyfile FILE, --ssl-keyfile FILE
                        Its private key, PEM, unencrypted (tls.key)
        --ca-certs FILE, --ssl-ca-certs FILE
                        Require client certificates signed by these CA
                        certificates, PEM (tls.ca)

PYTHON APPLICATION OPTIONS:
        --pythonpath DIRS
                        Comma-separated directories put first in sys.path;
                        repeat to add more (app.pythonpath)
        --app-dir DIR   uvicorn's: one directory put first in sys.path, added
                        to app.pythonpath as --pythonpath adds
        --factory       APP names a factory to call with no arguments:
                        main:create_app serves main:create_app()
        --interface auto|wsgi|asgi
                        The interface the application speaks; auto detects it,
                        uvicorn's asgi3 is asgi (app.interface)
    -e, --env KEY=VALUE Set an environment variable for the application; repeat
                        for more (added to app.env)
        --preload       Import the application in the master, before the
                        workers are forked (app.preload)
        --virtualenv DIR
                        The virtual environment to import from (app.virtualenv)
        --script-name PATH
                        WSGI: the path the application is mounted at, like /app
                        (app.script_name)
        --root-path PATH
                        ASGI: the scope's root_path, the path the application
                        is mounted at, like /api (app.root_path)
        --loop auto|asyncio|uvloop
                        ASGI: the event loop; auto is uvloop when installed
                        (app.loop)
        --lifespan auto|on|off
                        ASGI: run the lifespan protocol; auto when the
                        application supports it (app.lifespan)
        --limit-concurrency N
                        ASGI: requests one worker runs at once, 1 to 100000;
                        more wait unread (app.max_concurrency)
        --ws-max-size BYTES
                        ASGI: the largest WebSocket message a client may send
                        (websocket.max_message)
        --ws-ping-interval SECONDS
                        ASGI: ping a WebSocket silent this long
                        (websocket.ping_interval)
        --ws-ping-timeout SECONDS
                        ASGI: close a WebSocket whose pong is this late
                        (websocket.ping_timeout)

LOGGING OPTIONS:
        --log-level LEVEL
                        off, error, warn, info, debug or trace (log.level)
        --access-logfile FILE
                        Write the access log to FILE, - for stdout
                        (log.access_log)
        --error-logfile FILE
                        Write the error log to FILE, - for stderr
                        (log.error_log)

SIGNALS (to the master):
    TERM                graceful stop: finish in-flight requests, then exit 0
    INT, QUIT           fast stop: workers exit at once, then exit 0
    HUP                 reload the config; a bad file changes nothing
    USR2                upgrade: start the binary on disk as the new master
    USR1                reopen the error log
    TTIN, TTOU          one more / one fewer worker (never below one)

EXIT STATUS:
    0   success
    64  usage or config error (every problem is listed, with file:line:column)
    70  internal error (a worker could not start, e.g. the application
        could not be built)
    71  OS error (e.g. could not bind 0.0.0.0:80: permission denied, or
        the pid file is held by a running process)

See tine(8) and tine.toml(5).
";

/// What the user asked tine to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Run the server.
    Serve,
    /// Validate the config and exit.
    CheckConfig,
    /// Print the effective config and exit.
    PrintConfig,
    /// Print the version.
    Version,
    /// Print the help.
    Help,
    /// Ask the running master for its status.
    Status {
        /// As JSON rather than a table.
        json: bool,
        /// Again every second, until interrupted.
        watch: bool,
    },
}

/// How a flag's argument is written as the TOML value of its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    /// A string.
    Text,
    /// An integer when it reads as one; otherwise a string, which the key refuses.
    Integer,
    /// A duration string; a bare number is seconds, as gunicorn takes it.
    Seconds,
    /// Comma-separated strings, an array; a repeated flag adds to it.
    List,
    /// One string added to an array, commas and all; a repeated flag adds to it.
    Item,
    /// No argument: the key is set to true.
    True,
}

/// A flag that sets one config key.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct KeyFlag {
    pub(crate) short: Option<&'static str>,
    pub(crate) long: &'static str,
    /// Another long name for the same flag: uvicorn's.
    pub(crate) also: Option<&'static str>,
    /// The key, as "section.key".
    pub(crate) key: &'static str,
    pub(crate) form: Form,
}

const fn flag(
    short: Option<&'static str>,
    long: &'static str,
    key: &'static str,
    form: Form,
) -> KeyFlag {
    KeyFlag {
        short,
        long,
        also: None,
        key,
        form,
    }
}

impl KeyFlag {
    /// The same flag, also spelled `long` (uvicorn's name for it).
    const fn also(self, long: &'static str) -> KeyFlag {
        KeyFlag {
            also: Some(long),
            ..self
        }
    }

    /// Whether `name` (as given: `--long` or `-s`) is this flag.
    fn is(&self, name: &str) -> bool {
        self.long == name || self.short == Some(name) || self.also == Some(name)
    }

    /// Whether a repeated flag adds to the key's array rather than replacing it.
    fn adds(&self) -> bool {
        matches!(self.form, Form::List | Form::Item)
    }
}

/// The flags that set one config key each, named as gunicorn names its own, or uvicorn where
/// gunicorn has none; [`KeyFlag::also`] accepts uvicorn's name for a gunicorn flag.
pub(crate) const KEY_FLAGS: &[KeyFlag] = &[
    flag(None, "--timeout", "server.timeout", Form::Seconds),
    flag(
        None,
        "--graceful-timeout",
        "server.graceful_timeout",
        Form::Seconds,
    )
    .also("--timeout-graceful-shutdown"),
    flag(None, "--keep-alive", "server.keepalive", Form::Seconds).also("--timeout-keep-alive"),
    flag(None, "--boot-timeout", "server.boot_timeout", Form::Seconds),
    flag(None, "--max-requests", "server.max_requests", Form::Integer).also("--limit-max-requests"),
    flag(
        None,
        "--max-requests-jitter",
        "server.max_requests_jitter",
        Form::Integer,
    ),
    flag(None, "--chdir", "server.chdir", Form::Text),
    flag(Some("-p"), "--pid", "server.pidfile", Form::Text),
    flag(Some("-u"), "--user", "server.user", Form::Text),
    flag(Some("-g"), "--group", "server.group", Form::Text),
    flag(
        None,
        "--forwarded-allow-ips",
        "server.forwarded_allow_ips",
        Form::List,
    ),
    flag(None, "--certfile", "tls.cert", Form::Text).also("--ssl-certfile"),
    flag(None, "--keyfile", "tls.key", Form::Text).also("--ssl-keyfile"),
    flag(None, "--ca-certs", "tls.ca", Form::Text).also("--ssl-ca-certs"),
    flag(None, "--pythonpath", "app.pythonpath", Form::List),
    flag(None, "--app-dir", "app.pythonpath", Form::Item),
    flag(None, "--preload", "app.preload", Form::True),
    flag(None, "--virtualenv", "app.virtualenv", Form::Text),
    flag(None, "--script-name", "app.script_name", Form::Text),
    flag(None, "--interface", "app.interface", Form::Text),
    flag(None, "--root-path", "app.root_path", Form::Text),
    flag(None, "--loop", "app.loop", Form::Text),
    flag(None, "--lifespan", "app.lifespan", Form::Text),
    flag(
        None,
        "--limit-concurrency",
        "app.max_concurrency",
        Form::Integer,
    ),
    flag(
        None,
        "--ws-max-size",
        "websocket.max_message",
        Form::Integer,
    ),
    flag(
        None,
        "--ws-ping-interval",
        "websocket.ping_interval",
        Form::Seconds,
    ),
    flag(
        None,
        "--ws-ping-timeout",
        "websocket.ping_timeout",
        Form::Seconds,
    ),
    flag(None, "--log-level", "log.level", Form::Text),
    flag(None, "--access-logfile", "log.access_log", Form::Text),
    flag(None, "--error-logfile", "log.error_log", Form::Text),
];

/// The long options handled on their own rather than through [`KEY_FLAGS`].
const OTHER_FLAGS: &[&str] = &[
    "--config",
    "--bind",
    "--proxy-protocol",
    "--workers",
    "--threads",
    "--env",
    "--factory",
    "--host",
    "--port",
    "--uds",
    "--worker-class",
    "--check-config",
    "--print-config",
    "--json",
    "--watch",
    "--version",
    "--help",
];

/// The `-k` worker classes that tine takes: uvicorn's, which mean `--interface asgi`.
const ASGI_WORKER_CLASSES: &[&str] = &[
    "uvicorn.workers.UvicornWorker",
    "uvicorn.workers.UvicornH11Worker",
    "uvicorn_worker.UvicornWorker",
    "uvicorn_worker.UvicornH11Worker",
];

/// uvicorn's flags that tine does not have, refused with what tine does instead. A name
/// ending in `*` stands for every flag that starts with the rest.
pub(crate) const REFUSED_UVICORN_FLAGS: &[(&[&str], &str)] = &[
    (
        &["--reload*"],
        "tine does not watch files; reload with `kill -HUP <master pid>`",
    ),
    (
        &["--ws"],
        "tine has one WebSocket implementation, its own, in its event loop; there is none to \
         choose",
    ),
    (
        &["--ws-per-message-deflate"],
        "tine does not negotiate permessage-deflate: WebSocket messages go uncompressed",
    ),
    (
        &["--ws-max-queue"],
        "tine holds at most one message per WebSocket that the application has not received, \
         then stops reading from it",
    ),
    (
        &["--http"],
        "tine has one HTTP/1.1 implementation, its own; there is none to choose",
    ),
    (
        &["--ssl-keyfile-password"],
        "tine reads unencrypted keys only: decrypt it (openssl pkey -in KEY -out PLAIN) and \
         make it readable by root alone; the master reads it before the workers switch user",
    ),
    (
        &["--ssl-version"],
        "tine speaks TLS 1.2 and 1.3 (rustls), the client choosing; there is no older one to \
         choose",
    ),
    (
        &["--ssl-ciphers"],
        "tine uses rustls's cipher suites, all of them current; there are no others to choose",
    ),
    (
        &["--ssl-cert-reqs"],
        "tine requires client certificates when --ca-certs (--ssl-ca-certs) is given, and \
         asks for none otherwise",
    ),
    (
        &["--proxy-headers"],
        "tine reads forwarded headers from forwarded_allow_ips (--forwarded-allow-ips)",
    ),
    (
        &["--no-proxy-headers"],
        "tine believes forwarded headers only from forwarded_allow_ips; \
         --forwarded-allow-ips '' believes none",
    ),
    (
        &["--server-header", "--no-server-header"],
        "tine sends `Server: tine` unless the application sends its own Server header",
    ),
    (
        &["--date-header", "--no-date-header"],
        "tine sends a Date header unless the application sends its own",
    ),
    (
        &["--use-colors", "--no-use-colors"],
        "tine's logs are plain text, without colours",
    ),
    (
        &["--env-file"],
        "tine reads no .env file; set variables with -e KEY=VALUE or [app] env",
    ),
    (
        &["--h11-max-incomplete-event-size"],
        "tine bounds a request head with [limits] header_bytes and header_field_size",
    ),
    (
        &["--log-config"],
        "tine's logging is set with --log-level, --error-logfile and --access-logfile",
    ),
    (
        &["--access-log"],
        "access logging is on when --access-logfile is given (- for stdout)",
    ),
    (
        &["--no-access-log"],
        "access logging is off unless --access-logfile is given",
    ),
];

/// What tine does instead of the uvicorn flag `name`, if it is one tine refuses.
fn refused_uvicorn_flag(name: &str) -> Option<&'static str> {
    REFUSED_UVICORN_FLAGS
        .iter()
        .find(|(flags, _)| {
            flags.iter().any(|flag| match flag.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => name == *flag,
            })
        })
        .map(|(_, instead)| *instead)
}

/// One [`KeyFlag`] as given: its arguments (a list flag's items, over all its repeats).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeySetting {
    pub(crate) flag: &'static KeyFlag,
    pub(crate) args: Vec<String>,
}

impl KeySetting {
    /// The key's value as TOML.
    fn toml(&self) -> String {
        let arg = self.args.first().map_or("", String::as_str);
        match self.flag.form {
            Form::Text => toml_string(arg),
            Form::Integer => match arg.parse::<i64>() {
                Ok(n) => n.to_string(),
                Err(_) => toml_string(arg),
            },
            Form::Seconds => toml_string(&seconds_as_duration(arg)),
            Form::List | Form::Item => toml_array(&self.args),
            Form::True => "true".to_owned(),
        }
    }

    /// Sets the flag's key in `config`.
    fn apply(&self, config: &mut Config) -> Result<(), String> {
        config.set(self.flag.key, &self.toml())
    }
}

/// A bare number of seconds, as gunicorn and uvicorn take them ("30", uvicorn's "20.0"), as
/// a duration with a unit ("30s", "20000ms"); anything else as it is, for the key to judge.
fn seconds_as_duration(arg: &str) -> String {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match arg.split_once('.') {
        None if digits(arg) => format!("{arg}s"),
        Some((whole, fraction)) if digits(whole) && digits(fraction) => {
            // Milliseconds, the finest unit a duration has: the rest of the fraction is cut.
            let millis: String = fraction.chars().chain("000".chars()).take(3).collect();
            format!(
                "{}ms",
                format!("{whole}{millis}").trim_start_matches('0').max("0")
            )
        }
        _ => arg.to_owned(),
    }
}

/// Settings given on the command line, which override the file's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--bind`, in order; empty means "use the file's".
    pub bind: Vec<BindAddr>,
    /// `--proxy-protocol`: every address of `bind` expects a PROXY protocol header.
    pub proxy_protocol: bool,
    /// `--workers`.
    pub workers: Option<Workers>,
    /// `--threads`.
    pub threads: Option<NonZeroUsize>,
    /// The `APP` argument, a spec [`parse_app_spec`] accepts: sets `app.handler = "python"`
    /// and `app.app`. With `--factory`, the call of the factory it names.
    pub app: Option<String>,
    /// `--env KEY=VALUE`, in order: each is added to `app.env`, or replaces the entry of that
    /// name.
    pub env: Vec<(String, String)>,
    /// The [`KEY_FLAGS`] given, each once, in the order first given.
    pub(crate) keys: Vec<KeySetting>,
}

impl Overrides {
    /// Applies the command line to `config`, read from the file or the defaults.
    pub(crate) fn apply(&self, config: &mut Config) {
        if !self.bind.is_empty() {
            config.server.bind = self.bind.clone();
            // The file's PROXY protocol listeners went with its addresses.
            config.server.proxy_protocol.clear();
        }
        if self.proxy_protocol {
            config.server.proxy_protocol = config.server.bind.clone();
        }
        if let Some(workers) = self.workers {
            config.server.workers = workers;
        }
        if let Some(threads) = self.threads {
            config.server.threads = threads;
        }
        if let Some(app) = &self.app {
            config.app.handler = HandlerKind::Python;
            config.app.app = Some(app.clone());
        }
        for (name, value) in &self.env {
            match config.app.env.iter_mut().find(|(n, _)| n == name) {
                Some(entry) => entry.1 = value.clone(),
                None => config.app.env.push((name.clone(), value.clone())),
            }
        }
        for setting in &self.keys {
            // Keys are read one at a time, whatever the rest of the config holds.
            setting
                .apply(config)
                .expect("each flag's value was checked when the command line was parsed");
        }
    }

    /// Records `setting`, checked first: a list flag adds to what the flags of its key gave
    /// before (`--app-dir` to `--pythonpath`), any other flag replaces it.
    fn add_key(&mut self, setting: KeySetting, given_as: &str) -> Result<(), UsageError> {
        setting
            .apply(&mut Config::default())
            .map_err(|why| UsageError(format!("{given_as}: {why}")))?;
        match self
            .keys
            .iter_mut()
            .find(|s| s.flag.key == setting.flag.key)
        {
            Some(earlier) if setting.flag.adds() => earlier.args.extend(setting.args),
            Some(earlier) => *earlier = setting,
            None => self.keys.push(setting),
        }
        Ok(())
    }

    /// Sets the key of the [`KEY_FLAGS`] entry `long` to `arg`, as that flag would.
    fn add_flag(&mut self, long: &str, arg: &str, given_as: &str) -> Result<(), UsageError> {
        let flag = KEY_FLAGS
            .iter()
            .find(|f| f.long == long)
            .expect("the flag is in KEY_FLAGS");
        let args = vec![arg.to_owned()];
        self.add_key(KeySetting { flag, args }, given_as)
    }
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// What to do.
    pub mode: Mode,
    /// `--config`.
    pub config: Option<PathBuf>,
    /// Settings that override the file.
    pub overrides: Overrides,
}

/// A usage error: the message names the argument at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (see tine --help)", self.0)
    }
}

impl std::error::Error for UsageError {}

/// Parses the arguments after the program name.
pub fn parse<I>(args: I) -> Result<Command, UsageError>
where
    I: IntoIterator<Item = OsString>,
{
    let mut command = Command {
        mode: Mode::Serve,
        config: None,
        overrides: Overrides::default(),
    };
    let mut listen = Listen::default();
    let mut factory = false;
    let mut args = args.into_iter();
    while let Some(raw) = args.next() {
        let Some(arg) = raw.to_str() else {
            return Err(UsageError(format!("argument {raw:?} is not valid UTF-8")));
        };
        // `--name=value` and `--name value` both work; short flags take the next argument.
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name, Some(value.to_owned())),
            _ => (arg, None),
        };
        let mut value = |flag: &str| -> Result<OsString, UsageError> {
            match &inline {
                Some(v) => Ok(OsString::from(v)),
                None => args
                    .next()
                    .ok_or_else(|| UsageError(format!("{flag} needs a value"))),
            }
        };
        match name {
            "-c" | "--config" => command.config = Some(PathBuf::from(value(name)?)),
            "-b" | "--bind" => {
                let text = utf8(value(name)?, name)?;
                let addr = text
                    .parse::<BindAddr>()
                    .map_err(|why| UsageError(format!("{name} {text:?}: {why}")))?;
                command.overrides.bind.push(addr);
                listen.bind.get_or_insert_with(|| name.to_owned());
            }
            "--proxy-protocol" if inline.is_some() => {
                return Err(UsageError(format!("{name} takes no value")));
            }
            "--proxy-protocol" => command.overrides.proxy_protocol = true,
            "--host" => listen.host = Some(utf8(value(name)?, name)?),
            "--port" => listen.port = Some(utf8(value(name)?, name)?),
            "--uds" => listen.uds = Some(utf8(value(name)?, name)?),
            "--factory" if inline.is_some() => {
                return Err(UsageError(format!("{name} takes no value")));
            }
            "--factory" => factory = true,
            "-w" | "--workers" => {
                let text = utf8(value(name)?, name)?;
                command.overrides.workers = Some(if text == "auto" {
                    Workers::Auto
                } else {
                    Workers::Fixed(positive(&text, name)?)
                });
            }
            "-t" | "--threads" => {
                let text = utf8(value(name)?, name)?;
                command.overrides.threads = Some(positive(&text, name)?);
            }
            "-e" | "--env" => {
                let text = utf8(value(name)?, name)?;
                let entry = env_entry(&text, name)?;
                command.overrides.env.push(entry);
            }
            "--check-config" => set_mode(&mut command, Mode::CheckConfig, name)?,
            "--print-config" => set_mode(&mut command, Mode::PrintConfig, name)?,
            "-V" | "--version" => command.mode = Mode::Version,
            "status" if command.mode == Mode::Serve => {
                command.mode = Mode::Status {
                    json: false,
                    watch: false,
                };
            }
            "--json" | "--watch" if inline.is_some() => {
                return Err(UsageError(format!("{name} takes no value")));
            }
            "--json" | "--watch" => match &mut command.mode {
                Mode::Status { json, watch } => {
                    *if name == "--json" { json } else { watch } = true;
                }
                _ => {
                    return Err(UsageError(format!("{name} goes with the status command")));
                }
            },
            "-h" | "--help" => command.mode = Mode::Help,
            "-k" | "--worker-class" => {
                let class = utf8(value(name)?, name)?;
                if !ASGI_WORKER_CLASSES.contains(&class.as_str()) {
                    return Err(UsageError(format!(
                        "{name} {class}: tine has no worker classes; every worker is an event \
                         loop with a pool of --threads threads (uvicorn's worker classes are \
                         accepted and mean --interface asgi)"
                    )));
                }
                command.overrides.add_flag("--interface", "asgi", name)?;
            }
            _ => {
                if let Some(flag) = KEY_FLAGS.iter().find(|f| f.is(name)) {
                    let args = match flag.form {
                        Form::True if inline.is_some() => {
                            return Err(UsageError(format!("{name} takes no value")));
                        }
                        Form::True => Vec::new(),
                        Form::List => split_list(&utf8(value(name)?, name)?),
                        _ => vec![utf8(value(name)?, name)?],
                    };
                    command.overrides.add_key(KeySetting { flag, args }, name)?;
                } else if let Some(instead) = refused_uvicorn_flag(name) {
                    return Err(UsageError(format!("{name}: {instead}")));
                } else if name.starts_with('-') {
                    return Err(unknown_option(name));
                } else {
                    set_app(&mut command.overrides, arg)?;
                }
            }
        }
    }
    if let Some(addr) = listen.address()? {
        command.overrides.bind.push(addr);
    }
    if factory {
        call_factory(&mut command.overrides)?;
    }
    if command.overrides.proxy_protocol
        && let Some(unix) = command
            .overrides
            .bind
            .iter()
            .find(|b| matches!(b, BindAddr::Unix(_)))
    {
        return Err(UsageError(format!(
            "--proxy-protocol: {}",
            crate::config::unix_proxy_protocol(&unix.to_string())
        )));
    }
    Ok(command)
}

/// Where uvicorn's `--host`, `--port` and `--uds` say to listen, and how `--bind` was given.
#[derive(Default)]
struct Listen {
    host: Option<String>,
    port: Option<String>,
    uds: Option<String>,
    /// `-b` or `--bind`, as first given.
    bind: Option<String>,
}

impl Listen {
    /// The address uvicorn's flags make: `HOST:PORT` (127.0.0.1 and 8000 for the one not
    /// given), or `unix:PATH`; `None` without them. With `--bind` too, a usage error.
    fn address(&self) -> Result<Option<BindAddr>, UsageError> {
        let given = [
            ("--host", &self.host),
            ("--port", &self.port),
            ("--uds", &self.uds),
        ];
        let Some((first, _)) = given.iter().find(|(_, value)| value.is_some()) else {
            return Ok(None);
        };
        if let Some(bind) = &self.bind {
            return Err(UsageError(format!(
                "{bind} and {first} both say where to listen: give -b/--bind, or uvicorn's \
                 --host and --port (or --uds), not both"
            )));
        }
        if let Some(path) = &self.uds {
            if self.host.is_some() || self.port.is_some() {
                return Err(UsageError(
                    "--uds and --host/--port both say where to listen: give one".to_owned(),
                ));
            }
            let addr = format!("unix:{path}")
                .parse()
                .map_err(|why| UsageError(format!("--uds: {why}")))?;
            return Ok(Some(addr));
        }
        let host = self.host.as_deref().unwrap_or("127.0.0.1");
        let port = self.port.as_deref().unwrap_or("8000");
        if port.parse::<u16>().is_err() {
            return Err(UsageError(format!(
                "--port expects a port number from 0 to 65535, found {port:?}"
            )));
        }
        // An IPv6 address goes in brackets before its port.
        let addr = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        addr.parse()
            .map(Some)
            .map_err(|why| UsageError(format!("--host {host:?}: {why}")))
    }
}

/// `--factory`: `APP` names a factory, called with no arguments.
fn call_factory(overrides: &mut Overrides) -> Result<(), UsageError> {
    let Some(app) = &overrides.app else {
        return Err(UsageError(
            "--factory needs APP, the factory to call, like main:create_app".to_owned(),
        ));
    };
    if parse_app_spec(app).map_err(UsageError)?.call.is_some() {
        return Err(UsageError(format!(
            "--factory: {app:?} is a call already; give the factory's name, like \
             main:create_app, or leave --factory out"
        )));
    }
    overrides.app = Some(format!("{app}()"));
    Ok(())
}

/// The `APP` argument: at most one, with the syntax `app.app` accepts.
fn set_app(overrides: &mut Overrides, arg: &str) -> Result<(), UsageError> {
    if let Some(first) = &overrides.app {
        return Err(UsageError(format!(
            "one application at a time: {first:?} and {arg:?} were both given"
        )));
    }
    parse_app_spec(arg).map_err(UsageError)?;
    overrides.app = Some(arg.to_owned());
    Ok(())
}

/// `--env KEY=VALUE`, checked as the same entry of `app.env` would be.
fn env_entry(text: &str, flag: &str) -> Result<(String, String), UsageError> {
    let Some((name, value)) = text.split_once('=') else {
        return Err(UsageError(format!(
            "{flag} {text:?}: expected KEY=VALUE, like DJANGO_SETTINGS_MODULE=mysite.settings"
        )));
    };
    let table = format!("{{ {} = {} }}", toml_string(name), toml_string(value));
    Config::default()
        .set("app.env", &table)
        .map_err(|why| UsageError(format!("{flag}: {why}")))?;
    Ok((name.to_owned(), value.to_owned()))
}

/// A comma-separated list, each item trimmed; an empty argument is an empty list.
fn split_list(text: &str) -> Vec<String> {
    if text.trim().is_empty() {
        return Vec::new();
    }
    text.split(',').map(|item| item.trim().to_owned()).collect()
}

fn unknown_option(name: &str) -> UsageError {
    let longs: Vec<&str> = OTHER_FLAGS
        .iter()
        .copied()
        .chain(
            KEY_FLAGS
                .iter()
                .flat_map(|f| [Some(f.long), f.also])
                .flatten(),
        )
        .map(|f| f.trim_start_matches('-'))
        .collect();
    match suggest(name.trim_start_matches('-'), &longs) {
        Some(close) => UsageError(format!("unknown option {name} (did you mean --{close}?)")),
        None => UsageError(format!("unknown option {name}")),
    }
}

fn set_mode(command: &mut Command, mode: Mode, flag: &str) -> Result<(), UsageError> {
    if matches!(command.mode, Mode::CheckConfig | Mode::PrintConfig) && command.mode != mode {
        return Err(UsageError(format!(
            "{flag} cannot be combined with --check-config or --print-config"
        )));
    }
    if !matches!(command.mode, Mode::Help | Mode::Version) {
        command.mode = mode;
    }
    Ok(())
}

fn utf8(value: OsString, flag: &str) -> Result<String, UsageError> {
    value
        .into_string()
        .map_err(|raw| UsageError(format!("{flag} {raw:?}: not valid UTF-8")))
}

fn positive(text: &str, flag: &str) -> Result<NonZeroUsize, UsageError> {
    text.parse::<NonZeroUsize>()
        .ok()
        .filter(|n| n.get() <= 1024)
        .ok_or_else(|| {
            UsageError(format!(
                "{flag} expects a whole number from 1 to 1024, found {text:?}"
            ))
        })
}

#[cfg(test)]
mod tests;
