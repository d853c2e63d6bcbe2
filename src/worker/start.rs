//! Setting a worker up after fork, before it serves anything.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Interest, Poll, Waker};
use signal_hook_mio::v1_0::Signals;

use super::admission::Admission;
use super::budget::BodyBudget;
use super::conn::{Settings, WsSettings};
use super::{
    MAX_TICK, Phase, READ_CHUNK, SIGNALS, SetupStep, WAKER, Worker, WorkerContext, WorkerError,
    take_listeners,
};
use crate::access_log::AccessLog;
use crate::handler::WorkerInfo;
use crate::http::DateCache;
use crate::pool::Pool;
use crate::protocol::WorkerIntent;
use crate::sys;

impl<'a> Worker<'a> {
    pub(super) fn start(context: WorkerContext<'a>) -> Result<Worker<'a>, WorkerError> {
        let config = context.config;
        let poll = Poll::new().map_err(|e| WorkerError::Setup(SetupStep::EventLoop, e))?;
        let mut signals = Signals::new(WorkerIntent::SIGNALS)
            .map_err(|e| WorkerError::Setup(SetupStep::SignalHandlers, e))?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .map_err(|e| WorkerError::Setup(SetupStep::WatchSignals, e))?;
        context
            .blocked
            .restore()
            .map_err(|e| WorkerError::Setup(SetupStep::UnblockSignals, e))?;
        sys::drop_privileges(context.identity).map_err(WorkerError::Privileges)?;

        let threads = config.server.threads.get();
        let info = WorkerInfo {
            slot: context.slot,
            pid: std::process::id(),
            threads,
            app: config.app.clone(),
        };
        let handler = context
            .factory
            .build(&info)
            .map_err(|error| WorkerError::BuildApp {
                handler: config.app.handler.to_string(),
                error,
            })?;
        // A concurrent (ASGI) application runs up to `max_concurrency` requests on its own
        // loop, where a pool runs one per thread.
        let concurrent = handler.concurrent().is_some();
        let capacity = if concurrent {
            config.app.max_concurrency
        } else {
            threads
        };
        let waker = Waker::new(poll.registry(), WAKER)
            .map_err(|e| WorkerError::Setup(SetupStep::Waker, e))?;
        let pool = Pool::start(threads, handler, waker, &format!("w{}", context.slot))
            .map_err(|e| WorkerError::Setup(SetupStep::Pool, e))?;

        let (listeners, listener_info) =
            take_listeners(context.listeners, &config.server.proxy_protocol)?;
        let server = &config.server;
        let max_requests = (server.max_requests > 0)
            .then(|| server.max_requests + jitter(server.max_requests_jitter));
        let websocket = &config.websocket;
        let tick = [
            server.timeout / 4,
            server.request_timeout / 4,
            websocket.ping_interval / 4,
            websocket.ping_timeout / 4,
        ]
        .into_iter()
        .filter(|d| !d.is_zero())
        .fold(MAX_TICK, Duration::min)
        .max(Duration::from_millis(10));
        let board = context.scoreboard.handle(context.board);
        let report = context
            .report
            .try_clone()
            .map(std::fs::File::from)
            .map_err(|e| WorkerError::Setup(SetupStep::ReportPipe, e))?;
        let access_log = match &config.log.access_log {
            Some(target) => Some(
                AccessLog::open(target, config.log.access_log_format.clone())
                    .map_err(|e| WorkerError::Setup(SetupStep::AccessLog, e))?,
            ),
            None => None,
        };
        let mut worker = Worker {
            poll,
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
            slot: context.slot,
            access_log,
            trusted: Arc::from(server.forwarded_allow_ips.as_slice()),
            forwarded_header: server.forwarded_header,
            board,
            report,
            signals,
            listeners,
            listener_info,
            untrusted_proxies: super::accept::Refusals::default(),
            accepting: false,
            admission: if concurrent {
                Admission::concurrent(capacity, server.max_connections.get())
            } else {
                Admission::new(capacity, server.max_connections.get())
            },
            pool,
            conns: Vec::new(),
            free: Vec::new(),
            next_serial: 0,
            phase: Phase::Running,
            dates: DateCache::new(),
            settings: Settings {
                limits: config.limits.http,
                body_buffer: config.limits.body_buffer,
                keepalive: server.keepalive,
                header_timeout: server.header_timeout,
                body_timeout: server.body_timeout,
                min_body_rate: server.min_body_rate,
                body_rate_grace: server.body_rate_grace,
                request_timeout: server.request_timeout,
                concurrent_app: concurrent,
                websocket: WsSettings {
                    max_message: websocket.max_message,
                    ping_interval: websocket.ping_interval,
                    ping_timeout: websocket.ping_timeout,
                },
            },
            tls: context.tls,
            ws_on_stop: websocket.on_stop,
            websockets: 0,
            websockets_closed: false,
            budget: BodyBudget::new(config.limits.body_memory(), config.limits.body_disk()),
            responses: Vec::new(),
            graceful_timeout: server.graceful_timeout,
            max_requests,
            max_worker_memory: server.max_worker_memory,
            app_block_limit: server.timeout,
            served: 0,
            tick,
            last_memory_check: Instant::now(),
            master_pid: std::os::unix::process::parent_id(),
            finished: Vec::new(),
            actions: std::collections::VecDeque::new(),
            write_backlog: Vec::new(),
        };
        worker
            .set_accepting(true)
            .map_err(|e| WorkerError::Setup(SetupStep::WatchListeners, e))?;
        // The master counts the worker as up once it reads this.
        worker.board.threads(if concurrent { 0 } else { threads });
        worker.board.ready(std::process::id());
        worker.beat();
        worker
            .report_to_master()
            .map_err(|e| WorkerError::Setup(SetupStep::ReportReady, e))?;
        if concurrent {
            log::debug!(
                "worker up: up to {capacity} concurrent requests, {} listeners",
                worker.listeners.len()
            );
        } else {
            log::debug!(
                "worker up: {threads} threads, {} listeners",
                worker.listeners.len()
            );
        }
        Ok(worker)
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
