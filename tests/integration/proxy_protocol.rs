//! PROXY protocol listeners (`proxy_protocol = true`, here through `--proxy-protocol`): hand-built
//! v1 and v2 headers over a raw connection, the client they name in the access log (and in a
//! WSGI application's `REMOTE_ADDR`), and the connections refused: a header cut short, an HTTP
//! request in its place, a peer not in `forwarded_allow_ips`. The tests connect from
//! 127.0.0.1, which `forwarded_allow_ips` trusts by default: each plays the balancer.

use std::io::{Read, Write};
use std::net::TcpStream;

use crate::util::{Builder, TempDir, TestServer, read_response, wait_until};

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

/// A v2 header: `command` 0x20 (LOCAL) or 0x21 (PROXY), `family`, and the address block.
fn v2(command: u8, family: u8, block: &[u8]) -> Vec<u8> {
    let mut bytes = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    bytes.extend_from_slice(&[command, family]);
    bytes.extend_from_slice(&u16::try_from(block.len()).unwrap().to_be_bytes());
    bytes.extend_from_slice(block);
    bytes
}

/// A v2 PROXY header for a TCP client at `ip:port` (IPv4), to 10.0.0.1:443.
fn v2_tcp4(ip: [u8; 4], port: u16) -> Vec<u8> {
    let mut block = ip.to_vec();
    block.extend_from_slice(&[10, 0, 0, 1]);
    block.extend_from_slice(&port.to_be_bytes());
    block.extend_from_slice(&443u16.to_be_bytes());
    v2(0x21, 0x11, &block)
}

/// `header` (a v2 one) with `tlvs` appended, its length updated.
#[cfg(feature = "python")]
fn with_tlvs(mut header: Vec<u8>, tlvs: &[u8]) -> Vec<u8> {
    header.extend_from_slice(tlvs);
    let block = u16::try_from(header.len() - 16).unwrap();
    header[14..16].copy_from_slice(&block.to_be_bytes());
    header
}

/// `PP2_TYPE_SSL`, 5 bytes: `client` = `PP2_CLIENT_SSL`, `verify` = 0 (HAProxy's
/// `send-proxy-v2-ssl` for a client that came over TLS).
#[cfg(feature = "python")]
const SSL_TLV: [u8; 8] = [0x20, 0x00, 0x05, 0x01, 0, 0, 0, 0];

/// A one-worker server whose listener takes PROXY headers, with an access log of `{remote}`
/// lines in `dir`; `server` adds `[server]` keys.
fn proxied(dir: &TempDir, server: &str) -> Builder {
    TestServer::builder(format!("workers = 1\n{server}"))
        .arg("--proxy-protocol")
        .tables(&format!(
            "[log]\naccess_log = \"{}\"\naccess_log_format = \"{{remote}}\"",
            dir.path().join("access.log").display()
        ))
}

/// Sends `bytes` on a new connection and reads until the server closes it.
fn exchange(server: &TestServer, bytes: &[u8]) -> Vec<u8> {
    let mut stream = server.connect();
    stream.write_all(bytes).unwrap();
    read_to_close(&mut stream)
}

/// What the server sent before it closed the connection (a reset ends it too).
fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(err) => panic!("reading to the close: {err} (after {got:?})"),
        }
    }
}

fn access_log(dir: &TempDir, lines: usize) -> Vec<String> {
    let text = wait_until(
        &format!("{lines} lines in the access log"),
        || std::fs::read_to_string(dir.path().join("access.log")).unwrap_or_default(),
        |text| text.lines().count() >= lines,
    );
    text.lines().map(str::to_owned).collect()
}

#[test]
fn v1_and_v2_headers_name_the_client_in_the_access_log() {
    let dir = TempDir::new();
    let server = proxied(&dir, "").start();
    let headers: [Vec<u8>; 4] = [
        b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 443\r\n".to_vec(),
        b"PROXY TCP6 2001:db8::7 ::1 40001 443\r\n".to_vec(),
        v2_tcp4([198, 51, 100, 9], 40002),
        // LOCAL: the balancer's own health check keeps the socket's address.
        v2(0x20, 0x00, &[]),
    ];
    for header in &headers {
        let response = exchange(&server, &[&header[..], GET].concat());
        assert!(
            response.starts_with(b"HTTP/1.1 200 "),
            "{:?}: {}\nlog:\n{}",
            String::from_utf8_lossy(header),
            String::from_utf8_lossy(&response),
            server.log()
        );
    }
    assert_eq!(
        access_log(&dir, headers.len()),
        ["203.0.113.7", "2001:db8::7", "198.51.100.9", "127.0.0.1"]
    );
}

