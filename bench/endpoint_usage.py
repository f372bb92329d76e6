"""`/billing/usage/endpoints?days=366` for an account with a year of heavy usage, before and after
the per-endpoint day counter, on PostgreSQL and SQLite.

For each backend, on a fresh migrated database: `--events` events of one account spread over the
last 366 days (8 endpoints, latencies from 1 ms to seconds), written with the usage writer's own
driver insert (`metering/store/`), which adds the day counters in the same transactions. Then,
median of `--runs`:

- before: the events-only query the view ran until now (`endpoints.stats_from_events`: every
  event of the year sorted per endpoint for its p95);
- after: the view's read now (`queries.endpoint_usage`: 364 whole days from
  `usage_endpoint_daily`, two partial days from the events).

And what keeping the counter costs the usage writer: `--write-events` events of `--customers`
customers (latencies spread as above) through `UsageWriter` from 512 concurrent producers, as the
metered path records them, with the per-endpoint counter and without it (its rows left empty):
events/s and CPU per event.

    .venv/bin/python bench/endpoint_usage.py [--backends postgres,sqlite] [--events 2000000]
        [--runs 3] [--write-events 200000] [--customers 1000]

PostgreSQL at 127.0.0.1:5432 (user postgres); each run makes and drops its own database.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ledger import make_customers
from bench.servers import PG_ADMIN, _psql
from novo_gateway.kit.clock import Clock
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import create_engine, create_session_factory, session_scope
from novo_gateway.metering import counters, daily, endpoint_daily, endpoints, queries
from novo_gateway.metering.models import UsageEvent
from novo_gateway.metering.store import direct_insert
from novo_gateway.metering.writer import NewUsageEvent, UsageWriter
from novo_gateway.migrate import upgrade

COLUMNS = ("user_id", "api_key_id", "endpoint", "method", "status", "latency_ms", "units")
COLUMNS += ("billable", "created_at")
ROUTES = [(f"/api/v1/endpoint{i}", "GET" if i % 3 else "POST") for i in range(8)]
BATCH = 10_000
PRODUCERS = 512
ARGS: argparse.Namespace


async def seed(settings: Settings, user: tuple[int, int], count: int, now: datetime) -> float:
    """`count` events of one account over the last 366 days; seconds taken."""
    engine = create_engine(settings)
    writer = direct_insert(engine, UsageEvent.__table__, COLUMNS)  # type: ignore[arg-type]
    assert writer is not None
    rng = random.Random(1)
    started = time.perf_counter()
    span = 366 * 86_400
    try:
        for first in range(0, count, BATCH):
            rows = []
            for i in range(first, min(count, first + BATCH)):
                endpoint, method = ROUTES[i % len(ROUTES)]
                latency = int(rng.lognormvariate(3.5, 1.0))
                billable = rng.random() < 0.95
                at = now - timedelta(seconds=span * i / count)
                rows.append((user[0], user[1], endpoint, method, 200, latency, 1, billable, at))
            counts = counters.BatchCounts(
                daily.count_days(
                    [r[0] for r in rows],
                    [r[8] for r in rows],
                    [r[6] for r in rows],
                    [r[7] for r in rows],
                ),
                endpoint_daily.count_endpoint_days(
                    (r[0], r[8], r[2], r[3], r[5], r[6], r[7]) for r in rows
                ),
            )
            await writer.write(rows, counts)
    finally:
        await writer.close()
        await engine.dispose()
    return time.perf_counter() - started


async def timed(settings: Settings, user_id: int, now: datetime, runs: int) -> dict[str, Any]:
    engine = create_engine(settings)
    sessions = create_session_factory(engine)
    start = now - timedelta(days=366)
    result: dict[str, Any] = {}
    try:
        for name in ("before", "after"):
            took = []
            for _ in range(runs):
                async with session_scope(sessions) as session:
                    began = time.perf_counter()
                    if name == "before":
                        stats = await endpoints.stats_from_events(session, user_id, start, now)
                    else:
                        _period, stats = await queries.endpoint_usage(
                            session, user_id, now=now, days=366
                        )
                    took.append(time.perf_counter() - began)
            result[f"{name}_seconds"] = round(statistics.median(took), 4)
            result[f"{name}_calls"] = sum(s.calls for s in stats)
        result["ratio"] = round(result["before_seconds"] / result["after_seconds"], 1)
    finally:
        await engine.dispose()
    return result


async def write_cost(
    settings: Settings, users: list[tuple[int, int]], total: int, counter: bool
) -> dict[str, Any]:
    """`total` events through the usage writer; with the per-endpoint counter, or without."""
    kept = endpoint_daily.count_endpoint_days
    if not counter:
        endpoint_daily.count_endpoint_days = lambda _events: []  # type: ignore[assignment]
    engine = create_engine(settings)
    writer = UsageWriter(create_session_factory(engine), Clock(), max_queued=100_000)
    await writer.start()
    per_producer = total // PRODUCERS
    now = datetime.now(UTC)

    async def producer(offset: int) -> None:
        rng = random.Random(offset)
        for i in range(per_producer):
            user, key = users[(offset * per_producer + i) % len(users)]
            endpoint, method = ROUTES[i % len(ROUTES)]
            await writer.record(
                NewUsageEvent(
                    user_id=user,
                    api_key_id=key,
                    endpoint=endpoint,
                    method=method,
                    status=200,
                    latency_ms=int(rng.lognormvariate(3.5, 1.0)),
                    units=1,
                    billable=True,
                    created_at=now,
                    request_id=uuid.uuid4().hex,
                )
            )

    try:
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(producer(p) for p in range(PRODUCERS)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        await writer.stop()
        await engine.dispose()
        endpoint_daily.count_endpoint_days = kept
    done = per_producer * PRODUCERS
    name = "with_counter" if counter else "without_counter"
    return {
        f"{name}_events_per_s": round(done / wall),
        f"{name}_cpu_us_per_event": round(cpu / done * 1e6, 1),
    }


def run_backend(backend: str, tmp: Path, events: int, runs: int) -> dict[str, Any]:
    cleanup = None
    if backend == "postgres":
        name = f"novo_endpoints_{uuid.uuid4().hex[:8]}"
        _psql(f'CREATE DATABASE "{name}"')
        cleanup = name
        settings = Settings(_env_file=None, database_url=f"{PG_ADMIN}/{name}")  # type: ignore[call-arg]
    else:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            database_path=tmp / f"endpoints-{uuid.uuid4().hex[:6]}.db",
            database_url="",
        )
    try:
        upgrade(settings)
        now = datetime.now(UTC)
        (user,) = asyncio.run(make_customers(settings, 1, now - timedelta(days=1)))
        seeded = asyncio.run(seed(settings, user, events, now))
        if backend == "postgres":
            _psql_in(settings, "VACUUM ANALYZE")
        result = {"backend": backend, "events": events, "seed_seconds": round(seeded, 1)}
        result.update(asyncio.run(timed(settings, user[0], now, runs)))
        if ARGS.write_events:
            users = asyncio.run(make_customers(settings, ARGS.customers, now, prefix="w"))
            for counter in (False, True, False, True):  # alternated: the machine is shared
                for name, value in asyncio.run(
                    write_cost(settings, users, ARGS.write_events, counter)
                ).items():
                    best = max if name.endswith("per_s") else min  # the best of the two
                    result[name] = best(result.get(name, value), value)
        return result
    finally:
        if cleanup:
            _psql(f'DROP DATABASE IF EXISTS "{cleanup}" WITH (FORCE)')


def _psql_in(settings: Settings, sql: str) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(settings.database_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def main() -> None:
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="postgres,sqlite")
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--write-events", type=int, default=200_000)
    parser.add_argument("--customers", type=int, default=1000)
    ARGS = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for backend in ARGS.backends.split(","):
            print(run_backend(backend, Path(tmp), ARGS.events, ARGS.runs), flush=True)


if __name__ == "__main__":
    main()
