"""The ceiling: a bare ASGI app answering a fixed JSON body, served like the gateway.

    .venv/bin/uvicorn bench.bare_app:app --no-access-log --port 8001 [--workers N]

(uvicorn picks httptools and uvloop when installed, as `novo-gateway serve` does.)
"""

from __future__ import annotations

from typing import Any

BODY = b'{"status":"ok","timestamp":"2026-11-26T12:00:00.000000Z","meta":{"billedUnits":0}}'
START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [
        (b"content-length", str(len(BODY)).encode()),
        (b"content-type", b"application/json"),
    ],
}
MESSAGE = {"type": "http.response.body", "body": BODY}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send(START)
    await send(MESSAGE)
