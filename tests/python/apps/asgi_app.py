"""The raw ASGI 3 application tine's integration tests (tests/integration/asgi.rs) run.

``app`` is a coroutine function (``async def app(scope, receive, send)``), so tine's
``handler = "python"`` detects it as ASGI; ``create_app()`` returns the same application, as
a factory. It speaks the lifespan protocol as its state directory says (see ``_lifespan``).

Bodies are plain text, mostly ``key value`` lines, so the Rust tests parse them without a
JSON crate. What the application saw and did outside a response (events, exceptions, counts
of chunks sent) goes to files in the directory named by the environment variable
TINE_TEST_STATE, which the tests read from the filesystem.
"""

import asyncio
import os
from urllib.parse import parse_qs

# The same state directory, and the same rules for its file names, as the WSGI tests'.
from validated_app import _state_file

MARK_BEFORE = "deliberate failure before http.response.start"
MARK_AFTER = "deliberate failure after the first body chunk"
MARK_STARTUP = "asgi_app refuses to start (tine lifespan test)"
MARK_LIFESPAN_RAISE = "asgi_app does not speak lifespan (tine lifespan test)"


# --- shared state -------------------------------------------------------------------------


def record(name, text):
    """Writes ``text`` to the state file ``name`` whole (a temporary file renamed over it), so
    a reader never sees half of it."""
    path = _state_file(name)
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def recorded(name, default=""):
    try:
        with open(_state_file(name)) as f:
            return f.read()
    except FileNotFoundError:
        return default


# --- the lifespan protocol ----------------------------------------------------------------


async def _lifespan(scope, receive, send):
    """As the state file ``lifespan-mode`` says: ``ok`` (the default) starts and stops cleanly,
    leaving the files ``startup.PID`` and ``shutdown.PID``; ``fail`` answers
    ``lifespan.startup.failed``; ``crash`` raises in its startup; ``raise`` raises before
    receiving anything, as an application that does not speak the protocol does; ``stall``
    starts, then never finishes its shutdown."""
    mode = recorded("lifespan-mode", "ok").strip() or "ok"
    if mode == "raise":
        raise RuntimeError(MARK_LIFESPAN_RAISE)
    message = await receive()
    assert message["type"] == "lifespan.startup", message
    if mode == "fail":
        await send({"type": "lifespan.startup.failed", "message": MARK_STARTUP})
        return
    if mode == "crash":
        raise RuntimeError(MARK_STARTUP)
    scope["state"]["greeting"] = "hello from startup"
    scope["state"]["pid"] = os.getpid()
    record("startup.%d" % os.getpid(), "started")
    await send({"type": "lifespan.startup.complete"})
    message = await receive()
    assert message["type"] == "lifespan.shutdown", message
    if mode == "stall":
        record("stalling.%d" % os.getpid(), "stalling")
        await asyncio.sleep(3600)
    record("shutdown.%d" % os.getpid(), "stopped")
    await send({"type": "lifespan.shutdown.complete"})


# --- helpers ------------------------------------------------------------------------------


def query(scope):
    text = scope["query_string"].decode("latin-1")
    return {k: v[-1] for k, v in parse_qs(text).items()}


async def read_body(receive):
    """The whole request body, and how many ``http.request`` events carried it."""
    body = bytearray()
    events = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise RuntimeError("unexpected %r while reading the body" % message["type"])
        events += 1
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return bytes(body), events


async def respond(send, body, status=200, headers=()):
    """A whole response with a Content-Length."""
    if isinstance(body, str):
        body = body.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ]
            + list(headers),
        }
    )
    await send({"type": "http.response.body", "body": body})


def _typed(value):
    """``type repr`` of a scope value: the type's name, then its repr."""
    return "%s\t%r" % (type(value).__name__, value)


# Requests of this process running now, and the most there were at once.
_running = 0
_peak = 0
# Released when ``_barrier_want`` requests are in /barrier at once.
_barrier_want = None
_barrier = None


class _Counted:
    """Counts the requests inside it, and the peak."""

    def __enter__(self):
        global _running, _peak
        _running += 1
        _peak = max(_peak, _running)

    def __exit__(self, *exc):
        global _running
        _running -= 1


