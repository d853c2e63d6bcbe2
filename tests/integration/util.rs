//! Test helpers: run the real `tine` binary in a fresh temp dir, wait for it by the systemd
//! readiness handshake, talk HTTP to it, and always kill and reap its whole process group.

// Helpers only the Python tests use are unused in a build without the `python` feature.
#![cfg_attr(not(feature = "python"), allow(dead_code))]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// Generous bound for anything that should take milliseconds.
pub const WAIT: Duration = Duration::from_secs(20);

/// A directory of the test's own, removed when dropped.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "tine-it-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path.join(name);
        std::fs::write(&path, contents).expect("write test file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

pub fn tine_bin() -> &'static str {
    env!("CARGO_BIN_EXE_tine")
}

/// A child process in a process group of its own, from the moment it is spawned: dropping the
/// guard kills the whole group (the process and everything it forked) and reaps the child.
pub struct Guarded {
    child: Child,
    /// Set once the child was reaped by [`Guarded::wait_within`] or [`Guarded::try_wait`].
    exited: Option<ExitStatus>,
}

impl Guarded {
    /// Spawns `command` in a new process group, guarded from this point on.
    pub fn spawn(command: &mut Command) -> Guarded {
        let child = command
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {:?}: {e}", command.get_program()));
        Guarded {
            child,
            exited: None,
        }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if the process has exited (without waiting).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().expect("try_wait");
        }
        self.exited
    }

    /// Waits for the process to exit, for at most `limit`; `None` if it is still running.
    pub fn wait_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The child's standard streams, for a command spawned with pipes.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        // The whole group: the process and every process it forked, even after the leader
        // itself has exited (a master that handed over to a new one, say).
        let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What a command run to completion by [`run_bounded`] did.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `command` to completion in a process group of its own, with `input` on its stdin
/// (empty when `None`), for at most `limit`: past it the group is killed and the test fails
/// with what the command printed. `limit` is a hang detector, not a timing assertion.
pub fn run_bounded(command: &mut Command, input: Option<&[u8]>, limit: Duration) -> Finished {
    command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut guarded = Guarded::spawn(command);
    let child = guarded.child_mut();
    let stdin = child.stdin.take();
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let input = input.map(<[u8]>::to_vec);
    let writer = std::thread::spawn(move || {
        if let (Some(mut stdin), Some(input)) = (stdin, input) {
            // A command that exits without reading all of it is its own business.
            let _ = stdin.write_all(&input);
        }
    });
    let out = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stdout.read_to_end(&mut text);
        String::from_utf8_lossy(&text).into_owned()
    });
    let err = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text);
        String::from_utf8_lossy(&text).into_owned()
    });
    let status = guarded.wait_within(limit);
    if status.is_none() {
        // Kill the group, so the pipes close and the readers finish.
        let _ = killpg(Pid::from_raw(guarded.id() as i32), Signal::SIGKILL);
    }
    let _ = writer.join();
    let stdout = out.join().expect("stdout reader");
    let stderr = err.join().expect("stderr reader");
    match status {
        Some(status) => Finished {
            status,
            stdout,
            stderr,
        },
        None => panic!(
            "{:?} still running after {limit:?}, killed; stdout:\n{stdout}\nstderr:\n{stderr}",
            command.get_program()
        ),
    }
}

/// Runs `tine` with `args` to completion (for --check-config, --print-config and the like),
/// within `WAIT`.
pub fn run_tine(dir: &TempDir, args: &[&str]) -> (ExitStatus, String, String) {
    let finished = run_bounded(
        Command::new(tine_bin())
            .args(args)
            .current_dir(dir.path())
            .env_remove("NOTIFY_SOCKET"),
        None,
        WAIT,
    );
    (finished.status, finished.stdout, finished.stderr)
}

