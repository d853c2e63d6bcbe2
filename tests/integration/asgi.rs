//! Python ASGI applications under tine (`[app] handler = "python"`, detected, or `"asgi"`): the
//! ASGI 3 contract as `tests/python/apps/asgi_app.py` sees it from the inside, tine's promises
//! about timeouts, lifespan and concurrency, and real FastAPI and Starlette applications,
//! compared with what uvicorn answers to the same session.
//!
//! The tests in `portable` and `frameworks` hold for uvicorn as much as for tine: with
//! `TINE_ASGI_REFERENCE=uvicorn` in the environment they run against uvicorn (from the test
//! venv, `--loop uvloop --http httptools`) instead, which is how their expectations were
//! checked to be uvicorn's behaviour:
//! `TINE_ASGI_REFERENCE=uvicorn cargo test --test integration -- asgi::portable asgi::frameworks`.
//! (uvicorn gets the same workers, root_path and forwarded_allow_ips; the `[server]` and
//! `[limits]` lines are tine's alone.) The few assertions uvicorn does not meet are tine's
//! promises beyond it, checked only against tine (`Asgi::is_tine`). The tests in `tine_only`
//! always run tine.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::reference::{Backend, Reference, ServerSpec, UnderTest, WithServer, head_then_rest};
use crate::util::{
    Config, Response, TempDir, TestServer, WAIT, encode_chunked, python_apps, read_response_any,
    read_response_head, read_until_close, run_bounded, test_venv, tine_bin, toml_string,
    wait_until,
};

/// The environment variable that points the portable tests at uvicorn.
const REFERENCE: &str = "TINE_ASGI_REFERENCE";

fn reference_is_uvicorn() -> bool {
    std::env::var(REFERENCE).is_ok_and(|v| v == "uvicorn")
}

/// One ASGI application to run, and how.
#[derive(Clone)]
struct Spec {
    /// `module:callable` under tests/python/apps.
    app: String,
    /// `[server]` (besides bind) and `[limits]`.
    common: ServerSpec,
    /// More `[app]` lines (loop, lifespan, max_concurrency, handler).
    app_lines: String,
    /// `[app] handler`.
    handler: &'static str,
    /// `[app] root_path`.
    root_path: String,
    /// `[websocket] max_message` (uvicorn's `--ws-max-size`), when not the default.
    max_message: Option<usize>,
}

impl Spec {
    fn new(app: &str) -> Spec {
        Spec {
            app: app.to_owned(),
            common: ServerSpec::default(),
            app_lines: String::new(),
            handler: "python",
            root_path: String::new(),
            max_message: None,
        }
    }

    /// asgi_app's routes.
    fn raw() -> Spec {
        Spec::new("asgi_app:app")
    }

    fn app_lines(mut self, lines: &str) -> Spec {
        self.app_lines.push_str(lines);
        self.app_lines.push('\n');
        self
    }

    fn max_message(mut self, bytes: usize) -> Spec {
        self.max_message = Some(bytes);
        self
    }

    fn handler(mut self, handler: &'static str) -> Spec {
        self.handler = handler;
        self
    }

    /// tine's config for this spec (the builder adds the listener). The test venv is the
    /// application's: it has uvloop, as uvicorn's has.
    fn tine_config(&self) -> Config {
        let mut tables = format!(
            "[app]\nhandler = {}\napp = {}\npythonpath = [{}]\nvirtualenv = {}\n{}",
            toml_string(self.handler),
            toml_string(&self.app),
            toml_string(&python_apps().to_string_lossy()),
            toml_string(&test_venv().to_string_lossy()),
            self.app_lines
        );
        if !self.root_path.is_empty() {
            tables.push_str(&format!("root_path = {}\n", toml_string(&self.root_path)));
        }
        if let Some(bytes) = self.max_message {
            tables.push_str(&format!("[websocket]\nmax_message = {bytes}\n"));
        }
        self.common.tine_config("", &tables)
    }
}

impl WithServer for Spec {
    fn server_spec(&mut self) -> &mut ServerSpec {
        &mut self.common
    }
}

/// An ASGI server under test: tine, or uvicorn as the reference.
type Asgi = UnderTest;

/// How uvicorn's log says it is up: listening, and a worker started its application
/// (connections wait in the backlog while other workers start theirs).
const UVICORN: Reference = Reference {
    name: "uvicorn",
    listening: "Uvicorn running on http://",
    ready: "startup complete",
};

/// A state directory for the application, with `files` written in it first.
fn state_with(files: &[(&str, &str)]) -> TempDir {
    let state = TempDir::new();
    for (name, text) in files {
        state.write(name, text);
    }
    state
}

/// Runs `spec` under tine, or under uvicorn when `TINE_ASGI_REFERENCE=uvicorn`.
fn start(spec: &Spec) -> Asgi {
    if reference_is_uvicorn() {
        start_uvicorn(spec)
    } else {
        start_tine(spec)
    }
}

/// Runs `spec` under tine.
fn start_tine(spec: &Spec) -> Asgi {
    start_tine_with(spec, state_with(&[]))
}

/// Runs `spec` under tine with `state` as the application's state directory.
fn start_tine_with(spec: &Spec, state: TempDir) -> Asgi {
    UnderTest::start_tine(spec.tine_config(), state)
}

/// Runs `spec` under uvicorn from the test venv, with the settings tine's config gives it: its
/// workers, the apps directory on sys.path, uvloop and httptools, root_path and
/// forwarded_allow_ips; on a port the kernel picks, which its log names.
fn start_uvicorn(spec: &Spec) -> Asgi {
    let mut command = Command::new(test_venv().join("bin/uvicorn"));
    command
        .arg("--app-dir")
        .arg(python_apps())
        .args(["--host", "127.0.0.1", "--port", "0"])
        .args(["--workers", &spec.common.workers.to_string()])
        .args(["--loop", "uvloop", "--http", "httptools"])
        .args(["--timeout-graceful-shutdown", "2"]);
    if !spec.root_path.is_empty() {
        command.args(["--root-path", &spec.root_path]);
    }
    if let Some(bytes) = spec.max_message {
        command.args(["--ws-max-size", &bytes.to_string()]);
    }
    if let Some(ips) = &spec.common.forwarded_allow_ips {
        command.args(["--forwarded-allow-ips", &ips.join(",")]);
    }
    command.arg(&spec.app);
    UnderTest::start_reference(&UVICORN, command)
}

/// The ASGI tests' own helpers.
impl Asgi {
    /// `GET target`, which must answer 200; its body as text.
    fn get_text(&self, target: &str) -> String {
        self.get_status(target, 200).text()
    }

    /// The application's state file `name`, if it wrote it.
    fn recorded(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.state.path().join(name)).ok()
    }

    /// Waits for the application's state file `name`; returns it.
    fn wait_recorded(&self, name: &str) -> String {
        wait_until(
            &format!("{}: the state file {name}", self.name()),
            || self.recorded(name),
            Option::is_some,
        )
        .unwrap_or_default()
    }

    /// The pid of the worker that answers.
    fn pid(&self) -> u32 {
        let text = self.get_text("/pid");
        text.trim()
            .strip_prefix("pid ")
            .and_then(|pid| pid.parse().ok())
            .unwrap_or_else(|| panic!("no pid in {text:?}"))
    }
}

// --- small helpers ----------------------------------------------------------------------------

