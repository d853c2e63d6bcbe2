//! tine behind nginx, configured by `deploy/nginx/tine.conf` itself (its ports, upstream and
//! static root changed in a temporary copy): the application sees the client's address from
//! nginx's X-Forwarded-For and the scheme nginx set, not what the client claimed; requests
//! reach tine over a kept-alive connection; a WebSocket passes through; nginx serves
//! `/static/` from disk. Skipped (a failure under `TINE_REQUIRE_ALL_TESTS`) where nginx is not
//! installed.

use std::io::{Read, Write};
use std::net::{Ipv6Addr, SocketAddr};
use std::path::Path;

use crate::balancer::{DeployFile, environ_value, free_port, hello_app, sbin_binary, start_nginx};
use crate::util::{
    Config, Guarded, Response, TempDir, TestServer, WAIT, connect, python_apps, read_response,
    read_response_head, skip,
};

/// nginx running deploy/nginx/tine.conf in front of `upstream`, on [::1]:PORT and
/// 127.0.0.1:PORT, serving /static/ from `static_root`; killed with its workers when dropped.
struct Nginx {
    addr: SocketAddr,
    _process: Guarded,
    _dir: TempDir,
}

impl Nginx {
    fn start(binary: &Path, upstream: SocketAddr, static_root: &Path) -> Nginx {
        let dir = TempDir::new();
        let port = free_port();
        let site = DeployFile::read("nginx/tine.conf")
            .replace("server 127.0.0.1:8000;", &format!("server {upstream};"))
            .replace("listen 80;", &format!("listen 127.0.0.1:{port};"))
            .replace("listen [::]:80;", &format!("listen [::1]:{port};"))
            .replace(
                "alias /srv/app/static/;",
                &format!("alias {}/;", static_root.display()),
            )
            .write_to(&dir);
        let addr = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
        let main = format!(
            "events {{}}\nhttp {{ access_log off; include {}; }}\n",
            site.display()
        );
        let process = start_nginx(binary, &dir, &main, addr);
        Nginx {
            addr,
            _process: process,
            _dir: dir,
        }
    }

    /// `raw` (a whole request) on a connection of its own; the response.
    fn request(&self, raw: &str) -> Response {
        let mut stream = connect(self.addr);
        stream.write_all(raw.as_bytes()).unwrap();
        read_response(&mut stream).expect("a response from nginx")
    }
}

#[test]
fn through_nginx_the_application_sees_the_clients_address_and_nginxs_scheme() {
    let Some(binary) = sbin_binary("nginx") else {
        skip("behind_nginx: nginx is not installed (Debian: apt-get install nginx-light)");
        return;
    };
    // tine with its defaults for forwarded headers: nginx connects from 127.0.0.1, which
    // forwarded_allow_ips trusts, as it would on one host.
    let tine = TestServer::start(Config::new("workers = 1").tables(&hello_app()));
    let statics = TempDir::new();
    let file = statics.write("hello.txt", "static, from nginx\n");
    // nginx's workers run as nobody when the test runs as root: readable whatever the umask.
    for (path, mode) in [(statics.path(), 0o755), (file.as_path(), 0o644)] {
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .expect("make the static root readable");
    }
    let nginx = Nginx::start(&binary, tine.addr, statics.path());

    // The client (at ::1, an address tine does not trust) claims to be another client, and to
    // have come over https: nginx appends the address it saw and sets the scheme it spoke.
    let response = nginx.request(
        "GET /environ HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-For: 203.0.113.9\r\n\
         X-Forwarded-Proto: https\r\nConnection: close\r\n\r\n",
    );
    let environ = response.text();
    assert_eq!(response.status, 200, "{environ}");
    for (key, value) in [
        ("REMOTE_ADDR", "::1"),
        ("wsgi.url_scheme", "http"),
        ("HTTP_X_FORWARDED_FOR", "203.0.113.9, ::1"),
        ("HTTP_X_FORWARDED_PROTO", "http"),
        ("HTTP_HOST", "example.com"),
    ] {
        assert!(
            environ.contains(&format!("\"{key}\": \"{value}\"")),
            "{key} should be {value:?} in the environ tine gave the application:\n{environ}"
        );
    }

    // Upstream keep-alive: nginx sends no Connection header of its own, and requests that
    // came on separate client connections reach tine on one connection, from one port of
    // nginx's (REMOTE_PORT is the peer's port; the one nginx worker keeps one idle connection).
    assert!(
        !environ.contains("\"HTTP_CONNECTION\""),
        "nginx should send no Connection header to tine:\n{environ}"
    );
    let ports: Vec<String> = (0..3)
        .map(|_| {
            let environ = nginx
                .request("GET /environ HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
                .text();
            environ_value(&environ, "REMOTE_PORT")
                .unwrap_or_else(|| panic!("no REMOTE_PORT in {environ}"))
        })
        .collect();
    assert!(
        ports.iter().all(|port| *port == ports[0]),
        "nginx should have reused one connection to tine, but came from ports {ports:?}"
    );

    let file = nginx.request(
        "GET /static/hello.txt HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(file.status, 200);
    assert_eq!(file.text(), "static, from nginx\n");
}

/// Reads one unmasked server frame whose payload is under 126 bytes: (first byte, payload).
fn read_small_frame(stream: &mut std::net::TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).expect("a frame's head");
    assert!(
        head[1] < 126,
        "an unmasked frame under 126 bytes expected: {head:?}"
    );
    let mut payload = vec![0u8; usize::from(head[1])];
    stream.read_exact(&mut payload).expect("a frame's payload");
    (head[0], payload)
}

/// One masked client frame with FIN and `opcode`, its payload under 126 bytes.
fn masked_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x80 | opcode, 0x80 | u8::try_from(payload.len()).unwrap()];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

#[test]
fn a_websocket_passes_through_nginx() {
    let Some(binary) = sbin_binary("nginx") else {
        skip("behind_nginx: nginx is not installed (Debian: apt-get install nginx-light)");
        return;
    };
    let state = TempDir::new();
    let tine = TestServer::builder(Config::new("workers = 1").tables(&format!(
        "[app]\nhandler = \"python\"\napp = \"ws_app:app\"\npythonpath = [{:?}]\n",
        python_apps().display().to_string()
    )))
    .env("TINE_TEST_STATE", state.path())
    .start();
    let statics = TempDir::new();
    let nginx = Nginx::start(&binary, tine.addr, statics.path());

    let mut stream = connect(nginx.addr);
    stream.set_read_timeout(Some(WAIT)).unwrap();
    // RFC 6455's example key, whose accept value its section 1.3 gives.
    stream
        .write_all(
            b"GET /echo HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n\
              Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Sec-WebSocket-Version: 13\r\n\r\n",
        )
        .unwrap();
    let response = read_response_head(&mut stream).expect("the handshake's response");
    assert_eq!(
        response.status,
        101,
        "{response:?}; tine's log:\n{}",
        tine.log()
    );
    assert_eq!(
        response.header("Sec-WebSocket-Accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );

    stream
        .write_all(&masked_frame(0x1, b"through nginx"))
        .unwrap();
    assert_eq!(
        read_small_frame(&mut stream),
        (0x81, b"through nginx".to_vec())
    );

    // A close with 1000 is answered with a close, and the connection ends.
    stream
        .write_all(&masked_frame(0x8, &1000u16.to_be_bytes()))
        .unwrap();
    let (first, payload) = read_small_frame(&mut stream);
    assert_eq!(first, 0x88, "a close frame expected: {payload:?}");
    assert_eq!(payload.get(..2), Some(&1000u16.to_be_bytes()[..]));
}
