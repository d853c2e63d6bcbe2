"""The WSGI application tine's integration tests (tests/integration/wsgi.rs) run.

Two entry points share one set of routes:

* ``application``: the routes behind ``wsgiref.validate.validator``, which checks the
  server's side of PEP 3333 (environ keys and types, wsgi.input and wsgi.errors methods,
  start_response, the iterable protocol) and turns every violation into an exception, so
  into a 500 the tests see (its mere warnings go to stderr).
* ``raw_application``: the same routes unwrapped, for behaviour the validator would refuse
  before the server sees it (bad headers and statuses, hop-by-hop headers) and for
  ``wsgi.file_wrapper``, whose result the validator hides from the server behind its own
  iterator.

Bodies are plain text, mostly ``key value`` lines, so the Rust tests parse them without a
JSON crate. Text the tests compare byte for byte is hex-encoded.

Counters that must outlive a worker (``close()`` calls, chunks produced, reads of a file)
are files in the directory named by the environment variable TINE_TEST_STATE, so a test can
read them from the filesystem as well as through ``/count``.
"""

import fcntl
import hashlib
import io
import os
import re
import sys
import threading
import time
import zlib
from urllib.parse import parse_qs
from wsgiref import validate

IMPORT_PID = os.getpid()

MARK_BEFORE = "deliberate failure before start_response"
MARK_AFTER = "deliberate failure after the first chunk"
MARK_EXC_INFO = "deliberate failure after the headers were sent"


# --- shared state -------------------------------------------------------------------------


def _state_file(name):
    state = os.environ.get("TINE_TEST_STATE")
    if not state:
        raise RuntimeError("TINE_TEST_STATE is not set")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name.startswith("."):
        raise ValueError("bad counter name %r" % name)
    return os.path.join(state, name)


def bump(name):
    """Adds one to the counter NAME; safe across threads and processes."""
    with open(_state_file(name), "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        n = int(f.read() or 0) + 1
        f.seek(0)
        f.truncate()
        f.write(str(n))
    return n


def count(name):
    try:
        with open(_state_file(name)) as f:
            fcntl.flock(f, fcntl.LOCK_SH)
            return int(f.read() or 0)
    except FileNotFoundError:
        return 0


# --- helpers ------------------------------------------------------------------------------


def query(environ):
    return {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def text(start_response, body, status="200 OK", headers=()):
    body = body.encode("utf-8") if isinstance(body, str) else body
    start_response(
        status,
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
        + list(headers),
    )
    return [body]


def sleep_ms(ms):
    """Sleeps in 10 ms steps, so the interpreter gets control back between them."""
    deadline = time.monotonic() + ms / 1000.0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.01))


def unwrapped(stream):
    """The server's own object behind the validator's wrapper of wsgi.input."""
    if isinstance(stream, validate.InputWrapper):
        return stream.input
    return stream


def _repr_value(value):
    if isinstance(value, str):
        return "s:" + value.encode("utf-8").hex()
    if isinstance(value, (bool, int, float, type(None))):
        return "r:" + repr(value)
    if isinstance(value, tuple) and all(isinstance(v, (int, str)) for v in value):
        return "r:" + repr(value)
    return "-"


# --- routes -------------------------------------------------------------------------------


def environ_route(environ, start_response):
    """One line per environ key: KEY TAB TYPE TAB VALUE, where VALUE is s:HEX (UTF-8 of a
    str), r:REPR (bool, int, None, tuples of those) or - (anything else)."""
    lines = []
    for key in sorted(environ):
        value = environ[key]
        lines.append("%s\t%s\t%s\n" % (key, type(value).__name__, _repr_value(value)))
    file_wrapper = environ.get("wsgi.file_wrapper")
    lines.append("callable:wsgi.file_wrapper\t%s\t-\n" % callable(file_wrapper))
    for key in ("wsgi.input", "wsgi.errors"):
        stream = environ.get(key)
        methods = [
            m
            for m in ("read", "readline", "readlines", "__iter__", "write", "writelines", "flush")
            if callable(getattr(unwrapped(stream), m, None))
        ]
        lines.append("methods:%s\t%s\t-\n" % (key, ",".join(methods)))
    return text(start_response, "".join(lines))


