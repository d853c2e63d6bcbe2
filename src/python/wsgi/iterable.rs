//! The response iterable: advanced one chunk at a time in the request's
//! `contextvars.Context`, whichever pool thread takes it, registered while a thread advances
//! it so a stuck request's iterable can be closed, and closed exactly once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyStopIteration, PyTypeError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyTuple};

use super::start_response::StartResponse;
use super::type_name;
use crate::handler::AbortStream;
use crate::pool::lock;
use crate::python::interp::format_err;

/// The response iterable each pool thread is advancing now, by thread (`pthread_self()`), so
/// a request that runs past `request_timeout` can have its iterable closed.
pub(super) type Advancing = Arc<Mutex<HashMap<u64, Arc<Iterable>>>>;

/// What an application returned: its iterable, the `contextvars.Context` every call for the
/// request runs in (so a generator that sets context variables, as Flask's
/// `stream_with_context` does, finds them again on its next step, whichever thread takes it),
/// and whether `close()` was called.
pub(super) struct Iterable {
    label: String,
    pub(super) result: Py<PyAny>,
    context: Py<PyAny>,
    closed: AtomicBool,
}

impl Iterable {
    /// The iterable `result` an application returned, advanced and closed in `context`;
    /// `label` names the request in log lines.
    pub(super) fn new(label: String, result: Py<PyAny>, context: Py<PyAny>) -> Iterable {
        Iterable {
            label,
            result,
            context,
            closed: AtomicBool::new(false),
        }
    }

    /// Runs `f(args)` in the request's context.
    pub(super) fn run<'py>(
        &self,
        py: Python<'py>,
        f: &Bound<'py, PyAny>,
        args: &[&Bound<'py, PyAny>],
    ) -> PyResult<Bound<'py, PyAny>> {
        let mut call = Vec::with_capacity(1 + args.len());
        call.push(f);
        call.extend_from_slice(args);
        let call = PyTuple::new(py, call)?;
        self.context.bind(py).call_method1(intern!(py, "run"), call)
    }

    /// Calls `close()`, if the iterable has one, unless it has been called: from the thread
    /// that advances it (in its context), or, when `elsewhere`, from another thread while it
    /// is stuck (not for a generator that is running, which cannot be closed then).
    pub(super) fn close(&self, py: Python<'_>, elsewhere: bool) {
        let result = self.result.bind(py);
        let running = elsewhere
            && result
                .getattr(intern!(py, "gi_running"))
                .and_then(|r| r.is_truthy())
                .unwrap_or(false);
        if running || self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let closed = match result.getattr_opt(intern!(py, "close")) {
            Ok(Some(close)) if elsewhere => close.call0().map(drop),
            Ok(Some(close)) => self.run(py, &close, &[]).map(drop),
            Ok(None) => Ok(()),
            Err(err) => Err(err),
        };
        if let Err(err) = closed {
            log::error!(
                "{}: the response iterable's close() raised\n{}",
                self.label,
                format_err(py, &err)
            );
        }
    }
}

/// While the calling pool thread advances `iterable`: registered in `advancing`.
pub(super) struct AdvancingGuard<'a> {
    advancing: &'a Advancing,
    thread: u64,
}

impl<'a> AdvancingGuard<'a> {
    pub(super) fn new(advancing: &'a Advancing, iterable: &Arc<Iterable>) -> AdvancingGuard<'a> {
        let thread = crate::sys::current_thread();
        lock(advancing).insert(thread, Arc::clone(iterable));
        AdvancingGuard { advancing, thread }
    }
}

impl Drop for AdvancingGuard<'_> {
    fn drop(&mut self) {
        lock(self.advancing).remove(&self.thread);
    }
}

/// `builtins.iter`, once looked up.
pub(super) static ITER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
/// `builtins.next`, once looked up.
static NEXT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The builtin function `name`, looked up once in `cell` rather than imported per request.
pub(super) fn builtin<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyAny>>,
    name: &str,
) -> PyResult<&'py Bound<'py, PyAny>> {
    cell.import(py, "builtins", name)
}

/// The iterator's next chunk, in the request's context; `None` at its end.
pub(super) fn advance(
    py: Python<'_>,
    iterable: &Iterable,
    iterator: &Bound<'_, PyAny>,
) -> PyResult<Option<Vec<u8>>> {
    match iterable.run(py, builtin(py, &NEXT, "next")?, &[iterator]) {
        Ok(item) => Ok(Some(chunk_bytes(&item)?.to_vec())),
        Err(err) if err.is_instance_of::<PyStopIteration>(py) => Ok(None),
        Err(err) => Err(err),
    }
}

pub(super) fn chunk_bytes<'a>(item: &'a Bound<'_, PyAny>) -> PyResult<&'a [u8]> {
    item.cast::<PyBytes>().map(|b| b.as_bytes()).map_err(|_| {
        PyTypeError::new_err(format!(
            "the response iterable must yield bytes, not {}",
            type_name(item)
        ))
    })
}

/// A response iterable pulled one chunk at a time; dropping it calls `close()`.
pub(super) struct WsgiStream {
    pub(super) first: Option<Vec<u8>>,
    pub(super) iterator: Option<Py<PyAny>>,
    pub(super) iterable: Arc<Iterable>,
    pub(super) start: Py<StartResponse>,
    pub(super) advancing: Advancing,
}

impl Iterator for WsgiStream {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        let iterator = self.iterator.as_ref()?;
        let advancing = AdvancingGuard::new(&self.advancing, &self.iterable);
        let pulled = Python::attach(|py| -> PyResult<Option<Vec<u8>>> {
            let written = std::mem::take(&mut self.start.borrow_mut(py).written);
            if !written.is_empty() {
                return Ok(Some(written));
            }
            advance(py, &self.iterable, iterator.bind(py))
        });
        drop(advancing);
        match pulled {
            Ok(Some(chunk)) => Some(chunk),
            Ok(None) => {
                self.iterator = None;
                Python::attach(|py| self.iterable.close(py, false));
                None
            }
            Err(err) => {
                Python::attach(|py| {
                    log::error!(
                        "{}: the response iterable raised after the response started; closing \
                         the connection\n{}",
                        self.iterable.label,
                        format_err(py, &err)
                    );
                    self.iterable.close(py, false);
                });
                self.iterator = None;
                std::panic::resume_unwind(Box::new(AbortStream));
            }
        }
    }
}

impl Drop for WsgiStream {
    fn drop(&mut self) {
        if !self.iterable.closed.load(Ordering::Acquire) {
            Python::attach(|py| self.iterable.close(py, false));
        }
    }
}
