//! The worker's fixed pool of threads that run the application's handler.
//!
//! The event loop submits fully buffered requests; a pool thread calls the handler, catches a
//! panic as a 500, and hands the response back through a completion list and a `mio::Waker`.
//! For a streamed body the loop submits one "next chunk" job at a time, when the connection is
//! ready for more, and a pool thread pulls the chunk from the stream. Pool threads never touch a
//! client socket, so a slow client costs a buffer, never a thread; and all application code
//! (handlers, streams, even dropping a stream) runs here, never on the loop.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::handler::{
    Begin, BodyStream, Handler, Replied, Replies, Reply, Request, Response, Ticket, WsReply,
};
use crate::protocol::scoreboard::QUEUE_WAITS;

/// Work for the pool, tagged with the connection it belongs to.
#[derive(Debug)]
pub struct Job {
    /// The connection's slab index in the event loop.
    pub conn: usize,
    /// Tells a reused slab index apart from the connection that submitted the job.
    pub serial: u64,
    /// What to do.
    pub work: Work,
}

/// What a pool thread does for a [`Job`].
pub enum Work {
    /// Call the handler.
    Request(Request),
    /// Pull the next chunk of a streamed body.
    NextChunk(BodyStream),
    /// Drop a stream the connection no longer needs (the client left, or the response has no
    /// body), so its destructor runs on a pool thread rather than on the loop.
    Discard(BodyStream),
}

impl std::fmt::Debug for Work {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Work::Request(request) => f.debug_tuple("Request").field(request).finish(),
            Work::NextChunk(_) => f.write_str("NextChunk"),
            Work::Discard(_) => f.write_str("Discard"),
        }
    }
}

/// A finished job, on its way back to the event loop.
#[derive(Debug)]
pub struct Finished {
    /// The connection's slab index.
    pub conn: usize,
    /// The serial of the job.
    pub serial: u64,
    /// What came of it.
    pub outcome: Outcome,
}

/// What a job produced.
pub enum Outcome {
    /// The handler's response.
    Response {
        /// The response to write.
        response: Response,
        /// Whether the handler panicked (the response is then a 500).
        panicked: bool,
    },
    /// The next chunk of a stream, and the stream to pull the one after from.
    Chunk(Vec<u8>, BodyStream),
    /// The stream has ended (and was dropped on the pool thread).
    StreamEnded,
    /// The stream panicked; the response cannot be completed.
    StreamFailed,
    /// A concurrent application waits for more of its request's body.
    WantBody,
    /// A concurrent application's request is over, its response sent or not.
    TaskDone,
    /// A concurrent application about its WebSocket: accepted, or its next message or its
    /// close, answering a pull.
    WebSocket(WsReply),
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Response { response, panicked } => f
                .debug_struct("Response")
                .field("response", response)
                .field("panicked", panicked)
                .finish(),
            Outcome::Chunk(chunk, _) => write!(f, "Chunk({} bytes)", chunk.len()),
            Outcome::StreamEnded => f.write_str("StreamEnded"),
            Outcome::StreamFailed => f.write_str("StreamFailed"),
            Outcome::WantBody => f.write_str("WantBody"),
            Outcome::TaskDone => f.write_str("TaskDone"),
            Outcome::WebSocket(reply) => reply.fmt(f),
        }
    }
}

impl From<Reply> for Outcome {
    fn from(reply: Reply) -> Outcome {
        match reply {
            Reply::Respond(response) => Outcome::Response {
                response,
                panicked: false,
            },
            Reply::Chunk(chunk) => Outcome::Chunk(chunk, Box::new(Replied)),
            Reply::End => Outcome::StreamEnded,
            Reply::Failed => Outcome::StreamFailed,
            Reply::WantBody => Outcome::WantBody,
            Reply::Done => Outcome::TaskDone,
            Reply::WebSocket(reply) => Outcome::WebSocket(reply),
        }
    }
}

struct Queue {
    jobs: VecDeque<Job>,
    closed: bool,
    /// Threads waiting for work: a submit wakes one only when there is one to wake, so a
    /// busy pool costs no futex call per request.
    idle: usize,
}

/// Where finished jobs wait for the event loop, and what wakes it for them.
struct Completions {
    finished: Mutex<Vec<Finished>>,
    waker: mio::Waker,
    /// Answers were queued quietly into an empty list: the loop needs a wake for them.
    wake_due: AtomicBool,
}