def _read_pieces(method, stream, n):
    """Reads the whole body the way METHOD names; returns the pieces each call returned."""
    raw = unwrapped(stream)
    pieces = []
    if method == "none":
        return pieces
    if method == "read":
        # read() with no size: PEP 3333 lets servers refuse it, tine promises it; the
        # validator asserts a size, so this goes to the server's object directly.
        pieces.append(raw.read())
    elif method == "read-n":
        while True:
            piece = stream.read(n)
            if not piece:
                break
            pieces.append(piece)
    elif method == "read-big":
        # One read(n) for more than the body holds returns what there is.
        pieces.append(stream.read(n))
    elif method == "readline":
        while True:
            piece = stream.readline()
            if not piece:
                break
            pieces.append(piece)
    elif method == "readline-n":
        while True:
            piece = stream.readline(n)
            if not piece:
                break
            pieces.append(piece)
    elif method == "readlines":
        pieces.extend(stream.readlines())
    elif method == "iter":
        # The server's own __iter__ (the validator's goes through readline()).
        pieces.extend(iter(raw))
    elif method == "mixed":
        pieces.append(stream.read(3))
        pieces.append(stream.readline())
        pieces.append(stream.readline(2))
        pieces.append(stream.read(5))
        pieces.append(stream.readline())
        pieces.extend(stream.readlines())
    elif method == "mixed-iter":
        pieces.append(stream.read(2))
        pieces.append(stream.readline(4))
        for line in raw:
            pieces.append(line)
            break
        pieces.append(raw.read(7))
        pieces.extend(raw)
    else:
        raise ValueError("no input method %r" % method)
    for piece in pieces:
        if not isinstance(piece, bytes):
            raise TypeError("wsgi.input returned %r, not bytes" % type(piece))
    return pieces


def input_route(environ, start_response, method):
    """Reads the body by METHOD and answers: len, sha256, crc32, sizes (of each piece), one
    `piece HEX` line per piece unless ?summary=1, and eof: what read(1), readline(),
    read(n) and read() return after the end, hex."""
    q = query(environ)
    n = int(q.get("n", "7"))
    stream = environ["wsgi.input"]
    pieces = _read_pieces(method, stream, n)
    body = b"".join(pieces)
    lines = [
        "len %d" % len(body),
        "sha256 %s" % hashlib.sha256(body).hexdigest(),
        "crc32 %08x" % zlib.crc32(body),
        "sizes %s" % ",".join(str(len(p)) for p in pieces),
    ]
    if q.get("summary") != "1":
        lines.extend("piece %s" % p.hex() for p in pieces)
    if method != "none":
        raw = unwrapped(stream)
        after = [stream.read(1), stream.readline(), stream.read(n), raw.read()]
        lines.append("eof %s" % ",".join(a.hex() or "empty" for a in after))
    return text(start_response, "\n".join(lines) + "\n")


def stream_route(environ, start_response):
    """?n= chunks of ?size= bytes, the i-th all letter a+i%26, from a generator."""
    q = query(environ)
    n, size = int(q.get("n", "3")), int(q.get("size", "5"))

    def chunks():
        for i in range(n):
            yield bytes([ord("a") + i % 26]) * size

    start_response("200 OK", [("Content-Type", "text/plain")])
    return chunks()


def lazy_route(environ, start_response):
    """A generator that calls start_response only when the server first advances it."""

    def body():
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Lazy", "yes")])
        yield b"lazy "
        yield b"body"

    return body()


def late_error_route(environ, start_response):
    """Starts 200, yields an empty chunk (headers must not go out for it), then replaces the
    status with exc_info as PEP 3333 allows before the headers are sent."""

    def body():
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-First", "yes")])
        yield b""
        try:
            raise ValueError("changed my mind")
        except ValueError:
            start_response(
                "503 Service Unavailable",
                [("Content-Type", "text/plain"), ("X-Second", "yes")],
                sys.exc_info(),
            )
        yield b"replaced"

    return body()


def write_route(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"written ")
    write(b"then ")
    return [b"returned ", b"list"]


class Closing:
    """An iterable of CHUNKS that counts its close() calls in close-TAG and the chunks it
    produced in produced-TAG; sleeps FIRST_MS before the first chunk and MS before each
    other; raises after AFTER chunks when AFTER is not None."""

    def __init__(self, tag, chunks, ms=0, first_ms=0, raise_after=None):
        self.tag = tag
        self.chunks = chunks
        self.ms = ms
        self.first_ms = first_ms
        self.raise_after = raise_after
        self.i = 0

    def __iter__(self):
        return self

    def __next__(self):
        if self.raise_after is not None and self.i >= self.raise_after:
            raise RuntimeError(MARK_AFTER)
        if self.i >= len(self.chunks):
            raise StopIteration
        sleep_ms(self.first_ms if self.i == 0 else self.ms)
        chunk = self.chunks[self.i]
        self.i += 1
        bump("produced-" + self.tag)
        return chunk

    def close(self):
        bump("close-" + self.tag)


