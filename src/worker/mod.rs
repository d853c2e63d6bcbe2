//! A worker process: one mio event loop that owns every client socket, and a fixed pool of
//! threads that run the application's handler.
//!
//! The loop accepts, reads until a whole request (head and body) is buffered, hands it to the
//! pool, and writes the response when the pool hands it back. A worker whose pool is full, or
//! that holds `max_connections`, stops taking connections from the shared listeners, so the
//! kernel gives them to a worker that has room.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook_mio::v1_0::Signals;

use crate::access_log::{self, AccessLog};
use crate::config::{BindAddr, Config};
use crate::forwarded;
use crate::handler::{Body, BodyStream, HandlerFactory, Headers, Request, Response, WorkerInfo};
use crate::http::{self, DateCache, Decoded, Decoder, HttpError, RequestHead, Version};
use crate::listeners::{Listener, MioListener, Stream};
use crate::logging::{self, Role};
use crate::pool::{Finished, Job, Outcome, Pool, Work};
use crate::scoreboard::{RetireReason, Scoreboard, SlotHandle};
use crate::sys;

/// Exit code of a worker that could not build its application (gunicorn's `WORKER_BOOT_ERROR`).
pub const EXIT_APP_BUILD_FAILED: i32 = 3;
/// Exit code of a worker that could not set up its event loop or pool.
pub const EXIT_SETUP_FAILED: i32 = 4;
/// Exit code of a worker that could not switch to the configured user and group.
pub const EXIT_PRIVILEGES_FAILED: i32 = 5;

/// Whether a worker's exit code says it failed while starting, before serving anything: at
/// start-up the master stops rather than restart workers that can never come up.
pub fn is_boot_failure(code: i32) -> bool {
    matches!(
        code,
        EXIT_APP_BUILD_FAILED | EXIT_SETUP_FAILED | EXIT_PRIVILEGES_FAILED
    )
}

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
/// When a worker recycles itself, how long an idle keep-alive connection stays open for a
/// request that may already be on its way.
const DRAIN_IDLE: Duration = Duration::from_secs(1);
/// How often a worker with `max_worker_memory` measures itself.
const MEMORY_CHECK_EVERY: Duration = Duration::from_secs(5);
/// How long a closing connection keeps draining the client's unread bytes, so the close does
/// not turn into a reset that destroys the response in flight.
const LINGER: Duration = Duration::from_secs(2);
/// How long a full worker leaves connections in the kernel's queue before it takes one
/// anyway (see `Worker::nudge_accept`).
const ACCEPT_NUDGE: Duration = Duration::from_millis(50);
/// The worker's scratch buffer for reads from client sockets.
const READ_CHUNK: usize = 64 * 1024;
/// Most bytes one connection writes before the loop turns to other connections; a client that
/// takes more than this at once resumes after the next poll.
const WRITE_BUDGET: usize = 1 << 20;
/// Once a request body is going to a file, decoded bytes are written out in pieces of at least
/// this many, so a body trickling in does not cost a write per read.
const SPILL_CHUNK: usize = 64 * 1024;
/// Most buffers handed to one `writev`.
const MAX_IOVECS: usize = 16;
/// A streamed body's next chunk is asked for once less than this is left to write, so the
/// producer works while the socket drains, and a connection never holds much more than this
/// plus one chunk.
const LOW_WATER: usize = 64 * 1024;

/// What the master hands a new worker.
pub struct WorkerContext<'a> {
    /// The worker's slot, from 1.
    pub slot: usize,
    /// The config the worker runs with.
    pub config: &'a Config,
    /// The shared listening sockets.
    pub listeners: &'a [&'a Listener],
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
            if let Some(access_log) = worker.access_log.as_mut() {
                access_log.finish();
            }
            if let Stopped::Clean { deadline } = stopped {
                worker.drop_application(deadline);
            }
            log::debug!("worker stopped");
            sys::exit_now(0)
        }
        Err((code, message)) => {
            log::error!("{message}");
            sys::exit_now(code)
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnState {
    /// Waiting for, or reading, a request.
    Reading,
    /// The request is with the pool.
    InPool,
    /// Writing a response.
    Writing,
    /// Response done, write side shut; draining what the client still sends, then closing.
    Lingering,
}

struct Conn {
    stream: Stream,
    peer: Option<SocketAddr>,
    /// Index of the listener that accepted it.
    listener: usize,
    serial: u64,
    state: ConnState,
    decoder: Decoder,
    /// Bytes read from the client; `read_start..read_end` are not yet decoded.
    read_buf: Vec<u8>,
    read_start: usize,
    read_end: usize,
    /// The response being written: its head and any bytes body (or the chunks of a stream
    /// so far), then its file region, or the rest of its stream.
    out: OutQueue,
    file: Option<FileOut>,
    streamed: Option<StreamOut>,
    /// The temporary file the request body being read goes to, once it outgrew `body_buffer`.
    spill: Option<Spill>,
    keep_alive: bool,
    /// When the connection's current wait runs out (idle, reading, writing or lingering).
    deadline: Instant,
    /// The version and method of the request being answered, which shape the response.
    version: Version,
    head_request: bool,
    /// When the request now with the pool was handed over, and (with `request_timeout` on)
    /// its method and target for the log line should it run too long.
    dispatched_at: Instant,
    label: Option<String>,
    /// What the access log records about the request being answered (only with a log).
    access: Option<AccessInfo>,
    /// The socket may hold bytes not yet read: set by a readable event and by a read that
    /// filled the buffer, cleared by a short read. Saves the read that would only say EAGAIN.
    unread: bool,
    /// Whether this connection has handed a request to the pool yet; until then it counts
    /// against the worker's room, so one worker cannot take a whole burst of connections.
    fresh: bool,
    /// A response that must not be cut short by a reset: drain what the client still sends
    /// before closing (error responses, whose request may not have been read in full).
    linger: bool,
}

/// The request's side of an access log line, kept from dispatch to response.
struct AccessInfo {
    remote: String,
    method: String,
    target: String,
    version: &'static str,
    user_agent: String,
    referer: String,
}

impl Conn {
    fn pending_input(&self) -> &[u8] {
        &self.read_buf[self.read_start..self.read_end]
    }

    /// Whether every byte of the response is out.
    fn response_sent(&self) -> bool {
        self.out.is_empty() && self.file.is_none() && self.streamed.is_none()
    }

    /// Takes the stream's producer for a pool thread to pull the next chunk, when it is with
    /// the loop and little is left to write.
    fn producer_to_pull(&mut self) -> Option<BodyStream> {
        if self.out.unsent() >= LOW_WATER {
            return None;
        }
        match self.streamed.take() {
            Some(StreamOut::Ready {
                producer,
                chunked,
                remaining,
            }) => {
                self.streamed = Some(StreamOut::Pulling {
                    chunked,
                    remaining,
                    since: Instant::now(),
                });
                Some(producer)
            }
            other => {
                self.streamed = other;
                None
            }
        }
    }

    /// The socket's descriptor, for `sendfile`.
    fn socket_fd(&self) -> BorrowedFd<'_> {
        match &self.stream {
            Stream::Tcp(stream) => stream.as_fd(),
            Stream::Unix(stream) => stream.as_fd(),
        }
    }
}