impl Completions {
    /// Hands `finished` to the event loop, waking it.
    fn push(&self, finished: Finished) {
        if self.queue(finished) {
            self.wake();
        }
    }

    /// Hands `finished` to the event loop, leaving the wake-up to [`Completions::wake_if_due`].
    fn push_quietly(&self, finished: Finished) {
        if self.queue(finished) {
            self.wake_due.store(true, Ordering::Release);
        }
    }

    /// Wakes the loop for answers queued quietly since the last wake.
    fn wake_if_due(&self) {
        if self.wake_due.swap(false, Ordering::AcqRel) {
            self.wake();
        }
    }

    /// Queues `finished`; returns whether the list was empty, so that the loop needs waking.
    /// One wake per batch: while the loop has not yet drained earlier answers, it will see
    /// this one too.
    fn queue(&self, finished: Finished) -> bool {
        let mut done = lock(&self.finished);
        let was_empty = done.is_empty();
        done.push(finished);
        was_empty
    }

    fn wake(&self) {
        if let Err(err) = self.waker.wake() {
            log::error!("could not wake the event loop: {err}");
        }
    }
}

struct Shared {
    queue: Mutex<Queue>,
    work_ready: Condvar,
    completions: Arc<Completions>,
    handler: Box<dyn Handler>,
    /// What each thread is running: the job's connection and serial, and the thread's
    /// `pthread_self()`, so a request that runs too long can be traced to its thread.
    running: Vec<Mutex<Option<(usize, u64, u64)>>>,
}

/// A fixed set of threads running one handler.
pub struct Pool {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    /// Jobs queued since the last [`Pool::wake`]: their threads are woken together, once the
    /// event loop has queued everything its round of events brought.
    unwoken: std::cell::Cell<usize>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("threads", &self.threads.len())
            .finish()
    }
}

