//! The WSGI handler: PEP 3333 on tine's pool threads.
//!
//! A pool thread takes the GIL to build the `environ`, call the application and advance its
//! response iterable until the first non-empty chunk (or its end): only then do the status and
//! headers go out, so an application that calls `start_response` lazily, or again with
//! `exc_info` before any body, gets its own status. A list or tuple leaves Python in one
//! crossing; any other iterable is pulled one chunk at a time, when the client has taken the
//! previous one, on a pool thread with the GIL. Its `close()` is called exactly once: after the
//! last chunk, or when the response is dropped (the client left, the request timed out, the
//! iterable raised).

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyAssertionError, PyStopIteration, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use pyo3::{ffi, intern};

use super::interp::{self, format_err, support};
use crate::config::App;
use crate::handler::{
    AbortStream, BodyStream, BuildError, FileRegion, Handler, HeaderFields, Request, RequestBody,
    Response, percent_decode_bytes,
};
use crate::pool::lock;

/// A WSGI application, served from every pool thread of one worker.
pub struct Wsgi {
    app: Py<PyAny>,
    errors: Py<Errors>,
    file_wrapper: Py<PyAny>,
    /// `contextvars.Context`: each request runs in a fresh one.
    context: Py<PyAny>,
    script_name: String,
    advancing: Advancing,
}

/// The response iterable each pool thread is advancing now, by thread (`pthread_self()`), so
/// a request that runs past `request_timeout` can have its iterable closed.
type Advancing = Arc<Mutex<HashMap<u64, Arc<Iterable>>>>;

/// What an application returned: its iterable, the `contextvars.Context` every call for the
/// request runs in (so a generator that sets context variables, as Flask's
/// `stream_with_context` does, finds them again on its next step, whichever thread takes it),
/// and whether `close()` was called.
struct Iterable {
    label: String,
    result: Py<PyAny>,
    context: Py<PyAny>,
    closed: AtomicBool,
}

impl Iterable {
    /// Runs `f(args)` in the request's context.
    fn run<'py>(
        &self,
        py: Python<'py>,
        f: &Bound<'py, PyAny>,
        args: &[&Bound<'py, PyAny>],
    ) -> PyResult<Bound<'py, PyAny>> {
        let mut call = vec![f.clone()];
        call.extend(args.iter().map(|a| (*a).clone()));
        self.context
            .bind(py)
            .call_method1(intern!(py, "run"), PyTuple::new(py, call)?)
    }

    /// Calls `close()`, if the iterable has one, unless it has been called: from the thread
    /// that advances it (in its context), or, when `elsewhere`, from another thread while it
    /// is stuck (not for a generator that is running, which cannot be closed then).
    fn close(&self, py: Python<'_>, elsewhere: bool) {
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
struct AdvancingGuard<'a> {
    advancing: &'a Advancing,
    thread: u64,
}

