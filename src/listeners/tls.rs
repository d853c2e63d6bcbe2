//! TLS with rustls: the server config the master builds from `[tls]` (and builds again on each
//! reload), and the client stream a worker wraps in it.
//!
//! The master reads the PEM files before the workers switch user, and the
//! `Arc<ServerConfig>` it builds is what the workers it forks inherit. A worker's
//! [`TlsStream`] is driven entirely by its event loop: the handshake happens inside the
//! connection's reads and writes, never on a pool thread, and never blocks.
//!
//! What the connection's state machine relies on, and this stream keeps:
//! - a read that returns fewer bytes than asked means the socket is drained *and* rustls holds
//!   no more plaintext: [`TlsStream::read`] goes on reading and decrypting until the caller's
//!   buffer is full or the socket says `WouldBlock` or ends;
//! - ciphertext rustls could not hand to the kernel is flushed by
//!   [`TlsStream::flush_pending`], which says how much went and whether any is left (the
//!   former counts as a write's progress, for `body_timeout`); a write is refused
//!   (`WouldBlock`) while any is, so rustls holds at most one write's worth
//!   ([`BUFFER_LIMIT`]) for a slow client.

use std::fmt;
use std::fs::File;
use std::io::{self, IoSlice, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::Stream;
use crate::config::Tls;

/// Most bytes of ciphertext (and of plaintext before the handshake ends) rustls buffers for
/// one connection.
pub const BUFFER_LIMIT: usize = 64 * 1024;
/// Most bytes of a file region read and encrypted per call of [`TlsStream::send_file`]: one
/// TLS record's worth.
const FILE_CHUNK: usize = 16 * 1024;
/// What a client that speaks plain HTTP to a TLS listener is told, in clear text, as nginx
/// tells it.
const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
Content-Type: text/plain\r\n\
Content-Length: 46\r\n\
Connection: close\r\n\
\r\n\
The plain HTTP request was sent to HTTPS port\n";

/// What a flush of the ciphertext rustls holds did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flushed {
    /// Bytes written to the socket.
    pub bytes: usize,
    /// Whether none is left.
    pub all: bool,
}

impl Flushed {
    /// A plain socket's: it holds nothing back.
    pub const NOTHING_HELD: Flushed = Flushed {
        bytes: 0,
        all: true,
    };
}

/// The TLS config built from `[tls]`, with what the log says about it.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// What every connection of a TLS listener is served with.
    pub config: Arc<ServerConfig>,
    /// The certificate file served.
    pub cert: PathBuf,
    /// How many certificates its chain holds.
    pub chain_len: usize,
    /// Whether clients must present a certificate (`[tls] ca`).
    pub verifies_clients: bool,
}

impl Loaded {
    /// What is served, for the log.
    pub fn describe(&self) -> String {
        let clients = if self.verifies_clients {
            "; clients must present a certificate signed by tls.ca"
        } else {
            ""
        };
        format!(
            "TLS on every listener with the certificate in {} ({} in its chain){clients}",
            self.cert.display(),
            plural(self.chain_len, "certificate")
        )
    }
}

fn plural(count: usize, thing: &str) -> String {
    if count == 1 {
        format!("1 {thing}")
    } else {
        format!("{count} {thing}s")
    }
}

/// One of the `[tls]` files could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError {
    /// The key that names the file: `tls.cert`, `tls.key` or `tls.ca`.
    pub key: &'static str,
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it, and what to do.
    pub problem: String,
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.key, self.path.display(), self.problem)
    }
}

impl std::error::Error for TlsError {}

/// Reads `[tls]`'s files and builds the server config: `None` when `cert` is not set (plain
/// HTTP). Each problem names its file.
///
/// # Errors
///
/// A file that cannot be read, holds no certificate or key, or is not valid PEM; a key that
/// does not match the certificate, or that rustls cannot use; a CA certificate that cannot be
/// one.
pub fn load(tls: &Tls) -> Result<Option<Loaded>, TlsError> {
    let (Some(cert_path), Some(key_path)) = (&tls.cert, &tls.key) else {
        return Ok(None);
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = read_certificates("tls.cert", cert_path)?;
    let key = read_key(key_path)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(rustls::DEFAULT_VERSIONS)
        .map_err(|err| TlsError {
            key: "tls.cert",
            path: cert_path.clone(),
            problem: format!("rustls refused its protocol versions: {err}"),
        })?;
    let builder = match &tls.ca {
        Some(ca_path) => builder.with_client_cert_verifier(client_verifier(ca_path, provider)?),
        None => builder.with_no_client_auth(),
    };
    let chain_len = chain.len();
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|err| key_problem(err, key_path, cert_path))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Loaded {
        config: Arc::new(config),
        cert: cert_path.clone(),
        chain_len,
        verifies_clients: tls.ca.is_some(),
    }))
}

