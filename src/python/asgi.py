"""tine's ASGI runtime: one asyncio event loop per worker, on one Python thread.

Embedded in the tine binary and loaded as the module ``_tine_asgi``; applications never see it.
The worker's event loop (Rust, mio) owns the sockets. It hands this loop requests and
requests for more of a streamed response through ``native``, waking it with an eventfd the
loop watches (``loop.add_reader``); this loop answers through ``native``'s methods, which
wake the worker's. Nothing here blocks but the application's own code.

For every request started, ``native.respond`` (or, for an accepted WebSocket,
``native.ws_accept``) is called exactly once; for every ``more`` (the connection has room for
the next chunk of a streamed response, or the next message of a WebSocket), exactly one of
``native.chunk``, ``native.end`` and ``native.failed`` (``native.ws_send``, ``native.ws_close``
and ``native.failed``): the worker counts on it. The worker frames a WebSocket's messages; this
side sees only ASGI's messages.
"""

import asyncio
import collections
import functools
import traceback

# tine's log levels, as ``native.log`` takes them.
ERROR, WARN, INFO, DEBUG = 1, 2, 3, 4

# The messages ``native.take()`` returns, as (kind, conn, serial, ...).
START, MORE, DISCARD, GONE, CANCEL, STOP, BODY, MESSAGE, CLOSED = range(9)

# How much of a request body one ``http.request`` event carries.
BODY_CHUNK = 64 * 1024


class ClientDisconnected(OSError):
    """Raised by ``send`` once the client has gone away (ASGI HTTP spec 2.4)."""