/// The config file a [`TestServer`] runs: the `[server]` table, whose `bind` key the builder
/// writes (a TCP listener on 127.0.0.1 with a port the kernel picks, and any more listeners
/// asked for), and the other tables as given.
#[derive(Clone, Debug)]
pub struct Config {
    /// `[server]` keys, one a line, besides `bind`.
    server: String,
    /// More listeners, after the TCP one.
    binds: Vec<String>,
    /// Every table after `[server]`, headers included.
    tables: String,
}

impl Config {
    /// A config whose `[server]` table holds `server` (keys one a line, no header, no `bind`).
    pub fn new(server: &str) -> Config {
        Config {
            server: server.to_owned(),
            binds: Vec::new(),
            tables: String::new(),
        }
    }

    /// Another listener (`unix:/path`, or a TCP address) besides the TCP one on 127.0.0.1.
    pub fn bind(mut self, addr: &str) -> Config {
        self.binds.push(addr.to_owned());
        self
    }

    /// Tables after `[server]`, with their headers (`[app]\nhandler = ...`).
    pub fn tables(mut self, tables: &str) -> Config {
        self.tables.push_str(tables);
        if !self.tables.ends_with('\n') {
            self.tables.push('\n');
        }
        self
    }

    /// The file's text.
    pub fn render(&self) -> String {
        // The kernel picks the port (no window in which another process could take it), and
        // the server's log says which ([`TestServer::start`] reads it).
        let binds: Vec<String> = std::iter::once("127.0.0.1:0")
            .chain(self.binds.iter().map(String::as_str))
            .map(toml_string)
            .collect();
        let mut text = format!("[server]\nbind = [{}]\n{}", binds.join(", "), self.server);
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&self.tables);
        text
    }
}

impl From<&str> for Config {
    fn from(server: &str) -> Config {
        Config::new(server)
    }
}

impl From<&String> for Config {
    fn from(server: &String) -> Config {
        Config::new(server)
    }
}

impl From<String> for Config {
    fn from(server: String) -> Config {
        Config::new(&server)
    }
}

/// How to start a [`TestServer`]: see [`TestServer::builder`].
pub struct Builder {
    config: Config,
    /// A config file of the repository's to run instead (with `--bind 127.0.0.1:0`).
    config_file: Option<PathBuf>,
    program: PathBuf,
    /// A command that runs the program (`prlimit --nofile=64:64`), with its arguments.
    wrapper: Vec<std::ffi::OsString>,
    args: Vec<std::ffi::OsString>,
    env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
    error_log: Option<PathBuf>,
    control_socket: bool,
    ready: bool,
}

impl Builder {
    /// Another listener besides the TCP one (see [`Config::bind`]).
    pub fn bind(mut self, addr: &str) -> Builder {
        self.config = self.config.bind(addr);
        self
    }

    /// Tables after `[server]` (see [`Config::tables`]).
    pub fn tables(mut self, tables: &str) -> Builder {
        self.config = self.config.tables(tables);
        self
    }

