"""KeyCache: no database read for a mistyped or known key, expiry, revocation seen everywhere,
and last-used times written in batches."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from novo_gateway.keys import cache as cache_module
from novo_gateway.keys import tokens
from novo_gateway.keys.cache import UNKNOWN_TTL_SECONDS, KeyCache
from novo_gateway.keys.models import ApiKey
from novo_gateway.kit.clock import FrozenClock
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import session_scope
from novo_gateway.runtime import Runtime
from tests.accounts.helpers import count_statements, register, runtime_of
from tests.conftest import AppClient
from tests.factories import create_api_key, create_user

StartApp = Callable[..., Any]
WELL_FORMED_UNKNOWN = "nk_" + "0" * 32 + "2WJYRi"  # the right checksum, never stored
BAD_CHECKSUM = "nk_" + "0" * 32 + "2WJYRj"  # one character off


async def _key(runtime: Runtime, **options: Any) -> tuple[ApiKey, str]:
    async with session_scope(runtime.sessions) as session:
        user = await create_user(session)
        return await create_api_key(session, user, **options)


def _cache(runtime: Runtime, clock: FrozenClock) -> KeyCache:
    """A cache without its background task, so every statement counted is the test's own."""
    return KeyCache(runtime.sessions, clock, revalidate_ms=500)


async def test_mistyped_key_is_refused_without_a_database_read(
    client: AppClient, clock: FrozenClock
) -> None:
    runtime = runtime_of(client)
    cache = _cache(runtime, clock)
    with count_statements(runtime) as statements:
        for raw in (BAD_CHECKSUM, "nk_short", "", "x" * 10_000, "nk_" + "é" * 32 + "000000"):
            assert await cache.authenticate(raw) is None
    assert statements == []


async def test_mistyped_key_on_an_endpoint_costs_no_key_lookup(client: AppClient) -> None:
    runtime = runtime_of(client)
    with count_statements(runtime) as statements:
        response = await client.get("/auth/api-keys", headers={"X-API-Key": BAD_CHECKSUM})
    assert response.status_code == 401
    assert not [s for s in statements if "api_keys.key_hash" in s]


async def test_known_key_is_served_from_memory(client: AppClient, clock: FrozenClock) -> None:
    runtime = runtime_of(client)
    row, raw = await _key(runtime)
    cache = _cache(runtime, clock)
    with count_statements(runtime) as statements:
        first = await cache.authenticate(raw)
        again = [await cache.authenticate(raw) for _ in range(5)]
    assert first is not None
    assert (first.key_id, first.user_id) == (row.id, row.user_id)
    assert again == [first] * 5
    assert len(statements) == 1


async def test_first_uses_at_once_share_one_database_read(
    client: AppClient, clock: FrozenClock
) -> None:
    runtime = runtime_of(client)
    row, raw = await _key(runtime)
    cache = _cache(runtime, clock)
    with count_statements(runtime) as statements:
        identities = await asyncio.gather(*(cache.authenticate(raw) for _ in range(10)))
    assert {i.key_id for i in identities if i is not None} == {row.id}
    assert len(statements) == 1


async def test_unknown_key_is_remembered_for_a_short_while(
    client: AppClient, clock: FrozenClock
) -> None:
    runtime = runtime_of(client)
    cache = _cache(runtime, clock)
    with count_statements(runtime) as statements:
        assert await cache.authenticate(WELL_FORMED_UNKNOWN) is None
        assert await cache.authenticate(WELL_FORMED_UNKNOWN) is None
        assert len(statements) == 1
        clock.advance(UNKNOWN_TTL_SECONDS + 1)
        assert await cache.authenticate(WELL_FORMED_UNKNOWN) is None
        assert len(statements) == 2


async def test_expired_key_is_refused_even_when_cached(
    client: AppClient, clock: FrozenClock
) -> None:
    runtime = runtime_of(client)
    _row, raw = await _key(runtime, expires_at=clock.now() + timedelta(hours=1))
    cache = _cache(runtime, clock)
    assert await cache.authenticate(raw) is not None
    clock.advance(3600)
    with count_statements(runtime) as statements:
        assert await cache.authenticate(raw) is None
    assert statements == []


async def test_expired_key_is_refused_over_http(
    settings: Settings, start_app: StartApp, clock: FrozenClock
) -> None:
    client = await start_app(settings, clock=clock)
    _row, raw = await _key(runtime_of(client), expires_at=clock.now() + timedelta(days=1))
    assert (await client.get("/auth/api-keys", headers={"X-API-Key": raw})).status_code == 200
    clock.advance(86_400)
    response = await client.get("/auth/api-keys", headers={"X-API-Key": raw})
    assert response.status_code == 401
    assert response.json()["message"] == "Invalid or inactive API key."


async def test_inactive_key_is_refused(client: AppClient, clock: FrozenClock) -> None:
    runtime = runtime_of(client)
    row, raw = await _key(runtime)
    async with session_scope(runtime.sessions) as session:
        (await session.get_one(ApiKey, row.id)).is_active = False
    assert await _cache(runtime, clock).authenticate(raw) is None