impl<'a> AdvancingGuard<'a> {
    fn new(advancing: &'a Advancing, iterable: &Arc<Iterable>) -> AdvancingGuard<'a> {
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

impl std::fmt::Debug for Wsgi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wsgi")
            .field("script_name", &self.script_name)
            .finish_non_exhaustive()
    }
}

impl Wsgi {
    /// Starts the interpreter in this worker, unless the master preloaded the application,
    /// and imports the application `app` names.
    pub fn build(app: &App) -> Result<Wsgi, BuildError> {
        interp::ensure_started(app)?;
        let script_name = if app.script_name.is_empty() {
            std::env::var("SCRIPT_NAME").unwrap_or_default()
        } else {
            app.script_name.clone()
        };
        let script_name = script_name.trim_end_matches('/').to_owned();
        Python::attach(|py| -> Result<Wsgi, BuildError> {
            let application = match interp::preloaded() {
                Some(app) => app.clone_ref(py),
                None => interp::load_app(py, app)?,
            };
            let errors = Py::new(py, Errors).map_err(|e| format_err(py, &e))?;
            let file_wrapper = py.get_type::<FileWrapper>().into_any().unbind();
            let context = py
                .import("contextvars")
                .and_then(|m| m.getattr("Context"))
                .map_err(|e| format_err(py, &e))?
                .unbind();
            Ok(Wsgi {
                app: application,
                errors,
                file_wrapper,
                context,
                script_name,
                advancing: Arc::default(),
            })
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
        let iterable = Arc::new(Iterable {
            label: label.clone(),
            result: result.unbind(),
            context: context.unbind(),
            closed: AtomicBool::new(false),
        });
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

    fn environ<'py>(&self, py: Python<'py>, request: Request) -> PyResult<Bound<'py, PyDict>> {
        let env = PyDict::new(py);
        let path = latin1(&percent_decode_bytes(request.path()));
        let path_info = match path.strip_prefix(self.script_name.as_str()) {
            Some(rest)
                if !self.script_name.is_empty() && (rest.is_empty() || rest.starts_with('/')) =>
            {
                rest.to_owned()
            }
            _ => path,
        };
        env.set_item(intern!(py, "REQUEST_METHOD"), request.method())?;
        env.set_item(intern!(py, "SCRIPT_NAME"), self.script_name.as_str())?;
        env.set_item(intern!(py, "PATH_INFO"), path_info)?;
        env.set_item(intern!(py, "QUERY_STRING"), request.query().unwrap_or(""))?;
        env.set_item(intern!(py, "RAW_URI"), request.target())?;
        env.set_item(intern!(py, "SERVER_PROTOCOL"), request.version().as_str())?;
        env.set_item(
            intern!(py, "SERVER_SOFTWARE"),
            concat!("tine/", env!("CARGO_PKG_VERSION")),
        )?;
        let client = request.client();
        let scheme = client.scheme;
        let (server_name, server_port) = server_name_and_port(&request, scheme);
        env.set_item(intern!(py, "SERVER_NAME"), server_name)?;
        env.set_item(intern!(py, "SERVER_PORT"), server_port)?;
        match client.addr {
            Some(ip) => env.set_item(intern!(py, "REMOTE_ADDR"), ip.to_string())?,
            None => env.set_item(intern!(py, "REMOTE_ADDR"), "")?,
        }
        if let Some(peer) = request.peer_addr() {
            env.set_item(intern!(py, "REMOTE_PORT"), peer.port().to_string())?;
        }
        for (name, value) in request.headers().iter() {
            let key = if name.eq_ignore_ascii_case("content-type") {
                "CONTENT_TYPE".to_owned()
            } else if name.eq_ignore_ascii_case("content-length") {
                "CONTENT_LENGTH".to_owned()
            } else if name.contains('_') {
                // `X_Forwarded_For` would land on the same key as `X-Forwarded-For`: a client
                // could forge a proxy's header. Dropped, as gunicorn and nginx do.
                continue;
            } else {
                let mut key = String::with_capacity(name.len() + 5);
                key.push_str("HTTP_");
                key.extend(name.chars().map(|c| match c {
                    '-' => '_',
                    c => c.to_ascii_uppercase(),
                }));
                key
            };
            let value = latin1(value);
            let key = PyString::new(py, &key);
            match env.get_item(&key)? {
                Some(previous) => {
                    let joined = format!("{},{value}", previous.extract::<String>()?);
                    env.set_item(key, joined)?;
                }
                None => env.set_item(key, value)?,
            }
        }
        env.set_item(intern!(py, "wsgi.version"), (1, 0))?;
        env.set_item(intern!(py, "wsgi.url_scheme"), scheme)?;
        env.set_item(
            intern!(py, "wsgi.input"),
            Py::new(py, Input::new(request.into_body_parts()))?,
        )?;
        env.set_item(intern!(py, "wsgi.errors"), self.errors.bind(py))?;
        env.set_item(intern!(py, "wsgi.multithread"), true)?;
        env.set_item(intern!(py, "wsgi.multiprocess"), true)?;
        env.set_item(intern!(py, "wsgi.run_once"), false)?;
        env.set_item(intern!(py, "wsgi.input_terminated"), true)?;
        env.set_item(intern!(py, "wsgi.file_wrapper"), self.file_wrapper.bind(py))?;
        Ok(env)
    }
}

/// `SERVER_NAME` and `SERVER_PORT`: the listening socket's address, as gunicorn gives them
/// (an application after the name the client used reads `HTTP_HOST`); for a unix socket, the
/// `Host` header's.
fn server_name_and_port(request: &Request, scheme: &str) -> (String, String) {
    let default_port = if scheme == "https" { "443" } else { "80" };
    if let Some(crate::config::BindAddr::Tcp(addr)) = request.listener() {
        return (addr.ip().to_string(), addr.port().to_string());
    }
    match request.headers().get_str("host").filter(|h| !h.is_empty()) {
        Some(host) => match host.rsplit_once(':') {
            Some((name, port)) if !port.contains(']') => (name.to_owned(), port.to_owned()),
            _ => (host.to_owned(), default_port.to_owned()),
        },
        None => ("localhost".to_owned(), default_port.to_owned()),
    }
}

/// Bytes as a `str` of the code points 0-255, the way PEP 3333 carries them.
fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
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
        let what = what.to_owned();
        let stuck = lock(&self.advancing).get(&thread).cloned();
        let spawned = std::thread::Builder::new()
            .name("py-stack".to_owned())
            .spawn(move || {
                let stack = Python::attach(|py| {
                    support(py)
                        .getattr("stack_of")
                        .and_then(|f| f.call1((thread,)))
                        .and_then(|s| s.extract::<Option<String>>())
                        .map_err(|err| format_err(py, &err))
                });
                match stack {
                    Ok(Some(stack)) => {
                        log::error!(
                            "{what} was stuck here (Python stack, innermost last):\n{stack}"
                        )
                    }
                    Ok(None) => log::error!("{what}: its thread is no longer in Python"),
                    Err(err) => log::error!("{what}: could not read its Python stack: {err}"),
                }
                // Its response will never be sent: its iterable is closed now.
                if let Some(iterable) = stuck {
                    Python::attach(|py| iterable.close(py, true));
                }
            });
        if let Err(err) = spawned {
            log::error!("could not start a thread to read the stuck request's stack: {err}");
        }
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

/// The status and headers the application gave `start_response`, and what it wrote with
/// `write()`.
#[pyclass(module = "tine")]
#[derive(Default)]
struct StartResponse {
    status: Option<(u16, String)>,
    headers: HeaderFields,
    content_length: Option<u64>,
    /// Whether the headers count as sent: a body chunk or a `write()` went out.
    sent: bool,
    written: Vec<u8>,
}

/// PEP 3333 §"Other HTTP Features": these belong to the server.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
];

#[pymethods]
impl StartResponse {
    #[pyo3(signature = (status, headers, exc_info = None))]
    fn __call__<'py>(
        slf: &Bound<'py, Self>,
        status: &Bound<'py, PyAny>,
        headers: &Bound<'py, PyAny>,
        exc_info: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        {
            let this = slf.borrow();
            match exc_info.filter(|e| !e.is_none()) {
                Some(exc) if this.sent => {
                    // Too late to change the status: re-raise, as PEP 3333 says.
                    let value = exc.get_item(1)?;
                    let value = value.call_method1("with_traceback", (exc.get_item(2)?,))?;
                    return Err(PyErr::from_value(value));
                }
                Some(_) => {}
                None if this.status.is_some() => {
                    return Err(PyAssertionError::new_err(
                        "start_response was called a second time without exc_info",
                    ));
                }
                None => {}
            }
        }
        let status = parse_status(status)?;
        let (fields, content_length) = parse_headers(headers)?;
        let mut this = slf.borrow_mut();
        this.status = Some(status);
        this.headers = fields;
        this.content_length = content_length;
        drop(this);
        slf.getattr(intern!(slf.py(), "write"))
    }