    /// More command-line arguments.
    pub fn arg(mut self, arg: impl AsRef<std::ffi::OsStr>) -> Builder {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// An environment variable for the server.
    pub fn env(mut self, name: &str, value: impl AsRef<std::ffi::OsStr>) -> Builder {
        self.env.push((name.into(), value.as_ref().to_owned()));
        self
    }

    /// Sends the error log to `path` (`[log] error_log`); [`TestServer::log`] reads it too.
    pub fn error_log(mut self, path: &Path) -> Builder {
        self.config = self.config.tables(&format!(
            "[log]\nerror_log = {}\n",
            toml_string(&path.to_string_lossy())
        ));
        self.error_log = Some(path.to_owned());
        self
    }

    /// Gives the server a control socket (`[server] control_socket`) in its directory, for
    /// [`TestServer::busy`] and `tine status`.
    pub fn control_socket(mut self) -> Builder {
        self.control_socket = true;
        self
    }

    /// Runs `program` (an example built on `tine::Server`) instead of the tine binary.
    pub fn program(mut self, program: &Path) -> Builder {
        self.program = program.to_owned();
        self
    }

    /// Runs the program through `wrapper`, a command (and its arguments) that ends by executing
    /// the program in its own process, such as `prlimit --nofile=64:64`: the pid stays the
    /// program's.
    pub fn wrapper(mut self, wrapper: &[&str]) -> Builder {
        self.wrapper = wrapper.iter().map(std::ffi::OsString::from).collect();
        self
    }

    /// Runs the config file at `path` as it is, with `--bind 127.0.0.1:0` on the command line
    /// for the listener, instead of a generated config.
    pub fn config_file(mut self, path: &Path) -> Builder {
        self.config_file = Some(path.to_owned());
        self
    }

    /// Does not wait for `READY=1` (for a start meant to stall or fail); the log is there to
    /// watch.
    pub fn unready(mut self) -> Builder {
        self.ready = false;
        self
    }

    /// Starts the server, in a process group of its own that the returned guard kills, and
    /// (unless [`Builder::unready`]) waits for `READY=1` and reads the address it listens on.
    pub fn start(self) -> TestServer {
        let dir = TempDir::new();
        let control = dir.path().join("tine.ctl");
        let mut config = self.config;
        if self.control_socket {
            config.server.push_str(&format!(
                "\ncontrol_socket = {}\n",
                toml_string(&control.to_string_lossy())
            ));
        }
        let config_path = dir.path().join("tine.toml");
        let mut command = match self.wrapper.split_first() {
            Some((wrapper, wrapper_args)) => {
                let mut command = Command::new(wrapper);
                command.args(wrapper_args).arg(&self.program);
                command
            }
            None => Command::new(&self.program),
        };
        match &self.config_file {
            Some(file) => {
                command.arg("-c").arg(file).args(["--bind", "127.0.0.1:0"]);
            }
            None => {
                std::fs::write(&config_path, config.render()).expect("write the config");
                command.arg("-c").arg(&config_path);
            }
        }
        let notify_path = dir.path().join("notify.sock");
        let notify = UnixDatagram::bind(&notify_path).expect("bind notify socket");
        notify
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let log_path = dir.path().join("tine.log");
        let log = std::fs::File::create(&log_path).expect("create the server's log");
        let child = Guarded::spawn(
            command
                .args(&self.args)
                .current_dir(dir.path())
                .env("NOTIFY_SOCKET", &notify_path)
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone the log's descriptor"))
                .stderr(log),
        );
        let mut server = TestServer {
            child,
            addr: "127.0.0.1:0".parse().unwrap(),
            log_path,
            error_log: self.error_log,
            notify,
            control: self.control_socket.then_some(control),
            _dir: dir,
        };
        if self.ready {
            server.wait_for_notify("READY=1");
            server.addr = server.listening_addr();
        }
        server
    }
}

/// A running tine master (or example server), in its own process group, killed with every
/// process it forked when dropped.
pub struct TestServer {
    child: Guarded,
    pub addr: SocketAddr,
    log_path: PathBuf,
    /// The config's `[log] error_log` file, when the test set one.
    error_log: Option<PathBuf>,
    notify: UnixDatagram,
    /// The control socket, when the builder asked for one.
    control: Option<PathBuf>,
    /// Kept so the directory (config, log, notify socket) lives as long as the server; last,
    /// so it is removed after the server is killed.
    _dir: TempDir,
}

impl TestServer {
    /// How to start a server on `config`: `TestServer::builder("workers = 1")` for a
    /// `[server]` table of one key, then `.tables(..)`, `.bind(..)`, `.arg(..)`, `.env(..)`,
    /// `.error_log(..)`, `.control_socket()`, `.wrapper(..)`, `.unready()`, and `.start()`.
    pub fn builder(config: impl Into<Config>) -> Builder {
        Builder {
            config: config.into(),
            config_file: None,
            program: PathBuf::from(tine_bin()),
            wrapper: Vec::new(),
            args: Vec::new(),
            env: Vec::new(),
            error_log: None,
            control_socket: false,
            ready: true,
        }
    }

