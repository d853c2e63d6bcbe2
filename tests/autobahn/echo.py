"""A raw ASGI 3 WebSocket echo application, the testee of the Autobahn|Testsuite runner.

Serve it as `echo:app` (from this directory). Every WebSocket is accepted; each message comes
back as it came, text as text and bytes as bytes, until the client goes away. Lifespan events
are answered; a plain HTTP request gets `426 Upgrade Required`. No framework, no dependency.
"""


async def app(scope, receive, send):
    """The ASGI 3 entry point."""
    if scope["type"] == "websocket":
        await echo(receive, send)
    elif scope["type"] == "lifespan":
        await lifespan(receive, send)
    elif scope["type"] == "http":
        await upgrade_required(send)


async def echo(receive, send):
    """Accepts the connection and echoes every message until `websocket.disconnect`."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})


async def lifespan(receive, send):
    """Completes startup and shutdown; there is nothing to set up."""
    while True:
        event = (await receive())["type"]  # lifespan.startup, then lifespan.shutdown
        await send({"type": event + ".complete"})
        if event == "lifespan.shutdown":
            return


async def upgrade_required(send):
    """Answers a plain HTTP request: this endpoint speaks WebSocket only."""
    body = b"WebSocket echo endpoint: connect with Upgrade: websocket\n"
    await send(
        {
            "type": "http.response.start",
            "status": 426,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"upgrade", b"websocket"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