# --- routes -------------------------------------------------------------------------------


async def route_index(scope, receive, send):
    await respond(send, "asgi_app\n")


async def route_scope(scope, receive, send):
    """Every key of the scope, one a line: ``key<TAB>type<TAB>repr``, sorted; ``asgi`` and
    ``state`` spelled out key by key too (``asgi.version``...)."""
    lines = []
    for key in sorted(scope):
        lines.append("%s\t%s" % (key, _typed(scope[key])))
    for key in sorted(scope.get("asgi", {})):
        lines.append("asgi.%s\t%s" % (key, _typed(scope["asgi"][key])))
    for i, pair in enumerate(scope.get("headers", [])):
        lines.append("header.%d\t%s" % (i, _typed(tuple(pair))))
    await respond(send, "\n".join(lines) + "\n")


async def route_state(scope, receive, send):
    """What this request's ``state`` holds, then a change to it (a key added, a value
    replaced) that must not reach the next request's."""
    state = scope.get("state")
    if state is None:
        await respond(send, "no state\n")
        return
    text = "".join("%s %r\n" % (k, state[k]) for k in sorted(state))
    state["mutated"] = True
    state["greeting"] = "changed by a request"
    await respond(send, text)


async def route_echo(scope, receive, send):
    body, events = await read_body(receive)
    await respond(
        send,
        body,
        headers=[(b"x-events", str(events).encode()), (b"x-length", str(len(body)).encode())],
    )


async def route_first_event(scope, receive, send):
    """Answers after the first ``http.request`` event, with what it carried: ``len N more
    BOOL``. The rest of the body is never read."""
    message = await receive()
    await respond(
        send, "len %d more %s\n" % (len(message.get("body", b"")), message.get("more_body", False))
    )


async def route_pieces(scope, receive, send):
    """Echoes the body, leaving in ``got-TAG`` how much of it came so far after each event, and
    in ``pieces-TAG`` how it ended: ``whole N``, or ``disconnect after N``."""
    tag = query(scope)["tag"]
    body = bytearray()
    events = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            record("pieces-" + tag, "disconnect after %d" % len(body))
            return
        events += 1
        body += message.get("body", b"")
        record("got-" + tag, str(len(body)))
        if not message.get("more_body", False):
            break
    record("pieces-" + tag, "whole %d" % len(body))
    await respond(send, bytes(body), headers=[(b"x-events", str(events).encode())])


async def route_hold(scope, receive, send):
    """Receives the first ``http.request`` event, leaves ``held-TAG``, then receives nothing
    more until the file ``release-TAG`` exists; then reads the rest and answers the body's
    length and the sum of its bytes."""
    tag = query(scope)["tag"]
    message = await receive()
    total = len(message.get("body", b""))
    checksum = sum(message.get("body", b""))
    record("held-" + tag, "yes")
    while not recorded("release-" + tag):
        await asyncio.sleep(0.02)
    more = message.get("more_body", False)
    while more:
        message = await receive()
        body = message.get("body", b"")
        total += len(body)
        checksum += sum(body)
        more = message.get("more_body", False)
    await respond(send, "len %d sum %d\n" % (total, checksum))


async def route_after(scope, receive, send):
    """Answers at once, then works on for ``ms`` milliseconds and leaves ``after-TAG``."""
    q = query(scope)
    await respond(send, "answered\n")
    await asyncio.sleep(int(q.get("ms", "300")) / 1000)
    record("after-" + q["tag"], "done")


async def route_start_only(scope, receive, send):
    """Starts a response, then returns without a body."""
    await send({"type": "http.response.start", "status": 200, "headers": []})


async def route_headers(scope, receive, send):
    """Response headers as an application may send them: names in any case, one repeated."""
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"X-Upper", b"One"),
                (b"set-cookie", b"a=1; Path=/"),
                (b"x-lower", b"two"),
                (b"set-cookie", b"b=2; Path=/"),
                (b"content-length", b"3"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b"ok\n"})


