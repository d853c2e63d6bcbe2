//! A worker process: one mio event loop that owns every client socket, and a fixed pool of
//! threads that run the application's handler.
//!
//! The loop accepts, reads until a whole request (head and body) is buffered, hands it to the
//! pool, and writes the response when the pool hands it back. A worker whose pool is full, or
//! that holds `max_connections` none of which is idle, stops taking connections from the shared
//! listeners, so the kernel gives them to a worker that has room.
//!
//! Each connection is a state machine (`conn.rs`); this module routes events to it and carries
//! out the actions its transitions return. When to take connections is `admission.rs`'s
//! decision; what a response has left to write is `out.rs`'s.

mod accept;
mod admission;
mod budget;
mod conn;
mod error;
mod out;
mod start;
mod sweep;

use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use mio::{Events, Poll, Token};
use signal_hook_mio::v1_0::Signals;

use crate::access_log::{self, AccessLog};
use crate::config::{BindAddr, Config};
use crate::forwarded;
use crate::handler::{
    Begin, BodyStream, Concurrent, HandlerFactory, Headers, Request, RequestBody, Response, Ticket,
    WsReply,
};
use crate::http::{DateCache, RequestHead};
use crate::listeners::{Listener, MioListener, Stream};
use crate::logging::{self, Role};
use crate::pool::{Finished, Job, Outcome, Pool, Work};
use crate::protocol::scoreboard::QUEUE_WAITS;
use crate::protocol::{self, WorkerIntent};
use crate::protocol::{RetireReason, Scoreboard, SlotHandle};
use crate::sys;

use admission::Admission;
use budget::BodyBudget;
use conn::{AccessInfo, Action, Answer, Conn, Ctx, Settings};
use error::{SetupStep, WorkerError};

const WAKER: Token = Token(0);
const SIGNALS: Token = Token(1);
const FIRST_LISTENER: usize = 2;
/// Connection tokens start here, well clear of the listeners'.
const FIRST_CONN: usize = 1 << 20;

/// How long the loop sleeps at most, so timers are checked and the heartbeat written at least
/// this often; shorter when `timeout` or `request_timeout` is short.
const MAX_TICK: Duration = Duration::from_secs(1);
/// After a clean stop, how much longer than what is left of `graceful_timeout` the worker waits
/// for its pool threads to finish and the application to be dropped; the master's own margin
/// before it kills a stopping worker is larger.
const APP_DROP_MARGIN: Duration = Duration::from_millis(500);
/// A `Handler::on_stop` slower than this is logged: it runs on the event loop.
const ON_STOP_WARN: Duration = Duration::from_millis(50);
/// How often a worker with `max_worker_memory` measures itself.
const MEMORY_CHECK_EVERY: Duration = Duration::from_secs(5);
/// The worker's scratch buffer for reads from client sockets.
const READ_CHUNK: usize = 64 * 1024;
/// With `[websocket] on_stop = "wait"`, how long before the end of a graceful stop its
/// WebSockets are sent `1001 Going Away`: the time their close handshake has.
const WS_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// What the master hands a new worker.
pub struct WorkerContext<'a> {
    /// The worker's slot, from 1.
    pub slot: usize,
    /// The config the worker runs with.
    pub config: &'a Config,
    /// The listening sockets this worker serves, and no others: closing them (at a stop)
    /// closes them in this process.
    pub listeners: Vec<Listener>,
    /// Builds the application after fork.
    pub factory: &'a dyn HandlerFactory,
    /// Where the worker asks the master to look at its scoreboard slot now (when it is up,
    /// and when it starts recycling itself): its pid, 4 bytes little-endian.
    pub report: &'a OwnedFd,
    /// The signal mask the master blocked around fork; restored once the worker's own signal
    /// handlers are in place.
    pub blocked: sys::SignalsBlocked,
    /// The shared scoreboard, and this worker's slot in it.
    pub scoreboard: &'a Scoreboard,
    /// This worker's scoreboard slot.
    pub board: usize,
    /// The user and group to switch to before any application code runs.
    pub identity: &'a sys::Identity,
    /// `[tls]`, loaded by the master: every connection accepted is served over TLS with it.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// Runs a worker until it is told to stop; never returns.