struct Worker<'a> {
    poll: Poll,
    /// Since when the worker has been too full to take connections.
    paused_since: Option<Instant>,
    /// Where reads from client sockets land first; see `read_more`.
    scratch: Box<[u8]>,
    slot: usize,
    access_log: Option<AccessLog>,
    trusted: Arc<[forwarded::Trusted]>,
    board: SlotHandle<'a>,
    report: std::fs::File,
    signals: Signals,
    listeners: Vec<MioListener>,
    /// Each listener's address, by the same index, for the requests it brings in; kept when
    /// the listeners themselves are dropped at a stop.
    listener_addrs: Vec<Arc<BindAddr>>,
    accepting: bool,
    pool: Pool,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    live_conns: usize,
    /// Connections accepted that have not yet handed a request to the pool.
    fresh_conns: usize,
    in_flight: usize,
    next_serial: u64,
    phase: Phase,
    dates: DateCache,
    limits: http::Limits,
    /// Request bodies larger than this go to a temporary file as they arrive.
    body_buffer: u64,
    threads: usize,
    max_connections: usize,
    keepalive: Duration,
    header_timeout: Duration,
    body_timeout: Duration,
    request_timeout: Duration,
    graceful_timeout: Duration,
    /// Recycle after this many requests, jitter included; `None` never.
    max_requests: Option<u64>,
    max_worker_memory: u64,
    served: u64,
    tick: Duration,
    last_memory_check: Instant,
    master_pid: u32,
    finished: Vec<Finished>,
    /// "Next chunk" jobs with the pool.
    pulls: usize,
    /// Connections (index, serial) that stopped writing at their budget with the socket still
    /// writable: edge-triggered readiness will not report them again, so the loop resumes them.
    write_backlog: Vec<(usize, u64)>,
}