class _Request:
    """One request: its scope, ``receive`` and ``send``, and where its response is."""

    __slots__ = (
        "server",
        "conn",
        "serial",
        "scope",
        "body",
        "body_left",
        "streamed",
        "asked",
        "inbound",
        "body_over",
        "task",
        "handed_over",
        "status",
        "headers",
        "started",
        "replied",
        "pulled",
        "pending",
        "ending",
        "completed",
        "failed",
        "finished",
        "gone",
        "timed_out",
        "concluded",
        "waiters",
    )

    def __init__(self, server, conn, serial, scope, body):
        self.server = server
        self.conn = conn
        self.serial = serial
        self.scope = scope
        # bytes, or a reader of a body kept in a file (``read(n)``) with the bytes left; None
        # once read, or when the body is streamed: it arrives a piece per ``want_body``.
        self.body = body
        self.body_left = None
        self.streamed = body is None
        # A piece of body was asked for and has not come.
        self.asked = False
        # The piece that came, (bytes, more), until receive takes it.
        self.inbound = None
        self.body_over = not self.streamed
        self.task = None
        # For a request that waits in Server.queued: when the worker handed it over, by the
        # loop's clock (its queue wait is counted when it starts). None otherwise.
        self.handed_over = None
        self.status = None
        self.headers = None
        # http.response.start was sent by the application.
        self.started = False
        # native.respond was called (the response's head is with the worker).
        self.replied = False
        # The worker asked for the next chunk and has no answer yet.
        self.pulled = False
        # A chunk the worker has not asked for yet (at most one: send waits for it).
        self.pending = None
        # The end is owed to the worker once pending is out.
        self.ending = False
        # The application sent its last body message (more_body False).
        self.completed = False
        # The application ended (returned or raised) before its response was complete.
        self.failed = False
        # The response is over for the worker: sent in full, discarded or failed.
        self.finished = False
        self.gone = False
        self.timed_out = False
        # The promises to the worker are kept (see _conclude).
        self.concluded = False
        # What receive and send wait on: every one is woken when something changes.
        self.waiters = []

    @property
    def label(self):
        """The request's method and target, as the access log has them; built only for a log
        line."""
        scope = self.scope
        root = scope.get("root_path", "").encode("latin-1", "replace")
        target = scope.get("raw_path", b"")
        if root and target.startswith(root):
            target = target[len(root) :]
        query = scope.get("query_string", b"")
        if query:
            target += b"?" + query
        return f"{self._verb} {target.decode('latin-1')}"

    @property
    def _verb(self):
        """What the log line calls the request: its method."""
        return self.scope.get("method", "?")

    # The worker's side.

    def on_more(self):
        native = self.server.native
        if self.pending is not None:
            chunk, self.pending = self.pending, None
            native.chunk(self.conn, self.serial, chunk)
        elif self.ending:
            self.ending = False
            self.finished = True
            native.end(self.conn, self.serial)
        elif self.failed:
            self.finished = True
            native.failed(self.conn, self.serial)
        else:
            self.pulled = True
        self._wake()
        self._over()

    def on_body(self, chunk, more):
        self.asked = False
        self.inbound = (chunk, more)
        self._wake()

    def on_discard(self):
        self.finished = True
        self.pending = None
        self.ending = False
        self._wake()
        self._over()

    def on_gone(self):
        self.gone = True
        self.pending = None
        self.ending = False
        if self.pulled:
            # The connection is closed: nothing more will be written.
            self.pulled = False
            self.server.native.failed(self.conn, self.serial)
        if self.replied:
            self.finished = True
        self._wake()
        if self.task is None and not self.concluded:
            # Still waiting for its turn: it never runs.
            self.server.unqueue(self)
            self._conclude(ran=False)
        self._over()

    def on_cancel(self):
        self.timed_out = True
        task = self.task
        if task is None:
            if not self.concluded:
                self.server.unqueue(self)
                self._conclude(ran=False)
                self._over()
            return
        if task.done():
            return
        stack = _coroutine_stack(task)
        self.server.log(
            ERROR,
            f"{self.label} ran past request_timeout; cancelled it. It was here (innermost "
            f"last):\n{stack}",
        )
        task.cancel()

    def _task_over(self, ran):
        """The request's task is over (or never ran): the worker is told, and the next
        request waiting may run."""
        self._wake()
        self.task = None
        self.server.native.task_done(self.conn, self.serial)
        if ran:
            self.server.done()
        self._over()

    def _over(self):
        """Forgets the request once the worker needs nothing more of it: its task ended and
        its response is over."""
        if self.concluded and self.task is None and (self.finished or self.gone):
            self.server.forget(self)

    def _wake(self):
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _wait(self):
        waiter = self.server.loop.create_future()
        self.waiters.append(waiter)
        try:
            await waiter
        finally:
            try:
                self.waiters.remove(waiter)
            except ValueError:
                pass

    # The application's side.

    async def receive(self):
        if self.body is not None:
            return self._next_body()
        while not (self.gone or self.finished):
            if self.inbound is not None:
                chunk, more = self.inbound
                self.inbound = None
                self.body_over = not more
                return {"type": "http.request", "body": chunk, "more_body": more}
            if not self.body_over and not self.asked:
                self.asked = True
                self.server.native.want_body(self.conn, self.serial)
            await self._wait()
        return {"type": "http.disconnect"}

    def _next_body(self):
        body = self.body
        if isinstance(body, bytes):
            self.body = None
            return {"type": "http.request", "body": body, "more_body": False}
        # A body kept in a file: read a piece at a time.
        if self.body_left is None:
            self.body_left = body.len()
        chunk = body.read(BODY_CHUNK)
        self.body_left -= len(chunk)
        more = self.body_left > 0 and len(chunk) > 0
        if not more:
            self.body = None
        return {"type": "http.request", "body": chunk, "more_body": more}

    async def send(self, message):
        kind = message["type"]
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError(
                    "ASGI: the application sent 'http.response.start' twice"
                )
            if self.gone:
                raise ClientDisconnected("the client went away")
            status = message["status"]
            if not isinstance(status, int) or not 100 <= status <= 999:
                raise TypeError(
                    f"ASGI: the response status must be an int from 100 to 999, not "
                    f"{status!r}"
                )
            if message.get("trailers", False):
                raise RuntimeError(
                    "ASGI: tine does not offer the http.response.trailers extension"
                )
            self.status = status
            self.headers = message.get("headers", ())
            self.started = True
            return
        if kind != "http.response.body":
            raise RuntimeError(
                f"ASGI: expected 'http.response.start' or 'http.response.body', got {kind!r}"
            )
        if not self.started:
            raise RuntimeError(
                "ASGI: the application sent 'http.response.body' before "
                "'http.response.start'"
            )
        if self.completed:
            raise RuntimeError(
                "ASGI: the application sent 'http.response.body' after the response was "
                "complete (its last body message had more_body False)"
            )
        body = message.get("body", b"")
        more = message.get("more_body", False)
        if not isinstance(body, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"ASGI: a response body must be bytes, not {type(body).__name__}"
            )
        if self.gone:
            if body or more:
                raise ClientDisconnected("the client went away")
            self.completed = True
            return
        self.completed = not more
        if self.finished:
            # Not wanted (HEAD, a status without a body, the length reached): dropped.
            return
        native = self.server.native
        if not self.replied:
            # Raises on headers the worker cannot send: then nothing was replied.
            streamed = native.respond(
                self.conn, self.serial, self.status, self.headers, bytes(body), more
            )
            self.replied = True
            if not streamed:
                self.finished = True
                self._wake()
                return
            if body:
                self.pending = bytes(body)
            self.ending = not more
            return
        # Backpressure: the previous chunk must be with the worker before this one goes.
        while self.pending is not None and not (self.gone or self.finished):
            await self._wait()
        if self.gone:
            raise ClientDisconnected("the client went away")
        if self.finished:
            return
        if body:
            if self.pulled:
                self.pulled = False
                native.chunk(self.conn, self.serial, bytes(body))
            else:
                self.pending = bytes(body)
        if not more:
            if self.pulled:
                self.pulled = False
                self.finished = True
                native.end(self.conn, self.serial)
                self._wake()
            else:
                self.ending = True

    async def run(self):
        server = self.server
        try:
            await server.app(self.scope, self.receive, self.send)
        except asyncio.CancelledError:
            if not self.timed_out:
                server.log(INFO, f"{self.label}: the application's task was cancelled")
        except BaseException as err:  # SystemExit and KeyboardInterrupt too, as uvicorn
            if self.gone and isinstance(err, OSError):
                server.log(DEBUG, f"{self.label}: the client went away: {err}")
            elif not self.replied:
                server.log(
                    ERROR,
                    f"{self.label}: the application raised; answered 500\n"
                    f"{server.format_exception(err)}",
                )
            else:
                self.failed = True
                server.log(
                    ERROR,
                    f"{self.label}: the application raised after its response began; "
                    f"{self._cut_short}\n{server.format_exception(err)}",
                )
        else:
            self._returned()
        finally:
            self._conclude()

    # What a failure after the response began does, for the log.
    _cut_short = "closing the connection"

    def _returned(self):
        """The application returned: logs what it left undone."""
        server = self.server
        if not self.started and not self.gone:
            server.log(
                ERROR,
                f"{self.label}: the application returned without starting a response; "
                "answered 500",
            )
        elif self.started and not self.replied and not self.gone:
            server.log(
                ERROR,
                f"{self.label}: the application returned without sending its response's "
                "body; answered 500",
            )
        elif self.replied and not self.finished and not self.ending:
            server.log(
                ERROR,
                f"{self.label}: the application returned before its response was "
                "complete; closing the connection",
            )

    def _conclude(self, ran=True):
        """Keeps the promises to the worker, whatever became of the application: one
        response, an answer to a chunk it waits for, and the end of the request's task."""
        if self.concluded:
            return
        self.concluded = True
        native = self.server.native
        if not self.replied:
            self.replied = True
            self.finished = True
            native.respond_error(self.conn, self.serial, 500)
        elif not self.finished and not self.ending:
            self.failed = True
            if self.pulled and self.pending is None:
                self.pulled = False
                self.finished = True
                native.failed(self.conn, self.serial)
        self._task_over(ran)


