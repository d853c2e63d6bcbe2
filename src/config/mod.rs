//! tine's configuration: the `Config` type and its defaults, loading it from a TOML file
//! with a diagnostic for every problem at `FILE:LINE:COLUMN`, and writing it back as TOML.
//!
//! The file has four sections, `[server]`, `[limits]`, `[log]` and `[app]`; any section or
//! key left out takes its default, so an empty file is a valid config. `config/tine.toml`
//! is the documented example and lists every key at its default.

pub mod access_log;
mod app_spec;
mod bind;
mod diag;
mod schema;
mod units;

use std::fmt;
use std::fmt::Write as _;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use toml::de::DeTable;

pub use app_spec::{AppSpec, parse_app_spec};
pub use bind::BindAddr;
pub use diag::{Diagnostic, Diagnostics, LoadError};
pub use units::{format_duration, format_size, parse_duration, parse_size};

pub(crate) use diag::suggest;
pub(crate) use schema::{toml_array, toml_string};

use diag::Problem;
use schema::SCHEMA;

/// Every config key as "section.key", in the order of `config/tine.toml`.
pub const KEYS: &[&str] = &[
    "server.bind",
    "server.backlog",
    "server.workers",
    "server.threads",
    "server.max_connections",
    "server.timeout",
    "server.boot_timeout",
    "server.graceful_timeout",
    "server.keepalive",
    "server.header_timeout",
    "server.body_timeout",
    "server.request_timeout",
    "server.max_requests",
    "server.max_requests_jitter",
    "server.max_worker_memory",
    "server.pidfile",
    "server.user",
    "server.group",
    "server.umask",
    "server.chdir",
    "server.socket_mode",
    "server.socket_owner",
    "server.control_socket",
    "server.forwarded_allow_ips",
    "limits.request_line",
    "limits.headers",
    "limits.header_field_size",
    "limits.header_bytes",
    "limits.body",
    "limits.body_buffer",
    "log.level",
    "log.error_log",
    "log.access_log",
    "log.access_log_format",
    "metrics.bind",
    "app.handler",
    "app.app",
    "app.pythonpath",
    "app.virtualenv",
    "app.env",
    "app.preload",
    "app.script_name",
    "app.root",
    "app.index",
    "app.listing",
    "app.follow_symlinks",
    "app.cache_control",
    "app.precompressed",
];

/// Largest `server.backlog`: the kernel stores the backlog in 16 bits.
pub const MAX_BACKLOG: usize = 65535;
/// Largest `server.workers`. More processes than this only add memory and contention.
pub const MAX_WORKERS: usize = 1024;
/// Largest `server.threads`, per worker.
pub const MAX_THREADS: usize = 1024;

/// The accepted `log.level` names, quietest first.
pub(crate) const LEVELS: [(&str, log::LevelFilter); 6] = [
    ("off", log::LevelFilter::Off),
    ("error", log::LevelFilter::Error),
    ("warn", log::LevelFilter::Warn),
    ("info", log::LevelFilter::Info),
    ("debug", log::LevelFilter::Debug),
    ("trace", log::LevelFilter::Trace),
];

/// The whole configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// `[server]`: listening, processes and timeouts.
    pub server: Server,
    /// `[limits]`: bounds on what a client may send.
    pub limits: Limits,
    /// `[log]`: logging.
    pub log: Log,
    /// `[metrics]`: the Prometheus endpoint.
    pub metrics: Metrics,
    /// `[app]`: the application behind the server.
    pub app: App,
}