    /// `TestServer::builder(config).start()`.
    pub fn start(config: impl Into<Config>) -> TestServer {
        TestServer::builder(config).start()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The directory the server runs in (its config, log and sockets are there).
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }

    /// Waits for the master to send a notify message with the line `needle`.
    pub fn wait_for_notify(&mut self, needle: &str) -> String {
        self.wait_for_notify_line(needle, |line| line == needle)
    }

    /// Waits for a notify message with a line starting with `prefix`; returns the rest of it.
    pub fn wait_for_notify_prefix(&mut self, prefix: &str) -> String {
        let message = self.wait_for_notify_line(prefix, |line| line.starts_with(prefix));
        message
            .lines()
            .find_map(|line| line.strip_prefix(prefix))
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits, within `WAIT`, for a notify message with a line that `matches`; fails at once if
    /// the server exits first.
    fn wait_for_notify_line(&mut self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.notify.recv(&mut buf) {
                let message = String::from_utf8_lossy(&buf[..n]).into_owned();
                if message.lines().any(&matches) {
                    return message;
                }
            }
            if let Some(status) = self.child.try_wait() {
                panic!(
                    "tine exited with {status} before sending {what}; log:\n{}",
                    self.log()
                );
            }
        }
        panic!("no {what} within {WAIT:?}; log:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        let mut log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        if let Some(path) = &self.error_log {
            log.push_str(&std::fs::read_to_string(path).unwrap_or_default());
        }
        log
    }

    /// Waits, within `WAIT`, for the log to contain `needle`; returns the log.
    pub fn wait_log(&self, needle: &str) -> String {
        wait_until(
            &format!("the line {needle:?} in the log"),
            || self.log(),
            |log| log.contains(needle),
        )
    }

