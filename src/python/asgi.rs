//! The ASGI handler: ASGI 3 (HTTP, WebSocket and lifespan) on one asyncio event loop per
//! worker, on one Python thread.
//!
//! The worker's event loop keeps every socket. It hands requests to the asyncio loop as
//! messages in an inbox, waking it through an eventfd the asyncio loop watches
//! (`loop.add_reader`), and the asyncio loop drains the inbox in one go per wake. The
//! application's answers come back as [`Reply`]s through the worker's completion path, as a
//! pool thread's answers do. Neither side ever waits for the other: the worker thread never
//! takes the GIL, and the asyncio thread runs only the application and tine's short Python
//! glue (`asgi.py`: `receive`, `send`, the lifespan protocol).
//!
//! A streamed response is pulled like any other: the worker asks for the next chunk when the
//! connection has room for it, and the application's `send` waits until the chunk before it
//! was taken, so a slow reader pauses the application and holds about one chunk.

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::eventfd::{EfdFlags, EventFd};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyModule, PyString, PyTuple};

use super::content_length;
use super::interp::{format_err, support};
use crate::config::{App, BindAddr};
use crate::handler::{
    Begin, BuildError, Concurrent, Handler, HeaderFields, Replied, Replies, Reply, Request,
    RequestBody, Response, Ticket, Version, WsReply, percent_decode_bytes,
};
use crate::pool::lock;
use crate::protocol::scoreboard::QUEUE_WAITS;
use crate::websocket::Message;

/// What the worker tells the asyncio loop.
enum ToLoop {
    Start(Ticket, Request, Begin),
    Body(Ticket, Vec<u8>, bool),
    Message(Ticket, Message),
    Closed(Ticket, u16, String),
    More(Ticket),
    Discard(Ticket),
    Gone(Ticket),
    Cancel(Ticket),
    Stop,
}

impl ToLoop {
    /// The message's kind, as `asgi.py` numbers them.
    fn kind(&self) -> u8 {
        match self {
            ToLoop::Start(..) => 0,
            ToLoop::More(_) => 1,
            ToLoop::Discard(_) => 2,
            ToLoop::Gone(_) => 3,
            ToLoop::Cancel(_) => 4,
            ToLoop::Stop => 5,
            ToLoop::Body(..) => 6,
            ToLoop::Message(..) => 7,
            ToLoop::Closed(..) => 8,
        }
    }
}

/// The messages the asyncio loop has not taken yet.
#[derive(Default)]
struct Inbox {
    messages: Vec<ToLoop>,
    /// When the first of them was sent.
    since: Option<Instant>,
}

/// What the worker's thread and the asyncio thread share.
struct Bridge {
    inbox: Mutex<Inbox>,
    /// The asyncio thread's `pthread_self()`, once it runs.
    loop_thread: AtomicU64,
    /// Written when the inbox stops being empty; the asyncio loop reads it, then the inbox.
    wake: EventFd,
    /// Messages went into an empty inbox since the eventfd was last written: the worker writes
    /// it once it has handed over what one turn of its loop brought (`Concurrent::wake`).
    wake_due: AtomicBool,
    replies: OnceLock<Replies>,
    /// Schedules `native.flush` on the asyncio loop (`loop.call_soon`): the replies of one
    /// turn of that loop wake the worker once, after the turn.
    flusher: OnceLock<Py<PyAny>>,
    /// A flush is scheduled and has not run yet.
    flush_scheduled: AtomicBool,
    /// Where the asyncio thread says whether the application started (its lifespan startup).
    ready: Mutex<Option<mpsc::Sender<Result<(), String>>>>,
    /// The worker asked the loop to stop: its end is expected.
    stopping: AtomicBool,
    /// The application started (its lifespan startup completed): requests may wait on it.
    serving: AtomicBool,
    root_path: String,
}

impl Bridge {
    /// Queues `message` for the asyncio loop; the loop is woken for it by [`Bridge::wake_loop`].
    fn send(&self, message: ToLoop) {
        let was_empty = {
            let mut inbox = lock(&self.inbox);
            let was_empty = inbox.messages.is_empty();
            if was_empty {
                inbox.since = Some(Instant::now());
            }
            inbox.messages.push(message);
            was_empty
        };
        // While the loop has not drained earlier messages, it will see this one too.
        if was_empty {
            self.wake_due.store(true, Ordering::Release);
        }
    }