#[test]
fn a_header_split_over_two_writes_still_works() {
    let dir = TempDir::new();
    let server = proxied(&dir, "").start();
    let header = b"PROXY TCP4 203.0.113.8 10.0.0.1 40000 443\r\n";
    let mut stream = server.connect();
    stream.set_nodelay(true).unwrap();
    stream.write_all(&header[..17]).unwrap();
    // Not a timing assertion: a pause, so that the two parts arrive apart.
    std::thread::sleep(std::time::Duration::from_millis(100));
    stream.write_all(&[&header[17..], GET].concat()).unwrap();
    let response = read_response(&mut stream).unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    assert_eq!(response.status, 200);
    assert_eq!(access_log(&dir, 1), ["203.0.113.8"]);
}

#[test]
fn a_truncated_header_then_a_close_gets_nothing_and_the_server_serves_on() {
    let dir = TempDir::new();
    let server = proxied(&dir, "").start();
    let mut stream = server.connect();
    stream.write_all(b"PROXY TCP4 203.0.113.9 10.0").unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(read_to_close(&mut stream), b"");
    server.wait_log("after 27 bytes of its PROXY header");
    let response = exchange(
        &server,
        &[&b"PROXY TCP4 203.0.113.9 10.0.0.1 1 2\r\n"[..], GET].concat(),
    );
    assert!(response.starts_with(b"HTTP/1.1 200 "));
}

#[test]
fn a_plain_request_on_a_proxy_listener_is_closed_without_a_response() {
    let dir = TempDir::new();
    let server = proxied(&dir, "").start();
    assert_eq!(exchange(&server, GET), b"");
    server.wait_log("on a PROXY protocol listener: no PROXY protocol header");
}

#[test]
fn a_peer_not_in_forwarded_allow_ips_is_closed_at_once() {
    let dir = TempDir::new();
    let server = proxied(&dir, "forwarded_allow_ips = [\"10.0.0.0/8\"]").start();
    let header = b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 443\r\n";
    for _ in 0..3 {
        assert_eq!(exchange(&server, &[&header[..], GET].concat()), b"");
    }
    let log = server.wait_log("is not in [server] forwarded_allow_ips");
    assert_eq!(
        log.matches("is not in [server] forwarded_allow_ips")
            .count(),
        1,
        "one warning, not one per connection:\n{log}"
    );
}

/// A connection to `server` from `source` (another loopback address than 127.0.0.1, which
/// the tests' servers trust).
fn connect_from(source: std::net::Ipv4Addr, server: &TestServer) -> TcpStream {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, bind, connect, socket};
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrIn::from(std::net::SocketAddrV4::new(source, 0)),
    )
    .unwrap();
    let std::net::SocketAddr::V4(addr) = server.addr else {
        panic!("the test server listens on IPv4");
    };
    connect(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrIn::from(addr),
    )
    .unwrap();
    let stream = TcpStream::from(fd);
    stream.set_read_timeout(Some(crate::util::WAIT)).unwrap();
    stream
}

/// At `max_connections`, an idle connection gives way to a new one; not to one refused
/// because its peer may not send a PROXY header, which would otherwise let anyone who reaches
/// the port close a real client's connection with each connect.
#[test]
fn an_untrusted_peer_does_not_make_an_idle_client_give_way() {
    let dir = TempDir::new();
    let server = proxied(
        &dir,
        "max_connections = 1\nforwarded_allow_ips = [\"127.0.0.1\"]",
    )
    .start();
    let header = b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 443\r\n";
    let keep_alive = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";
    let mut idle = server.connect();
    idle.write_all(&[&header[..], keep_alive].concat()).unwrap();
    let first = read_response(&mut idle).unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    assert_eq!(first.status, 200);
    let mut untrusted = connect_from(std::net::Ipv4Addr::new(127, 0, 0, 2), &server);
    untrusted.write_all(&[&header[..], GET].concat()).unwrap();
    assert_eq!(read_to_close(&mut untrusted), b"");
    server.wait_log("is not in [server] forwarded_allow_ips");
    idle.write_all(GET).unwrap();
    let second = read_response(&mut idle)
        .unwrap_or_else(|e| panic!("the idle client lost its connection: {e}\n{}", server.log()));
    assert_eq!(second.status, 200);
}

