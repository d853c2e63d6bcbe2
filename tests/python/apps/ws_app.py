"""The raw ASGI 3 WebSocket application tine's integration tests
(tests/integration/asgi/websocket.rs) run; HTTP requests and the lifespan go to asgi_app.

Routes, by path (the query string tunes them):

- ``/echo``: accepts (choosing the first offered subprotocol of ``?choose=a,b``, if any), then
  echoes text as text and bytes as bytes until the client goes; ``?tag=T`` records the
  disconnect's code and reason in the state file ``closed-T`` as ``CODE REASON``.
- ``/refuse``: ``websocket.close`` before accepting (403).
- ``/deny``: a denial response: 401 with a body (the websocket.http.response extension).
- ``/close?code=C&reason=R``: accepts, sends ``hello``, closes with C and R.
- ``/return``: accepts, sends ``bye``, returns without closing.
- ``/raise-before``, ``/raise-after``: raise before accepting, or after sending ``boom``.
- ``/scope``: accepts, sends the scope as ``key<TAB>type<TAB>repr`` lines, closes 1000.
- ``/flood?n=N&size=S&tag=T``: accepts and sends N binary messages of S bytes (byte i of
  message k is (k + i) % 251), recording ``sent-T`` with the count after each send.
- ``/pid``: accepts, sends ``pid PID``, then echoes as /echo does.
- ``/count``: accepts, then answers each message with how many it has received.
- ``/slow-accept?tag=T``: does not accept: records ``waiting-T``, then waits for the next
  event (the client's going) and records it in ``got-T`` as ``TYPE CODE``.
"""

import os

from asgi_app import app as http_app
from asgi_app import query, record


def _choose(scope, wanted):
    for name in wanted:
        if name in scope["subprotocols"]:
            return name
    return None


async def _echo(scope, receive, send, tag):
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            if tag:
                record("closed-" + tag, "%s %s" % (message["code"], message.get("reason", "")))
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def _connected(receive):
    message = await receive()
    assert message["type"] == "websocket.connect", message


async def route_echo(scope, receive, send, q):
    await _connected(receive)
    wanted = [p for p in q.get("choose", "").split(",") if p]
    accept = {"type": "websocket.accept", "subprotocol": _choose(scope, wanted)}
    if "header" in q:
        accept["headers"] = [(b"x-extra", q["header"].encode())]
    await send(accept)
    await _echo(scope, receive, send, q.get("tag"))


async def route_refuse(scope, receive, send, q):
    await _connected(receive)
    await send({"type": "websocket.close"})


async def route_deny(scope, receive, send, q):
    await _connected(receive)
    body = b"no entry\n"
    await send(
        {
            "type": "websocket.http.response.start",
            "status": 401,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "websocket.http.response.body", "body": body})


async def route_close(scope, receive, send, q):
    await _connected(receive)
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": "hello"})
    await send(
        {"type": "websocket.close", "code": int(q.get("code", "1000")), "reason": q.get("reason", "")}
    )
    message = await receive()
    if "tag" in q:
        record("closed-" + q["tag"], "%s %s" % (message["code"], message.get("reason", "")))


async def route_return(scope, receive, send, q):
    await _connected(receive)
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": "bye"})


async def route_raise_before(scope, receive, send, q):
    await _connected(receive)
    raise RuntimeError("deliberate failure before websocket.accept")


async def route_raise_after(scope, receive, send, q):
    await _connected(receive)
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": "boom"})
    raise RuntimeError("deliberate failure after websocket.accept")


def _typed(value):
    return "%s\t%r" % (type(value).__name__, value)


async def route_scope(scope, receive, send, q):
    await _connected(receive)
    await send({"type": "websocket.accept"})
    lines = []
    for key in sorted(scope):
        if key == "headers":
            for i, header in enumerate(scope["headers"]):
                lines.append("header.%d\t%s" % (i, _typed(header)))
        else:
            lines.append("%s\t%s" % (key, _typed(scope[key])))
    await send({"type": "websocket.send", "text": "\n".join(lines)})
    await send({"type": "websocket.close", "code": 1000})


async def route_flood(scope, receive, send, q):
    await _connected(receive)
    await send({"type": "websocket.accept"})
    n, size, tag = int(q["n"]), int(q["size"]), q.get("tag", "flood")
    pattern = bytes(i % 251 for i in range(size + 251))
    for k in range(n):
        await send({"type": "websocket.send", "bytes": pattern[k % 251 : k % 251 + size]})
        record("sent-" + tag, str(k + 1))
    await send({"type": "websocket.close", "code": 1000})
    await receive()


async def route_pid(scope, receive, send, q):
    await _connected(receive)
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": "pid %d" % os.getpid()})
    await _echo(scope, receive, send, q.get("tag"))


async def route_count(scope, receive, send, q):
    await _connected(receive)
    await send({"type": "websocket.accept"})
    count = 0
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        count += 1
        await send({"type": "websocket.send", "text": str(count)})


async def route_slow_accept(scope, receive, send, q):
    await _connected(receive)
    tag = q.get("tag", "slow")
    record("waiting-" + tag, "")
    message = await receive()
    record("got-" + tag, "%s %s" % (message["type"], message.get("code", "")))


async def route_refuse_then_receive(scope, receive, send, q):
    # As Starlette's WebSocketEndpoint does after an on_connect that closes: receive again.
    await _connected(receive)
    await send({"type": "websocket.close"})
    message = await receive()
    record("after-refusal-" + q.get("tag", "x"), "%s %s" % (message["type"], message.get("code")))


async def route_bad_text(scope, receive, send, q):
    await _connected(receive)
    await send({"type": "websocket.accept"})
    await receive()
    try:
        await send({"type": "websocket.send", "text": "half an emoji \ud83d"})
    except Exception as err:  # the message cannot be sent; the WebSocket goes on
        await send({"type": "websocket.send", "text": "refused: " + type(err).__name__})
    await send({"type": "websocket.close", "code": 1000})
    await receive()


ROUTES = {
    "/refuse-then-receive": route_refuse_then_receive,
    "/bad-text": route_bad_text,
    "/echo": route_echo,
    "/refuse": route_refuse,
    "/deny": route_deny,
    "/close": route_close,
    "/return": route_return,
    "/raise-before": route_raise_before,
    "/raise-after": route_raise_after,
    "/scope": route_scope,
    "/flood": route_flood,
    "/pid": route_pid,
    "/count": route_count,
    "/slow-accept": route_slow_accept,
}


async def app(scope, receive, send):
    if scope["type"] != "websocket":
        await http_app(scope, receive, send)
        return
    route = ROUTES.get(scope["path"], route_echo)
    await route(scope, receive, send, query(scope))