    /// Wakes the asyncio loop for the messages sent since it was last woken.
    fn wake_loop(&self) {
        if self.wake_due.swap(false, Ordering::AcqRel)
            && let Err(err) = self.wake.write(1)
        {
            log::error!("could not wake the ASGI event loop: {err}");
        }
    }

    /// Hands `reply` to the worker, whose loop is woken once the asyncio loop's turn is over
    /// (or at once, before the flusher is set or when the loop cannot take it).
    fn reply(&self, py: Python<'_>, ticket: Ticket, reply: Reply) {
        let Some(replies) = self.replies.get() else {
            debug_assert!(false, "a reply before the worker served");
            return;
        };
        replies.send(ticket, reply);
        if self.flush_scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        let scheduled = self
            .flusher
            .get()
            .is_some_and(|flusher| flusher.call0(py).is_ok());
        if !scheduled {
            self.flush(replies);
        }
    }

    /// Wakes the worker for the replies sent since the last flush.
    fn flush(&self, replies: &Replies) {
        self.flush_scheduled.store(false, Ordering::Release);
        replies.wake();
    }

    /// Reports whether the application started, once: only the first report counts (the
    /// worker acted on it).
    fn ready(&self, outcome: Result<(), String>) {
        if let Some(ready) = lock(&self.ready).take() {
            self.serving.store(outcome.is_ok(), Ordering::Relaxed);
            let _ = ready.send(outcome);
        }
    }
}

/// An ASGI application, served by one asyncio event loop in this worker.
pub struct Asgi {
    bridge: Arc<Bridge>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Asgi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Asgi")
            .field("root_path", &self.bridge.root_path)
            .finish_non_exhaustive()
    }
}

impl Asgi {
    /// Starts the asyncio loop's thread for `application`, runs its lifespan startup there
    /// and returns once it completed; its failure is the worker's.
    pub(super) fn start(application: Py<PyAny>, app: &App) -> Result<Asgi, BuildError> {
        let (ready, started) = mpsc::channel();
        let bridge = Arc::new(Bridge {
            inbox: Mutex::default(),
            loop_thread: AtomicU64::new(0),
            wake: EventFd::from_value_and_flags(0, EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)
                .map_err(|err| format!("could not make the ASGI loop's eventfd: {err}"))?,
            wake_due: AtomicBool::new(false),
            replies: OnceLock::new(),
            flusher: OnceLock::new(),
            flush_scheduled: AtomicBool::new(false),
            ready: Mutex::new(Some(ready)),
            stopping: AtomicBool::new(false),
            serving: AtomicBool::new(false),
            root_path: app.root_path.clone(),
        });
        let settings = (
            app.event_loop.as_str(),
            app.lifespan.as_str(),
            app.max_concurrency,
        );
        let shared = Arc::clone(&bridge);
        let thread = std::thread::Builder::new()
            .name("asgi".to_owned())
            .spawn(move || run_loop(&shared, application, settings))
            .map_err(|err| format!("could not start the ASGI event loop's thread: {err}"))?;
        let outcome = started
            .recv()
            .unwrap_or_else(|_| Err("the ASGI event loop's thread ended before it started".into()));
        let asgi = Asgi {
            bridge,
            thread: Mutex::new(Some(thread)),
        };
        outcome?;
        Ok(asgi)
    }
}

