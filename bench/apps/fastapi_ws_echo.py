"""The FastAPI application bench/websocket.sh serves beside ws_echo: a websocket route at `/`
that accepts and sends each message back as it came (bytes as bytes, text as text) until the
client goes away, through Starlette's WebSocket class as a FastAPI application would. A plain
`GET /` (the bench's readiness probe) gets FastAPI's 404.

Serve it as `fastapi_ws_echo:app` with this directory on the Python path.
"""

from fastapi import FastAPI, WebSocket

app = FastAPI()


@app.websocket("/")
async def echo(websocket: WebSocket):
    await websocket.accept()
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("bytes") is not None:
            await websocket.send_bytes(message["bytes"])
        else:
            await websocket.send_text(message["text"])