def close_route(environ, start_response):
    """?n= chunks `chunkI `, counted in produced-TAG, close() in close-TAG; ?cl= sends a
    Content-Length."""
    q = query(environ)
    n = int(q.get("n", "3"))
    headers = [("Content-Type", "text/plain")]
    if "cl" in q:
        headers.append(("Content-Length", q["cl"]))
    start_response("200 OK", headers)
    return Closing(q["tag"], [b"chunk%d " % i for i in range(n)])


def slowstream_route(environ, start_response):
    """?n= chunks `tick I\\n`, ?first_ms= before the first, ?ms= before each other."""
    q = query(environ)
    n = int(q.get("n", "1000"))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return Closing(
        q["tag"],
        [b"tick %d\n" % i for i in range(n)],
        ms=int(q.get("ms", "20")),
        first_ms=int(q.get("first_ms", "0")),
    )


def raise_after_route(environ, start_response):
    q = query(environ)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return Closing(q.get("tag", "raise-after"), [b"partial", b"never"], raise_after=1)


def excinfo_replace_route(environ, start_response):
    """start_response twice, the second with exc_info before anything was sent: the second
    status and headers win."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-First", "yes")])
    try:
        raise ValueError("recoverable")
    except ValueError:
        start_response(
            "503 Service Unavailable",
            [("Content-Type", "text/plain"), ("X-Recovered", "yes")],
            sys.exc_info(),
        )
    return [b"recovered"]


def excinfo_after_sent_route(environ, start_response):
    """exc_info after write() sent the headers: start_response re-raises it."""
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"sent")
    try:
        raise ValueError(MARK_EXC_INFO)
    except ValueError:
        start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
    return [b"must not be reached"]


def start_twice_route(environ, start_response):
    """start_response twice without exc_info: an error."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    start_response("201 Created", [("Content-Type", "text/plain")])
    return [b"must not be sent"]


BAD = {
    # what: (status, headers)
    "value-crlf": ("200 OK", [("X-Bad", "ok\r\nX-Injected: yes")]),
    "value-lf": ("200 OK", [("X-Bad", "ok\nX-Injected: yes")]),
    "value-nul": ("200 OK", [("X-Bad", "ok\x00X-Injected: yes")]),
    "value-bytes": ("200 OK", [("X-Bad", b"ok")]),
    "name-space": ("200 OK", [("X-Bad Name", "ok")]),
    "name-colon": ("200 OK", [("X-Bad:X-Injected", "yes")]),
    "status-word": ("OK", []),
    "status-short": ("20 OK", []),
    "status-crlf": ("200 OK\r\nX-Injected: yes", []),
    "status-bytes": (b"200 OK", []),
}


def bad_route(environ, start_response):
    status, headers = BAD[query(environ)["what"]]
    start_response(status, [("Content-Type", "text/plain")] + headers)
    return [b"X-Injected: yes in a body that must not be sent"]


def hop_route(environ, start_response):
    """A hop-by-hop header from the application, ?name= and ?value=."""
    q = query(environ)
    start_response("200 OK", [("Content-Type", "text/plain"), (q["name"], q["value"])])
    return [b"hop-by-hop body"]


def cl_short_route(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "10")])
    return [b"12345"]


def cl_long_route(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"12345", b"67890"]


class ProbeFile(io.FileIO):
    """A real file that counts read calls in reads-TAG and close() in close-TAG: a server
    that sends it with sendfile() never reads it."""

    def __init__(self, path, tag):
        super().__init__(path, "rb")
        self.tag = tag

    def read(self, *args):
        bump("reads-" + self.tag)
        return super().read(*args)

    def readinto(self, buffer):
        bump("reads-" + self.tag)
        return super().readinto(buffer)

    def readall(self):
        bump("reads-" + self.tag)
        return super().readall()

    def close(self):
        if not self.closed:
            bump("close-" + self.tag)
        super().close()


class ProbeBytes(io.BytesIO):
    """In-memory bytes with no file descriptor; counts close() in close-TAG."""

    def __init__(self, data, tag):
        super().__init__(data)
        self.tag = tag

    def close(self):
        if not self.closed:
            bump("close-" + self.tag)
        super().close()