/// The asyncio thread: loads `asgi.py` and runs its `Server` until the worker stops it.
fn run_loop(bridge: &Arc<Bridge>, application: Py<PyAny>, settings: (&str, &str, usize)) {
    let (event_loop, lifespan, max_concurrency) = settings;
    bridge
        .loop_thread
        .store(crate::sys::current_thread(), Ordering::Relaxed);
    let ran = Python::attach(|py| -> Result<(), String> {
        let code = CString::new(include_str!("asgi.py")).expect("no NUL in asgi.py");
        let module =
            PyModule::from_code(py, &code, c"tine/asgi.py", c"_tine_asgi").map_err(|err| {
                format!(
                    "could not load tine's ASGI runtime: {}",
                    format_err(py, &err)
                )
            })?;
        let native = Py::new(
            py,
            Native {
                bridge: Arc::clone(bridge),
            },
        )
        .map_err(|err| format_err(py, &err))?;
        let format_exception = support(py)
            .getattr("format_exception")
            .map_err(|err| format_err(py, &err))?;
        module
            .getattr("Server")
            .and_then(|server| {
                server.call1((
                    native,
                    application,
                    event_loop,
                    lifespan,
                    max_concurrency,
                    format_exception,
                ))
            })
            .and_then(|server| server.call_method0("run"))
            .map(drop)
            .map_err(|err| format_err(py, &err))
    });
    // A failed start is the worker's to report: it has the message.
    let serving = bridge.serving.load(Ordering::Relaxed);
    let stopping = bridge.stopping.load(Ordering::Relaxed);
    match ran {
        Err(err) if !serving => bridge.ready(Err(err)),
        Err(err) if stopping => log::error!("the ASGI event loop failed while stopping:\n{err}"),
        Err(err) => log::error!("the ASGI event loop failed:\n{err}"),
        Ok(()) if !serving => {
            bridge.ready(Err("the ASGI event loop ended before it started".into()))
        }
        Ok(()) if stopping => {}
        Ok(()) => log::error!("the ASGI event loop stopped although the worker did not stop it"),
    }
    if serving && !stopping {
        // Requests would wait for ever: the worker exits, and the master starts another.
        crate::sys::exit_now(1);
    }
}

impl Handler for Asgi {
    fn handle(&self, request: Request) -> Response {
        // The pool never calls a concurrent handler: requests go to `Concurrent::start`.
        debug_assert!(false, "an ASGI application was called as a pool handler");
        log::error!(
            "{} {}: an ASGI application cannot answer on a pool thread; answered 500",
            request.method(),
            request.target()
        );
        Response::text(500, "500 Internal Server Error\n")
    }

    fn concurrent(&self) -> Option<&dyn Concurrent> {
        Some(self)
    }
}

impl Concurrent for Asgi {
    fn serve(&self, replies: Replies) {
        let _ = self.bridge.replies.set(replies);
    }

    fn wake(&self) {
        self.bridge.wake_loop();
    }

    fn start(&self, ticket: Ticket, request: Request, begin: Begin) {
        self.bridge.send(ToLoop::Start(ticket, request, begin));
    }

    fn body(&self, ticket: Ticket, chunk: Vec<u8>, more: bool) {
        self.bridge.send(ToLoop::Body(ticket, chunk, more));
    }

    fn message(&self, ticket: Ticket, message: Message) {
        self.bridge.send(ToLoop::Message(ticket, message));
    }

    fn closed(&self, ticket: Ticket, code: u16, reason: String) {
        self.bridge.send(ToLoop::Closed(ticket, code, reason));
    }

    fn more(&self, ticket: Ticket) {
        self.bridge.send(ToLoop::More(ticket));
    }

    fn discard(&self, ticket: Ticket) {
        self.bridge.send(ToLoop::Discard(ticket));
    }

    fn gone(&self, ticket: Ticket) {
        self.bridge.send(ToLoop::Gone(ticket));
    }

    fn cancel(&self, ticket: Ticket) {
        self.bridge.send(ToLoop::Cancel(ticket));
    }

    fn waiting_since(&self) -> Option<Instant> {
        lock(&self.bridge.inbox).since
    }

    fn blocked(&self, how_long: Duration) {
        let thread = self.bridge.loop_thread.load(Ordering::Relaxed);
        let what = format!(
            "the ASGI event loop (blocked for {:.1} s: code that does not yield to it, such as a \
             blocking call in an async function)",
            how_long.as_secs_f64()
        );
        super::log_stack_of(thread, what, || {});
    }
}

