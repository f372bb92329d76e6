"""What an Idempotency-Key costs a call: sequential calls in process (no HTTP server, no wrk).

For each backend, `--calls` sequential `GET /api/v1/insights` of one account: without a key, each
with a new key (claim, run, store the answer: two short transactions more than a plain call), and
each with the same key (replays: a read, and an unbilled ledger event). Latency per call, not
throughput: the figure a client sees.

    .venv/bin/python bench/idempotency.py --backends sqlite,postgres --calls 300
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from novo_gateway.app import create_app
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import session_scope
from novo_gateway.migrate import upgrade
from tests.factories import create_api_key, create_user

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def bench_settings(**database: Any) -> Settings:
    """No `.env`, no Stripe, no Redis; limits out of the way."""
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        stripe_secret_key="",
        redis_url="",
        log_level="warning",
        rate_limit_per_minute=1_000_000,
        account_rate_limit_per_minute=1_000_000,
        **database,
    )


async def measure(settings: Settings, calls: int) -> dict[str, float]:
    """Milliseconds per call for each kind of call."""
    app = create_app(settings)
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    try:
        async with session_scope(app.state.runtime.sessions) as session:
            user = await create_user(session, email="bench@example.com")
            _key, raw = await create_api_key(session, user)
        auth = {"Authorization": f"Bearer {raw}"}
        kinds: dict[str, Callable[[int], dict[str, str]]] = {
            "no key": lambda i: auth,
            "new key": lambda i: {**auth, "Idempotency-Key": f"k-{i}-{uuid.uuid4().hex}"},
            "replay": lambda i: {**auth, "Idempotency-Key": "the-same"},
        }
        transport = httpx.ASGITransport(app=app)
        results: dict[str, float] = {}
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for _ in range(20):  # warm up caches and connections
                await client.get("/api/v1/insights", headers=auth)
            for kind, headers in kinds.items():
                started = time.perf_counter()
                for i in range(calls):
                    response = await client.get("/api/v1/insights", headers=headers(i))
                    assert response.status_code == 200, response.text
                results[kind] = (time.perf_counter() - started) / calls * 1000
        return results
    finally:
        await lifespan.__aexit__(None, None, None)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    for backend in args.backends.split(","):
        if backend == "sqlite":
            folder = Path(tempfile.mkdtemp(prefix="novo-bench-idem-"))
            settings = bench_settings(database_path=folder / "bench.db", database_url="")
            await asyncio.to_thread(upgrade, settings)
            results = await measure(settings, args.calls)
        else:
            name = f"novo_bench_{uuid.uuid4().hex[:8]}"
            admin = await asyncpg.connect(PG_ADMIN)
            await admin.execute(f'CREATE DATABASE "{name}"')
            try:
                url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
                settings = bench_settings(database_url=url)
                await asyncio.to_thread(upgrade, settings)
                results = await measure(settings, args.calls)
            finally:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                await admin.close()
        shown = ", ".join(f"{kind}: {ms:.1f} ms" for kind, ms in results.items())
        print(f"{backend}: {shown} per call ({args.calls} calls each)")


if __name__ == "__main__":
    asyncio.run(main())