def pattern(size):
    """SIZE bytes that are not all alike, the same on both sides of a test."""
    return bytes((i * 7 + i // 251) % 256 for i in range(size))


def file_route(environ, start_response):
    """wsgi.file_wrapper of a real file, ?path=, with its Content-Length."""
    q = query(environ)
    f = ProbeFile(q["path"], q["tag"])
    size = os.fstat(f.fileno()).st_size
    start_response(
        "200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))]
    )
    return environ["wsgi.file_wrapper"](f, 8192)


def filelike_route(environ, start_response):
    """wsgi.file_wrapper of a BytesIO of ?size= pattern bytes; ?cl=1 adds Content-Length."""
    q = query(environ)
    data = pattern(int(q["size"]))
    headers = [("Content-Type", "application/octet-stream")]
    if q.get("cl") == "1":
        headers.append(("Content-Length", str(len(data))))
    start_response("200 OK", headers)
    return environ["wsgi.file_wrapper"](ProbeBytes(data, q["tag"]), 1000)


def stuck_here():
    time.sleep(30)  # STUCK LINE: the request_timeout test looks for this line's number


def stuck_route(environ, start_response):
    stuck_here()
    return text(start_response, "woke up")


def errors_route(environ, start_response):
    marker = query(environ)["marker"]
    errors = environ["wsgi.errors"]
    errors.write(marker + " via write\n")
    errors.writelines([marker + " via writelines\n"])
    errors.flush()
    return text(start_response, "logged")


def sleep_route(environ, start_response):
    sleep_ms(int(query(environ).get("ms", "100")))
    return text(start_response, "slept")


BARRIERS = {}
BARRIERS_LOCK = threading.Lock()


def together_route(environ, start_response):
    """?n=&tag=: waits until n requests of that tag are in the application at once, then
    answers "together"; after 15 s without them, "alone" (a 504)."""
    q = query(environ)
    with BARRIERS_LOCK:
        barrier = BARRIERS.setdefault(q["tag"], threading.Barrier(int(q["n"]), timeout=15))
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        return text(start_response, "alone", status="504 Gateway Timeout")
    return text(start_response, "together")


def osenv_route(environ, start_response):
    return text(start_response, os.environ.get(query(environ)["name"], "<unset>"))


def count_route(environ, start_response):
    """?name=: any counter (close-TAG, produced-TAG, reads-TAG)."""
    q = query(environ)
    return text(start_response, str(count(q["name"])))


def closecount_route(environ, start_response):
    """?tag=: how many times close() was called on the iterable of that tag."""
    return text(start_response, str(count("close-" + query(environ)["tag"])))


def pids_route(environ, start_response):
    """The process that imported this module (the master under preload) and this one."""
    return text(start_response, "import_pid %d\npid %d\n" % (IMPORT_PID, os.getpid()))


def mutate_environ_route(environ, start_response):
    """Changes, adds and deletes environ keys: the next request's environ must not show it."""
    environ["SCRIPT_NAME"] = "/mutated"
    environ["wsgi.multithread"] = False
    environ["tine.test.added"] = "added"
    del environ["SERVER_SOFTWARE"]
    return text(start_response, "mutated")


def raise_before_route(environ, start_response):
    raise RuntimeError(MARK_BEFORE)


ROUTES = {
    "/stream": stream_route,
    "/lazy": lazy_route,
    "/late-error": late_error_route,
    "/write": write_route,
    "/close": close_route,
    "/slowstream": slowstream_route,
    "/raise-before": raise_before_route,
    "/mutate-environ": mutate_environ_route,
    "/raise-after": raise_after_route,
    "/excinfo-replace": excinfo_replace_route,
    "/excinfo-after-sent": excinfo_after_sent_route,
    "/start-twice": start_twice_route,
    "/bad": bad_route,
    "/hop": hop_route,
    "/cl-short": cl_short_route,
    "/cl-long": cl_long_route,
    "/file": file_route,
    "/filelike": filelike_route,
    "/stuck": stuck_route,
    "/errors": errors_route,
    "/sleep": sleep_route,
    "/together": together_route,
    "/osenv": osenv_route,
    "/count": count_route,
    "/closecount": closecount_route,
    "/pids": pids_route,
    "/": lambda environ, start_response: text(start_response, "validated_app\n"),
}


def _app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path.startswith("/environ"):
        return environ_route(environ, start_response)
    if path.startswith("/input/"):
        return input_route(environ, start_response, path[len("/input/"):])
    route = ROUTES.get(path)
    if route is None:
        return text(start_response, "no route %r\n" % path, status="404 Not Found")
    return route(environ, start_response)


application = validate.validator(_app)
raw_application = _app
