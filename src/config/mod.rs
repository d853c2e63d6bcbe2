//! tine's configuration: the `Config` type and its defaults, loading it from a TOML file
//! with a diagnostic for every problem at `FILE:LINE:COLUMN`, and writing it back as TOML.
//!
//! The file has seven sections, `[server]`, `[limits]`, `[log]`, `[metrics]`, `[app]`,
//! `[websocket]` and `[tls]`; any
//! section or key left out takes its default, so an empty file is a valid config.
//! `config/tine.toml` is the documented example and lists every key at its default.
//!
//! The table of sections and keys, with how each value is read and written, is in `schema.rs`;
//! the types here hold what it reads.

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

pub(crate) use bind::unix_proxy_protocol;
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
    "server.drain_delay",
    "server.keepalive",
    "server.header_timeout",
    "server.body_timeout",
    "server.min_body_rate",
    "server.body_rate_grace",
    "server.request_timeout",
    "server.queue_wait_warning",
    "server.queue_wait_warning_after",
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
    "server.forwarded_header",
    "limits.request_line",
    "limits.headers",
    "limits.header_field_size",
    "limits.header_bytes",
    "limits.body",
    "limits.body_buffer",
    "limits.body_memory",
    "limits.body_disk",
    "log.level",
    "log.error_log",
    "log.access_log",
    "log.access_log_format",
    "metrics.bind",
    "app.handler",
    "app.app",
    "app.interface",
    "app.pythonpath",
    "app.virtualenv",
    "app.env",
    "app.preload",
    "app.script_name",
    "app.root_path",
    "app.loop",
    "app.lifespan",
    "app.max_concurrency",
    "app.root",
    "app.index",
    "app.listing",
    "app.follow_symlinks",
    "app.dotfiles",
    "app.cache_control",
    "app.precompressed",
    "websocket.max_message",
    "websocket.ping_interval",
    "websocket.ping_timeout",
    "websocket.on_stop",
    "tls.cert",
    "tls.key",
    "tls.ca",
];

/// Largest `server.backlog`: the kernel stores the backlog in 16 bits.
pub const MAX_BACKLOG: usize = 65535;
/// Largest `server.workers`. More processes than this only add memory and contention.
pub const MAX_WORKERS: usize = 1024;
/// Largest `server.threads`, per worker.
pub const MAX_THREADS: usize = 1024;
/// Largest `app.max_concurrency`, per worker.
pub const MAX_CONCURRENCY: usize = 100_000;

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
    /// `[websocket]`: the WebSockets of an ASGI application.
    pub websocket: WebSocket,
    /// `[tls]`: TLS on every listener of `[server] bind`.
    pub tls: Tls,
}

/// `[server]`: where to listen, how many processes and threads, and timeouts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    /// Addresses to listen on; never empty and without duplicates.
    pub bind: Vec<BindAddr>,
    /// The addresses of `bind` whose connections begin with a PROXY protocol header (v1 or
    /// v2), written in the file as a `bind` entry `{ address = "...", proxy_protocol = true }`;
    /// TCP addresses only, in `bind`'s order.
    pub proxy_protocol: Vec<BindAddr>,
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
    /// On SIGTERM, how long the master answers `/healthz` with 503 while the workers keep
    /// accepting and serving, before the graceful stop; zero stops at once.
    pub drain_delay: Duration,
    /// How long an idle keep-alive connection stays open; zero disables keep-alive.
    pub keepalive: Duration,
    /// A request head must arrive in full within this; never zero.
    pub header_timeout: Duration,
    /// A request body must make progress at least this often; never zero.
    pub body_timeout: Duration,
    /// Bytes per second a request body must average, from the end of its head, once
    /// `body_rate_grace` has passed; zero is off.
    pub min_body_rate: u64,
    /// How long a request body may arrive slower than `min_body_rate`; never zero.
    pub body_rate_grace: Duration,
    /// A request whose handler runs longer is answered 504 and its worker replaced; zero is off.
    pub request_timeout: Duration,
    /// The master warns when a worker's requests wait this long at p90 to be taken up (for
    /// `queue_wait_warning_after`); zero is off.
    pub queue_wait_warning: Duration,
    /// How long requests must keep waiting past `queue_wait_warning` before the warning;
    /// zero is off.
    pub queue_wait_warning_after: Duration,
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
    /// The header those proxies report the client in: `X-Forwarded-For` or `Forwarded`.
    pub forwarded_header: crate::forwarded::ForwardedHeader,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            bind: vec![BindAddr::Tcp(std::net::SocketAddr::from((
                [127, 0, 0, 1],
                8000,
            )))],
            proxy_protocol: Vec::new(),
            backlog: 2048,
            workers: Workers::Auto,
            threads: NonZeroUsize::new(4).expect("4 is not zero"),
            max_connections: NonZeroUsize::new(1000).expect("1000 is not zero"),
            timeout: Duration::from_secs(30),
            boot_timeout: Duration::from_secs(120),
            graceful_timeout: Duration::from_secs(30),
            drain_delay: Duration::ZERO,
            keepalive: Duration::from_secs(75),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            min_body_rate: 240,
            body_rate_grace: Duration::from_secs(5),
            request_timeout: Duration::ZERO,
            queue_wait_warning: Duration::from_millis(100),
            queue_wait_warning_after: Duration::from_secs(30),
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
            forwarded_header: crate::forwarded::ForwardedHeader::XForwardedFor,
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
    /// What the HTTP decoder enforces: the request line, the header fields and the head's
    /// size, the body's size.
    pub http: crate::http::Limits,
    /// A request body larger than this is written to an unlinked temporary file as it arrives,
    /// instead of being held in memory.
    pub body_buffer: u64,
    /// `body_memory`: most bytes of memory one worker reserves for the bodies it is
    /// receiving; `None` derives it ([`Limits::body_memory`]).
    pub body_memory: Option<u64>,
    /// `body_disk`: most bytes of temporary files one worker reserves for the bodies it is
    /// receiving; `None` derives it ([`Limits::body_disk`]).
    pub body_disk: Option<u64>,
}

