//! Python WSGI applications under tine (`[app] handler = "wsgi"`): PEP 3333 as
//! `tests/python/apps/validated_app.py` checks it from the inside, tine's own promises about
//! errors, timeouts and the wire, and real Flask and Django applications, compared with what
//! gunicorn answers to the same session.
//!
//! The tests in `pep3333` and `frameworks` hold for gunicorn as much as for tine: with
//! `TINE_WSGI_REFERENCE=gunicorn` in the environment they run against gunicorn (from the test
//! venv) instead, which is how their expectations were checked to be gunicorn's behaviour:
//! `TINE_WSGI_REFERENCE=gunicorn cargo test --test integration -- wsgi::pep3333 wsgi::frameworks`.
//! (gunicorn gets the same workers, 4 threads, preload, SCRIPT_NAME, `[app] env` and
//! forwarded_allow_ips; the other `[server]` and `[limits]` lines are tine's alone.)
//! The few assertions gunicorn does not meet are tine's promises beyond it, and are checked
//! only against tine (`Wsgi::is_tine`). The tests in `tine_only` always run tine.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::reference::{Backend, Reference, ServerSpec, UnderTest, WithServer, head_then_rest};
use crate::util::{
    Config, Response, TempDir, TestServer, WAIT, children_of, encode_chunked, python_apps,
    read_response_any, read_response_head, read_until_close, run_bounded, test_venv, tine_bin,
    toml_string, unlinked_temp_files, wait_until,
};

/// The environment variable that points the portable tests at gunicorn.
const REFERENCE: &str = "TINE_WSGI_REFERENCE";

fn reference_is_gunicorn() -> bool {
    std::env::var(REFERENCE).is_ok_and(|v| v == "gunicorn")
}

/// One WSGI application to run, and how.
#[derive(Clone)]
struct Spec {
    /// `module:callable` under tests/python/apps.
    app: String,
    /// `[server]` (besides bind and threads = 4) and `[limits]`.
    common: ServerSpec,
    /// Whether the application needs the test venv (Flask, Django).
    venv: bool,
    preload: bool,
    script_name: String,
    /// `[app] env`: set in the application's os.environ.
    app_env: Vec<(String, String)>,
    /// `[app] handler`: "wsgi", or "python" to let tine tell WSGI from ASGI.
    handler: &'static str,
}

impl Spec {
    fn new(app: &str) -> Spec {
        Spec {
            app: app.to_owned(),
            common: ServerSpec::default(),
            venv: false,
            preload: false,
            script_name: String::new(),
            app_env: Vec::new(),
            handler: "wsgi",
        }
    }

    /// validated_app behind wsgiref.validate.
    fn validated() -> Spec {
        Spec::new("validated_app:application")
    }

    /// The same routes without the validator, for deliberately invalid behaviour and
    /// wsgi.file_wrapper.
    fn raw() -> Spec {
        Spec::new("validated_app:raw_application")
    }

    fn preload(mut self, preload: bool) -> Spec {
        self.preload = preload;
        self
    }

    fn with_venv(mut self) -> Spec {
        self.venv = true;
        self
    }

    fn app_env(mut self, name: &str, value: &str) -> Spec {
        self.app_env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// tine's config for this spec (the builder adds the listener).
    fn tine_config(&self) -> Config {
        let mut config = format!(
            "[app]\nhandler = {}\napp = {}\npythonpath = [{}]\npreload = {}\n",
            toml_string(self.handler),
            toml_string(&self.app),
            toml_string(&python_apps().to_string_lossy()),
            self.preload
        );
        if self.venv {
            config.push_str(&format!(
                "virtualenv = {}\n",
                toml_string(&test_venv().to_string_lossy())
            ));
        }
        if !self.script_name.is_empty() {
            config.push_str(&format!(
                "script_name = {}\n",
                toml_string(&self.script_name)
            ));
        }
        if !self.app_env.is_empty() {
            let pairs: Vec<String> = self
                .app_env
                .iter()
                .map(|(k, v)| format!("{k} = {}", toml_string(v)))
                .collect();
            config.push_str(&format!("env = {{ {} }}\n", pairs.join(", ")));
        }
        self.common.tine_config("threads = 4\n", &config)
    }
}

impl WithServer for Spec {
    fn server_spec(&mut self) -> &mut ServerSpec {
        &mut self.common
    }
}

/// A WSGI server under test: tine, or gunicorn as the reference.
type Wsgi = UnderTest;

/// How gunicorn's log says it is up.
const GUNICORN: Reference = Reference {
    name: "gunicorn",
    listening: "Listening at: http://",
    ready: "Booting worker",
};

/// Runs `spec` under tine, or under gunicorn when `TINE_WSGI_REFERENCE=gunicorn`.
fn start(spec: &Spec) -> Wsgi {
    if reference_is_gunicorn() {
        start_gunicorn(spec)
    } else {
        start_tine(spec)
    }
}

/// Runs `spec` under tine.
fn start_tine(spec: &Spec) -> Wsgi {
    UnderTest::start_tine(spec.tine_config(), TempDir::new())
}

/// Runs `spec` under gunicorn from the test venv, with the settings tine's config gives it:
/// one worker (or `spec.workers`), 4 threads (the gthread worker), the apps directory on
/// sys.path; on a port the kernel picks, which its log names.
fn start_gunicorn(spec: &Spec) -> Wsgi {
    let gunicorn = test_venv().join("bin/gunicorn");
    let mut command = Command::new(&gunicorn);
    command
        .arg("--chdir")
        .arg(python_apps())
        .args(["--workers", &spec.common.workers.to_string()])
        .args(["--threads", "4", "--worker-class", "gthread"])
        .args(["--bind", "127.0.0.1:0"])
        .args(["--timeout", "30", "--graceful-timeout", "2"])
        .args(["--error-logfile", "-"]);
    if gunicorn_has_control_socket(&gunicorn) {
        command.arg("--no-control-socket");
    }
    if spec.preload {
        command.arg("--preload");
    }
    if let Some(ips) = &spec.common.forwarded_allow_ips {
        command.args(["--forwarded-allow-ips", &ips.join(",")]);
    }
    for (name, value) in &spec.app_env {
        command.args(["--env", &format!("{name}={value}")]);
    }
    if !spec.script_name.is_empty() {
        command.env("SCRIPT_NAME", &spec.script_name);
    }
    command.arg(&spec.app).env_remove("GUNICORN_CMD_ARGS");
    UnderTest::start_reference(&GUNICORN, command)
}

/// The WSGI tests' own helpers.
impl Wsgi {
    /// `GET target`, which must answer 200 (else the body and the server's log say why).
    fn get_ok(&self, target: &str) -> Response {
        self.get_status(target, 200)
    }

    /// The application's counter `name` (close-TAG, produced-TAG, reads-TAG), read under
    /// the lock the application takes to change it.
    fn count(&self, name: &str) -> u64 {
        let Ok(file) = std::fs::File::open(self.state.path().join(name)) else {
            return 0;
        };
        let mut locked = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockShared)
            .unwrap_or_else(|(_, e)| panic!("locking the counter {name}: {e}"));
        let mut text = String::new();
        std::io::Read::read_to_string(&mut *locked, &mut text).unwrap();
        text.trim().parse().unwrap_or(0)
    }

    /// Waits for the counter `name` to reach `want`, then checks it stays there a while.
    fn expect_count(&self, name: &str, want: u64) {
        wait_until(
            &format!("{}: counter {name} at {want}", self.name()),
            || self.count(name),
            |&n| n >= want,
        );
        // "Not again": no event says a second call will not come, so a while must pass; this
        // sleep is that check, not a wait for something.
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            self.count(name),
            want,
            "{}: counter {name}; log:\n{}",
            self.name(),
            self.log()
        );
    }

    fn master_pid(&self) -> u32 {
        match &self.backend {
            Backend::Tine(server) => server.pid(),
            Backend::Reference(gunicorn) => gunicorn.pid(),
        }
    }

    /// `(import_pid, pid)` of the worker that answers /pids.
    fn pids(&self) -> (u32, u32) {
        let text = self.get("/pids").text();
        let field = |name: &str| -> u32 {
            text.lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("no {name} in {text:?}"))
        };
        (field("import_pid "), field("pid "))
    }
}

