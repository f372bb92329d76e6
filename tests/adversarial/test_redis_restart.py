"""Rate limits across a restart of Redis that loses every counter (no persistence).

Two gateway processes share a Redis of this test's own. 60 calls are admitted, Redis is killed
and started again empty inside the same minute, then both processes take calls until both refuse:
the minute admitted at most its limit (it used to admit 60 + 100).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from tests.adversarial.conftest import GatewayFactory
from tests.adversarial.harness import PrivateRedis, private_redis, running
from tests.adversarial.system import Figures, Ledger, register

LIMIT = 100
BEFORE = 60
ROUND = 10  # concurrent calls per process in each round after the restart


@pytest.fixture
def own_redis() -> Iterator[PrivateRedis]:
    """Not the suite's shared Redis: this one is restarted."""
    with private_redis() as server:
        yield server


async def _early_in_a_minute() -> None:
    """Rate windows are whole minutes: start at most 15 s into one, so the test fits in it."""
    while not 1 <= time.time() % 60 <= 15:
        await asyncio.sleep(0.2)


async def test_a_redis_restart_inside_the_window_admits_no_more_than_the_limit(
    factory: GatewayFactory, own_redis: PrivateRedis, figures: Figures
) -> None:
    database = factory.database("postgres")
    settings = {
        "redis_url": own_redis.url,
        "rate_limit_key_prefix": f"restart-{uuid.uuid4().hex[:6]}",
        "rate_limit_per_minute": LIMIT,
    }
    first, second = factory.gateway(database, **settings), factory.gateway(database, **settings)
    with running(first, second):
        async with (
            httpx.AsyncClient(base_url=first.url, timeout=30) as one,
            httpx.AsyncClient(base_url=second.url, timeout=30) as other,
        ):
            account = await register(one, "restart")
            await _early_in_a_minute()
            window = int(time.time() // 60)
            before = Counter(
                [
                    (
                        await (one, other)[i % 2].get("/api/v1/insights", headers=account.auth)
                    ).status_code
                    for i in range(BEFORE)
                ]
            )
            assert before == {200: BEFORE}

            own_redis.stop()
            own_redis.start()  # the same port, no data
            restarted = time.monotonic()
            after: Counter[int] = Counter()
            while True:  # rounds of concurrent calls on both, until a round is all 429
                answers = await asyncio.gather(
                    *(
                        client.get("/api/v1/insights", headers=account.auth)
                        for client in (one, other)
                        for _ in range(ROUND)
                    )
                )
                statuses = Counter(answer.status_code for answer in answers)
                after.update(statuses)
                if statuses == {429: 2 * ROUND}:
                    break
                assert set(statuses) <= {200, 429, 503}, statuses
                assert time.monotonic() - restarted < 30, after
                if 503 in statuses:  # Redis reconnecting, or the re-seeding hold
                    await asyncio.sleep(0.1)
            assert int(time.time() // 60) == window, "the test ran past its minute"
    ledger = Ledger(database_url=first.env["DATABASE_URL"], database_path="")
    try:
        events, billable = await ledger.events(account.user_id)
    finally:
        await ledger.close()
    admitted = before[200] + after[200]
    figures.add(
        "redis_restart",
        limit=LIMIT,
        admitted_before_restart=before[200],
        admitted_after_restart=after[200],
        refused_503_while_recovering=after[503],
        ledger_billable=billable,
    )
    assert admitted <= LIMIT, (before, after)
    assert after[200] > 0  # the limiter works again after the restart
    assert events == billable == admitted
