"""Bounds on an account's usage reads: a statement timeout (503) and a cap on heavy reads in
flight per account (429), both in the common error shape with Retry-After."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, text

from novo_gateway.kit.clock import FrozenClock
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import session_scope
from novo_gateway.kit.errors import ServiceUnavailable
from novo_gateway.metering.models import UsageEvent
from novo_gateway.metering.reads import statement_timeout
from tests.conftest import AppClient
from tests.gateway.helpers import make_account, runtime_of

NOW = datetime(2026, 11, 26, 15, 30, tzinfo=UTC)
# A statement that runs for seconds on each database (it is stopped long before).
SLOW = {
    "postgresql": "SELECT pg_sleep(30)",
    "sqlite": "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
    "SELECT count(*) FROM (SELECT i FROM n LIMIT 1000000000)",
}


async def test_a_statement_past_the_timeout_is_stopped_with_503(
    settings: Settings, start_app: Callable[..., Any]
) -> None:
    client: AppClient = await start_app(settings, FrozenClock(NOW))
    runtime = runtime_of(client)
    async with session_scope(runtime.sessions) as session:
        slow = SLOW[session.get_bind().dialect.name]
        with pytest.raises(ServiceUnavailable) as stopped:
            async with statement_timeout(session, 0.05):
                await session.execute(text(slow))
        await session.rollback()
    assert stopped.value.headers == {"Retry-After": "1"}
    async with session_scope(runtime.sessions) as session:  # the connection is usable again
        assert (await session.execute(text("SELECT 1"))).scalar_one() == 1


async def test_a_slow_endpoints_read_is_answered_503_in_the_error_shape(
    make_settings: Callable[..., Settings], start_app: Callable[..., Any]
) -> None:
    # A timeout no read of 20,000 events can meet.
    client: AppClient = await start_app(
        make_settings(usage_read_timeout_seconds=0.001), FrozenClock(NOW)
    )
    account = await make_account(client)
    runtime = runtime_of(client)
    async with runtime.engine.begin() as conn:  # Core rows: quick to add
        await conn.execute(
            insert(UsageEvent.__table__),  # type: ignore[arg-type]
            [
                {
                    "user_id": account.user_id,
                    "api_key_id": account.key_id,
                    "endpoint": f"/api/v1/e{i % 7}",
                    "method": "GET",
                    "status": 200,
                    "latency_ms": i % 997,
                    "units": 1,
                    "billable": True,
                    "created_at": NOW - timedelta(seconds=i),
                }
                for i in range(20_000)
            ],
        )
    response = await client.get("/billing/usage/endpoints?days=1", headers=account.auth)
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "1"
    body = response.json()
    assert body["error"] == "Service Unavailable"
    assert "took longer than 0.001 s" in body["message"]
    assert runtime.reads.in_flight(account.user_id) == 0  # its slot is given back


async def test_heavy_reads_beyond_the_cap_of_an_account_are_429_and_others_are_served(
    settings: Settings, start_app: Callable[..., Any]
) -> None:
    client: AppClient = await start_app(settings, FrozenClock(NOW))
    mine, theirs = await make_account(client), await make_account(client, "grace@example.com")
    runtime = runtime_of(client)
    reads = runtime.reads
    assert reads.per_account == 2  # the default
    async with (  # two reads of this account still running
        session_scope(runtime.sessions) as first,
        reads.bounded(first, mine.user_id),
        session_scope(runtime.sessions) as second,
        reads.bounded(second, mine.user_id),
    ):
        refused = await client.get("/billing/usage/endpoints?days=366", headers=mine.auth)
        other = await client.get("/billing/usage/endpoints?days=366", headers=theirs.auth)
        summary = await client.get("/billing/usage", headers=mine.auth)  # not a heavy read
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    assert refused.json()["error"] == "Too Many Requests"
    assert refused.json()["retryAfter"] == 1
    assert other.status_code == 200
    assert summary.status_code == 200
    assert reads.in_flight(mine.user_id) == 0
    again = await client.get("/billing/usage/endpoints?days=366", headers=mine.auth)
    assert again.status_code == 200
