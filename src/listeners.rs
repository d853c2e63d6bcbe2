//! Listening sockets: bound once by the master, shared by every worker through fork, and the
//! accepted client streams the worker's event loop owns.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;

use mio::event::Source;
use mio::{Interest, Registry, Token};

use crate::config::BindAddr;
use crate::sys;

/// A bound, listening socket as the master holds it.
#[derive(Debug)]
pub enum Listener {
    /// A TCP socket.
    Tcp(std::net::TcpListener),
    /// A Unix stream socket, with the path the master removes when it exits.
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
            crate::describe_io(&self.source)
        )
    }
}

impl std::error::Error for BindError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Binds every configured address, in order; the first failure is returned and the sockets
/// already opened are closed.
pub fn bind_all(binds: &[BindAddr], backlog: u32) -> Result<Vec<Listener>, BindError> {
    binds
        .iter()
        .map(|addr| {
            let bound = match addr {
                BindAddr::Tcp(socket_addr) => {
                    sys::bind_tcp(*socket_addr, backlog).map(Listener::Tcp)
                }
                BindAddr::Unix(path) => {
                    sys::bind_unix(path, backlog).map(|l| Listener::Unix(l, path.clone()))
                }
            };
            bound.map_err(|source| BindError {
                addr: addr.clone(),
                source,
            })
        })
        .collect()
}

impl Listener {
    /// The address actually bound (with the port the kernel chose for port 0), in the same form
    /// as the config's `bind`.
    pub fn local_addr(&self) -> io::Result<BindAddr> {
        match self {
            Listener::Tcp(listener) => listener.local_addr().map(BindAddr::Tcp),
            Listener::Unix(_, path) => Ok(BindAddr::Unix(path.clone())),
        }
    }

    /// A worker's own handle on the shared socket, ready for its event loop.
    pub fn to_mio(&self) -> io::Result<MioListener> {
        Ok(match self {
            Listener::Tcp(listener) => {
                MioListener::Tcp(mio::net::TcpListener::from_std(listener.try_clone()?))
            }
            Listener::Unix(listener, _) => {
                MioListener::Unix(mio::net::UnixListener::from_std(listener.try_clone()?))
            }
        })
    }

    /// Removes a Unix socket's file; for the master's clean exit.
    pub fn remove_socket_file(&self) {
        if let Listener::Unix(_, path) = self {
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
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write_vectored(bufs),
            Stream::Unix(s) => s.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Stream {
    /// Stops further writes, so the client sees a clean end of the response stream before close.
    pub fn shutdown_write(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Write),
        };
    }
}

/// Registers whichever socket the enum holds; both enums below are plain unions of mio types.
macro_rules! delegate_source {
    ($type:ident: $($variant:ident),+) => {
        impl Source for $type {
            fn register(
                &mut self,
                registry: &Registry,
                token: Token,
                interests: Interest,
            ) -> io::Result<()> {
                match self {
                    $($type::$variant(inner) => inner.register(registry, token, interests),)+
                }
            }

            fn reregister(
                &mut self,
                registry: &Registry,
                token: Token,
                interests: Interest,
            ) -> io::Result<()> {
                match self {
                    $($type::$variant(inner) => inner.reregister(registry, token, interests),)+
                }
            }

            fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
                match self {
                    $($type::$variant(inner) => inner.deregister(registry),)+
                }
            }
        }
    };
}

delegate_source!(MioListener: Tcp, Unix);
delegate_source!(Stream: Tcp, Unix);