class _WebSocket(_Request):
    """One WebSocket (ASGI's websocket scope): before ``websocket.accept`` a request that may
    still be refused (403, or a whole HTTP response with the denial response extension);
    after it, messages both ways. The worker frames them: ``native.ws_send`` and
    ``native.ws_close`` answer its pulls as ``native.chunk`` and ``native.end`` do for a
    streamed response, and ``native.want_body`` asks for the client's next message."""

    __slots__ = ("accepted", "closing", "inbound", "disconnect")

    _cut_short = "closing the WebSocket with 1011"

    def __init__(self, server, conn, serial, scope):
        super().__init__(server, conn, serial, scope, None)
        self.accepted = False
        # The application's close, owed to the worker at its next pull: (code, reason).
        self.closing = None
        # What receive returns next.
        self.inbound = collections.deque([{"type": "websocket.connect"}])
        # (code, reason) once the connection is over.
        self.disconnect = None

    @property
    def _verb(self):
        return "WebSocket"

    # The worker's side.

    def on_more(self):
        if not self.accepted:
            # A denial response's body.
            super().on_more()
            return
        native = self.server.native
        if self.pending is not None:
            data, self.pending = self.pending, None
            native.ws_send(self.conn, self.serial, data)
        elif self.closing is not None:
            code, reason = self.closing
            self.closing = None
            self.finished = True
            native.ws_close(self.conn, self.serial, code, reason)
        else:
            self.pulled = True
        self._wake()
        self._over()

    def on_message(self, data):
        self.asked = False
        if isinstance(data, str):
            self.inbound.append({"type": "websocket.receive", "text": data})
        else:
            self.inbound.append({"type": "websocket.receive", "bytes": data})
        self._wake()

    def on_closed(self, code, reason):
        self.disconnect = (code, reason)
        self.on_gone()

    def on_gone(self):
        if self.disconnect is None:
            # Before its 101, or during a denial response: no close frame.
            self.disconnect = (1006, "")
        self.closing = None
        super().on_gone()

    # The application's side.

    async def receive(self):
        while True:
            if self.inbound:
                return self.inbound.popleft()
            if self.replied and not self.accepted and self.disconnect is None:
                # Refused (a 403 or a denial response): the connection closes after it.
                self.disconnect = (1006, "")
            if self.disconnect is not None:
                code, reason = self.disconnect
                return {"type": "websocket.disconnect", "code": code, "reason": reason}
            if self.accepted and not self.asked:
                self.asked = True
                self.server.native.want_body(self.conn, self.serial)
            await self._wait()

    async def send(self, message):
        kind = message["type"]
        if kind == "websocket.send":
            await self._send_message(message)
        elif kind == "websocket.accept":
            self._accept(message)
        elif kind == "websocket.close":
            self._close(message)
        elif kind in ("websocket.http.response.start", "websocket.http.response.body"):
            if self.accepted:
                raise RuntimeError(
                    f"ASGI: the application sent {kind!r} after 'websocket.accept'"
                )
            await super().send(dict(message, type=kind[len("websocket.") :]))
        else:
            raise RuntimeError(f"ASGI: unexpected message {kind!r} on a WebSocket")

    def _accept(self, message):
        if self.accepted or self.started:
            raise RuntimeError(
                "ASGI: the application sent 'websocket.accept' after it accepted or "
                "refused the WebSocket"
            )
        if self.gone:
            raise ClientDisconnected("the client went away")
        subprotocol = message.get("subprotocol")
        if subprotocol is not None and subprotocol not in self.scope["subprotocols"]:
            raise ValueError(
                f"ASGI: the subprotocol {subprotocol!r} was not offered by the client "
                f"(it offered {self.scope['subprotocols']!r})"
            )
        self.server.native.ws_accept(
            self.conn, self.serial, subprotocol, message.get("headers") or ()
        )
        self.accepted = self.started = self.replied = True
        # An accepted WebSocket is a connection, no longer a request in flight: its place
        # goes to the next request waiting (the worker counts it so from the accept on).
        self.server.done()

    def _close(self, message):
        native = self.server.native
        if not self.accepted:
            if self.started:
                raise RuntimeError(
                    "ASGI: the application sent 'websocket.close' after "
                    "'websocket.http.response.start'"
                )
            if self.gone:
                return
            # Refused before the handshake completed: 403, as uvicorn answers.
            native.respond(self.conn, self.serial, 403, (), b"", False)
            self.started = self.replied = self.completed = self.finished = True
            self._wake()
            return
        if self.gone:
            return
        if self.closing is not None or self.finished:
            raise RuntimeError("ASGI: the application sent 'websocket.close' twice")
        code = message.get("code")
        code = 1000 if code is None else code
        if not isinstance(code, int) or not native.valid_close_code(code):
            raise ValueError(f"ASGI: {code!r} is not a close code that may be sent")
        reason = message.get("reason") or ""
        if not isinstance(reason, str):
            raise TypeError(f"ASGI: a close reason is str, not {type(reason).__name__}")
        if self.pulled and self.pending is None:
            # The worker is told first: should it refuse the reason, nothing has changed.
            native.ws_close(self.conn, self.serial, code, reason)
            self.pulled = False
            self.finished = True
            self._wake()
        else:
            self.closing = (code, reason)

    async def _send_message(self, message):
        if not self.accepted:
            raise RuntimeError(
                "ASGI: the application sent 'websocket.send' before 'websocket.accept'"
            )
        if self.gone:
            raise ClientDisconnected("the client went away")
        if self.closing is not None or self.finished:
            raise RuntimeError("ASGI: the application sent 'websocket.send' after 'websocket.close'")
        data = message.get("bytes")
        text = message.get("text")
        if (data is None) == (text is None):
            raise TypeError(
                "ASGI: a 'websocket.send' message has exactly one of 'bytes' and 'text'"
            )
        if data is not None:
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError(f"ASGI: 'bytes' must be bytes, not {type(data).__name__}")
            data = bytes(data)
        elif isinstance(text, str):
            data = text
        else:
            raise TypeError(f"ASGI: 'text' must be str, not {type(text).__name__}")
        # Backpressure: the message before must be with the worker.
        while self.pending is not None and not self.gone:
            await self._wait()
        if self.gone:
            raise ClientDisconnected("the client went away")
        if self.pulled:
            # The worker is told first: should it refuse the message (a str with a lone
            # surrogate), the pull is still to be answered.
            self.server.native.ws_send(self.conn, self.serial, data)
            self.pulled = False
        else:
            self.pending = data

    def _returned(self):
        if not self.replied and not self.gone:
            self.server.log(
                ERROR,
                f"{self.label}: the application returned without accepting or refusing the "
                "WebSocket; answered 500",
            )
        elif not self.accepted:
            super()._returned()

    def _conclude(self, ran=True):
        if not self.accepted:
            super()._conclude(ran)
            return
        if self.concluded:
            return
        self.concluded = True
        native = self.server.native
        if not self.finished and self.closing is None and not self.gone:
            # Returned without closing: a normal closure, as uvicorn; raised: 1011.
            self.closing = (1011, "Internal Error") if self.failed else (1000, "")
        if self.pulled and self.pending is None and self.closing is not None:
            code, reason = self.closing
            self.closing = None
            self.pulled = False
            self.finished = True
            try:
                native.ws_close(self.conn, self.serial, code, reason)
            except Exception:  # a reason the worker refuses: the pull is answered all the same
                native.failed(self.conn, self.serial)
        self._task_over(ran)

    def _task_over(self, ran):
        if not self.accepted:
            super()._task_over(ran)
            return
        # Its place was given back at the accept, and the worker expects no task_done.
        self._wake()
        self.task = None
        self._over()


