"""The FastAPI application bench/asgi.sh serves: `GET /` returns `{"message": "hello"}` (the
seed's hello route), and `GET /sleep` awaits `asyncio.sleep(0.05)` before returning
`{"slept_ms": 50}`, an I/O-bound request whose ceiling is connections / 0.05 s.

Serve it as `fastapi_hello:app` with this directory on the Python path.
"""

import asyncio

from fastapi import FastAPI

SLEEP_S = 0.05

app = FastAPI()


@app.get("/")
async def hello():
    return {"message": "hello"}


@app.get("/sleep")
async def sleep():
    await asyncio.sleep(SLEEP_S)
    return {"slept_ms": round(SLEEP_S * 1000)}
