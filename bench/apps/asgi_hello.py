"""A raw ASGI 3 application for bench/asgi.sh: every HTTP request is answered 200 with
`Hello, World!` (text/plain, with its Content-Length), whatever its method or path. It speaks
the lifespan protocol too (startup and shutdown, nothing to do in either), so each server runs
it the way it runs an application that has one.

Serve it as `asgi_hello:app` with this directory on the Python path.
"""

BODY = b"Hello, World!"
HEADERS = [(b"content-type", b"text/plain"), (b"content-length", str(len(BODY)).encode())]


async def app(scope, receive, send):
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send({"type": "http.response.body", "body": BODY})
    elif scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    else:
        raise ValueError(f"asgi_hello serves HTTP only, not {scope['type']!r}")