/// `[server]`: where to listen, how many processes and threads, and timeouts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    /// Addresses to listen on; never empty and without duplicates.
    pub bind: Vec<BindAddr>,
    /// Pending-connection queue length for each listening socket, 1 to 65535.
    pub backlog: u32,
    /// Number of worker processes.
    pub workers: Workers,
    /// Request-handling threads per worker, at most 1024.
    pub threads: NonZeroUsize,
    /// Open client connections per worker.
    pub max_connections: NonZeroUsize,
    /// A worker silent for longer than this is hung; never zero.
    pub timeout: Duration,
    /// How long a worker may take to start (build its application, for `wsgi` import it)
    /// before it counts as hung; `timeout` applies once it is up. Never zero.
    pub boot_timeout: Duration,
    /// How long workers may finish in-flight requests on shutdown or restart.
    pub graceful_timeout: Duration,
    /// How long an idle keep-alive connection stays open; zero disables keep-alive.
    pub keepalive: Duration,
    /// A request head must arrive in full within this; never zero.
    pub header_timeout: Duration,
    /// A request body must make progress at least this often; never zero.
    pub body_timeout: Duration,
    /// A request whose handler runs longer is answered 504 and its worker replaced; zero is off.
    pub request_timeout: Duration,
    /// A worker is recycled after serving this many requests; zero is never.
    pub max_requests: u64,
    /// Up to this many extra requests, chosen at random per worker, so workers do not recycle
    /// together.
    pub max_requests_jitter: u64,
    /// A worker whose private memory grows past this many bytes is recycled; zero is off.
    pub max_worker_memory: u64,
    /// Where the master writes its pid; `None` writes none.
    pub pidfile: Option<PathBuf>,
    /// The user (name or numeric id) workers run as; `None` keeps the master's.
    pub user: Option<String>,
    /// The group (name or numeric id) workers run as; `None` is the user's primary group.
    pub group: Option<String>,
    /// The file mode creation mask for the master and workers; `None` keeps the inherited one.
    pub umask: Option<u32>,
    /// The directory the master changes to after binding; `None` stays put.
    pub chdir: Option<PathBuf>,
    /// The permission bits of Unix sockets in `bind`; `None` leaves them to the umask.
    pub socket_mode: Option<u32>,
    /// The owner (`user` or `user:group`) of Unix sockets in `bind`; `None` leaves it.
    pub socket_owner: Option<String>,
    /// The master's control socket, for `tine status`; `None` opens none.
    pub control_socket: Option<PathBuf>,
    /// Proxies whose `Forwarded`/`X-Forwarded-*` headers are believed.
    pub forwarded_allow_ips: Vec<crate::forwarded::Trusted>,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            bind: vec![BindAddr::Tcp(std::net::SocketAddr::from((
                [127, 0, 0, 1],
                8000,
            )))],
            backlog: 2048,
            workers: Workers::Auto,
            threads: NonZeroUsize::new(4).expect("4 is not zero"),
            max_connections: NonZeroUsize::new(1000).expect("1000 is not zero"),
            timeout: Duration::from_secs(30),
            boot_timeout: Duration::from_secs(120),
            graceful_timeout: Duration::from_secs(30),
            keepalive: Duration::from_secs(75),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            request_timeout: Duration::ZERO,
            max_requests: 0,
            max_requests_jitter: 0,
            max_worker_memory: 0,
            pidfile: None,
            user: None,
            group: None,
            umask: None,
            chdir: None,
            socket_mode: None,
            socket_owner: None,
            control_socket: None,
            forwarded_allow_ips: vec![crate::forwarded::Trusted::Net(
                std::net::IpAddr::from([127, 0, 0, 1]),
                32,
            )],
        }
    }
}

/// How many worker processes to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workers {
    /// Decided at startup from the machine; the config does not say how.
    Auto,
    /// Exactly this many, at most 1024.
    Fixed(NonZeroUsize),
}

impl fmt::Display for Workers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Workers::Auto => f.write_str("auto"),
            Workers::Fixed(n) => write!(f, "{n}"),
        }
    }
}

impl FromStr for Workers {
    type Err = String;

    /// Parses `"auto"` or a count from 1 to 1024, as `server.workers` accepts; for the
    /// command line.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("auto") {
            return Ok(Workers::Auto);
        }
        s.parse::<NonZeroUsize>()
            .ok()
            .filter(|n| n.get() <= MAX_WORKERS)
            .map(Workers::Fixed)
            .ok_or_else(|| {
                format!(
                    "invalid worker count {}: expected \"auto\" or a positive integer up to \
                     {MAX_WORKERS}",
                    units::quote(s)
                )
            })
    }
}

/// `[limits]`: the most a client may send (larger requests are refused), and how much of a
/// request body is kept in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line in bytes, excluding its CRLF (414).
    pub request_line: usize,
    /// Most header fields in a head, and most trailer fields in a chunked body (431).
    pub headers: usize,
    /// Longest single field line, excluding its CRLF (431).
    pub header_field_size: usize,
    /// Largest head in bytes (431).
    pub header_bytes: usize,
    /// Largest request body in bytes after chunked decoding (413).
    pub body: u64,
    /// A request body larger than this is written to an unlinked temporary file as it arrives,
    /// instead of being held in memory.
    pub body_buffer: u64,
}

impl Limits {
    /// The limits the HTTP decoder enforces.
    pub fn http(&self) -> crate::http::Limits {
        crate::http::Limits {
            request_line: self.request_line,
            headers: self.headers,
            header_field_size: self.header_field_size,
            header_bytes: self.header_bytes,
            body: self.body,
        }
    }
}

/// The decoder's limits at the config's defaults.
impl Default for crate::http::Limits {
    fn default() -> Self {
        Limits::default().http()
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_line: 8192,
            headers: 100,
            header_field_size: 8190,
            header_bytes: 64 << 10,
            body: 100 << 20,
            body_buffer: 1 << 20,
        }
    }
}

/// `[log]`: logging.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Log {
    /// The most verbose level written.
    pub level: log::LevelFilter,
    /// Where the error log goes: `None` is stderr, otherwise a file appended to.
    pub error_log: Option<PathBuf>,
    /// Where the access log goes; `None` writes none.
    pub access_log: Option<access_log::Target>,
    /// How access log lines look.
    pub access_log_format: access_log::Format,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            level: log::LevelFilter::Info,
            error_log: None,
            access_log: None,
            access_log_format: access_log::Format::Combined,
        }
    }
}