    fn listening_addr(&self) -> SocketAddr {
        let log = self.log();
        let line = log
            .lines()
            .find_map(|line| {
                let (_, rest) = line.split_once("listening on ")?;
                rest.strip_prefix("http://")
                    .or_else(|| rest.strip_prefix("https://"))
            })
            .unwrap_or_else(|| panic!("no listening line in log:\n{log}"));
        // The address, then maybe what it takes ("(PROXY protocol)") and where it came from.
        let addr = line.split_whitespace().next().unwrap_or_default();
        addr.parse().expect("listening address")
    }

    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid() as i32), signal).expect("signal tine");
    }

    /// Waits for the master to exit, within `WAIT` (a hang detector).
    pub fn wait_exit(&mut self) -> ExitStatus {
        self.child
            .wait_within(WAIT)
            .unwrap_or_else(|| panic!("tine did not exit within {WAIT:?}; log:\n{}", self.log()))
    }

    /// The pids of the master's live (not zombie) children.
    pub fn workers(&self) -> Vec<u32> {
        children_of(self.pid())
    }

    /// Waits until `check` holds for the worker list, within `WAIT`.
    pub fn wait_workers(&self, what: &str, check: impl Fn(&[u32]) -> bool) -> Vec<u32> {
        let deadline = Instant::now() + WAIT;
        loop {
            let workers = self.workers();
            if check(&workers) {
                return workers;
            }
            if Instant::now() >= deadline {
                panic!("{what}: workers are {workers:?}; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The master's answer to `status json` on the control socket.
    pub fn status_json(&self) -> String {
        let path = self
            .control
            .as_ref()
            .expect("a server started with .control_socket()");
        let mut stream = connect_unix(path);
        stream.write_all(b"status json\n").unwrap();
        let mut answer = String::new();
        stream
            .read_to_string(&mut answer)
            .unwrap_or_else(|e| panic!("read the status: {e}; log:\n{}", self.log()));
        answer
    }

    /// The address of the master's metrics listener (`[metrics] bind`, port 0 allowed), as
    /// its log says.
    pub fn metrics_addr(&self) -> String {
        let log = self.log();
        log.lines()
            .find_map(|line| line.split("metrics on http://").nth(1))
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_else(|| panic!("no metrics line in the log:\n{log}"))
            .to_owned()
    }

    /// How many requests the workers are running now (the scoreboard's busy count, through the
    /// control socket).
    pub fn busy(&self) -> u64 {
        let json = self.status_json();
        json.split("\"busy\":")
            .nth(1)
            .and_then(|rest| rest.split([',', '}']).next())
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no busy count in {json}"))
    }

    /// Waits, within `WAIT`, until exactly `n` requests are running in the workers: the
    /// handshake that says a request has reached the application.
    pub fn wait_busy(&self, n: u64) {
        wait_until(&format!("{n} busy"), || self.busy(), |busy| *busy == n);
    }

    pub fn connect(&self) -> TcpStream {
        connect(self.addr)
    }

    pub fn get(&self, target: &str) -> Response {
        self.request(&format!(
            "GET {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
        ))
    }

    /// Sends raw request bytes on a new connection and reads one response.
    pub fn request(&self, raw: &str) -> Response {
        let mut stream = self.connect();
        stream.write_all(raw.as_bytes()).unwrap();
        read_response(&mut stream).unwrap_or_else(|e| panic!("{e}; log:\n{}", self.log()))
    }

    /// Rewrites the config file the server was started with: `config`, with the builder's TCP
    /// listener (the one `addr` names) and control socket, and `config`'s own other listeners
    /// (a listener of the first config that `config` does not name is dropped by a reload).
    pub fn rewrite_config(&self, config: impl Into<Config>) {
        let mut config = config.into();
        if let Some(control) = &self.control {
            config.server.push_str(&format!(
                "\ncontrol_socket = {}\n",
                toml_string(&control.to_string_lossy())
            ));
        }
        std::fs::write(self._dir.path().join("tine.toml"), config.render())
            .expect("rewrite config");
    }
}

/// A connection to `addr` whose reads and writes give up after `WAIT` (a hang detector).
pub fn connect(addr: impl std::net::ToSocketAddrs + std::fmt::Debug) -> TcpStream {
    let stream = TcpStream::connect(&addr).unwrap_or_else(|e| panic!("connect to {addr:?}: {e}"));
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    stream
}

/// A connection to the Unix socket at `path`, with reads and writes bounded like [`connect`]'s.
pub fn connect_unix(path: &Path) -> std::os::unix::net::UnixStream {
    let stream = std::os::unix::net::UnixStream::connect(path)
        .unwrap_or_else(|e| panic!("connect to {}: {e}", path.display()));
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    stream
}

/// Live children of `parent`, from /proc.
pub fn children_of(parent: u32) -> Vec<u32> {
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the parenthesised command name: state, ppid, ...
        let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("");
        let ppid: u32 = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if ppid == parent && state != "Z" {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    pids
}

pub fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state != "Z")
        })
        .unwrap_or(false)
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response from `stream` (Content-Length, chunked, or until close). Responses to
/// HEAD must be read with [`read_response_head`].
pub fn read_response(stream: &mut TcpStream) -> Result<Response, String> {
    read_response_inner(stream, false)
}

pub fn read_response_head(stream: &mut TcpStream) -> Result<Response, String> {
    read_response_inner(stream, true)
}

fn read_response_inner(stream: &mut TcpStream, head_only: bool) -> Result<Response, String> {
    // Byte by byte up to the end of the head, so bytes of a pipelined next response stay in
    // the socket for the next call.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = match stream.read(&mut byte) {
            // A signal arrived (the test process was stopped and continued, say): read on.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            read => read.map_err(|e| format!("reading response head: {e}"))?,
        };
        if n == 0 {
            return Err(format!(
                "connection closed before a full response head: {:?}",
                String::from_utf8_lossy(&head)
            ));
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut response = Response {
        status,
        headers,
        body: Vec::new(),
    };
    if head_only || status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok(response);
    }
    response.body = read_body(stream, &response, false)?;
    Ok(response)
}

