"""The ASGI lifespan protocol as bench/apps' raw ASGI applications speak it (asgi_hello,
ws_echo): startup and shutdown, with nothing to do in either, so each server runs them the way
it runs an application that has a lifespan. Not an application itself; imported from this
directory, which every server has on its Python path.
"""


async def lifespan(receive, send):
    """Completes lifespan.startup and lifespan.shutdown as they come; returns after shutdown."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
