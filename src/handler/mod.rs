//! The application interface: the `Handler` trait, the `Request` it receives and the `Response`
//! it returns, and the factory that builds a handler in each worker after fork.
//!
//! A handler runs on a pool thread with a request whose head and body are fully buffered, so it
//! may block (a database call, a sleep, a CPU burst) without stalling the worker's event loop; the
//! loop writes the response it returns. A panic in a handler becomes a `500` for that request.
//!
//! ```
//! use tine::handler::{Handler, Request, Response};
//!
//! struct Hello;
//!
//! impl Handler for Hello {
//!     fn handle(&self, request: Request) -> Response {
//!         match request.path() {
//!             "/" => Response::text(200, "Hello from my app\n"),
//!             _ => Response::text(404, "not found\n"),
//!         }
//!     }
//! }
//!
//! let response = Hello.handle(Request::builder("GET", "/").build());
//! assert_eq!(response.status(), 200);
//! assert_eq!(response.body_bytes(), b"Hello from my app\n");
//! ```

mod concurrent;
pub mod demo;
mod request;
mod response;
pub mod static_files;

pub use concurrent::{Begin, Concurrent, Replied, Replies, Reply, Ticket, WsReply};
pub use request::{
    BodyReader, Headers, Request, RequestBody, RequestBuilder, Version, percent_decode,
    percent_decode_bytes, percent_decode_path,
};
pub use response::{Body, BodyStream, FileRegion, HeaderFields, Response};
use std::error::Error as StdError;

/// An application: called from pool threads, one call per request.
///
/// Implementations must be `Send + Sync` because every pool thread of a worker shares one
/// handler. State that must not be shared across processes (a database connection, a cache) is
/// built by the [`HandlerFactory`] after fork, once per worker.
///
/// The worker owns the handler for its whole life: it is built by the factory after fork, told
/// when the worker begins a graceful stop ([`Handler::on_stop`]), and dropped once every request
/// has been answered, before the worker exits, so `Drop` is the place to flush and close. (A
/// fast stop, or a graceful stop that runs out of `graceful_timeout`, exits without dropping it.)
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use tine::handler::{Handler, Request, Response};
///
/// struct App {
///     stopping: AtomicBool,
/// }
///
/// impl Handler for App {
///     fn handle(&self, _request: Request) -> Response {
///         let response = Response::text(200, "ok\n");
///         if self.stopping.load(Ordering::Relaxed) {
///             // Tell a load balancer to move on while the last requests finish.
///             return response.with_header("X-Draining", "1");
///         }
///         response
///     }
///
///     fn on_stop(&self) {
///         self.stopping.store(true, Ordering::Relaxed);
///     }
/// }
///
/// impl Drop for App {
///     fn drop(&mut self) {
///         // Close connections, flush buffers: every request has been answered.
///     }
/// }
///
/// let app = App { stopping: AtomicBool::new(false) };
/// app.on_stop();
/// assert_eq!(app.handle(Request::builder("GET", "/").build()).header("X-Draining"), Some(&b"1"[..]));
/// ```
pub trait Handler: Send + Sync + 'static {
    /// Answers one request. It may block; it never sees the client socket.
    fn handle(&self, request: Request) -> Response;

    /// Called once when the worker begins a graceful stop (SIGTERM to the master, the worker
    /// being recycled, or the master gone): no new connections come, and the requests already
    /// received are still being answered, possibly on other threads at this very moment.
    ///
    /// It runs on the worker's event loop, so that it is called even when every pool thread is
    /// busy, and must return at once: set a flag, wake a background thread. Slow clean-up
    /// belongs in `Drop`. The default does nothing.
    fn on_stop(&self) {}

    /// Runs a pool thread's whole life: each pool thread calls this once, and `run` serves
    /// requests until the pool stops. A handler that needs per-thread set-up and tear-down
    /// around all its calls (an interpreter's thread state) wraps `run` in it; the default
    /// just calls it.
    fn pool_thread(&self, run: &mut dyn FnMut()) {
        run();
    }

    /// Called on the event loop when a request (`what`, e.g. `GET /report`) has run past
    /// `request_timeout` on the pool thread `thread` (its `pthread_self()`): the client has
    /// its `504` and the worker is recycling. A handler that can tell where that thread is
    /// stuck logs it here. It must return at once; the default does nothing.
    fn request_stuck(&self, thread: u64, what: &str) {
        let _ = (thread, what);
    }

    /// An application that runs its requests concurrently on an event loop of its own (ASGI)
    /// returns itself here: the worker then hands it requests without blocking instead of
    /// calling [`Handler::handle`] on pool threads, and starts no pool threads. The default is
    /// `None`.
    fn concurrent(&self) -> Option<&dyn Concurrent> {
        None
    }
}