impl Drop for Asgi {
    fn drop(&mut self) {
        // A graceful stop: every request is answered. The lifespan's shutdown runs on the
        // loop; the worker bounds the whole by what is left of `graceful_timeout`.
        self.bridge.stopping.store(true, Ordering::Relaxed);
        self.bridge.send(ToLoop::Stop);
        self.bridge.wake_loop();
        if let Some(thread) = lock(&self.thread).take() {
            let _ = thread.join();
        }
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

/// The worker's side, as the asyncio loop sees it (`native` in `asgi.py`).
#[pyclass(module = "tine", frozen)]
struct Native {
    bridge: Arc<Bridge>,
}

#[pymethods]
impl Native {
    /// From now on the worker is woken for the replies of one turn of the asyncio loop once,
    /// by `native.flush`, which `schedule` (`loop.call_soon`) is called with to run after the
    /// turn.
    fn defer_wakes(&self, schedule: Py<PyAny>) {
        let _ = self.bridge.flusher.set(schedule);
    }

    /// Wakes the worker for the replies sent since the last flush.
    fn flush(&self) {
        if let Some(replies) = self.bridge.replies.get() {
            self.bridge.flush(replies);
        }
    }

    /// The eventfd the loop watches.
    fn fileno(&self) -> i32 {
        self.bridge.wake.as_raw_fd()
    }

    /// The messages waiting, as tuples `(kind, conn, serial, ...)`; a request's are followed by
    /// its scope, its body and how long it has waited, in seconds.
    ///
    /// `room` is how many requests the application may start now (under `max_concurrency`):
    /// the first `room` are taken up now, and their queue wait counted here, with `None` for
    /// their wait; the others wait in asgi.py's queue, and it counts theirs
    /// ([`Native::queue_waited`]) when it starts them.
    fn take<'py>(&self, py: Python<'py>, room: usize) -> PyResult<Bound<'py, PyList>> {
        // The eventfd first, then the inbox: a message sent after the read wakes it again.
        let _ = self.bridge.wake.read();
        let messages = std::mem::take(&mut *lock(&self.bridge.inbox)).messages;
        let list = PyList::empty(py);
        let mut room = room;
        for message in messages {
            let kind = message.kind();
            match message {
                ToLoop::Start(ticket, request, begin) => {
                    let queued = request.queued_at();
                    match scope(py, request, begin, &self.bridge.root_path) {
                        Ok((scope, body)) => {
                            let waited = match (queued, room) {
                                (Some(queued), 0) => Some(queued.elapsed().as_secs_f64()),
                                (Some(queued), _) => {
                                    QUEUE_WAITS.record_since(queued);
                                    None
                                }
                                (None, _) => None,
                            };
                            room = room.saturating_sub(1);
                            list.append((kind, ticket.conn, ticket.serial, scope, body, waited))?
                        }
                        Err(err) => {
                            log::error!(
                                "could not build a request's ASGI scope; answered 500\n{}",
                                format_err(py, &err)
                            );
                            // Its promises, as asgi.py keeps them for the requests it runs.
                            self.bridge
                                .reply(py, ticket, Reply::Respond(server_error(500)));
                            self.bridge.reply(py, ticket, Reply::Done);
                        }
                    }
                }
                ToLoop::More(ticket)
                | ToLoop::Discard(ticket)
                | ToLoop::Gone(ticket)
                | ToLoop::Cancel(ticket) => list.append((kind, ticket.conn, ticket.serial))?,
                ToLoop::Body(ticket, chunk, more) => list.append((
                    kind,
                    ticket.conn,
                    ticket.serial,
                    PyBytes::new(py, &chunk),
                    more,
                ))?,
                ToLoop::Message(ticket, message) => {
                    let message = match message {
                        Message::Text(text) => PyString::new(py, &text).into_any(),
                        Message::Binary(bytes) => PyBytes::new(py, &bytes).into_any(),
                    };
                    list.append((kind, ticket.conn, ticket.serial, message))?
                }
                ToLoop::Closed(ticket, code, reason) => {
                    list.append((kind, ticket.conn, ticket.serial, code, reason))?
                }
                ToLoop::Stop => list.append((kind, 0, 0))?,
            }
        }
        Ok(list)
    }

    /// The lifespan startup's outcome: the worker goes on serving, or fails to start with
    /// `message`.
    fn ready(&self, ok: bool, message: String) {
        self.bridge.ready(if ok { Ok(()) } else { Err(message) });
    }

    /// A request that waited in asgi.py's queue ([`Native::take`]) was started after
    /// `seconds` in all: counted in the worker's queue-wait histogram.
    fn queue_waited(&self, seconds: f64) {
        QUEUE_WAITS.record(Duration::try_from_secs_f64(seconds).unwrap_or_default());
    }