    /// The `write()` callable: bytes sent before the response iterable's.
    fn write(&mut self, data: &Bound<'_, PyAny>) -> PyResult<()> {
        if self.status.is_none() {
            return Err(PyAssertionError::new_err(
                "write() was called before start_response",
            ));
        }
        let bytes = data.cast::<PyBytes>().map_err(|_| {
            PyTypeError::new_err(format!(
                "write() takes bytes, not {}",
                data.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))
        })?;
        self.written.extend_from_slice(bytes.as_bytes());
        self.sent = true;
        Ok(())
    }
}

/// The code and reason phrase of a status like `"200 OK"`.
fn parse_status(status: &Bound<'_, PyAny>) -> PyResult<(u16, String)> {
    let text: String = status
        .cast::<PyString>()
        .map_err(|_| {
            PyTypeError::new_err(format!(
                "the status must be a str like \"200 OK\", not {}",
                status.repr().map(|r| r.to_string()).unwrap_or_default()
            ))
        })?
        .to_string();
    let bytes = text.as_bytes();
    let well_formed = bytes.len() >= 4
        && bytes[..3].iter().all(u8::is_ascii_digit)
        && bytes[3] == b' '
        && bytes[0] != b'0'
        && !bytes.iter().any(|&b| b < 0x20 || b == 0x7f);
    if !well_formed {
        return Err(PyValueError::new_err(format!(
            "the status {text:?} is not a three-digit code, a space and a reason phrase"
        )));
    }
    Ok((
        text[..3].parse().expect("three digits"),
        text[4..].to_owned(),
    ))
}