/// The derived `body_memory` is this many times `body_buffer`: as many bodies received at
/// once, each held in memory up to `body_buffer`.
pub const BODY_MEMORY_PER_BUFFER: u64 = 16;
/// The derived `body_disk` is this many times `body`: as many largest bodies received at once.
pub const BODY_DISK_PER_BODY: u64 = 4;

impl Limits {
    /// The per-worker budget of memory for request bodies being received: `body_memory`, or
    /// 16 × `body_buffer`.
    pub fn body_memory(&self) -> u64 {
        self.body_memory
            .unwrap_or_else(|| self.body_buffer.saturating_mul(BODY_MEMORY_PER_BUFFER))
    }

    /// The per-worker budget of temporary-file space for request bodies being received:
    /// `body_disk`, or 4 × `body`.
    pub fn body_disk(&self) -> u64 {
        self.body_disk
            .unwrap_or_else(|| self.http.body.saturating_mul(BODY_DISK_PER_BODY))
    }
}

/// The decoder's limits at the config's defaults.
impl Default for crate::http::Limits {
    fn default() -> Self {
        crate::http::Limits {
            request_line: 8192,
            headers: 100,
            header_field_size: 8190,
            header_bytes: 64 << 10,
            body: 100 << 20,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            http: crate::http::Limits::default(),
            body_buffer: 1 << 20,
            body_memory: None,
            body_disk: None,
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
    /// `python`: the application, `"module:callable"` or `"module:factory(args)"`, its
    /// syntax checked by [`parse_app_spec`]; `None` names none, which `handler = "python"`
    /// refuses.
    pub app: Option<String>,
    /// `python`: directories put at the front of `sys.path`, in order; a relative one is taken
    /// from the directory tine runs in (after `[server] chdir`).
    pub pythonpath: Vec<PathBuf>,
    /// `python`: the virtual environment whose packages the application imports; `None` means
    /// the `VIRTUAL_ENV` environment variable's, if it is set, else the one tine is installed in
    /// (resolved at start-up).
    pub virtualenv: Option<PathBuf>,
    /// `python`: environment variables set for the application, in the file's order. Names are
    /// not empty and hold no `=` or NUL; values hold no NUL.
    pub env: Vec<(String, String)>,
    /// `python`: import the application in the master, before the workers are forked.
    pub preload: bool,
    /// `python`, WSGI: the `SCRIPT_NAME` the application is mounted at: `""` (the `SCRIPT_NAME`
    /// environment variable then applies at start-up), or a path that starts with `/` and
    /// does not end with one.
    pub script_name: String,
    /// `python`: which interface the application speaks; `Auto` looks at it once imported.
    pub interface: Interface,
    /// `python`, ASGI: the asyncio event loop each worker runs the application on.
    pub event_loop: EventLoop,
    /// `python`, ASGI: whether the application's lifespan protocol runs.
    pub lifespan: Lifespan,
    /// `python`, ASGI: how many requests a worker runs at once (1 to [`MAX_CONCURRENCY`]);
    /// more wait unread.
    pub max_concurrency: usize,
    /// `python`, ASGI: the `root_path` the application is mounted at, like `script_name`
    /// for WSGI.
    pub root_path: String,
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
    /// `static`: serve paths with a segment that starts with `.` (`/.git/config`, `/.env`);
    /// when false they are answered 404, except `/.well-known/` (RFC 8615).
    pub dotfiles: bool,
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
            interface: Interface::Auto,
            event_loop: EventLoop::Auto,
            lifespan: Lifespan::Auto,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            root_path: String::new(),
            root: PathBuf::from("public"),
            index: vec!["index.html".to_owned()],
            listing: false,
            follow_symlinks: false,
            dotfiles: false,
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

/// `[tls]`: the certificate every listener of `[server] bind` serves TLS with. The files are
/// PEM, read by the master (at start and on each reload) before the workers switch user, so
/// a key only root may read works; relative paths are taken from the directory tine runs in
/// (after `[server] chdir`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tls {
    /// The certificate chain, the server's own certificate first; `None` serves plain HTTP.
    /// Set with `key` or not at all.
    pub cert: Option<PathBuf>,
    /// The private key of `cert` (PKCS#8, PKCS#1 RSA or SEC1 EC, unencrypted).
    pub key: Option<PathBuf>,
    /// CA certificates: when set, clients must present a certificate one of them signed.
    pub ca: Option<PathBuf>,
}

impl Tls {
    /// The files as the master reads them once it is in `chdir` (`[server] chdir`): a
    /// relative path is taken from there.
    pub fn from_dir(&self, chdir: Option<&std::path::Path>) -> Tls {
        let resolve = |path: &Option<PathBuf>| match (chdir, path) {
            (Some(dir), Some(path)) => Some(dir.join(path)),
            _ => path.clone(),
        };
        Tls {
            cert: resolve(&self.cert),
            key: resolve(&self.key),
            ca: resolve(&self.ca),
        }
    }
}

/// `[websocket]`: the WebSockets of an ASGI application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebSocket {
    /// The largest message a client may send, after reassembly; a bigger one closes the
    /// connection with 1009.
    pub max_message: usize,
    /// A WebSocket from which nothing came for this long is pinged; zero sends no pings.
    pub ping_interval: Duration,
    /// How long the pong may take before the connection counts as dead; never zero.
    pub ping_timeout: Duration,
    /// When a stopping worker sends its WebSockets `1001 Going Away`.
    pub on_stop: OnStop,
}

impl Default for WebSocket {
    fn default() -> Self {
        WebSocket {
            max_message: 1 << 20,
            ping_interval: Duration::from_secs(20),
            ping_timeout: Duration::from_secs(20),
            on_stop: OnStop::Wait,
        }
    }
}

/// `[websocket] on_stop`: when a stopping worker (a reload, an upgrade, a stop) closes its
/// WebSockets, which would otherwise hold it for as long as their clients stay.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnStop {
    /// Once `graceful_timeout` has nearly run out (the close handshake gets the last second).
    #[default]
    Wait,
    /// As soon as the worker begins to stop.
    Close,
}

