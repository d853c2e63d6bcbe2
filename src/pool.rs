//! The worker's fixed pool of threads that run the application's handler.
//!
//! The event loop submits fully buffered requests; a pool thread calls the handler, catches a
//! panic as a 500, and hands the response back through a completion list and a `mio::Waker`.
//! Pool threads never touch a client socket, so a slow client costs a buffer, never a thread.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::handler::{Handler, Request, Response};

/// One request for the pool, tagged with the connection it came from.
#[derive(Debug)]
pub struct Job {
    /// The connection's slab index in the event loop.
    pub conn: usize,
    /// Tells a reused slab index apart from the connection that submitted the job.
    pub serial: u64,
    /// The request.
    pub request: Request,
}

/// A handler's answer, on its way back to the event loop.
#[derive(Debug)]
pub struct Finished {
    /// The connection's slab index.
    pub conn: usize,
    /// The serial of the job.
    pub serial: u64,
    /// The response to write.
    pub response: Response,
    /// Whether the handler panicked (the response is then a 500).
    pub panicked: bool,
}

struct Queue {
    jobs: VecDeque<Job>,
    closed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    work_ready: Condvar,
    finished: Mutex<Vec<Finished>>,
    waker: mio::Waker,
    handler: Box<dyn Handler>,
}

/// A fixed set of threads running one handler.
pub struct Pool {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
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
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Pool {
    /// Starts `threads` threads named `{name}-{n}`, running `handler`, waking the event loop
    /// through `waker` when a response is ready.
    pub fn start(
        threads: usize,
        handler: Box<dyn Handler>,
        waker: mio::Waker,
        name: &str,
    ) -> io::Result<Pool> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                closed: false,
            }),
            work_ready: Condvar::new(),
            finished: Mutex::new(Vec::new()),
            waker,
            handler,
        });
        let mut handles = Vec::with_capacity(threads);
        for n in 1..=threads {
            let shared = Arc::clone(&shared);
            let handle = std::thread::Builder::new()
                .name(format!("{name}-{n}"))
                .spawn(move || run_thread(&shared))?;
            handles.push(handle);
        }
        Ok(Pool {
            shared,
            threads: handles,
        })
    }

    /// Queues a job; a free thread picks it up at once.
    pub fn submit(&self, job: Job) {
        lock(&self.shared.queue).jobs.push_back(job);
        self.shared.work_ready.notify_one();
    }

    /// Moves every finished job into `into`.
    pub fn take_finished(&self, into: &mut Vec<Finished>) {
        let mut finished = lock(&self.shared.finished);
        if into.is_empty() {
            std::mem::swap(&mut *finished, into);
        } else {
            into.append(&mut finished);
        }
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

fn run_thread(shared: &Shared) {
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
                queue = shared
                    .work_ready
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        let finished = run_job(&*shared.handler, job);
        let was_empty = {
            let mut done = lock(&shared.finished);
            let was_empty = done.is_empty();
            done.push(finished);
            was_empty
        };
        // One wake per batch: while the loop has not yet drained earlier answers, it will see
        // this one too.
        if was_empty && let Err(err) = shared.waker.wake() {
            log::error!("could not wake the event loop: {err}");
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

fn run_job(handler: &dyn Handler, job: Job) -> Finished {
    let Job {
        conn,
        serial,
        request,
    } = job;
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
        Ok(response) => Finished {
            conn,
            serial,
            response,
            panicked: false,
        },
        Err(_) => {
            log::error!(
                "handler panicked on {method} {target} after {:?}: {}; answered 500",
                started.elapsed(),
                panic.as_deref().unwrap_or("no description")
            );
            Finished {
                conn,
                serial,
                response: Response::text(500, "500 Internal Server Error\n"),
                panicked: true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn pool_with<H: Handler>(threads: usize, handler: H) -> (mio::Poll, Pool) {
        let poll = mio::Poll::new().unwrap();
        let waker = mio::Waker::new(poll.registry(), mio::Token(0)).unwrap();
        let pool = Pool::start(threads, Box::new(handler), waker, "test").unwrap();
        (poll, pool)
    }

    fn wait_for(poll: &mut mio::Poll, pool: &Pool, count: usize) -> Vec<Finished> {
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

    #[test]
    fn runs_jobs_and_wakes_the_loop() {
        let (mut poll, pool) = pool_with(2, |r: Request| Response::text(200, r.path().to_owned()));
        for conn in 0..5 {
            let request = Request::builder("GET", &format!("/{conn}")).build();
            pool.submit(Job {
                conn,
                serial: 7,
                request,
            });
        }
        let mut done = wait_for(&mut poll, &pool, 5);
        done.sort_by_key(|f| f.conn);
        assert_eq!(done.len(), 5);
        for (conn, finished) in done.iter().enumerate() {
            assert_eq!(finished.conn, conn);
            assert_eq!(finished.serial, 7);
            assert_eq!(
                finished.response.body_bytes(),
                format!("/{conn}").as_bytes()
            );
        }
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
        pool.submit(Job {
            conn: 1,
            serial: 1,
            request: Request::builder("GET", "/boom").build(),
        });
        pool.submit(Job {
            conn: 2,
            serial: 1,
            request: Request::builder("GET", "/fine").build(),
        });
        let mut done = wait_for(&mut poll, &pool, 2);
        done.sort_by_key(|f| f.conn);
        assert_eq!(done[0].response.status(), 500);
        assert!(done[0].panicked);
        assert_eq!(done[1].response.status(), 200);
        pool.shutdown();
    }
}
