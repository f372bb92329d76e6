"""The usage ledger and the reporter at scale, on SQLite (the default) and PostgreSQL.

For each backend, on a fresh migrated database:

1. insert: `--events` usage events for `--customers` customers through the gateway's own
   `UsageWriter` (group commit, each event committed before `record` returns), from 512
   concurrent producers, as the metered path does: events/s, CPU per event, bytes per event on
   disk (the events' table and indexes; and apart, the daily counter `usage_daily`);
2. usage: `/billing/usage`'s query (`metering.queries.usage_summary`) for a customer with
   `--heavy` events in the period, and for an ordinary one: milliseconds, median of 5;
3. reporter (`--reporter v1,v2`): the customers become Stripe customers of a fresh Stripe
   emulator (in their current billing period), and `UsageReporter` claims every pending event
   into reports, one per customer and period (aggregation events/s), and sends them (v1: one
   meter event per report; v2: the meter event stream, 100 per call) at `--stripe-rate` calls/s:
   seconds, the time for the whole backlog, and the process's peak RSS. The send phase stops
   after `--phase-seconds` (the output then shows what was left);
4. steady state (`--steady-events`, default 120,000: one default 60 s reporting interval at
   2,000 metered calls/s), when the backlog was all sent: that many more events for every
   customer, then one `run_once` (claim and send) of the reporter; it keeps up when the run
   takes less than the interval.

    .venv/bin/python bench/ledger.py [--backends sqlite,postgres] [--events 1000000]
        [--customers 10000] [--heavy 1000000] [--reporter v1,v2] [--stripe-rate 100]
        [--phase-seconds 120] [--steady-events 120000]

PostgreSQL at 127.0.0.1:5432 (user postgres); each run makes and drops its own database.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.servers import PG_ADMIN, _psql, free_port
from novo_gateway import offline_demo
from novo_gateway.accounts.models import User
from novo_gateway.billing.reporter import UsageReporter
from novo_gateway.billing.stripe_client import StripeBilling
from novo_gateway.keys.models import ApiKey
from novo_gateway.keys.tokens import display_prefix, generate_key, hash_key
from novo_gateway.kit.clock import Clock
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import create_engine, create_session_factory, session_scope
from novo_gateway.metering import queries
from novo_gateway.metering.writer import NewUsageEvent, UsageWriter
from novo_gateway.migrate import upgrade

PRODUCERS = 512


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def make_customers(
    settings: Settings, count: int, period_start: datetime, prefix: str = "c"
) -> list[tuple[int, int]]:
    """`count` active customers in their current period, each with a key: (user id, key id)."""
    engine = create_engine(settings)
    sessions = create_session_factory(engine)
    async with session_scope(sessions) as session:
        users = [
            User(
                email=f"{prefix}{i}@bench.example",
                name=f"{prefix}{i}",
                password_hash="unused",
                subscription_status="active",
                current_period_start=period_start,
                current_period_end=period_start + timedelta(days=30),
            )
            for i in range(count)
        ]
        session.add_all(users)
        await session.flush()
        keys = [
            ApiKey(
                user_id=u.id,
                name="bench",
                prefix=display_prefix(k := generate_key()),
                key_hash=hash_key(k),
                changed_at=period_start,
            )
            for u in users
        ]
        session.add_all(keys)
        await session.flush()
        pairs = [(u.id, k.id) for u, k in zip(users, keys, strict=True)]
    await engine.dispose()
    return pairs


async def insert(
    settings: Settings, users: list[tuple[int, int]], total: int, at: datetime
) -> dict[str, Any]:
    """`total` events spread over `users`, through the writer; throughput and CPU."""
    engine = create_engine(settings)
    writer = UsageWriter(create_session_factory(engine), Clock(), max_queued=100_000)
    await writer.start()
    per_producer = total // PRODUCERS

    async def producer(offset: int) -> None:
        for i in range(per_producer):
            user, key = users[(offset * per_producer + i) % len(users)]
            await writer.record(
                NewUsageEvent(
                    user_id=user,
                    api_key_id=key,
                    endpoint="/api/v1/insights",
                    method="GET",
                    status=200,
                    latency_ms=3,
                    units=1,
                    billable=True,
                    created_at=at + timedelta(microseconds=i),
                    request_id=uuid.uuid4().hex,
                )
            )

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(producer(p) for p in range(PRODUCERS)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    batches = writer.committed_batches
    await writer.stop()
    await engine.dispose()
    done = per_producer * PRODUCERS
    return {
        "events": done,
        "events_per_s": round(done / wall),
        "cpu_us_per_event": round(cpu / done * 1e6, 1),
        "batches": batches,
    }


async def bytes_per_event(settings: Settings, events: int) -> tuple[float, float]:
    """Bytes on disk per event: the events' table and its indexes, and the daily counter."""
    if settings.is_sqlite:
        with sqlite3.connect(settings.database_path) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            ledger, counter = db.execute(
                "SELECT sum(CASE WHEN name = 'usage_daily' THEN 0 ELSE pgsize END), "
                "sum(CASE WHEN name = 'usage_daily' THEN pgsize ELSE 0 END) FROM dbstat "
                "WHERE name IN ('usage_events', 'ix_usage_events_user_created', "
                "'ix_usage_events_unreported', 'usage_daily')"
            ).fetchone()
        return float(ledger) / events, float(counter) / events
    import asyncpg

    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute("VACUUM ANALYZE usage_events")
        await conn.execute("VACUUM ANALYZE usage_daily")
        ledger = await conn.fetchval("SELECT pg_total_relation_size('usage_events')")
        counter = await conn.fetchval("SELECT pg_total_relation_size('usage_daily')")
    finally:
        await conn.close()
    return float(ledger) / events, float(counter) / events