impl OnStop {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            OnStop::Wait => "wait",
            OnStop::Close => "close",
        }
    }
}

impl Choice for OnStop {
    const ALL: &'static [Self] = &[OnStop::Wait, OnStop::Close];

    fn name(self) -> &'static str {
        self.as_str()
    }
}

/// `[app] max_concurrency`'s default: generous, as uvicorn sets no limit, yet a bound on the
/// tasks one worker may hold.
pub const DEFAULT_MAX_CONCURRENCY: usize = 1000;

/// `[app] interface`: how tine calls a Python application.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Interface {
    /// ASGI when the application is a coroutine function (or its `__call__` is), else WSGI.
    #[default]
    Auto,
    /// PEP 3333, on the worker's pool threads.
    Wsgi,
    /// ASGI 3, on one asyncio event loop per worker.
    Asgi,
}

impl Interface {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Interface::Auto => "auto",
            Interface::Wsgi => "wsgi",
            Interface::Asgi => "asgi",
        }
    }
}

impl Choice for Interface {
    const ALL: &'static [Self] = &[Interface::Auto, Interface::Wsgi, Interface::Asgi];

    fn name(self) -> &'static str {
        self.as_str()
    }

    /// uvicorn's `asgi3` is ASGI; its `asgi2` is refused, with what to do about it.
    fn other_spelling(name: &str) -> Option<Result<Self, String>> {
        match name {
            "asgi3" => Some(Ok(Interface::Asgi)),
            "asgi2" => Some(Err(
                "ASGI 2 applications are not supported: wrap the application with \
                 asgiref.compatibility.guarantee_single_callable to make it ASGI 3"
                    .to_owned(),
            )),
            _ => None,
        }
    }
}

