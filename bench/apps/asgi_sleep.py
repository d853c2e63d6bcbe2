"""A raw ASGI 3 application for bench/wsgi.sh's asgi-sleep: every HTTP request awaits
`asyncio.sleep(0.05)` and is then answered as asgi_hello answers it (200, `Hello, World!`): an
I/O-bound request whose ceiling is connections / 0.05 s, since one event loop per worker waits
on all of its requests at once. Lifespan messages go to asgi_hello as they are.

Serve it as `asgi_sleep:app` with this directory on the Python path.
"""

import asyncio

import asgi_hello

SLEEP_S = 0.05


async def app(scope, receive, send):
    if scope["type"] == "http":
        await asyncio.sleep(SLEEP_S)
    await asgi_hello.app(scope, receive, send)