/// A poisoned lock only means a thread panicked while holding it; the data under these locks
/// (queues of plain values) stays consistent, so carry on with it.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Pool {
    /// Starts `threads` threads named `{name}-{n}`, running `handler`, waking the event loop
    /// through `waker` when a response is ready.
    ///
    /// A [concurrent](Handler::concurrent) handler gets no threads: jobs are handed to it as
    /// they come, and its replies come back as the threads' answers would.
    pub fn start(
        threads: usize,
        handler: Box<dyn Handler>,
        waker: mio::Waker,
        name: &str,
    ) -> io::Result<Pool> {
        let completions = Arc::new(Completions {
            finished: Mutex::new(Vec::new()),
            waker,
            wake_due: AtomicBool::new(false),
        });
        let threads = if let Some(concurrent) = handler.concurrent() {
            let queue = Arc::clone(&completions);
            let wake = Arc::clone(&completions);
            concurrent.serve(Replies::new(
                move |ticket: Ticket, reply: Reply| {
                    queue.push_quietly(Finished {
                        conn: ticket.conn,
                        serial: ticket.serial,
                        outcome: reply.into(),
                    });
                },
                move || wake.wake_if_due(),
            ));
            0
        } else {
            threads
        };
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                closed: false,
                idle: 0,
            }),
            work_ready: Condvar::new(),
            completions,
            handler,
            running: (0..threads).map(|_| Mutex::new(None)).collect(),
        });
        let mut handles = Vec::with_capacity(threads);
        for n in 1..=threads {
            let shared = Arc::clone(&shared);
            let handle = std::thread::Builder::new()
                .name(format!("{name}-{n}"))
                .spawn(move || {
                    shared
                        .handler
                        .pool_thread(&mut || run_thread(&shared, n - 1));
                })?;
            handles.push(handle);
        }
        Ok(Pool {
            shared,
            threads: handles,
            unwoken: std::cell::Cell::new(0),
        })
    }

    /// Queues a job, for a free thread to pick up once [`Pool::wake`] is called (the event
    /// loop calls it before it waits again). A concurrent handler takes the job now.
    ///
    /// Waking a thread at once would let it preempt the loop on its CPU, one context switch
    /// there and back per request, while the loop still has other connections' events to
    /// handle; woken after the round, the threads run while the loop waits.
    pub fn submit(&self, job: Job) {
        if let Some(concurrent) = self.shared.handler.concurrent() {
            let ticket = Ticket {
                conn: job.conn,
                serial: job.serial,
            };
            match job.work {
                Work::Request(request) => concurrent.start(ticket, request, Begin::Whole),
                Work::NextChunk(_) => concurrent.more(ticket),
                Work::Discard(_) => concurrent.discard(ticket),
            }
            return;
        }
        lock(&self.shared.queue).jobs.push_back(job);
        self.unwoken.set(self.unwoken.get() + 1);
    }

    /// Wakes a thread for each job queued since the last call, as far as threads are idle; a
    /// concurrent handler, for what it was handed since.
    pub fn wake(&self) {
        if let Some(concurrent) = self.shared.handler.concurrent() {
            concurrent.wake();
            return;
        }
        let fresh = self.unwoken.replace(0);
        if fresh == 0 {
            return;
        }
        let wake = {
            let queue = lock(&self.shared.queue);
            threads_to_wake(queue.jobs.len(), fresh, queue.idle)
        };
        for _ in 0..wake {
            self.shared.work_ready.notify_one();
        }
    }

    /// Moves every finished job into `into`.
    pub fn take_finished(&self, into: &mut Vec<Finished>) {
        let mut finished = lock(&self.shared.completions.finished);
        if into.is_empty() {
            std::mem::swap(&mut *finished, into);
        } else {
            into.append(&mut finished);
        }
    }

    /// Takes back the request of `conn` with `serial` if it is still queued, no thread having
    /// started it: its client has gone, and running it would only spend a thread on an answer
    /// no one reads. Returns the request (it is dropped by the caller, on the loop: nothing of
    /// the application's is in it yet), or `None` when a thread has it already or it is not
    /// a request of this pool's.
    pub fn withdraw(&self, conn: usize, serial: u64) -> Option<Request> {
        let mut queue = lock(&self.shared.queue);
        let at = queue.jobs.iter().position(|job| {
            job.conn == conn && job.serial == serial && matches!(job.work, Work::Request(_))
        })?;
        match queue.jobs.remove(at)?.work {
            Work::Request(request) => {
                // It waited for a thread as long as it was there: the queue wait counts it,
                // or the longest waits (of clients that gave up) would not show.
                if let Some(queued) = request.queued_at() {
                    QUEUE_WAITS.record_since(queued);
                }
                Some(request)
            }
            Work::NextChunk(_) | Work::Discard(_) => None,
        }
    }

    /// The handler the threads run.
    pub fn handler(&self) -> &dyn Handler {
        &*self.shared.handler
    }

    /// The `pthread_self()` of the thread now running the job of `conn` with `serial`.
    pub fn thread_running(&self, conn: usize, serial: u64) -> Option<u64> {
        self.shared
            .running
            .iter()
            .find_map(|slot| match *lock(slot) {
                Some((c, s, thread)) if c == conn && s == serial => Some(thread),
                _ => None,
            })
    }

    /// Stops the threads once the queue is empty, waits up to `limit` for them, and then drops
    /// the handler (on a thread of its own, within what is left of `limit`, so a destructor
    /// that hangs cannot hold the caller). Jobs already queued still run.
    ///
    /// Returns whether the handler was dropped: false when a thread was still busy at the
    /// limit (the handler is then left alone, since that thread still uses it), or its
    /// destructor did not finish in time.
    pub fn shutdown_within(self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let Pool {
            shared, threads, ..
        } = self;
        lock(&shared.queue).closed = true;
        shared.work_ready.notify_all();
        while !threads.iter().all(JoinHandle::is_finished) {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        for handle in threads {
            let _ = handle.join();
        }
        let (done, dropped) = std::sync::mpsc::channel();
        let dropper = std::thread::Builder::new()
            .name("drop-app".to_owned())
            .spawn(move || {
                // Every pool thread has exited, so this is the last reference.
                let clean = catch_unwind(AssertUnwindSafe(|| drop(shared))).is_ok();
                let _ = done.send(clean);
            });
        if dropper.is_err() {
            return false;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        dropped.recv_timeout(left).unwrap_or(false)
    }

    /// Stops the threads once the queue is empty and waits for them. Jobs already queued still
    /// run; a handler that never returns keeps this waiting.
    pub fn shutdown(mut self) {
        lock(&self.shared.queue).closed = true;
        self.shared.work_ready.notify_all();
        for handle in self.threads.drain(..) {
            let _ = handle.join();
        }
    }
}

fn run_thread(shared: &Shared, slot: usize) {
    let thread = crate::sys::current_thread();
    loop {
        let job = {
            let mut queue = lock(&shared.queue);
            loop {
                if let Some(job) = queue.jobs.pop_front() {
                    break job;
                }
                if queue.closed {
                    return;
                }
                queue.idle += 1;
                queue = shared
                    .work_ready
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner);
                queue.idle -= 1;
            }
        };
        if let Work::Request(request) = &job.work
            && let Some(queued) = request.queued_at()
        {
            QUEUE_WAITS.record_since(queued);
        }
        *lock(&shared.running[slot]) = Some((job.conn, job.serial, thread));
        let finished = run_job(&*shared.handler, job);
        *lock(&shared.running[slot]) = None;
        if let Some(finished) = finished {
            shared.completions.push(finished);
        }
    }
}