/// Reads a file, naming it and its key when it cannot be.
fn read_file(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|err| TlsError {
        key,
        path: path.to_owned(),
        problem: format!("could not read it: {}", crate::text::describe_io(&err)),
    })
}

/// The certificates of a PEM file, in order; at least one.
fn read_certificates(
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read_file(key, path)?;
    let problem = |problem: String| TlsError {
        key,
        path: path.to_owned(),
        problem,
    };
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| problem(format!("not valid PEM: {err}")))?;
    if chain.is_empty() {
        return Err(problem(
            "holds no certificate (a PEM block \"-----BEGIN CERTIFICATE-----\" was expected)"
                .to_owned(),
        ));
    }
    Ok(chain)
}

/// The private key of a PEM file.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read_file("tls.key", path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|err| TlsError {
        key: "tls.key",
        path: path.to_owned(),
        problem: match err {
            rustls_pki_types::pem::Error::NoItemsFound => {
                "holds no private key (a PEM block \"PRIVATE KEY\", \"RSA PRIVATE KEY\" or \
                 \"EC PRIVATE KEY\" was expected; an encrypted key must be decrypted first)"
                    .to_owned()
            }
            other => format!("not valid PEM: {other}"),
        },
    })
}

/// What rustls said of the pair, as a problem of the key file.
fn key_problem(err: rustls::Error, key_path: &Path, cert_path: &Path) -> TlsError {
    let problem = match err {
        rustls::Error::InconsistentKeys(_) => format!(
            "the key does not match the certificate in tls.cert {}",
            cert_path.display()
        ),
        other => format!("the key cannot be used with the certificate: {other}"),
    };
    TlsError {
        key: "tls.key",
        path: key_path.to_owned(),
        problem,
    }
}

/// Requires client certificates signed by one of the CA certificates in `path`.
fn client_verifier(
    path: &Path,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let problem = |problem: String| TlsError {
        key: "tls.ca",
        path: path.to_owned(),
        problem,
    };
    let mut roots = RootCertStore::empty();
    for (index, certificate) in read_certificates("tls.ca", path)?.into_iter().enumerate() {
        roots
            .add(certificate)
            .map_err(|err| problem(format!("certificate {} cannot be a CA: {err}", index + 1)))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|err| problem(format!("cannot verify clients with it: {err}")))
}

/// A client connection over TLS: the socket below (TCP or Unix) and rustls's state.
pub struct TlsStream {
    conn: ServerConnection,
    raw: Stream,
}

impl fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsStream")
            .field("raw", &self.raw)
            .field("handshaking", &self.conn.is_handshaking())
            .finish()
    }
}

impl TlsStream {
    /// Begins serving TLS on `raw`, a stream just accepted; the handshake happens in the
    /// reads and writes that follow.
    ///
    /// # Errors
    ///
    /// What rustls says when it cannot start a connection with `config`.
    pub fn new(raw: Stream, config: &Arc<ServerConfig>) -> Result<TlsStream, rustls::Error> {
        let mut conn = ServerConnection::new(Arc::clone(config))?;
        conn.set_buffer_limit(Some(BUFFER_LIMIT));
        Ok(TlsStream { conn, raw })
    }

    /// The socket below TLS, for what comes before the handshake (a PROXY protocol header).
    pub fn raw_mut(&mut self) -> &mut Stream {
        &mut self.raw
    }

    /// The socket below TLS.
    pub fn raw(&self) -> &Stream {
        &self.raw
    }

