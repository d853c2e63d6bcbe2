//! Listening sockets: bound once by the master, shared by every worker through fork, and the
//! accepted client streams the worker's event loop owns.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use mio::event::Source;
use mio::{Interest, Registry, Token};

use crate::config::BindAddr;
use crate::sys;

pub mod tls;

use tls::TlsStream;

/// A bound, listening socket as the master holds it, with the config address it serves.
#[derive(Debug)]
pub struct Listener {
    /// The address as configured (`127.0.0.1:0` stays port 0 here): a reload keeps the
    /// socket whose configured address is still listed.
    pub bind: BindAddr,
    /// Handed over by systemd (socket activation): kept whatever `bind` says.
    pub activated: bool,
    socket: Socket,
}

#[derive(Debug)]
enum Socket {
    Tcp(std::net::TcpListener),
    /// With the path the master removes when it exits.
    Unix(std::os::unix::net::UnixListener, PathBuf),
}

/// Binding one address failed.
#[derive(Debug)]
pub struct BindError {
    /// The address as configured.
    pub addr: BindAddr,
    /// What the OS said.
    pub source: io::Error,
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "could not bind {}: {}",
            self.addr,
            crate::text::describe_io(&self.source)
        )
    }
}

impl std::error::Error for BindError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// How Unix sockets are created: `[server] socket_mode` and `socket_owner`, resolved.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnixOptions {
    /// Permission bits.
    pub mode: Option<u32>,
    /// Owner and group ids.
    pub owner: Option<(Option<u32>, Option<u32>)>,
}

/// Binds every address of `binds` that no listener in `existing` serves yet, in order; the
/// first failure is returned and the sockets opened by this call are closed.
pub fn bind_missing(
    binds: &[BindAddr],
    existing: &[Listener],
    backlog: u32,
    unix: &UnixOptions,
) -> Result<Vec<Listener>, BindError> {
    binds
        .iter()
        .filter(|addr| !existing.iter().any(|l| l.serves(addr)))
        .map(|addr| {
            let bound = match addr {
                BindAddr::Tcp(socket_addr) => sys::bind_tcp(*socket_addr, backlog).map(Socket::Tcp),
                BindAddr::Unix(path) => sys::bind_unix(path, backlog, unix.mode, unix.owner)
                    // Absolute, so the file is still found to remove after `chdir`.
                    .map(|l| Socket::Unix(l, std::path::absolute(path).unwrap_or(path.clone()))),
            };
            bound
                .map(|socket| Listener {
                    bind: addr.clone(),
                    activated: false,
                    socket,
                })
                .map_err(|source| BindError {
                    addr: addr.clone(),
                    source,
                })
        })
        .collect()
}

impl Listener {
    /// Takes over an inherited listening socket (from systemd or from the master that started
    /// this one). `name` is its configured address when the giver knew it.
    pub fn adopt(fd: OwnedFd, name: Option<&str>, activated: bool) -> io::Result<Listener> {
        let (socket, local) = match sys::socket_local_addr(&fd)? {
            sys::SocketName::Tcp(addr) => {
                let listener = std::net::TcpListener::from(fd);
                listener.set_nonblocking(true)?;
                (Socket::Tcp(listener), BindAddr::Tcp(addr))
            }
            sys::SocketName::Unix(path) => {
                let listener = std::os::unix::net::UnixListener::from(fd);
                listener.set_nonblocking(true)?;
                (Socket::Unix(listener, path.clone()), BindAddr::Unix(path))
            }
        };
        let bind = name
            .and_then(|n| n.parse::<BindAddr>().ok())
            .unwrap_or(local);
        Ok(Listener {
            bind,
            activated,
            socket,
        })
    }

    /// Whether this socket serves the configured address `addr`.
    pub fn serves(&self, addr: &BindAddr) -> bool {
        &self.bind == addr
    }

    /// Whether a config whose `bind` is `binds` keeps this socket: it lists its address, or
    /// the socket came from systemd, whose sockets are kept whatever the config says.
    pub fn kept_by(&self, binds: &[BindAddr]) -> bool {
        self.activated || binds.iter().any(|b| self.serves(b))
    }

    /// The address actually bound (with the port the kernel chose for port 0), in the same form
    /// as the config's `bind`.
    pub fn local_addr(&self) -> io::Result<BindAddr> {
        match &self.socket {
            Socket::Tcp(listener) => listener.local_addr().map(BindAddr::Tcp),
            Socket::Unix(_, path) => Ok(BindAddr::Unix(path.clone())),
        }
    }