thread_local! {
    /// Set while a pool thread runs the handler: the panic hook leaves the panic's description
    /// here, so the pool reports it in the same line as the request it broke.
    static HANDLER_PANIC: RefCell<Option<Option<String>>> = const { RefCell::new(None) };
}

/// Installs the process's panic hook: a panic inside a handler is described by the pool in one
/// log line with its request; any other panic is logged as it happens.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a non-string panic payload".to_owned());
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let description = format!("{message} (at {location})");
        let captured = HANDLER_PANIC.with(|slot| match slot.borrow_mut().as_mut() {
            Some(inside_handler) => {
                *inside_handler = Some(description.clone());
                true
            }
            None => false,
        });
        if !captured {
            let thread = std::thread::current();
            log::error!(
                "panic in thread {}: {description}",
                thread.name().unwrap_or("unnamed")
            );
        }
    }));
}

/// How many idle threads to wake for the `fresh` newest of `queued` jobs: each job claims an
/// idle thread in queue order, and the older jobs' claims were made when they were queued
/// (their threads are woken already, or were busy and will come back for them).
fn threads_to_wake(queued: usize, fresh: usize, idle: usize) -> usize {
    let older = queued.saturating_sub(fresh);
    queued.min(idle).saturating_sub(older)
}

/// Runs one job; `None` when there is nothing to hand back.
fn run_job(handler: &dyn Handler, job: Job) -> Option<Finished> {
    let Job { conn, serial, work } = job;
    let outcome = match work {
        Work::Request(request) => run_handler(handler, request),
        Work::NextChunk(stream) => next_chunk(stream),
        Work::Discard(stream) => {
            // A destructor that panics only loses its own clean-up.
            let _ = catch_unwind(AssertUnwindSafe(|| drop(stream)));
            return None;
        }
    };
    Some(Finished {
        conn,
        serial,
        outcome,
    })
}

fn next_chunk(mut stream: BodyStream) -> Outcome {
    HANDLER_PANIC.with(|slot| *slot.borrow_mut() = Some(None));
    let pulled = catch_unwind(AssertUnwindSafe(|| {
        loop {
            match stream.next() {
                // Empty chunks carry nothing; pulling on here saves the loop a round trip.
                Some(chunk) if chunk.is_empty() => continue,
                other => break other,
            }
        }
    }));
    let panic = HANDLER_PANIC
        .with(|slot| slot.borrow_mut().take())
        .flatten();
    match pulled {
        Ok(Some(chunk)) => Outcome::Chunk(chunk, stream),
        Ok(None) => {
            let _ = catch_unwind(AssertUnwindSafe(|| drop(stream)));
            Outcome::StreamEnded
        }
        // The stream logged why it gave up.
        Err(payload) if payload.is::<crate::handler::AbortStream>() => Outcome::StreamFailed,
        Err(_) => {
            log::error!(
                "a streamed response body panicked: {}; closing its connection",
                panic.as_deref().unwrap_or("no description")
            );
            Outcome::StreamFailed
        }
    }
}