/// `[app]`: the application the server runs, and the settings of the `wsgi` and `static`
/// handlers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct App {
    /// Which built-in handler answers requests.
    pub handler: HandlerKind,
    /// `wsgi`: the application, `"module:callable"` or `"module:factory(args)"`, its syntax
    /// checked by [`parse_app_spec`]; `None` names none, which `handler = "wsgi"` refuses.
    pub app: Option<String>,
    /// `wsgi`: directories put at the front of `sys.path`, in order; a relative one is taken
    /// from the directory tine runs in (after `[server] chdir`).
    pub pythonpath: Vec<PathBuf>,
    /// `wsgi`: the virtual environment whose packages the application imports; `None` means
    /// the `VIRTUAL_ENV` environment variable's, if it is set (resolved at start-up).
    pub virtualenv: Option<PathBuf>,
    /// `wsgi`: environment variables set for the application, in the file's order. Names are
    /// not empty and hold no `=` or NUL; values hold no NUL.
    pub env: Vec<(String, String)>,
    /// `wsgi`: import the application in the master, before the workers are forked.
    pub preload: bool,
    /// `wsgi`: the `SCRIPT_NAME` the application is mounted at: `""` (the `SCRIPT_NAME`
    /// environment variable then applies at start-up), or a path that starts with `/` and
    /// does not end with one.
    pub script_name: String,
    /// `static`: the directory served, relative to the directory tine runs in.
    pub root: PathBuf,
    /// `static`: file names tried, in order, for a request naming a directory; each a plain
    /// file name.
    pub index: Vec<String>,
    /// `static`: answer a directory without an index file with an HTML listing (else 404).
    pub listing: bool,
    /// `static`: follow symbolic links wherever they lead; when false, only to somewhere
    /// under `root`.
    pub follow_symlinks: bool,
    /// `static`: the `Cache-Control` value sent with files; `None` sends none.
    pub cache_control: Option<String>,
    /// `static`: serve `FILE.br` or `FILE.gz` beside `FILE` to clients that accept them.
    pub precompressed: bool,
}

#[cfg(test)]
impl App {
    /// `env` as string slices, for comparing.
    pub(crate) fn env_strs(&self) -> Vec<(&str, &str)> {
        self.env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }
}

impl Default for App {
    fn default() -> Self {
        App {
            handler: HandlerKind::default(),
            app: None,
            pythonpath: Vec::new(),
            virtualenv: None,
            env: Vec::new(),
            preload: false,
            script_name: String::new(),
            root: PathBuf::from("public"),
            index: vec!["index.html".to_owned()],
            listing: false,
            follow_symlinks: false,
            cache_control: None,
            precompressed: false,
        }
    }
}

/// `[metrics]`: where the master serves `/metrics` and `/healthz`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metrics {
    /// The address; `None` serves no metrics.
    pub bind: Option<std::net::SocketAddr>,
}

/// The built-in request handlers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HandlerKind {
    /// A small built-in application for trying the server out.
    #[default]
    Demo,
    /// The files under `[app] root`.
    Static,
    /// The Python WSGI application named by `[app] app`.
    Wsgi,
}

impl HandlerKind {
    /// Every handler, in the order error messages list them.
    pub const ALL: &[HandlerKind] = &[HandlerKind::Demo, HandlerKind::Static, HandlerKind::Wsgi];

    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            HandlerKind::Demo => "demo",
            HandlerKind::Static => "static",
            HandlerKind::Wsgi => "wsgi",
        }
    }
}

impl fmt::Display for HandlerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for HandlerKind {
    type Err = String;

    /// Parses a handler name as `app.handler` accepts it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        HandlerKind::ALL
            .iter()
            .copied()
            .find(|h| h.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<String> = HandlerKind::ALL
                    .iter()
                    .map(|h| format!("\"{h}\""))
                    .collect();
                format!(
                    "unknown handler {}: expected one of {}",
                    units::quote(s),
                    names.join(", ")
                )
            })
    }
}

impl Config {
    /// Parses and validates `text`; `source_name` is what diagnostics call the file (e.g.
    /// "tine.toml" or the path as given).
    ///
    /// Every problem is reported, not just the first. A TOML syntax error is the exception
    /// in one way: the document's structure is then uncertain, so only the syntax errors
    /// are reported, since checking values of a half-understood document would mostly
    /// produce noise.
    ///
    /// # Errors
    ///
    /// Every problem found, in file order, each located at a line and column.
    pub fn from_toml_str(source_name: &str, text: &str) -> Result<Config, Diagnostics> {
        Config::from_toml_str_with(source_name, text, |_| {})
    }

