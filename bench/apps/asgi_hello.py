"""A raw ASGI 3 application for bench/asgi.sh: every HTTP request is answered 200 with
`Hello, World!` (text/plain, with its Content-Length), whatever its method or path. It speaks
the lifespan protocol too (startup and shutdown, nothing to do in either), so each server runs
it the way it runs an application that has one.

Serve it as `asgi_hello:app` with this directory on the Python path.
"""

from bench_lifespan import lifespan

BODY = b"Hello, World!"
HEADERS = [(b"content-type", b"text/plain"), (b"content-length", str(len(BODY)).encode())]


async def app(scope, receive, send):
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send({"type": "http.response.body", "body": BODY})
    elif scope["type"] == "lifespan":
        await lifespan(receive, send)
    else:
        raise ValueError(f"asgi_hello serves HTTP only, not {scope['type']!r}")
