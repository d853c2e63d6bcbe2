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

/// Runs `tine` with `args` to completion (for --check-config, --print-config and the like).
pub fn run_tine(dir: &TempDir, args: &[&str]) -> (ExitStatus, String, String) {
    let output = Command::new(tine_bin())
        .args(args)
        .current_dir(dir.path())
        .env_remove("NOTIFY_SOCKET")
        .output()
        .expect("run tine");
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A running tine master, in its own process group.
pub struct Server {
    child: Option<Child>,
    /// Kept so the directory (config, log, notify socket) lives as long as the server.
    _dir: TempDir,
    pub addr: SocketAddr,
    log_path: PathBuf,
    /// The config's `[log] error_log` file, when the test set one.
    error_log: Option<PathBuf>,
    notify: UnixDatagram,
}

impl Server {
    /// Starts tine on `config` (a TOML text; a `bind` on 127.0.0.1 port 0 is added unless
    /// `config` sets `bind`), and waits for `READY=1`.
    pub fn start(config: &str) -> Server {
        Server::start_with(config, &[])
    }

    pub fn start_with(config: &str, args: &[&str]) -> Server {
        Server::start_full(config, args, &[])
    }

    pub fn start_with_env(config: &str, env: &[(&str, &str)]) -> Server {
        Server::start_full(config, &[], env)
    }

    /// Starts tine whose config sends the error log to `error_log`.
    pub fn start_logging_to(config: &str, error_log: &Path) -> Server {
        Server::start_inner(config, &[], &[], Some(error_log.to_owned()))
    }

    fn start_full(config: &str, args: &[&str], env: &[(&str, &str)]) -> Server {
        Server::start_inner(config, args, env, None)
    }

    fn start_inner(
        config: &str,
        args: &[&str],
        env: &[(&str, &str)],
        error_log: Option<PathBuf>,
    ) -> Server {
        let mut server = Server::spawn_inner(config, args, env, error_log);
        server.wait_for_notify("READY=1");
        server.addr = server.listening_addr();
        server
    }

    /// Starts tine on `config` without waiting for it to be ready (for a start that is meant
    /// to stall or fail); its log is there to watch.
    pub fn spawn_unready(config: &str, env: &[(&str, &str)]) -> Server {
        Server::spawn_inner(config, &[], env, None)
    }

    fn spawn_inner(
        config: &str,
        args: &[&str],
        env: &[(&str, &str)],
        error_log: Option<PathBuf>,
    ) -> Server {
        let dir = TempDir::new();
        let config = if config.contains("bind") {
            config.to_owned()
        } else if config.contains("[server]") {
            config.replacen("[server]", "[server]\nbind = [\"127.0.0.1:0\"]", 1)
        } else {
            format!("[server]\nbind = [\"127.0.0.1:0\"]\n{config}")
        };
        let config_path = dir.write("tine.toml", &config);
        let notify_path = dir.path().join("notify.sock");
        let notify = UnixDatagram::bind(&notify_path).expect("bind notify socket");
        notify
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let log_path = dir.path().join("tine.log");
        let child = spawn_logged(
            Command::new(tine_bin())
                .arg("-c")
                .arg(&config_path)
                .args(args)
                .current_dir(dir.path())
                .env("NOTIFY_SOCKET", &notify_path)
                .envs(env.iter().copied()),
            &log_path,
        );
        Server {
            child: Some(child),
            _dir: dir,
            addr: "127.0.0.1:0".parse().unwrap(),
            log_path,
            error_log,
            notify,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Waits for the master to send a notify message containing `needle`.
    pub fn wait_for_notify(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.notify.recv(&mut buf) {
                let message = String::from_utf8_lossy(&buf[..n]).into_owned();
                if message.lines().any(|line| line == needle) {
                    return message;
                }
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "tine exited with {status} before sending {needle}; log:\n{}",
                    self.log()
                );
            }
        }
        panic!("no {needle} within {WAIT:?}; log:\n{}", self.log());
    }

    /// Waits for a notify message with a line starting with `prefix`; returns the rest of it.
    pub fn wait_for_notify_prefix(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + WAIT;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.notify.recv(&mut buf) {
                let message = String::from_utf8_lossy(&buf[..n]).into_owned();
                if let Some(rest) = message.lines().find_map(|l| l.strip_prefix(prefix)) {
                    return rest.to_owned();
                }
            }
        }
        panic!("no {prefix} within {WAIT:?}; log:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        let mut log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        if let Some(path) = &self.error_log {
            log.push_str(&std::fs::read_to_string(path).unwrap_or_default());
        }
        log
    }

    fn listening_addr(&self) -> SocketAddr {
        let log = self.log();
        let line = log
            .lines()
            .find_map(|line| line.split("listening on http://").nth(1))
            .unwrap_or_else(|| panic!("no listening line in log:\n{log}"));
        line.trim().parse().expect("listening address")
    }

    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid() as i32), signal).expect("signal tine");
    }

    /// Waits for the master to exit, within `WAIT`.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        let child = self.child.as_mut().unwrap();
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("tine did not exit within {WAIT:?}; log:\n{}", self.log());
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

    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).expect("connect to tine");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream
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
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The whole group: the master and every worker it forked.
            let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
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
        let kinds = ["/", "/bytes?n=2000", "/sleep?ms=100"];
        let mut threads = Vec::new();
        for (n, path) in kinds.iter().enumerate() {
            for keep_alive in [true, false] {
                let stop = stop.clone();
                let path = path.to_string();
                threads.push(std::thread::spawn(move || {
                    let _ = n;
                    let mut ok = 0;
                    let mut failures = Vec::new();
                    let mut conn: Option<TcpStream> = None;
                    while !stop.load(Ordering::Relaxed) {
                        let stream = match conn.take() {
                            Some(stream) => stream,
                            None => match TcpStream::connect(addr) {
                                Ok(stream) => {
                                    stream.set_read_timeout(Some(WAIT)).unwrap();
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
        Load { stop, threads }
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

impl Server {
    /// Rewrites the config file the server was started with.
    pub fn rewrite_config(&self, config: &str) {
        std::fs::write(self._dir.path().join("tine.toml"), config).expect("rewrite config");
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
        let started = Instant::now();
        let output = Command::new("bash")
            .arg(&script)
            .arg(&venv)
            .arg(&python)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}; {how}", script.display()));
        if !output.status.success() {
            panic!(
                "{} {} {python} failed ({}):\n{}{}\n{how}",
                script.display(),
                venv.display(),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        if started.elapsed() > Duration::from_secs(2) {
            eprintln!(
                "test venv {} made in {:?}",
                venv.display(),
                started.elapsed()
            );
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

/// A test that cannot make its check here says so and returns, unless `TINE_REQUIRE_ALL_TESTS`
/// is set (CI sets it): then a missing prerequisite is a failure, never a silent pass.
pub fn skip(reason: &str) {
    if std::env::var_os("TINE_REQUIRE_ALL_TESTS").is_some() {
        panic!("{reason}; TINE_REQUIRE_ALL_TESTS is set, so this check must run");
    }
    eprintln!("SKIPPED {reason}");
}

/// Spawns `command` as a server: in a process group of its own (so a guard can kill it and
/// every process it forks), stdin empty, stdout and stderr into a new file at `log`.
pub fn spawn_logged(command: &mut Command, log: &Path) -> Child {
    let file = std::fs::File::create(log).expect("create the server's log");
    command
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("clone the log's descriptor"))
        .stderr(file)
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {:?}: {e}", command.get_program()))
}