/// `[app] loop`: the asyncio event loop an ASGI application runs on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EventLoop {
    /// uvloop when it can be imported, else asyncio's own.
    #[default]
    Auto,
    /// asyncio's own loop.
    Asyncio,
    /// uvloop; refused at start when it cannot be imported.
    Uvloop,
}

impl EventLoop {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            EventLoop::Auto => "auto",
            EventLoop::Asyncio => "asyncio",
            EventLoop::Uvloop => "uvloop",
        }
    }
}

impl Choice for EventLoop {
    const ALL: &'static [Self] = &[EventLoop::Auto, EventLoop::Asyncio, EventLoop::Uvloop];

    fn name(self) -> &'static str {
        self.as_str()
    }
}

/// `[app] lifespan`: the ASGI lifespan protocol, as uvicorn's `--lifespan`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Lifespan {
    /// Run it; an application that does not support it is served without it.
    #[default]
    Auto,
    /// Run it; an application that does not support it fails to start.
    On,
    /// Do not run it.
    Off,
}

impl Lifespan {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Lifespan::Auto => "auto",
            Lifespan::On => "on",
            Lifespan::Off => "off",
        }
    }
}

impl Choice for Lifespan {
    const ALL: &'static [Self] = &[Lifespan::Auto, Lifespan::On, Lifespan::Off];

    fn name(self) -> &'static str {
        self.as_str()
    }
}

/// A key whose value is one of a few names: `[app] interface`, `loop` and `lifespan`, and
/// `[websocket] on_stop`. One parser ([`parse_choice`]) serves the file, the command line and
/// `FromStr`.
pub(crate) trait Choice: Copy + 'static {
    /// Every value, in the order messages list them.
    const ALL: &'static [Self];

    /// The name used in the config file.
    fn name(self) -> &'static str;

    /// A name other than the values' own: `Some(Ok)` for another spelling of a value,
    /// `Some(Err)` for one refused with its own reason.
    fn other_spelling(_name: &str) -> Option<Result<Self, String>> {
        None
    }
}

/// What a [`Choice`] accepts, for messages: `one of "auto", "on", "off"`.
pub(crate) fn choices<T: Choice>() -> String {
    let names: Vec<String> = T::ALL.iter().map(|c| format!("\"{}\"", c.name())).collect();
    format!("one of {}", names.join(", "))
}

/// Parses a [`Choice`]: `Err(None)` for a name that is none of them, `Err(Some(why))` for one
/// refused with its reason.
pub(crate) fn parse_choice<T: Choice>(name: &str) -> Result<T, Option<String>> {
    if let Some(found) = T::ALL.iter().find(|c| c.name() == name) {
        return Ok(*found);
    }
    match T::other_spelling(name) {
        Some(result) => result.map_err(Some),
        None => Err(None),
    }
}

/// `Display` and `FromStr` for the [`Choice`] types, by their names.
macro_rules! choice_text {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl FromStr for $t {
            type Err = String;

            /// Parses a name as the config file accepts it.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_choice(s).map_err(|why| {
                    why.unwrap_or_else(|| {
                        format!("unknown value {}: expected {}", units::quote(s), choices::<$t>())
                    })
                })
            }
        }
    )*};
}

choice_text!(Interface, EventLoop, Lifespan);

/// The built-in request handlers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HandlerKind {
    /// A small built-in application for trying the server out.
    #[default]
    Demo,
    /// The files under `[app] root`.
    Static,
    /// The Python application named by `[app] app`: WSGI or ASGI, as `[app] interface`
    /// says or the application shows.
    Python,
}

impl HandlerKind {
    /// Every handler, in the order error messages list them.
    pub const ALL: &[HandlerKind] = &[HandlerKind::Demo, HandlerKind::Static, HandlerKind::Python];

    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            HandlerKind::Demo => "demo",
            HandlerKind::Static => "static",
            HandlerKind::Python => "python",
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
mod tests;