    /// The protocol ALPN settled on, if the client asked for one.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    /// Writes the ciphertext rustls holds to the socket, until none is left or the socket is
    /// full (a writable event comes then): how many bytes went, and whether any are left.
    ///
    /// # Errors
    ///
    /// The socket's, when writing to it failed.
    pub fn flush_pending(&mut self) -> io::Result<Flushed> {
        let mut flushed = Flushed {
            bytes: 0,
            all: false,
        };
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.raw) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => flushed.bytes += n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(flushed),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        flushed.all = true;
        Ok(flushed)
    }

    /// Flushes, and says whether everything is out.
    fn flushed_all(&mut self) -> io::Result<bool> {
        self.flush_pending().map(|flushed| flushed.all)
    }

    /// Ends the TLS session: `close_notify`, written if the socket takes it now.
    pub fn close_notify(&mut self) {
        self.conn.send_close_notify();
        let _ = self.flush_pending();
    }

    /// Ends the TLS session (`close_notify`, best effort), then stops further writes.
    pub fn shutdown_write(&mut self) {
        self.close_notify();
        self.raw.shutdown_write();
    }

    /// Encrypts up to `count` bytes of `file` from `offset` (read with `pread`), advancing it,
    /// as `sendfile` would send them.
    ///
    /// # Errors
    ///
    /// `WouldBlock` while earlier ciphertext waits for the socket; the file's or the socket's
    /// errors.
    pub fn send_file(&mut self, file: &File, offset: &mut u64, count: usize) -> io::Result<usize> {
        if !self.flushed_all()? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let mut chunk = [0u8; FILE_CHUNK];
        let want = count.min(FILE_CHUNK);
        let read = file.read_at(&mut chunk[..want], *offset)?;
        if read == 0 {
            return Ok(0);
        }
        let taken = self.encrypt(&[IoSlice::new(&chunk[..read])])?;
        *offset += taken as u64;
        Ok(taken)
    }

    /// Hands plaintext to rustls (as much as its buffer takes) and writes what it can of the
    /// ciphertext; how many plaintext bytes were taken.
    fn encrypt(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let taken = self.conn.writer().write_vectored(bufs)?;
        if taken == 0 && bufs.iter().any(|b| !b.is_empty()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        // What the socket does not take now waits for the next writable event; a failed
        // socket shows itself at the next write.
        let _ = self.flush_pending();
        Ok(taken)
    }

    /// Processes the ciphertext read so far: handshake messages are answered (their answer
    /// written when the socket takes it), records decrypted. A client that is not speaking TLS
    /// at all (plain HTTP) is answered 400 in clear text first.
    fn process(&mut self) -> io::Result<()> {
        match self.conn.process_new_packets() {
            Ok(_) => {
                let _ = self.flush_pending();
                Ok(())
            }
            Err(err) => {
                let handshaking = self.conn.is_handshaking();
                if handshaking
                    && err
                        == rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)
                {
                    // Not a TLS record: most likely `http://` to an `https://` port. The
                    // answer fits in an empty socket buffer; if it does not, the close says
                    // enough.
                    let _ = self.raw.write(PLAIN_HTTP_ANSWER);
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "plain HTTP sent to a TLS listener; answered 400",
                    ));
                }
                // The alert rustls queued tells the client why.
                let _ = self.flush_pending();
                let what = if handshaking {
                    "TLS handshake failed"
                } else {
                    "TLS failed"
                };
                Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{what}: {err}"),
                ))
            }
        }
    }
}

impl Read for TlsStream {
    /// Fills `buf` with plaintext, reading and decrypting until it is full or the socket has
    /// nothing more (`WouldBlock`, or its end): so a short read means both the socket and
    /// rustls are drained. `Ok(0)` is the end of the stream, with or without `close_notify`.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        // The bytes decrypted first: a failure comes again with the next read.
        let failed = |filled: usize, err: io::Error| if filled > 0 { Ok(filled) } else { Err(err) };
        loop {
            while filled < buf.len() {
                match self.conn.reader().read(&mut buf[filled..]) {
                    // The client's close_notify: nothing follows.
                    Ok(0) => return Ok(filled),
                    Ok(n) => filled += n,
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                    // The socket ended without close_notify: an end all the same (HTTP frames
                    // its own messages, so no truncation goes unnoticed).
                    Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Ok(filled),
                    Err(err) => return failed(filled, err),
                }
            }
            if filled == buf.len() {
                return Ok(filled);
            }
            match self.conn.read_tls(&mut self.raw) {
                // At the end too: what rustls still holds is taken on the next turn, then the
                // reader says the stream is over.
                Ok(_) => {
                    if let Err(err) = self.process() {
                        return failed(filled, err);
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return failed(filled, err),
            }
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    /// Encrypts what rustls's buffer takes of `bufs`, once the ciphertext of earlier writes is
    /// in the kernel; `WouldBlock` until then.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if !self.flushed_all()? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.encrypt(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.flushed_all()? {
            true => Ok(()),
            false => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

#[cfg(test)]
mod tests;
