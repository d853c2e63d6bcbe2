//! The WSGI handler: PEP 3333 on tine's pool threads.
//!
//! A pool thread takes the GIL to build the `environ`, call the application and advance its
//! response iterable until the first non-empty chunk (or its end): only then do the status and
//! headers go out, so an application that calls `start_response` lazily, or again with
//! `exc_info` before any body, gets its own status. A list or tuple leaves Python in one
//! crossing, and so does an iterable whose first chunk holds its whole `Content-Length` (a
//! Flask response's); any other iterable is pulled one chunk at a time, when the client has
//! taken the previous one, on a pool thread with the GIL. Its `close()` is called exactly once: after the
//! last chunk, or when the response is dropped (the client left, the request timed out, the
//! iterable raised).
//!
//! This file is the handler: building it, calling the application for a request, and the
//! pool threads' Python thread states. Each part of PEP 3333 has a file of its own under
//! `wsgi/`: `environ.rs` builds the `environ`; `input.rs` has the objects it carries
//! (`wsgi.input`, `wsgi.errors`, `wsgi.file_wrapper`); `start_response.rs` is the
//! `start_response` callable and its checks of the status and headers; `response.rs` turns
//! what the application returned into tine's response; `iterable.rs` advances a response
//! iterable in the request's context and calls its `close()` exactly once.

mod environ;
mod input;
mod iterable;
mod response;
mod start_response;

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3::{ffi, intern};

use super::interp::{format_err, support};
use super::{repr, type_name};
use crate::config::App;
use crate::handler::{BuildError, Handler, Request, Response};
use crate::pool::lock;
use input::{Errors, FileWrapper};
use iterable::{Advancing, AdvancingGuard, Iterable};
use response::{BodyOut, ThenAbort, finish, respond};
use start_response::StartResponse;

/// A WSGI application, served from every pool thread of one worker.
pub struct Wsgi {
    app: Py<PyAny>,
    /// What every request's `environ` starts as a copy of ([`environ::template`]).
    template: Py<PyDict>,
    file_wrapper: Py<PyAny>,
    /// `contextvars.Context`: each request runs in a fresh one.
    context: Py<PyAny>,
    script_name: String,
    advancing: Advancing,
}

impl std::fmt::Debug for Wsgi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wsgi")
            .field("script_name", &self.script_name)
            .finish_non_exhaustive()
    }
}

impl Wsgi {
    /// The handler for the WSGI application `application`, configured by `app`.
    pub(super) fn new(
        py: Python<'_>,
        application: Py<PyAny>,
        app: &App,
    ) -> Result<Wsgi, BuildError> {
        let script_name = if app.script_name.is_empty() {
            std::env::var("SCRIPT_NAME").unwrap_or_default()
        } else {
            app.script_name.clone()
        };
        let script_name = script_name.trim_end_matches('/').to_owned();
        let errors = Py::new(py, Errors).map_err(|e| format_err(py, &e))?;
        let file_wrapper = py.get_type::<FileWrapper>().into_any();
        let template = environ::template(py, &script_name, errors.bind(py), &file_wrapper)
            .map_err(|e| format_err(py, &e))?
            .unbind();
        let context = py
            .import("contextvars")
            .and_then(|m| m.getattr("Context"))
            .map_err(|e| format_err(py, &e))?
            .unbind();
        Ok(Wsgi {
            app: application,
            template,
            file_wrapper: file_wrapper.unbind(),
            context,
            script_name,
            advancing: Arc::default(),
        })
    }

    fn call(&self, py: Python<'_>, request: Request) -> Response {
        let label = format!("{} {}", request.method(), request.target());
        let start = match Py::new(py, StartResponse::default()) {
            Ok(start) => start,
            Err(err) => return self.failed(py, &label, "could not start", &err),
        };
        let environ = match self.environ(py, request) {
            Ok(environ) => environ,
            Err(err) => return self.failed(py, &label, "could not build the environ", &err),
        };
        let context = match self.context.bind(py).call0() {
            Ok(context) => context,
            Err(err) => return self.failed(py, &label, "could not make a context", &err),
        };
        let called = context.call_method1(
            intern!(py, "run"),
            (self.app.bind(py), environ, start.bind(py)),
        );
        let result = match called {
            Ok(result) => result,
            Err(err) if start.borrow(py).sent => {
                // write() sent the head and some body: the client gets those, then the close.
                log::error!(
                    "{label}: the application raised after write() started the response; \
                     closing the connection\n{}",
                    format_err(py, &err)
                );
                let written = std::mem::take(&mut start.borrow_mut(py).written);
                return finish(
                    py,
                    &start,
                    BodyOut::Stream(Box::new(ThenAbort(Some(written)))),
                )
                .unwrap_or_else(|err| self.failed(py, &label, "could not respond", &err));
            }
            Err(err) => return self.failed(py, &label, "the application raised", &err),
        };
        let iterable = Arc::new(Iterable::new(
            label.clone(),
            result.unbind(),
            context.unbind(),
        ));
        let advancing = AdvancingGuard::new(&self.advancing, &iterable);
        let responded = respond(
            py,
            &iterable,
            &start,
            self.file_wrapper.bind(py),
            &self.advancing,
        );
        drop(advancing);
        match responded {
            Ok(response) => response,
            Err(err) => {
                iterable.close(py, false);
                self.failed(py, &label, "the application's response failed", &err)
            }
        }
    }

    /// Logs `err` with its traceback, once, and answers 500.
    fn failed(&self, py: Python<'_>, label: &str, what: &str, err: &PyErr) -> Response {
        log::error!("{label}: {what}; answered 500\n{}", format_err(py, err));
        Response::text(500, "500 Internal Server Error\n")
    }
}

impl Handler for Wsgi {
    fn handle(&self, request: Request) -> Response {
        Python::attach(|py| self.call(py, request))
    }

    fn pool_thread(&self, run: &mut dyn FnMut()) {
        // One thread state for the thread's whole life, so `threading.local` data (a Django
        // database connection, for one) lasts from one request to the next; the GIL is
        // released while the thread waits for work.
        // SAFETY: the interpreter is initialised (the handler was built), this thread does not
        // hold the GIL, and Ensure/SaveThread are undone in reverse order on the same thread.
        unsafe {
            let state = ffi::PyGILState_Ensure();
            let thread = ffi::PyEval_SaveThread();
            run();
            ffi::PyEval_RestoreThread(thread);
            ffi::PyGILState_Release(state);
        }
    }

    fn request_stuck(&self, thread: u64, what: &str) {
        // The event loop never takes the GIL: a thread of its own waits for it.
        let stuck = lock(&self.advancing).get(&thread).cloned();
        super::log_stack_of(thread, what.to_owned(), move || {
            // Its response will never be sent: its iterable is closed now.
            if let Some(iterable) = stuck {
                Python::attach(|py| iterable.close(py, true));
            }
        });
    }
}

impl Drop for Wsgi {
    fn drop(&mut self) {
        // A graceful stop: every request is answered; run the application's atexit handlers.
        Python::attach(|py| {
            if let Err(err) = support(py).getattr("run_atexit").and_then(|f| f.call0()) {
                log::error!(
                    "the application's atexit handlers raised:\n{}",
                    format_err(py, &err)
                );
            }
        });
    }
}
