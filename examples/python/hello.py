"""tine's bundled WSGI application: the standard library only, so a fresh machine can run it.

    cargo run --release -- -c config/tine.toml

Routes: GET / (Hello, World!), GET /sleep?ms=N (blocks a pool thread, not the event loop),
GET /cpu?n=N (N rounds of a CPU-bound loop), GET /stream?n=N&size=S (a streamed body: N
chunks of S bytes, at most 64 MiB in all), POST /echo (the body back), GET /pid (which worker answered), GET /environ (the WSGI environ
as JSON), GET /python (which Python runs this), GET /error (raises: a 500 and a traceback in
the error log). Anything else is 404.
"""

import json
import os
import sys
import time
from urllib.parse import parse_qs

STREAM_TOTAL = 64 << 20


def _int(query, name, default, most):
    try:
        return max(0, min(int(query.get(name, [default])[0]), most))
    except ValueError:
        return default


def _text(start_response, status, text, content_type="text/plain; charset=utf-8"):
    body = text.encode()
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


def app(environ, start_response):
    path = environ["PATH_INFO"]
    method = environ["REQUEST_METHOD"]
    query = parse_qs(environ["QUERY_STRING"])
    if path == "/" and method in ("GET", "HEAD"):
        return _text(start_response, "200 OK", "Hello, World!\n")
    if path == "/sleep":
        ms = _int(query, "ms", 100, 60000)
        time.sleep(ms / 1000)
        return _text(start_response, "200 OK", f"slept {ms} ms\n")
    if path == "/cpu":
        n = _int(query, "n", 1000, 10_000_000)
        total = 0
        for i in range(n):
            total = (total * 31 + i) % 1_000_003
        return _text(start_response, "200 OK", f"{total}\n")
    if path == "/stream":
        size = _int(query, "size", 1024, 1 << 20)
        # At most 64 MiB in all, as the demo application's /stream: a bundled application
        # must not hand whoever can reach it a way to make the server send gigabytes.
        n = _int(query, "n", 10, min(10_000, STREAM_TOTAL // max(size, 1)))
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return (b"x" * size for _ in range(n))
    if path == "/echo" and method == "POST":
        body = environ["wsgi.input"].read()
        start_response(
            "200 OK",
            [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))],
        )
        return [body]
    if path == "/pid":
        return _text(start_response, "200 OK", f"{os.getpid()}\n")
    if path == "/environ":
        shown = {k: v if isinstance(v, (str, int, bool)) else repr(v) for k, v in environ.items()}
        return _text(
            start_response, "200 OK", json.dumps(shown, indent=2, sort_keys=True) + "\n",
            "application/json",
        )
    if path == "/python":
        return _text(
            start_response, "200 OK", f"{sys.version.split()[0]} {sys.executable} {sys.prefix}\n"
        )
    if path == "/error":
        raise RuntimeError("the /error route raises on purpose")
    return _text(start_response, "404 Not Found", "not found\n")
