"""POST /auth/login and /auth/logout: session tokens, one 401 for every bad login, throttling."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from novo_gateway.accounts.models import User
from novo_gateway.kit.clock import FrozenClock
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import session_scope
from tests.accounts.helpers import PASSWORD, login, register, runtime_of
from tests.conftest import AppClient
from tests.factories import PASSWORD as FACTORY_PASSWORD
from tests.factories import create_user

INVALID = {"error": "Unauthorized", "message": "Invalid credentials"}

StartApp = Callable[..., Any]


async def test_login_returns_user_keys_and_a_session(client: AppClient) -> None:
    created = await register(client)
    body = await login(client)
    assert body["message"] == "Login successful"
    assert body["user"] == {
        "id": created["user"]["id"],
        "email": "ada@example.com",
        "name": "Ada",
        "subscriptionStatus": "pending",
    }
    [key] = body["apiKeys"]
    assert {"id", "prefix", "name", "isActive", "lastUsed"} <= key.keys()
    assert key["id"] == created["apiKey"]["id"]
    assert key["prefix"] == created["apiKey"]["key"][:11]
    assert key["isActive"] is True
    assert "key" not in key
    assert body["session"]["token"].startswith("ns_")
    assert body["session"]["expiresAt"]


async def test_login_email_is_trimmed_and_case_insensitive(client: AppClient) -> None:
    await register(client)
    await login(client, email="  ADA@example.COM ")


async def test_wrong_password_and_unknown_email_give_the_same_401(client: AppClient) -> None:
    await register(client)
    wrong = await client.post(
        "/auth/login", json={"email": "ada@example.com", "password": "not the password"}
    )
    unknown = await client.post(
        "/auth/login", json={"email": "nobody@example.com", "password": "not the password"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == INVALID


async def test_login_rejects_missing_fields_and_extra_fields(client: AppClient) -> None:
    for body in (
        {"email": "ada@example.com"},
        {"password": PASSWORD},
        {"email": "ada@example.com", "password": PASSWORD, "remember": True},
        {"email": "ada@example.com", "password": ""},
    ):
        response = await client.post("/auth/login", json=body)
        assert response.status_code == 400, body
        assert response.json()["error"] == "Bad Request"


async def test_session_token_lists_the_accounts_keys(client: AppClient) -> None:
    created = await register(client)
    token = (await login(client))["session"]["token"]
    response = await client.get("/auth/api-keys", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert [k["id"] for k in response.json()["apiKeys"]] == [created["apiKey"]["id"]]


async def test_session_token_expires_after_its_ttl(
    settings: Settings, start_app: StartApp, clock: FrozenClock
) -> None:
    client = await start_app(settings, clock=clock)
    await register(client)
    token = (await login(client))["session"]["token"]
    auth = {"Authorization": f"Bearer {token}"}
    clock.advance(settings.session_ttl_seconds - 1)
    assert (await client.get("/auth/api-keys", headers=auth)).status_code == 200
    clock.advance(1)
    response = await client.get("/auth/api-keys", headers=auth)
    assert response.status_code == 401
    assert response.json()["message"] == "Invalid or expired session token. Log in again."


async def test_unknown_session_token_is_401(client: AppClient) -> None:
    response = await client.get("/auth/api-keys", headers={"Authorization": "Bearer ns_forged"})
    assert response.status_code == 401


async def test_logout_revokes_the_session_token(client: AppClient) -> None:
    await register(client)
    auth = {"Authorization": f"Bearer {(await login(client))['session']['token']}"}
    response = await client.post("/auth/logout", headers=auth)
    assert response.status_code == 200
    assert response.json() == {"message": "Logged out"}
    assert (await client.get("/auth/api-keys", headers=auth)).status_code == 401
    assert (await client.post("/auth/logout", headers=auth)).status_code == 401


async def test_logout_needs_a_session_token_not_an_api_key(client: AppClient) -> None:
    created = await register(client)
    for headers in ({}, {"Authorization": f"Bearer {created['apiKey']['key']}"}):
        response = await client.post("/auth/logout", headers=headers)
        assert response.status_code == 401


async def test_login_upgrades_a_hash_made_with_older_parameters(client: AppClient) -> None:
    runtime = runtime_of(client)
    async with session_scope(runtime.sessions) as session:
        user = await create_user(session, email="old@example.com")
    assert "m=19456" not in user.password_hash
    await login(client, email="old@example.com", password=FACTORY_PASSWORD)
    async with session_scope(runtime.sessions) as session:
        upgraded = await session.get_one(User, user.id)
    assert upgraded.password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    await login(client, email="old@example.com", password=FACTORY_PASSWORD)


async def _fail(client: AppClient, email: str, times: int) -> None:
    for _ in range(times):
        response = await client.post("/auth/login", json={"email": email, "password": "wrong!!"})
        assert response.status_code == 401


async def test_repeated_failures_lock_the_email_even_for_the_right_password(
    make_settings: Callable[..., Settings], start_app: StartApp, clock: FrozenClock
) -> None:
    client = await start_app(
        make_settings(login_max_failures=3, login_lockout_seconds=60), clock=clock
    )
    await register(client)
    await _fail(client, "ada@example.com", 3)
    response = await client.post(
        "/auth/login", json={"email": "ada@example.com", "password": PASSWORD}
    )
    assert response.status_code == 429
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    body = response.json()
    assert body["error"] == "Too Many Requests"
    assert body["retryAfter"] == retry_after
    clock.advance(retry_after)
    await login(client)


async def test_unknown_email_is_locked_out_the_same_way(
    make_settings: Callable[..., Settings], start_app: StartApp, clock: FrozenClock
) -> None:
    client = await start_app(make_settings(login_max_failures=2), clock=clock)
    await _fail(client, "nobody@example.com", 2)
    response = await client.post(
        "/auth/login", json={"email": "nobody@example.com", "password": "wrong!!"}
    )
    assert response.status_code == 429
    assert "Retry-After" in response.headers


async def test_lockout_is_per_email(
    make_settings: Callable[..., Settings], start_app: StartApp, clock: FrozenClock
) -> None:
    client = await start_app(make_settings(login_max_failures=2), clock=clock)
    await register(client)
    await _fail(client, "mallory@example.com", 2)
    locked = await client.post(
        "/auth/login", json={"email": "mallory@example.com", "password": "wrong!!"}
    )
    assert locked.status_code == 429
    await login(client)


async def test_a_successful_login_clears_the_failures(
    make_settings: Callable[..., Settings], start_app: StartApp, clock: FrozenClock
) -> None:
    client = await start_app(make_settings(login_max_failures=3), clock=clock)
    await register(client)
    await _fail(client, "ada@example.com", 2)
    await login(client)
    await _fail(client, "ada@example.com", 2)
    await login(client)


async def test_lockout_is_shared_by_instances_through_redis(
    make_settings: Callable[..., Settings],
    start_app: StartApp,
    clock: FrozenClock,
    redis_url: str,
) -> None:
    settings = make_settings(
        login_max_failures=2,
        redis_url=redis_url,
        rate_limit_key_prefix=f"test-{uuid.uuid4().hex}",
    )
    first = await start_app(settings, clock=clock)
    second = await start_app(settings, clock=clock)
    await register(first)
    await _fail(first, "ada@example.com", 2)
    response = await second.post(
        "/auth/login", json={"email": "ada@example.com", "password": PASSWORD}
    )
    assert response.status_code == 429


async def test_sign_in_requests_are_limited_per_client_address(
    make_settings: Callable[..., Settings], start_app: StartApp, clock: FrozenClock
) -> None:
    client = await start_app(make_settings(account_rate_limit_per_minute=3), clock=clock)
    await register(client)
    await login(client)
    await _fail(client, "someone@example.com", 1)
    refused = await client.post(
        "/auth/login", json={"email": "ada@example.com", "password": PASSWORD}
    )
    assert refused.status_code == 429
    assert refused.json()["error"] == "Rate Limit Exceeded"
    assert refused.json()["retryAfter"] == int(refused.headers["Retry-After"])
    clock.advance(refused.json()["retryAfter"])
    await login(client)