async def usage_latency(settings: Settings, user_id: int, now: datetime) -> float:
    engine = create_engine(settings)
    sessions = create_session_factory(engine)
    times = []
    for _ in range(5):
        async with session_scope(sessions) as session:
            user = await session.get_one(User, user_id)
            started = time.perf_counter()
            await queries.usage_summary(session, user, settings, now=now)
            times.append((time.perf_counter() - started) * 1000)
    await engine.dispose()
    return round(statistics.median(times), 1)


async def report(
    settings: Settings, api: str, users: list[tuple[int, int]], tmp: Path
) -> dict[str, Any]:
    """Every pending event reported to a fresh emulator on the `api` meter event endpoint."""
    port = free_port()
    emulator = offline_demo.start_emulator(port, tmp / f"emulator-{api}-{uuid.uuid4().hex[:6]}")
    try:
        base = Settings(
            _env_file=None,  # type: ignore[call-arg]
            database_path=settings.database_path,
            database_url=settings.database_url,
            stripe_secret_key=offline_demo.EMULATOR_KEY,
            stripe_api_base=emulator.url,
            stripe_meter_api=api,  # type: ignore[arg-type]
            stripe_rate_limit_per_second=ARGS.stripe_rate,
        )
        setup = await offline_demo._set_up(base, "http://127.0.0.1:9/webhooks/stripe")
        local = base.model_copy(update={"stripe_price_id": setup.price_id})
        customer_ids = await emulator_customers(emulator.url, len(users))
        engine = create_engine(local)
        sessions = create_session_factory(engine)
        async with session_scope(sessions) as session:
            for (user_id, _), customer in zip(users, customer_ids, strict=True):
                (await session.get_one(User, user_id)).stripe_customer_id = customer
        stripe = StripeBilling(local, Clock())
        reporter = UsageReporter(sessions, stripe, local, Clock())
        rss_before = peak_rss_mb()
        from novo_gateway.billing.reporter import ReporterRun

        run = ReporterRun()
        cpu, started = time.process_time(), time.perf_counter()
        await reporter.claim(run)  # every event pending now, a batch per transaction
        claimed, cpu = time.perf_counter() - started, time.process_time() - cpu
        started = time.perf_counter()
        sending = asyncio.ensure_future(reporter.send_due(run))
        done, _ = await asyncio.wait([sending], timeout=ARGS.phase_seconds)
        if not done:
            await reporter.stop()  # send_due returns after the call in flight
            await sending
        sent = time.perf_counter() - started
        left = await reporter.pending()
        result: dict[str, Any] = {
            "api": api,
            "claimed_events": run.claimed_events,
            "reports": run.reports_created,
            "claim_seconds": round(claimed, 1),
            "aggregation_events_per_s": round(run.claimed_events / claimed),
            # this process's CPU (SQLite works in it; PostgreSQL's server is not counted)
            "claim_cpu_us_per_event": round(cpu / max(run.claimed_events, 1) * 1e6, 1),
            "send_seconds": round(sent, 1),
            "sent": run.sent,
            "reports_sent_per_s": round(run.sent / sent, 1),
            "dead": run.dead,
            "retried": run.retried,
            "still_pending": left,
            "backlog_seconds": round(claimed + sent, 1) if left == 0 else None,
        }
        if ARGS.steady_events and left == 0:
            result["steady"] = await steady_run(local, reporter, users)
        await stripe.close()
        await engine.dispose()
        result["peak_rss_mb_before"] = round(rss_before)
        result["peak_rss_mb_after"] = round(peak_rss_mb())
        return result
    finally:
        emulator.stop()


async def steady_run(
    settings: Settings, reporter: UsageReporter, users: list[tuple[int, int]]
) -> dict[str, Any]:
    """One reporting interval's events for every customer, then one run of the reporter."""
    at = datetime.now(UTC) - timedelta(seconds=60)
    inserted = await insert(settings, users, ARGS.steady_events, at)
    started = time.perf_counter()
    run = await reporter.run_once()
    took = time.perf_counter() - started
    assert run is not None
    return {
        "events": inserted["events"],
        "customers": len(users),
        "claimed_events": run.claimed_events,
        "reports": run.reports_created,
        "sent": run.sent,
        "run_seconds": round(took, 1),
        "interval_seconds": settings.usage_reporting_interval / 1000,
        "still_pending": await reporter.pending(),
    }