class Server:
    """The worker's ASGI side: the application, the loop, the requests."""

    def __init__(self, native, app, loop_kind, lifespan, max_concurrency, format_exception):
        self.native = native
        self.app = app
        self.loop_kind = loop_kind
        self.lifespan_mode = lifespan
        self.max_concurrency = max_concurrency
        self.format_exception = format_exception
        self.loop = None
        # By (conn, serial): the request whose response the connection is on.
        self.current = {}
        self.running = 0
        self.queued = collections.deque()
        # Set while no request runs or waits: a stop waits for it.
        self.idle = None
        self.lifespan = None
        self.stopping = False

    def log(self, level, text):
        self.native.log(level, text)

    # Life of the loop.

    def run(self):
        """Runs the loop on this thread until ``STOP``: the lifespan's startup first, whose
        outcome ``native.ready`` reports; its shutdown last. An exception once it serves
        ends the worker (the caller logs it)."""
        try:
            self.loop = self._new_loop()
        except BaseException as err:
            self.native.ready(False, self.format_exception(err))
            return
        asyncio.set_event_loop(self.loop)
        try:
            try:
                self.idle = asyncio.Event()
                self.idle.set()
                self.loop.add_reader(self.native.fileno(), self._wake)
                self.native.defer_wakes(functools.partial(self.loop.call_soon, self.native.flush))
                ok, message = self.loop.run_until_complete(self._startup())
            except BaseException as err:
                ok, message = False, self.format_exception(err)
            self.native.ready(ok, message)
            if ok:
                self.loop.run_forever()
        finally:
            self._close()

    def _close(self):
        try:
            tasks = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
            for task in tasks:
                task.cancel()
            if tasks:
                self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        except BaseException as err:
            self.log(ERROR, f"closing the ASGI event loop:\n{self.format_exception(err)}")
        finally:
            self.loop.close()
            # Replies whose flush the closed loop will not run.
            self.native.flush()

    def _new_loop(self):
        if self.loop_kind in ("auto", "uvloop"):
            try:
                import uvloop
            except ImportError:
                if self.loop_kind == "uvloop":
                    raise RuntimeError(
                        "[app] loop = \"uvloop\" but uvloop cannot be imported; install it "
                        "in the application's environment (pip install uvloop), or set "
                        "loop = \"auto\""
                    ) from None
            else:
                self.log(INFO, f"ASGI on uvloop {uvloop.__version__}")
                return uvloop.new_event_loop()
        self.log(INFO, "ASGI on asyncio's event loop")
        return asyncio.new_event_loop()

    async def _stop(self):
        """The worker stops: every connection is over. The application's tasks that still
        run (a background task after its response) finish, then the lifespan's shutdown runs;
        the worker bounds the whole by what is left of graceful_timeout."""
        if self.running or self.queued:
            self.log(
                INFO,
                f"waiting for {self.running + len(self.queued)} tasks of the application "
                "to finish",
            )
            await self.idle.wait()
        if self.lifespan is not None:
            await self.lifespan.shutdown()
        self.loop.stop()

    # Messages from the worker.

    def _wake(self):
        # How many requests may start now: take() counts their queue waits itself, and hands
        # the others' waits so far to _start.
        room = 0 if self.queued else max(0, self.max_concurrency - self.running)
        for message in self.native.take(room):
            try:
                self._handle(message)
            except Exception as err:
                self._broken(message, err)

    def _handle(self, message):
        kind = message[0]
        if kind == START:
            _, conn, serial, scope, body, waited = message
            self._start(conn, serial, scope, body, waited)
            return
        if kind == STOP:
            if not self.stopping:
                self.stopping = True
                self.loop.create_task(self._stop())
            return
        request = self.current.get((message[1], message[2]))
        if request is None:
            if kind == MORE:
                # Not expected; the worker still waits for an answer.
                self.native.failed(message[1], message[2])
            return
        if kind == MORE:
            request.on_more()
        elif kind == DISCARD:
            request.on_discard()
        elif kind == GONE:
            request.on_gone()
        elif kind == CANCEL:
            request.on_cancel()
        elif kind == BODY:
            request.on_body(message[3], message[4])
        elif kind == MESSAGE:
            request.on_message(message[3])
        elif kind == CLOSED:
            request.on_closed(message[3], message[4])

    def _broken(self, message, err):
        """A message that could not be handled: logged, and what the worker waits for is
        answered."""
        kind, conn, serial = message[0], message[1], message[2]
        self.log(
            ERROR,
            f"tine's ASGI runtime failed on a message ({kind}):\n{self.format_exception(err)}",
        )
        request = self.current.get((conn, serial))
        if kind == START and (request is None or request.task is None):
            if request is not None:
                self.unqueue(request)
                request._conclude(ran=False)
            else:
                self.native.respond_error(conn, serial, 500)
                self.native.task_done(conn, serial)
        elif kind == MORE:
            self.native.failed(conn, serial)

    def _start(self, conn, serial, scope, body, waited):
        if self.lifespan is not None and self.lifespan.state is not None:
            scope["state"] = self.lifespan.state.copy()
        if scope["type"] == "websocket":
            request = _WebSocket(self, conn, serial, scope)
        else:
            request = _Request(self, conn, serial, scope, body)
        if waited is not None:
            request.handed_over = self.loop.time() - waited
        # A new request on a keep-alive connection: the one before it is over for the worker.
        self.current[(conn, serial)] = request
        self.idle.clear()
        if self.running >= self.max_concurrency:
            self.queued.append(request)
            return
        self._run(request)

    def _run(self, request):
        if request.handed_over is not None:
            # It waited in the queue (or take() thought it would): its whole wait, now.
            self.native.queue_waited(self.loop.time() - request.handed_over)
        self.running += 1
        try:
            request.task = self.loop.create_task(request.run())
        except BaseException:
            self.running -= 1
            request._conclude(ran=False)
            raise

    def unqueue(self, request):
        try:
            self.queued.remove(request)
        except ValueError:
            pass
        self._check_idle()

    def forget(self, request):
        key = (request.conn, request.serial)
        if self.current.get(key) is request:
            del self.current[key]

    def done(self):
        """A request's task ended: the next waiting request may run."""
        self.running -= 1
        while self.queued and self.running < self.max_concurrency:
            self._run(self.queued.popleft())
        self._check_idle()

    def _check_idle(self):
        if not self.running and not self.queued:
            self.idle.set()

    # The lifespan protocol.

    async def _startup(self):
        if self.lifespan_mode == "off":
            return True, ""
        self.lifespan = _Lifespan(self)
        return await self.lifespan.startup()


