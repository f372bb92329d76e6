"""The per-endpoint day counter `usage_endpoint_daily`: the exact sums of the events per account,
day, endpoint and latency bucket whichever way they were written (and after the migration's
backfill), and `/billing/usage/endpoints` answering from it what the events alone answer, with
the p95 within its bucket: the true p95's bucket upper bound (exact under 16 ms, < 12.5 % above)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, inspect, select

from novo_gateway.kit.clock import FrozenClock
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import SessionFactory, create_engine, create_session_factory, session_scope
from novo_gateway.metering import endpoints
from novo_gateway.metering.endpoint_daily import (
    EndpointDayRow,
    bucket_upper,
    count_endpoint_days,
    latency_bucket,
    p95,
)
from novo_gateway.metering.models import UsageEndpointDaily, UsageEvent
from novo_gateway.metering.writer import NewUsageEvent, UsageWriter
from novo_gateway.migrate import upgrade
from tests.conftest import AppClient
from tests.factories import create_api_key, create_user
from tests.gateway.helpers import Account, make_account, runtime_of
from tests.metering.ledger import add_to_ledger
from tests.metering.test_usage_daily import (  # noqa: F401  (empty_database: a fixture)
    MIDNIGHT,
    downgrade,
    empty_database,
    insert_account,
)

ROUTES = [("/api/v1/insights", "GET"), ("/api/v1/bulk/process", "POST"), ("/api/v1/x", "GET")]


def test_buckets_hold_every_latency_within_an_eighth() -> None:
    values = [*range(0, 70_000), 2**20 - 1, 2**20, 2**30 + 12345, 2**31 - 1]
    buckets = [latency_bucket(ms) for ms in values]
    assert buckets == sorted(buckets)  # monotonic: ranks survive bucketing
    for ms, bucket in zip(values, buckets, strict=True):
        upper = bucket_upper(bucket)
        assert upper >= ms
        assert upper == ms if ms < 16 else upper - ms < ms / 8
        assert bucket == 0 or bucket_upper(bucket - 1) < ms  # the bucket's lower bound
    assert max(buckets) < 2**15  # a SMALLINT


def test_p95_of_a_histogram_is_the_bucket_of_the_nearest_rank() -> None:
    latencies = [random.Random(seed).randrange(0, 5000) for seed in range(1000)]
    ranked = sorted(latencies)
    true_p95 = ranked[-(-len(ranked) * 95 // 100) - 1]
    histogram: dict[int, int] = {}
    for ms in latencies:
        histogram[latency_bucket(ms)] = histogram.get(latency_bucket(ms), 0) + 1
    assert p95(histogram) == bucket_upper(latency_bucket(true_p95))


def _event(user: tuple[int, int], at: datetime, rng: random.Random) -> NewUsageEvent:
    endpoint, method = rng.choice(ROUTES)
    billable = rng.random() < 0.8
    return NewUsageEvent(
        user_id=user[0],
        api_key_id=user[1],
        endpoint=endpoint,
        method=method,
        status=200 if billable else 500,
        latency_ms=rng.choice([rng.randrange(0, 16), rng.randrange(16, 3000), 123_456]),
        units=rng.randrange(1, 4),
        billable=billable,
        created_at=at,
        idempotency_key=f"k{rng.randrange(40)}" if rng.random() < 0.1 else None,
    )


async def counter_rows(sessions: SessionFactory) -> list[EndpointDayRow]:
    async with session_scope(sessions) as session:
        rows = (await session.execute(select(UsageEndpointDaily))).scalars().all()
        return sorted(
            (
                r.user_id,
                r.day,
                r.endpoint,
                r.method,
                r.bucket,
                r.calls,
                r.billable_units,
                r.latency_ms_sum,
            )
            for r in rows
        )


async def from_events(sessions: SessionFactory) -> list[EndpointDayRow]:
    """The rows the counter must hold, computed from the events themselves."""
    async with session_scope(sessions) as session:
        events = (await session.execute(select(UsageEvent))).scalars().all()
        return count_endpoint_days(
            (e.user_id, e.created_at, e.endpoint, e.method, e.latency_ms, e.units, e.billable)
            for e in events
        )


async def _seed(client: AppClient, now: datetime, count: int) -> Account:
    """`count` events over the 40 days before `now` (many at the edges of days), through the
    usage writer (its driver insert and, for Idempotency-Keys, its session); a few through a
    session flush."""
    runtime = runtime_of(client)
    account = await make_account(client)
    user = (account.user_id, account.key_id)
    rng = random.Random(7)
    times = []
    for _ in range(count):
        day = now - timedelta(days=rng.randrange(0, 41))
        midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
        times.append(
            rng.choice(
                [
                    midnight,
                    midnight - timedelta(microseconds=1),
                    midnight + timedelta(seconds=rng.randrange(86_400)),
                    now - timedelta(days=rng.randrange(0, 41)),  # the same time of day as now
                ]
            )
        )
    events = [_event(user, at, rng) for at in times if at <= now]
    for start in range(0, len(events), 200):
        await asyncio.gather(*(runtime.usage.record(e) for e in events[start : start + 200]))
    async with session_scope(runtime.sessions) as session:
        rows = [UsageEvent(**{**asdict(event), "idempotency_key": None}) for event in events[:30]]
        await add_to_ledger(session, rows)
    return account


@pytest.mark.parametrize(
    "now",
    [
        datetime(2026, 11, 26, 15, 30, 12, 345678, tzinfo=UTC),
        datetime(2026, 11, 26, tzinfo=UTC),  # at midnight
        datetime(2026, 11, 26, 23, 59, 59, 999999, tzinfo=UTC),
    ],
)
async def test_endpoint_usage_from_the_counter_equals_the_events_answer(
    settings: Settings, start_app: Callable[..., Any], now: datetime
) -> None:
    client: AppClient = await start_app(settings, FrozenClock(now))
    account = await _seed(client, now, 1500)
    sessions = runtime_of(client).sessions
    assert await counter_rows(sessions) == await from_events(sessions)
    other = await make_account(client, "other@example.com")
    for days in (1, 2, 3, 7, 30, 40, 366):
        response = await client.get(f"/billing/usage/endpoints?days={days}", headers=account.auth)
        assert response.status_code == 200, response.text
        answered = response.json()["endpoints"]
        async with session_scope(sessions) as session:
            exact = await endpoints.stats_from_events(
                session, account.user_id, now - timedelta(days=days), now
            )
        assert [(e["endpoint"], e["method"]) for e in answered] == [
            (s.endpoint, s.method) for s in exact
        ]
        for got, want in zip(answered, exact, strict=True):
            assert got["call_count"] == want.calls
            assert got["billable_calls"] == want.billable_units
            assert got["avg_response_time"] == want.avg_latency_ms
            # Within the bucket: the upper bound of the bucket holding the true p95.
            assert got["p95_response_time"] in (
                want.p95_latency_ms,
                bucket_upper(latency_bucket(want.p95_latency_ms)),
            )
            if days >= 3:  # whole days in the range, read from the counter
                assert got["p95_response_time"] == bucket_upper(latency_bucket(want.p95_latency_ms))
    theirs = await client.get("/billing/usage/endpoints?days=366", headers=other.auth)
    assert theirs.json()["endpoints"] == []  # another account's counter rows are not shown


async def test_two_writers_keep_one_exact_endpoint_counter(
    sessions: SessionFactory, clock: FrozenClock
) -> None:
    async with session_scope(sessions) as session:
        created = await create_user(session, email="ada@example.com")
        key, _ = await create_api_key(session, created)
    user = (created.id, key.id)
    rng = random.Random(3)
    first, second = UsageWriter(sessions, clock), UsageWriter(sessions, clock)
    await first.start()
    await second.start()
    try:
        await asyncio.gather(
            *(
                (first if i % 2 else second).record(_event(user, clock.now(), rng))
                for i in range(400)
            )
        )
    finally:
        await first.stop()
        await second.stop()
    assert sum(row[5] for row in await counter_rows(sessions)) == 400
    assert await counter_rows(sessions) == await from_events(sessions)


async def test_migration_backfills_the_endpoint_counter(
    empty_database: Settings,  # noqa: F811
) -> None:
    await asyncio.to_thread(upgrade, empty_database, "0008_auth")
    engine = create_engine(empty_database)
    sessions = create_session_factory(engine)
    rng = random.Random(11)
    try:
        async with engine.begin() as conn:
            user_id, key_id = await insert_account(conn, 0)
            # Core inserts on a connection: no session, so no counter row is added yet.
            values = []
            for i in range(600):
                event = _event((user_id, key_id), MIDNIGHT + timedelta(minutes=17 * i - 5000), rng)
                event.latency_ms = [0, 15, 16, 17, 1023, 1024, 2**31 - 1, i * 37][i % 8]
                values.append({**asdict(event), "idempotency_key": None})
            await conn.execute(insert(UsageEvent.__table__), values)  # type: ignore[arg-type]
        await asyncio.to_thread(upgrade, empty_database)
        expected = await from_events(sessions)
        assert len(expected) > 100
        assert await counter_rows(sessions) == expected
        # The downgrade drops the table, and upgrading again fills it the same.
        await asyncio.to_thread(downgrade, empty_database, "0008_auth")
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
        assert "usage_endpoint_daily" not in tables
        await asyncio.to_thread(upgrade, empty_database)
        assert await counter_rows(sessions) == expected
    finally:
        await engine.dispose()