impl<'a> Worker<'a> {
    fn start(context: WorkerContext<'a>) -> Result<Worker<'a>, (i32, String)> {
        let setup = |what: &str, err: io::Error| (EXIT_SETUP_FAILED, format!("{what}: {err}"));
        let config = context.config;
        let poll = Poll::new().map_err(|e| setup("could not create the event loop", e))?;
        let mut signals = Signals::new([SIGTERM, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2])
            .map_err(|e| setup("could not install signal handlers", e))?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .map_err(|e| setup("could not watch signals", e))?;
        context
            .blocked
            .restore()
            .map_err(|e| setup("could not unblock signals", e))?;
        sys::drop_privileges(context.identity).map_err(|err| {
            (
                EXIT_PRIVILEGES_FAILED,
                format!(
                    "could not switch to the configured user and group: {}",
                    crate::describe_io(&err)
                ),
            )
        })?;

        let threads = config.server.threads.get();
        let info = WorkerInfo {
            slot: context.slot,
            pid: std::process::id(),
            threads,
            app: config.app.clone(),
        };
        let handler = context.factory.build(&info).map_err(|err| {
            (
                EXIT_APP_BUILD_FAILED,
                format!(
                    "could not build the {} application: {err}",
                    config.app.handler
                ),
            )
        })?;
        let waker = Waker::new(poll.registry(), WAKER)
            .map_err(|e| setup("could not create the pool's waker", e))?;
        let pool = Pool::start(threads, handler, waker, &format!("w{}", context.slot))
            .map_err(|e| setup("could not start the thread pool", e))?;

        let mut listeners = Vec::with_capacity(context.listeners.len());
        let mut listener_addrs = Vec::with_capacity(context.listeners.len());
        for listener in context.listeners {
            listeners.push(
                listener
                    .to_mio()
                    .map_err(|e| setup("could not take over a listening socket", e))?,
            );
            let addr = listener
                .local_addr()
                .map_err(|e| setup("could not read a listening socket's address", e))?;
            listener_addrs.push(Arc::new(addr));
        }
        let server = &config.server;
        let max_requests = (server.max_requests > 0)
            .then(|| server.max_requests + jitter(server.max_requests_jitter));
        let tick = [server.timeout / 4, server.request_timeout / 4]
            .into_iter()
            .filter(|d| !d.is_zero())
            .fold(MAX_TICK, Duration::min)
            .max(Duration::from_millis(10));
        let board = context.scoreboard.handle(context.board);
        let report = context
            .report
            .try_clone()
            .map(std::fs::File::from)
            .map_err(|e| setup("could not take over the report pipe", e))?;
        let access_log = match &config.log.access_log {
            Some(target) => Some(
                AccessLog::open(target, config.log.access_log_format.clone())
                    .map_err(|e| setup("could not open the access log", e))?,
            ),
            None => None,
        };
        let mut worker = Worker {
            poll,
            paused_since: None,
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
            slot: context.slot,
            access_log,
            trusted: Arc::from(server.forwarded_allow_ips.as_slice()),
            board,
            report,
            signals,
            listeners,
            listener_addrs,
            accepting: false,
            pool,
            conns: Vec::new(),
            free: Vec::new(),
            live_conns: 0,
            fresh_conns: 0,
            in_flight: 0,
            next_serial: 0,
            phase: Phase::Running,
            dates: DateCache::new(),
            limits: config.limits.http(),
            body_buffer: config.limits.body_buffer,
            threads,
            max_connections: server.max_connections.get(),
            keepalive: server.keepalive,
            header_timeout: server.header_timeout,
            body_timeout: server.body_timeout,
            request_timeout: server.request_timeout,
            graceful_timeout: server.graceful_timeout,
            max_requests,
            max_worker_memory: server.max_worker_memory,
            served: 0,
            tick,
            last_memory_check: Instant::now(),
            master_pid: std::os::unix::process::parent_id(),
            finished: Vec::new(),
            pulls: 0,
            write_backlog: Vec::new(),
        };
        worker
            .set_accepting(true)
            .map_err(|e| setup("could not watch the listening sockets", e))?;
        // The master counts the worker as up once it reads this.
        worker.board.ready(std::process::id());
        worker.beat();
        worker
            .report_to_master()
            .map_err(|e| setup("could not report readiness", e))?;
        log::debug!(
            "worker up: {threads} threads, {} listeners",
            worker.listeners.len()
        );
        Ok(worker)
    }

    fn run(&mut self) -> Stopped {
        let mut events = Events::with_capacity(1024);
        let mut last_sweep = Instant::now();
        loop {
            let wait = if !self.write_backlog.is_empty() {
                Duration::ZERO
            } else if let Some(since) = self.paused_since {
                ACCEPT_NUDGE.saturating_sub(since.elapsed()).min(self.tick)
            } else {
                self.tick
            };
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
                    Token(n) if n >= FIRST_CONN => self.on_conn_event(
                        n - FIRST_CONN,
                        event.is_readable() || event.is_read_closed(),
                    ),
                    Token(n) => self.on_listener(n - FIRST_LISTENER),
                }
            }
            self.drive_backlog();
            self.nudge_accept();
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
                if self.live_conns == 0 {
                    return Stopped::Clean { deadline };
                }
                if now >= deadline {
                    log::warn!(
                        "graceful stop timed out after {:?} with {} connections open ({} requests in flight); exiting",
                        self.graceful_timeout,
                        self.live_conns,
                        self.in_flight
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
            match signal {
                SIGTERM => self.begin_stop("SIGTERM", IdleConnections::Close),
                // Replaced by a reload or an upgrade, or by an operator: drain rather than
                // reset anything, and tell the master, which starts a replacement if it
                // did not ask for this itself.
                SIGUSR2 => self.retire(RetireReason::Replaced),
                SIGUSR1 => {
                    if let Err(err) = logging::reopen() {
                        log::error!("could not reopen the error log: {err}");
                    }
                    if let Some(access_log) = self.access_log.as_mut() {
                        access_log.reopen();
                    }
                }
                _ => {
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
        self.report.write_all(&std::process::id().to_le_bytes())
    }

    fn begin_stop(&mut self, why: &str, idle_connections: IdleConnections) {
        if self.phase != Phase::Running {
            return;
        }
        log::debug!(
            "graceful stop ({why}): finishing {} requests in flight, closing idle connections",
            self.in_flight
        );
        self.phase = Phase::Stopping {
            deadline: Instant::now() + self.graceful_timeout,
        };
        self.tell_application_stopping();
        let _ = self.set_accepting(false);
        self.listeners.clear();
        let idle_wait = self.idle_wait();
        let now = Instant::now();
        for index in 0..self.conns.len() {
            if idle_connections == IdleConnections::Close {
                // A request may be waiting in the socket, unread: take it in (it is answered
                // with `Connection: close`) rather than drop it with the connection.
                self.drive_read(index);
            }
            let Some(conn) = self.conns[index].as_mut() else {
                continue;
            };
            let idle = conn.state == ConnState::Reading
                && conn.decoder.is_idle()
                && conn.pending_input().is_empty();
            if !idle {
                continue;
            }
            match idle_connections {
                IdleConnections::Close => self.close(index),
                IdleConnections::Drain => {
                    // Closing a keep-alive connection races with a request the client may be
                    // sending right now; give it a moment to arrive (it is then answered with
                    // `Connection: close`) and close the connection once it has been quiet.
                    let last_active = conn.deadline.checked_sub(idle_wait).unwrap_or(now);
                    conn.deadline = conn.deadline.min((last_active + DRAIN_IDLE).max(now));
                }
            }
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

    fn set_accepting(&mut self, on: bool) -> io::Result<()> {
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

    /// Takes connections only while there is room in the pool and under `max_connections`;
    /// otherwise they wait in the kernel's queue for a worker that has room.
    fn update_accepting(&mut self) {
        self.board
            .load(self.in_flight + self.pulls, self.live_conns);
        if self.phase != Phase::Running {
            return;
        }
        // A connection accepted but not yet sent to the pool counts as work to come, so a
        // worker that woke first cannot take a whole burst while others have idle threads.
        let has_room = self.in_flight + self.pulls + self.fresh_conns < self.threads
            && self.live_conns < self.max_connections;
        if let Err(err) = self.set_accepting(has_room) {
            log::error!("could not change listener registration: {err}");
        }
        if has_room {
            self.paused_since = None;
        } else if self.paused_since.is_none() {
            self.paused_since = Some(Instant::now());
        }
    }

    /// A full worker still takes one waiting connection every [`ACCEPT_NUDGE`]: when every
    /// worker is full, the connections in the kernel's queue would otherwise wait for as long
    /// as the accepted keep-alive clients keep sending, and never be served. Accepted, their
    /// requests queue fairly in the pool with everyone else's.
    fn nudge_accept(&mut self) {
        let Some(since) = self.paused_since else {
            return;
        };
        if self.phase != Phase::Running
            || since.elapsed() < ACCEPT_NUDGE
            || self.live_conns >= self.max_connections
        {
            return;
        }
        self.paused_since = Some(Instant::now());
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

    fn on_listener(&mut self, index: usize) {
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

    fn add_conn(&mut self, mut stream: Stream, peer: Option<SocketAddr>, listener: usize) {
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
        self.conns[index] = Some(Conn {
            stream,
            peer,
            listener,
            serial: self.next_serial,
            state: ConnState::Reading,
            decoder: Decoder::new(self.limits),
            read_buf: Vec::new(),
            read_start: 0,
            read_end: 0,
            out: OutQueue::default(),
            file: None,
            streamed: None,
            spill: None,
            keep_alive: true,
            // A new connection's first request has header_timeout to arrive, as nginx's
            // client_header_timeout: an idle connection that never spoke costs less time.
            deadline: Instant::now() + self.header_timeout,
            version: Version::Http11,
            head_request: false,
            dispatched_at: Instant::now(),
            label: None,
            access: None,
            // The client may have sent its request already.
            unread: true,
            fresh: true,
            linger: false,
        });
        self.live_conns += 1;
        self.fresh_conns += 1;
        self.update_accepting();
        // The client may already have sent its request; edge-triggered events for data that
        // arrived before registration are not guaranteed, so look now.
        self.drive_read(index);
    }

    fn idle_wait(&self) -> Duration {
        if self.keepalive.is_zero() {
            self.header_timeout
        } else {
            self.keepalive
        }
    }

    /// Publishes this worker's progress to the master.
    fn beat(&self) {
        self.board.beat(sys::monotonic_ms());
    }

    fn on_conn_event(&mut self, index: usize, readable: bool) {
        let Some(conn) = self.conns.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        if readable {
            // New bytes (or the end): worth a read once the connection reads again.
            conn.unread = true;
        }
        let state = conn.state;
        match state {
            ConnState::Reading => self.drive_read(index),
            ConnState::Writing => self.drive_write(index),
            ConnState::Lingering => self.drive_linger(index),
            // Bytes that arrive while the handler runs wait in the socket; they are read once
            // the response is out.
            ConnState::InPool => {}
        }
    }

    /// Decodes what is buffered, reading more until a request is complete or the socket has
    /// nothing more for now.
    fn drive_read(&mut self, index: usize) {
        let (header_timeout, body_timeout) = (self.header_timeout, self.body_timeout);
        let body_buffer = self.body_buffer;
        loop {
            let Some(conn) = self.conns.get_mut(index).and_then(Option::as_mut) else {
                return;
            };
            if conn.state != ConnState::Reading {
                return;
            }
            match conn
                .decoder
                .decode(&conn.read_buf[conn.read_start..conn.read_end])
            {
                Err(err) => {
                    log::debug!("bad request from {}: {err}", peer_text(conn.peer));
                    self.respond_error(index, &err);
                    return;
                }
                Ok(Decoded::Complete {
                    consumed,
                    head,
                    body,
                }) => {
                    conn.read_start += consumed;
                    if conn.read_start == conn.read_end {
                        // Nothing pipelined behind it: give the buffer back now, so the
                        // connection holds none while the request runs and while it is idle.
                        conn.read_buf = Vec::new();
                        conn.read_start = 0;
                        conn.read_end = 0;
                    }
                    match store_body(conn, body, body_buffer) {
                        Ok(body) => self.dispatch(index, head, body),
                        Err(err) => self.body_not_stored(index, &err),
                    }
                    return;
                }
                Ok(Decoded::NeedMore { consumed }) => {
                    conn.read_start += consumed;
                    if let Err(err) = spill_as_needed(conn, body_buffer) {
                        self.body_not_stored(index, &err);
                        return;
                    }
                    if consumed > 0 {
                        // Head bytes are consumed only with the whole head, so this is body
                        // progress (or the head just completed): the body clock restarts.
                        conn.deadline = Instant::now() + body_timeout;
                    }
                    if conn.decoder.take_continue() {
                        // Small and written before any body byte is read; if the socket can't
                        // take 25 bytes right now, the client sends the body anyway after its
                        // own wait (RFC 9110 §10.1.1).
                        let _ = conn.stream.write(b"HTTP/1.1 100 Continue\r\n\r\n");
                    }
                }
            }
            if !conn.unread {
                // The last read came back short: the socket is empty, and edge-triggered epoll
                // reports the next bytes. Reading again now would only return EAGAIN.
                return;
            }
            let idle_before = conn.decoder.is_idle() && conn.pending_input().is_empty();
            match read_more(conn, &mut self.scratch) {
                Ok(0) => {
                    // The client closed its side; whatever partial request there was is gone.
                    self.close(index);
                    return;
                }
                Ok(_) => {
                    if idle_before {
                        // A new request started: its head has `header_timeout` to arrive.
                        conn.deadline = Instant::now() + header_timeout;
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    conn.unread = false;
                    return;
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    log::debug!("read from {}: {err}", peer_text(conn.peer));
                    self.close(index);
                    return;
                }
            }
        }
    }

    /// Answers 500 for a request whose body could not be written to its temporary file.
    fn body_not_stored(&mut self, index: usize, err: &io::Error) {
        log::error!(
            "could not write a request body to a temporary file in {}: {err}",
            std::env::temp_dir().display()
        );
        self.respond_error(
            index,
            &HttpError {
                status: 500,
                reason: "the request body could not be stored",
            },
        );
    }

    fn dispatch(&mut self, index: usize, head: RequestHead, body: StoredBody) {
        let stopping = self.phase != Phase::Running;
        let keepalive_off = self.keepalive.is_zero();
        let Some(conn) = self.conns.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        conn.keep_alive = head.keep_alive && !stopping && !keepalive_off;
        if conn.fresh {
            conn.fresh = false;
            self.fresh_conns -= 1;
        }
        conn.version = head.version;
        conn.head_request = head.method == "HEAD";
        conn.dispatched_at = Instant::now();
        conn.label =
            (!self.request_timeout.is_zero()).then(|| format!("{} {}", head.method, head.target));
        conn.state = ConnState::InPool;
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
            .trusted(Arc::clone(&self.trusted));
        if let Some(addr) = self.listener_addrs.get(conn.listener) {
            request = request.listener(Arc::clone(addr));
        }
        let request = match body {
            StoredBody::Memory(bytes) => request.body(bytes),
            StoredBody::File(file, len) => request.body_file(file, len),
        }
        .build();
        if self.access_log.is_some() {
            let text = |name: &str| {
                request
                    .header(name)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default()
            };
            conn.access = Some(AccessInfo {
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
        self.in_flight += 1;
        self.pool.submit(Job {
            conn: index,
            serial: conn.serial,
            work: Work::Request(request),
        });
        self.update_accepting();
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
                    self.in_flight -= 1;
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
                    self.pulls -= 1;
                    self.on_chunk(conn, serial, Some((chunk, producer)));
                }
                Outcome::StreamEnded => {
                    self.pulls -= 1;
                    self.on_chunk(conn, serial, None);
                }
                Outcome::StreamFailed => {
                    self.pulls -= 1;
                    if self.is_current(conn, serial) {
                        self.close(conn);
                    }
                }
            }
        }
        self.finished = finished;
        self.update_accepting();
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

    /// Queues a streamed body's next chunk (or its end) and writes on.
    fn on_chunk(&mut self, index: usize, serial: u64, next: Option<(Vec<u8>, BodyStream)>) {
        let timeout = self.body_timeout;
        let waiting = self
            .conns
            .get_mut(index)
            .and_then(Option::as_mut)
            .filter(|conn| conn.serial == serial && conn.state == ConnState::Writing);
        let Some(conn) = waiting else {
            if let Some((_, producer)) = next {
                self.discard(index, serial, producer);
            }
            return;
        };
        let Some(StreamOut::Pulling {
            chunked, remaining, ..
        }) = conn.streamed
        else {
            if let Some((_, producer)) = next {
                self.discard(index, serial, producer);
            }
            return;
        };
        let mut framed = Vec::new();
        let mut finished = None;
        match next {
            Some((mut chunk, producer)) => {
                let remaining = remaining.map(|left| {
                    if chunk.len() as u64 > left {
                        log::warn!(
                            "a streamed response to {} went past the Content-Length its handler \
                             set; the rest was cut off",
                            peer_text(conn.peer)
                        );
                        chunk.truncate(left as usize);
                    }
                    left - chunk.len() as u64
                });
                if chunked {
                    framed.reserve(chunk.len() + 16);
                    http::write_chunk(&mut framed, &chunk);
                } else {
                    framed = chunk;
                }
                if remaining == Some(0) {
                    conn.streamed = None;
                    finished = Some(producer);
                } else {
                    conn.streamed = Some(StreamOut::Ready {
                        producer,
                        chunked,
                        remaining,
                    });
                }
            }
            None => {
                if chunked {
                    http::write_last_chunk(&mut framed);
                }
                if let Some(short) = remaining.filter(|&left| left > 0) {
                    log::error!(
                        "a streamed response to {} ended {short} bytes short of the \
                         Content-Length its handler set; closing the connection",
                        peer_text(conn.peer)
                    );
                    conn.keep_alive = false;
                }
                conn.streamed = None;
            }
        }
        conn.out.push(framed);
        conn.deadline = Instant::now() + timeout;
        if let Some(producer) = finished {
            // Its promised length is out: its end (and its clean-up) is the pool's business.
            self.discard(index, serial, producer);
        }
        self.drive_write(index);
    }

    fn write_response(&mut self, index: usize, serial: u64, response: Response) {
        let stopping = self.phase != Phase::Running;
        let date = self.dates.get(SystemTime::now());
        let Some(conn) = self.conns.get_mut(index).and_then(Option::as_mut) else {
            if let Body::Stream(producer) | Body::SizedStream(producer, _) = response.into_parts().2
            {
                self.discard(index, serial, producer);
            }
            return;
        };
        if conn.serial != serial || conn.state != ConnState::InPool {
            // The connection this answer belongs to is gone.
            if let Body::Stream(producer) | Body::SizedStream(producer, _) = response.into_parts().2
            {
                self.discard(index, serial, producer);
            }
            return;
        }
        if stopping {
            conn.keep_alive = false;
        }
        let is_head = conn.head_request;
        let mut response = response;
        let mut reason = response.take_reason();
        let (mut status, mut headers, mut body) = response.into_parts();
        if let Some((name, _)) = headers.iter().find(|(n, v)| !http::valid_header(n, v)) {
            // Writing it could split the response in two; the whole answer becomes a 500.
            log::error!(
                "the handler returned an invalid header field {name:?} (a name that is not a \
                 token, or CR, LF or NUL in the value); answered 500 instead"
            );
            status = 500;
            reason = None;
            headers = vec![(
                "Content-Type".to_owned(),
                b"text/plain; charset=utf-8".to_vec(),
            )];
            body = Body::Bytes(b"500 Internal Server Error\n".to_vec());
        }
        self.board
            .record(status, conn.dispatched_at.elapsed().as_micros() as u64);
        // 1xx, 204 and 304 carry no body and no framing: a 304's length is the stored
        // representation's, which the server does not know.
        let with_body = http::status_allows_body(status);
        let body_len = if with_body { body.len() } else { None };
        if let (Some(log), Some(info)) = (self.access_log.as_mut(), conn.access.take()) {
            let sent = if is_head { 0 } else { body_len.unwrap_or(0) };
            log.log(&access_log::Entry {
                time: SystemTime::now(),
                remote: &info.remote,
                method: &info.method,
                target: &info.target,
                version: info.version,
                status,
                bytes: sent,
                duration_us: conn.dispatched_at.elapsed().as_micros() as u64,
                user_agent: &info.user_agent,
                referer: &info.referer,
                worker: self.slot,
            });
        }
        if with_body && body_len.is_none() && conn.version == Version::Http10 {
            // HTTP/1.0 has no chunked coding: the body ends where the connection does.
            conn.keep_alive = false;
        }
        let mut head = Vec::with_capacity(256);
        http::write_response_head(
            &mut head,
            conn.version,
            http::StatusLine {
                code: status,
                reason: reason.as_deref(),
            },
            &headers,
            body_len,
            conn.keep_alive,
            date,
        );
        conn.out.clear();
        conn.out.push(head);
        conn.file = None;
        conn.streamed = None;
        let mut unused = None;
        match body {
            Body::Bytes(bytes) if with_body && !is_head => conn.out.push(bytes),
            Body::File(region) if with_body && !is_head => {
                let (file, offset, remaining) = region.into_parts();
                conn.file = (remaining > 0).then_some(FileOut {
                    file,
                    offset,
                    remaining,
                });
            }
            Body::Stream(producer) if with_body && !is_head => {
                conn.streamed = Some(StreamOut::Ready {
                    producer,
                    chunked: conn.version == Version::Http11,
                    remaining: None,
                });
            }
            Body::SizedStream(producer, len) if with_body && !is_head && len > 0 => {
                conn.streamed = Some(StreamOut::Ready {
                    producer,
                    chunked: false,
                    remaining: Some(len),
                });
            }
            Body::Stream(producer) | Body::SizedStream(producer, _) => unused = Some(producer),
            Body::Bytes(_) | Body::File(_) => {}
        }
        conn.state = ConnState::Writing;
        conn.deadline = Instant::now() + self.body_timeout;
        if let Some(producer) = unused {
            self.discard(index, serial, producer);
        }
        self.drive_write(index);
    }

    fn respond_error(&mut self, index: usize, err: &HttpError) {
        let date = self.dates.get(SystemTime::now());
        let Some(conn) = self.conns.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        self.board.record(err.status, 0);
        conn.linger = true;
        if let Some(log) = self.access_log.as_mut() {
            // A request that never parsed has only its peer; one that timed out in the
            // handler still has what it was.
            let info = conn.access.take();
            let peer = conn
                .peer
                .map_or_else(|| "-".to_owned(), |p| p.ip().to_string());
            let (remote, method, target, version) = match &info {
                Some(i) => (
                    i.remote.as_str(),
                    i.method.as_str(),
                    i.target.as_str(),
                    i.version,
                ),
                None => (peer.as_str(), "-", "-", "-"),
            };
            log.log(&access_log::Entry {
                time: SystemTime::now(),
                remote,
                method,
                target,
                version,
                status: err.status,
                bytes: 0,
                duration_us: 0,
                user_agent: info.as_ref().map_or("", |i| i.user_agent.as_str()),
                referer: info.as_ref().map_or("", |i| i.referer.as_str()),
                worker: self.slot,
            });
        }
        let mut out = Vec::with_capacity(256);
        http::error_response(&mut out, err, date);
        conn.out.clear();
        conn.out.push(out);
        conn.file = None;
        conn.streamed = None;
        conn.spill = None;
        conn.keep_alive = false;
        conn.state = ConnState::Writing;
        conn.deadline = Instant::now() + self.body_timeout;
        self.drive_write(index);
    }

    /// Writes what the connection has to send until the socket is full or the response is out.
    ///
    /// Bytes go out with `writev`, a file region with `sendfile`; a stream's next chunk is
    /// asked of the pool once less than [`LOW_WATER`] bytes are left to write. One call sends
    /// at most [`WRITE_BUDGET`] bytes; a connection with more to send and a socket still taking
    /// it is queued to continue after the next poll, so one fast download cannot starve the
    /// others.
    fn drive_write(&mut self, index: usize) {
        let timeout = self.body_timeout;
        let Some(conn) = self.conns.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        if conn.state != ConnState::Writing {
            return;
        }
        let serial = conn.serial;
        let mut budget = WRITE_BUDGET;
        let mut pull = None;
        let step = loop {
            if conn.response_sent() {
                break WriteStep::Done;
            }
            if pull.is_none() {
                pull = conn.producer_to_pull();
            }
            if budget == 0 {
                break WriteStep::Paused;
            }
            let result = if !conn.out.is_empty() {
                conn.out.write_to(&mut conn.stream)
            } else if let Some(file) = &conn.file {
                let count = usize::try_from(file.remaining)
                    .unwrap_or(usize::MAX)
                    .min(budget);
                let mut offset = file.offset;
                let result = sys::sendfile(conn.socket_fd(), &file.file, &mut offset, count);
                if let (Ok(sent), Some(file)) = (&result, &mut conn.file) {
                    file.offset = offset;
                    file.remaining -= *sent as u64;
                    if file.remaining == 0 {
                        conn.file = None;
                    }
                }
                result
            } else {
                // Only the stream is left, and its next chunk is with the pool.
                break WriteStep::Waiting;
            };
            match result {
                Ok(0) => {
                    if conn.file.is_some() && conn.out.is_empty() {
                        log::warn!(
                            "a file being sent to {} ended before the length its response \
                             announced; closing the connection",
                            peer_text(conn.peer)
                        );
                    }
                    break WriteStep::Close;
                }
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    conn.deadline = Instant::now() + timeout;
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break WriteStep::Waiting,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    log::debug!("write to {}: {err}", peer_text(conn.peer));
                    break WriteStep::Close;
                }
            }
        };
        if let Some(producer) = pull {
            if step == WriteStep::Close {
                self.discard(index, serial, producer);
            } else {
                self.pulls += 1;
                self.pool.submit(Job {
                    conn: index,
                    serial,
                    work: Work::NextChunk(producer),
                });
            }
        }
        match step {
            WriteStep::Done => self.finish_response(index),
            WriteStep::Paused => self.write_backlog.push((index, serial)),
            WriteStep::Waiting => {}
            WriteStep::Close => self.close(index),
        }
    }

    /// The response is out: wait for the next request, or close.
    fn finish_response(&mut self, index: usize) {
        let idle_wait = self.idle_wait();
        let running = self.phase == Phase::Running;
        let Some(conn) = self.conns.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        if conn.keep_alive {
            conn.state = ConnState::Reading;
            // A response begun before a stop (a long download, a stream) promised keep-alive.
            // Now the connection is idle, and a stopping worker does not wait long for idle
            // connections: a request already on its way is still answered, with
            // `Connection: close`.
            let wait = if running { idle_wait } else { DRAIN_IDLE };
            conn.deadline = Instant::now() + wait;
            // A pipelined request may already be buffered or waiting in the socket.
            self.drive_read(index);
        } else if conn.linger || conn.unread || !conn.pending_input().is_empty() {
            conn.stream.shutdown_write();
            conn.state = ConnState::Lingering;
            conn.deadline = Instant::now() + LINGER;
            self.drive_linger(index);
        } else {
            // The request was read in full and nothing followed it: no reset can overtake the
            // response, so close now (the close sends the FIN) rather than wait for the client.
            self.close(index);
        }
    }

    /// Continues the writes that [`Worker::drive_write`] paused at its budget.
    fn drive_backlog(&mut self) {
        let mut backlog = std::mem::take(&mut self.write_backlog);
        for (index, serial) in backlog.drain(..) {
            let current = self
                .conns
                .get(index)
                .and_then(Option::as_ref)
                .is_some_and(|conn| conn.serial == serial);
            if current {
                self.drive_write(index);
            }
        }
        if self.write_backlog.is_empty() {
            // Keep the allocation for the next turn.
            self.write_backlog = backlog;
        }
    }

    fn drive_linger(&mut self, index: usize) {
        let Some(conn) = self.conns.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        let mut sink = [0u8; 4096];
        loop {
            match conn.stream.read(&mut sink) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        self.close(index);
    }

    fn close(&mut self, index: usize) {
        let Some(mut conn) = self.conns.get_mut(index).and_then(Option::take) else {
            return;
        };
        // No deregister: closing the socket (dropping `conn`) takes it out of epoll, and the
        // socket is never shared with another descriptor. One system call less per connection.
        // A request still with the pool stays counted in flight until its answer comes back,
        // finds the serial gone, and is dropped; so does a stream's chunk being pulled.
        if let Some(StreamOut::Ready { producer, .. }) = conn.streamed.take() {
            self.discard(index, conn.serial, producer);
        }
        if conn.fresh {
            self.fresh_conns -= 1;
        }
        self.free.push(index);
        self.live_conns -= 1;
        self.update_accepting();
    }

    /// Once a second: time out idle, slow and stuck connections, and notice an orphaned worker.
    fn sweep(&mut self, now: Instant) {
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
        let mut oldest_dispatch: Option<Instant> = None;
        for index in 0..self.conns.len() {
            let Some(conn) = self.conns[index].as_ref() else {
                continue;
            };
            if conn.state == ConnState::InPool {
                oldest_dispatch =
                    Some(oldest_dispatch.map_or(conn.dispatched_at, |t| t.min(conn.dispatched_at)));
                let ran = now.duration_since(conn.dispatched_at);
                if !self.request_timeout.is_zero() && ran > self.request_timeout {
                    self.request_timed_out(index, ran);
                }
                continue;
            }
            if let Some(StreamOut::Pulling { since, .. }) = conn.streamed {
                // The producer, not the client, is behind: the write clock waits for it, and
                // request_timeout bounds it as it bounds a handler.
                oldest_dispatch = Some(oldest_dispatch.map_or(since, |t| t.min(since)));
                let ran = now.duration_since(since);
                if !self.request_timeout.is_zero() && ran > self.request_timeout {
                    self.stream_timed_out(index, ran);
                }
                continue;
            }
            if now < conn.deadline {
                continue;
            }
            let idle = conn.decoder.is_idle() && conn.pending_input().is_empty();
            let (state, peer) = (conn.state, conn.peer);
            match state {
                ConnState::Reading if idle => self.close(index),
                ConnState::Reading => {
                    log::debug!("request from {} timed out", peer_text(peer));
                    self.respond_error(
                        index,
                        &HttpError {
                            status: 408,
                            reason: "the request did not arrive in time",
                        },
                    );
                }
                ConnState::InPool => {}
                ConnState::Writing | ConnState::Lingering => self.close(index),
            }
        }
        let oldest_ms = oldest_dispatch.map_or(0, |t| {
            let age = now.duration_since(t).as_millis() as u64;
            sys::monotonic_ms().saturating_sub(age).max(1)
        });
        self.board.oldest_request(oldest_ms);
    }

    /// Closes a connection whose stream took longer than `request_timeout` to produce its next
    /// chunk (its head is out, so a 504 is no longer possible; the client sees the body cut
    /// short), and recycles the worker, whose thread is stuck in the stream.
    fn stream_timed_out(&mut self, index: usize, ran: Duration) {
        let Some(conn) = self.conns.get(index).and_then(Option::as_ref) else {
            return;
        };
        log::warn!(
            "a streamed response to {} produced no chunk within request_timeout ({:?}); closed \
             the connection and recycling this worker",
            peer_text(conn.peer),
            self.request_timeout
        );
        if let Some(thread) = self.pool.thread_running(index, conn.serial) {
            let what = format!("the streamed response to {}", peer_text(conn.peer));
            self.pool.handler().request_stuck(thread, &what);
        }
        self.close(index);
        self.retire(RetireReason::RequestTimeout(ran.as_millis() as u64));
    }

    /// Answers a request whose handler ran past `request_timeout` with 504, so the client is
    /// not left hanging, and recycles the worker: its thread is stuck, and only a new process
    /// gets it back. The other requests in flight finish first.
    fn request_timed_out(&mut self, index: usize, ran: Duration) {
        let Some(conn) = self.conns.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        let label = conn.label.take().unwrap_or_else(|| "a request".to_owned());
        log::warn!(
            "{label} from {} ran past request_timeout ({:?}); answered 504 and recycling this worker",
            peer_text(conn.peer),
            self.request_timeout
        );
        if let Some(thread) = self.pool.thread_running(index, conn.serial) {
            self.pool.handler().request_stuck(thread, &label);
        }
        // Its answer, if it ever comes, finds the connection no longer waiting and is dropped.
        let Some(conn) = self.conns.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        conn.state = ConnState::Reading;
        self.respond_error(
            index,
            &HttpError {
                status: 504,
                reason: "the application did not answer in time",
            },
        );
        self.retire(RetireReason::RequestTimeout(ran.as_millis() as u64));
    }
}

/// A random count from 0 to `max`, different in every worker, so workers given the same
/// `max_requests` do not all recycle at once.
fn jitter(max: u64) -> u64 {
    if max == 0 {
        return 0;
    }
    let mut x =
        u64::from(std::process::id()) ^ sys::monotonic_ms().rotate_left(32) ^ 0x9E37_79B9_7F4A_7C15;
    for _ in 0..4 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    x % (max + 1)
}

/// Reads once into the connection's buffer, growing it when it is nearly full and reclaiming
/// the space of decoded bytes first.
fn read_more(conn: &mut Conn, scratch: &mut [u8]) -> io::Result<usize> {
    if conn.read_start == conn.read_end {
        conn.read_buf.clear();
        conn.read_start = 0;
        conn.read_end = 0;
    } else if conn.read_start > 0 && conn.read_start >= conn.read_buf.len() / 2 {
        conn.read_buf.drain(..conn.read_start);
        conn.read_end -= conn.read_start;
        conn.read_start = 0;
    }
    // Into the worker's one scratch buffer, then only the bytes that came into the
    // connection's own: an idle keep-alive connection holds no read buffer at all.
    let n = conn.stream.read(scratch)?;
    conn.read_buf.extend_from_slice(&scratch[..n]);
    conn.read_end = conn.read_buf.len();
    // Fewer bytes than asked for: the socket is drained (a full read may have left more).
    conn.unread = n == scratch.len();
    Ok(n)
}

/// A request body, as the worker hands it on.
enum StoredBody {
    Memory(Vec<u8>),
    /// A temporary file, rewound, and the body's length.
    File(std::fs::File, u64),
}

/// The temporary file a request body is going to.
struct Spill {
    file: std::fs::File,
    len: u64,
}

/// Moves the body decoded so far to the connection's temporary file once it is larger than
/// `body_buffer` (creating the file then), and from then on whenever a piece has gathered.
fn spill_as_needed(conn: &mut Conn, body_buffer: u64) -> io::Result<()> {
    let buffered = conn.decoder.body_buffered();
    let due = match conn.spill {
        Some(_) => buffered >= SPILL_CHUNK,
        None => buffered as u64 > body_buffer,
    };
    if due {
        let bytes = conn.decoder.take_body();
        spill(conn, &bytes)?;
    }
    Ok(())
}

/// Appends `bytes` to the connection's temporary file, creating it first if need be.
fn spill(conn: &mut Conn, bytes: &[u8]) -> io::Result<()> {
    if conn.spill.is_none() {
        conn.spill = Some(Spill {
            file: sys::anonymous_temp_file()?,
            len: 0,
        });
    }
    if let Some(spill) = &mut conn.spill {
        spill.file.write_all(bytes)?;
        spill.len += bytes.len() as u64;
    }
    Ok(())
}

/// The finished body: in memory when it is at most `body_buffer` bytes, else in its file.
fn store_body(conn: &mut Conn, rest: Vec<u8>, body_buffer: u64) -> io::Result<StoredBody> {
    if conn.spill.is_none() && rest.len() as u64 <= body_buffer {
        return Ok(StoredBody::Memory(rest));
    }
    spill(conn, &rest)?;
    match conn.spill.take() {
        Some(Spill { mut file, len }) => {
            std::io::Seek::rewind(&mut file)?;
            Ok(StoredBody::File(file, len))
        }
        None => Ok(StoredBody::Memory(Vec::new())),
    }
}

/// Errors from `accept` that concern only the one connection (it was reset before we took it).
fn is_transient_accept_error(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::ECONNABORTED | libc::EPROTO | libc::EPERM)
    )
}

fn peer_text(peer: Option<SocketAddr>) -> String {
    peer.map_or_else(|| "a unix socket client".to_owned(), |p| p.to_string())
}

/// The bytes of a response still to be written: a queue of buffers (the head, a bytes body),
/// written with `writev` without first copying them into one.
#[derive(Debug, Default)]
struct OutQueue {
    buffers: VecDeque<Vec<u8>>,
    /// Bytes of the front buffer already written.
    front_written: usize,
    /// Bytes queued and not yet written.
    unsent: usize,
}

impl OutQueue {
    /// Queues `bytes` after what is already queued.
    fn push(&mut self, bytes: Vec<u8>) {
        if !bytes.is_empty() {
            self.unsent += bytes.len();
            self.buffers.push_back(bytes);
        }
    }

    fn is_empty(&self) -> bool {
        self.buffers.is_empty()
    }

    fn clear(&mut self) {
        self.buffers.clear();
        self.front_written = 0;
        self.unsent = 0;
    }

    /// Bytes queued and not yet written.
    fn unsent(&self) -> usize {
        self.unsent
    }

    /// Writes once, as much as `out` takes, and drops what was written.
    fn write_to(&mut self, out: &mut impl Write) -> io::Result<usize> {
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let mut count = 0;
        for (slot, buffer) in slices.iter_mut().zip(&self.buffers) {
            let start = if count == 0 { self.front_written } else { 0 };
            *slot = IoSlice::new(&buffer[start..]);
            count += 1;
        }
        let written = out.write_vectored(&slices[..count])?;
        self.consume(written);
        Ok(written)
    }

    fn consume(&mut self, mut written: usize) {
        self.unsent -= written.min(self.unsent);
        while let Some(front) = self.buffers.front() {
            let left = front.len() - self.front_written;
            if written < left {
                self.front_written += written;
                return;
            }
            written -= left;
            self.buffers.pop_front();
            self.front_written = 0;
        }
    }
}

/// Where a streamed body is.
enum StreamOut {
    /// With the loop, until the connection has drained below [`LOW_WATER`].
    Ready {
        producer: BodyStream,
        /// Framed with the chunked coding (HTTP/1.1), or delimited by the close (HTTP/1.0),
        /// unless the handler promised a length.
        chunked: bool,
        /// What is left of the length the handler promised ([`Body::SizedStream`]).
        remaining: Option<u64>,
    },
    /// A pool thread is pulling the next chunk, since `since`.
    Pulling {
        chunked: bool,
        remaining: Option<u64>,
        since: Instant,
    },
}

/// How a call of [`Worker::drive_write`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteStep {
    /// The whole response is out.
    Done,
    /// The write budget is spent; continue after the next poll.
    Paused,
    /// The socket is full, or the next chunk is not here yet.
    Waiting,
    /// The connection failed or cannot be completed.
    Close,
}

/// The part of a file region still to be sent.
#[derive(Debug)]
struct FileOut {
    file: std::fs::File,
    offset: u64,
    remaining: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `max` bytes per call.
    struct Trickle {
        max: usize,
        got: Vec<u8>,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.max);
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_out_queue_writes_its_buffers_in_order_across_short_writes() {
        for max in [1, 2, 3, 7, 100] {
            let mut queue = OutQueue::default();
            queue.push(b"head\r\n".to_vec());
            queue.push(Vec::new());
            queue.push(b"body".to_vec());
            queue.push(b"!".to_vec());
            assert_eq!(queue.unsent(), 11);
            let mut out = Trickle {
                max,
                got: Vec::new(),
            };
            while !queue.is_empty() {
                let before = queue.unsent();
                let n = queue.write_to(&mut out).unwrap();
                assert_eq!(queue.unsent(), before - n);
            }
            assert_eq!(out.got, b"head\r\nbody!", "max {max}");
        }
    }

    #[test]
    fn clearing_the_out_queue_forgets_a_partial_write() {
        let mut queue = OutQueue::default();
        queue.push(b"abc".to_vec());
        queue.consume(1);
        queue.clear();
        queue.push(b"xyz".to_vec());
        let mut out = Trickle {
            max: 10,
            got: Vec::new(),
        };
        queue.write_to(&mut out).unwrap();
        assert_eq!(out.got, b"xyz");
    }
}
