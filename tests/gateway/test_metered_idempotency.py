"""A call retried with the same Idempotency-Key is billed once per account and 24 hours."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import pytest

from novo_gateway.kit.clock import FrozenClock
from novo_gateway.kit.config import Settings
from novo_gateway.openapi import IDEMPOTENCY_KEY
from tests.conftest import AppClient
from tests.gateway.helpers import Account, ledger, make_account


def with_key(account: Account, key: str | bytes) -> dict[str, str | bytes]:
    return {**account.auth, "Idempotency-Key": key}


@pytest.fixture
async def client_at(
    settings: Settings, start_app: Callable[..., Any], clock: FrozenClock
) -> AppClient:
    client: AppClient = await start_app(settings, clock=clock)
    return client


async def test_retry_with_the_same_key_is_recorded_but_billed_once(client_at: AppClient) -> None:
    account = await make_account(client_at)
    for _ in range(3):
        response = await client_at.get("/api/v1/insights", headers=with_key(account, "order-7"))
        assert response.status_code == 200
    events = await ledger(client_at)
    assert [e.billable for e in events] == [True, False, False]
    assert {e.idempotency_key for e in events} == {"order-7"}


async def test_concurrent_retries_with_the_same_key_are_billed_once(client_at: AppClient) -> None:
    account = await make_account(client_at)
    calls = [client_at.get("/api/v1/insights", headers=with_key(account, "k")) for _ in range(20)]
    assert {r.status_code for r in await asyncio.gather(*calls)} == {200}
    events = await ledger(client_at)
    assert len(events) == 20
    assert sum(e.billable for e in events) == 1


async def test_same_key_bills_again_after_24_hours(
    client_at: AppClient, clock: FrozenClock
) -> None:
    account = await make_account(client_at)
    await client_at.get("/api/v1/insights", headers=with_key(account, "k"))
    clock.advance(24 * 3600 - 1)
    await client_at.get("/api/v1/insights", headers=with_key(account, "k"))
    clock.advance(1)
    await client_at.get("/api/v1/insights", headers=with_key(account, "k"))
    assert [e.billable for e in await ledger(client_at)] == [True, False, True]


async def test_different_keys_are_each_billed(client_at: AppClient) -> None:
    account = await make_account(client_at)
    for key in ("a", "b"):
        await client_at.get("/api/v1/insights", headers=with_key(account, key))
    assert [e.billable for e in await ledger(client_at)] == [True, True]


@pytest.mark.parametrize("bad", ["x" * 256, "", "tab\there", b"caf\xe9", "\x7f"])
async def test_bad_idempotency_key_is_400_naming_the_header_and_not_recorded(
    client_at: AppClient, bad: str | bytes
) -> None:
    account = await make_account(client_at)
    response = await client_at.get("/api/v1/insights", headers=with_key(account, bad))
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "Bad Request"
    assert "Idempotency-Key" in body["message"]
    assert await ledger(client_at) == []


@pytest.mark.parametrize("key", ['""', '"', "a b", "~!#", "x" * 255])
async def test_every_key_the_openapi_pattern_allows_is_accepted(
    client_at: AppClient, key: str
) -> None:
    pattern = IDEMPOTENCY_KEY["schema"]["pattern"]
    assert re.fullmatch(pattern, key)
    account = await make_account(client_at)
    response = await client_at.get("/api/v1/insights", headers=with_key(account, key))
    assert response.status_code == 200


async def test_idempotency_key_of_255_characters_is_accepted(client_at: AppClient) -> None:
    account = await make_account(client_at)
    response = await client_at.get("/api/v1/insights", headers=with_key(account, "x" * 255))
    assert response.status_code == 200