pub fn run(context: WorkerContext<'_>) -> ! {
    let slot = context.slot;
    logging::set_role(Role::Worker(slot));
    sys::set_thread_name(&format!("tine: worker {slot}"));
    crate::pool::install_panic_hook();
    match Worker::start(context) {
        Ok(mut worker) => {
            let stopped = worker.run();
            if stopped == Stopped::Abrupt {
                worker.cut_responses_short();
            }
            if let Some(access_log) = worker.access_log.as_mut() {
                access_log.finish();
            }
            if let Stopped::Clean { deadline } = stopped {
                worker.drop_application(deadline);
            }
            log::debug!("worker stopped");
            sys::exit_now(0)
        }
        Err(err) => {
            log::error!("{err}");
            sys::exit_now(err.exit_code())
        }
    }
}

/// How the event loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stopped {
    /// A graceful stop that finished every connection before `deadline`: the application is
    /// dropped before the worker exits.
    Clean { deadline: Instant },
    /// A fast stop, a graceful stop that timed out, or a failed loop: the worker exits at once.
    Abrupt,
}

/// What a stopping worker does with its idle keep-alive connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IdleConnections {
    /// Close them at once: the operator asked the server to stop.
    Close,
    /// Let each finish a request already under way: the worker is only being replaced.
    Drain,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// Finishing in-flight requests; no new connections, no keep-alive.
    Stopping {
        deadline: Instant,
    },
}

struct Worker<'a> {
    poll: Poll,
    /// Where reads from client sockets land first; see `Conn::keep`.
    scratch: Box<[u8]>,
    slot: usize,
    access_log: Option<AccessLog>,
    trusted: Arc<[forwarded::Trusted]>,
    forwarded_header: forwarded::ForwardedHeader,
    board: SlotHandle<'a>,
    report: std::fs::File,
    signals: Signals,
    listeners: Vec<MioListener>,
    /// What the worker knows of each listener, by the same index; kept when the listeners
    /// themselves are dropped at a stop.
    listener_info: Vec<ListenerInfo>,
    /// Connections refused on `proxy_protocol` listeners for coming from a peer not in
    /// `forwarded_allow_ips`, which a flood would otherwise turn into a flood of warnings.
    untrusted_proxies: accept::Refusals,
    /// Whether the listeners are registered with the loop.
    accepting: bool,
    /// The load that decides whether to take connections.
    admission: Admission,
    pool: Pool,
    conns: Vec<Option<Conn<Stream>>>,
    free: Vec<usize>,
    next_serial: u64,
    phase: Phase,
    dates: DateCache,
    /// What every connection goes by.
    settings: Settings,
    /// Every connection accepted is wrapped in TLS with this (`[tls]`).
    tls: Option<Arc<rustls::ServerConfig>>,
    /// `[limits] body_memory` and `body_disk`: what the bodies being received may hold.
    budget: Rc<BodyBudget>,
    /// By connection index: the response being written, kept from its `Log` (when the
    /// scoreboard records it) to its `Sent` (when the access log does, with the bytes sent).
    responses: Vec<Option<Answer>>,
    graceful_timeout: Duration,
    /// Recycle after this many requests, jitter included; `None` never.
    max_requests: Option<u64>,
    max_worker_memory: u64,
    /// `[server] timeout`: how long a concurrent application may take nothing the worker
    /// sends it before it counts as blocked.
    app_block_limit: Duration,
    /// `[websocket] on_stop`: when a stopping worker closes its WebSockets.
    ws_on_stop: crate::config::OnStop,
    /// Open WebSockets (connections after their `101`).
    websockets: usize,
    /// The WebSockets were sent `1001 Going Away` (the worker is stopping).
    websockets_closed: bool,
    served: u64,
    tick: Duration,
    last_memory_check: Instant,
    master_pid: u32,
    finished: Vec<Finished>,
    /// The actions of the transition being carried out; kept for its allocation.
    actions: VecDeque<Action>,
    /// Connections (index, serial) that stopped writing (or spilling a body being read) at
    /// their budget with the socket still ready: edge-triggered readiness will not report them
    /// again, so the loop resumes them.
    write_backlog: Vec<(usize, u64)>,
}