/// The `workers = N` that `--print-config` printed.
pub fn printed_workers(printed: &str) -> usize {
    printed
        .lines()
        .find_map(|line| line.trim().strip_prefix("workers = "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no workers line in:\n{printed}"))
}

/// Clients that keep requesting until stopped: some over keep-alive connections, some over a
/// fresh connection per request, some slow (`/sleep`). Every failure is recorded.
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Requests answered 200 so far, by every client.
    served: std::sync::Arc<std::sync::atomic::AtomicU64>,
    threads: Vec<std::thread::JoinHandle<(u64, Vec<String>)>>,
}

/// What a [`Load`] saw.
#[derive(Debug)]
pub struct LoadReport {
    pub ok: u64,
    pub failures: Vec<String>,
}

impl LoadReport {
    /// Fails the test, with the server's log, if any request failed.
    pub fn assert_clean(&self, log: &str) {
        assert!(self.failures.is_empty(), "{:?}\nlog:\n{log}", self.failures);
    }
}

impl Load {
    pub fn start(addr: SocketAddr) -> Load {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let served = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let kinds = ["/", "/bytes?n=2000", "/sleep?ms=100"];
        let mut threads = Vec::new();
        for path in kinds {
            for keep_alive in [true, false] {
                let stop = stop.clone();
                let served = served.clone();
                let path = path.to_string();
                threads.push(std::thread::spawn(move || {
                    let mut ok = 0;
                    let mut failures = Vec::new();
                    let mut conn: Option<TcpStream> = None;
                    while !stop.load(Ordering::Relaxed) {
                        let stream = match conn.take() {
                            Some(stream) => stream,
                            None => match TcpStream::connect(addr) {
                                Ok(stream) => {
                                    stream.set_read_timeout(Some(WAIT)).unwrap();
                                    stream.set_write_timeout(Some(WAIT)).unwrap();
                                    stream
                                }
                                Err(err) => {
                                    failures.push(format!("connect: {err}"));
                                    continue;
                                }
                            },
                        };
                        let mut stream = stream;
                        let close = if keep_alive {
                            ""
                        } else {
                            "Connection: close\r\n"
                        };
                        let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\n{close}\r\n");
                        if let Err(err) = stream.write_all(request.as_bytes()) {
                            failures.push(format!("write {path}: {err}"));
                            continue;
                        }
                        match read_response(&mut stream) {
                            Ok(response) if response.status == 200 => {
                                ok += 1;
                                served.fetch_add(1, Ordering::Relaxed);
                                if keep_alive && response.header("Connection") != Some("close") {
                                    conn = Some(stream);
                                }
                            }
                            Ok(response) => {
                                failures.push(format!("{path}: status {}", response.status))
                            }
                            Err(err) => failures.push(format!("{path}: {err}")),
                        }
                    }
                    (ok, failures)
                }));
            }
        }
        Load {
            stop,
            served,
            threads,
        }
    }

    /// Waits, within `WAIT`, until the clients have been answered `more` times from now: the
    /// load is running (before a change), or still running (after it).
    pub fn wait_served(&self, more: u64) {
        let target = self.served.load(Ordering::Relaxed) + more;
        wait_until(
            &format!("{more} more requests served under load"),
            || self.served.load(Ordering::Relaxed),
            |&served| served >= target,
        );
    }

    pub fn stop(self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        let mut report = LoadReport {
            ok: 0,
            failures: Vec::new(),
        };
        for thread in self.threads {
            let (ok, failures) = thread.join().expect("load thread");
            report.ok += ok;
            report.failures.extend(failures);
        }
        report
    }
}

/// The virtualenv with the packages of `tests/python/requirements.txt` (Flask, Django,
/// gunicorn): `$TINE_TEST_VENV` when set, else `test-venv` in the target directory
/// (`$CARGO_TARGET_DIR`, else the one this test binary was built in). Made or checked by
/// `tests/python/setup-venv` (with `$TINE_TEST_PYTHON` when set, else `python3`) once per test
/// process, under an exclusive lock so test binaries running at once do not race; the script
/// does nothing when the venv already holds the pinned set. Panics, failing the test, when the
/// venv cannot be made.
pub fn test_venv() -> PathBuf {
    static VENV: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    VENV.get_or_init(|| {
        let venv = match std::env::var_os("TINE_TEST_VENV") {
            Some(dir) => PathBuf::from(dir),
            None => target_dir().join("test-venv"),
        };
        let python = std::env::var("TINE_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/setup-venv");
        let how = format!(
            "to make it by hand: {} {} {python}\n(or point TINE_TEST_VENV at a virtualenv that \
             has tests/python/requirements.txt installed)",
            script.display(),
            venv.display()
        );
        if let Some(parent) = venv.parent() {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("creating {}: {e}; {how}", parent.display()));
        }
        let mut lock_name = venv.file_name().unwrap_or_default().to_owned();
        lock_name.push(".lock");
        let lock_path = venv.with_file_name(lock_name);
        let lock_file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .unwrap_or_else(|e| panic!("opening {}: {e}; {how}", lock_path.display()));
        let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
            .unwrap_or_else(|(_, e)| panic!("locking {}: {e}; {how}", lock_path.display()));
        // Installing the packages takes a while when the venv is made; the bound only catches a
        // hang.
        let output = run_bounded(
            Command::new("bash").arg(&script).arg(&venv).arg(&python),
            None,
            Duration::from_secs(900),
        );
        if !output.status.success() {
            panic!(
                "{} {} {python} failed ({}):\n{}{}\n{how}",
                script.display(),
                venv.display(),
                output.status,
                output.stdout,
                output.stderr
            );
        }
        // The script says something only when it made the venv.
        if !output.stderr.is_empty() {
            eprint!("{}", output.stderr);
        }
        venv
    })
    .clone()
}