    /// The request's task is over: it no longer counts against the worker's concurrency.
    fn task_done(&self, py: Python<'_>, conn: usize, serial: u64) {
        self.bridge.reply(py, Ticket { conn, serial }, Reply::Done);
    }

    /// The response begins: `body` is its first chunk, or all of it when `more` is false.
    /// Returns whether the rest is streamed (pulled with `more` messages), which is also the
    /// case for a whole body shorter than the application's `Content-Length`.
    fn respond(
        &self,
        conn: usize,
        serial: u64,
        status: u16,
        headers: &Bound<'_, PyAny>,
        body: &[u8],
        more: bool,
    ) -> PyResult<bool> {
        let py = headers.py();
        let (fields, length) = response_headers(headers)?;
        let mut response = Response::new(status);
        for (name, value) in fields {
            response = response.with_header(&name, value);
        }
        let len = body.len() as u64;
        let (response, streamed) = match (more, length) {
            (false, None) => (response.with_body(body.to_vec()), false),
            (false, Some(n)) if n <= len => {
                (response.with_body(body[..n as usize].to_vec()), false)
            }
            (_, Some(n)) => (response.with_sized_stream(Box::new(Replied), n), true),
            (true, None) => (response.with_stream(Box::new(Replied)), true),
        };
        self.bridge
            .reply(py, Ticket { conn, serial }, Reply::Respond(response));
        Ok(streamed)
    }

    /// The application waits for more of its request's body.
    fn want_body(&self, py: Python<'_>, conn: usize, serial: u64) {
        self.bridge
            .reply(py, Ticket { conn, serial }, Reply::WantBody);
    }

    /// A response of the server's own: the application failed before its response began.
    fn respond_error(&self, py: Python<'_>, conn: usize, serial: u64, status: u16) {
        self.bridge.reply(
            py,
            Ticket { conn, serial },
            Reply::Respond(server_error(status)),
        );
    }

    /// The next chunk of a streamed response, answering a `more`.
    fn chunk(&self, py: Python<'_>, conn: usize, serial: u64, body: &[u8]) {
        self.bridge
            .reply(py, Ticket { conn, serial }, Reply::Chunk(body.to_vec()));
    }

    /// The end of a streamed response, answering a `more`.
    fn end(&self, py: Python<'_>, conn: usize, serial: u64) {
        self.bridge.reply(py, Ticket { conn, serial }, Reply::End);
    }

    /// A streamed response that cannot be completed, answering a `more`.
    fn failed(&self, py: Python<'_>, conn: usize, serial: u64) {
        self.bridge
            .reply(py, Ticket { conn, serial }, Reply::Failed);
    }

    /// The application accepts its WebSocket: the `101` goes out with `subprotocol` and
    /// `headers` (an iterable of `[name, value]` byte pairs).
    fn ws_accept(
        &self,
        py: Python<'_>,
        conn: usize,
        serial: u64,
        subprotocol: Option<String>,
        headers: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let (headers, _) = response_headers(headers)?;
        if let Some(chosen) = &subprotocol
            && !crate::http::valid_header("Sec-WebSocket-Protocol", chosen.as_bytes())
        {
            return Err(PyValueError::new_err(format!(
                "ASGI: the subprotocol {chosen:?} cannot be sent in a header"
            )));
        }
        self.bridge.reply(
            py,
            Ticket { conn, serial },
            Reply::WebSocket(WsReply::Accept {
                subprotocol,
                headers,
            }),
        );
        Ok(())
    }

    /// The next message of a WebSocket (`str`: text, `bytes`: binary), answering a `more`.
    fn ws_send(&self, conn: usize, serial: u64, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = data.py();
        let message = if let Ok(text) = data.cast::<PyString>() {
            Message::Text(text.to_str()?.to_owned())
        } else if let Ok(bytes) = data.cast::<PyBytes>() {
            Message::Binary(bytes.as_bytes().to_vec())
        } else {
            return Err(PyTypeError::new_err(format!(
                "ASGI: a WebSocket message is str or bytes, not {}",
                super::type_name(data)
            )));
        };
        self.bridge.reply(
            py,
            Ticket { conn, serial },
            Reply::WebSocket(WsReply::Message(message)),
        );
        Ok(())
    }