impl<'a> Worker<'a> {
    fn run(&mut self) -> Stopped {
        let mut events = Events::with_capacity(1024);
        let mut last_sweep = Instant::now();
        loop {
            let wait = if !self.write_backlog.is_empty() {
                Duration::ZERO
            } else {
                self.admission.wait(Instant::now(), self.tick)
            };
            // The jobs this round queued, their threads woken together before the loop waits.
            self.pool.wake();
            if let Err(err) = self.poll.poll(&mut events, Some(wait))
                && err.kind() != io::ErrorKind::Interrupted
            {
                log::error!("event loop failed: {err}; stopping");
                return Stopped::Abrupt;
            }
            for event in events.iter() {
                match event.token() {
                    WAKER => self.on_finished(),
                    SIGNALS => {
                        if self.on_signals() {
                            return Stopped::Abrupt;
                        }
                    }
                    Token(n) if n >= FIRST_CONN => {
                        let readable = event.is_readable() || event.is_read_closed();
                        self.drive(n - FIRST_CONN, |conn, ctx| conn.on_event(readable, ctx));
                    }
                    Token(n) => self.on_listener(n - FIRST_LISTENER),
                }
            }
            self.drive_backlog();
            self.accept_waiting();
            let now = Instant::now();
            if now.duration_since(last_sweep) >= self.tick {
                last_sweep = now;
                self.sweep(now);
                if let Some(access_log) = self.access_log.as_mut() {
                    access_log.tick();
                }
                self.beat();
            }
            if let Phase::Stopping { deadline } = self.phase {
                if !self.websockets_closed && now + WS_CLOSE_GRACE >= deadline {
                    self.close_websockets();
                }
                if self.admission.load.live == 0 {
                    return Stopped::Clean { deadline };
                }
                if now >= deadline {
                    log::warn!(
                        "graceful stop timed out after {:?} with {} connections open ({} requests in flight); exiting",
                        self.graceful_timeout,
                        self.admission.load.live,
                        self.admission.load.in_flight
                    );
                    return Stopped::Abrupt;
                }
            }
        }
    }

    /// Stops the pool and drops the application, so its destructors run (flushing, closing
    /// connections) before the worker exits; bounded by what is left of the graceful stop.
    /// A pool thread still stuck in a handler, or a destructor that does not return in time,
    /// is left behind: the worker exits anyway.
    fn drop_application(self, deadline: Instant) {
        let limit = deadline.saturating_duration_since(Instant::now()) + APP_DROP_MARGIN;
        let Worker { pool, .. } = self;
        if !pool.shutdown_within(limit) {
            log::warn!(
                "the application was not dropped within {limit:?} (a request or its destructor \
                 is still running); exiting without it"
            );
        }
    }

    /// Returns true when the worker must exit now.
    fn on_signals(&mut self) -> bool {
        let pending: Vec<i32> = self.signals.pending().collect();
        for signal in pending {
            match WorkerIntent::from_signal(signal) {
                WorkerIntent::GracefulStop => self.begin_stop("SIGTERM", IdleConnections::Close),
                // Replaced by a reload or an upgrade, or by an operator: drain rather than
                // reset anything, and tell the master, which starts a replacement if it
                // did not ask for this itself.
                WorkerIntent::Drain => self.retire(RetireReason::Replaced),
                WorkerIntent::ReopenLogs => {
                    match logging::reopen() {
                        // In the new file: the line that says this worker writes there now.
                        Ok(()) => log::info!("log files reopened"),
                        Err(err) => log::error!("could not reopen the error log: {err}"),
                    }
                    if let Some(access_log) = self.access_log.as_mut() {
                        access_log.reopen();
                    }
                }
                WorkerIntent::FastStop | WorkerIntent::Abort | WorkerIntent::Kill => {
                    log::info!("fast stop on signal {signal}");
                    return true;
                }
            }
        }
        false
    }

    /// Stops taking work because of `reason` and announces it to the master, which starts a
    /// replacement at once; the worker finishes what it has, then exits.
    fn retire(&mut self, reason: RetireReason) {
        if self.phase != Phase::Running {
            return;
        }
        self.board.retire(reason);
        if let Err(err) = self.report_to_master() {
            // The master still sees the slot on its next heartbeat check.
            log::warn!("could not tell the master this worker is recycling: {err}");
        }
        self.begin_stop(&reason.to_string(), IdleConnections::Drain);
    }

    /// Wakes the master to read this worker's scoreboard slot.
    fn report_to_master(&mut self) -> io::Result<()> {
        self.report
            .write_all(&protocol::encode_report(std::process::id()))
    }

