//! The sweep: timing out idle, slow and stuck connections, and noticing what else the worker
//! must react to without an event (an orphaned worker, its own memory).

use std::time::{Duration, Instant};

use super::conn::{Conn, Expired};
use super::{IdleConnections, MEMORY_CHECK_EVERY, Phase, Worker, peer_text};
use crate::handler::Ticket;
use crate::http::HttpError;
use crate::protocol::RetireReason;
use crate::sys;

impl Worker<'_> {
    /// Once a second: time out idle, slow and stuck connections, and notice an orphaned worker.
    pub(super) fn sweep(&mut self, now: Instant) {
        if self.phase == Phase::Running && std::os::unix::process::parent_id() != self.master_pid {
            log::warn!("the master (pid {}) is gone; stopping", self.master_pid);
            self.begin_stop("master gone", IdleConnections::Close);
        }
        if self.phase == Phase::Running && !self.accepting {
            self.update_accepting();
        }
        if self.max_worker_memory > 0
            && now.duration_since(self.last_memory_check) >= MEMORY_CHECK_EVERY
        {
            self.last_memory_check = now;
            match sys::private_memory() {
                Ok(bytes) if bytes > self.max_worker_memory => {
                    self.retire(RetireReason::Memory(bytes));
                }
                Ok(_) => {}
                Err(err) => log::warn!("could not measure this worker's memory: {err}"),
            }
        }
        self.check_app_blocked(now);
        let mut oldest_dispatch: Option<Instant> = None;
        for index in 0..self.conns.len() {
            let Some(conn) = self.conns[index].as_ref() else {
                continue;
            };
            // The producer of a stream, not the client, may be behind: the write clock waits
            // for it, and request_timeout bounds it as it bounds a handler.
            if let Some(since) = conn.app_since() {
                oldest_dispatch = Some(oldest_dispatch.map_or(since, |t| t.min(since)));
            }
            match conn.expiry(now, self.settings.request_timeout) {
                None => {}
                Some(Expired::Request(ran)) => self.request_timed_out(index, ran),
                Some(Expired::Stream(ran)) => self.stream_timed_out(index, ran),
                Some(expired) => self.drive(index, |conn, ctx| conn.on_expired(expired, ctx)),
            }
        }
        let oldest_ms = oldest_dispatch.map_or(0, |t| {
            let age = now.duration_since(t).as_millis() as u64;
            sys::monotonic_ms().saturating_sub(age).max(1)
        });
        self.board.oldest_request(oldest_ms);
    }

    /// A concurrent application that has taken nothing the worker sent it for longer than
    /// `[server] timeout` is blocked (code that never yields to its event loop): where it is
    /// stuck is logged, and the worker replaces itself, as the master replaces a worker whose
    /// own loop is stuck.
    fn check_app_blocked(&mut self, now: Instant) {
        if self.phase != Phase::Running || self.app_block_limit.is_zero() {
            return;
        }
        let Some(concurrent) = self.pool.handler().concurrent() else {
            return;
        };
        let Some(since) = concurrent.waiting_since() else {
            return;
        };
        let waited = now.saturating_duration_since(since);
        if waited <= self.app_block_limit {
            return;
        }
        log::error!(
            "the application's event loop has taken nothing from this worker for {:.1} s \
             (timeout is {:?}): it is blocked; replacing this worker",
            waited.as_secs_f64(),
            self.app_block_limit
        );
        concurrent.blocked(waited);
        self.retire(RetireReason::Blocked(waited.as_millis() as u64));
    }

    /// Closes a connection whose stream took longer than `request_timeout` to produce its next
    /// chunk (its head is out, so a 504 is no longer possible; the client sees the body cut
    /// short), and recycles the worker, whose thread is stuck in the stream.
    pub(super) fn stream_timed_out(&mut self, index: usize, ran: Duration) {
        let Some(conn) = self.conns.get(index).and_then(Option::as_ref) else {
            return;
        };
        if let Some(concurrent) = self.pool.handler().concurrent() {
            // Its task is cancelled; no thread is stuck, so the worker serves on.
            log::warn!(
                "a streamed response to {} produced no chunk within request_timeout ({:?}); \
                 closed the connection and cancelled its request",
                peer_text(conn.peer),
                self.settings.request_timeout
            );
            concurrent.cancel(Ticket {
                conn: index,
                serial: conn.serial,
            });
            self.drive(index, Conn::close);
            return;
        }
        log::warn!(
            "a streamed response to {} produced no chunk within request_timeout ({:?}); closed \
             the connection and recycling this worker",
            peer_text(conn.peer),
            self.settings.request_timeout
        );
        if let Some(thread) = self.pool.thread_running(index, conn.serial) {
            let what = format!("the streamed response to {}", peer_text(conn.peer));
            self.pool.handler().request_stuck(thread, &what);
        }
        self.drive(index, Conn::close);
        self.retire(RetireReason::RequestTimeout(ran.as_millis() as u64));
    }

    /// Answers a request whose handler ran past `request_timeout` with 504, so the client is
    /// not left hanging, and recycles the worker: its thread is stuck, and only a new process
    /// gets it back. The other requests in flight finish first.
    pub(super) fn request_timed_out(&mut self, index: usize, ran: Duration) {
        let Some(conn) = self.conns.get(index).and_then(Option::as_ref) else {
            return;
        };
        let label = conn.label().unwrap_or("a request").to_owned();
        if let Some(concurrent) = self.pool.handler().concurrent() {
            // Its task is cancelled; no thread is stuck, so the worker serves on.
            log::warn!(
                "{label} from {} ran past request_timeout ({:?}); answered 504 and cancelled it",
                peer_text(conn.peer),
                self.settings.request_timeout
            );
            concurrent.cancel(Ticket {
                conn: index,
                serial: conn.serial,
            });
            self.answer_504(index);
            return;
        }
        log::warn!(
            "{label} from {} ran past request_timeout ({:?}); answered 504 and recycling this worker",
            peer_text(conn.peer),
            self.settings.request_timeout
        );
        if let Some(thread) = self.pool.thread_running(index, conn.serial) {
            self.pool.handler().request_stuck(thread, &label);
        }
        self.answer_504(index);
        self.retire(RetireReason::RequestTimeout(ran.as_millis() as u64));
    }

    /// Answers 504 for a request the application did not answer in time. Its answer, if it
    /// ever comes, finds the connection no longer waiting and is dropped.
    fn answer_504(&mut self, index: usize) {
        self.drive(index, |conn, ctx| {
            conn.fail(
                &HttpError {
                    status: 504,
                    reason: "the application did not answer in time",
                },
                ctx,
            );
        });
    }
}
