//! Taking connections: the listeners' registration as [`Admission`](super::admission::Admission)
//! decides it, accepting, and a new connection's first read.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use mio::{Interest, Token};

use super::conn::Conn;
use super::{FIRST_CONN, FIRST_LISTENER, Phase, Worker};
use crate::listeners::Stream;

impl Worker<'_> {
    /// Re-weighs whether to take connections after the load changed, and publishes the load.
    pub(super) fn update_accepting(&mut self) {
        let load = self.admission.load;
        self.board.load(self.admission.busy(), load.live);
        if self.phase != Phase::Running {
            return;
        }
        let room = self.admission.decide(Instant::now());
        if let Err(err) = self.set_accepting(room) {
            log::error!("could not change listener registration: {err}");
        }
    }

    /// A full worker still takes one waiting connection every
    /// [`ACCEPT_NUDGE`](super::admission::ACCEPT_NUDGE); see
    /// [`Admission::nudge`](super::admission::Admission::nudge).
    pub(super) fn nudge_accept(&mut self) {
        if self.phase != Phase::Running || !self.admission.nudge(Instant::now()) {
            return;
        }
        for index in 0..self.listeners.len() {
            match self.listeners[index].accept() {
                Ok((stream, peer)) => {
                    self.add_conn(stream, peer, index);
                    return;
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) => log::debug!("accept: {err}"),
            }
        }
    }

    pub(super) fn set_accepting(&mut self, on: bool) -> io::Result<()> {
        if self.accepting == on {
            return Ok(());
        }
        let registry = self.poll.registry();
        for (i, listener) in self.listeners.iter_mut().enumerate() {
            if on {
                registry.register(listener, Token(FIRST_LISTENER + i), Interest::READABLE)?;
            } else {
                registry.deregister(listener)?;
            }
        }
        self.accepting = on;
        Ok(())
    }

    pub(super) fn on_listener(&mut self, index: usize) {
        loop {
            if !self.accepting {
                return;
            }
            let Some(listener) = self.listeners.get(index) else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => self.add_conn(stream, peer, index),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) if is_transient_accept_error(&err) => {
                    log::debug!("accept: {err}");
                    continue;
                }
                Err(err) => {
                    // Out of file descriptors or memory: stop taking connections for now; the
                    // sweep turns accepting back on, so this cannot spin.
                    log::error!("accept failed: {err}; pausing accepts");
                    let _ = self.set_accepting(false);
                    return;
                }
            }
        }
    }

    pub(super) fn add_conn(
        &mut self,
        mut stream: Stream,
        peer: Option<SocketAddr>,
        listener: usize,
    ) {
        let index = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        let token = Token(FIRST_CONN + index);
        if let Err(err) = self.poll.registry().register(
            &mut stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            log::error!("could not watch a new connection: {err}");
            self.free.push(index);
            return;
        }
        self.next_serial += 1;
        self.conns[index] = Some(Conn::new(
            stream,
            peer,
            listener,
            self.next_serial,
            &self.settings,
        ));
        self.admission.load.live += 1;
        self.admission.load.fresh += 1;
        self.update_accepting();
        // The client may already have sent its request; edge-triggered events for data that
        // arrived before registration are not guaranteed, so look now.
        self.drive(index, Conn::read);
    }
}

/// Errors from `accept` that concern only the one connection (it was reset before we took it).
fn is_transient_accept_error(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::ECONNABORTED | libc::EPROTO | libc::EPERM)
    )
}