class _Lifespan:
    """The ASGI lifespan protocol, as uvicorn runs it."""

    def __init__(self, server):
        self.server = server
        self.state = {}
        self.messages = asyncio.Queue()
        self.started = server.loop.create_future()
        self.stopped = server.loop.create_future()
        # Whether the application asked for a message: one that raises before it does not
        # support the protocol; one that raises after has failed its startup.
        self.received = False
        self.error = None
        self.task = None

    async def startup(self):
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        self.task = asyncio.ensure_future(self._main(scope))
        await self.messages.put({"type": "lifespan.startup"})
        outcome = await self.started
        if outcome is True:
            return True, ""
        if outcome is None:
            # The application does not support the lifespan protocol.
            self.state = None
            if self.server.lifespan_mode == "on":
                return False, (
                    "the application does not support the ASGI lifespan protocol "
                    f"([app] lifespan = \"on\"):\n{self.error}"
                )
            self.server.log(
                INFO,
                "the application does not support the ASGI lifespan protocol; serving "
                "without it",
            )
            return True, ""
        return False, outcome

    async def _main(self, scope):
        try:
            await self.server.app(scope, self._receive, self._send)
        except BaseException as err:
            if isinstance(err, asyncio.CancelledError):
                raise
            text = self.server.format_exception(err)
            if not self.started.done():
                if self.received:
                    self.started.set_result(f"the application's lifespan startup raised:\n{text}")
                else:
                    self.error = text
                    self.started.set_result(None)
                return
            if not self.stopped.done():
                self.stopped.set_result(f"the lifespan shutdown raised:\n{text}")
                return
            self.server.log(ERROR, f"the application's lifespan raised:\n{text}")
        finally:
            # Returned without answering: nothing more to wait for.
            if not self.started.done():
                self.started.set_result(True)
            if not self.stopped.done():
                self.stopped.set_result(True)

    async def _receive(self):
        self.received = True
        return await self.messages.get()

    async def _send(self, message):
        kind = message["type"]
        if kind == "lifespan.startup.complete":
            if not self.started.done():
                self.started.set_result(True)
        elif kind == "lifespan.startup.failed":
            if not self.started.done():
                why = message.get("message", "")
                self.started.set_result(
                    "the application's lifespan startup failed"
                    + (f": {why}" if why else "")
                )
        elif kind == "lifespan.shutdown.complete":
            if not self.stopped.done():
                self.stopped.set_result(True)
        elif kind == "lifespan.shutdown.failed":
            if not self.stopped.done():
                why = message.get("message", "")
                self.stopped.set_result(
                    "the application's lifespan shutdown failed" + (f": {why}" if why else "")
                )
        else:
            raise RuntimeError(f"ASGI lifespan: unexpected message {kind!r}")

    async def shutdown(self):
        if self.state is None or self.task is None or self.task.done():
            return
        await self.messages.put({"type": "lifespan.shutdown"})
        outcome = await self.stopped
        if outcome is not True:
            self.server.log(ERROR, outcome)
        else:
            self.server.log(INFO, "the application's lifespan shutdown completed")


def _coroutine_stack(task):
    """Where ``task`` is suspended, as a traceback: its coroutine chain, innermost last."""
    frames = []
    coro = task.get_coro()
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            break
        frames.append((frame, frame.f_lineno))
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    if not frames:
        return "  (no Python frame: the task was not suspended in a coroutine)"
    summary = traceback.StackSummary.extract(frames)
    return "".join(summary.format()).rstrip()