fn parse_headers(headers: &Bound<'_, PyAny>) -> PyResult<(HeaderFields, Option<u64>)> {
    if !(headers.is_instance_of::<PyList>() || headers.is_instance_of::<PyTuple>()) {
        return Err(PyTypeError::new_err(format!(
            "the response headers must be a list of (name, value) tuples, not {}",
            headers
                .get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        )));
    }
    let mut fields = Vec::new();
    let mut content_length = None;
    for item in headers.try_iter()? {
        let item = item?;
        let pair = item
            .cast::<PyTuple>()
            .ok()
            .filter(|t| t.len() == 2)
            .ok_or_else(|| {
                PyTypeError::new_err(format!(
                    "a response header must be a (name, value) tuple, not {}",
                    item.repr().map(|r| r.to_string()).unwrap_or_default()
                ))
            })?;
        let name = pair.get_item(0)?;
        let value = pair.get_item(1)?;
        let (Ok(name), Ok(value)) = (name.cast::<PyString>(), value.cast::<PyString>()) else {
            return Err(PyTypeError::new_err(format!(
                "a response header's name and value must be str: {}",
                pair.repr().map(|r| r.to_string()).unwrap_or_default()
            )));
        };
        let name = name.to_string();
        let value = value.to_string();
        let Some(value_bytes) = value
            .chars()
            .map(|c| u8::try_from(u32::from(c)).ok())
            .collect::<Option<Vec<u8>>>()
        else {
            return Err(PyValueError::new_err(format!(
                "the response header {name}'s value {value:?} is not latin-1 (PEP 3333)"
            )));
        };
        if !crate::http::valid_header(&name, &value_bytes) {
            return Err(PyValueError::new_err(format!(
                "the response header {name:?}: {value:?} is invalid (a name that is not a token, \
                 or CR, LF or NUL in the value)"
            )));
        }
        let lower = name.to_ascii_lowercase();
        if HOP_BY_HOP.contains(&lower.as_str()) {
            return Err(PyValueError::new_err(format!(
                "the hop-by-hop header {name:?} belongs to the server; a WSGI application must \
                 not set it (PEP 3333)"
            )));
        }
        if lower == "content-length" {
            let parsed = value.trim().parse::<u64>().ok().filter(|_| {
                !value.trim().is_empty() && value.trim().bytes().all(|b| b.is_ascii_digit())
            });
            match (parsed, content_length) {
                (Some(n), None) => content_length = Some(n),
                (Some(n), Some(m)) if n == m => {}
                _ => {
                    return Err(PyValueError::new_err(format!(
                        "the response header Content-Length: {value:?} is not one number"
                    )));
                }
            }
            continue;
        }
        fields.push((name, value_bytes));
    }
    Ok((fields, content_length))
}