async def route_stream(scope, receive, send):
    """``n`` chunks ``line I of LABEL\\n``, each its own ``http.response.body`` with
    ``more_body``; a ``Content-Length`` of ``cl`` when given. What became of the sends is
    recorded in ``stream-TAG``: ``done``, or the exception's class and whether it is an
    OSError."""
    q = query(scope)
    n = int(q.get("n", "5"))
    label = q.get("label", "asgi")
    tag = q.get("tag", "")
    pause = float(q.get("pause_ms", "0")) / 1000
    headers = [(b"content-type", b"text/plain")]
    if "cl" in q:
        headers.append((b"content-length", q["cl"].encode()))
    try:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for i in range(n):
            line = ("line %d of %s\n" % (i, label)).encode()
            await send({"type": "http.response.body", "body": line, "more_body": True})
            if pause:
                await asyncio.sleep(pause)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    except BaseException as err:
        if tag:
            record(
                "stream-" + tag,
                "%s oserror=%s" % (type(err).__name__, isinstance(err, OSError)),
            )
        raise
    if tag:
        record("stream-" + tag, "done")


async def route_fixed(scope, receive, send):
    """A Content-Length of ``cl`` and the body ``body`` in chunks of ``step`` bytes (with
    ``whole=1``, in one last ``http.response.body``): shorter or longer than it promised, as the
    test asks."""
    q = query(scope)
    body = q.get("body", "").encode()
    step = int(q.get("step", "3"))
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", q["cl"].encode())],
        }
    )
    if q.get("whole") == "1":
        await send({"type": "http.response.body", "body": body})
        return
    for at in range(0, len(body), step):
        await send({"type": "http.response.body", "body": body[at : at + step], "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def route_flood(scope, receive, send):
    """``n`` chunks of ``size`` bytes (byte ``i % 251`` of the whole body at position i); after
    each completed send, the number sent so far in ``sent-TAG``; at the end, ``flood-TAG``
    says how it ended, as ``stream-TAG`` does for /stream."""
    q = query(scope)
    n = int(q["n"])
    size = int(q.get("size", "65536"))
    tag = q["tag"]
    pattern = bytes(i % 251 for i in range(251 * 2 + size))
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/octet-stream")],
        }
    )
    try:
        for i in range(n):
            start = (i * size) % 251
            await send(
                {
                    "type": "http.response.body",
                    "body": pattern[start : start + size],
                    "more_body": True,
                }
            )
            record("sent-" + tag, str(i + 1))
        await send({"type": "http.response.body", "body": b""})
    except BaseException as err:
        record("flood-" + tag, "%s oserror=%s" % (type(err).__name__, isinstance(err, OSError)))
        raise
    record("flood-" + tag, "done")


async def route_longpoll(scope, receive, send):
    """Reads the body, then waits for the next event (there is none but the client's going)
    and records its type in ``event-TAG``."""
    tag = query(scope)["tag"]
    await read_body(receive)
    record("waiting-" + tag, "yes")
    message = await receive()
    record("event-" + tag, message["type"])


async def route_sleep(scope, receive, send):
    """Sleeps ``ms`` milliseconds, counted in the peak; with ``tag``, leaves ``sleeping-TAG``
    when it starts."""
    q = query(scope)
    ms = int(q.get("ms", "200"))
    if "tag" in q:
        record("sleeping-" + q["tag"], "yes")
    with _Counted():
        await asyncio.sleep(ms / 1000)
    await respond(send, "slept %d\n" % ms)


async def route_barrier(scope, receive, send):
    """Waits until ``n`` requests are in this route at once (at most 20 s), then sleeps
    ``ms``; answers how many were in when it went on."""
    global _barrier, _barrier_want
    q = query(scope)
    n = int(q["n"])
    ms = int(q.get("ms", "200"))
    if _barrier is None or _barrier_want != n:
        _barrier, _barrier_want = asyncio.Event(), n
    barrier = _barrier
    with _Counted():
        if _running >= n:
            barrier.set()
        try:
            await asyncio.wait_for(barrier.wait(), 20)
            outcome = "released"
        except asyncio.TimeoutError:
            outcome = "timed out"
        await asyncio.sleep(ms / 1000)
    await respond(send, "%s peak %d\n" % (outcome, _peak))