/// `$CARGO_TARGET_DIR`, else the target directory this test binary sits in
/// (`target/debug/deps/integration-HASH`), else `target` in the package.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(dir);
        return if dir.is_absolute() {
            dir
        } else {
            Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)
        };
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_owned()))
        .filter(|dir| dir.join("CACHEDIR.TAG").exists() || dir.ends_with("target"))
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// `tests/python/apps`: the Python applications the WSGI tests run.
pub fn python_apps() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/apps")
}

/// `text` as a TOML basic string, quotes included.
pub fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04X}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Reads one response whatever its framing: Content-Length, chunked (decoded into `body`,
/// trailers dropped) or until the server closes. `head_request`: the response to a HEAD,
/// whose head is all there is.
pub fn read_response_any(stream: &mut TcpStream, head_request: bool) -> Result<Response, String> {
    let mut response = read_response_head(stream)?;
    let status = response.status;
    if head_request || status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok(response);
    }
    response.body = read_body(stream, &response, true)?;
    Ok(response)
}

/// The body after `response`'s head, framed as its headers say: chunked (an error unless
/// `allow_chunked`), by its `Content-Length`, or up to the close.
fn read_body(
    stream: &mut TcpStream,
    response: &Response,
    allow_chunked: bool,
) -> Result<Vec<u8>, String> {
    let chunked = response
        .header("Transfer-Encoding")
        .is_some_and(|te| te.eq_ignore_ascii_case("chunked"));
    if chunked && !allow_chunked {
        return Err("chunked responses are not expected from these tests".to_owned());
    }
    if chunked {
        return read_chunked_body(stream);
    }
    let mut body = Vec::new();
    if let Some(len) = response.header("Content-Length") {
        let len: usize = len.parse().map_err(|_| "bad Content-Length".to_owned())?;
        body.resize(len, 0);
        stream
            .read_exact(&mut body)
            .map_err(|e| format!("reading a {len}-byte body: {e}"))?;
    } else {
        stream
            .read_to_end(&mut body)
            .map_err(|e| format!("reading a close-delimited body: {e}"))?;
    }
    Ok(body)
}

