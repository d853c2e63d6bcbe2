//! The server under test of the Python tests (`wsgi`, `asgi`): tine, or a reference server
//! (gunicorn, uvicorn) from the test venv that the portable tests also run against, with the
//! client helpers both kinds share.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::util::{
    Config, Guarded, Response, TempDir, TestServer, read_response_any, read_response_head,
    read_until_close, toml_string, wait_until,
};

/// What tells a reference server's log apart: its name, and the lines that say it is ready.
pub struct Reference {
    /// "gunicorn", "uvicorn": in messages, and the log file's name.
    pub name: &'static str,
    /// What its log writes just before the listening address, as in
    /// `Listening at: http://` followed by `127.0.0.1:PORT`.
    pub listening: &'static str,
    /// A second line its log must hold before requests are served (a worker started);
    /// connections wait in the backlog from then on.
    pub ready: &'static str,
}

/// A reference server from the test venv, in a process group of its own, killed and reaped with
/// it on drop; run in a temp dir of its own, its stdout and stderr in one log file.
pub struct ReferenceServer {
    name: &'static str,
    child: Guarded,
    addr: SocketAddr,
    log_path: PathBuf,
    _dir: TempDir,
}

impl ReferenceServer {
    /// Spawns `command` (its whole command line, bound to port 0 on 127.0.0.1) with the
    /// application's state directory `state` as TINE_TEST_STATE, and waits (bounded) until
    /// its log names the port and says it is `ready`.
    pub fn start(reference: &Reference, mut command: Command, state: &Path) -> ReferenceServer {
        let Reference {
            name,
            listening,
            ready,
        } = *reference;
        let dir = TempDir::new();
        let log_path = dir.path().join(format!("{name}.log"));
        let log =
            std::fs::File::create(&log_path).unwrap_or_else(|e| panic!("create {name}'s log: {e}"));
        let mut child = Guarded::spawn(
            command
                .current_dir(dir.path())
                .env("TINE_TEST_STATE", state)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone the log's descriptor"))
                .stderr(log),
        );
        let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
        let log = wait_until(
            &format!("{name} listening, with {ready:?} in its log"),
            || {
                let log = read_log();
                if let Some(status) = child.try_wait() {
                    panic!("{name} exited with {status}; log:\n{log}");
                }
                log
            },
            |log| log.contains(listening) && log.contains(ready),
        );
        let addr = log
            .lines()
            .find_map(|line| line.split(listening).nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no listening address in {name}'s log:\n{log}"));
        ReferenceServer {
            name,
            child,
            addr,
            log_path,
            _dir: dir,
        }
    }

    /// The pid of the process spawned (the server's master, for a pre-fork server).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the server wrote to stdout and stderr.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

/// Which server is under test.
pub enum Backend {
    /// tine itself.
    Tine(TestServer),
    /// The reference server.
    Reference(ReferenceServer),
}

/// A server under test, with the application's state directory.
pub struct UnderTest {
    /// tine, or the reference server.
    pub backend: Backend,
    /// TINE_TEST_STATE: where the application keeps what it counts or saw.
    pub state: TempDir,
}

impl UnderTest {
    /// Runs tine with `config`, `state` as the application's TINE_TEST_STATE.
    pub fn start_tine(config: Config, state: TempDir) -> UnderTest {
        let server = TestServer::builder(config)
            .env("TINE_TEST_STATE", state.path())
            .start();
        UnderTest {
            backend: Backend::Tine(server),
            state,
        }
    }

    /// Runs the reference server `command` with a new state directory.
    pub fn start_reference(reference: &Reference, command: Command) -> UnderTest {
        let state = TempDir::new();
        let server = ReferenceServer::start(reference, command, state.path());
        UnderTest {
            backend: Backend::Reference(server),
            state,
        }
    }

    /// Whether tine is under test (not the reference).
    pub fn is_tine(&self) -> bool {
        matches!(self.backend, Backend::Tine(_))
    }

    /// tine, for a tine-only check.
    pub fn tine(&self) -> &TestServer {
        match &self.backend {
            Backend::Tine(server) => server,
            Backend::Reference(server) => panic!("a tine-only check ran against {}", server.name),
        }
    }

    /// tine, to signal and wait for; a tine-only check.
    pub fn tine_mut(&mut self) -> &mut TestServer {
        match &mut self.backend {
            Backend::Tine(server) => server,
            Backend::Reference(server) => panic!("a tine-only check ran against {}", server.name),
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        match &self.backend {
            Backend::Tine(server) => server.addr,
            Backend::Reference(server) => server.addr,
        }
    }

    /// Everything the server wrote to stdout and stderr (the error log).
    pub fn log(&self) -> String {
        match &self.backend {
            Backend::Tine(server) => server.log(),
            Backend::Reference(server) => server.log(),
        }
    }

    /// "tine", or the reference server's name.
    pub fn name(&self) -> &'static str {
        match &self.backend {
            Backend::Tine(_) => "tine",
            Backend::Reference(server) => server.name,
        }
    }

    /// A new connection.
    pub fn connect(&self) -> TcpStream {
        crate::util::connect(self.addr())
    }

    /// A new connection on which `raw` was sent.
    pub fn open(&self, raw: &[u8]) -> TcpStream {
        let mut stream = self.connect();
        stream.write_all(raw).unwrap();
        stream
    }

    /// Sends `raw` on a new connection and reads one response, whatever its framing.
    pub fn send(&self, raw: &[u8]) -> Response {
        let mut stream = self.open(raw);
        let head = raw.starts_with(b"HEAD ");
        read_response_any(&mut stream, head)
            .unwrap_or_else(|e| panic!("{}: {e}; log:\n{}", self.name(), self.log()))
    }

    /// `GET target` on a connection of its own.
    pub fn get(&self, target: &str) -> Response {
        self.send(
            format!("GET {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
        )
    }

    /// `GET target`, which must answer `status` (else the body and the server's log say why).
    pub fn get_status(&self, target: &str, status: u16) -> Response {
        let response = self.get(target);
        assert_eq!(
            response.status,
            status,
            "{}: GET {target}: {}; log:\n{}",
            self.name(),
            response.text(),
            self.log()
        );
        response
    }

    /// `POST target` with `body` of `content_type`, on a connection of its own.
    pub fn post(&self, target: &str, content_type: &str, body: &[u8]) -> Response {
        let mut raw = format!(
            "POST {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: \
             {content_type}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        raw.extend_from_slice(body);
        self.send(&raw)
    }

    /// Sends `raw` (which should ask for `Connection: close`) and returns every byte of the
    /// answer up to the server's close.
    pub fn raw(&self, raw: &[u8]) -> Vec<u8> {
        let mut stream = self.open(raw);
        read_until_close(&mut stream).unwrap_or_else(|partial| {
            panic!(
                "{} kept the connection open; got {:?}; log:\n{}",
                self.name(),
                String::from_utf8_lossy(&partial),
                self.log()
            )
        })
    }

    /// Waits for the log to contain `needle`; returns the log.
    pub fn wait_log(&self, needle: &str) -> String {
        wait_until(
            &format!("{}: {needle:?} in the log", self.name()),
            || self.log(),
            |log| log.contains(needle),
        )
    }
}

/// Sends `raw` on a new connection to `w`, then reads a response head, then whatever follows
/// until the server closes.
pub fn head_then_rest(w: &UnderTest, raw: &[u8]) -> (Response, Vec<u8>) {
    let mut stream = w.open(raw);
    let head = read_response_head(&mut stream)
        .unwrap_or_else(|e| panic!("{}: {e}; log:\n{}", w.name(), w.log()));
    let rest = read_until_close(&mut stream).unwrap_or_else(|partial| {
        panic!(
            "{}: the connection stayed open after {:?}; log:\n{}",
            w.name(),
            String::from_utf8_lossy(&partial),
            w.log()
        )
    });
    (head, rest)
}

/// What a Python test's spec sets besides its application: the `[server]` and `[limits]` lines
/// of tine's config, of which the reference server gets the workers and forwarded_allow_ips.
#[derive(Clone)]
pub struct ServerSpec {
    /// `[server] workers`.
    pub workers: u32,
    /// More `[server]` lines.
    pub server: String,
    /// The `[limits]` lines, if any.
    pub limits: String,
    /// `[server] forwarded_allow_ips`, when not the default.
    pub forwarded_allow_ips: Option<Vec<String>>,
}

impl Default for ServerSpec {
    fn default() -> ServerSpec {
        ServerSpec {
            workers: 1,
            server: String::new(),
            limits: String::new(),
            forwarded_allow_ips: None,
        }
    }
}

impl ServerSpec {
    /// tine's config (the builder adds the listener): `[server]` with the workers, `server`
    /// (the caller's own lines) and this spec's lines, then `[limits]`, then `app` (its
    /// `[app]` table).
    pub fn tine_config(&self, server: &str, app: &str) -> Config {
        let mut lines = format!("workers = {}\n{server}{}", self.workers, self.server);
        if let Some(ips) = &self.forwarded_allow_ips {
            let list: Vec<String> = ips.iter().map(|ip| toml_string(ip)).collect();
            lines.push_str(&format!("forwarded_allow_ips = [{}]\n", list.join(", ")));
        }
        let mut tables = String::new();
        if !self.limits.is_empty() {
            tables.push_str(&format!("[limits]\n{}", self.limits));
        }
        tables.push_str(app);
        Config::new(&lines).tables(&tables)
    }
}

/// The builder methods of a spec that holds a [`ServerSpec`].
pub trait WithServer: Sized {
    /// The spec's [`ServerSpec`].
    fn server_spec(&mut self) -> &mut ServerSpec;

    /// Adds `[server]` lines.
    fn server(mut self, lines: &str) -> Self {
        let server = &mut self.server_spec().server;
        server.push_str(lines);
        server.push('\n');
        self
    }

    /// Adds `[limits]` lines.
    fn limits(mut self, lines: &str) -> Self {
        let limits = &mut self.server_spec().limits;
        limits.push_str(lines);
        limits.push('\n');
        self
    }

    /// Sets `[server] workers`.
    fn workers(mut self, workers: u32) -> Self {
        self.server_spec().workers = workers;
        self
    }
}

/// A client on one keep-alive connection, reconnecting when the server closes it: the
/// framework tests' sessions.
pub struct KeepAlive {
    addr: SocketAddr,
    stream: Option<TcpStream>,
}

impl KeepAlive {
    /// A client of `addr`, not connected yet.
    pub fn new(addr: SocketAddr) -> KeepAlive {
        KeepAlive { addr, stream: None }
    }

    /// Sends the request `raw` for `step` and reads its response (`head`: to a HEAD request),
    /// keeping the connection unless the response says `Connection: close`.
    pub fn send(&mut self, step: &str, raw: &[u8], head: bool) -> Response {
        let mut stream = match self.stream.take() {
            Some(stream) => stream,
            None => crate::util::connect(self.addr),
        };
        stream.write_all(raw).unwrap();
        let response =
            read_response_any(&mut stream, head).unwrap_or_else(|e| panic!("{step}: {e}"));
        if !response
            .header("Connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close"))
        {
            self.stream = Some(stream);
        }
        response
    }
}

/// One request of a session and what came back: the parts two servers must agree on, `H` the
/// headers a test compares.
#[derive(Debug, PartialEq)]
pub struct Exchange<H> {
    /// The request's name in the session.
    pub step: &'static str,
    /// The response's status.
    pub status: u16,
    /// The response's body.
    pub body: Vec<u8>,
    /// The headers compared.
    pub headers: Vec<H>,
}

impl<H> Exchange<H> {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The exchange of `exchanges` named `name`.
pub fn step<'a, H>(exchanges: &'a [Exchange<H>], name: &str) -> &'a Exchange<H> {
    exchanges
        .iter()
        .find(|e| e.step == name)
        .unwrap_or_else(|| panic!("no step {name:?}"))
}

/// Every exchange of a session the same under tine (`log`: its log) as under `reference`.
pub fn assert_same<H: PartialEq + std::fmt::Debug>(
    reference: &[Exchange<H>],
    name: &str,
    tine: &[Exchange<H>],
    log: &str,
) {
    assert_eq!(reference.len(), tine.len());
    for (r, t) in reference.iter().zip(tine) {
        assert_eq!(r.step, t.step);
        assert_eq!(t.status, r.status, "{}: status; tine log:\n{log}", t.step);
        assert!(
            t.body == r.body,
            "{}: body under tine {:?}, under {name} {:?}",
            t.step,
            t.text(),
            r.text()
        );
        assert_eq!(t.headers, r.headers, "{}: headers", t.step);
    }
}