/// Whether this gunicorn opens a control socket (24 and later) that `--no-control-socket`
/// turns off; instances running at once would otherwise share one in the home directory.
fn gunicorn_has_control_socket(gunicorn: &Path) -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        let output = run_bounded(Command::new(gunicorn).arg("--help"), None, WAIT);
        output.stdout.contains("--no-control-socket")
    })
}

// --- small helpers ----------------------------------------------------------------------------

fn hex_decode(hex: &str) -> Vec<u8> {
    assert!(hex.len() % 2 == 0, "odd hex {hex:?}");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap_or_else(|_| panic!("hex {hex:?}")))
        .collect()
}

/// CRC-32 (zlib's), to check bodies the application summarises.
fn crc32(data: &[u8]) -> u32 {
    let mut table = [0u32; 256];
    for (n, entry) in table.iter_mut().enumerate() {
        let mut c = n as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
        *entry = c;
    }
    let mut crc = !0u32;
    for &byte in data {
        crc = table[((crc ^ byte as u32) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// validated_app's `pattern(size)`.
fn pattern(size: usize) -> Vec<u8> {
    (0..size).map(|i| ((i * 7 + i / 251) % 256) as u8).collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn count_of(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

/// The status code of a raw response.
fn raw_status(raw: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(raw);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"))
}

// --- /environ -----------------------------------------------------------------------------

/// validated_app's /environ: key → (type name, value as text, None when not representable).
struct Environ(Vec<(String, String, Option<String>)>);

impl Environ {
    fn parse(body: &str) -> Environ {
        Environ(
            body.lines()
                .map(|line| {
                    let mut fields = line.split('\t');
                    let key = fields.next().unwrap_or("").to_owned();
                    let kind = fields.next().unwrap_or("").to_owned();
                    let value = fields.next().unwrap_or("-");
                    let value = if let Some(hex) = value.strip_prefix("s:") {
                        Some(String::from_utf8(hex_decode(hex)).expect("UTF-8 from the app"))
                    } else {
                        value.strip_prefix("r:").map(str::to_owned)
                    };
                    (key, kind, value)
                })
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<(&str, Option<&str>)> {
        self.0
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, kind, value)| (kind.as_str(), value.as_deref()))
    }

    fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The value of `key`, which must be a str.
    fn str(&self, key: &str) -> String {
        match self.get(key) {
            Some(("str", Some(value))) => value.to_owned(),
            other => panic!(
                "environ[{key:?}] is {other:?}, not a str; environ: {:?}",
                self.0
            ),
        }
    }

    /// The repr of `key`, which must be of type `kind`.
    fn repr(&self, key: &str, kind: &str) -> String {
        match self.get(key) {
            Some((k, Some(value))) if k == kind => value.to_owned(),
            other => panic!(
                "environ[{key:?}] is {other:?}, not a {kind}; environ: {:?}",
                self.0
            ),
        }
    }
}

// --- wsgi.input ---------------------------------------------------------------------------

/// What validated_app's /input/METHOD answered.
#[derive(Debug)]
struct InputReport {
    len: usize,
    crc32: u32,
    sizes: Vec<usize>,
    pieces: Vec<Vec<u8>>,
    eof: String,
}

impl InputReport {
    fn parse(response: &Response) -> InputReport {
        let text = response.text();
        assert_eq!(response.status, 200, "{text}");
        let mut report = InputReport {
            len: usize::MAX,
            crc32: 0,
            sizes: Vec::new(),
            pieces: Vec::new(),
            eof: String::new(),
        };
        for line in text.lines() {
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            match key {
                "len" => report.len = value.parse().unwrap(),
                "crc32" => report.crc32 = u32::from_str_radix(value, 16).unwrap(),
                "sizes" => {
                    report.sizes = value
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(|s| s.parse().unwrap())
                        .collect()
                }
                "piece" => report.pieces.push(hex_decode(value)),
                "eof" => report.eof = value.to_owned(),
                _ => {}
            }
        }
        report
    }
}

/// A model of a file-like reader of `body`, with Python's semantics.
struct Model<'a> {
    body: &'a [u8],
    at: usize,
}

impl Model<'_> {
    fn read(&mut self, n: Option<usize>) -> Vec<u8> {
        let end = n.map_or(self.body.len(), |n| (self.at + n).min(self.body.len()));
        let piece = self.body[self.at..end].to_vec();
        self.at = end;
        piece
    }

    fn readline(&mut self, limit: Option<usize>) -> Vec<u8> {
        let rest = &self.body[self.at..];
        let mut end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        if let Some(limit) = limit {
            end = end.min(limit);
        }
        self.read(Some(end))
    }

    fn lines(&mut self) -> Vec<Vec<u8>> {
        let mut lines = Vec::new();
        loop {
            let line = self.readline(None);
            if line.is_empty() {
                return lines;
            }
            lines.push(line);
        }
    }
}

/// The pieces validated_app's `_read_pieces(method)` returns for `body`.
fn expected_pieces(method: &str, body: &[u8], n: usize) -> Vec<Vec<u8>> {
    let mut m = Model { body, at: 0 };
    let mut pieces = Vec::new();
    match method {
        "read" => pieces.push(m.read(None)),
        "read-n" => loop {
            let piece = m.read(Some(n));
            if piece.is_empty() {
                break;
            }
            pieces.push(piece);
        },
        "read-big" => pieces.push(m.read(Some(n))),
        "readline" | "readlines" | "iter" => pieces = m.lines(),
        "readline-n" => loop {
            let piece = m.readline(Some(n));
            if piece.is_empty() {
                break;
            }
            pieces.push(piece);
        },
        "mixed" => {
            pieces.push(m.read(Some(3)));
            pieces.push(m.readline(None));
            pieces.push(m.readline(Some(2)));
            pieces.push(m.read(Some(5)));
            pieces.push(m.readline(None));
            pieces.extend(m.lines());
        }
        "mixed-iter" => {
            pieces.push(m.read(Some(2)));
            pieces.push(m.readline(Some(4)));
            let line = m.readline(None);
            if !line.is_empty() {
                pieces.push(line);
            }
            pieces.push(m.read(Some(7)));
            pieces.extend(m.lines());
        }
        other => panic!("no model of {other}"),
    }
    pieces
}

/// A body with short and long lines, CRLF and LF, an empty line, bytes that are not UTF-8,
/// and no newline at the end.
const SMALL_BODY: &[u8] =
    b"line one\nline two is a little longer\r\n\n\xff\xfe binary\x00 line\nlast, without newline";

/// Posts `body` to /input/METHOD (Content-Length) and checks every piece against the model.
fn check_input_method(w: &Wsgi, method: &str, body: &[u8], n: usize) {
    let response = w.post(
        &format!("/input/{method}?n={n}"),
        "application/octet-stream",
        body,
    );
    let report = InputReport::parse(&response);
    let expected = expected_pieces(method, body, n);
    assert_eq!(
        report.pieces,
        expected,
        "{}: pieces of /input/{method}?n={n}",
        w.name()
    );
    assert_eq!(report.len, body.len());
    assert_eq!(report.crc32, crc32(body));
    assert_eq!(
        report.eof, "empty,empty,empty,empty",
        "read(1), readline(), read(n) and read() after the end are all b\"\""
    );
}

/// A body of about `size` bytes in lines of 1 to 200 bytes.
fn big_lined_body(size: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(size + 256);
    let mut i = 0usize;
    while body.len() < size {
        let len = 1 + (i * 37) % 200;
        body.extend((0..len - 1).map(|j| b'a' + ((i + j) % 26) as u8));
        body.push(b'\n');
        i += 1;
    }
    body.extend_from_slice(b"tail");
    body
}

/// Sends `body` to /input/METHOD?summary=1, chunked or with a Content-Length, and checks
/// length, checksum and the size of every piece.
fn check_big_input(w: &Wsgi, method: &str, n: usize, body: &[u8], chunk: bool) {
    let target = format!("/input/{method}?n={n}&summary=1");
    let mut raw = if chunk {
        format!(
            "POST {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nTransfer-Encoding: \
             chunked\r\n\r\n"
        )
        .into_bytes()
    } else {
        format!(
            "POST {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes()
    };
    if chunk {
        raw.extend(encode_chunked(body, &[65536, 1, 4093, 300_000]));
    } else {
        raw.extend_from_slice(body);
    }
    let report = InputReport::parse(&w.send(&raw));
    let sizes: Vec<usize> = expected_pieces(method, body, n)
        .iter()
        .map(Vec::len)
        .collect();
    assert_eq!(report.len, body.len(), "{}: {target}", w.name());
    assert_eq!(report.crc32, crc32(body), "{}: {target}", w.name());
    assert!(
        report.sizes == sizes,
        "{}: piece sizes of {target}",
        w.name()
    );
    assert_eq!(report.eof, "empty,empty,empty,empty");
}

/// A response cut short after `kept`: without `dropped`, and without the last chunk, so the
/// client can tell.
fn assert_cut_short(rest: &[u8], kept: &[u8], dropped: &[u8]) {
    let text = String::from_utf8_lossy(rest);
    assert!(contains(rest, kept), "{text:?}");
    assert!(!contains(rest, dropped), "{text:?}");
    assert!(
        !rest.ends_with(b"0\r\n\r\n"),
        "a cut stream must not look complete: {text:?}"
    );
}

/// After a response on `stream` whose body must be over: either the server closed the
/// connection with nothing more, or the next request on it gets a clean response.
fn assert_nothing_more(w: &Wsgi, mut stream: TcpStream, previous: &Response, what: &str) {
    if previous
        .header("Connection")
        .is_some_and(|c| c.eq_ignore_ascii_case("close"))
    {
        let rest = read_until_close(&mut stream).unwrap_or_else(|e| e);
        assert!(
            rest.is_empty(),
            "{}: {what}: bytes after the response: {:?}",
            w.name(),
            String::from_utf8_lossy(&rest)
        );
        return;
    }
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let rest = read_until_close(&mut stream).unwrap_or_else(|e| e);
    assert!(
        rest.starts_with(b"HTTP/1.1 200 ") && rest.ends_with(b"validated_app\n"),
        "{}: {what}: the next response on the connection is {:?}",
        w.name(),
        String::from_utf8_lossy(&rest)
    );
}

/// PEP 3333, checked from the inside by wsgiref.validate, and its consequences on the wire.
/// Each test holds for gunicorn too (see the module's documentation).
mod pep3333 {
    use super::*;

    #[test]
    fn environ_has_every_cgi_key_with_the_pep_3333_types() {
        let w = start(&Spec::validated());
        let mut stream = w.connect();
        let local_port = stream.local_addr().unwrap().port();
        let target = "/environ/caf%C3%A9/%E9%20x?a=1&b=%20&c=caf%C3%A9";
        stream
            .write_all(
                format!(
                    "GET {target} HTTP/1.1\r\nHost: test.example\r\nX-Repeated: one\r\n\
                     User-Agent: tine-tests\r\nX-Repeated: two\r\nX-Dash-Name: dash\r\n\
                     Connection: close\r\n\r\n"
                )
                .as_bytes(),
            )
            .unwrap();
        let response = read_response_any(&mut stream, false).unwrap();
        assert_eq!(
            response.status,
            200,
            "{}; log:\n{}",
            response.text(),
            w.log()
        );
        let env = Environ::parse(&response.text());

        assert_eq!(env.str("REQUEST_METHOD"), "GET");
        assert_eq!(env.str("SCRIPT_NAME"), "");
        // Percent-decoded, then each byte one latin-1 character.
        let path: String = b"/environ/caf\xc3\xa9/\xe9 x"
            .iter()
            .map(|&b| b as char)
            .collect();
        assert_eq!(env.str("PATH_INFO"), path);
        assert_eq!(env.str("QUERY_STRING"), "a=1&b=%20&c=caf%C3%A9");
        assert_eq!(env.str("RAW_URI"), target);
        assert_eq!(env.str("SERVER_PROTOCOL"), "HTTP/1.1");
        assert!(!env.str("SERVER_NAME").is_empty());
        assert_eq!(env.str("SERVER_PORT"), w.addr().port().to_string());
        assert_eq!(env.str("REMOTE_ADDR"), "127.0.0.1");
        assert_eq!(env.str("REMOTE_PORT"), local_port.to_string());
        assert_eq!(env.str("HTTP_HOST"), "test.example");
        assert_eq!(env.str("HTTP_USER_AGENT"), "tine-tests");
        assert_eq!(
            env.str("HTTP_X_REPEATED"),
            "one,two",
            "repeated fields joined"
        );
        assert_eq!(env.str("HTTP_X_DASH_NAME"), "dash");
        for absent in [
            "CONTENT_TYPE",
            "CONTENT_LENGTH",
            "HTTP_CONTENT_TYPE",
            "HTTP_CONTENT_LENGTH",
        ] {
            assert!(!env.has(absent), "{absent} without a body; {:?}", env.0);
        }
        // Every key without a dot is a CGI variable and must be a str (the validator checks
        // too); every HTTP_ key is upper case.
        for (key, kind, _) in &env.0 {
            if !key.contains('.') && !key.contains(':') {
                assert_eq!(kind, "str", "{key}");
            }
            if let Some(name) = key.strip_prefix("HTTP_") {
                assert!(!name.contains('-') && name == name.to_uppercase(), "{key}");
            }
        }

        assert_eq!(env.repr("wsgi.version", "tuple"), "(1, 0)");
        assert_eq!(env.str("wsgi.url_scheme"), "http");
        assert_eq!(env.repr("wsgi.multithread", "bool"), "True");
        assert_eq!(env.repr("wsgi.run_once", "bool"), "False");
        assert_eq!(env.repr("wsgi.input_terminated", "bool"), "True");
        env.repr("wsgi.multiprocess", "bool");
        if w.is_tine() {
            // gunicorn says False with one worker; tine always forks.
            assert_eq!(env.repr("wsgi.multiprocess", "bool"), "True");
        }
        assert!(env.has("wsgi.input") && env.has("wsgi.errors"));
        assert_eq!(
            env.get("methods:wsgi.input").map(|(m, _)| m),
            Some("read,readline,readlines,__iter__")
        );
        assert_eq!(
            env.get("methods:wsgi.errors").map(|(m, _)| m),
            Some("write,writelines,flush")
        );
        assert_eq!(
            env.get("callable:wsgi.file_wrapper").map(|(m, _)| m),
            Some("True")
        );
    }

    #[test]
    fn an_environ_changed_by_the_application_is_not_the_next_request_s() {
        let w = start(&Spec::validated());
        for _ in 0..3 {
            assert_eq!(w.get_ok("/mutate-environ").text(), "mutated");
            let env = Environ::parse(&w.get_ok("/environ").text());
            assert_eq!(env.str("SCRIPT_NAME"), "");
            assert_eq!(env.repr("wsgi.multithread", "bool"), "True");
            assert!(env.has("SERVER_SOFTWARE"), "{:?}", env.0);
            assert!(!env.has("tine.test.added"), "{:?}", env.0);
        }
    }

    #[test]
    fn header_fields_differing_only_in_case_are_joined() {
        let w = start(&Spec::validated());
        let response = w.send(
            b"GET /environ HTTP/1.1\r\nHost: test\r\naccept: text/plain\r\n\
              X-Case: a\r\nAccept: text/html\r\nx-case: b\r\nX-CASE: c\r\n\
              Connection: close\r\n\r\n",
        );
        assert_eq!(response.status, 200);
        let env = Environ::parse(&response.text());
        assert_eq!(env.str("HTTP_ACCEPT"), "text/plain,text/html");
        assert_eq!(env.str("HTTP_X_CASE"), "a,b,c");
        assert_eq!(env.str("HTTP_HOST"), "test");
    }

    #[test]
    fn environ_has_content_type_and_length_only_when_the_request_does() {
        let w = start(&Spec::validated());
        let with_body = w.post("/environ", "text/plain; charset=utf-8", b"hello");
        assert_eq!(with_body.status, 200, "{}", with_body.text());
        let env = Environ::parse(&with_body.text());
        assert_eq!(env.str("REQUEST_METHOD"), "POST");
        assert_eq!(env.str("CONTENT_TYPE"), "text/plain; charset=utf-8");
        assert_eq!(env.str("CONTENT_LENGTH"), "5");
        assert!(!env.has("HTTP_CONTENT_TYPE") && !env.has("HTTP_CONTENT_LENGTH"));

        // A chunked body has no length to give.
        let chunked_body = w.send(
            b"POST /environ HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
              Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        );
        assert_eq!(chunked_body.status, 200, "{}", chunked_body.text());
        let env = Environ::parse(&chunked_body.text());
        assert!(!env.has("CONTENT_LENGTH"), "{:?}", env.0);
        assert!(!env.has("CONTENT_TYPE"), "{:?}", env.0);
        assert_eq!(env.repr("wsgi.input_terminated", "bool"), "True");

        // A Content-Type without a body is still passed on.
        let typed = w.send(
            b"GET /environ HTTP/1.1\r\nHost: test\r\nContent-Type: text/x-empty\r\n\
              Connection: close\r\n\r\n",
        );
        let env = Environ::parse(&typed.text());
        assert_eq!(env.str("CONTENT_TYPE"), "text/x-empty");
        assert!(!env.has("CONTENT_LENGTH"));

        let old = w.send(b"GET /environ HTTP/1.0\r\nHost: test\r\n\r\n");
        assert_eq!(old.status, 200);
        let env = Environ::parse(&old.text());
        assert_eq!(env.str("SERVER_PROTOCOL"), "HTTP/1.0");
        // No query: QUERY_STRING is there, and empty (as gunicorn and wsgiref have it).
        assert_eq!(env.str("QUERY_STRING"), "");
        assert_eq!(env.str("PATH_INFO"), "/environ");
        assert_eq!(env.str("RAW_URI"), "/environ");
    }

    #[test]
    fn url_scheme_is_https_only_when_a_trusted_proxy_says_so() {
        let w = start(&Spec::validated());
        let forwarded = w.send(
            b"GET /environ HTTP/1.1\r\nHost: test\r\nX-Forwarded-Proto: https\r\n\
              Connection: close\r\n\r\n",
        );
        assert_eq!(
            Environ::parse(&forwarded.text()).str("wsgi.url_scheme"),
            "https",
            "127.0.0.1 is trusted by default"
        );
        assert_eq!(
            Environ::parse(&w.get("/environ").text()).str("wsgi.url_scheme"),
            "http"
        );
        drop(w);

        let mut spec = Spec::validated();
        spec.common.forwarded_allow_ips = Some(vec!["192.0.2.7".to_owned()]);
        let untrusting = start(&spec);
        let ignored = untrusting.send(
            b"GET /environ HTTP/1.1\r\nHost: test\r\nX-Forwarded-Proto: https\r\n\
              Connection: close\r\n\r\n",
        );
        assert_eq!(ignored.status, 200, "{}", ignored.text());
        assert_eq!(
            Environ::parse(&ignored.text()).str("wsgi.url_scheme"),
            "http",
            "a peer outside forwarded_allow_ips cannot claim https"
        );
    }

    #[test]
    fn script_name_is_split_off_the_path() {
        let mut spec = Spec::validated();
        spec.script_name = "/mount".to_owned();
        let w = start(&spec);
        let response = w.get_ok("/mount/environ/inner?q=1");
        let env = Environ::parse(&response.text());
        assert_eq!(env.str("SCRIPT_NAME"), "/mount");
        assert_eq!(env.str("PATH_INFO"), "/environ/inner");
        assert_eq!(env.str("RAW_URI"), "/mount/environ/inner?q=1");
    }

    #[test]
    fn app_env_is_in_the_application_s_os_environ() {
        let w = start(&Spec::validated().app_env("TINE_TEST_MARK", "set by [app] env"));
        assert_eq!(
            w.get("/osenv?name=TINE_TEST_MARK").text(),
            "set by [app] env"
        );
    }

    #[test]
    fn input_read_with_no_size_returns_the_whole_body() {
        let w = start(&Spec::validated());
        check_input_method(&w, "read", SMALL_BODY, 7);
        check_input_method(&w, "read", b"", 7);
    }

    #[test]
    fn input_read_n_returns_at_most_n_bytes_at_a_time() {
        let w = start(&Spec::validated());
        for n in [1, 4, 7, 64, 4096] {
            check_input_method(&w, "read-n", SMALL_BODY, n);
        }
        check_input_method(&w, "read-big", SMALL_BODY, 100_000);
    }

    #[test]
    fn input_readline_returns_one_line_at_a_time() {
        let w = start(&Spec::validated());
        check_input_method(&w, "readline", SMALL_BODY, 7);
    }

    #[test]
    fn input_readline_n_stops_at_n_bytes_or_the_end_of_the_line() {
        let w = start(&Spec::validated());
        for n in [1, 2, 5, 9, 10, 1000] {
            check_input_method(&w, "readline-n", SMALL_BODY, n);
        }
    }

    #[test]
    fn input_readlines_returns_every_line() {
        let w = start(&Spec::validated());
        check_input_method(&w, "readlines", SMALL_BODY, 7);
    }

    #[test]
    fn input_iterates_by_line() {
        let w = start(&Spec::validated());
        check_input_method(&w, "iter", SMALL_BODY, 7);
    }

    #[test]
    fn input_methods_mixed_keep_one_position() {
        let w = start(&Spec::validated());
        check_input_method(&w, "mixed", SMALL_BODY, 7);
        check_input_method(&w, "mixed-iter", SMALL_BODY, 7);
        // Bodies that end in the middle of the sequence.
        check_input_method(&w, "mixed", b"ab", 7);
        check_input_method(&w, "mixed", b"abc\nd", 7);
        check_input_method(&w, "mixed-iter", b"x", 7);
    }

    #[test]
    fn input_without_a_body_is_empty() {
        let w = start(&Spec::validated());
        let response = w.get("/input/read");
        let report = InputReport::parse(&response);
        assert_eq!(report.pieces, vec![Vec::<u8>::new()]);
        assert_eq!(report.eof, "empty,empty,empty,empty");
        let response = w.get("/input/readline");
        assert_eq!(InputReport::parse(&response).pieces, Vec::<Vec<u8>>::new());
    }

    #[test]
    fn a_body_the_app_does_not_read_does_not_spill_into_the_next_request() {
        let w = start(&Spec::validated());
        let mut stream = w.connect();
        let body = b"GET /environ HTTP/1.1\r\nHost: smuggled\r\n\r\n";
        stream
            .write_all(
                format!(
                    "POST /input/none HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            )
            .unwrap();
        stream.write_all(body).unwrap();
        let first = read_response_any(&mut stream, false).unwrap();
        assert_eq!(InputReport::parse(&first).len, 0);
        if first.header("Connection") != Some("close") {
            stream
                .write_all(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
                .unwrap();
            let second = read_response_any(&mut stream, false).unwrap();
            assert_eq!(
                second.text(),
                "validated_app\n",
                "the unread body was skipped"
            );
        }
    }

    #[test]
    fn a_chunked_request_body_reads_like_any_other() {
        let w = start(&Spec::validated());
        for (method, n) in [
            ("read", 7),
            ("read-n", 5),
            ("readline", 7),
            ("readline-n", 3),
            ("readlines", 7),
            ("iter", 7),
            ("mixed", 7),
        ] {
            let mut raw = format!(
                "POST /input/{method}?n={n} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
                 Transfer-Encoding: chunked\r\n\r\n"
            )
            .into_bytes();
            raw.extend(encode_chunked(SMALL_BODY, &[1, 5, 11, 2]));
            let report = InputReport::parse(&w.send(&raw));
            assert_eq!(
                report.pieces,
                expected_pieces(method, SMALL_BODY, n),
                "{}: chunked /input/{method}",
                w.name()
            );
            assert_eq!(report.eof, "empty,empty,empty,empty");
        }
    }

    #[test]
    fn a_large_body_reads_the_same_by_every_method() {
        let w = start(&Spec::validated().limits("body_buffer = \"64KiB\""));
        let body = big_lined_body(3 << 20);
        for (method, n) in [
            ("read", 0),
            ("read-n", 65537),
            ("readline", 0),
            ("readline-n", 100),
            ("readlines", 0),
            ("iter", 0),
            ("mixed", 0),
        ] {
            check_big_input(&w, method, n, &body, false);
        }
        check_big_input(&w, "read-n", 8192, &body, true);
        check_big_input(&w, "readline", 0, &body, true);
    }

    #[test]
    fn a_generator_streams_every_chunk_in_order() {
        let w = start(&Spec::validated());
        let mut stream = w.connect();
        stream
            .write_all(b"GET /stream?n=50&size=1000 HTTP/1.1\r\nHost: test\r\n\r\n")
            .unwrap();
        let response = read_response_any(&mut stream, false).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.header("Transfer-Encoding"), Some("chunked"));
        let expected: Vec<u8> = (0..50)
            .flat_map(|i| std::iter::repeat_n(b'a' + (i % 26) as u8, 1000))
            .collect();
        assert!(response.body == expected, "{}", response.text());
        // The connection is good for more: an empty stream, then the end.
        stream
            .write_all(b"GET /stream?n=0 HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            .unwrap();
        let empty = read_response_any(&mut stream, false).unwrap();
        assert_eq!(empty.status, 200);
        assert!(empty.body.is_empty());

        let old = w.send(b"GET /stream?n=3&size=4 HTTP/1.0\r\nHost: test\r\n\r\n");
        assert_eq!(
            old.header("Transfer-Encoding"),
            None,
            "no chunking for HTTP/1.0"
        );
        assert_eq!(old.text(), "aaaabbbbcccc");
    }

    #[test]
    fn a_generator_may_call_start_response_when_first_advanced() {
        let w = start(&Spec::validated());
        let response = w.get_ok("/lazy");
        assert_eq!(response.header("X-Lazy"), Some("yes"));
        assert_eq!(response.text(), "lazy body");
    }

    #[test]
    fn the_write_callable_comes_before_the_returned_iterable() {
        let w = start(&Spec::validated());
        let response = w.get_ok("/write");
        assert_eq!(response.text(), "written then returned list");
    }

    #[test]
    fn close_is_called_once_after_the_last_chunk() {
        let w = start(&Spec::validated());
        let response = w.get("/close?tag=done&n=3");
        assert_eq!(response.text(), "chunk0 chunk1 chunk2 ");
        w.expect_count("close-done", 1);
        assert_eq!(w.get("/closecount?tag=done").text(), "1");
        assert_eq!(w.get("/count?name=produced-done").text(), "3");
        // HEAD runs the application too, and closes its iterable.
        let head =
            w.send(b"HEAD /close?tag=head HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        assert_eq!(head.status, 200);
        w.expect_count("close-head", 1);
    }

    #[test]
    fn an_iterable_whose_content_length_is_out_is_closed_once() {
        let w = start(&Spec::validated());
        // The first chunk ("chunk0 ", 7 bytes) is the whole Content-Length, as a Flask
        // response's is; then one that needs the second chunk too.
        for (tag, cl, body, produced) in
            [("whole", 7, "chunk0 ", 1), ("two", 14, "chunk0 chunk1 ", 2)]
        {
            let mut stream = w.connect();
            stream
                .write_all(
                    format!("GET /close?tag={tag}&n=3&cl={cl} HTTP/1.1\r\nHost: test\r\n\r\n")
                        .as_bytes(),
                )
                .unwrap();
            let response = read_response_any(&mut stream, false).unwrap();
            assert_eq!(response.status, 200, "{tag}");
            assert_eq!(
                response.header("Content-Length"),
                Some(cl.to_string().as_str())
            );
            assert_eq!(response.text(), body, "{tag}");
            assert_nothing_more(&w, stream, &response, &format!("after /close?tag={tag}"));
            w.expect_count(&format!("close-{tag}"), 1);
            if w.is_tine() {
                // gunicorn advances the iterable to its end whatever the length.
                assert_eq!(w.count(&format!("produced-{tag}")), produced, "{tag}");
            }
        }
    }

    #[test]
    fn close_is_called_once_when_the_client_leaves_mid_stream() {
        let w = start(&Spec::validated());
        let mut stream = w.connect();
        stream
            .write_all(b"GET /slowstream?tag=gone&n=1000&ms=20 HTTP/1.1\r\nHost: test\r\n\r\n")
            .unwrap();
        let head = read_response_head(&mut stream).unwrap();
        assert_eq!(head.status, 200);
        let mut first = [0u8; 8];
        std::io::Read::read_exact(&mut stream, &mut first).unwrap();
        drop(stream);
        wait_until(
            &format!("{}: close called", w.name()),
            || w.count("close-gone"),
            |&n| n >= 1,
        );
        let produced = w.count("produced-gone");
        // expect_count's wait for a second close is also the while in which a closed iterable
        // must not be advanced.
        w.expect_count("close-gone", 1);
        assert_eq!(
            w.count("produced-gone"),
            produced,
            "the iterable is no longer advanced"
        );
        assert!(
            produced < 500,
            "{produced} of 1000 chunks were produced for nobody"
        );
    }

    #[test]
    fn an_exception_before_start_response_is_a_500_logged_once() {
        let w = start(&Spec::validated());
        let (_, pid) = w.pids();
        let response = w.get("/raise-before");
        assert_eq!(response.status, 500);
        assert!(
            !response.text().contains("deliberate failure"),
            "the client does not see the exception"
        );
        w.wait_log("RuntimeError: deliberate failure before start_response");
        // A later request's line in the same log: whatever the failed request logged comes
        // before it.
        assert_eq!(w.get("/errors?marker=after-raise-7f3a").text(), "logged");
        w.wait_log("after-raise-7f3a via writelines");
        let log = w.log();
        assert_eq!(
            count_of(&log, "Traceback (most recent call last)"),
            1,
            "{log}"
        );
        assert!(log.contains("raise_before_route"), "{log}");
        // The same worker goes on serving.
        assert_eq!(w.pids().1, pid);
        assert_eq!(w.get("/").text(), "validated_app\n");
    }

    #[test]
    fn an_exception_after_the_first_chunk_closes_the_connection() {
        let w = start(&Spec::validated());
        let (head, rest) = head_then_rest(
            &w,
            b"GET /raise-after?tag=after HTTP/1.1\r\nHost: test\r\n\r\n",
        );
        assert_eq!(head.status, 200);
        assert_cut_short(&rest, b"partial", b"never");
        w.expect_count("close-after", 1);
        let log = w.wait_log("RuntimeError: deliberate failure after the first chunk");
        assert!(log.contains("Traceback (most recent call last)"), "{log}");
        assert_eq!(w.get("/").text(), "validated_app\n");
    }

    #[test]
    fn exc_info_before_anything_was_sent_replaces_status_and_headers() {
        let w = start(&Spec::validated());
        let response = w.get_status("/excinfo-replace", 503);
        assert_eq!(response.text(), "recovered");
        assert_eq!(response.header("X-Recovered"), Some("yes"));
        if w.is_tine() {
            // gunicorn keeps the first call's headers too.
            assert_eq!(response.header("X-First"), None, "{response:?}");
        }
    }

    #[test]
    fn exc_info_after_the_headers_were_sent_is_re_raised_and_the_connection_closed() {
        let w = start(&Spec::validated());
        let (head, rest) = head_then_rest(
            &w,
            b"GET /excinfo-after-sent HTTP/1.1\r\nHost: test\r\n\r\n",
        );
        assert_eq!(head.status, 200);
        assert_cut_short(&rest, b"sent", b"must not be reached");
        w.wait_log("ValueError: deliberate failure after the headers were sent");
    }

    #[test]
    fn start_response_twice_without_exc_info_is_a_500() {
        let w = start(&Spec::validated());
        let response = w.get("/start-twice");
        assert_eq!(response.status, 500);
        assert!(!response.text().contains("must not be sent"));
        w.wait_log("Traceback (most recent call last)");
    }

    #[test]
    fn more_body_than_content_length_is_cut_at_the_length() {
        let w = start(&Spec::validated());
        let mut stream = w.connect();
        stream
            .write_all(b"GET /cl-long HTTP/1.1\r\nHost: test\r\n\r\n")
            .unwrap();
        let response = read_response_any(&mut stream, false).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.header("Content-Length"), Some("5"));
        assert_eq!(response.text(), "12345");
        assert_nothing_more(&w, stream, &response, "after /cl-long");
    }

    #[test]
    fn head_puts_no_body_bytes_on_the_wire() {
        let w = start(&Spec::validated());
        for target in ["/", "/stream?n=3&size=5", "/write", "/lazy"] {
            let mut stream = w.connect();
            stream
                .write_all(format!("HEAD {target} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
                .unwrap();
            let head = read_response_head(&mut stream).unwrap();
            assert_eq!(head.status, 200, "HEAD {target}");
            assert_nothing_more(&w, stream, &head, &format!("HEAD {target}"));
        }
        let head = w.send(b"HEAD / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        assert_eq!(
            head.header("Content-Length"),
            Some("14"),
            "HEAD keeps the application's Content-Length"
        );
    }

    #[test]
    fn a_bad_status_or_header_is_a_500_and_never_reaches_the_wire() {
        let w = start(&Spec::raw());
        for (what, named) in [
            ("value-crlf", "x-bad"),
            ("value-lf", "x-bad"),
            ("value-nul", "x-bad"),
            ("value-bytes", "x-bad"),
            ("name-space", "x-bad"),
            ("name-colon", "x-bad"),
            ("status-word", "status"),
            ("status-short", "status"),
            ("status-crlf", "status"),
            ("status-bytes", "status"),
        ] {
            let logged_before = w.log().len();
            let raw = w.raw(
                format!("GET /bad?what={what} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
            assert_eq!(
                raw_status(&raw),
                500,
                "{what}: {:?}",
                String::from_utf8_lossy(&raw)
            );
            assert!(
                !contains(&raw.to_ascii_lowercase(), b"x-injected"),
                "{what}: {:?}",
                String::from_utf8_lossy(&raw)
            );
            if w.is_tine() {
                // A line names the problem (gunicorn's TypeError for bytes does not).
                wait_until(
                    &format!("{what}: a log line naming {named:?}"),
                    || w.log().get(logged_before..).unwrap_or("").to_lowercase(),
                    |new| new.contains(named),
                );
            }
        }
        assert_eq!(w.get("/").text(), "validated_app\n");
    }

    #[test]
    fn file_wrapper_of_a_real_file_sends_it_without_reading_it() {
        let w = start(&Spec::raw());
        let data = pattern(300_000);
        let path = w.state.write("sent.bin", "");
        std::fs::write(&path, &data).unwrap();
        let response = w.get_ok(&format!("/file?tag=real&path={}", path.display()));
        assert_eq!(response.header("Content-Length"), Some("300000"));
        assert!(response.body == data, "the file arrives whole");
        w.expect_count("close-real", 1);
        assert_eq!(
            w.count("reads-real"),
            0,
            "a file with a descriptor is sent with sendfile, not read into Python"
        );
    }

    #[test]
    fn file_wrapper_of_a_bytesio_is_read_in_blocks() {
        let w = start(&Spec::raw());
        let chunked_response = w.get("/filelike?tag=chunked&size=100000");
        assert_eq!(chunked_response.status, 200, "log:\n{}", w.log());
        assert!(chunked_response.body == pattern(100_000));
        w.expect_count("close-chunked", 1);
        let sized = w.get("/filelike?tag=sized&size=100000&cl=1");
        assert_eq!(sized.header("Content-Length"), Some("100000"));
        assert!(sized.body == pattern(100_000));
        w.expect_count("close-sized", 1);
        // Through the validator, which hides the wrapper from the server: plain iteration.
        let v = start(&Spec::validated());
        let validated = v.get("/filelike?tag=validated&size=30000");
        assert!(validated.body == pattern(30_000));
        v.expect_count("close-validated", 1);
    }

    #[test]
    fn wsgi_errors_goes_to_the_error_log() {
        let w = start(&Spec::validated());
        assert_eq!(w.get("/errors?marker=errors-marker-5c1d").text(), "logged");
        w.wait_log("errors-marker-5c1d via write");
        w.wait_log("errors-marker-5c1d via writelines");
    }

    #[test]
    fn four_threads_serve_four_requests_at_once() {
        let w = start(&Spec::validated());
        w.get("/"); // imported
        let addr = w.addr();
        // Each request waits in the application until all four are there at once (or gives up
        // after 15 s, answering "alone"): no clock on this side.
        let clients: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(move || {
                    let mut stream = crate::util::connect(addr);
                    stream
                        .write_all(
                            b"GET /together?n=4&tag=four HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                        )
                        .unwrap();
                    read_response_any(&mut stream, false).unwrap().text()
                })
            })
            .collect();
        for client in clients {
            assert_eq!(client.join().unwrap(), "together", "log:\n{}", w.log());
        }
    }

    #[test]
    fn preload_imports_the_application_once_in_the_master() {
        let w = start(&Spec::validated().workers(2).preload(true));
        let master = w.master_pid();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let (import_pid, pid) = w.pids();
            assert_eq!(import_pid, master, "imported before the fork");
            seen.insert(pid);
            if seen.len() == 2 {
                break;
            }
        }
        assert_eq!(seen.len(), 2, "both workers answered");
        for pid in &seen {
            assert!(children_of(master).contains(pid));
        }
    }

    #[test]
    fn without_preload_each_worker_imports_the_application() {
        let w = start(&Spec::validated().workers(2).preload(false));
        let master = w.master_pid();
        for _ in 0..10 {
            let (import_pid, pid) = w.pids();
            assert_eq!(import_pid, pid, "imported in the worker");
            assert_ne!(pid, master);
        }
    }
}

/// tine's promises beyond what gunicorn does (gunicorn's behaviour is noted on each).
mod tine_only {
    use super::*;

    #[test]
    fn headers_wait_for_the_first_non_empty_chunk() {
        // PEP 3333: no headers before the first non-empty chunk, so exc_info may still
        // replace them after an empty one. (gunicorn sends the headers for b"" already.)
        let w = start_tine(&Spec::validated());
        let response = w.get_status("/late-error", 503);
        assert_eq!(response.text(), "replaced");
        assert_eq!(response.header("X-Second"), Some("yes"));
        assert_eq!(response.header("X-First"), None);
    }

    #[test]
    fn a_hop_by_hop_header_from_the_application_is_a_500_with_a_log_line() {
        // gunicorn silently drops them.
        let w = start_tine(&Spec::raw());
        for (name, value) in [
            ("Connection", "close"),
            ("Keep-Alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("Upgrade", "websocket"),
            ("TE", "trailers"),
        ] {
            let logged_before = w.log().len();
            let raw = w.raw(
                format!(
                    "GET /hop?name={name}&value={value} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
                )
                .as_bytes(),
            );
            assert_eq!(
                raw_status(&raw),
                500,
                "{name}: {:?}",
                String::from_utf8_lossy(&raw)
            );
            assert!(!contains(&raw, b"hop-by-hop body"), "{name}");
            let needle = name.to_lowercase();
            wait_until(
                &format!("a log line naming {name}"),
                || w.log().get(logged_before..).unwrap_or("").to_lowercase(),
                |new| new.contains(&needle),
            );
        }
    }

    #[test]
    fn less_body_than_content_length_closes_the_connection_and_is_logged() {
        // gunicorn keeps the connection open (until its keep-alive timeout), and the client
        // waits for the missing bytes. Here keep-alive outlasts WAIT: only a close ends it.
        let w = start_tine(&Spec::validated().server("keepalive = \"60s\""));
        let (head, rest) = head_then_rest(&w, b"GET /cl-short HTTP/1.1\r\nHost: test\r\n\r\n");
        assert_eq!(head.status, 200);
        assert_eq!(head.header("Content-Length"), Some("10"));
        assert_eq!(rest, b"12345", "a short body, then the close");
        wait_until(
            "a log line about the short body",
            || w.log().to_lowercase(),
            |log| log.contains("content-length"),
        );
    }

    #[test]
    fn request_timeout_answers_504_and_logs_the_python_stack() {
        let w = start_tine(&Spec::validated().server("request_timeout = \"2s\""));
        w.get("/"); // imported
        let started = Instant::now();
        let response = w.get("/stuck");
        assert_eq!(response.status, 504, "log:\n{}", w.log());
        // Not before the configured timeout (a lower bound no machine can break); how late is
        // bounded only by the read timeout, `WAIT`, a hang detector.
        assert!(
            started.elapsed() >= Duration::from_secs(2),
            "answered after {:?}",
            started.elapsed()
        );
        let source = std::fs::read_to_string(python_apps().join("validated_app.py")).unwrap();
        let line = source
            .lines()
            .position(|l| l.contains("STUCK LINE"))
            .expect("the stuck line")
            + 1;
        let log = w.wait_log("stuck_here");
        assert!(log.contains("validated_app.py"), "{log}");
        assert!(
            log.contains(&format!("line {line}")),
            "the stack names line {line}, the sleep; log:\n{log}"
        );
        // And tine goes on serving.
        assert_eq!(w.get("/").text(), "validated_app\n");
    }

    #[test]
    fn request_timeout_closes_the_iterable_once() {
        let w = start_tine(&Spec::validated().server("request_timeout = \"2s\""));
        let response = w.get("/slowstream?tag=late&first_ms=30000");
        assert_eq!(response.status, 504, "log:\n{}", w.log());
        w.expect_count("close-late", 1);
        assert_eq!(w.count("produced-late"), 0);
    }

    #[test]
    fn a_body_over_body_buffer_is_spilled_to_a_temporary_file() {
        let w = start_tine(&Spec::validated().limits("body = \"1GiB\"\nbody_buffer = \"64KiB\""));
        w.get("/"); // imported
        let Backend::Tine(server) = &w.backend else {
            unreachable!()
        };
        let worker = server.workers()[0];
        let body = big_lined_body(8 << 20);
        let mut stream = w.connect();
        stream
            .write_all(
                format!(
                    "POST /input/readline?summary=1 HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
                     Content-Length: {}\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            )
            .unwrap();
        let (first, rest) = body.split_at(6 << 20);
        stream.write_all(first).unwrap();
        wait_until(
            "an unlinked temporary file in the worker",
            || unlinked_temp_files(worker),
            |files| !files.is_empty(),
        );
        stream.write_all(rest).unwrap();
        let report = InputReport::parse(&read_response_any(&mut stream, false).unwrap());
        assert_eq!(report.len, body.len());
        assert_eq!(report.crc32, crc32(&body));
        let sizes: Vec<usize> = expected_pieces("readline", &body, 0)
            .iter()
            .map(Vec::len)
            .collect();
        assert!(report.sizes == sizes);
        wait_until(
            "the temporary file gone with its request",
            || unlinked_temp_files(worker),
            |files| files.is_empty(),
        );
    }

    /// Runs tine on `config` until it exits, within `WAIT` (past it, a crash loop is assumed
    /// and the test fails); its exit status and output.
    fn run_until_exit(config: &Config) -> (ExitStatus, String) {
        let dir = TempDir::new();
        let config_path = dir.write("tine.toml", &config.render());
        let output = run_bounded(
            Command::new(tine_bin())
                .arg("-c")
                .arg(&config_path)
                .current_dir(dir.path())
                .env_remove("NOTIFY_SOCKET"),
            None,
            WAIT,
        );
        (output.status, output.stdout + &output.stderr)
    }

    #[test]
    fn an_import_error_stops_tine_with_the_traceback_and_no_crash_loop() {
        for preload in [false, true] {
            let spec = Spec::new("broken_app:application")
                .workers(2)
                .preload(preload);
            let (status, output) = run_until_exit(&spec.tine_config());
            assert!(
                !status.success(),
                "preload = {preload}: {status}; output:\n{output}"
            );
            assert!(
                output.contains("Traceback (most recent call last)"),
                "preload = {preload}; output:\n{output}"
            );
            assert!(output.contains("broken_app.py"), "{output}");
            assert!(output.contains("fail_at_import"), "{output}");
            let marks = count_of(
                &output,
                "RuntimeError: broken_app refuses to import (tine import-error test)",
            );
            assert!(
                (1..=2).contains(&marks),
                "preload = {preload}: the import was tried {marks} times; output:\n{output}"
            );
        }
    }

    #[test]
    fn a_missing_module_or_callable_stops_tine_with_the_reason() {
        for (app, needle) in [
            ("no_such_module_x7:application", "no_such_module_x7"),
            ("validated_app:no_such_callable_x7", "no_such_callable_x7"),
        ] {
            let (status, output) = run_until_exit(&Spec::new(app).tine_config());
            assert!(!status.success(), "{app}: {status}; output:\n{output}");
            assert!(output.contains(needle), "{app}; output:\n{output}");
        }
    }

    #[test]
    fn a_slow_import_is_waited_for() {
        let spec = Spec::new("slow_import_app:application").preload(true);
        let state = TempDir::new();
        let server = TestServer::builder(spec.tine_config())
            .env("TINE_TEST_IMPORT_SECONDS", "3")
            .env("TINE_TEST_STATE", state.path())
            .start();
        // The import's last act is to leave this file: READY=1 came after it.
        assert!(
            state.path().join("imported").exists(),
            "READY=1 before the preloaded import finished; log:\n{}",
            server.log()
        );
        assert_eq!(server.get("/").text(), "ok");
        drop(server);

        let spec = Spec::new("slow_import_app:application").preload(false);
        let server = TestServer::builder(spec.tine_config())
            .env("TINE_TEST_IMPORT_SECONDS", "3")
            .start();
        let response = server.get("/");
        assert_eq!(response.status, 200, "log:\n{}", server.log());
        assert_eq!(response.text(), "ok");
    }
}

/// Flask and Django, under tine, and next to gunicorn.
mod frameworks {
    use super::*;
    use crate::reference::{KeepAlive, assert_same, step};

    fn flask() -> Spec {
        Spec::new("flask_app:app").with_venv()
    }

    fn django() -> Spec {
        Spec::new("djsite.wsgi:application")
            .with_venv()
            .app_env("DJANGO_SETTINGS_MODULE", "djsite.settings")
    }

    /// An exchange, with Content-Type, Location, Set-Cookie, Content-Length, X-Echo-Length.
    type Exchange = crate::reference::Exchange<(&'static str, Option<String>)>;

    impl Exchange {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| *n == name)
                .and_then(|(_, v)| v.as_deref())
        }
    }

    /// A client on one keep-alive connection (reconnecting when the server closes it) that
    /// keeps cookies.
    struct Client {
        connection: KeepAlive,
        cookies: Vec<(String, String)>,
    }

    impl Client {
        fn new(addr: SocketAddr) -> Client {
            Client {
                connection: KeepAlive::new(addr),
                cookies: Vec::new(),
            }
        }

        fn exchange(
            &mut self,
            step: &'static str,
            method: &str,
            target: &str,
            headers: &[(&str, &str)],
            body: Option<&[u8]>,
        ) -> Exchange {
            let mut raw = format!("{method} {target} HTTP/1.1\r\nHost: test\r\n");
            for (name, value) in headers {
                raw.push_str(&format!("{name}: {value}\r\n"));
            }
            if !self.cookies.is_empty() {
                let jar: Vec<String> = self
                    .cookies
                    .iter()
                    .map(|(n, v)| format!("{n}={v}"))
                    .collect();
                raw.push_str(&format!("Cookie: {}\r\n", jar.join("; ")));
            }
            let chunked = headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("Transfer-Encoding"));
            let mut raw = raw.into_bytes();
            match body {
                Some(body) if chunked => {
                    raw.extend_from_slice(b"\r\n");
                    raw.extend(encode_chunked(body, &[1000, 7, 30_000]));
                }
                Some(body) => {
                    raw.extend_from_slice(
                        format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes(),
                    );
                    raw.extend_from_slice(body);
                }
                None => raw.extend_from_slice(b"\r\n"),
            }
            let response = self.connection.send(step, &raw, method == "HEAD");
            for (name, value) in &response.headers {
                if name.eq_ignore_ascii_case("Set-Cookie")
                    && let Some((n, v)) = value.split(';').next().unwrap_or("").split_once('=')
                {
                    self.cookies.retain(|(old, _)| old != n.trim());
                    self.cookies
                        .push((n.trim().to_owned(), v.trim().to_owned()));
                }
            }
            let headers = [
                "Content-Type",
                "Location",
                "Set-Cookie",
                "Content-Length",
                "X-Echo-Length",
            ]
            .into_iter()
            .map(|name| {
                let values: Vec<&str> = response
                    .headers
                    .iter()
                    .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.as_str())
                    .collect();
                (name, (!values.is_empty()).then(|| values.join("\n")))
            })
            .collect();
            Exchange {
                step,
                status: response.status,
                body: response.body,
                headers,
            }
        }
    }

    fn upload_data() -> Vec<u8> {
        pattern(200_000)
    }

    fn multipart(boundary: &str, data: &[u8]) -> Vec<u8> {
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi there\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"up\"; filename=\"data.bin\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(data);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        body
    }

    /// The same session against either framework's app.
    fn session(addr: SocketAddr) -> Vec<Exchange> {
        let mut c = Client::new(addr);
        let form = b"a=1&b=two+words&b=again&c=%C3%A9";
        let boundary = "tine-boundary-93b1";
        let upload = multipart(boundary, &upload_data());
        let upload_type = format!("multipart/form-data; boundary={boundary}");
        let echo: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
        vec![
            c.exchange("json", "GET", "/", &[], None),
            c.exchange(
                "form",
                "POST",
                "/form",
                &[("Content-Type", "application/x-www-form-urlencoded")],
                Some(form),
            ),
            c.exchange(
                "set cookie",
                "GET",
                "/cookie/set?name=flavour&value=oat",
                &[],
                None,
            ),
            c.exchange("read cookie", "GET", "/cookie/read", &[], None),
            c.exchange("redirect", "GET", "/redirect", &[], None),
            c.exchange("redirect target", "GET", "/target", &[], None),
            c.exchange(
                "upload",
                "POST",
                "/upload",
                &[("Content-Type", &upload_type)],
                Some(&upload),
            ),
            c.exchange("not found", "GET", "/no/such/page", &[], None),
            c.exchange(
                "echo",
                "POST",
                "/echo",
                &[("Content-Type", "application/octet-stream")],
                Some(&echo),
            ),
            c.exchange(
                "chunked echo",
                "POST",
                "/echo",
                &[
                    ("Content-Type", "application/octet-stream"),
                    ("Transfer-Encoding", "chunked"),
                ],
                Some(&echo),
            ),
            c.exchange("stream", "GET", "/stream?n=40&label=tine", &[], None),
            c.exchange("file", "GET", "/file", &[], None),
            c.exchange("head", "HEAD", "/", &[], None),
            c.exchange("json again", "GET", "/", &[("Connection", "close")], None),
        ]
    }

    /// What both frameworks answer alike.
    fn check_common(exchanges: &[Exchange], server: &str) {
        let upload = upload_data();
        for e in exchanges {
            let expected = match e.step {
                "redirect" => 302,
                "not found" => 404,
                _ => 200,
            };
            assert_eq!(e.status, expected, "{server}: {}: {}", e.step, e.text());
        }
        assert_eq!(
            step(exchanges, "set cookie").header("Set-Cookie"),
            Some("flavour=oat; Path=/")
        );
        assert_eq!(step(exchanges, "set cookie").text(), "cookie set\n");
        assert_eq!(
            step(exchanges, "redirect").header("Location"),
            Some("/target")
        );
        assert_eq!(
            step(exchanges, "redirect target").text(),
            "target reached\n"
        );
        let uploaded = step(exchanges, "upload").text();
        for needle in [
            "\"filename\":\"data.bin\"".to_owned(),
            "\"size\":200000".to_owned(),
            format!("\"crc32\":\"{:08x}\"", crc32(&upload)),
            "\"note\":\"hi there\"".to_owned(),
        ] {
            assert!(
                uploaded.replace(": ", ":").contains(&needle),
                "{server}: {needle} in {uploaded}"
            );
        }
        let echo = step(exchanges, "echo");
        assert_eq!(echo.body.len(), 50_000);
        assert!(
            echo.body
                .iter()
                .enumerate()
                .all(|(i, &b)| b == (i % 251) as u8)
        );
        assert_eq!(echo.header("X-Echo-Length"), Some("50000"));
        let stream = step(exchanges, "stream");
        let lines: String = (0..40).map(|i| format!("line {i} of tine\n")).collect();
        assert_eq!(stream.text(), lines);
        assert_eq!(stream.header("Content-Length"), None, "{server}: streamed");
        let sample = std::fs::read(python_apps().join("sample.txt")).unwrap();
        let file = step(exchanges, "file");
        assert!(file.body == sample, "{server}: the file arrives whole");
        assert_eq!(
            file.header("Content-Length"),
            Some(sample.len().to_string().as_str())
        );
        let head = step(exchanges, "head");
        assert!(head.body.is_empty());
        assert_eq!(head.header("Content-Length"), Some("20"));
        assert_eq!(
            step(exchanges, "json again").body,
            step(exchanges, "json").body
        );
    }

    fn check_flask(exchanges: &[Exchange], server: &str) {
        check_common(exchanges, server);
        let json = step(exchanges, "json");
        assert_eq!(json.text(), "{\"message\":\"hello\"}\n");
        assert_eq!(json.header("Content-Type"), Some("application/json"));
        assert_eq!(
            step(exchanges, "form").text(),
            "{\"a\":[\"1\"],\"b\":[\"two words\",\"again\"],\"c\":[\"\\u00e9\"]}\n"
        );
        assert_eq!(
            step(exchanges, "read cookie").text(),
            "{\"flavour\":\"oat\"}\n"
        );
        // Werkzeug reads a body without a length when wsgi.input_terminated says it may.
        let chunked = step(exchanges, "chunked echo");
        assert_eq!(chunked.body, step(exchanges, "echo").body, "{server}");
        assert!(
            step(exchanges, "not found")
                .text()
                .contains("<h1>Not Found</h1>")
        );
        assert_eq!(
            step(exchanges, "file").header("Content-Type"),
            Some("text/plain; charset=utf-8")
        );
    }

    fn check_django(exchanges: &[Exchange], server: &str) {
        check_common(exchanges, server);
        let json = step(exchanges, "json");
        assert_eq!(json.text(), "{\"message\": \"hello\"}");
        assert_eq!(json.header("Content-Type"), Some("application/json"));
        assert_eq!(
            step(exchanges, "form").text(),
            "{\"a\": [\"1\"], \"b\": [\"two words\", \"again\"], \"c\": [\"\\u00e9\"]}"
        );
        assert_eq!(
            step(exchanges, "read cookie").text(),
            "{\"flavour\": \"oat\"}"
        );
        // Django reads CONTENT_LENGTH bytes, and a chunked request has none.
        assert_eq!(
            step(exchanges, "chunked echo").header("X-Echo-Length"),
            Some("0")
        );
        assert!(
            step(exchanges, "not found")
                .text()
                .contains("<h1>Not Found</h1>")
        );
        assert_eq!(
            step(exchanges, "file").header("Content-Type"),
            Some("text/plain")
        );
    }

    #[test]
    fn flask_serves_a_session() {
        let w = start(&flask());
        let exchanges = session(w.addr());
        check_flask(&exchanges, w.name());
    }

    #[test]
    fn django_serves_a_session() {
        let w = start(&django());
        let exchanges = session(w.addr());
        check_django(&exchanges, w.name());
    }

    /// Django's ASGI handler (`djsite.asgi:application`, told from WSGI by tine itself) serves
    /// the session Django's WSGI handler serves, answer for answer.
    #[test]
    fn django_under_asgi_answers_as_under_wsgi() {
        let wsgi = start_tine(&django());
        let reference = session(wsgi.addr());
        check_django(&reference, "tine (WSGI)");
        let mut asgi = django();
        asgi.app = "djsite.asgi:application".to_owned();
        asgi.handler = "python";
        let tine = start_tine(&asgi);
        let mut answers = session(tine.addr());
        assert!(tine.log().contains("as ASGI 3"), "{}", tine.log());
        // Django's WSGI handler reads CONTENT_LENGTH bytes, and a chunked request has none;
        // its ASGI handler reads the body to its end.
        let chunked = answers
            .iter()
            .position(|e| e.step == "chunked echo")
            .expect("a chunked echo");
        let chunked = answers.remove(chunked);
        assert_eq!(chunked.status, 200);
        assert_eq!(chunked.body, step(&answers, "echo").body);
        let reference: Vec<Exchange> = reference
            .into_iter()
            .filter(|e| e.step != "chunked echo")
            .collect();
        assert_same(&reference, "tine (WSGI)", &answers, &tine.log());
    }

    #[test]
    fn flask_answers_under_tine_as_under_gunicorn() {
        let reference = session(start_gunicorn(&flask()).addr());
        check_flask(&reference, "gunicorn");
        let tine = start_tine(&flask());
        let answers = session(tine.addr());
        assert_same(&reference, "gunicorn", &answers, &tine.log());
    }

    #[test]
    fn django_answers_under_tine_as_under_gunicorn() {
        let reference = session(start_gunicorn(&django()).addr());
        check_django(&reference, "gunicorn");
        let tine = start_tine(&django());
        let answers = session(tine.addr());
        assert_same(&reference, "gunicorn", &answers, &tine.log());
    }
}
