//! What the application returned, turned into tine's response: a list or tuple as one body, a
//! `wsgi.file_wrapper` around a regular file as a file region the event loop sends with
//! `sendfile(2)`, any other iterable as a stream (or as one body, when its first chunk holds
//! the whole `Content-Length`); framed by the application's `Content-Length` when it gave one.

use std::fs::File;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::Arc;

use pyo3::exceptions::PyAssertionError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use super::input::FileWrapper;
use super::iterable::{Advancing, ITER, Iterable, WsgiStream, advance, builtin, chunk_bytes};
use super::start_response::StartResponse;
use crate::handler::{AbortStream, BodyStream, FileRegion, Response};

/// Turns what the application returned into the response: its status and headers, and its
/// body as bytes, a file region or a stream.
pub(super) fn respond(
    py: Python<'_>,
    iterable: &Arc<Iterable>,
    start: &Py<StartResponse>,
    file_wrapper: &Bound<'_, PyAny>,
    advancing: &Advancing,
) -> PyResult<Response> {
    let result = iterable.result.bind(py);
    // A list or tuple: every chunk at once.
    if result.is_instance_of::<PyList>() || result.is_instance_of::<PyTuple>() {
        let mut body = std::mem::take(&mut start.borrow_mut(py).written);
        for item in result.try_iter()? {
            body.extend_from_slice(chunk_bytes(&item?)?);
        }
        iterable.close(py, false);
        return finish(py, start, BodyOut::Bytes(body));
    }
    // wsgi.file_wrapper around a regular file: sendfile from the event loop.
    if result.is_instance(file_wrapper)?
        && start.borrow(py).written.is_empty()
        && let Some(region) = file_region(py, result, start)?
    {
        iterable.close(py, false);
        return finish(py, start, BodyOut::File(region));
    }
    let iterator = iterable.run(py, builtin(py, &ITER, "iter")?, &[result])?;
    let mut first = std::mem::take(&mut start.borrow_mut(py).written);
    let mut ended = false;
    // Advance until a non-empty chunk (or the end): only then are the headers final. A HEAD
    // request goes as far as a GET would, so it gets the same headers; the worker drops the
    // body (and with it the iterable, closing it).
    while first.is_empty() {
        match advance(py, iterable, &iterator)? {
            Some(chunk) => first = chunk,
            None => {
                ended = true;
                break;
            }
        }
    }
    // The first chunk holds the whole `Content-Length` (a Flask or werkzeug response, whose
    // iterable yields its body at once): the response is complete. The iterable is closed
    // now, in this crossing, without advancing it again, as the worker would once that length
    // was out; a stream would cost two more trips to a pool thread and the GIL (one to take
    // the chunk, one to drop the stream).
    let complete = (start.borrow(py).content_length).is_some_and(|n| first.len() as u64 >= n);
    if ended || complete {
        iterable.close(py, false);
        return finish(py, start, BodyOut::Bytes(first));
    }
    start.borrow_mut(py).sent = true;
    let stream = WsgiStream {
        first: Some(first),
        iterator: Some(iterator.unbind()),
        iterable: Arc::clone(iterable),
        start: start.clone_ref(py),
        advancing: Arc::clone(advancing),
    };
    finish(py, start, BodyOut::Stream(Box::new(stream)))
}

/// A response whose application raised after `write()`: what it wrote, then the end of the
/// connection rather than of the body.
pub(super) struct ThenAbort(pub(super) Option<Vec<u8>>);

impl Iterator for ThenAbort {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        match self.0.take() {
            Some(written) if !written.is_empty() => Some(written),
            _ => std::panic::resume_unwind(Box::new(AbortStream)),
        }
    }
}

/// A response body, as the application gave it.
pub(super) enum BodyOut {
    Bytes(Vec<u8>),
    File(FileRegion),
    Stream(BodyStream),
}

/// The response with the status and headers `start_response` was given, and `body`, framed by
/// the application's `Content-Length` when it gave one: a body that turns out shorter closes
/// the connection (the worker logs it); a longer one is cut off.
pub(super) fn finish(
    py: Python<'_>,
    start: &Py<StartResponse>,
    body: BodyOut,
) -> PyResult<Response> {
    let mut state = start.borrow_mut(py);
    let Some((status, reason)) = state.status.clone() else {
        return Err(PyAssertionError::new_err(
            "the application returned without calling start_response",
        ));
    };
    state.sent = true;
    let mut response = Response::new(status);
    if reason != crate::http::reason_phrase(status) {
        response = response.with_reason(&reason);
    }
    for (name, value) in std::mem::take(&mut state.headers) {
        response = response.with_header(&name, value);
    }
    let length = state.content_length;
    drop(state);
    Ok(match (body, length) {
        (BodyOut::Bytes(mut bytes), Some(n)) if n < bytes.len() as u64 => {
            log::warn!(
                "a WSGI response's body ({} bytes) went past the Content-Length its application \
                 set ({n}); the rest was cut off",
                bytes.len()
            );
            bytes.truncate(n as usize);
            response.with_body(bytes)
        }
        (BodyOut::Bytes(bytes), Some(n)) if n > bytes.len() as u64 => {
            response.with_sized_stream(Box::new(std::iter::once(bytes)), n)
        }
        (BodyOut::Bytes(bytes), _) => response.with_body(bytes),
        (BodyOut::File(region), _) => response.with_file(region),
        (BodyOut::Stream(stream), Some(n)) => response.with_sized_stream(stream, n),
        (BodyOut::Stream(stream), None) => response.with_stream(stream),
    })
}

/// The region of a `wsgi.file_wrapper`'s file from its position to its end (or to the
/// application's `Content-Length`), when it is a regular file; `None` otherwise.
fn file_region(
    py: Python<'_>,
    wrapper: &Bound<'_, PyAny>,
    start: &Py<StartResponse>,
) -> PyResult<Option<FileRegion>> {
    let filelike = wrapper
        .cast::<FileWrapper>()?
        .borrow()
        .filelike
        .clone_ref(py);
    let filelike = filelike.bind(py);
    let Ok(fd) = filelike
        .call_method0(intern!(py, "fileno"))
        .and_then(|fd| fd.extract::<i32>())
    else {
        return Ok(None);
    };
    // SAFETY: the file object is alive (held by `wrapper`) for the duration of this borrow,
    // and the descriptor is only duplicated, never closed, here.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let Ok(owned) = borrowed.try_clone_to_owned() else {
        return Ok(None);
    };
    let file = File::from(owned);
    let Ok(meta) = file.metadata() else {
        return Ok(None);
    };
    if !meta.is_file() {
        return Ok(None);
    }
    // Buffered reads may have moved the descriptor past the object's position: ask it.
    let position = filelike
        .call_method0(intern!(py, "tell"))
        .and_then(|p| p.extract::<u64>())
        .unwrap_or(0);
    let available = meta.len().saturating_sub(position);
    let len = start.borrow(py).content_length.unwrap_or(available);
    debug_assert!(file.as_raw_fd() != fd);
    Ok(Some(FileRegion::new(file, position, len)))
}
