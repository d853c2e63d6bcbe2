"""A small FastAPI application for tine's ASGI tests (tests/integration/asgi.rs), also run
under uvicorn by the differential test: the same session against both must give the same
answers. It uses what FastAPI users use: JSON routes, path and query parameters, a pydantic
body, a StreamingResponse, a background task and a lifespan context manager whose state the
routes read."""

from contextlib import asynccontextmanager
from typing import List, Optional

import threading

from fastapi import BackgroundTasks, FastAPI, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel


# The thread the event loop runs on, as the lifespan (which runs on it) finds it.
LOOP_THREAD = None


@asynccontextmanager
async def lifespan(app):
    global LOOP_THREAD
    LOOP_THREAD = threading.get_ident()
    # The state every request's scope gets a shallow copy of: the list itself is shared.
    yield {"motto": "made in the lifespan", "done": []}


app = FastAPI(lifespan=lifespan)


class Item(BaseModel):
    name: str
    price: float
    tags: List[str] = []


@app.get("/")
async def index():
    return {"message": "hello"}


@app.get("/items/{item_id}")
async def read_item(item_id: int, q: Optional[str] = None, limit: int = 10):
    if item_id == 0:
        raise HTTPException(status_code=404, detail="no item 0")
    return {"item_id": item_id, "q": q, "limit": limit}


@app.get("/sync")
def sync_route():
    # A plain function: FastAPI runs it in its thread pool, off the event loop's thread.
    return {"off_the_loop": threading.get_ident() != LOOP_THREAD}


@app.get("/crash")
async def crash():
    raise RuntimeError("fastapi_app crashes on purpose (tine test)")


@app.post("/items")
async def create_item(item: Item):
    return {"name": item.name, "price": item.price, "tags": item.tags, "double": item.price * 2}


@app.get("/stream")
async def stream(n: int = 5, label: str = "fastapi"):
    async def lines():
        for i in range(n):
            yield "line %d of %s\n" % (i, label)

    return StreamingResponse(lines(), media_type="text/plain")


async def finish(done, name):
    done.append(name)


@app.post("/tasks/{name}")
async def add_task(name: str, request: Request, background: BackgroundTasks):
    background.add_task(finish, request.state.done, name)
    return {"queued": name}


@app.get("/tasks")
async def tasks(request: Request):
    return {"done": request.state.done}


@app.get("/motto", response_class=PlainTextResponse)
async def motto(request: Request):
    return request.state.motto + "\n"


@app.post("/echo")
async def echo(request: Request):
    body = await request.body()
    return PlainTextResponse(
        body, media_type="application/octet-stream", headers={"X-Echo-Length": str(len(body))}
    )


@app.websocket("/ws")
async def websocket_echo(websocket: WebSocket, name: str = "you"):
    # What FastAPI users write: accept, then receive_text / send_text until the client goes.
    await websocket.accept(subprotocol=(websocket.scope["subprotocols"] or [None])[0])
    await websocket.send_json({"hello": name, "motto": websocket.state.motto})
    try:
        while True:
            text = await websocket.receive_text()
            if text == "close":
                await websocket.close(code=4000, reason="asked to")
                return
            await websocket.send_text(f"echo: {text}")
    except WebSocketDisconnect:
        return