/// Reads a chunked body to its last chunk and the end of its trailer section.
pub fn read_chunked_body(stream: &mut TcpStream) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line = read_crlf_line(stream)?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| format!("bad chunk-size line {line:?} after {} bytes", body.len()))?;
        if size == 0 {
            // Trailer fields, if any, then the empty line.
            while !read_crlf_line(stream)?.is_empty() {}
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        stream
            .read_exact(&mut body[start..])
            .map_err(|e| format!("reading a {size}-byte chunk after {start} bytes: {e}"))?;
        let mut crlf = [0u8; 2];
        stream
            .read_exact(&mut crlf)
            .map_err(|e| format!("reading the CRLF after a chunk: {e}"))?;
        if &crlf != b"\r\n" {
            return Err(format!("a chunk ends with {crlf:?}, not CRLF"));
        }
    }
}

/// One line up to CRLF, byte by byte so nothing after it is consumed; without the CRLF.
fn read_crlf_line(stream: &mut TcpStream) -> Result<String, String> {
    let mut line = Vec::new();
    while !line.ends_with(b"\r\n") {
        let mut byte = [0u8; 1];
        match stream.read(&mut byte) {
            Ok(0) => {
                return Err(format!(
                    "connection closed inside a line: {:?}",
                    String::from_utf8_lossy(&line)
                ));
            }
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("reading a line: {e}")),
        }
        if line.len() > 64 * 1024 {
            return Err("a line over 64 KiB".to_owned());
        }
    }
    line.truncate(line.len() - 2);
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// Everything the peer sends until it closes the connection, within the stream's read
/// timeout: `Ok(bytes)` when it closed (an orderly close or a reset), `Err` with what came
/// when it was still open at the timeout.
pub fn read_until_close(stream: &mut TcpStream) -> Result<Vec<u8>, Vec<u8>> {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(bytes),
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(bytes);
            }
            Err(_) => return Ok(bytes),
        }
    }
}

/// Waits, within `WAIT`, until `check` holds; panics with `what` and the last value otherwise.
pub fn wait_until<T: std::fmt::Debug>(
    what: &str,
    mut probe: impl FnMut() -> T,
    check: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        let value = probe();
        if check(&value) {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("{what}: still {value:?} after {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The worker's descriptors that point at unlinked files in the temp dir.
pub fn unlinked_temp_files(pid: u32) -> Vec<String> {
    let tmp = std::env::temp_dir();
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|entry| std::fs::read_link(entry.path()).ok())
                .map(|link| link.to_string_lossy().into_owned())
                .filter(|link| {
                    link.starts_with(&*tmp.to_string_lossy()) && link.ends_with("(deleted)")
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The resident memory of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A test that cannot make its check here says so and returns, unless `TINE_REQUIRE_ALL_TESTS`
/// is set (CI sets it): then a missing prerequisite is a failure, never a silent pass.
pub fn skip(reason: &str) {
    if std::env::var_os("TINE_REQUIRE_ALL_TESTS").is_some() {
        panic!("{reason}; TINE_REQUIRE_ALL_TESTS is set, so this check must run");
    }
    // Straight to the process's stderr, past the test harness's capture (which would show it
    // only for a failing test): a skip is seen in every run.
    let _ = writeln!(std::io::stderr(), "SKIPPED {reason}");
}

/// `body` in the chunked transfer coding, `sizes` giving the chunk lengths in turn (cycled),
/// with the last chunk and no trailers.
pub fn encode_chunked(body: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].min(rest.len());
        out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[n..];
        i += 1;
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}