    fn begin_stop(&mut self, why: &str, idle_connections: IdleConnections) {
        if self.phase != Phase::Running {
            return;
        }
        log::debug!(
            "graceful stop ({why}): finishing {} requests in flight, closing idle connections",
            self.admission.load.in_flight
        );
        self.phase = Phase::Stopping {
            deadline: Instant::now() + self.graceful_timeout,
        };
        // First, so the other workers stop leaving connections to this one (its offer goes)
        // while the application hears of the stop.
        let _ = self.set_accepting(false);
        self.tell_application_stopping();
        if self.ws_on_stop == crate::config::OnStop::Close {
            self.close_websockets();
        }
        self.listeners.clear();
        let idle_wait = self.settings.idle_wait();
        let now = Instant::now();
        for index in 0..self.conns.len() {
            match idle_connections {
                // A request may be waiting in the socket, unread: take it in (it is answered
                // with `Connection: close`) rather than drop it with the connection.
                IdleConnections::Close => self.drive(index, |conn, ctx| {
                    conn.read(ctx);
                    if conn.is_idle() {
                        conn.close(ctx);
                    }
                }),
                // Closing a keep-alive connection races with a request the client may be
                // sending right now; give it a moment to arrive (it is then answered with
                // `Connection: close`) and close the connection once it has been quiet.
                IdleConnections::Drain => {
                    if let Some(conn) = self.conns[index].as_mut() {
                        conn.drain(idle_wait, now);
                    }
                }
            }
        }
    }

    /// A stopping worker sends each of its WebSockets `1001 Going Away`, so their clients
    /// reconnect (to the workers that replace it).
    fn close_websockets(&mut self) {
        self.websockets_closed = true;
        if self.websockets == 0 {
            return;
        }
        log::info!("closing {} WebSockets (1001 Going Away)", self.websockets);
        for index in 0..self.conns.len() {
            self.drive(index, Conn::go_away);
        }
    }