    /// The socket's file descriptor, for handing it to a new master on upgrade.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.socket {
            Socket::Tcp(listener) => listener.as_fd(),
            Socket::Unix(listener, _) => listener.as_fd(),
        }
    }

    /// The socket as a worker's event loop holds it; dropping that closes it in the worker.
    pub fn into_mio(self) -> MioListener {
        match self.socket {
            Socket::Tcp(listener) => MioListener::Tcp(mio::net::TcpListener::from_std(listener)),
            Socket::Unix(listener, _) => {
                MioListener::Unix(mio::net::UnixListener::from_std(listener))
            }
        }
    }

    /// Removes a Unix socket's file; for the master's clean exit, and for a listener a reload
    /// dropped. Sockets systemd handed over belong to systemd and are left alone.
    pub fn remove_socket_file(&self) {
        if let Socket::Unix(_, path) = &self.socket
            && !self.activated
        {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A listening socket registered in a worker's event loop.
#[derive(Debug)]
pub enum MioListener {
    /// TCP.
    Tcp(mio::net::TcpListener),
    /// Unix stream.
    Unix(mio::net::UnixListener),
}

impl MioListener {
    /// The socket the event loop registers.
    fn source(&mut self) -> &mut dyn Source {
        match self {
            MioListener::Tcp(listener) => listener,
            MioListener::Unix(listener) => listener,
        }
    }

    /// Accepts one connection; `WouldBlock` when the queue is empty. TCP streams get
    /// `TCP_NODELAY`, since responses are written whole and Nagle would only delay them.
    pub fn accept(&self) -> io::Result<(Stream, Option<SocketAddr>)> {
        match self {
            MioListener::Tcp(listener) => {
                let (stream, peer) = listener.accept()?;
                // Without NODELAY a response still works, only later; not worth failing over.
                let _ = stream.set_nodelay(true);
                Ok((Stream::Tcp(stream), Some(peer)))
            }
            MioListener::Unix(listener) => {
                let (stream, _) = listener.accept()?;
                Ok((Stream::Unix(stream), None))
            }
        }
    }
}

/// An accepted client connection.
#[derive(Debug)]
pub enum Stream {
    /// Over TCP.
    Tcp(mio::net::TcpStream),
    /// Over a Unix socket.
    Unix(mio::net::UnixStream),
    /// TLS over one of the others (`[tls]`).
    Tls(Box<TlsStream>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write_vectored(bufs),
            Stream::Unix(s) => s.write_vectored(bufs),
            Stream::Tls(s) => s.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Stream {
    /// Wraps a stream just accepted in TLS with `config`; the handshake happens in its reads
    /// and writes.
    ///
    /// # Errors
    ///
    /// What rustls says when it cannot start a connection with `config`.
    pub fn into_tls(
        self,
        config: &std::sync::Arc<rustls::ServerConfig>,
    ) -> Result<Stream, rustls::Error> {
        Ok(Stream::Tls(Box::new(TlsStream::new(self, config)?)))
    }

    /// The socket the event loop registers: for TLS, the one below it.
    fn source(&mut self) -> &mut dyn Source {
        match self {
            Stream::Tcp(stream) => stream,
            Stream::Unix(stream) => stream,
            Stream::Tls(tls) => tls.raw_mut().source(),
        }
    }

    /// Whether the connection is over TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// Stops further writes, so the client sees a clean end of the response stream before
    /// close; over TLS, a `close_notify` goes first.
    pub fn shutdown_write(&mut self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Write),
            Stream::Tls(s) => {
                s.shutdown_write();
                Ok(())
            }
        };
    }

    /// The descriptor of the socket itself (below TLS).
    pub fn socket_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
            Stream::Tls(s) => s.raw().socket_fd(),
        }
    }

    /// Writes what TLS holds of earlier writes; a plain socket holds nothing back.
    ///
    /// # Errors
    ///
    /// The socket's, when writing to it failed.
    pub fn flush_pending(&mut self) -> io::Result<tls::Flushed> {
        match self {
            Stream::Tls(s) => s.flush_pending(),
            Stream::Tcp(_) | Stream::Unix(_) => Ok(tls::Flushed::NOTHING_HELD),
        }
    }
}

/// Registers the socket each type's `source()` names: both enums are unions of mio
/// types (a TLS stream's socket being the one below it).
macro_rules! delegate_source {
    ($($type:ident),+) => {$(
        impl Source for $type {
            fn register(
                &mut self,
                registry: &Registry,
                token: Token,
                interests: Interest,
            ) -> io::Result<()> {
                self.source().register(registry, token, interests)
            }

            fn reregister(
                &mut self,
                registry: &Registry,
                token: Token,
                interests: Interest,
            ) -> io::Result<()> {
                self.source().reregister(registry, token, interests)
            }

            fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
                self.source().deregister(registry)
            }
        }
    )+};
}

delegate_source!(MioListener, Stream);
