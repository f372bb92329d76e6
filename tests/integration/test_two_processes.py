"""Two gateway processes on one PostgreSQL and one Redis, as production runs them.

Rate limits are exact across processes, a key revoked through one process is refused by the other
within a second, and with both reporters running every billable call reaches Stripe exactly once.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from novo_gateway.billing.models import UsageReport
from novo_gateway.billing.setup import run_setup
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import create_engine, create_session_factory, session_scope
from novo_gateway.metering.models import UsageEvent
from tests.billing.conftest import Emulator
from tests.integration.processes import GatewayProcess, free_port, settings_env, wait_for

PASSWORD = "correct horse battery staple"
LIMIT = 100


@pytest.fixture
def pair(
    make_stripe_settings: Callable[..., Settings],
    emulator: Emulator,
    redis_url: str,
    tmp_path: Path,
) -> Iterator[tuple[GatewayProcess, GatewayProcess, Settings]]:
    settings = make_stripe_settings(redis_url=redis_url)
    ports = [free_port(), free_port()]
    setup = asyncio.run(
        run_setup(settings, webhook_url=f"http://127.0.0.1:{ports[0]}/webhooks/stripe")
    )
    env = settings_env(settings)
    env.update(
        STRIPE_PRICE_ID=setup.price_id,
        STRIPE_WEBHOOK_SECRET=setup.webhook_secret or "",
        RATE_LIMIT_PER_MINUTE=str(LIMIT),
        RATE_LIMIT_KEY_PREFIX=f"test-{uuid.uuid4().hex[:8]}",
        USAGE_REPORTING_INTERVAL="200",
        REPORTER_LEASE_SECONDS="5",
    )
    first = GatewayProcess(env, tmp_path / "a.log", ports[0])
    second = GatewayProcess(env, tmp_path / "b.log", ports[1])
    try:
        yield first.wait_until_up(), second.wait_until_up(), settings
    finally:
        first.stop()
        second.stop()


def _register(url: str) -> str:
    reply = httpx.post(
        url + "/auth/register",
        json={"email": "ada@example.com", "password": PASSWORD, "name": "Ada"},
        timeout=30,
    )
    assert reply.status_code == 201, reply.text
    key: str = reply.json()["apiKey"]["key"]
    return key


async def _spread_calls(urls: list[str], key: str, count: int) -> list[int]:
    """`count` concurrent metered calls, alternating between the processes."""
    async with httpx.AsyncClient(timeout=30) as client:
        replies = await asyncio.gather(
            *(
                client.get(urls[i % len(urls)] + "/api/v1/insights", headers={"X-API-Key": key})
                for i in range(count)
            )
        )
    return [r.status_code for r in replies]


def _ledger(settings: Settings) -> dict[str, Any]:
    async def read() -> dict[str, Any]:
        engine = create_engine(settings)
        try:
            async with session_scope(create_session_factory(engine)) as session:
                events = await session.scalar(
                    select(func.count()).where(UsageEvent.billable.is_(True))
                )
                sent = await session.scalar(
                    select(func.coalesce(func.sum(UsageReport.units), 0)).where(
                        UsageReport.status == "sent"
                    )
                )
            return {"billable": int(events or 0), "sent": int(sent or 0)}
        finally:
            await engine.dispose()

    return asyncio.run(read())


@pytest.mark.parametrize("backend", ["postgres"])
def test_limits_are_exact_and_billing_is_exact_across_two_processes(
    pair: tuple[GatewayProcess, GatewayProcess, Settings], emulator: Emulator
) -> None:
    first, second, settings = pair
    key = _register(first.url)

    statuses = asyncio.run(_spread_calls([first.url, second.url], key, LIMIT + 50))

    assert Counter(statuses) == {200: LIMIT, 429: 50}
    wait_for(lambda: _ledger(settings)["sent"] == LIMIT, seconds=60)
    assert _ledger(settings)["billable"] == LIMIT
    totals = emulator.state(meter_events="false")["totals"]
    assert [int(float(v)) for per in totals.values() for v in per.values()] == [LIMIT]
    assert max(Counter(emulator.identifiers()).values()) == 1


@pytest.mark.parametrize("backend", ["postgres"])
def test_a_key_revoked_through_one_process_is_refused_by_the_other_within_a_second(
    pair: tuple[GatewayProcess, GatewayProcess, Settings],
) -> None:
    first, second, _ = pair
    owner = _register(first.url)
    created = httpx.post(
        first.url + "/auth/api-keys", json={"name": "ci"}, headers={"X-API-Key": owner}
    )
    assert created.status_code == 201, created.text
    key, key_id = created.json()["apiKey"]["key"], created.json()["apiKey"]["id"]
    call = {"X-API-Key": key}
    assert httpx.get(second.url + "/api/v1/insights", headers=call).status_code == 200

    revoked = httpx.delete(f"{first.url}/auth/api-keys/{key_id}", headers={"X-API-Key": owner})
    assert revoked.status_code == 200
    revoked_at = time.monotonic()

    while httpx.get(second.url + "/api/v1/insights", headers=call).status_code == 200:
        assert time.monotonic() - revoked_at < 1.0, "the other process still accepts the key"
        time.sleep(0.02)
    assert httpx.get(first.url + "/api/v1/insights", headers=call).status_code == 401