    /// Calls the application's [`Handler::on_stop`](crate::handler::Handler::on_stop), here on
    /// the loop, so it runs even when every pool thread is busy.
    fn tell_application_stopping(&self) {
        let started = Instant::now();
        let handler = self.pool.handler();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler.on_stop()));
        if outcome.is_err() {
            log::error!("the application's on_stop panicked");
        }
        let took = started.elapsed();
        if took > ON_STOP_WARN {
            log::warn!(
                "the application's on_stop took {took:?}; it runs on the event loop and should \
                 return at once"
            );
        }
    }

    /// Publishes this worker's progress to the master.
    fn beat(&self) {
        self.board.beat(sys::monotonic_ms());
        self.board.queue_waits(&QUEUE_WAITS);
    }

    /// Runs a transition of the connection at `index`, if it is open, and carries out the
    /// actions it returns.
    fn drive(&mut self, index: usize, transition: impl FnOnce(&mut Conn<Stream>, &mut Ctx<'_>)) {
        let mut actions = std::mem::take(&mut self.actions);
        if let Some(serial) = self.step(index, &mut actions, transition) {
            while let Some(action) = actions.pop_front() {
                match action {
                    // The write's own actions join the queue, behind what came before it.
                    Action::Write => {
                        self.step(index, &mut actions, Conn::write);
                    }
                    Action::Withdraw => {
                        if self.withdraw(index, serial) {
                            self.step(index, &mut actions, Conn::withdrawn);
                        }
                    }
                    other => self.carry_out(index, serial, other),
                }
            }
        }
        self.actions = actions;
    }

    /// Runs one transition of the connection at `index`, its actions added to `actions`;
    /// returns the connection's serial, or `None` when there is no connection there.
    fn step(
        &mut self,
        index: usize,
        actions: &mut VecDeque<Action>,
        transition: impl FnOnce(&mut Conn<Stream>, &mut Ctx<'_>),
    ) -> Option<u64> {
        let conn = self.conns.get_mut(index).and_then(Option::as_mut)?;
        let mut ctx = Ctx {
            settings: &self.settings,
            scratch: &mut self.scratch,
            dates: &mut self.dates,
            stopping: self.phase != Phase::Running,
            budget: &self.budget,
            actions,
        };
        transition(conn, &mut ctx);
        Some(conn.serial)
    }

    /// Does what a connection's transition asked for.
    fn carry_out(&mut self, index: usize, serial: u64, action: Action) {
        match action {
            Action::Dispatch { head, body } => {
                self.dispatch(index, serial, head, body, Begin::Whole);
            }
            Action::Begin { head } => {
                self.dispatch(
                    index,
                    serial,
                    head,
                    RequestBody::default(),
                    Begin::BodyFollows,
                );
            }
            Action::Upgrade { head, subprotocols } => self.dispatch(
                index,
                serial,
                head,
                RequestBody::default(),
                Begin::WebSocket { subprotocols },
            ),
            Action::Upgraded => {
                self.websockets += 1;
                self.board.websockets(self.websockets);
                if self.websockets_closed {
                    // Accepted after the others were told to go away.
                    self.drive(index, Conn::go_away);
                }
            }
            Action::Message(message) => {
                self.tell_app(index, serial, |app, ticket| app.message(ticket, message));
            }
            Action::Closed { code, reason } => {
                self.tell_app(index, serial, |app, ticket| {
                    app.closed(ticket, code, reason)
                });
            }
            Action::Body { chunk, more } => {
                self.tell_app(index, serial, |app, ticket| app.body(ticket, chunk, more));
            }
            Action::Pull(producer) => {
                self.admission.load.pulls += 1;
                self.pool.submit(Job {
                    conn: index,
                    serial,
                    work: Work::NextChunk(producer),
                });
            }
            Action::Discard(producer) => self.discard(index, serial, producer),
            Action::Log(answer) => self.record(index, answer),
            Action::Sent(bytes) => self.log_access(index, bytes),
            Action::Gone => self.tell_app(index, serial, |app, ticket| app.gone(ticket)),
            Action::Write | Action::Withdraw => debug_assert!(false, "drive does these itself"),
            Action::Backlog => self.write_backlog.push((index, serial)),
            Action::Close => self.forget(index),
        }
    }

    /// Tells a concurrent application about its request on the connection at `index`; a
    /// handler that is not concurrent has nothing to be told.
    fn tell_app(&self, index: usize, serial: u64, tell: impl FnOnce(&dyn Concurrent, Ticket)) {
        if let Some(concurrent) = self.pool.handler().concurrent() {
            tell(
                concurrent,
                Ticket {
                    conn: index,
                    serial,
                },
            );
        }
    }

    /// Hands a request to the pool; one whose body follows, or a WebSocket's, to a concurrent
    /// application.
    fn dispatch(
        &mut self,
        index: usize,
        serial: u64,
        head: RequestHead,
        body: RequestBody,
        begin: Begin,
    ) {
        let Some(conn) = self.conns.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        let RequestHead {
            method,
            target,
            version,
            headers,
            ..
        } = head;
        let mut request = Request::builder(&method, &target)
            .version(version)
            .headers(Headers::from_fields(headers))
            .peer(conn.peer)
            .trusted(Arc::clone(&self.trusted))
            .forwarded_header(self.forwarded_header)
            .tls(conn.stream.is_tls() || conn.balancer_tls)
            .body_parts(body);
        if let Some(info) = self.listener_info.get(conn.listener) {
            request = request.listener(Arc::clone(&info.addr));
        }
        let mut request = request.build();
        if self.access_log.is_some() {
            let text = |name: &str| {
                request
                    .header(name)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default()
            };
            conn.set_access(AccessInfo {
                remote: request
                    .client_addr()
                    .map_or_else(|| "-".to_owned(), |ip| ip.to_string()),
                method: request.method().to_owned(),
                target: request.target().to_owned(),
                version: request.version().as_str(),
                user_agent: text("User-Agent"),
                referer: text("Referer"),
            });
        }
        self.admission.hand_over(index);
        request.mark_queued();
        match self.pool.handler().concurrent() {
            Some(concurrent) if begin != Begin::Whole => {
                concurrent.start(
                    Ticket {
                        conn: index,
                        serial,
                    },
                    request,
                    begin,
                );
            }
            _ => self.pool.submit(Job {
                conn: index,
                serial,
                work: Work::Request(request),
            }),
        }
        self.update_accepting();
    }

    /// Records a response on the scoreboard, before its first byte goes out, and keeps it
    /// for the access log, which has its line once the response is over.
    fn record(&mut self, index: usize, answer: Answer) {
        self.board.record(answer.status, answer.micros);
        // A refused body's 503 is one of these: its count is out with it.
        self.board.bodies_refused(self.budget.refused());
        if self.access_log.is_none() {
            return;
        }
        if self.responses.len() <= index {
            self.responses.resize_with(index + 1, || None);
        }
        self.responses[index] = Some(answer);
    }

    /// Writes the access log line of the response just over at `index`: `bytes` of its body
    /// went out.
    fn log_access(&mut self, index: usize, bytes: u64) {
        let Some(answer) = self.responses.get_mut(index).and_then(Option::take) else {
            return;
        };
        let Some(log) = self.access_log.as_mut() else {
            return;
        };
        let info = answer.access.as_ref();
        // A request that never parsed has only its peer.
        let peer = match info {
            Some(_) => String::new(),
            None => self
                .conns
                .get(index)
                .and_then(Option::as_ref)
                .and_then(|conn| conn.peer)
                .map_or_else(|| "-".to_owned(), |p| p.ip().to_string()),
        };
        log.log(&access_log::Entry {
            time: SystemTime::now(),
            remote: info.map_or(peer.as_str(), |i| i.remote.as_str()),
            method: info.map_or("-", |i| i.method.as_str()),
            target: info.map_or("-", |i| i.target.as_str()),
            version: info.map_or("-", |i| i.version),
            status: answer.status,
            bytes,
            duration_us: answer.micros,
            user_agent: info.map_or("", |i| i.user_agent.as_str()),
            referer: info.map_or("", |i| i.referer.as_str()),
            worker: self.slot,
        });
    }

    fn on_finished(&mut self) {
        let mut finished = std::mem::take(&mut self.finished);
        self.pool.take_finished(&mut finished);
        for Finished {
            conn,
            serial,
            outcome,
        } in finished.drain(..)
        {
            match outcome {
                Outcome::Response { response, .. } => {
                    if self.pool.handler().concurrent().is_none() {
                        // A concurrent application's request counts until its `TaskDone`.
                        self.admission.load.in_flight -= 1;
                    }
                    self.served += 1;
                    if let Some(limit) = self.max_requests
                        && self.served >= limit
                    {
                        // Before the response goes out, so it carries `Connection: close`.
                        self.retire(RetireReason::MaxRequests(self.served));
                    }
                    self.write_response(conn, serial, response);
                }
                Outcome::Chunk(chunk, producer) => {
                    self.admission.load.pulls -= 1;
                    self.on_chunk(conn, serial, Some((chunk, producer)));
                }
                Outcome::StreamEnded => {
                    self.admission.load.pulls -= 1;
                    self.on_chunk(conn, serial, None);
                }
                Outcome::TaskDone => self.admission.load.in_flight -= 1,
                Outcome::WantBody => {
                    if self.is_current(conn, serial) {
                        self.drive(conn, Conn::want_body);
                    }
                }
                Outcome::StreamFailed => {
                    self.admission.load.pulls -= 1;
                    if self.is_current(conn, serial) {
                        self.drive(conn, Conn::app_failed);
                    }
                }
                Outcome::WebSocket(reply) => self.on_websocket(conn, serial, reply),
            }
        }
        self.finished = finished;
        self.update_accepting();
    }

    /// Carries out what a concurrent application said about its WebSocket.
    fn on_websocket(&mut self, conn: usize, serial: u64, reply: WsReply) {
        match reply {
            WsReply::Accept {
                subprotocol,
                headers,
            } => {
                self.served += 1;
                // An accepted WebSocket is a connection from now on, not a request in flight:
                // it counts against max_connections, not the application's concurrency (its
                // task sends no `Done`).
                self.admission.load.in_flight -= 1;
                if self.is_current(conn, serial) {
                    self.drive(conn, |c, ctx| c.accept(subprotocol, headers, ctx));
                }
            }
            WsReply::Message(message) => {
                self.admission.load.pulls -= 1;
                if self.is_current(conn, serial) {
                    self.drive(conn, |c, ctx| c.ws_send(message, ctx));
                }
            }
            WsReply::Close { code, reason } => {
                self.admission.load.pulls -= 1;
                if self.is_current(conn, serial) {
                    self.drive(conn, |c, ctx| c.ws_app_close(code, &reason, ctx));
                }
            }
        }
    }

    /// Takes the request of the connection at `index` back from the pool if no thread has
    /// started it (its client left); returns whether it did.
    fn withdraw(&mut self, index: usize, serial: u64) -> bool {
        if self.pool.withdraw(index, serial).is_none() {
            return false;
        }
        self.admission.load.in_flight -= 1;
        true
    }

    /// Whether the connection at `index` is still the one with `serial`.
    fn is_current(&self, index: usize, serial: u64) -> bool {
        self.conns
            .get(index)
            .and_then(Option::as_ref)
            .is_some_and(|conn| conn.serial == serial)
    }

    /// Hands a stream the loop no longer needs to a pool thread to drop.
    fn discard(&mut self, index: usize, serial: u64, producer: BodyStream) {
        self.pool.submit(Job {
            conn: index,
            serial,
            work: Work::Discard(producer),
        });
    }

    /// Gives a streamed body's next chunk (or its end) to its connection.
    fn on_chunk(&mut self, index: usize, serial: u64, next: Option<(Vec<u8>, BodyStream)>) {
        if self.is_current(index, serial) {
            self.drive(index, |conn, ctx| conn.take_chunk(next, ctx));
        } else if let Some((_, producer)) = next {
            self.discard(index, serial, producer);
        }
    }

    /// Gives the application's answer to its connection; one whose connection is gone is
    /// dropped.
    fn write_response(&mut self, index: usize, serial: u64, response: Response) {
        if self.is_current(index, serial) {
            self.drive(index, |conn, ctx| conn.respond(response, ctx));
        } else if let Some(producer) = response.into_parts().2.into_stream() {
            self.discard(index, serial, producer);
        }
    }

    /// Continues the writes (or a body's reads) that a connection paused at its budget.
    fn drive_backlog(&mut self) {
        let mut backlog = std::mem::take(&mut self.write_backlog);
        for (index, serial) in backlog.drain(..) {
            if self.is_current(index, serial) {
                self.drive(index, |conn, ctx| conn.on_event(false, ctx));
            }
        }
        if self.write_backlog.is_empty() {
            // Keep the allocation for the next turn.
            self.write_backlog = backlog;
        }
    }

    /// At an abrupt stop, closes the connections still writing a response, so the access
    /// log records what went out of each.
    fn cut_responses_short(&mut self) {
        for index in 0..self.responses.len() {
            if self.responses[index].is_some() {
                self.drive(index, Conn::close);
            }
        }
    }

    /// Forgets a closed connection.
    fn forget(&mut self, index: usize) {
        let Some(conn) = self.conns.get_mut(index).and_then(Option::take) else {
            return;
        };
        if conn.was_websocket() {
            self.websockets -= 1;
            self.board.websockets(self.websockets);
        }
        let requests = conn.requests();
        drop(conn);
        if let Some(response) = self.responses.get_mut(index) {
            *response = None;
        }
        // No deregister: closing the socket (dropping `conn`) takes it out of epoll, and the
        // socket is never shared with another descriptor. One system call less per connection.
        self.free.push(index);
        self.admission.closed(index, requests, Instant::now());
        self.update_accepting();
    }
}

/// What a worker knows of one of its listeners.
struct ListenerInfo {
    /// The address bound, for the requests it brings in.
    addr: Arc<BindAddr>,
    /// Its connections begin with a PROXY protocol header (`[server] bind`'s
    /// `proxy_protocol`, in this worker's config: a reload that changes it changes it for the
    /// new workers, on the same socket).
    proxy_protocol: bool,
}

/// Takes over the listening sockets this worker serves, with what it knows of each by the
/// same index; `proxy_protocol` lists the configured addresses that take PROXY headers.
fn take_listeners(
    owned: Vec<Listener>,
    proxy_protocol: &[BindAddr],
) -> Result<(Vec<MioListener>, Vec<ListenerInfo>), WorkerError> {
    let mut listeners = Vec::with_capacity(owned.len());
    let mut info = Vec::with_capacity(owned.len());
    for listener in owned {
        let addr = listener
            .local_addr()
            .map_err(|e| WorkerError::Setup(SetupStep::ListenerAddress, e))?;
        info.push(ListenerInfo {
            addr: Arc::new(addr),
            proxy_protocol: proxy_protocol.iter().any(|p| listener.serves(p)),
        });
        listeners.push(listener.into_mio());
    }
    Ok((listeners, info))
}

fn peer_text(peer: Option<SocketAddr>) -> String {
    peer.map_or_else(|| "a unix socket client".to_owned(), |p| p.to_string())
}
