"""`CurrentAccount`: the ways an account endpoint learns who is calling, and its own rate limit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from novo_gateway.kit.clock import FrozenClock
from novo_gateway.kit.config import Settings
from novo_gateway.kit.credentials import KEY_INVALID, KEY_REQUIRED
from tests.accounts.helpers import PASSWORD, register
from tests.conftest import AppClient

StartApp = Callable[..., Any]
WELL_FORMED_UNKNOWN = "nk_" + "0" * 32 + "2WJYRi"  # the right checksum, never stored


async def test_no_credentials_is_401_saying_how_to_pass_a_key(client: AppClient) -> None:
    response = await client.get("/auth/api-keys")
    assert response.status_code == 401
    assert response.json() == {"error": "Unauthorized", "message": KEY_REQUIRED}


@pytest.mark.parametrize(
    "key", ["nk_short", WELL_FORMED_UNKNOWN, "nk_" + "0" * 32 + "2WJYRj", "garbage"]
)
async def test_bad_or_unknown_key_is_401_invalid(client: AppClient, key: str) -> None:
    response = await client.get("/auth/api-keys", headers={"X-API-Key": key})
    assert response.status_code == 401
    assert response.json() == {"error": "Unauthorized", "message": KEY_INVALID}


@pytest.mark.parametrize("where", ["bearer", "header", "query"])
async def test_api_key_is_accepted_in_each_documented_place(client: AppClient, where: str) -> None:
    key = (await register(client))["apiKey"]["key"]
    headers = {"bearer": {"Authorization": f"Bearer {key}"}, "header": {"X-API-Key": key}}
    params = {"api_key": key} if where == "query" else {}
    response = await client.get("/auth/api-keys", headers=headers.get(where, {}), params=params)
    assert response.status_code == 200


async def test_bearer_key_wins_over_x_api_key(client: AppClient) -> None:
    key = (await register(client))["apiKey"]["key"]
    headers = {"Authorization": f"Bearer {WELL_FORMED_UNKNOWN}", "X-API-Key": key}
    assert (await client.get("/auth/api-keys", headers=headers)).status_code == 401


async def test_password_in_the_query_string_is_refused(client: AppClient) -> None:
    key = (await register(client))["apiKey"]["key"]
    for params in (
        {"email": "ada@example.com", "password": PASSWORD},
        {"api_key": key, "password": PASSWORD},
    ):
        response = await client.get("/auth/api-keys", params=params)
        assert response.status_code == 400
        assert "query string" in response.json()["message"]
        assert PASSWORD not in response.text


async def test_email_and_password_in_the_body_still_work_for_old_clients(
    client: AppClient,
) -> None:
    await register(client)
    credentials = {"email": "ada@example.com", "password": PASSWORD}
    listed = await client.request("GET", "/auth/api-keys", json=credentials)
    assert listed.status_code == 200
    created = await client.post("/auth/api-keys", json={**credentials, "keyName": "legacy"})
    assert created.status_code == 201
    assert created.json()["apiKey"]["name"] == "legacy"


async def test_wrong_password_in_the_body_is_401_invalid_credentials(client: AppClient) -> None:
    await register(client)
    response = await client.request(
        "GET", "/auth/api-keys", json={"email": "ada@example.com", "password": "wrong password"}
    )
    assert response.status_code == 401
    assert response.json() == {"error": "Unauthorized", "message": "Invalid credentials"}


async def test_body_password_guesses_count_towards_the_lockout(
    make_settings: Callable[..., Settings], start_app: StartApp, clock: FrozenClock
) -> None:
    client = await start_app(make_settings(login_max_failures=2), clock=clock)
    await register(client)
    guess = {"email": "ada@example.com", "password": "wrong password"}
    for _ in range(2):
        assert (await client.request("GET", "/auth/api-keys", json=guess)).status_code == 401
    right = {"email": "ada@example.com", "password": PASSWORD}
    assert (await client.request("GET", "/auth/api-keys", json=right)).status_code == 429
    assert (await client.post("/auth/login", json=right)).status_code == 429


@pytest.mark.parametrize(
    "body",
    [
        {"email": "ada@example.com"},
        {"email": 1, "password": PASSWORD},
        ["ada@example.com", PASSWORD],
        "not json",
    ],
)
async def test_incomplete_body_credentials_count_as_none(client: AppClient, body: Any) -> None:
    await register(client)
    if isinstance(body, str):
        kwargs: dict[str, Any] = {"content": body, "headers": {"Content-Type": "application/json"}}
    else:
        kwargs = {"json": body}
    response = await client.request("GET", "/auth/api-keys", **kwargs)
    assert response.status_code == 401
    assert response.json()["message"] == KEY_REQUIRED


async def test_account_endpoints_have_their_own_per_minute_limit(
    make_settings: Callable[..., Settings], start_app: StartApp, clock: FrozenClock
) -> None:
    client = await start_app(make_settings(account_rate_limit_per_minute=2), clock=clock)
    auth = {"X-API-Key": (await register(client))["apiKey"]["key"]}
    first = await client.get("/auth/api-keys", headers=auth)
    assert first.headers["X-RateLimit-Limit"] == "2"
    assert first.headers["X-RateLimit-Remaining"] == "1"
    assert (await client.get("/auth/api-keys", headers=auth)).status_code == 200
    refused = await client.get("/auth/api-keys", headers=auth)
    assert refused.status_code == 429
    body = refused.json()
    assert body["error"] == "Rate Limit Exceeded"
    assert body["message"] == "You have exceeded 2 requests per minute. Please slow down."
    assert body["retryAfter"] == int(refused.headers["Retry-After"])
    clock.advance(body["retryAfter"])
    assert (await client.get("/auth/api-keys", headers=auth)).status_code == 200


async def test_using_up_the_metered_limit_leaves_account_endpoints_open(
    make_settings: Callable[..., Settings], start_app: StartApp, clock: FrozenClock
) -> None:
    client = await start_app(make_settings(rate_limit_per_minute=1), clock=clock)
    auth = {"X-API-Key": (await register(client))["apiKey"]["key"]}
    assert (await client.get("/api/v1/insights", headers=auth)).status_code == 200
    assert (await client.get("/api/v1/insights", headers=auth)).status_code == 429
    assert (await client.get("/auth/api-keys", headers=auth)).status_code == 200
