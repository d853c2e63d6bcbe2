//! Loading `[tls]`: what each bad file is called, and a stream driven over a socket pair
//! keeps the short-read rule.

use std::path::Path;

use super::*;

/// A fresh directory for one test's files.
fn dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tine-tls-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes a self-signed certificate for localhost and its key as `NAME.crt`, `NAME.key`.
fn pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

fn tls(cert: &Path, key: &Path, ca: Option<&Path>) -> Tls {
    Tls {
        cert: Some(cert.to_owned()),
        key: Some(key.to_owned()),
        ca: ca.map(Path::to_owned),
    }
}

#[test]
fn a_good_pair_loads_with_alpn_http_1_1() {
    let dir = dir("good");
    let (cert, key) = pair(&dir, "a");
    let loaded = load(&tls(&cert, &key, None)).unwrap().unwrap();
    assert_eq!(loaded.chain_len, 1);
    assert_eq!(loaded.config.alpn_protocols, [b"http/1.1".to_vec()]);
    assert_eq!(
        loaded.describe(),
        format!(
            "TLS on every listener with the certificate in {} (1 certificate in its chain)",
            cert.display()
        )
    );
    // The certificate as its own CA: clients must present one it signed.
    let loaded = load(&tls(&cert, &key, Some(&cert))).unwrap().unwrap();
    assert!(loaded.verifies_clients);
    assert!(
        load(&Tls::default()).unwrap().is_none(),
        "no cert: plain HTTP"
    );
}

#[test]
fn each_bad_file_is_named_with_its_problem() {
    let dir = dir("bad");
    let (cert, key) = pair(&dir, "a");
    let (_, other_key) = pair(&dir, "b");
    let missing = dir.join("missing.pem");
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "not pem at all\n").unwrap();
    let problem = |tls: Tls| load(&tls).unwrap_err().to_string();
    assert_eq!(
        problem(tls(&cert, &other_key, None)),
        format!(
            "tls.key {}: the key does not match the certificate in tls.cert {}",
            other_key.display(),
            cert.display()
        )
    );
    assert_eq!(
        problem(tls(&missing, &key, None)),
        format!(
            "tls.cert {}: could not read it: no such file or directory",
            missing.display()
        )
    );
    assert_eq!(
        problem(tls(&empty, &key, None)),
        format!(
            "tls.cert {}: holds no certificate (a PEM block \"-----BEGIN CERTIFICATE-----\" \
             was expected)",
            empty.display()
        )
    );
    assert!(problem(tls(&cert, &empty, None)).starts_with(&format!(
        "tls.key {}: holds no private key",
        empty.display()
    )));
    // A certificate file given as the key holds no key either.
    assert!(problem(tls(&cert, &cert, None)).contains("holds no private key"));
    assert_eq!(
        problem(tls(&cert, &key, Some(&missing))),
        format!(
            "tls.ca {}: could not read it: no such file or directory",
            missing.display()
        )
    );
}

/// A rustls client over one end of a socket pair, the server's [`TlsStream`] over the other,
/// driven by hand until `done` says so.
#[test]
fn a_read_comes_back_short_only_once_socket_and_rustls_are_drained() {
    let dir = dir("stream");
    let (cert, key) = pair(&dir, "a");
    let loaded = load(&tls(&cert, &key, None)).unwrap().unwrap();
    let (server_end, mut client_end) = mio::net::UnixStream::pair().unwrap();
    let mut server = TlsStream::new(Stream::Unix(server_end), &loaded.config).unwrap();
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(&cert).unwrap())
        .unwrap();
    let client_config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut client =
        rustls::ClientConnection::new(Arc::new(client_config), "localhost".try_into().unwrap())
            .unwrap();
    client.set_buffer_limit(None);
    let body = vec![b'x'; 100_000];
    client.writer().write_all(&body).unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 4096];
    for _ in 0..10_000 {
        while client.wants_write() {
            match client.write_tls(&mut client_end) {
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) => panic!("{err}"),
            }
        }
        match server.read(&mut buf) {
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if n < buf.len() {
                    // Short: nothing more is to be had now, from rustls or the socket.
                    assert!(matches!(
                        server.read(&mut buf),
                        Err(err) if err.kind() == io::ErrorKind::WouldBlock
                    ));
                }
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(err) => panic!("{err}"),
        }
        match client.read_tls(&mut client_end) {
            Ok(_) => {
                client.process_new_packets().unwrap();
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(err) => panic!("{err}"),
        }
        if got.len() == body.len() {
            break;
        }
    }
    assert_eq!(got.len(), body.len());
    assert_eq!(server.alpn_protocol(), None, "the client asked for none");
}
