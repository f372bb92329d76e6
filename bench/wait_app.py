"""The bare app of `bare_app.py`, where `/wait` first waits for a batching task, as a metered call
waits for its usage batch (no I/O: the task resolves each batch's futures one loop turn later).

    .venv/bin/uvicorn bench.wait_app:app --no-access-log --log-level warning --port 8011
    wrk -t2 -c64 -d4s http://127.0.0.1:8011/      # then /wait, alternately

What waiting itself costs the request path (bench/README.md, "Where the time goes").
"""

from __future__ import annotations

import asyncio
from typing import Any

from bench.bare_app import MESSAGE, START


class Batcher:
    def __init__(self) -> None:
        self.queue: list[asyncio.Future[None]] = []
        self.wake = asyncio.Event()

    async def run(self) -> None:
        while True:
            if not self.queue:
                self.wake.clear()
                await self.wake.wait()
                continue
            batch, self.queue = self.queue, []
            await asyncio.sleep(0)  # the batch's write would be here
            for future in batch:
                if not future.done():
                    future.set_result(None)

    async def wait(self) -> None:
        future = asyncio.get_running_loop().create_future()
        self.queue.append(future)
        self.wake.set()
        await future


_state: dict[str, Any] = {}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                batcher = _state["batcher"] = Batcher()
                _state["task"] = asyncio.get_running_loop().create_task(batcher.run())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                _state["task"].cancel()
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] == "/wait":
        await _state["batcher"].wait()
    await send(START)
    await send(MESSAGE)