/// Turns what the application returned into the response: its status and headers, and its
/// body as bytes, a file region or a stream.
fn respond(
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
    let iterator = iterable.run(py, &py.import("builtins")?.getattr("iter")?, &[result])?;
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
    if ended {
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

/// The iterator's next chunk, in the request's context; `None` at its end.
fn advance(
    py: Python<'_>,
    iterable: &Iterable,
    iterator: &Bound<'_, PyAny>,
) -> PyResult<Option<Vec<u8>>> {
    let next = iterator.getattr(intern!(py, "__next__"))?;
    match iterable.run(py, &next, &[]) {
        Ok(item) => Ok(Some(chunk_bytes(&item)?.to_vec())),
        Err(err) if err.is_instance_of::<PyStopIteration>(py) => Ok(None),
        Err(err) => Err(err),
    }
}

/// A response whose application raised after `write()`: what it wrote, then the end of the
/// connection rather than of the body.
struct ThenAbort(Option<Vec<u8>>);

impl Iterator for ThenAbort {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        match self.0.take() {
            Some(written) if !written.is_empty() => Some(written),
            _ => std::panic::resume_unwind(Box::new(AbortStream)),
        }
    }
}

enum BodyOut {
    Bytes(Vec<u8>),
    File(FileRegion),
    Stream(BodyStream),
}

/// The response with the status and headers `start_response` was given, and `body`, framed by
/// the application's `Content-Length` when it gave one: a body that turns out shorter closes
/// the connection (the worker logs it); a longer one is cut off.
fn finish(py: Python<'_>, start: &Py<StartResponse>, body: BodyOut) -> PyResult<Response> {
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

fn chunk_bytes<'a>(item: &'a Bound<'_, PyAny>) -> PyResult<&'a [u8]> {
    item.cast::<PyBytes>().map(|b| b.as_bytes()).map_err(|_| {
        PyTypeError::new_err(format!(
            "the response iterable must yield bytes, not {}",
            item.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    })
}

/// A response iterable pulled one chunk at a time; dropping it calls `close()`.
struct WsgiStream {
    first: Option<Vec<u8>>,
    iterator: Option<Py<PyAny>>,
    iterable: Arc<Iterable>,
    start: Py<StartResponse>,
    advancing: Advancing,
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

/// `wsgi.input`: the request body, already received, from memory or its temporary file.
#[pyclass(module = "tine")]
struct Input {
    body: RequestBody,
    position: u64,
}

impl Input {
    fn new(body: RequestBody) -> Input {
        Input { body, position: 0 }
    }

    fn len(&self) -> u64 {
        match &self.body {
            RequestBody::Memory(bytes) => bytes.len() as u64,
            RequestBody::File(_, len) => *len,
        }
    }

    /// Up to `limit` bytes from the position, stopping after a newline when `line`.
    fn take(&mut self, py: Python<'_>, limit: Option<u64>, line: bool) -> PyResult<Vec<u8>> {
        let left = self.len() - self.position;
        let want = limit.map_or(left, |n| n.min(left));
        let out = match &self.body {
            RequestBody::Memory(bytes) => {
                let start = self.position as usize;
                let mut end = start + want as usize;
                if line && let Some(i) = bytes[start..end].iter().position(|&b| b == b'\n') {
                    end = start + i + 1;
                }
                bytes[start..end].to_vec()
            }
            RequestBody::File(file, _) => {
                let file = Arc::clone(file);
                let position = self.position;
                py.detach(move || read_file(&file, position, want, line))?
            }
        };
        self.position += out.len() as u64;
        Ok(out)
    }
}

/// Reads up to `want` bytes of `file` from `position` (to the first newline, when `line`),
/// without the GIL.
fn read_file(file: &File, position: u64, want: u64, line: bool) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut block = vec![0u8; 64 * 1024];
    while (out.len() as u64) < want {
        let room = (want - out.len() as u64).min(block.len() as u64) as usize;
        let n = file.read_at(&mut block[..room], position + out.len() as u64)?;
        if n == 0 {
            break;
        }
        if line && let Some(i) = block[..n].iter().position(|&b| b == b'\n') {
            out.extend_from_slice(&block[..=i]);
            break;
        }
        out.extend_from_slice(&block[..n]);
    }
    Ok(out)
}

/// A size argument: `None` or negative means "all".
fn size_limit(size: Option<i64>) -> Option<u64> {
    size.and_then(|n| u64::try_from(n).ok())
}

#[pymethods]
impl Input {
    #[pyo3(signature = (size = None))]
    fn read<'py>(&mut self, py: Python<'py>, size: Option<i64>) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = self.take(py, size_limit(size), false)?;
        Ok(PyBytes::new(py, &bytes))
    }

    #[pyo3(signature = (size = None))]
    fn readline<'py>(
        &mut self,
        py: Python<'py>,
        size: Option<i64>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = self.take(py, size_limit(size), true)?;
        Ok(PyBytes::new(py, &bytes))
    }

    #[pyo3(signature = (hint = None))]
    fn readlines<'py>(
        &mut self,
        py: Python<'py>,
        hint: Option<i64>,
    ) -> PyResult<Vec<Bound<'py, PyBytes>>> {
        let hint = size_limit(hint).filter(|&n| n > 0);
        let mut lines = Vec::new();
        let mut total = 0u64;
        loop {
            let line = self.take(py, None, true)?;
            if line.is_empty() {
                break;
            }
            total += line.len() as u64;
            lines.push(PyBytes::new(py, &line));
            if hint.is_some_and(|h| total >= h) {
                break;
            }
        }
        Ok(lines)
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let line = self.take(py, None, true)?;
        Ok((!line.is_empty()).then(|| PyBytes::new(py, &line)))
    }

    fn readable(&self) -> bool {
        true
    }

    fn close(&self) {}
}