    /// Whether `code` may be sent in a close frame.
    fn valid_close_code(&self, code: u16) -> bool {
        crate::websocket::valid_close_code(code)
    }

    /// The application closes its WebSocket with `code` and `reason`, answering a `more`.
    fn ws_close(&self, py: Python<'_>, conn: usize, serial: u64, code: u16, reason: String) {
        self.bridge.reply(
            py,
            Ticket { conn, serial },
            Reply::WebSocket(WsReply::Close { code, reason }),
        );
    }

    /// A line for tine's error log: level 1 error, 2 warning, 3 info, else debug.
    fn log(&self, level: u8, text: &str) {
        match level {
            1 => log::error!("{text}"),
            2 => log::warn!("{text}"),
            3 => log::info!("{text}"),
            _ => log::debug!("{text}"),
        }
    }
}

/// A body kept in a temporary file, read by `receive` a piece at a time.
#[pyclass(module = "tine")]
struct SpilledBody {
    file: Arc<std::fs::File>,
    position: u64,
    len: u64,
}

#[pymethods]
impl SpilledBody {
    fn len(&self) -> u64 {
        self.len
    }

    /// Up to `size` bytes more; empty at the end (or if the file ended early).
    fn read<'py>(&mut self, py: Python<'py>, size: usize) -> PyResult<Bound<'py, PyBytes>> {
        use std::os::unix::fs::FileExt;
        let left = self.len.saturating_sub(self.position);
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(size);
        let mut buf = vec![0; want];
        let mut filled = 0;
        while filled < want {
            match self.file.read_at(&mut buf[filled..], self.position) {
                Ok(0) => break,
                Ok(n) => {
                    filled += n;
                    self.position += n as u64;
                }
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err.into()),
            }
        }
        buf.truncate(filled);
        Ok(PyBytes::new(py, &buf))
    }
}

/// The connection scope of `request` (ASGI HTTP and WebSocket spec 2.4), and its body:
/// `bytes`, a [`SpilledBody`] for one kept in a file, or `None` when it follows or the
/// request is a WebSocket's.
fn scope<'py>(
    py: Python<'py>,
    request: Request,
    begin: Begin,
    root_path: &str,
) -> PyResult<(Bound<'py, PyDict>, Bound<'py, PyAny>)> {
    let scope = PyDict::new(py);
    let client = request.client();
    match &begin {
        Begin::WebSocket { subprotocols } => {
            scope.set_item(intern!(py, "type"), intern!(py, "websocket"))?;
            let scheme = if client.scheme == "https" {
                "wss"
            } else {
                "ws"
            };
            scope.set_item(intern!(py, "scheme"), scheme)?;
            scope.set_item(intern!(py, "subprotocols"), PyList::new(py, subprotocols)?)?;
            // The denial response extension: a refusal may be a whole HTTP response.
            let extensions = PyDict::new(py);
            extensions.set_item(intern!(py, "websocket.http.response"), PyDict::new(py))?;
            scope.set_item(intern!(py, "extensions"), extensions)?;
        }
        Begin::Whole | Begin::BodyFollows => {
            scope.set_item(intern!(py, "type"), intern!(py, "http"))?;
            scope.set_item(intern!(py, "method"), request.method())?;
            scope.set_item(intern!(py, "scheme"), client.scheme)?;
        }
    }
    let asgi = PyDict::new(py);
    asgi.set_item(intern!(py, "version"), intern!(py, "3.0"))?;
    asgi.set_item(intern!(py, "spec_version"), intern!(py, "2.4"))?;
    scope.set_item(intern!(py, "asgi"), asgi)?;
    let http_version = match request.version() {
        Version::Http10 => intern!(py, "1.0"),
        _ => intern!(py, "1.1"),
    };
    scope.set_item(intern!(py, "http_version"), http_version)?;
    // As uvicorn: the root path the application is mounted at comes first in `path` and
    // `raw_path` too.
    let raw_path = request.path();
    let path = String::from_utf8_lossy(&percent_decode_bytes(raw_path)).into_owned();
    scope.set_item(intern!(py, "path"), format!("{root_path}{path}"))?;
    let mut raw = Vec::with_capacity(root_path.len() + raw_path.len());
    raw.extend_from_slice(root_path.as_bytes());
    raw.extend_from_slice(raw_path.as_bytes());
    scope.set_item(intern!(py, "raw_path"), PyBytes::new(py, &raw))?;
    scope.set_item(
        intern!(py, "query_string"),
        PyBytes::new(py, request.query().unwrap_or("").as_bytes()),
    )?;
    scope.set_item(intern!(py, "root_path"), root_path)?;
    let headers = PyList::empty(py);
    for (name, value) in request.headers().iter() {
        let name = PyBytes::new(py, name.to_ascii_lowercase().as_bytes());
        headers.append(PyTuple::new(py, [name, PyBytes::new(py, value)])?)?;
    }
    scope.set_item(intern!(py, "headers"), headers)?;
    let peer = request.peer_addr();
    match client.addr {
        Some(ip) => {
            // A client a trusted proxy reported has no port tine knows (uvicorn's 0).
            let port = peer.filter(|p| p.ip() == ip).map_or(0, |p| p.port());
            scope.set_item(intern!(py, "client"), (ip.to_string(), port))?;
        }
        None => scope.set_item(intern!(py, "client"), py.None())?,
    }
    match request.listener() {
        Some(BindAddr::Tcp(addr)) => {
            scope.set_item(intern!(py, "server"), (addr.ip().to_string(), addr.port()))?
        }
        Some(BindAddr::Unix(path)) => scope.set_item(
            intern!(py, "server"),
            (path.display().to_string(), py.None()),
        )?,
        None => scope.set_item(intern!(py, "server"), py.None())?,
    }
    let body = match request.into_body_parts() {
        _ if begin != Begin::Whole => py.None().into_bound(py),
        RequestBody::Memory(bytes) => PyBytes::new(py, &bytes).into_any(),
        RequestBody::File(file, len) => Bound::new(
            py,
            SpilledBody {
                file,
                position: 0,
                len,
            },
        )?
        .into_any(),
    };
    Ok((scope, body))
}