    /// Like [`Config::from_toml_str`], with `adjust` (the command line's overrides) applied
    /// to the file's values before the checks that involve several keys, so that an override
    /// counts there: an `APP` argument gives the file's `handler = "wsgi"` its `app`.
    pub(crate) fn from_toml_str_with(
        source_name: &str,
        text: &str,
        adjust: impl FnOnce(&mut Config),
    ) -> Result<Config, Diagnostics> {
        let (doc, syntax_errors) = DeTable::parse_recoverable(text);
        if !syntax_errors.is_empty() {
            let mut problems: Vec<Problem> = syntax_errors
                .iter()
                .map(|e| syntax_problem(e, text))
                .collect();
            problems.dedup_by(|a, b| a.offset == b.offset && a.message == b.message);
            return Err(diag::into_diagnostics(source_name, text, problems));
        }
        let mut config = Config::default();
        let mut problems = Vec::new();
        schema::apply(doc.get_ref(), &mut config, &mut problems);
        adjust(&mut config);
        schema::check_across(doc.get_ref(), &config, &mut problems);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(diag::into_diagnostics(source_name, text, problems))
        }
    }

    /// Reads and validates a file; diagnostics name the path as given.
    ///
    /// # Errors
    ///
    /// `LoadError::Read` when the file cannot be read, `LoadError::Invalid` with every
    /// problem in it otherwise (including text that is not UTF-8).
    pub fn load(path: &Path) -> Result<Config, LoadError> {
        Config::load_with(path, |_| {})
    }

    /// Like [`Config::load`], with `adjust` applied as [`Config::from_toml_str_with`] does.
    pub(crate) fn load_with(
        path: &Path,
        adjust: impl FnOnce(&mut Config),
    ) -> Result<Config, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        let name = path.display().to_string();
        match String::from_utf8(bytes) {
            Ok(text) => {
                Config::from_toml_str_with(&name, &text, adjust).map_err(LoadError::Invalid)
            }
            Err(e) => {
                // Point at the first bad byte, located within the valid text before it.
                let valid_up_to = e.utf8_error().valid_up_to();
                let bytes = e.into_bytes();
                let text = String::from_utf8_lossy(&bytes[..valid_up_to]);
                let problem = Problem {
                    offset: valid_up_to,
                    key: None,
                    message: "the file is not valid UTF-8, which TOML requires".to_owned(),
                };
                Err(LoadError::Invalid(diag::into_diagnostics(
                    &name,
                    &text,
                    vec![problem],
                )))
            }
        }
    }

    /// Sets one key, `"section.key"`, from its value written as TOML (`"\"30s\""`, `"[\"a\"]"`,
    /// `"true"`), checked exactly as the same value in the file is: the command line's flags
    /// go through here, so a flag accepts what its key accepts and says the same about the
    /// rest.
    ///
    /// # Errors
    ///
    /// What is wrong with the value (each bad entry of a list, joined by "; "), or that the
    /// key or the TOML is not one.
    pub(crate) fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        schema::set(self, key, value)
    }

    /// The effective config as TOML, every key, in the same layout as config/tine.toml.
    ///
    /// When `resolved_workers` is `Some((n, why))` and `workers` is `Auto`, writes
    /// `workers = n` preceded by a comment line `# auto: why`. Otherwise the output parses
    /// back to an equal `Config`.
    pub fn to_toml(&self, resolved_workers: Option<(usize, &str)>) -> String {
        let mut out = String::from(
            "# tine: the effective configuration, every key included.\n\
             # config/tine.toml explains each key in full.\n",
        );
        let defaults = Config::default();
        for section in SCHEMA {
            // Writing to a String cannot fail, so the fmt::Results below are ignored.
            let _ = writeln!(out, "\n[{}]", section.name);
            for key in section.keys {
                let _ = writeln!(out, "\n# {} Default: {}.", key.help, (key.write)(&defaults));
                let resolved = match (section.name, key.name, self.server.workers) {
                    ("server", "workers", Workers::Auto) => resolved_workers,
                    _ => None,
                };
                match resolved {
                    Some((n, why)) => {
                        // A line break in `why` would end the comment and corrupt the file.
                        let why = why.replace(['\n', '\r'], " ");
                        let _ = write!(out, "# auto: {why}\n{} = {n}\n", key.name);
                    }
                    None => {
                        let _ = writeln!(out, "{} = {}", key.name, (key.write)(self));
                    }
                }
            }
        }
        out
    }
}

