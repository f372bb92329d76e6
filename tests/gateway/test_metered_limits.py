"""Rate limits on the metered path: headers, 429s, exactness in one and two processes, proxies."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from novo_gateway.kit.clock import FrozenClock
from novo_gateway.kit.config import Settings
from tests.conftest import AppClient
from tests.gateway.helpers import ledger, make_account

DOWN_REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there: Redis is "down"
LIMIT_HEADERS = (
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
)

Start = Callable[..., Any]


async def test_metered_response_carries_both_rate_limit_header_families(
    settings: Settings, start_app: Start, clock: FrozenClock
) -> None:
    client: AppClient = await start_app(settings, clock=clock)
    account = await make_account(client)
    first = await client.get("/api/v1/insights", headers=account.auth)
    second = await client.get("/api/v1/insights", headers=account.auth)
    assert all(name in first.headers for name in LIMIT_HEADERS)
    assert first.headers["x-ratelimit-limit"] == first.headers["ratelimit-limit"] == "100"
    assert first.headers["x-ratelimit-remaining"] == "99"
    assert second.headers["ratelimit-remaining"] == "98"
    reset_in = int(first.headers["ratelimit-reset"])
    assert 1 <= reset_in <= 60
    assert int(first.headers["x-ratelimit-reset"]) == pytest.approx(clock.time() + reset_in, abs=1)


async def test_unauthenticated_refusal_carries_the_per_ip_limit_headers(client: AppClient) -> None:
    response = await client.get("/api/v1/insights")
    assert response.status_code == 401
    assert response.headers["x-ratelimit-limit"] == "1000"


async def test_call_over_the_account_limit_is_429_with_retry_after_and_not_recorded(
    make_settings: Callable[..., Settings], start_app: Start, clock: FrozenClock
) -> None:
    client: AppClient = await start_app(make_settings(rate_limit_per_minute=2), clock=clock)
    account = await make_account(client)
    for _ in range(2):
        assert (await client.get("/api/v1/insights", headers=account.auth)).status_code == 200
    refused = await client.get("/api/v1/insights", headers=account.auth)
    assert refused.status_code == 429
    retry_after = int(refused.headers["retry-after"])
    assert refused.json() == {
        "error": "Rate Limit Exceeded",
        "message": "You have exceeded 2 requests per minute. Please slow down.",
        "retryAfter": retry_after,
    }
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert refused.headers["ratelimit-reset"] == str(retry_after)
    assert len(await ledger(client)) == 2
    clock.advance(retry_after)
    assert (await client.get("/api/v1/insights", headers=account.auth)).status_code == 200


async def test_limit_is_exact_under_concurrency_in_one_process(
    make_settings: Callable[..., Settings], start_app: Start
) -> None:
    client: AppClient = await start_app(make_settings(rate_limit_per_minute=30))
    account = await make_account(client)
    calls = [client.get("/api/v1/insights", headers=account.auth) for _ in range(30 + 50)]
    statuses = [r.status_code for r in await asyncio.gather(*calls)]
    assert statuses.count(200) == 30
    assert statuses.count(429) == 50
    assert len(await ledger(client)) == 30


async def test_limit_is_exact_under_concurrency_across_two_apps_sharing_redis(
    make_settings: Callable[..., Settings], start_app: Start, redis_url: str
) -> None:
    shared = make_settings(
        rate_limit_per_minute=30,
        redis_url=redis_url,
        rate_limit_key_prefix=f"test-{uuid.uuid4().hex}",
    )
    first: AppClient = await start_app(shared)
    second: AppClient = await start_app(shared)
    account = await make_account(first)
    calls = [
        (first if i % 2 else second).get("/api/v1/insights", headers=account.auth)
        for i in range(30 + 50)
    ]
    statuses = [r.status_code for r in await asyncio.gather(*calls)]
    assert statuses.count(200) == 30
    assert statuses.count(429) == 50


async def test_per_ip_limit_refuses_with_the_global_limit_in_the_message(
    make_settings: Callable[..., Settings], start_app: Start
) -> None:
    settings = make_settings(rate_limit_per_minute=2, global_rate_limit_multiplier=2)
    client: AppClient = await start_app(settings)
    first, second = await make_account(client), await make_account(client, "grace@example.com")
    for account in (first, first, second, second):
        assert (await client.get("/api/v1/insights", headers=account.auth)).status_code == 200
    third = await make_account(client, "linus@example.com")
    refused = await client.get("/api/v1/insights", headers=third.auth)
    assert refused.status_code == 429
    assert refused.json()["message"] == "You have exceeded 4 requests per minute. Please slow down."
    assert refused.headers["x-ratelimit-limit"] == "4"


async def test_forwarded_for_is_honoured_only_from_a_trusted_proxy(
    make_settings: Callable[..., Settings], start_app: Start
) -> None:
    # The test client's peer address is 203.0.113.7.
    untrusted: AppClient = await start_app(make_settings(trusted_proxies=["10.0.0.0/8"]))
    trusted: AppClient = await start_app(make_settings(trusted_proxies=["203.0.113.0/24"]))

    async def remaining(client: AppClient, forwarded_for: str) -> str:
        response = await client.get("/api/v1/insights", headers={"X-Forwarded-For": forwarded_for})
        return response.headers["x-ratelimit-remaining"]

    assert await remaining(untrusted, "198.51.100.1") == "999"
    assert await remaining(untrusted, "198.51.100.2") == "998"  # same peer, same bucket
    assert await remaining(trusted, "198.51.100.1") == "999"
    assert await remaining(trusted, "198.51.100.2") == "999"  # each client its own bucket
    assert await remaining(trusted, "198.51.100.1") == "998"


async def test_redis_down_fails_closed_with_503_by_default(
    make_settings: Callable[..., Settings], start_app: Start
) -> None:
    client: AppClient = await start_app(make_settings(redis_url=DOWN_REDIS_URL))
    account = await make_account(client)
    response = await client.get("/api/v1/insights", headers=account.auth)
    assert response.status_code == 503
    assert response.json()["error"] == "Service Unavailable"
    assert await ledger(client) == []


async def test_redis_down_admits_calls_when_failing_open(
    make_settings: Callable[..., Settings], start_app: Start
) -> None:
    settings = make_settings(redis_url=DOWN_REDIS_URL, rate_limit_fail_open=True)
    client: AppClient = await start_app(settings)
    account = await make_account(client)
    response = await client.get("/api/v1/insights", headers=account.auth)
    assert response.status_code == 200
    assert len(await ledger(client)) == 1