/// The response headers an application sent: an iterable of `[name, value]` byte strings;
/// `Content-Length` apart.
fn response_headers(headers: &Bound<'_, PyAny>) -> PyResult<(HeaderFields, Option<u64>)> {
    let mut fields = Vec::new();
    let mut length = None;
    for item in headers.try_iter()? {
        let item = item?;
        let pair: Vec<Bound<'_, PyAny>> = item
            .try_iter()
            .and_then(|pair| pair.collect::<PyResult<Vec<_>>>())
            .ok()
            .filter(|pair| pair.len() == 2)
            .ok_or_else(|| {
                PyTypeError::new_err(format!(
                    "ASGI: a response header must be a [name, value] pair of bytes, not {}",
                    super::repr(&item)
                ))
            })?;
        let (Ok(name), Ok(value)) = (pair[0].cast::<PyBytes>(), pair[1].cast::<PyBytes>()) else {
            return Err(PyTypeError::new_err(format!(
                "ASGI: a response header's name and value must be bytes: {}",
                super::repr(&item)
            )));
        };
        let (name, value) = (name.as_bytes(), value.as_bytes());
        let name = std::str::from_utf8(name)
            .ok()
            .filter(|name| crate::http::valid_header(name, value))
            .ok_or_else(|| {
                PyValueError::new_err(format!(
                    "ASGI: the response header {}: {} is invalid (a name that is not a token, \
                     or CR, LF or NUL in the value)",
                    String::from_utf8_lossy(name),
                    String::from_utf8_lossy(value)
                ))
            })?;
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(content_length(length, value).ok_or_else(|| {
                PyValueError::new_err(format!(
                    "ASGI: the response header content-length: {:?} is not one number",
                    String::from_utf8_lossy(value)
                ))
            })?);
            continue;
        }
        fields.push((name.to_owned(), value.to_vec()));
    }
    Ok((fields, length))
}

/// A response of the server's own with `status`.
fn server_error(status: u16) -> Response {
    let reason = crate::http::reason_phrase(status);
    Response::text(status, format!("{status} {reason}\n"))
}