async def emulator_customers(url: str, count: int) -> list[str]:
    headers = {"Authorization": f"Bearer {offline_demo.EMULATOR_KEY}"}
    ids: list[str] = [""] * count
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        queue = list(range(count))

        async def create(i: int) -> str:
            for attempt in range(3):
                try:
                    reply = await client.post(
                        "/v1/customers", data={"email": f"c{i}@bench.example"}
                    )
                    break
                except httpx.TransportError:  # a pooled connection the server had closed
                    if attempt == 2:
                        raise
            reply.raise_for_status()
            return str(reply.json()["id"])

        async def worker() -> None:
            while queue:
                i = queue.pop()
                ids[i] = await create(i)

        await asyncio.gather(*(worker() for _ in range(16)))
    return ids


async def reset_reports(settings: Settings) -> None:
    """Make every event pending again (for the next reporter run on a fresh emulator)."""
    engine = create_engine(settings)
    async with engine.begin() as conn:
        from sqlalchemy import text

        await conn.execute(text("UPDATE usage_events SET report_id = NULL"))
        await conn.execute(text("DELETE FROM usage_reports"))
        await conn.execute(text("DELETE FROM worker_leases"))  # the last run's reporter lease
    await engine.dispose()


async def delete_events_of(settings: Settings, user_id: int) -> None:
    from sqlalchemy import text

    engine = create_engine(settings)
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM usage_events WHERE user_id = :u"), {"u": user_id})
        await conn.execute(text("DELETE FROM usage_daily WHERE user_id = :u"), {"u": user_id})
    await engine.dispose()


def run_backend(backend: str, tmp: Path) -> dict[str, Any]:
    cleanup = None
    if backend == "postgres":
        name = f"novo_ledger_{uuid.uuid4().hex[:8]}"
        _psql(f'CREATE DATABASE "{name}"')
        cleanup = name
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            database_url=f"{PG_ADMIN}/{name}",
        )
    else:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            database_path=tmp / f"ledger-{uuid.uuid4().hex[:6]}.db",
            database_url="",
        )
    try:
        upgrade(settings)
        now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        period_start = now - timedelta(days=1)
        result: dict[str, Any] = {"backend": backend}
        users = asyncio.run(make_customers(settings, ARGS.customers, period_start))
        (heavy,) = asyncio.run(make_customers(settings, 1, period_start, prefix="heavy"))
        at = now - timedelta(minutes=30)
        result["insert"] = asyncio.run(insert(settings, users, ARGS.events, at))
        ledger, counter = asyncio.run(bytes_per_event(settings, ARGS.events))
        result["bytes_per_event"] = round(ledger, 1)
        result["counter_bytes_per_event"] = round(counter, 1)
        print(
            backend,
            "insert",
            result["insert"],
            result["bytes_per_event"],
            result["counter_bytes_per_event"],
            flush=True,
        )
        if ARGS.heavy:
            asyncio.run(insert(settings, [heavy], ARGS.heavy, at))
            result["usage_ms_heavy"] = asyncio.run(usage_latency(settings, heavy[0], now))
            result["heavy_events"] = ARGS.heavy
            # Not a Stripe customer: out of the reporter's way (its claim would step over them).
            asyncio.run(delete_events_of(settings, heavy[0]))
        result["usage_ms_ordinary"] = asyncio.run(usage_latency(settings, users[0][0], now))
        print(
            backend, "usage", result.get("usage_ms_heavy"), result["usage_ms_ordinary"], flush=True
        )
        result["reporter"] = []
        for api in [a for a in ARGS.reporter.split(",") if a]:
            asyncio.run(reset_reports(settings))
            result["reporter"].append(asyncio.run(report(settings, api, users, tmp)))
            print(backend, "reporter", result["reporter"][-1], flush=True)
        return result
    finally:
        if cleanup:
            _psql(f'DROP DATABASE IF EXISTS "{cleanup}" WITH (FORCE)')


ARGS: argparse.Namespace


def main() -> None:
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--heavy", type=int, default=1_000_000)
    parser.add_argument("--reporter", default="v1,v2")
    parser.add_argument("--stripe-rate", type=float, default=100.0)
    parser.add_argument(
        "--phase-seconds", type=float, default=120.0, help="stop sending the backlog after this"
    )
    parser.add_argument("--steady-events", type=int, default=120_000)
    ARGS = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="novo-ledger-"))
    os.environ.pop("STRIPE_SECRET_KEY", None)
    for backend in ARGS.backends.split(","):
        result = run_backend(backend, tmp)
        print(result, flush=True)


if __name__ == "__main__":
    main()
