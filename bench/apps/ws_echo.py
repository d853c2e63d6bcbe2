"""A raw ASGI 3 WebSocket echo for bench/websocket.sh and the Autobahn|Testsuite runner
(tests/autobahn/serve.sh), the same application for every server:
it accepts every WebSocket and sends each message back as it came (bytes as bytes, text as
text) until the client goes away. A plain HTTP request (the bench's readiness probe) is answered
`426 Upgrade Required`. It speaks the lifespan protocol too (nothing to do at startup or
shutdown), so each server runs it the way it runs an application that has one.

Serve it as `ws_echo:app` with this directory on the Python path.
"""

from bench_lifespan import lifespan

BODY = b"ws_echo: connect with a WebSocket\n"
HEADERS = [
    (b"content-type", b"text/plain"),
    (b"content-length", str(len(BODY)).encode()),
    (b"upgrade", b"websocket"),
    (b"connection", b"upgrade"),
]


async def app(scope, receive, send):
    kind = scope["type"]
    if kind == "websocket":
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] != "websocket.receive":  # websocket.disconnect
                return
            if message.get("bytes") is not None:
                await send({"type": "websocket.send", "bytes": message["bytes"]})
            else:
                await send({"type": "websocket.send", "text": message["text"]})
    elif kind == "http":
        await send({"type": "http.response.start", "status": 426, "headers": HEADERS})
        await send({"type": "http.response.body", "body": BODY})
    elif kind == "lifespan":
        await lifespan(receive, send)
    else:
        raise ValueError(f"ws_echo serves WebSockets (and HTTP probes) only, not {kind!r}")