async def route_peak(scope, receive, send):
    """The most requests that were running at once; ``reset=1`` starts counting again."""
    global _peak
    text = "peak %d\n" % _peak
    if query(scope).get("reset"):
        _peak = _running
    await respond(send, text)


async def route_slow(scope, receive, send):
    await asyncio.sleep(5)  # SLOW LINE: where request_timeout finds it
    await respond(send, "woke up\n")


async def route_block(scope, receive, send):
    """Blocks the event loop for ``s`` seconds (``time.sleep``, as careless code does), which no
    cancellation can interrupt; with ``tag``, leaves ``blocking-TAG`` first."""
    import time

    q = query(scope)
    if "tag" in q:
        record("blocking-" + q["tag"], "yes")
    time.sleep(float(q.get("s", "60")))
    await respond(send, "unblocked\n")


async def route_pid(scope, receive, send):
    await respond(send, "pid %d\n" % os.getpid())


async def route_loop(scope, receive, send):
    loop = asyncio.get_running_loop()
    await respond(send, "%s.%s\n" % (type(loop).__module__, type(loop).__name__))


async def route_raise_before(scope, receive, send):
    raise RuntimeError(MARK_BEFORE)


async def route_raise_after(scope, receive, send):
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
    )
    await send({"type": "http.response.body", "body": b"first chunk\n", "more_body": True})
    raise RuntimeError(MARK_AFTER)


async def route_no_response(scope, receive, send):
    return


async def route_bad_header(scope, receive, send):
    """Response headers as str, which ASGI does not allow: the body's send raises."""
    await send(
        {"type": "http.response.start", "status": 200, "headers": [("content-type", "text/plain")]}
    )
    await send({"type": "http.response.body", "body": b"never sent"})


async def route_watch(scope, receive, send):
    """Two tasks wait on ``receive()`` at once while the response goes out; once it is
    complete each must see ``http.disconnect``. Leaves ``watch-TAG``: the last message type
    each saw, or ``stuck`` for one still waiting after 5 s."""
    tag = query(scope)["tag"]

    async def watch():
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return message["type"]

    watchers = [asyncio.ensure_future(watch()) for _ in range(2)]
    await asyncio.sleep(0.05)
    await respond(send, "watched\n")
    done, pending = await asyncio.wait(watchers, timeout=5)
    for task in pending:
        task.cancel()
    seen = [task.result() if task in done else "stuck" for task in watchers]
    record("watch-" + tag, " ".join(seen))


async def route_after_complete(scope, receive, send):
    """Answers whole, then sends another body: leaves ``after-complete-TAG`` with the name
    of the exception that send raised (or ``none``)."""
    tag = query(scope)["tag"]
    await respond(send, "complete\n")
    try:
        await send({"type": "http.response.body", "body": b"too late"})
    except Exception as err:
        record("after-complete-" + tag, type(err).__name__)
    else:
        record("after-complete-" + tag, "none")


ROUTES = {
    "/": route_index,
    "/scope": route_scope,
    "/state": route_state,
    "/echo": route_echo,
    "/first-event": route_first_event,
    "/hold": route_hold,
    "/pieces": route_pieces,
    "/headers": route_headers,
    "/after": route_after,
    "/start-only": route_start_only,
    "/stream": route_stream,
    "/fixed": route_fixed,
    "/flood": route_flood,
    "/longpoll": route_longpoll,
    "/sleep": route_sleep,
    "/barrier": route_barrier,
    "/peak": route_peak,
    "/slow": route_slow,
    "/pid": route_pid,
    "/block": route_block,
    "/loop": route_loop,
    "/raise-before": route_raise_before,
    "/raise-after": route_raise_after,
    "/no-response": route_no_response,
    "/bad-header": route_bad_header,
    "/watch": route_watch,
    "/after-complete": route_after_complete,
}


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await _lifespan(scope, receive, send)
        return
    assert scope["type"] == "http", scope["type"]
    path = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    route = ROUTES.get(path)
    if route is None:
        # Everything else says what it saw, as /scope does.
        route = route_scope
    await route(scope, receive, send)


def create_app():
    """The application, made by a factory (``asgi_app:create_app()``)."""
    return app