async def test_revocation_in_another_instance_is_seen_within_a_second(
    settings: Settings, start_app: StartApp
) -> None:
    revoking = await start_app(settings)
    serving = await start_app(settings)
    created = await register(revoking)
    doomed = await revoking.post(
        "/auth/api-keys", headers={"X-API-Key": created["apiKey"]["key"]}, json={}
    )
    doomed_key = doomed.json()["apiKey"]
    auth = {"X-API-Key": doomed_key["key"]}
    assert (await serving.get("/auth/api-keys", headers=auth)).status_code == 200  # now cached

    revoked = await revoking.delete(
        f"/auth/api-keys/{doomed_key['id']}", headers={"X-API-Key": created["apiKey"]["key"]}
    )
    assert revoked.status_code == 200
    revoked_at = time.monotonic()
    while time.monotonic() - revoked_at < 1.0:
        if (await serving.get("/auth/api-keys", headers=auth)).status_code == 401:
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("the other instance still accepts the key after a second")


async def test_uses_are_not_written_per_request_but_in_one_batch(
    client: AppClient, clock: FrozenClock
) -> None:
    runtime = runtime_of(client)
    first_row, first = await _key(runtime)
    async with session_scope(runtime.sessions) as session:
        user = await create_user(session, email="bob@example.com")
        second_row, second = await create_api_key(session, user)
    cache = _cache(runtime, clock)
    with count_statements(runtime) as statements:
        for raw in (first, second, first, second, first):
            await cache.authenticate(raw)
        assert not [s for s in statements if s.lstrip().startswith("UPDATE")]
        used_at = clock.now()
        assert cache.pending_last_use(first_row.id) == used_at
        await cache.flush_last_used()
    assert len([s for s in statements if s.lstrip().startswith("UPDATE")]) == 1
    async with session_scope(runtime.sessions) as session:
        for key_id in (first_row.id, second_row.id):
            assert (await session.get_one(ApiKey, key_id)).last_used_at == used_at
    assert cache.pending_last_use(first_row.id) is None


async def test_last_use_never_moves_backwards(client: AppClient, clock: FrozenClock) -> None:
    runtime = runtime_of(client)
    row, raw = await _key(runtime)
    later = clock.now() + timedelta(minutes=5)
    async with session_scope(runtime.sessions) as session:
        (await session.get_one(ApiKey, row.id)).last_used_at = later
    cache = _cache(runtime, clock)
    await cache.authenticate(raw)
    await cache.flush_last_used()
    async with session_scope(runtime.sessions) as session:
        assert (await session.get_one(ApiKey, row.id)).last_used_at == later


async def test_pending_uses_are_written_at_stop(client: AppClient, clock: FrozenClock) -> None:
    runtime = runtime_of(client)
    row, raw = await _key(runtime)
    cache = _cache(runtime, clock)
    await cache.start()
    await cache.authenticate(raw)
    await cache.stop()
    async with session_scope(runtime.sessions) as session:
        assert (await session.get_one(ApiKey, row.id)).last_used_at == clock.now()


async def test_revalidation_drops_a_key_revoked_behind_the_caches_back(
    client: AppClient, clock: FrozenClock
) -> None:
    runtime = runtime_of(client)
    row, raw = await _key(runtime)
    cache = _cache(runtime, clock)
    await cache.start()
    try:
        assert await cache.authenticate(raw) is not None
        async with session_scope(runtime.sessions) as session:
            key = await session.get_one(ApiKey, row.id)
            key.is_active = False
            key.changed_at = clock.now()
        await cache.revalidate()
        with count_statements(runtime) as statements:
            assert await cache.authenticate(raw) is None
            assert await cache.authenticate(raw) is None
        assert len([s for s in statements if "api_keys.key_hash =" in s]) == 1
    finally:
        await cache.stop()


def test_the_sample_keys_are_what_their_names_say() -> None:
    assert tokens.is_well_formed(WELL_FORMED_UNKNOWN)
    assert not tokens.is_well_formed(BAD_CHECKSUM)


async def test_many_keys_last_use_is_written_in_a_few_statements(
    client: AppClient, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache_module, "LAST_USED_CHUNK", 2)
    runtime = runtime_of(client)
    keys = []
    async with session_scope(runtime.sessions) as session:
        for i in range(5):
            user = await create_user(session, email=f"user{i}@example.com")
            keys.append(await create_api_key(session, user))
    earlier = clock.now() - timedelta(minutes=5)
    cache = _cache(runtime, clock)
    for _row, raw in keys:
        await cache.authenticate(raw)
    cache._used[keys[0][0].id] = earlier  # an older use: written as is
    with count_statements(runtime) as statements:
        await cache.flush_last_used()
    assert len([s for s in statements if s.lstrip().startswith("UPDATE")]) == 3
    async with session_scope(runtime.sessions) as session:
        written = [(await session.get_one(ApiKey, row.id)).last_used_at for row, _ in keys]
    assert written == [earlier] + [clock.now()] * 4