/// The bytes `i % 251` for positions `from..from + len` of a body: asgi_app's /flood pattern,
/// and the bodies the tests send.
fn pattern(from: usize, len: usize) -> Vec<u8> {
    (from..from + len).map(|i| (i % 251) as u8).collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// asgi_app's /stream lines.
fn stream_lines(n: usize, label: &str) -> String {
    (0..n).map(|i| format!("line {i} of {label}\n")).collect()
}

/// The line of asgi_app.py that holds `mark`, counted from 1.
fn app_line(mark: &str) -> usize {
    let source = std::fs::read_to_string(python_apps().join("asgi_app.py")).unwrap();
    source
        .lines()
        .position(|l| l.contains(mark))
        .unwrap_or_else(|| panic!("no {mark:?} in asgi_app.py"))
        + 1
}

/// A POST of `body` to `target` with a Content-Length, asking for `Connection: close`.
fn post(target: &str, body: &[u8]) -> Vec<u8> {
    let mut raw = format!(
        "POST {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    raw
}

/// Opens `n` connections, sends `request` on each, then reads every answer, in order.
fn at_once(w: &Asgi, n: usize, request: &str) -> Vec<Response> {
    let mut streams: Vec<TcpStream> = (0..n).map(|_| w.connect()).collect();
    for stream in &mut streams {
        stream.write_all(request.as_bytes()).unwrap();
    }
    streams
        .iter_mut()
        .map(|stream| {
            read_response_any(stream, false)
                .unwrap_or_else(|e| panic!("{}: {e}; log:\n{}", w.name(), w.log()))
        })
        .collect()
}

/// Asks /flood for `chunks` chunks of 64 KiB on a connection whose receive buffer is small,
/// and reads nothing yet: a client that does not read. Returns once the first chunk is sent.
fn flood(w: &Asgi, chunks: usize, tag: &str) -> TcpStream {
    let mut stream = w.connect();
    nix::sys::socket::setsockopt(&stream, nix::sys::socket::sockopt::RcvBuf, &65536).unwrap();
    stream
        .write_all(
            format!("GET /flood?n={chunks}&tag={tag} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes(),
        )
        .unwrap();
    w.wait_recorded(&format!("sent-{tag}"));
    stream
}

/// Reads the whole answer of a [`flood`] and checks every byte of it.
fn read_flood(w: &Asgi, mut stream: TcpStream, chunks: usize) {
    let response = read_response_any(&mut stream, false)
        .unwrap_or_else(|e| panic!("{}: {e}; log:\n{}", w.name(), w.log()));
    assert_eq!(response.status, 200);
    assert_eq!(response.body.len(), chunks * FLOOD_CHUNK, "{}", w.name());
    assert!(
        response.body == pattern(0, chunks * FLOOD_CHUNK),
        "{}: bytes differ",
        w.name()
    );
}

/// The size of /flood's chunks.
const FLOOD_CHUNK: usize = 65536;

// --- /scope ---------------------------------------------------------------------------------

/// asgi_app's /scope: key → (type name, repr).
struct Scope(Vec<(String, String, String)>);

impl Scope {
    fn parse(response: &Response) -> Scope {
        assert_eq!(response.status, 200, "{}", response.text());
        Scope(
            response
                .text()
                .lines()
                .map(|line| {
                    let mut fields = line.splitn(3, '\t');
                    let mut next = || fields.next().unwrap_or("").to_owned();
                    (next(), next(), next())
                })
                .collect(),
        )
    }

    /// The repr of `key`, which must be of type `kind`.
    fn repr(&self, key: &str, kind: &str) -> String {
        match self.0.iter().find(|(k, _, _)| k == key) {
            Some((_, k, repr)) if k == kind => repr.clone(),
            other => panic!(
                "scope[{key:?}] is {other:?}, not a {kind}; scope: {:?}",
                self.0
            ),
        }
    }

    fn has(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _, _)| k == key)
    }

    /// The `header.N` lines: the headers, in order, as reprs of `(name, value)` tuples.
    fn headers(&self) -> Vec<String> {
        (0..)
            .map_while(|i| {
                self.0
                    .iter()
                    .find(|(k, _, _)| *k == format!("header.{i}"))
                    .map(|(_, kind, repr)| {
                        assert_eq!(kind, "tuple", "header {i} is a {kind}");
                        repr.clone()
                    })
            })
            .collect()
    }
}

/// The ASGI contract, from asgi_app's side and on the wire. Each test holds for uvicorn too
/// (see the module's documentation).
mod portable {
    use super::*;

    #[test]
    fn scope_has_every_key_typed_as_the_spec_says() {
        let w = start(&Spec::raw());
        let mut stream = w.connect();
        let client_port = stream.local_addr().unwrap().port();
        stream
            .write_all(
                b"GET /scope/caf%C3%A9?x=%20y&x=2 HTTP/1.1\r\nHost: test\r\nX-Dup: one\r\n\
                  X-Mixed-Case: Value With Case\r\nx-dup: two\r\nConnection: close\r\n\r\n",
            )
            .unwrap();
        let scope = Scope::parse(&read_response_any(&mut stream, false).unwrap());
        assert_eq!(scope.repr("type", "str"), "'http'");
        assert!(scope.repr("asgi", "dict").contains("'version': '3.0'"));
        assert_eq!(scope.repr("asgi.version", "str"), "'3.0'");
        let spec_version = scope.repr("asgi.spec_version", "str");
        assert!(spec_version.starts_with("'2."), "{spec_version}");
        assert_eq!(scope.repr("http_version", "str"), "'1.1'");
        assert_eq!(scope.repr("method", "str"), "'GET'");
        assert_eq!(scope.repr("scheme", "str"), "'http'");
        assert_eq!(
            scope.repr("path", "str"),
            "'/scope/café'",
            "percent-decoded UTF-8"
        );
        assert_eq!(scope.repr("raw_path", "bytes"), "b'/scope/caf%C3%A9'");
        assert_eq!(scope.repr("query_string", "bytes"), "b'x=%20y&x=2'");
        assert_eq!(scope.repr("root_path", "str"), "''");
        assert!(scope.has("headers"));
        assert_eq!(
            scope.headers(),
            [
                "(b'host', b'test')",
                "(b'x-dup', b'one')",
                "(b'x-mixed-case', b'Value With Case')",
                "(b'x-dup', b'two')",
                "(b'connection', b'close')",
            ],
            "{}: lower-cased names, values as sent, order and repeats kept",
            w.name()
        );
        assert_eq!(
            scope.repr("client", "tuple"),
            format!("('127.0.0.1', {client_port})")
        );
        assert_eq!(
            scope.repr("server", "tuple"),
            format!("('127.0.0.1', {})", w.addr().port())
        );
        assert!(
            scope.repr("state", "dict").contains("'hello from startup'"),
            "the lifespan's state"
        );
    }

    #[test]
    fn path_decodes_every_escape_and_raw_path_keeps_them() {
        let w = start(&Spec::raw());
        let scope = Scope::parse(&w.get("/scope/a%2Fb%20c%25d"));
        assert_eq!(
            scope.repr("path", "str"),
            "'/scope/a/b c%d'",
            "{}",
            w.name()
        );
        assert_eq!(scope.repr("raw_path", "bytes"), "b'/scope/a%2Fb%20c%25d'");
    }

    #[test]
    fn header_values_are_the_bytes_sent() {
        let w = start(&Spec::raw());
        let mut raw = b"GET /scope HTTP/1.1\r\nHost: test\r\nX-Latin: caf".to_vec();
        raw.extend_from_slice(b"\xe9 \t tab\r\nConnection: close\r\n\r\n");
        let scope = Scope::parse(&w.send(&raw));
        assert!(
            scope
                .headers()
                .contains(&"(b'x-latin', b'caf\\xe9 \\t tab')".to_owned()),
            "{}: {:?}",
            w.name(),
            scope.headers()
        );
    }

    #[test]
    fn http_version_is_1_0_for_an_http_1_0_request() {
        let w = start(&Spec::raw());
        let scope = Scope::parse(&w.send(b"GET /scope HTTP/1.0\r\nHost: test\r\n\r\n"));
        assert_eq!(scope.repr("http_version", "str"), "'1.0'");
    }

    #[test]
    fn scheme_and_client_come_from_a_trusted_proxy_only() {
        let forwarded = b"GET /scope HTTP/1.1\r\nHost: test\r\nX-Forwarded-Proto: https\r\n\
                          X-Forwarded-For: 203.0.113.7\r\nConnection: close\r\n\r\n";
        let w = start(&Spec::raw());
        let scope = Scope::parse(&w.send(forwarded));
        assert_eq!(
            scope.repr("scheme", "str"),
            "'https'",
            "127.0.0.1 is trusted by default"
        );
        assert_eq!(scope.repr("client", "tuple"), "('203.0.113.7', 0)");
        drop(w);

        let mut spec = Spec::raw();
        spec.common.forwarded_allow_ips = Some(vec!["192.0.2.7".to_owned()]);
        let untrusting = start(&spec);
        let scope = Scope::parse(&untrusting.send(forwarded));
        assert_eq!(scope.repr("scheme", "str"), "'http'");
        let client = scope.repr("client", "tuple");
        assert!(
            client.starts_with("('127.0.0.1', ") && !client.ends_with(" 0)"),
            "the peer, not the header: {client}"
        );
    }

    #[test]
    fn root_path_starts_path_and_raw_path() {
        let mut spec = Spec::raw();
        spec.root_path = "/api".to_owned();
        let w = start(&spec);
        let scope = Scope::parse(&w.get("/scope/x%20y?q=1"));
        assert_eq!(scope.repr("root_path", "str"), "'/api'");
        assert_eq!(scope.repr("path", "str"), "'/api/scope/x y'");
        assert_eq!(scope.repr("raw_path", "bytes"), "b'/api/scope/x%20y'");
        assert_eq!(scope.repr("query_string", "bytes"), "b'q=1'");
        // asgi_app strips the root path to route: /pid is found under it.
        assert!(w.get_text("/pid").starts_with("pid "));
    }

    #[test]
    fn each_request_gets_its_own_copy_of_the_lifespan_state() {
        let w = start(&Spec::raw());
        for _ in 0..3 {
            let state = w.get_text("/state");
            assert!(
                state.contains("greeting 'hello from startup'"),
                "{}: {state}",
                w.name()
            );
            assert!(
                !state.contains("mutated"),
                "{}: a request's change reached the next request: {state}",
                w.name()
            );
        }
    }

    #[test]
    fn a_content_length_body_is_echoed_byte_for_byte() {
        let w = start(&Spec::raw());
        let body = pattern(7, 100_000);
        let response = w.send(&post("/echo", &body));
        assert_eq!(response.status, 200, "{}", w.log());
        assert!(response.body == body, "{}: the echo differs", w.name());
        assert_eq!(response.header("X-Length"), Some("100000"));
    }

    #[test]
    fn a_chunked_body_is_echoed_byte_for_byte() {
        let w = start(&Spec::raw());
        let body = pattern(3, 70_000);
        let mut raw = b"POST /echo HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
                        Transfer-Encoding: chunked\r\n\r\n"
            .to_vec();
        raw.extend(encode_chunked(&body, &[1000, 7, 30_000]));
        let response = w.send(&raw);
        assert_eq!(response.status, 200, "{}", w.log());
        assert!(response.body == body, "{}: the echo differs", w.name());
    }

    #[test]
    fn an_empty_body_is_one_event_with_no_bytes() {
        let w = start(&Spec::raw());
        for raw in [
            post("/echo", b""),
            b"GET /echo HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".to_vec(),
        ] {
            let response = w.send(&raw);
            assert_eq!(response.status, 200, "{}", w.log());
            assert!(response.body.is_empty());
            assert_eq!(response.header("X-Events"), Some("1"), "{}", w.name());
        }
    }

    #[test]
    fn a_chunked_body_reaches_the_app_piece_by_piece() {
        // Each piece is sent only once the application has had the ones before it.
        let w = start(&Spec::raw());
        let mut stream = w.open(
            b"POST /pieces?tag=pp HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
                  Transfer-Encoding: chunked\r\n\r\n",
        );
        let body = pattern(1, 5 * 3000);
        for (i, piece) in body.chunks(3000).enumerate() {
            let mut chunk = format!("{:x}\r\n", piece.len()).into_bytes();
            chunk.extend_from_slice(piece);
            chunk.extend_from_slice(b"\r\n");
            stream.write_all(&chunk).unwrap();
            let want = (i + 1) * 3000;
            wait_until(
                &format!("{}: piece {i} received by the application", w.name()),
                || w.recorded("got-pp").and_then(|n| n.parse::<usize>().ok()),
                |got| *got == Some(want),
            );
        }
        stream.write_all(b"0\r\n\r\n").unwrap();
        let response = read_response_any(&mut stream, false).unwrap();
        assert!(response.body == body, "{}: the echo differs", w.name());
        let events: usize = response.header("X-Events").unwrap().parse().unwrap();
        assert!(events >= 5, "{}: {events} events", w.name());
    }

    #[test]
    fn a_client_leaving_mid_body_gives_the_app_http_disconnect() {
        let w = start(&Spec::raw());
        let mut stream = w.connect();
        let mut raw =
            b"POST /pieces?tag=cut HTTP/1.1\r\nHost: test\r\nContent-Length: 100000\r\n\r\n"
                .to_vec();
        raw.extend(pattern(0, 1000));
        stream.write_all(&raw).unwrap();
        wait_until(
            &format!("{}: the first bytes received by the application", w.name()),
            || w.recorded("got-cut"),
            Option::is_some,
        );
        drop(stream);
        let outcome = w.wait_recorded("pieces-cut");
        assert!(
            outcome.starts_with("disconnect after "),
            "{}: {outcome}",
            w.name()
        );
        assert_eq!(w.get_text("/"), "asgi_app\n");
    }

    #[test]
    fn concurrent_uploads_are_each_echoed_intact() {
        let w = start(&Spec::raw().limits("body_buffer = \"64KiB\""));
        std::thread::scope(|scope| {
            for i in 0..16usize {
                let w = &w;
                scope.spawn(move || {
                    let body = pattern(i * 17, (1 << 20) + i);
                    let raw = if i % 2 == 0 {
                        post("/echo", &body)
                    } else {
                        let mut raw = b"POST /echo HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
                                        Transfer-Encoding: chunked\r\n\r\n"
                            .to_vec();
                        raw.extend(encode_chunked(&body, &[8000, 65536, 3]));
                        raw
                    };
                    let response = w.send(&raw);
                    assert_eq!(response.status, 200, "upload {i}");
                    assert!(
                        response.body == body,
                        "{}: upload {i} came back changed",
                        w.name()
                    );
                });
            }
        });
    }

    #[test]
    fn a_body_larger_than_body_buffer_is_echoed_whole() {
        let w = start(&Spec::raw().limits("body_buffer = \"64KiB\""));
        let body = pattern(11, 3 << 20);
        let response = w.send(&post("/echo", &body));
        assert_eq!(response.status, 200, "{}", w.log());
        assert_eq!(response.body.len(), body.len());
        assert!(response.body == body, "{}: the echo differs", w.name());
    }

    #[test]
    fn expect_100_continue_gets_100_then_the_answer() {
        let w = start(&Spec::raw());
        let mut stream = w.open(
            b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\
                  Expect: 100-continue\r\nConnection: close\r\n\r\n",
        );
        let interim = read_response_head(&mut stream).unwrap();
        assert_eq!(interim.status, 100, "{}", w.name());
        stream.write_all(b"hello").unwrap();
        let response = read_response_any(&mut stream, false).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.text(), "hello");
    }

    #[test]
    fn expect_100_continue_is_not_sent_when_the_app_never_reads_the_body() {
        // 100 Continue comes with the application's first receive(): an application that
        // answers without reading spares the client its body.
        let w = start(&Spec::raw());
        let mut stream = w.open(
            b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\
                  Expect: 100-continue\r\nConnection: close\r\n\r\n",
        );
        let response = read_response_any(&mut stream, false).unwrap();
        assert_eq!(
            response.status,
            200,
            "{}: the answer, with no 100 Continue before it",
            w.name()
        );
        assert_eq!(response.text(), "asgi_app\n");
    }

    #[test]
    fn a_request_body_reaches_the_app_as_it_arrives() {
        // The client sends 1000 bytes of a 1 MB body and waits: the application's first
        // http.request event must come with those, and more_body.
        let w = start(&Spec::raw());
        let mut stream = w.connect();
        let mut raw = b"POST /first-event HTTP/1.1\r\nHost: test\r\nContent-Length: 1000000\r\n\
                        Connection: close\r\n\r\n"
            .to_vec();
        raw.extend(pattern(0, 1000));
        stream.write_all(&raw).unwrap();
        let response = read_response_any(&mut stream, false)
            .unwrap_or_else(|e| panic!("{}: {e}; log:\n{}", w.name(), w.log()));
        assert_eq!(response.status, 200);
        let text = response.text();
        let len: usize = text
            .strip_prefix("len ")
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{text:?}"));
        assert!((1..=1000).contains(&len), "{}: {text}", w.name());
        assert!(text.ends_with(" more True\n"), "{}: {text}", w.name());
    }

    #[test]
    fn a_body_the_app_does_not_read_does_not_spill_into_the_next_request() {
        let w = start(&Spec::raw());
        let body = pattern(0, 100_000);
        let get = b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
        let framed: [(&str, Vec<u8>); 2] = [
            (
                "Content-Length: 100000",
                [body.as_slice(), get.as_slice()].concat(),
            ),
            (
                "Transfer-Encoding: chunked",
                [
                    encode_chunked(&body, &[4096, 10]).as_slice(),
                    get.as_slice(),
                ]
                .concat(),
            ),
        ];
        for (framing, rest) in framed {
            let mut stream = w.connect();
            let mut raw =
                format!("POST / HTTP/1.1\r\nHost: test\r\n{framing}\r\n\r\n").into_bytes();
            raw.extend(rest);
            stream.write_all(&raw).unwrap();
            let first = read_response_any(&mut stream, false).unwrap();
            assert_eq!(first.text(), "asgi_app\n", "{}: {framing}", w.name());
            // The server may close instead of reading the body through; if it answers the next
            // request, it answers that request, never the body's bytes.
            let after = read_until_close(&mut stream).unwrap_or_else(|partial| {
                panic!(
                    "{}: {framing}: neither answered nor closed; got {:?}",
                    w.name(),
                    String::from_utf8_lossy(&partial)
                )
            });
            assert!(
                after.is_empty()
                    || (after.starts_with(b"HTTP/1.1 200 ") && after.ends_with(b"asgi_app\n")),
                "{}: {framing}: after the first response: {:?}",
                w.name(),
                String::from_utf8_lossy(&after)
            );
        }
    }

    #[test]
    fn a_streamed_response_is_chunked_for_http_1_1() {
        let w = start(&Spec::raw());
        let response = w.get("/stream?n=20&label=chunked");
        assert_eq!(response.status, 200);
        assert_eq!(response.header("Transfer-Encoding"), Some("chunked"));
        assert_eq!(response.header("Content-Length"), None);
        assert_eq!(response.text(), stream_lines(20, "chunked"));
    }

    #[test]
    fn a_streamed_response_is_close_delimited_for_http_1_0() {
        let w = start(&Spec::raw());
        let (head, rest) = head_then_rest(&w, b"GET /stream?n=20&label=old HTTP/1.0\r\n\r\n");
        assert_eq!(head.status, 200);
        if w.is_tine() {
            // uvicorn answers an HTTP/1.0 request chunked, a coding HTTP/1.0 does not have.
            assert_eq!(head.header("Transfer-Encoding"), None);
            assert_eq!(String::from_utf8_lossy(&rest), stream_lines(20, "old"));
            // Asked to keep the connection, the server must still close it to end the body.
            let (head, rest) = head_then_rest(
                &w,
                b"GET /stream?n=3&label=ka HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            );
            assert_eq!(head.header("Transfer-Encoding"), None);
            assert_eq!(String::from_utf8_lossy(&rest), stream_lines(3, "ka"));
        }
    }

    #[test]
    fn a_streamed_response_with_its_content_length_is_sent_as_is() {
        let w = start(&Spec::raw());
        let lines = stream_lines(10, "sized");
        let response = w.get(&format!("/stream?n=10&label=sized&cl={}", lines.len()));
        assert_eq!(response.status, 200);
        assert_eq!(
            response.header("Content-Length"),
            Some(lines.len().to_string().as_str())
        );
        assert_eq!(response.header("Transfer-Encoding"), None);
        assert_eq!(response.text(), lines);
    }

    #[test]
    fn a_body_shorter_than_its_content_length_closes_the_connection() {
        // Keep-alive outlasts WAIT: only a close ends the wait for the missing bytes.
        let w = start(&Spec::raw().server("keepalive = \"60s\""));
        // In pieces with more_body, and as one last body.
        for whole in [0, 1] {
            let (head, rest) = head_then_rest(
                &w,
                format!("GET /fixed?cl=10&body=12345&whole={whole} HTTP/1.1\r\nHost: test\r\n\r\n")
                    .as_bytes(),
            );
            assert_eq!(head.status, 200);
            assert_eq!(head.header("Content-Length"), Some("10"));
            assert_eq!(
                rest,
                b"12345",
                "{}: whole={whole}: a short body, then the close",
                w.name()
            );
        }
    }

    #[test]
    fn a_body_longer_than_its_content_length_puts_no_more_on_the_wire() {
        let w = start(&Spec::raw());
        for whole in [0, 1] {
            let (head, rest) = head_then_rest(
                &w,
                format!(
                    "GET /fixed?cl=5&body=1234567890&whole={whole} HTTP/1.1\r\nHost: test\r\n\
                     Connection: close\r\n\r\n"
                )
                .as_bytes(),
            );
            assert_eq!(head.status, 200);
            assert_eq!(head.header("Content-Length"), Some("5"));
            assert!(
                b"12345".starts_with(&rest),
                "{}: whole={whole}: never past the length: {:?}",
                w.name(),
                String::from_utf8_lossy(&rest)
            );
            if w.is_tine() {
                // tine cuts the body at the length (uvicorn fails the send that passes it,
                // before writing any of it).
                assert_eq!(rest, b"12345", "whole={whole}");
            }
        }
        assert_eq!(w.get_text("/"), "asgi_app\n", "and it serves on");
    }

    #[test]
    fn response_headers_keep_their_order_and_repeats() {
        let w = start(&Spec::raw());
        let response = w.get("/headers");
        assert_eq!(response.text(), "ok\n");
        let ours: Vec<(String, &str)> = response
            .headers
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.as_str()))
            .filter(|(n, _)| n.starts_with("x-") || n == "set-cookie")
            .collect();
        assert_eq!(
            ours,
            [
                ("x-upper".to_owned(), "One"),
                ("set-cookie".to_owned(), "a=1; Path=/"),
                ("x-lower".to_owned(), "two"),
                ("set-cookie".to_owned(), "b=2; Path=/"),
            ],
            "{}",
            w.name()
        );
    }

    #[test]
    fn a_body_the_app_does_not_receive_yet_is_not_read_from_the_client() {
        // Flow control: while the application holds off receive(), the client's writes stall
        // well short of the body, then finish once it reads on.
        let w = start(&Spec::raw().limits("body = \"200MiB\""));
        let size = 64 << 20;
        let mut stream = w.open(
            format!(
                "POST /hold?tag=fc HTTP/1.1\r\nHost: test\r\nContent-Length: {size}\r\n\
                     Connection: close\r\n\r\n"
            )
            .as_bytes(),
        );
        let body = pattern(0, size);
        // Writes that find no room for 1 s stop; what went out by then is what was taken.
        stream
            .set_write_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        let mut sent = 0;
        while sent < size {
            match stream.write(&body[sent..(sent + 65536).min(size)]) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        assert!(
            sent < size / 4,
            "{}: {sent} of {size} bytes taken while the application received nothing",
            w.name()
        );
        w.wait_recorded("held-fc");
        std::fs::write(w.state.path().join("release-fc"), "go").unwrap();
        stream.set_write_timeout(Some(WAIT)).unwrap();
        stream.write_all(&body[sent..]).unwrap();
        let response = read_response_any(&mut stream, false)
            .unwrap_or_else(|e| panic!("{}: {e}; log:\n{}", w.name(), w.log()));
        let sum: u64 = body.iter().map(|&b| u64::from(b)).sum();
        assert_eq!(response.text(), format!("len {size} sum {sum}\n"));
    }

    #[test]
    fn head_to_a_streaming_route_gets_the_head_only_and_the_app_no_error() {
        let w = start(&Spec::raw());
        let mut stream = w.open(
            b"HEAD /stream?n=5&tag=head HTTP/1.1\r\nHost: test\r\n\r\n\
                  GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
        );
        let head = read_response_head(&mut stream).unwrap();
        assert_eq!(head.status, 200);
        // No body bytes: what follows the head is the next response.
        let next = read_response_any(&mut stream, false).unwrap();
        assert_eq!(next.status, 200);
        assert_eq!(next.text(), "asgi_app\n", "{}", w.name());
        assert_eq!(w.wait_recorded("stream-head"), "done");
    }

    #[test]
    fn keep_alive_serves_the_next_request_after_a_streamed_response() {
        let w = start(&Spec::raw());
        let mut stream = w.connect();
        for i in 0..3 {
            stream
                .write_all(
                    format!("GET /stream?n=4&label=ka{i} HTTP/1.1\r\nHost: test\r\n\r\n")
                        .as_bytes(),
                )
                .unwrap();
            let response = read_response_any(&mut stream, false)
                .unwrap_or_else(|e| panic!("{}: request {i}: {e}", w.name()));
            assert_eq!(response.text(), stream_lines(4, &format!("ka{i}")));
        }
    }

    #[test]
    fn a_client_that_does_not_read_pauses_the_app() {
        let w = start(&Spec::raw());
        let chunks = 400;
        let stream = flood(&w, chunks, "bp");
        let sent = || -> usize {
            w.recorded("sent-bp")
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0)
        };
        // The client reads nothing for a while: the sends must stop well short of the end.
        // (A pause lets them run as far as they can; it is not a timing assertion.)
        std::thread::sleep(Duration::from_millis(1500));
        let paused = sent();
        assert!(
            paused < chunks / 2,
            "{}: {paused} of {chunks} chunks of {FLOOD_CHUNK} bytes sent to a client that reads \
             nothing",
            w.name()
        );
        read_flood(&w, stream, chunks);
        assert_eq!(sent(), chunks);
    }

    #[test]
    fn a_client_leaving_while_the_app_waits_on_backpressure_frees_the_app() {
        let w = start(&Spec::raw());
        let stream = flood(&w, 400, "left");
        // Let the sends run into the full connection, then leave without reading.
        std::thread::sleep(Duration::from_millis(500));
        drop(stream);
        let outcome = w.wait_recorded("flood-left");
        if w.is_tine() {
            // uvicorn's send returns without a word once the client left.
            assert_eq!(outcome, "ClientDisconnected oserror=True");
        }
        assert_eq!(w.get_text("/"), "asgi_app\n");
    }

    #[test]
    fn work_after_the_response_does_not_hold_up_the_connection() {
        let w = start(&Spec::raw());
        let mut stream = w.open(
            b"GET /after?ms=500&tag=bg HTTP/1.1\r\nHost: test\r\n\r\n\
                  GET /stream?n=3&label=next HTTP/1.1\r\nHost: test\r\n\r\n",
        );
        let mut next = || read_response_any(&mut stream, false).unwrap().text();
        assert_eq!(next(), "answered\n");
        assert_eq!(next(), stream_lines(3, "next"), "{}", w.name());
        assert_eq!(w.wait_recorded("after-bg"), "done");
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            .unwrap();
        let last = read_response_any(&mut stream, false).unwrap();
        assert_eq!(last.text(), "asgi_app\n");
    }

    #[test]
    fn a_long_poll_gets_http_disconnect_when_the_client_closes() {
        let w = start(&Spec::raw());
        let stream = w.open(b"GET /longpoll?tag=lp HTTP/1.1\r\nHost: test\r\n\r\n");
        w.wait_recorded("waiting-lp");
        drop(stream);
        assert_eq!(w.wait_recorded("event-lp"), "http.disconnect");
        assert_eq!(w.get_text("/"), "asgi_app\n");
    }

    #[test]
    fn an_exception_before_the_response_starts_is_a_500_logged_once() {
        let w = start(&Spec::raw());
        let response = w.get("/raise-before");
        assert_eq!(response.status, 500);
        let mark = "RuntimeError: deliberate failure before http.response.start";
        w.wait_log(mark);
        // "Not twice": nothing says a second line will not come, so a while must pass.
        std::thread::sleep(Duration::from_millis(300));
        let log = w.log();
        assert_eq!(log.matches(mark).count(), 1, "{}: log:\n{log}", w.name());
        assert!(log.contains("Traceback (most recent call last)"), "{log}");
        assert_eq!(w.get_text("/"), "asgi_app\n");
    }

    #[test]
    fn an_exception_after_the_first_chunk_closes_the_connection_unfinished() {
        let w = start(&Spec::raw());
        let (head, rest) = head_then_rest(&w, b"GET /raise-after HTTP/1.1\r\nHost: test\r\n\r\n");
        assert_eq!(head.status, 200);
        assert_eq!(head.header("Transfer-Encoding"), Some("chunked"));
        assert!(contains(&rest, b"first chunk\n"), "{rest:?}");
        assert!(
            !rest.ends_with(b"0\r\n\r\n"),
            "{}: a cut stream must not look complete: {:?}",
            w.name(),
            String::from_utf8_lossy(&rest)
        );
        let mark = "RuntimeError: deliberate failure after the first body chunk";
        w.wait_log(mark);
        std::thread::sleep(Duration::from_millis(300));
        let log = w.log();
        assert_eq!(log.matches(mark).count(), 1, "{}: log:\n{log}", w.name());
        assert_eq!(w.get_text("/"), "asgi_app\n");
    }

    #[test]
    fn returning_without_a_response_is_a_500_with_a_clear_log_line() {
        let w = start(&Spec::raw());
        let response = w.get("/no-response");
        assert_eq!(response.status, 500);
        w.wait_log(if w.is_tine() {
            "GET /no-response: the application returned without starting a response"
        } else {
            "ASGI callable returned without starting response"
        });
        assert_eq!(w.get_text("/"), "asgi_app\n");
    }

    #[test]
    fn every_receive_waiting_when_the_response_completes_gets_http_disconnect() {
        let w = start(&Spec::raw());
        assert_eq!(w.get_text("/watch?tag=w"), "watched\n");
        assert_eq!(
            w.wait_recorded("watch-w"),
            "http.disconnect http.disconnect",
            "log:\n{}",
            w.log()
        );
    }

    #[test]
    fn a_body_sent_after_the_response_was_complete_raises() {
        let w = start(&Spec::raw());
        assert_eq!(w.get_text("/after-complete?tag=c"), "complete\n");
        assert_eq!(w.wait_recorded("after-complete-c"), "RuntimeError");
    }

    #[test]
    fn two_hundred_sleeping_requests_are_in_one_worker_at_once() {
        // Each request waits in the application until all 200 are in (or 15 s pass), then
        // sleeps 0.2 s: the count proves they ran at once, without a timing assertion.
        let w = start(&Spec::raw());
        let answers = at_once(
            &w,
            200,
            "GET /barrier?n=200&ms=200 HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
        );
        for response in &answers {
            assert_eq!(response.status, 200);
            assert!(
                response.text().starts_with("released"),
                "{}: {}",
                w.name(),
                response.text()
            );
        }
        assert_eq!(w.get_text("/peak"), "peak 200\n");
    }

    #[test]
    fn head_answers_the_head_with_the_length_of_the_get() {
        let w = start(&Spec::raw());
        let mut stream = w.open(b"HEAD / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        let head = read_response_head(&mut stream).unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(head.header("Content-Length"), Some("9"));
        let rest = read_until_close(&mut stream).unwrap_or_else(|e| e);
        assert!(
            rest.is_empty(),
            "{}: body bytes after HEAD: {rest:?}",
            w.name()
        );
    }

    #[test]
    fn keep_alive_serves_several_requests_on_one_connection() {
        let w = start(&Spec::raw());
        let mut stream = w.connect();
        for i in 0..5 {
            let body = pattern(i, 10 + i);
            let mut raw = format!(
                "POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            raw.extend_from_slice(&body);
            stream.write_all(&raw).unwrap();
            let response = read_response_any(&mut stream, false)
                .unwrap_or_else(|e| panic!("{}: request {i}: {e}", w.name()));
            assert!(response.body == body, "request {i}");
        }
    }

    #[test]
    fn twenty_pipelined_streamed_responses_come_in_order() {
        let w = start(&Spec::raw());
        let mut raw = String::new();
        for i in 0..20 {
            raw.push_str(&format!(
                "GET /stream?n=2&label=p{i} HTTP/1.1\r\nHost: test\r\n\r\n"
            ));
        }
        let mut stream = w.open(raw.as_bytes());
        for i in 0..20 {
            let response = read_response_any(&mut stream, false)
                .unwrap_or_else(|e| panic!("{}: response {i}: {e}", w.name()));
            assert_eq!(response.text(), stream_lines(2, &format!("p{i}")));
        }
    }

    #[test]
    fn pipelined_requests_are_answered_in_order() {
        let w = start(&Spec::raw());
        let mut stream = w.open(
            b"GET /sleep?ms=100 HTTP/1.1\r\nHost: test\r\n\r\n\
                  GET /stream?n=3&label=piped HTTP/1.1\r\nHost: test\r\n\r\n\
                  GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
        );
        let mut next = || read_response_any(&mut stream, false).unwrap().text();
        assert_eq!(next(), "slept 100\n", "{}", w.name());
        assert_eq!(next(), stream_lines(3, "piped"));
        assert_eq!(next(), "asgi_app\n");
    }
}

/// tine's promises beyond what uvicorn does, and tine's own configuration.
mod tine_only {
    use super::*;

    /// Runs tine on `spec` with `state` until it exits, within `WAIT` (past it, a crash loop
    /// is assumed and the test fails); its exit status and output.
    fn run_until_exit(spec: &Spec, state: &TempDir) -> (ExitStatus, String) {
        let dir = TempDir::new();
        let config_path = dir.write("tine.toml", &spec.tine_config().render());
        let output = run_bounded(
            Command::new(tine_bin())
                .arg("-c")
                .arg(&config_path)
                .current_dir(dir.path())
                .env("TINE_TEST_STATE", state.path())
                .env_remove("NOTIFY_SOCKET"),
            None,
            WAIT,
        );
        (output.status, output.stdout + &output.stderr)
    }

    #[test]
    fn an_async_def_app_under_handler_python_is_served_as_asgi() {
        let w = start_tine(&Spec::raw());
        assert_eq!(w.get_text("/"), "asgi_app\n");
        let log = w.log();
        assert!(log.contains("serving asgi_app:app as ASGI 3"), "{log}");
    }

    #[test]
    fn flask_under_handler_python_stays_wsgi() {
        // The debug line says which interface was chosen.
        let server = TestServer::builder(Spec::new("flask_app:app").tine_config())
            .tables("[log]\nlevel = \"debug\"\n")
            .start();
        let w = Asgi {
            backend: Backend::Tine(server),
            state: TempDir::new(),
        };
        let response = w.get("/");
        assert_eq!(response.status, 200, "{}", w.log());
        assert_eq!(response.text(), "{\"message\":\"hello\"}\n");
        let log = w.wait_log("serving flask_app:app as WSGI");
        assert!(!log.contains("as ASGI"), "{log}");
    }

    #[test]
    fn a_factory_makes_the_asgi_app() {
        let w = start_tine(&Spec::new("asgi_app:create_app()"));
        assert_eq!(w.get_text("/"), "asgi_app\n");
        assert!(w.log().contains("as ASGI 3"), "{}", w.log());
    }

    #[test]
    fn an_asgi_app_forced_to_wsgi_is_a_clear_500() {
        let w = start_tine(&Spec::raw().handler("wsgi"));
        let response = w.get("/");
        assert_eq!(response.status, 500, "{}", w.log());
        // WSGI calls it with (environ, start_response): Python's own TypeError says so, under
        // the request's name; nothing hangs.
        let log = w.wait_log("GET /: the application raised; answered 500");
        assert!(
            log.contains("TypeError: app() missing 1 required positional argument: 'send'"),
            "{log}"
        );
        assert_eq!(w.get("/").status, 500, "and the worker answers on");
    }

    #[test]
    fn send_raises_an_oserror_once_the_client_left_mid_stream() {
        // uvicorn drops what the application sends after the client left, without an error.
        let w = start_tine(&Spec::raw());
        let pid = w.pid();
        let mut stream = w.open(
            b"GET /stream?n=100000&pause_ms=2&tag=gone&label=x HTTP/1.1\r\nHost: test\r\n\r\n",
        );
        let head = read_response_head(&mut stream).unwrap();
        assert_eq!(head.status, 200);
        let mut some = [0u8; 64];
        let n = stream.read(&mut some).unwrap();
        assert!(n > 0);
        drop(stream);
        let outcome = w.wait_recorded("stream-gone");
        assert!(
            outcome.ends_with("oserror=True"),
            "{}: send after the client left: {outcome}; log:\n{}",
            w.name(),
            w.log()
        );
        assert_eq!(w.pid(), pid, "the same worker serves on");
    }

    #[test]
    fn a_response_started_without_a_body_is_a_500_with_a_log_line() {
        // tine sends nothing before the first body message, so it can still answer 500
        // (uvicorn has written the head at http.response.start and closes the connection).
        let w = start_tine(&Spec::raw());
        let response = w.get("/start-only");
        assert_eq!(response.status, 500);
        w.wait_log("GET /start-only: the application returned without sending its response's body");
        assert_eq!(w.get_text("/"), "asgi_app\n");
    }

    #[test]
    fn request_timeout_cancels_the_task_answers_504_and_keeps_the_worker() {
        let w = start_tine(&Spec::raw().server("request_timeout = \"1s\""));
        let pid = w.pid();
        let response = w.get("/slow");
        assert_eq!(response.status, 504, "log:\n{}", w.log());
        let log = w.wait_log("ran past request_timeout; cancelled it");
        let line = app_line("SLOW LINE");
        assert!(log.contains("asgi_app.py"), "{log}");
        assert!(
            log.contains(&format!("line {line}, in route_slow")),
            "the stack names line {line}, the sleep; log:\n{log}"
        );
        assert!(!log.contains("recycling"), "{log}");
        assert_eq!(w.pid(), pid, "the same worker answers next");
    }

    #[test]
    fn a_stream_that_keeps_producing_outlives_request_timeout() {
        // request_timeout bounds the wait for each chunk, as for WSGI, not the whole stream.
        let w = start_tine(&Spec::raw().server("request_timeout = \"1s\""));
        let response = w.get("/stream?n=25&pause_ms=100&label=long&tag=long");
        assert_eq!(response.status, 200);
        assert_eq!(
            response.text(),
            stream_lines(25, "long"),
            "log:\n{}",
            w.log()
        );
        assert_eq!(w.wait_recorded("stream-long"), "done");
    }

    #[test]
    fn a_stream_stalled_past_request_timeout_is_cut_and_the_worker_kept() {
        let w = start_tine(&Spec::raw().server("request_timeout = \"1s\""));
        let pid = w.pid();
        let (head, rest) = head_then_rest(
            &w,
            b"GET /stream?n=3&pause_ms=5000&label=stalled&tag=stalled HTTP/1.1\r\nHost: test\r\n\r\n",
        );
        assert_eq!(head.status, 200);
        assert!(contains(&rest, b"line 0 of stalled\n"), "{rest:?}");
        assert!(!rest.ends_with(b"0\r\n\r\n"), "{rest:?}");
        assert!(
            w.wait_recorded("stream-stalled")
                .starts_with("CancelledError"),
            "the task was cancelled"
        );
        assert_eq!(w.pid(), pid, "the same worker answers next");
    }

    #[test]
    fn a_slow_reader_of_a_stream_is_not_a_request_timeout() {
        // The application waits for the client, not the other way round: past
        // request_timeout, the stream goes on once the client reads.
        let w = start_tine(&Spec::raw().server("request_timeout = \"1s\""));
        let stream = flood(&w, 200, "slow");
        // Three request_timeouts without reading a byte.
        std::thread::sleep(Duration::from_secs(3));
        read_flood(&w, stream, 200);
    }

    #[test]
    fn a_graceful_stop_answers_the_requests_in_flight_then_runs_the_shutdown() {
        let mut w = start_tine(&Spec::raw().server("graceful_timeout = \"10s\""));
        let pid = w.pid();
        let mut stream = w.open(b"GET /sleep?ms=1000&tag=drain HTTP/1.1\r\nHost: test\r\n\r\n");
        w.wait_recorded("sleeping-drain");
        let server = w.tine_mut();
        server.signal(Signal::SIGTERM);
        let response = read_response_any(&mut stream, false).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.text(), "slept 1000\n");
        let status = server.wait_exit();
        assert!(status.success(), "{status}; log:\n{}", server.log());
        assert_eq!(
            w.recorded(&format!("shutdown.{pid}")).as_deref(),
            Some("stopped")
        );
    }

    #[test]
    fn a_graceful_stop_ends_within_graceful_timeout_whatever_the_app_does() {
        // A long poll that never ends, and a loop blocked for a minute: the stop waits for
        // neither past graceful_timeout.
        for (target, tag) in [
            ("/longpoll?tag=stop", "waiting-stop"),
            ("/block?s=60&tag=stop", "blocking-stop"),
        ] {
            let mut w = start_tine(&Spec::raw().server("graceful_timeout = \"2s\""));
            let _stream = w.open(format!("GET {target} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes());
            w.wait_recorded(tag);
            let server = w.tine_mut();
            server.signal(Signal::SIGTERM);
            // Bounded by WAIT, a hang detector well past the 2 s.
            server.wait_exit();
        }
    }

    #[test]
    fn scope_names_a_unix_socket_listener_as_its_server() {
        let dir = TempDir::new();
        let path = dir.path().join("asgi.sock");
        let server = TestServer::builder(Spec::raw().tine_config())
            .bind(&format!("unix:{}", path.display()))
            .env("TINE_TEST_STATE", dir.path())
            .start();
        let mut stream = crate::util::connect_unix(&path);
        stream
            .write_all(b"GET /scope HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        let text = String::from_utf8_lossy(&raw);
        let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        let line = |key: &str| {
            body.lines()
                .find_map(|l| l.strip_prefix(&format!("{key}\t")))
                .unwrap_or_else(|| panic!("no {key} in {text}; log:\n{}", server.log()))
                .to_owned()
        };
        assert_eq!(
            line("server"),
            format!("tuple\t('{}', None)", path.display())
        );
        assert_eq!(line("client"), "NoneType\tNone");
    }

    #[test]
    fn an_upload_slower_than_request_timeout_is_not_a_request_timeout() {
        // As for WSGI, whose request reaches the application once its body is in: the time a
        // client takes to send its body is the client's (body_timeout, min_body_rate), not
        // the application's.
        let w = start_tine(&Spec::raw().server("request_timeout = \"1s\""));
        let body = pattern(2, 3 * 4096);
        let mut stream = w.open(
            format!(
                "POST /pieces?tag=slow HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        for (i, piece) in body.chunks(4096).enumerate() {
            if i > 0 {
                // Past request_timeout in all, each piece well above min_body_rate.
                std::thread::sleep(Duration::from_millis(700));
            }
            stream.write_all(piece).unwrap();
        }
        let response = read_response_any(&mut stream, false)
            .unwrap_or_else(|e| panic!("{e}; log:\n{}", w.log()));
        assert_eq!(response.status, 200, "log:\n{}", w.log());
        assert!(response.body == body);
    }

    #[test]
    fn a_body_over_the_limit_is_a_413_as_for_every_handler() {
        let w = start_tine(&Spec::raw().limits("body = \"64KiB\""));
        let body = pattern(0, 200_000);
        // Announced: refused before the application sees it.
        let (head, _) = head_then_rest(&w, &post("/pieces?tag=announced", &body));
        assert_eq!(head.status, 413, "log:\n{}", w.log());
        assert_eq!(w.recorded("got-announced"), None);
        // Chunked: found out on the way.
        let mut raw = b"POST /pieces?tag=chunked HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
                        Transfer-Encoding: chunked\r\n\r\n"
            .to_vec();
        raw.extend(encode_chunked(&body, &[16384]));
        let (head, _) = head_then_rest(&w, &raw);
        assert_eq!(head.status, 413, "log:\n{}", w.log());
        assert_ne!(
            w.recorded("pieces-chunked").as_deref(),
            Some("whole 200000"),
            "the application never gets the whole body"
        );
        assert_eq!(w.get_text("/"), "asgi_app\n");
    }

    #[test]
    fn an_event_loop_blocked_past_request_timeout_is_replaced() {
        // A task cannot be cancelled while the loop is blocked (time.sleep in an async route):
        // then, as for a stuck WSGI thread, the worker must make way for another (by
        // request_timeout's recycling, or as a hung worker past `timeout`).
        let w = start_tine(&Spec::raw().server("request_timeout = \"1s\"\ntimeout = \"2s\""));
        let blocked = w.pid();
        let response = w.get("/block?s=60");
        assert_eq!(response.status, 504, "log:\n{}", w.log());
        let deadline = std::time::Instant::now() + WAIT;
        let pid = loop {
            let response = w.get("/pid");
            if response.status == 200 {
                break response.text();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no worker answered within {WAIT:?} (the last answer: {}); log:\n{}",
                response.status,
                w.log()
            );
        };
        assert_ne!(pid, format!("pid {blocked}\n"), "log:\n{}", w.log());
    }

    #[test]
    fn lifespan_startup_has_run_when_tine_says_ready() {
        let w = start_tine(&Spec::raw().workers(2));
        // Read at once after READY=1, before any request: both workers started the app.
        let workers = w.tine().workers();
        assert_eq!(workers.len(), 2);
        for pid in workers {
            assert_eq!(
                w.recorded(&format!("startup.{pid}")).as_deref(),
                Some("started"),
                "worker {pid}; log:\n{}",
                w.log()
            );
        }
    }

    #[test]
    fn lifespan_startup_failed_or_raising_stops_tine_with_the_app_s_message() {
        for mode in ["fail", "crash"] {
            let state = state_with(&[("lifespan-mode", mode)]);
            let (status, output) = run_until_exit(&Spec::raw().workers(2), &state);
            assert!(!status.success(), "{mode}: {status}; output:\n{output}");
            assert!(
                output.contains("asgi_app refuses to start (tine lifespan test)"),
                "{mode}: {output}"
            );
        }
    }

    #[test]
    fn an_app_that_raises_on_the_lifespan_scope_is_served_with_one_info_line() {
        let state = state_with(&[("lifespan-mode", "raise")]);
        let w = start_tine_with(&Spec::raw(), state);
        assert_eq!(w.get_text("/state"), "no state\n");
        let log = w.log();
        let line = "does not support the ASGI lifespan protocol; serving without it";
        assert_eq!(log.matches(line).count(), 1, "{log}");
        assert!(
            !log.contains("Traceback"),
            "an info line, not an error: {log}"
        );
    }

    #[test]
    fn lifespan_on_refuses_an_app_that_does_not_speak_it() {
        let state = state_with(&[("lifespan-mode", "raise")]);
        let (status, output) = run_until_exit(&Spec::raw().app_lines("lifespan = \"on\""), &state);
        assert!(!status.success(), "{status}; output:\n{output}");
        assert!(
            output.contains("does not support the ASGI lifespan protocol"),
            "{output}"
        );
        assert!(
            output.contains("asgi_app does not speak lifespan (tine lifespan test)"),
            "the application's own error: {output}"
        );
    }

    #[test]
    fn lifespan_shutdown_runs_on_a_graceful_stop() {
        let mut w = start_tine(&Spec::raw());
        let pid = w.pid();
        assert_eq!(w.recorded(&format!("shutdown.{pid}")), None);
        let server = w.tine_mut();
        server.signal(Signal::SIGTERM);
        let status = server.wait_exit();
        assert!(status.success(), "{status}; log:\n{}", server.log());
        assert_eq!(
            w.recorded(&format!("shutdown.{pid}")).as_deref(),
            Some("stopped"),
            "log:\n{}",
            w.log()
        );
    }

    #[test]
    fn response_headers_that_are_not_bytes_are_a_500_and_the_worker_serves_on() {
        // uvicorn logs a 200 and closes the connection without a response.
        let w = start_tine(&Spec::raw());
        let response = w.get("/bad-header");
        assert_eq!(response.status, 500, "log:\n{}", w.log());
        assert_eq!(w.get_text("/"), "asgi_app\n");
    }

    #[test]
    fn a_graceful_stop_lets_background_work_finish_before_the_lifespan_shutdown() {
        let mut w = start_tine(&Spec::raw());
        let pid = w.pid();
        // Answered at once; the task works on for 500 ms after its response.
        assert_eq!(w.get_text("/after?tag=bg&ms=500"), "answered\n");
        let server = w.tine_mut();
        server.signal(Signal::SIGTERM);
        let status = server.wait_exit();
        assert!(status.success(), "{status}; log:\n{}", server.log());
        let written = |name: &str| {
            std::fs::metadata(w.state.path().join(name))
                .and_then(|m| m.modified())
                .unwrap_or_else(|e| panic!("{name}: {e}; log:\n{}", w.log()))
        };
        assert!(
            written("after-bg") <= written(&format!("shutdown.{pid}")),
            "the background work finished before the shutdown; log:\n{}",
            w.log()
        );
        assert!(
            w.log()
                .contains("waiting for 1 tasks of the application to finish")
        );
    }

    #[test]
    fn a_lifespan_shutdown_that_never_ends_is_bounded_by_graceful_timeout() {
        let state = state_with(&[("lifespan-mode", "stall")]);
        let mut w = start_tine_with(&Spec::raw().server("graceful_timeout = \"2s\""), state);
        let pid = w.pid();
        let server = w.tine_mut();
        server.signal(Signal::SIGTERM);
        // `wait_exit` is bounded by WAIT: a hang detector, well past the 2 s.
        server.wait_exit();
        assert!(
            w.recorded(&format!("stalling.{pid}")).is_some(),
            "the shutdown ran; log:\n{}",
            w.log()
        );
        assert_eq!(w.recorded(&format!("shutdown.{pid}")), None);
    }

    #[test]
    fn lifespan_off_does_not_run_it() {
        let w = start_tine(&Spec::raw().app_lines("lifespan = \"off\""));
        let pid = w.pid();
        assert_eq!(w.recorded(&format!("startup.{pid}")), None);
        assert_eq!(w.get_text("/state"), "no state\n");
    }

    #[test]
    fn a_reload_starts_the_new_workers_app_and_shuts_the_old_ones_down() {
        let w = start_tine(&Spec::raw().server("graceful_timeout = \"5s\""));
        let old = w.pid();
        w.tine().signal(Signal::SIGHUP);
        w.wait_log("reload complete");
        // An old worker told to stop may still take a connection that reached it before the
        // signal did, and serves it: ask until a new worker answers.
        let new = crate::util::wait_until("a new worker answering", || w.pid(), |pid| *pid != old);
        assert_eq!(
            w.recorded(&format!("startup.{new}")).as_deref(),
            Some("started")
        );
        assert_eq!(w.wait_recorded(&format!("shutdown.{old}")), "stopped");
    }

    #[test]
    fn a_reload_to_an_app_whose_startup_fails_keeps_the_old_workers_serving() {
        let w = start_tine(&Spec::raw().server("graceful_timeout = \"5s\""));
        let pid = w.pid();
        std::fs::write(w.state.path().join("lifespan-mode"), "fail").unwrap();
        w.tine().signal(Signal::SIGHUP);
        let log = w.wait_log("reload failed");
        assert!(
            log.contains("asgi_app refuses to start (tine lifespan test)"),
            "{log}"
        );
        for _ in 0..20 {
            assert_eq!(w.pid(), pid, "the old worker serves on; log:\n{}", w.log());
        }
    }

    #[test]
    fn max_concurrency_bounds_the_requests_in_the_app() {
        let w = start_tine(&Spec::raw().app_lines("max_concurrency = 2"));
        // The first two meet in the barrier (so two did run at once); the rest pass it.
        let answers = at_once(
            &w,
            6,
            "GET /barrier?n=2&ms=150 HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
        );
        for response in &answers {
            assert_eq!(response.status, 200, "{}", w.log());
            assert!(
                response.text().starts_with("released"),
                "{}",
                response.text()
            );
        }
        assert_eq!(w.get_text("/peak"), "peak 2\n");
    }

    #[test]
    fn a_request_queued_behind_max_concurrency_counts_its_whole_wait() {
        // One request at a time, four keep-alive clients asking for 50 ms each: every request
        // waits in asgi.py's queue for the ones before it, 50 ms or more.
        let config = Spec::raw()
            .app_lines("max_concurrency = 1")
            .tine_config()
            .tables("[metrics]\nbind = \"127.0.0.1:0\"");
        let w = UnderTest::start_tine(config, state_with(&[]));
        let clients: Vec<_> = (0..4)
            .map(|_| {
                let mut stream = w.connect();
                std::thread::spawn(move || {
                    for _ in 0..5 {
                        stream
                            .write_all(b"GET /sleep?ms=50 HTTP/1.1\r\nHost: t\r\n\r\n")
                            .unwrap();
                        let response = crate::util::read_response(&mut stream).unwrap();
                        assert_eq!(response.status, 200, "{}", response.text());
                    }
                })
            })
            .collect();
        for client in clients {
            client.join().unwrap();
        }
        assert_eq!(w.get_text("/peak"), "peak 1\n");
        // The worker copies its counts into the scoreboard on its heartbeat: wait for all 21.
        let server = w.tine();
        let sample = |text: &str, name: &str| -> u64 {
            text.lines()
                .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
                .unwrap_or(0)
        };
        let text = wait_until(
            "the queue waits counted",
            || {
                let mut stream = crate::util::connect(server.metrics_addr());
                stream
                    .write_all(b"GET /metrics HTTP/1.1\r\nHost: m\r\n\r\n")
                    .unwrap();
                crate::util::read_response(&mut stream).unwrap().text()
            },
            |text| sample(text, "tine_queue_wait_seconds_count{worker=\"1\"}") >= 21,
        );
        let count = sample(&text, "tine_queue_wait_seconds_count{worker=\"1\"}");
        let quick = sample(
            &text,
            "tine_queue_wait_seconds_bucket{worker=\"1\",le=\"0.05\"}",
        );
        // Three of every four requests wait for one or more others; allow for scheduling.
        assert!(
            count - quick >= 10,
            "{quick} of {count} waited 50 ms or less:\n{text}"
        );
    }

    #[test]
    fn loop_auto_runs_uvloop_when_it_is_installed() {
        let w = start_tine(&Spec::raw().app_lines("loop = \"auto\""));
        assert_eq!(w.get_text("/loop"), "uvloop.Loop\n");
        assert!(w.log().contains("ASGI on uvloop"), "{}", w.log());
    }

    #[test]
    fn loop_asyncio_runs_asyncio_s_own_loop() {
        let w = start_tine(&Spec::raw().app_lines("loop = \"asyncio\""));
        let kind = w.get_text("/loop");
        assert!(kind.starts_with("asyncio."), "{kind}");
        assert!(
            w.log().contains("ASGI on asyncio's event loop"),
            "{}",
            w.log()
        );
    }
}

/// FastAPI and Starlette, under tine, and next to uvicorn.
mod frameworks {
    use super::*;
    use crate::reference::{KeepAlive, assert_same, step};

    fn fastapi() -> Spec {
        Spec::new("fastapi_app:app")
    }

    fn starlette() -> Spec {
        Spec::new("starlette_app:app")
    }

    /// An exchange, with every header but Date and Server, names lower-cased, sorted.
    type Exchange = crate::reference::Exchange<(String, String)>;

    impl Exchange {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }
    }

    /// A client of the sessions.
    struct Client(KeepAlive);

    impl Client {
        fn exchange(
            &mut self,
            step: &'static str,
            method: &str,
            target: &str,
            body: Option<(&str, &[u8])>,
        ) -> Exchange {
            let mut raw = format!("{method} {target} HTTP/1.1\r\nHost: test\r\n").into_bytes();
            match body {
                Some((content_type, body)) => {
                    raw.extend_from_slice(
                        format!(
                            "Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
                            body.len()
                        )
                        .as_bytes(),
                    );
                    raw.extend_from_slice(body);
                }
                None => raw.extend_from_slice(b"\r\n"),
            }
            let response = self.0.send(step, &raw, method == "HEAD");
            let mut headers: Vec<(String, String)> = response
                .headers
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
                .filter(|(n, _)| n != "date" && n != "server")
                .collect();
            headers.sort();
            Exchange {
                step,
                status: response.status,
                body: response.body,
                headers,
            }
        }
    }

    fn fastapi_session(addr: SocketAddr) -> Vec<Exchange> {
        let mut c = Client(KeepAlive::new(addr));
        let json = "application/json";
        let echo = pattern(0, 50_000);
        vec![
            c.exchange("json", "GET", "/", None),
            c.exchange("params", "GET", "/items/42?q=caf%C3%A9&limit=3", None),
            c.exchange("bad param", "GET", "/items/forty-two", None),
            c.exchange("http exception", "GET", "/items/0", None),
            c.exchange("sync route", "GET", "/sync", None),
            c.exchange(
                "valid body",
                "POST",
                "/items",
                Some((json, br#"{"name": "pen", "price": 1.25, "tags": ["blue"]}"#)),
            ),
            c.exchange(
                "invalid body",
                "POST",
                "/items",
                Some((json, br#"{"name": "pen"}"#)),
            ),
            c.exchange("stream", "GET", "/stream?n=30&label=tine", None),
            c.exchange("task", "POST", "/tasks/first", Some((json, b""))),
            c.exchange("tasks done", "GET", "/tasks", None),
            c.exchange("lifespan state", "GET", "/motto", None),
            c.exchange(
                "echo",
                "POST",
                "/echo",
                Some(("application/octet-stream", &echo)),
            ),
            c.exchange("not found", "GET", "/no/such/page", None),
            c.exchange("head", "HEAD", "/", None),
            // Last: the server may close the connection after it (uvicorn does, unannounced).
            c.exchange("crash", "GET", "/crash", None),
        ]
    }

    fn check_fastapi(exchanges: &[Exchange], server: &str) {
        for e in exchanges {
            let expected = match e.step {
                "bad param" | "invalid body" => 422,
                "not found" | "http exception" => 404,
                "crash" => 500,
                "head" => 405,
                _ => 200,
            };
            assert_eq!(e.status, expected, "{server}: {}: {}", e.step, e.text());
        }
        assert_eq!(step(exchanges, "json").text(), r#"{"message":"hello"}"#);
        assert_eq!(
            step(exchanges, "http exception").text(),
            r#"{"detail":"no item 0"}"#
        );
        assert_eq!(
            step(exchanges, "sync route").text(),
            r#"{"off_the_loop":true}"#
        );
        assert_eq!(
            step(exchanges, "json").header("content-type"),
            Some("application/json")
        );
        assert_eq!(
            step(exchanges, "params").text(),
            r#"{"item_id":42,"q":"café","limit":3}"#
        );
        assert_eq!(
            step(exchanges, "valid body").text(),
            r#"{"name":"pen","price":1.25,"tags":["blue"],"double":2.5}"#
        );
        let invalid = step(exchanges, "invalid body").text();
        assert!(
            invalid.contains(r#""loc":["body","price"]"#) && invalid.contains("Field required"),
            "{server}: {invalid}"
        );
        let stream = step(exchanges, "stream");
        assert_eq!(stream.text(), stream_lines(30, "tine"));
        assert_eq!(stream.header("transfer-encoding"), Some("chunked"));
        assert_eq!(step(exchanges, "task").text(), r#"{"queued":"first"}"#);
        assert_eq!(
            step(exchanges, "tasks done").text(),
            r#"{"done":["first"]}"#,
            "{server}: the background task ran after its response"
        );
        assert_eq!(
            step(exchanges, "lifespan state").text(),
            "made in the lifespan\n"
        );
        let echo = step(exchanges, "echo");
        assert!(
            echo.body == pattern(0, 50_000),
            "{server}: the echo differs"
        );
        assert_eq!(echo.header("x-echo-length"), Some("50000"));
        assert!(step(exchanges, "head").body.is_empty());
    }

    fn starlette_session(addr: SocketAddr) -> Vec<Exchange> {
        let mut c = Client(KeepAlive::new(addr));
        let echo = pattern(5, 70_000);
        vec![
            c.exchange("json", "GET", "/", None),
            c.exchange("path and query", "GET", "/users/ada?page=3", None),
            c.exchange(
                "echo",
                "POST",
                "/echo",
                Some(("application/octet-stream", &echo)),
            ),
            c.exchange("stream", "GET", "/stream?n=25", None),
            c.exchange("request state", "GET", "/motto", None),
            c.exchange("not found", "GET", "/nowhere", None),
            c.exchange("head", "HEAD", "/users/ada", None),
        ]
    }

    fn check_starlette(exchanges: &[Exchange], server: &str) {
        for e in exchanges {
            let expected = if e.step == "not found" { 404 } else { 200 };
            assert_eq!(e.status, expected, "{server}: {}: {}", e.step, e.text());
        }
        assert_eq!(step(exchanges, "json").text(), r#"{"hello":"starlette"}"#);
        assert_eq!(
            step(exchanges, "path and query").text(),
            "user ada, page 3\n"
        );
        let echo = step(exchanges, "echo");
        assert!(
            echo.body == pattern(5, 70_000),
            "{server}: the echo differs"
        );
        assert_eq!(echo.header("x-echo-length"), Some("70000"));
        assert_eq!(
            step(exchanges, "stream").text(),
            (0..25)
                .map(|i| format!("line {i} of starlette\n"))
                .collect::<String>()
        );
        assert_eq!(step(exchanges, "request state").text(), "starlette state\n");
        assert_eq!(step(exchanges, "not found").text(), "Not Found");
        let head = step(exchanges, "head");
        assert!(head.body.is_empty());
        assert_eq!(head.header("content-length"), Some("17"));
    }

    type Session = fn(SocketAddr) -> Vec<Exchange>;
    type Check = fn(&[Exchange], &str);

    /// Runs `session` against `spec` under the server [`start`] picks, and checks it.
    fn serves(spec: &Spec, session: Session, check: Check) {
        let w = start(spec);
        check(&session(w.addr()), w.name());
    }

    /// Runs `session` against `spec` under uvicorn, checks it, then runs it under tine: every
    /// exchange must be the same.
    fn same_as_uvicorn(spec: &Spec, session: Session, check: Check) {
        let reference = session(start_uvicorn(spec).addr());
        check(&reference, "uvicorn");
        let tine = start_tine(spec);
        let answers = session(tine.addr());
        assert_same(&reference, "uvicorn", &answers, &tine.log());
    }

    #[test]
    fn fastapi_serves_a_session() {
        serves(&fastapi(), fastapi_session, check_fastapi);
    }

    #[test]
    fn starlette_serves_a_session() {
        serves(&starlette(), starlette_session, check_starlette);
    }

    #[test]
    fn fastapi_answers_under_tine_as_under_uvicorn() {
        same_as_uvicorn(&fastapi(), fastapi_session, check_fastapi);
    }

    #[test]
    fn starlette_answers_under_tine_as_under_uvicorn() {
        same_as_uvicorn(&starlette(), starlette_session, check_starlette);
    }
}

mod websocket;
mod ws_operate;
