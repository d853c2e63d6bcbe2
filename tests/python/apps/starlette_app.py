"""A small Starlette application for tine's ASGI tests (tests/integration/asgi.rs), also run
under uvicorn by the differential test: routes with path and query parameters, a request body,
a StreamingResponse, and ``request.state`` from a lifespan context manager."""

from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route


@asynccontextmanager
async def lifespan(app):
    yield {"motto": "starlette state"}


async def index(request):
    return JSONResponse({"hello": "starlette"})


async def user(request):
    name = request.path_params["name"]
    page = request.query_params.get("page", "1")
    return PlainTextResponse("user %s, page %s\n" % (name, page))


async def echo(request):
    body = await request.body()
    return Response(
        body, media_type="application/octet-stream", headers={"X-Echo-Length": str(len(body))}
    )


async def stream(request):
    n = int(request.query_params.get("n", "5"))

    async def lines():
        for i in range(n):
            yield "line %d of starlette\n" % i

    return StreamingResponse(lines(), media_type="text/plain")


async def motto(request):
    return PlainTextResponse(request.state.motto + "\n")


app = Starlette(
    routes=[
        Route("/", index),
        Route("/users/{name}", user),
        Route("/echo", echo, methods=["POST"]),
        Route("/stream", stream),
        Route("/motto", motto),
    ],
    lifespan=lifespan,
)