/// A streamed body's `next` may end the response as failed, without the pool logging a panic,
/// by unwinding with this payload (`std::panic::resume_unwind(Box::new(AbortStream))`) once it
/// has logged why itself: the connection is closed without the end of the body.
#[derive(Debug, Clone, Copy)]
pub struct AbortStream;

/// What a worker tells the factory about itself when it builds its handler.
#[derive(Clone, Debug)]
pub struct WorkerInfo {
    /// The worker's slot in the master's table, from 1.
    pub slot: usize,
    /// The worker's process id.
    pub pid: u32,
    /// How many pool threads will call the handler.
    pub threads: usize,
    /// The `[app]` section this worker was started with: a reload starts workers with the new
    /// one, so an application configured there picks up changes without a restart.
    pub app: crate::config::App,
}

/// The error a factory returns when it cannot build the application; the worker logs it and
/// exits, and the master reports the failure.
pub type BuildError = Box<dyn StdError + Send + Sync>;

/// Builds the application's handler inside each worker, after fork.
///
/// A type that holds the application's settings implements it to build per-worker state
/// (see `examples/per_worker.rs`); any `Fn(&WorkerInfo) -> Result<H, E>` closure is one too:
///
/// ```
/// use tine::handler::{BuildError, HandlerFactory, Request, Response, WorkerInfo};
///
/// let factory = |worker: &WorkerInfo| -> Result<_, BuildError> {
///     let greeting = format!("hello from worker {}\n", worker.slot);
///     Ok(move |_request: Request| Response::text(200, greeting.clone()))
/// };
/// let info = WorkerInfo { slot: 1, pid: 42, threads: 4, app: Default::default() };
/// let handler = factory.build(&info).unwrap();
/// let response = handler.handle(Request::builder("GET", "/").build());
/// assert_eq!(response.body_bytes(), b"hello from worker 1\n");
/// ```
pub trait HandlerFactory {
    /// Builds the handler for the worker described by `worker`.
    fn build(&self, worker: &WorkerInfo) -> Result<Box<dyn Handler>, BuildError>;

    /// Called in the master just before it forks a worker, and [`after_fork_parent`] /
    /// [`after_fork_child`] just after, on each side: a factory whose state lives in the master
    /// (an interpreter it preloaded) takes and releases its locks around the fork here. The
    /// defaults do nothing.
    ///
    /// [`after_fork_parent`]: HandlerFactory::after_fork_parent
    /// [`after_fork_child`]: HandlerFactory::after_fork_child
    fn before_fork(&self) {}

    /// See [`HandlerFactory::before_fork`].
    fn after_fork_parent(&self) {}

    /// See [`HandlerFactory::before_fork`].
    fn after_fork_child(&self) {}
}

impl<F, H, E> HandlerFactory for F
where
    F: Fn(&WorkerInfo) -> Result<H, E>,
    H: Handler,
    E: Into<BuildError>,
{
    fn build(&self, worker: &WorkerInfo) -> Result<Box<dyn Handler>, BuildError> {
        self(worker)
            .map(|handler| Box::new(handler) as Box<dyn Handler>)
            .map_err(Into::into)
    }
}

impl<F> Handler for F
where
    F: Fn(Request) -> Response + Send + Sync + 'static,
{
    fn handle(&self, request: Request) -> Response {
        self(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closures_are_handlers_and_factories() {
        let factory = |_: &WorkerInfo| -> Result<_, BuildError> {
            Ok(|request: Request| Response::text(200, request.method().to_owned()))
        };
        let info = WorkerInfo {
            slot: 1,
            pid: 1,
            threads: 1,
            app: Default::default(),
        };
        let handler = factory.build(&info).expect("closure factory builds");
        let response = handler.handle(Request::builder("PUT", "/").build());
        assert_eq!(response.body_bytes(), b"PUT");
    }
}