/// `wsgi.errors`: each write is a line in tine's error log.
#[pyclass(module = "tine")]
struct Errors;

#[pymethods]
impl Errors {
    fn write(&self, text: &str) -> usize {
        let line = text.trim_end_matches(['\n', '\r']);
        if !line.is_empty() {
            log::error!("wsgi.errors: {line}");
        }
        text.len()
    }

    fn writelines(&self, lines: &Bound<'_, PyAny>) -> PyResult<()> {
        for line in lines.try_iter()? {
            self.write(&line?.extract::<String>()?);
        }
        Ok(())
    }

    fn flush(&self) {}
}

/// `wsgi.file_wrapper`: iterates a file-like object in blocks; a wrapped regular file is sent
/// with `sendfile(2)` by the event loop instead.
#[pyclass(module = "tine")]
struct FileWrapper {
    filelike: Py<PyAny>,
    block_size: usize,
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, block_size = 8192))]
    fn new(filelike: Py<PyAny>, block_size: usize) -> FileWrapper {
        FileWrapper {
            filelike,
            block_size: block_size.max(1),
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let block = self
            .filelike
            .bind(py)
            .call_method1(intern!(py, "read"), (self.block_size,))?;
        Ok((block.len()? > 0).then_some(block))
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let filelike = self.filelike.bind(py);
        if filelike.hasattr(intern!(py, "close"))? {
            filelike.call_method0(intern!(py, "close"))?;
        }
        Ok(())
    }
}