fn run_handler(handler: &dyn Handler, request: Request) -> Outcome {
    let started = Instant::now();
    let method = request.method().to_owned();
    let target = request.target().to_owned();
    // The handler is shared by all threads and must be Sync; a panic mid-call leaves no state
    // of ours half-updated, so unwinding through it is safe to observe.
    HANDLER_PANIC.with(|slot| *slot.borrow_mut() = Some(None));
    let outcome = catch_unwind(AssertUnwindSafe(|| handler.handle(request)));
    let panic = HANDLER_PANIC
        .with(|slot| slot.borrow_mut().take())
        .flatten();
    match outcome {
        Ok(response) => Outcome::Response {
            response,
            panicked: false,
        },
        Err(_) => {
            log::error!(
                "handler panicked on {method} {target} after {:?}: {}; answered 500",
                started.elapsed(),
                panic.as_deref().unwrap_or("no description")
            );
            Outcome::Response {
                response: Response::text(500, "500 Internal Server Error\n"),
                panicked: true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool_with<H: Handler>(threads: usize, handler: H) -> (mio::Poll, Pool) {
        let poll = mio::Poll::new().unwrap();
        let waker = mio::Waker::new(poll.registry(), mio::Token(0)).unwrap();
        let pool = Pool::start(threads, Box::new(handler), waker, "test").unwrap();
        (poll, pool)
    }

    fn wait_for(poll: &mut mio::Poll, pool: &Pool, count: usize) -> Vec<Finished> {
        pool.wake();
        let mut events = mio::Events::with_capacity(8);
        let mut done = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while done.len() < count && Instant::now() < deadline {
            poll.poll(&mut events, Some(Duration::from_millis(100)))
                .unwrap();
            pool.take_finished(&mut done);
        }
        done
    }

    fn request_job(conn: usize, serial: u64, target: &str) -> Job {
        Job {
            conn,
            serial,
            work: Work::Request(Request::builder("GET", target).build()),
        }
    }

    fn response_of(finished: &Finished) -> &Response {
        match &finished.outcome {
            Outcome::Response { response, .. } => response,
            other => panic!("expected a response, got {other:?}"),
        }
    }

    #[test]
    fn a_round_of_jobs_wakes_as_many_idle_threads_as_it_has_unclaimed_jobs() {
        // Nothing queued before the round: one thread a job, as far as there are threads.
        assert_eq!(threads_to_wake(3, 3, 4), 3);
        assert_eq!(threads_to_wake(6, 6, 4), 4);
        // Two older jobs claimed two of the four idle threads already.
        assert_eq!(threads_to_wake(5, 3, 4), 2);
        // Older jobs outnumber the idle threads: nothing left to wake.
        assert_eq!(threads_to_wake(7, 2, 4), 0);
        assert_eq!(threads_to_wake(2, 2, 0), 0);
        assert_eq!(threads_to_wake(0, 0, 4), 0);
    }

    #[test]
    fn answers_queued_quietly_wake_the_loop_once_when_told() {
        let mut poll = mio::Poll::new().unwrap();
        let completions = Completions {
            finished: Mutex::new(Vec::new()),
            waker: mio::Waker::new(poll.registry(), mio::Token(0)).unwrap(),
            wake_due: AtomicBool::new(false),
        };
        let mut events = mio::Events::with_capacity(8);
        let mut woken = |poll: &mut mio::Poll| {
            poll.poll(&mut events, Some(Duration::ZERO)).unwrap();
            events.iter().count()
        };
        let answer = |conn| Finished {
            conn,
            serial: 1,
            outcome: Outcome::TaskDone,
        };
        completions.push_quietly(answer(1));
        completions.push_quietly(answer(2));
        assert_eq!(woken(&mut poll), 0, "queued quietly: not woken yet");
        completions.wake_if_due();
        assert_eq!(woken(&mut poll), 1, "woken once for both");
        completions.wake_if_due();
        assert_eq!(woken(&mut poll), 0, "nothing new: no second wake");
        assert_eq!(lock(&completions.finished).len(), 2);
        completions.push(answer(3));
        assert_eq!(
            woken(&mut poll),
            0,
            "the loop has not drained: no wake needed"
        );
        lock(&completions.finished).clear();
        completions.push(answer(4));
        assert_eq!(
            woken(&mut poll),
            1,
            "pushed into an empty list: woken at once"
        );
    }

    #[test]
    fn runs_jobs_and_wakes_the_loop() {
        let (mut poll, pool) = pool_with(2, |r: Request| Response::text(200, r.path().to_owned()));
        for conn in 0..5 {
            pool.submit(request_job(conn, 7, &format!("/{conn}")));
        }
        let mut done = wait_for(&mut poll, &pool, 5);
        done.sort_by_key(|f| f.conn);
        assert_eq!(done.len(), 5);
        for (conn, finished) in done.iter().enumerate() {
            assert_eq!(finished.conn, conn);
            assert_eq!(finished.serial, 7);
            assert_eq!(
                response_of(finished).body_bytes(),
                format!("/{conn}").as_bytes()
            );
        }
        pool.shutdown();
    }

    #[test]
    fn a_queued_request_is_withdrawn_but_not_one_a_thread_has_started() {
        let (started, started_rx) = std::sync::mpsc::channel();
        let (release, release_rx) = std::sync::mpsc::channel::<()>();
        let release_rx = Mutex::new(release_rx);
        let (mut poll, pool) = pool_with(1, move |r: Request| {
            if r.path() == "/hold" {
                started.send(()).unwrap();
                lock(&release_rx).recv().unwrap();
            }
            Response::text(200, r.path().to_owned())
        });
        pool.submit(request_job(1, 1, "/hold"));
        pool.wake();
        started_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        pool.submit(request_job(2, 5, "/queued"));
        pool.submit(request_job(3, 1, "/kept"));
        assert!(pool.withdraw(1, 1).is_none(), "running: too late");
        assert!(pool.withdraw(2, 4).is_none(), "another connection's serial");
        let withdrawn = pool.withdraw(2, 5).expect("still queued");
        assert_eq!(withdrawn.path(), "/queued");
        assert!(pool.withdraw(2, 5).is_none(), "withdrawn once");
        release.send(()).unwrap();
        let mut done = wait_for(&mut poll, &pool, 2);
        done.sort_by_key(|f| f.conn);
        let paths: Vec<_> = done
            .iter()
            .map(|f| (f.conn, response_of(f).body_bytes().to_vec()))
            .collect();
        assert_eq!(paths, [(1, b"/hold".to_vec()), (3, b"/kept".to_vec())]);
        pool.shutdown();
    }

    #[test]
    fn a_panic_becomes_a_500_and_the_thread_lives_on() {
        let (mut poll, pool) = pool_with(1, |r: Request| {
            if r.path() == "/boom" {
                panic!("boom");
            }
            Response::text(200, "ok")
        });
        pool.submit(request_job(1, 1, "/boom"));
        pool.submit(request_job(2, 1, "/fine"));
        let mut done = wait_for(&mut poll, &pool, 2);
        done.sort_by_key(|f| f.conn);
        assert!(matches!(
            done[0].outcome,
            Outcome::Response { panicked: true, .. }
        ));
        assert_eq!(response_of(&done[0]).status(), 500);
        assert_eq!(response_of(&done[1]).status(), 200);
        pool.shutdown();
    }

    /// A handler that reports its drop, and can be made slow to answer or to drop.
    struct Tracked {
        dropped: std::sync::mpsc::Sender<()>,
        /// What the drop waits for before it ends: `None` ends at once.
        drop_waits_for: Option<Mutex<std::sync::mpsc::Receiver<()>>>,
    }

    impl Handler for Tracked {
        fn handle(&self, request: Request) -> Response {
            let ms: u64 = request
                .query_param("ms")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            std::thread::sleep(Duration::from_millis(ms));
            Response::new(200)
        }
    }

    impl Drop for Tracked {
        fn drop(&mut self) {
            if let Some(release) = &self.drop_waits_for {
                let _ = lock(release).recv();
            }
            let _ = self.dropped.send(());
        }
    }

    #[test]
    fn shutdown_within_drops_the_handler_when_the_threads_are_free_in_time() {
        let (tx, rx) = std::sync::mpsc::channel();
        let (mut poll, pool) = pool_with(
            2,
            Tracked {
                dropped: tx,
                drop_waits_for: None,
            },
        );
        pool.submit(request_job(1, 1, "/?ms=50"));
        wait_for(&mut poll, &pool, 1);
        assert!(pool.shutdown_within(Duration::from_secs(5)));
        assert!(
            rx.try_recv().is_ok(),
            "dropped before shutdown_within returned"
        );
    }

    /// Runs `shutdown_within` on a thread of its own and returns what it said, failing if it
    /// has not returned within a bound that only catches a hang (the request it must not wait
    /// for takes a minute; the drop, until the test lets it go).
    fn shutdown_returns(pool: Pool, limit: Duration) -> bool {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(pool.shutdown_within(limit));
        });
        rx.recv_timeout(Duration::from_secs(20))
            .expect("shutdown_within waited for what it should give up on")
    }

    #[test]
    fn shutdown_within_gives_up_on_a_busy_thread_or_a_slow_drop() {
        let (tx, rx) = std::sync::mpsc::channel();
        let (_poll, pool) = pool_with(
            1,
            Tracked {
                dropped: tx,
                drop_waits_for: None,
            },
        );
        pool.submit(request_job(1, 1, "/?ms=60000"));
        pool.wake();
        // The request is on its thread, not in the queue.
        let deadline = Instant::now() + Duration::from_secs(20);
        while pool.thread_running(1, 1).is_none() {
            assert!(Instant::now() < deadline, "the request never started");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(!shutdown_returns(pool, Duration::from_millis(100)));
        assert!(
            rx.try_recv().is_err(),
            "never dropped under a running request"
        );

        let (tx, rx) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel();
        let slow_drop = Tracked {
            dropped: tx,
            drop_waits_for: Some(Mutex::new(released)),
        };
        let (_poll, pool) = pool_with(1, slow_drop);
        assert!(!shutdown_returns(pool, Duration::from_millis(200)));
        // The destructor, still running on its own thread, finishes once let go.
        assert!(rx.try_recv().is_err());
        release.send(()).unwrap();
        assert!(rx.recv_timeout(Duration::from_secs(20)).is_ok());
    }

    #[test]
    fn streams_are_pulled_one_chunk_per_job_skipping_empty_ones() {
        let (mut poll, pool) = pool_with(1, |_: Request| Response::new(200));
        let chunks = vec![b"one".to_vec(), Vec::new(), b"two".to_vec()];
        let mut stream: BodyStream = Box::new(chunks.into_iter());
        let mut got = Vec::new();
        loop {
            pool.submit(Job {
                conn: 3,
                serial: 9,
                work: Work::NextChunk(stream),
            });
            let done = wait_for(&mut poll, &pool, 1).pop().expect("an answer");
            assert_eq!((done.conn, done.serial), (3, 9));
            match done.outcome {
                Outcome::Chunk(chunk, rest) => {
                    got.push(chunk);
                    stream = rest;
                }
                Outcome::StreamEnded => break,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(got, [b"one".to_vec(), b"two".to_vec()]);
        pool.shutdown();
    }

    #[test]
    fn a_panicking_stream_fails_and_discarded_streams_are_dropped_on_the_pool() {
        let (mut poll, pool) = pool_with(1, |_: Request| Response::new(200));
        let bad: BodyStream = Box::new((0..3).map(|n| {
            assert!(n < 1, "the stream broke");
            vec![b'x']
        }));
        pool.submit(Job {
            conn: 1,
            serial: 1,
            work: Work::NextChunk(bad),
        });
        let first = wait_for(&mut poll, &pool, 1).pop().unwrap();
        let Outcome::Chunk(_, bad) = first.outcome else {
            panic!("{:?}", first.outcome);
        };
        pool.submit(Job {
            conn: 1,
            serial: 1,
            work: Work::NextChunk(bad),
        });
        let second = wait_for(&mut poll, &pool, 1).pop().unwrap();
        assert!(matches!(second.outcome, Outcome::StreamFailed));

        struct Flag(std::sync::mpsc::Sender<std::thread::ThreadId>);
        impl Iterator for Flag {
            type Item = Vec<u8>;
            fn next(&mut self) -> Option<Vec<u8>> {
                None
            }
        }
        impl Drop for Flag {
            fn drop(&mut self) {
                let _ = self.0.send(std::thread::current().id());
            }
        }
        let (tx, rx) = std::sync::mpsc::channel();
        pool.submit(Job {
            conn: 2,
            serial: 1,
            work: Work::Discard(Box::new(Flag(tx))),
        });
        pool.wake();
        let dropped_on = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_ne!(dropped_on, std::thread::current().id());
        pool.shutdown();
    }
}
