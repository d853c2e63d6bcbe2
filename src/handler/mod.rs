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

pub mod demo;
mod request;
mod response;
pub mod static_files;

pub use request::{
    BodyReader, Headers, Request, RequestBuilder, Version, percent_decode, percent_decode_bytes,
    percent_decode_path,
};
pub use response::{Body, BodyStream, FileRegion, HeaderFields, Response};
use std::error::Error as StdError;

/// An application: called from pool threads, one call per request.
///
/// Implementations must be `Send + Sync` because every pool thread of a worker shares one
/// handler. State that must not be shared across processes (a database connection, a cache) is
/// built by the [`HandlerFactory`] after fork, once per worker.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request. It may block; it never sees the client socket.
    fn handle(&self, request: Request) -> Response;
}

/// What a worker tells the factory about itself when it builds its handler.
#[derive(Clone, Debug)]
pub struct WorkerInfo {
    /// The worker's slot in the master's table, from 1.
    pub slot: usize,
    /// The worker's process id.
    pub pid: u32,
    /// How many pool threads will call the handler.
    pub threads: usize,
}

/// The error a factory returns when it cannot build the application; the worker logs it and
/// exits, and the master reports the failure.
pub type BuildError = Box<dyn StdError + Send + Sync>;

/// Builds the application's handler inside each worker, after fork.
///
/// Any `Fn(&WorkerInfo) -> Result<H, E>` closure is a factory:
///
/// ```
/// use tine::handler::{BuildError, HandlerFactory, Request, Response, WorkerInfo};
///
/// let factory = |worker: &WorkerInfo| -> Result<_, BuildError> {
///     let greeting = format!("hello from worker {}\n", worker.slot);
///     Ok(move |_request: Request| Response::text(200, greeting.clone()))
/// };
/// let info = WorkerInfo { slot: 1, pid: 42, threads: 4 };
/// let handler = factory.build(&info).unwrap();
/// let response = handler.handle(Request::builder("GET", "/").build());
/// assert_eq!(response.body_bytes(), b"hello from worker 1\n");
/// ```
pub trait HandlerFactory {
    /// Builds the handler for the worker described by `worker`.
    fn build(&self, worker: &WorkerInfo) -> Result<Box<dyn Handler>, BuildError>;
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
        };
        let handler = factory.build(&info).expect("closure factory builds");
        let response = handler.handle(Request::builder("PUT", "/").build());
        assert_eq!(response.body_bytes(), b"PUT");
    }
}