#[test]
fn without_proxy_protocol_a_proxy_line_is_a_bad_request() {
    let server = TestServer::start("workers = 1");
    let response = exchange(
        &server,
        &[&b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 443\r\n"[..], GET].concat(),
    );
    assert!(
        response.starts_with(b"HTTP/1.1 400 "),
        "{}",
        String::from_utf8_lossy(&response)
    );
}

#[cfg(feature = "python")]
#[test]
fn the_client_is_remote_addr_and_remote_port() {
    let dir = TempDir::new();
    dir.write(
        "echo_remote.py",
        "def app(environ, start_response):\n    \
             start_response('200 OK', [('Content-Type', 'text/plain')])\n    \
             return [f\"{environ['REMOTE_ADDR']} {environ['REMOTE_PORT']}\".encode()]\n",
    );
    let server = proxied(&dir, "")
        .tables(&format!(
            "[app]\nhandler = \"python\"\napp = \"echo_remote:app\"\npythonpath = [{:?}]",
            dir.path().display().to_string()
        ))
        .start();
    let mut stream = server.connect();
    stream
        .write_all(&[&b"PROXY TCP6 2001:db8::7 ::1 40001 443\r\n"[..], GET].concat())
        .unwrap();
    let response = read_response(&mut stream).unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    assert_eq!(response.text(), "2001:db8::7 40001", "{}", server.log());
}

#[test]
fn a_reload_turns_it_on_for_the_new_workers_on_the_same_socket() {
    let server = TestServer::start("workers = 1");
    assert_eq!(server.get("/").status, 200);
    // The same address, written as a table: the socket is kept, the new workers expect the
    // header.
    std::fs::write(
        server.dir().join("tine.toml"),
        "[server]\nbind = [{ address = \"127.0.0.1:0\", proxy_protocol = true }]\nworkers = 1\n",
    )
    .unwrap();
    server.signal(nix::sys::signal::Signal::SIGHUP);
    server.wait_log("reload complete");
    assert_eq!(exchange(&server, GET), b"", "{}", server.log());
    let response = exchange(
        &server,
        &[&b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 443\r\n"[..], GET].concat(),
    );
    assert!(
        response.starts_with(b"HTTP/1.1 200 "),
        "{}",
        String::from_utf8_lossy(&response)
    );
}

/// HAProxy terminating TLS and sending `send-proxy-v2-ssl`: the `PP2_TYPE_SSL` TLV says the
/// client came over TLS, so the application sees `https`, as behind a TLS listener; without
/// it, `http`.
#[cfg(feature = "python")]
#[test]
fn a_v2_header_that_says_the_client_came_over_tls_makes_the_scheme_https() {
    let dir = TempDir::new();
    dir.write(
        "echo_scheme.py",
        "def app(environ, start_response):\n    \
             start_response('200 OK', [('Content-Type', 'text/plain')])\n    \
             return [environ['wsgi.url_scheme'].encode()]\n",
    );
    let server = proxied(&dir, "")
        .tables(&format!(
            "[app]\nhandler = \"python\"\napp = \"echo_scheme:app\"\npythonpath = [{:?}]",
            dir.path().display().to_string()
        ))
        .start();
    for (tlvs, scheme) in [(&SSL_TLV[..], "https"), (&[][..], "http")] {
        let header = with_tlvs(v2_tcp4([198, 51, 100, 9], 40002), tlvs);
        let mut stream = server.connect();
        stream.write_all(&[&header[..], GET].concat()).unwrap();
        let response =
            read_response(&mut stream).unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
        assert_eq!(response.text(), scheme, "{}", server.log());
    }
}

/// The same for an ASGI application: the client the header names is the scope's `client`,
/// and the TLS TLV its `scheme`.
#[cfg(feature = "python")]
#[test]
fn an_asgi_application_sees_the_client_and_scheme_the_header_gives() {
    let dir = TempDir::new();
    dir.write(
        "echo_scope.py",
        "async def app(scope, receive, send):\n    \
             host, port = scope['client']\n    \
             body = f\"{host} {port} {scope['scheme']}\".encode()\n    \
             await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n    \
             await send({'type': 'http.response.body', 'body': body})\n",
    );
    let server = proxied(&dir, "")
        .tables(&format!(
            "[app]\nhandler = \"python\"\napp = \"echo_scope:app\"\npythonpath = [{:?}]",
            dir.path().display().to_string()
        ))
        .start();
    let header = with_tlvs(v2_tcp4([198, 51, 100, 9], 40002), &SSL_TLV);
    let mut stream = server.connect();
    stream.write_all(&[&header[..], GET].concat()).unwrap();
    let response = read_response(&mut stream).unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    assert_eq!(
        response.text(),
        "198.51.100.9 40002 https",
        "{}",
        server.log()
    );
}