fn syntax_problem(error: &toml::de::Error, text: &str) -> Problem {
    let span = error.span().unwrap_or(text.len()..text.len());
    let mut message = error.message().to_owned();
    // toml's message leaves out which key; its span covers it.
    if message == "duplicate key" {
        if let Some(key) = text.get(span.clone()) {
            message = format!("duplicate key {}", units::quote(key));
        }
    }
    Problem {
        offset: span.start,
        key: None,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const EXAMPLE: &str = include_str!("../../config/tine.toml");

    fn parse(text: &str) -> Config {
        Config::from_toml_str("t.toml", text).unwrap_or_else(|d| panic!("{d}"))
    }

    fn errors(text: &str) -> Vec<String> {
        match Config::from_toml_str("t.toml", text) {
            Ok(config) => panic!("expected errors, got {config:?}"),
            Err(d) => d.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Config::default();
        assert_eq!(
            c.server.bind,
            ["127.0.0.1:8000".parse::<BindAddr>().unwrap()]
        );
        assert_eq!(c.server.backlog, 2048);
        assert_eq!(c.server.workers, Workers::Auto);
        assert_eq!(c.server.threads.get(), 4);
        assert_eq!(c.server.max_connections.get(), 1000);
        assert_eq!(c.server.timeout, Duration::from_secs(30));
        assert_eq!(c.server.graceful_timeout, Duration::from_secs(30));
        assert_eq!(c.server.keepalive, Duration::from_secs(75));
        assert_eq!(c.limits.request_line, 8192);
        assert_eq!(c.limits.headers, 100);
        assert_eq!(c.limits.header_field_size, 8190);
        assert_eq!(c.limits.header_bytes, 65_536);
        assert_eq!(c.limits.body, 104_857_600);
        assert_eq!(c.limits.body_buffer, 1_048_576);
        assert_eq!(c.log.level, log::LevelFilter::Info);
        assert_eq!(c.app.handler, HandlerKind::Demo);
        assert_eq!(c.app.root, PathBuf::from("public"));
        assert_eq!(c.app.index, ["index.html"]);
        assert!(!c.app.listing && !c.app.follow_symlinks && !c.app.precompressed);
        assert_eq!(c.app.cache_control, None);
        assert_eq!(c.server.boot_timeout, Duration::from_secs(120));
        assert_eq!(c.app.app, None);
        assert!(c.app.pythonpath.is_empty() && c.app.env.is_empty());
        assert_eq!(c.app.virtualenv, None);
        assert!(!c.app.preload);
        assert_eq!(c.app.script_name, "");
    }

    #[test]
    fn empty_and_partial_files_take_defaults() {
        assert_eq!(parse(""), Config::default());
        assert_eq!(parse("\n# only a comment\n\n"), Config::default());
        assert_eq!(
            parse("[server]\n[limits]\n[log]\n[app]\n"),
            Config::default()
        );
        let c = parse("[server]\nthreads = 8\n");
        let mut want = Config::default();
        want.server.threads = NonZeroUsize::new(8).unwrap();
        assert_eq!(c, want);
    }

    #[test]
    fn every_value_form_is_read() {
        let c = parse(
            r#"
[server]
bind = ["0.0.0.0:80", "[::1]:8000", "unix:/run/tine.sock"]
backlog = 65535
workers = 16
threads = 1024
max_connections = 50_000
timeout = "1m30s"
graceful_timeout = "0s"
keepalive = "500ms"

[limits]
request_line = "4K"
headers = 0x20
header_field_size = 4000
header_bytes = "1MB"
body = 0

[log]
level = "trace"

[app]
handler = "demo"
"#,
        );
        let bind: Vec<BindAddr> = ["0.0.0.0:80", "[::1]:8000", "unix:/run/tine.sock"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(c.server.bind, bind);
        assert_eq!(c.server.backlog, 65535);
        assert_eq!(
            c.server.workers,
            Workers::Fixed(NonZeroUsize::new(16).unwrap())
        );
        assert_eq!(c.server.threads.get(), 1024);
        assert_eq!(c.server.max_connections.get(), 50_000);
        assert_eq!(c.server.timeout, Duration::from_secs(90));
        assert_eq!(c.server.graceful_timeout, Duration::ZERO);
        assert_eq!(c.server.keepalive, Duration::from_millis(500));
        assert_eq!(c.limits.request_line, 4096);
        assert_eq!(c.limits.headers, 32);
        assert_eq!(c.limits.header_field_size, 4000);
        assert_eq!(c.limits.header_bytes, 1_000_000);
        assert_eq!(c.limits.body, 0);
        assert_eq!(c.log.level, log::LevelFilter::Trace);
    }

    #[test]
    fn alternative_spellings_are_read() {
        let c = parse(
            "server.bind = \"unix:tine.sock\"\nserver.workers = \"AUTO\"\nlog = { level = \"WARN\" }\n",
        );
        assert_eq!(c.server.bind, [BindAddr::Unix(PathBuf::from("tine.sock"))]);
        assert_eq!(c.server.workers, Workers::Auto);
        assert_eq!(c.log.level, log::LevelFilter::Warn);
    }

    #[test]
    fn example_file_is_the_defaults_and_covers_every_key() {
        // But for the application: the file serves the bundled WSGI one.
        let mut expected = Config::default();
        expected.app.handler = HandlerKind::Wsgi;
        expected.app.app = Some("hello:app".to_owned());
        expected.app.pythonpath = vec![PathBuf::from("examples/python")];
        assert_eq!(
            Config::from_toml_str("config/tine.toml", EXAMPLE),
            Ok(expected)
        );
        let doc = DeTable::parse(EXAMPLE).unwrap().into_inner();
        for key in KEYS {
            let (section, name) = key.split_once('.').unwrap();
            let table = doc.get(section).unwrap_or_else(|| panic!("no [{section}]"));
            assert!(
                table.get_ref().get(name).is_some(),
                "config/tine.toml does not set {key}"
            );
        }
    }

    #[test]
    fn example_file_documents_each_key_in_schema_order() {
        let lines: Vec<&str> = EXAMPLE.lines().collect();
        let mut section = "";
        let mut seen = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name;
            } else if let Some((key, _)) = line.split_once(" = ") {
                if !line.starts_with('#') {
                    assert!(
                        i > 0 && lines[i - 1].starts_with('#'),
                        "{section}.{key} has no comment right above it"
                    );
                    seen.push(format!("{section}.{key}"));
                }
            }
        }
        assert_eq!(seen, KEYS);
    }

    const MAN_PAGE: &str = include_str!("../../man/tine.toml.5");

    /// The keys a tine.toml(5) page documents, as "section.key": each is a `.TP` line followed
    /// by `.B key`, under a `.SS [section]` heading. A key named anywhere else does not count.
    fn man_page_keys(page: &str) -> Vec<String> {
        let mut section: Option<&str> = None;
        let mut keys = Vec::new();
        let mut lines = page.lines().peekable();
        while let Some(line) = lines.next() {
            if let Some(heading) = line.strip_prefix(".SS ") {
                section = heading
                    .trim()
                    .strip_prefix('[')
                    .and_then(|h| h.strip_suffix(']'));
            } else if line.starts_with(".SH") {
                section = None;
            } else if line == ".TP" || line.starts_with(".TP ") {
                let name = lines.peek().and_then(|next| next.strip_prefix(".B "));
                if let (Some(section), Some(name)) = (section, name) {
                    keys.push(format!("{section}.{}", name.trim()));
                }
            }
        }
        keys
    }

    #[test]
    fn man_page_keys_are_found_only_in_their_entries() {
        let page = ".SH DESCRIPTION\n.TP\n.B threads\n.SS Values\n.TP\n.B bind\n\
                    .SH KEYS\n.SS [server]\n.TP\n.B threads\nThreads; see\n.B backlog\n\
                    .TP 8\n.B bind\n.SS [log]\n.TP\n.B level\n";
        assert_eq!(
            man_page_keys(page),
            ["server.threads", "server.bind", "log.level"]
        );
    }

    #[test]
    fn man_page_documents_every_key_and_no_other() {
        let documented = man_page_keys(MAN_PAGE);
        for key in KEYS {
            let (section, name) = key.split_once('.').unwrap();
            assert!(
                documented.iter().any(|d| d == key),
                "man/tine.toml.5 does not document {key}: add `.TP` then `.B {name}` under \
                 `.SS [{section}]`, with its type, default, range and what a reload does"
            );
        }
        for key in &documented {
            assert!(
                KEYS.contains(&key.as_str()),
                "man/tine.toml.5 documents {key}, which is not in KEYS"
            );
        }
    }

    #[test]
    fn to_toml_round_trips() {
        let default = Config::default();
        assert_eq!(parse(&default.to_toml(None)), default);

        let mut custom = Config::default();
        custom.server.bind = vec![
            "[::]:443".parse().unwrap(),
            "10.0.0.1:8080".parse().unwrap(),
            BindAddr::Unix(PathBuf::from("/tmp/a \"quoted\" \\ path.sock")),
        ];
        custom.server.backlog = 1;
        custom.server.workers = Workers::Fixed(NonZeroUsize::new(3).unwrap());
        custom.server.threads = NonZeroUsize::new(1).unwrap();
        custom.server.max_connections = NonZeroUsize::new(123_456).unwrap();
        custom.server.timeout = Duration::from_millis(1_500);
        custom.server.graceful_timeout = Duration::ZERO;
        custom.server.keepalive = Duration::from_secs(7200);
        custom.limits.request_line = 1;
        custom.limits.headers = 1;
        custom.limits.header_field_size = 1 << 20;
        custom.limits.header_bytes = 3 << 30;
        custom.limits.body = u64::MAX;
        custom.log.level = log::LevelFilter::Off;
        let text = custom.to_toml(Some((9, "ignored because workers is fixed")));
        assert!(!text.contains("# auto:"), "{text}");
        assert_eq!(parse(&text), custom);
    }

    #[test]
    fn to_toml_writes_every_key_in_layout() {
        let text = Config::default().to_toml(None);
        let doc = DeTable::parse(&text).unwrap().into_inner();
        for key in KEYS {
            let (section, name) = key.split_once('.').unwrap();
            assert!(
                doc[section].get_ref().get(name).is_some(),
                "{key} missing:\n{text}"
            );
        }
        assert!(text.contains("\n[server]\n"));
        assert!(text.contains("\nworkers = \"auto\"\n"), "{text}");
        assert!(text.contains("\nbind = [\"127.0.0.1:8000\"]\n"), "{text}");
        assert!(text.contains("\nheader_bytes = \"64KiB\"\n"), "{text}");
        assert!(text.contains("\nheader_field_size = 8190\n"), "{text}");
        assert!(text.contains("\nkeepalive = \"75s\"\n"), "{text}");
        assert!(text.contains("\nlevel = \"info\"\n"), "{text}");
        assert!(
            text.contains("\n# Worker processes: \"auto\" or 1-1024. Default: \"auto\".\n"),
            "{text}"
        );
    }

    #[test]
    fn to_toml_shows_resolved_workers() {
        let text = Config::default().to_toml(Some((6, "6 CPUs available\nto this process")));
        assert!(
            text.contains("\n# auto: 6 CPUs available to this process\nworkers = 6\n"),
            "{text}"
        );
        let reread = parse(&text);
        assert_eq!(
            reread.server.workers,
            Workers::Fixed(NonZeroUsize::new(6).unwrap())
        );
    }

    #[test]
    fn workers_from_str() {
        assert_eq!("auto".parse::<Workers>(), Ok(Workers::Auto));
        assert_eq!(
            "1024".parse::<Workers>(),
            Ok(Workers::Fixed(NonZeroUsize::new(1024).unwrap()))
        );
        for bad in ["0", "1025", "-1", "four", ""] {
            let err = bad.parse::<Workers>().unwrap_err();
            assert!(
                err.ends_with("expected \"auto\" or a positive integer up to 1024"),
                "{err}"
            );
        }
        assert_eq!(Workers::Auto.to_string(), "auto");
        assert_eq!(
            Workers::Fixed(NonZeroUsize::new(5).unwrap()).to_string(),
            "5"
        );
    }

    #[test]
    fn handler_names() {
        assert_eq!(HandlerKind::Demo.to_string(), "demo");
        assert_eq!("demo".parse::<HandlerKind>(), Ok(HandlerKind::Demo));
        assert_eq!("static".parse::<HandlerKind>(), Ok(HandlerKind::Static));
        assert_eq!("wsgi".parse::<HandlerKind>(), Ok(HandlerKind::Wsgi));
        assert_eq!(HandlerKind::Wsgi.to_string(), "wsgi");
        assert_eq!(
            "flask".parse::<HandlerKind>(),
            Err(
                "unknown handler \"flask\": expected one of \"demo\", \"static\", \"wsgi\""
                    .to_owned()
            )
        );
    }

    #[test]
    fn static_keys_are_read_and_written_back() {
        let c = parse(
            "[app]\nhandler = \"static\"\nroot = \"/srv/www\"\nindex = [\"index.htm\", \"default.html\"]\n\
             listing = true\nfollow_symlinks = true\ncache_control = \"public, max-age=3600\"\n\
             precompressed = true\n",
        );
        assert_eq!(c.app.handler, HandlerKind::Static);
        assert_eq!(c.app.root, PathBuf::from("/srv/www"));
        assert_eq!(c.app.index, ["index.htm", "default.html"]);
        assert!(c.app.listing && c.app.follow_symlinks && c.app.precompressed);
        assert_eq!(c.app.cache_control.as_deref(), Some("public, max-age=3600"));
        assert_eq!(parse(&c.to_toml(None)), c);
        let none = parse("[app]\nindex = []\ncache_control = \"\"\n");
        assert!(none.app.index.is_empty());
        assert_eq!(none.app.cache_control, None);
    }

    #[test]
    fn wsgi_keys_are_read_and_written_back() {
        let c = parse(
            "[server]\nboot_timeout = \"5m\"\n[app]\nhandler = \"wsgi\"\n\
             app = 'app:create_app(\"prod\", debug=False)'\npythonpath = [\"src\", \"/opt/lib\"]\n\
             virtualenv = \"/srv/venv\"\npreload = true\nscript_name = \"/app\"\n\
             env = { ZED = \"1\", DJANGO_SETTINGS_MODULE = \"site.settings\", \"odd name\" = \"a \\\"b\\\"\" }\n",
        );
        assert_eq!(c.server.boot_timeout, Duration::from_secs(300));
        assert_eq!(c.app.handler, HandlerKind::Wsgi);
        assert_eq!(
            c.app.app.as_deref(),
            Some("app:create_app(\"prod\", debug=False)")
        );
        assert_eq!(
            c.app.pythonpath,
            [PathBuf::from("src"), PathBuf::from("/opt/lib")]
        );
        assert_eq!(c.app.virtualenv, Some(PathBuf::from("/srv/venv")));
        assert!(c.app.preload);
        assert_eq!(c.app.script_name, "/app");
        assert_eq!(
            c.app.env_strs(),
            [
                ("ZED", "1"),
                ("DJANGO_SETTINGS_MODULE", "site.settings"),
                ("odd name", "a \"b\"")
            ]
        );
        let text = c.to_toml(None);
        assert!(
            text.contains(
                "\nenv = { ZED = \"1\", DJANGO_SETTINGS_MODULE = \"site.settings\", \
                 \"odd name\" = \"a \\\"b\\\"\" }\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("\npythonpath = [\"src\", \"/opt/lib\"]\n"),
            "{text}"
        );
        assert_eq!(parse(&text), c);
    }

    #[test]
    fn env_as_a_section_keeps_the_file_order() {
        let c = parse("[app.env]\nB = \"2\"\nA = \"1\"\nC = \"\"\n");
        assert_eq!(c.app.env_strs(), [("B", "2"), ("A", "1"), ("C", "")]);
        assert!(
            c.to_toml(None)
                .contains("\nenv = { B = \"2\", A = \"1\", C = \"\" }\n")
        );
    }

    #[test]
    fn wsgi_key_errors() {
        assert_eq!(
            errors(
                "[server]\nboot_timeout = \"0s\"\n[app]\napp = \"1a:b\"\n\
                 pythonpath = [\"src\", \"\", 3]\nvirtualenv = 1\npreload = \"yes\"\n\
                 script_name = \"app/\"\n"
            ),
            [
                "t.toml:2:16: server.boot_timeout: expected a duration greater than zero, found \"0s\"",
                "t.toml:4:7: app.app: invalid application \"1a:b\": the module before \":\", \
                 \"1a\", is not a Python name or dotted path of names",
                "t.toml:5:22: app.pythonpath: expected a directory path, found \"\"",
                "t.toml:5:26: app.pythonpath: expected a directory path, found 3",
                "t.toml:6:14: app.virtualenv: expected a string (\"\" for none), found 1",
                "t.toml:7:11: app.preload: expected true or false, found \"yes\"",
                "t.toml:8:15: app.script_name: expected \"\" or a path that starts with \"/\" and \
                 does not end with one, like \"/app\", found \"app/\"",
            ]
        );
        assert_eq!(
            errors("[app]\npythonpath = \"src\"\nscript_name = \"/\"\n"),
            [
                "t.toml:2:14: app.pythonpath: expected a list of directories, like [\"src\"], \
                 found \"src\"",
                "t.toml:3:15: app.script_name: expected \"\" or a path that starts with \"/\" \
                 and does not end with one, like \"/app\", found \"/\"",
            ]
        );
    }

    #[test]
    fn each_bad_env_entry_is_reported_where_it_is() {
        assert_eq!(
            errors(
                "[app]\nenv = { \"\" = \"x\", \"A=B\" = \"y\", OK = \"z\", N = 1, V = \"a\\u0000b\" }\n"
            ),
            [
                "t.toml:2:9: app.env: an environment variable name must not be empty",
                "t.toml:2:19: app.env: environment variable name \"A=B\" must not contain \"=\" \
                 or a NUL character",
                "t.toml:2:46: app.env: expected a string, found 1",
                "t.toml:2:53: app.env: must not contain a NUL character",
            ]
        );
        assert_eq!(
            errors("[app]\nenv = [\"A=1\"]\n"),
            ["t.toml:2:7: app.env: expected a table of strings, like \
                 { DJANGO_SETTINGS_MODULE = \"site.settings\" }, found [\"A=1\"]"]
        );
    }

    #[test]
    fn wsgi_without_app_is_reported_at_the_handler() {
        let want = "app.handler: \"wsgi\" needs app = \"module:callable\" (the WSGI application \
                    to serve)";
        assert_eq!(
            errors("[app]\nhandler = \"wsgi\"\n"),
            [format!("t.toml:2:11: {want}")]
        );
        assert_eq!(
            errors("app.app = \"\"\napp.handler = \"wsgi\"\n"),
            [format!("t.toml:2:15: {want}")]
        );
        // A bad app is reported on its own, not as missing as well.
        assert_eq!(
            errors("[app]\nhandler = \"wsgi\"\napp = \"a:b(\"\n"),
            [
                "t.toml:3:7: app.app: invalid application \"a:b(\": the argument list is not \
              closed with \")\""
            ]
        );
        // The command line's overrides count: they can name the application.
        let c = Config::from_toml_str_with("t.toml", "[app]\nhandler = \"wsgi\"\n", |c| {
            c.app.app = Some("pkg.wsgi:application".to_owned());
        })
        .unwrap();
        assert_eq!(c.app.app.as_deref(), Some("pkg.wsgi:application"));
        // Another handler does not use app, and does not need it.
        assert_eq!(
            parse("[app]\napp = \"a:b\"\n").app.handler,
            HandlerKind::Demo
        );
    }

    #[test]
    fn the_bundled_static_config_is_valid_and_serves_public() {
        let text = include_str!("../../config/static.toml");
        let c = parse(text);
        assert_eq!(c.app.handler, HandlerKind::Static);
        assert_eq!(c.app.root, PathBuf::from("public"));
    }

    #[test]
    fn static_key_errors() {
        assert_eq!(
            errors("[app]\nroot = \"\"\nlisting = \"yes\"\nindex = [\"ok\", \"../up\", 3]\n"),
            [
                "t.toml:2:8: app.root: expected a directory path, found \"\"",
                "t.toml:3:11: app.listing: expected true or false, found \"yes\"",
                "t.toml:4:16: app.index: expected a plain file name (no \"/\", not \".\" or \"..\"), found \"../up\"",
                "t.toml:4:25: app.index: expected a file name string, found 3",
            ]
        );
        assert_eq!(
            errors("[app]\ncache_control = \"a\\nb\"\nindex = \"index.html\"\n"),
            [
                "t.toml:2:17: app.cache_control: must not contain control characters",
                "t.toml:3:9: app.index: expected a list of file names, like [\"index.html\"], found \"index.html\"",
            ]
        );
    }

    #[test]
    fn syntax_error_is_one_diagnostic_with_toml_message() {
        assert_eq!(
            errors("[server]\nthreads = \"four\nworkers = 2\n"),
            ["t.toml:2:16: invalid basic string, expected `\"`"]
        );
        assert_eq!(
            errors("[server]\nbody = 100MiB\n"),
            ["t.toml:2:8: string values must be quoted, expected literal string"]
        );
    }

    #[test]
    fn several_syntax_errors_are_all_reported_without_value_errors() {
        // threads = "x" is wrong too, but with the structure in doubt only syntax is reported.
        assert_eq!(
            errors("[server]\nthreads = \"x\"\nworkers = 1\nworkers = 2\n[server]\n"),
            [
                "t.toml:4:1: duplicate key \"workers\"",
                "t.toml:5:2: duplicate key \"server\"",
            ]
        );
    }

    #[test]
    fn load_reads_files_and_names_them() {
        let dir = std::env::temp_dir().join(format!("tine-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();

        let good = dir.join("good.toml");
        std::fs::write(&good, "[server]\nthreads = 2\n").unwrap();
        assert_eq!(Config::load(&good).unwrap().server.threads.get(), 2);

        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "[server]\nthreads = 0\n").unwrap();
        let err = Config::load(&bad).unwrap_err();
        assert!(matches!(err, LoadError::Invalid(_)));
        assert_eq!(
            err.to_string(),
            format!(
                "{}:2:11: server.threads: expected a positive integer up to 1024, found 0",
                bad.display()
            )
        );

        let binary = dir.join("binary.toml");
        std::fs::write(&binary, b"[server]\nthreads = \"\xff\"\n").unwrap();
        assert_eq!(
            Config::load(&binary).unwrap_err().to_string(),
            format!(
                "{}:2:12: the file is not valid UTF-8, which TOML requires",
                binary.display()
            )
        );

        let missing = dir.join("missing.toml");
        let err = Config::load(&missing).unwrap_err();
        assert!(matches!(&err, LoadError::Read { path, .. } if *path == missing));
        assert_eq!(
            err.to_string(),
            format!(
                "could not read {}: No such file or directory (os error 2)",
                missing.display()
            )
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
