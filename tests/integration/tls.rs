//! TLS with `[tls]`: certificates made by the tests (a CA of their own, with `rcgen`), a
//! rustls client that trusts that CA, and the real binary: the handshake and ALPN, the scheme
//! the application sees, static files, HUP with a renewed and with a broken certificate, a
//! handshake that stalls, plain HTTP on the TLS port, and client certificates.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::sys::signal::Signal;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::util::{Builder, TempDir, TestServer, WAIT, connect, toml_string};

/// The tests' own CA, which signs the server's certificates and the clients'.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
    der: CertificateDer<'static>,
}

/// A certificate and its key, PEM and DER.
struct Issued {
    chain_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for `localhost`, for a server or (with `client`) a client; its chain
    /// is the certificate then the CA's.
    fn issue(&self, client: bool) -> Issued {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Issued {
            chain_pem: format!("{}{}", cert.pem(), self.pem),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }

    /// A client that trusts this CA, asks for `http/1.1`, and presents `identity` if given.
    fn client(&self, identity: Option<&Issued>) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        let builder =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots);
        let mut config = match identity {
            Some(issued) => builder
                .with_client_auth_cert(
                    vec![issued.der.clone()],
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(issued.key_der.clone())),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

/// Where a server's certificate and key files are, written from `issued`.
struct Files {
    cert: PathBuf,
    key: PathBuf,
}

impl Files {
    fn write(dir: &Path, issued: &Issued) -> Files {
        let files = Files {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        files.replace(issued);
        files
    }

    /// What certbot does on renewal: new files at the same paths.
    fn replace(&self, issued: &Issued) {
        std::fs::write(&self.cert, &issued.chain_pem).unwrap();
        std::fs::write(&self.key, &issued.key_pem).unwrap();
    }

    fn table(&self, extra: &str) -> String {
        format!(
            "[tls]\ncert = {}\nkey = {}\n{extra}",
            toml_string(&self.cert.to_string_lossy()),
            toml_string(&self.key.to_string_lossy())
        )
    }
}

/// What every test starts from: a CA, a directory, and a server certificate the CA issued,
/// written there.
struct Setup {
    ca: Ca,
    first: Issued,
    files: Files,
    dir: TempDir,
}

impl Setup {
    fn new() -> Setup {
        let ca = Ca::new("tine test CA");
        let dir = TempDir::new();
        let first = ca.issue(false);
        let files = Files::write(dir.path(), &first);
        Setup {
            ca,
            first,
            files,
            dir,
        }
    }

    /// A server with `server` as its `[server]` keys, `tables` before `[tls]`, and
    /// `tls_extra` in it.
    fn builder(&self, server: &str, tables: &str, tls_extra: &str) -> Builder {
        TestServer::builder(server).tables(&format!("{tables}{}", self.files.table(tls_extra)))
    }

    /// A client that trusts the CA and presents no certificate.
    fn client(&self) -> Arc<ClientConfig> {
        self.ca.client(None)
    }
}

/// Reads a response head, byte by byte, so what follows stays to be read.
fn read_head(stream: &mut impl Read) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Sends `request` and reads everything up to the end of the stream.
fn exchange(stream: &mut (impl Read + Write), request: &[u8]) -> std::io::Result<Vec<u8>> {
    stream.write_all(request)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    Ok(raw)
}

/// A TLS connection to `addr`, its handshake done.
fn handshake(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
) -> StreamOwned<ClientConnection, TcpStream> {
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(Arc::clone(config), name).unwrap();
    let mut stream = StreamOwned::new(conn, connect(addr));
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .unwrap_or_else(|e| panic!("handshake with {addr}: {e}"));
    }
    stream
}

/// A response read to the connection's end: status, head, body.
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `GET target` with `Connection: close` and reads the answer to the TLS session's end,
/// which must be a clean one (the server's `close_notify`).
fn get_over(stream: &mut StreamOwned<ClientConnection, TcpStream>, target: &str) -> Answer {
    stream
        .write_all(
            format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("reading {target} ({} bytes so far): {e}", raw.len()));
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Answer {
        status,
        head,
        body: raw[end + 4..].to_vec(),
    }
}

fn get(addr: SocketAddr, config: &Arc<ClientConfig>, target: &str) -> Answer {
    get_over(&mut handshake(addr, config), target)
}

/// The certificate the server at `addr` presents.
fn served_certificate(addr: SocketAddr, config: &Arc<ClientConfig>) -> CertificateDer<'static> {
    let stream = handshake(addr, config);
    stream.conn.peer_certificates().unwrap()[0].clone()
}

#[test]
fn a_handshake_negotiates_http_1_1_and_the_request_is_served() {
    let setup = Setup::new();
    let server = setup.builder("workers = 1", "", "").start();
    let mut stream = handshake(server.addr, &setup.client());
    assert_eq!(stream.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    // Two requests on one connection, the second closing it.
    stream
        .write_all(b"GET /bytes?n=100000 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let head = read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    let mut body = vec![0u8; 100_000];
    stream.read_exact(&mut body).unwrap();
    let answer = get_over(&mut stream, "/");
    assert_eq!(answer.status, 200, "{}", answer.head);
    assert_eq!(answer.text(), "Hello, World!");
    let log = server.log();
    assert!(
        log.contains(&format!(
            "TLS on every listener with the certificate in {} (2 certificates in its chain)",
            setup.files.cert.display()
        )),
        "{log}"
    );
}

#[test]
fn plain_http_on_the_tls_port_is_answered_400_in_clear_text() {
    let setup = Setup::new();
    let server = setup.builder("workers = 1", "", "").start();
    let answer = exchange(
        &mut connect(server.addr),
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    assert!(
        answer.ends_with("The plain HTTP request was sent to HTTPS port\n"),
        "{answer}"
    );
    // And TLS still works.
    assert_eq!(get(server.addr, &setup.client(), "/").status, 200);
}

#[test]
fn static_files_go_out_encrypted_whole() {
    let setup = Setup::new();
    let root = setup.dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    // Larger than a write budget, and not a multiple of a TLS record.
    let big: Vec<u8> = (0..3_000_017u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(root.join("big.bin"), &big).unwrap();
    std::fs::write(root.join("hello.txt"), "hello, world\n").unwrap();
    let app = format!(
        "[app]\nhandler = \"static\"\nroot = {}\n",
        toml_string(&root.to_string_lossy())
    );
    let server = setup.builder("workers = 1", &app, "").start();
    let client = setup.client();
    assert_eq!(
        get(server.addr, &client, "/hello.txt").text(),
        "hello, world\n"
    );
    let answer = get(server.addr, &client, "/big.bin");
    assert_eq!(answer.status, 200, "{}", answer.head);
    assert_eq!(answer.body.len(), big.len());
    assert!(answer.body == big, "the bytes arrive as they are on disk");
    let range = exchange(
        &mut handshake(server.addr, &client),
        b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\nRange: bytes=1000000-1000009\r\n\
          Connection: close\r\n\r\n",
    )
    .unwrap();
    assert!(
        range.starts_with(b"HTTP/1.1 206 "),
        "{:?}",
        String::from_utf8_lossy(&range)
    );
    assert!(range.ends_with(&big[1_000_000..1_000_010]));
}

#[test]
fn a_hup_serves_a_renewed_certificate_to_new_connections() {
    let setup = Setup::new();
    let mut server = setup.builder("workers = 2", "", "").start();
    let client = setup.client();
    assert_eq!(served_certificate(server.addr, &client), setup.first.der);
    let old_workers = server.workers();
    let renewed = setup.ca.issue(false);
    assert_ne!(renewed.der, setup.first.der);
    setup.files.replace(&renewed);
    server.signal(Signal::SIGHUP);
    let status = server.wait_for_notify("READY=1");
    assert!(!status.contains("failed"), "{status}\n{}", server.log());
    server.wait_workers("the old workers gone", |w| {
        w.len() == 2 && w.iter().all(|pid| !old_workers.contains(pid))
    });
    assert_eq!(served_certificate(server.addr, &client), renewed.der);
    assert_eq!(get(server.addr, &client, "/").status, 200);
    assert_eq!(
        server
            .log()
            .matches("TLS on every listener with the certificate in")
            .count(),
        2,
        "at start and at the reload"
    );
}

#[test]
fn a_hup_with_a_broken_certificate_changes_nothing() {
    let setup = Setup::new();
    let files = &setup.files;
    let mut server = setup.builder("workers = 2", "", "").start();
    let client = setup.client();
    let workers = server.workers();
    // A renewal gone wrong: a new key beside the old certificate; then a file gone.
    std::fs::write(&files.key, setup.ca.issue(false).key_pem).unwrap();
    let mismatch = format!(
        "reload failed: tls.key {}: the key does not match the certificate in tls.cert {}",
        files.key.display(),
        files.cert.display()
    );
    let gone = format!(
        "reload failed: tls.cert {}: could not read it: no such file or directory",
        files.cert.display()
    );
    for (logged, broken) in [(mismatch, false), (gone, true)] {
        if broken {
            std::fs::remove_file(&files.cert).unwrap();
        }
        server.signal(Signal::SIGHUP);
        let status = server.wait_for_notify("READY=1");
        assert!(status.contains("STATUS=reload failed"), "{status}");
        let log = server.log();
        assert!(log.contains(&logged), "{log}");
        assert_eq!(server.workers(), workers, "nothing changed");
        assert_eq!(served_certificate(server.addr, &client), setup.first.der);
    }
    assert_eq!(get(server.addr, &client, "/").status, 200);
}

#[test]
fn a_start_with_a_bad_certificate_fails_and_says_which_file() {
    let setup = Setup::new();
    std::fs::write(&setup.files.cert, "").unwrap();
    let mut server = setup.builder("workers = 1", "", "").unready().start();
    assert!(!server.wait_exit().success());
    let log = server.log();
    assert!(
        log.contains(&format!(
            "tls.cert {}: holds no certificate",
            setup.files.cert.display()
        )),
        "{log}"
    );
}

#[test]
fn a_handshake_that_stalls_is_closed_after_header_timeout() {
    let setup = Setup::new();
    let server = setup
        .builder("workers = 1\nheader_timeout = \"1s\"", "", "")
        .start();
    // Half of a real ClientHello, then nothing.
    let name = ServerName::try_from("localhost").unwrap();
    let mut hello = ClientConnection::new(setup.client(), name).unwrap();
    let mut bytes = Vec::new();
    hello.write_tls(&mut bytes).unwrap();
    let mut stalled = connect(server.addr);
    stalled.write_all(&bytes[..bytes.len() / 2]).unwrap();
    // Meanwhile others are served.
    assert_eq!(get(server.addr, &setup.client(), "/").status, 200);
    let mut rest = Vec::new();
    match stalled.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(err) => panic!("the stalled handshake was not closed within {WAIT:?}: {err}"),
    }
    assert!(
        rest.is_empty(),
        "nothing is sent for half a ClientHello: {rest:?}"
    );
}

#[test]
fn with_a_ca_only_clients_with_a_certificate_it_signed_are_served() {
    let setup = Setup::new();
    let ca_file = setup.dir.path().join("ca.pem");
    std::fs::write(&ca_file, &setup.ca.pem).unwrap();
    let server = setup
        .builder(
            "workers = 1",
            "[log]\nlevel = \"debug\"\n",
            &format!("ca = {}\n", toml_string(&ca_file.to_string_lossy())),
        )
        .start();
    let with = setup.ca.client(Some(&setup.ca.issue(true)));
    assert_eq!(get(server.addr, &with, "/").status, 200);
    // Without a certificate, and with one another CA signed: refused in the handshake.
    let other = Ca::new("another CA");
    for client in [setup.client(), setup.ca.client(Some(&other.issue(true)))] {
        let name = ServerName::try_from("localhost").unwrap();
        let conn = ClientConnection::new(client, name).unwrap();
        let refused = exchange(
            &mut StreamOwned::new(conn, connect(server.addr)),
            b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        );
        assert!(refused.is_err(), "served: {refused:?}");
    }
    server.wait_log("TLS handshake failed");
    assert!(
        server.log().contains("read from 127.0.0.1:"),
        "{}",
        server.log()
    );
}

/// A server for the Python application `module:app` whose source is `code`, written beside
/// the certificates.
#[cfg(feature = "python")]
fn python(setup: &Setup, handler: &str, module: &str, code: &str) -> TestServer {
    std::fs::write(setup.dir.path().join(format!("{module}.py")), code).unwrap();
    let app = format!(
        "[app]\nhandler = \"{handler}\"\napp = \"{module}:app\"\npythonpath = [{}]\n",
        toml_string(&setup.dir.path().to_string_lossy())
    );
    setup.builder("workers = 1", &app, "").start()
}

#[cfg(feature = "python")]
#[test]
fn a_python_application_sees_https() {
    let setup = Setup::new();
    let server = python(
        &setup,
        "wsgi",
        "scheme_app",
        "def app(environ, start_response):\n\
         \x20   start_response('200 OK', [('Content-Type', 'text/plain')])\n\
         \x20   return [environ['wsgi.url_scheme'].encode()]\n",
    );
    let client = setup.client();
    assert_eq!(get(server.addr, &client, "/").text(), "https");
    // A trusted proxy's word keeps its meaning (127.0.0.1 is trusted by default).
    let raw = exchange(
        &mut handshake(server.addr, &client),
        b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-Proto: http\r\n\
          Connection: close\r\n\r\n",
    )
    .unwrap();
    assert!(
        raw.ends_with(b"\r\n\r\nhttp"),
        "{:?}",
        String::from_utf8_lossy(&raw)
    );
}

#[cfg(feature = "python")]
#[test]
fn an_asgi_websocket_over_tls_is_wss() {
    let setup = Setup::new();
    let server = python(
        &setup,
        "asgi",
        "wss_app",
        "async def app(scope, receive, send):\n\
         \x20   if scope['type'] == 'lifespan':\n\
         \x20       while True:\n\
         \x20           message = await receive()\n\
         \x20           kind = message['type'].replace('lifespan.', '')\n\
         \x20           await send({'type': f'lifespan.{kind}.complete'})\n\
         \x20           if kind == 'shutdown':\n\
         \x20               return\n\
         \x20   if scope['type'] == 'http':\n\
         \x20       await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n\
         \x20       await send({'type': 'http.response.body', 'body': scope['scheme'].encode()})\n\
         \x20       return\n\
         \x20   await receive()\n\
         \x20   await send({'type': 'websocket.accept'})\n\
         \x20   message = await receive()\n\
         \x20   await send({'type': 'websocket.send', 'text': scope['scheme'] + ' ' + message['text']})\n\
         \x20   await send({'type': 'websocket.close', 'code': 1000})\n",
    );
    let client = setup.client();
    assert_eq!(get(server.addr, &client, "/").text(), "https");
    let mut stream = handshake(server.addr, &client);
    stream
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .unwrap();
    let head = read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    // A masked text frame, "hi".
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x81, 0x80 | 2];
    frame.extend_from_slice(&mask);
    frame.extend(b"hi".iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    stream.write_all(&frame).unwrap();
    let mut header = [0u8; 2];
    stream.read_exact(&mut header).unwrap();
    assert_eq!(header[0], 0x81, "a text frame");
    let mut payload = vec![0u8; usize::from(header[1])];
    stream.read_exact(&mut payload).unwrap();
    assert_eq!(payload, b"wss hi");
    stream.read_exact(&mut header).unwrap();
    assert_eq!(header[0], 0x88, "then a close frame");
}

/// On a `proxy_protocol` listener the balancer's PROXY header comes before the TLS handshake,
/// here in the same write as the ClientHello: the header is taken off the socket and no byte
/// more, the handshake goes on, and the client it names is the one logged.
#[test]
fn a_proxy_header_before_the_handshake_names_the_client() {
    let setup = Setup::new();
    let access = setup.dir.path().join("access.log");
    let server = setup
        .builder(
            "workers = 1",
            &format!(
                "[log]\naccess_log = {}\naccess_log_format = \"{{remote}}\"\n",
                toml_string(&access.to_string_lossy())
            ),
            "",
        )
        .arg("--proxy-protocol")
        .start();
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = ClientConnection::new(setup.client(), name).unwrap();
    let mut first = b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 443\r\n".to_vec();
    conn.write_tls(&mut first).unwrap();
    let mut sock = connect(server.addr);
    sock.write_all(&first).unwrap();
    let mut stream = StreamOwned::new(conn, sock);
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .unwrap_or_else(|e| panic!("handshake after the PROXY header: {e}"));
    }
    let answer = get_over(&mut stream, "/");
    assert_eq!(answer.status, 200, "{}", answer.head);
    let logged = crate::util::wait_until(
        "the request in the access log",
        || std::fs::read_to_string(&access).unwrap_or_default(),
        |text| !text.is_empty(),
    );
    assert_eq!(logged.trim(), "203.0.113.7");
    let log = server.log();
    assert!(
        log.contains(&format!(
            "listening on https://{} (PROXY protocol)",
            server.addr
        )),
        "{log}"
    );
}

/// `--check-config` reads the certificate and key as a start would, so `systemctl reload`
/// (whose unit runs it before the HUP) fails on a renewal that went wrong.
#[test]
fn check_config_reads_the_tls_files() {
    let setup = Setup::new();
    let config = setup.dir.path().join("tine.toml");
    std::fs::write(&config, setup.files.table("")).unwrap();
    let config = config.to_string_lossy().into_owned();
    let (status, stdout, stderr) =
        crate::util::run_tine(&setup.dir, &["--check-config", "-c", &config]);
    assert!(status.success(), "{stdout}{stderr}");
    // A renewal that wrote a new certificate, but not its key.
    std::fs::write(&setup.files.cert, setup.ca.issue(false).chain_pem).unwrap();
    let (status, _, stderr) = crate::util::run_tine(&setup.dir, &["--check-config", "-c", &config]);
    assert_eq!(status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("the key does not match the certificate"),
        "{stderr}"
    );
    // Relative paths are taken from [server] chdir, where the master reads them, whatever
    // directory the check runs in (systemd's ExecStartPre runs in /).
    Files::write(setup.dir.path(), &setup.first);
    std::fs::write(
        &config,
        format!(
            "[server]\nchdir = {}\n[tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n",
            toml_string(&setup.dir.path().to_string_lossy())
        ),
    )
    .unwrap();
    let elsewhere = crate::util::TempDir::new();
    let (status, stdout, stderr) =
        crate::util::run_tine(&elsewhere, &["--check-config", "-c", &config]);
    assert!(status.success(), "{stdout}{stderr}");
}
