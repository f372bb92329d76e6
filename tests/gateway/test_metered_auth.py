"""Key auth on the metered path: the three ways to pass a key, their order, and the 401s."""

from __future__ import annotations

from datetime import timedelta

import pytest

from novo_gateway.keys.tokens import is_well_formed
from novo_gateway.kit.credentials import KEY_INVALID, KEY_REQUIRED
from tests.conftest import AppClient
from tests.gateway.helpers import make_account, runtime_of

# Right shape and checksum, never stored (fixed, so test ids are the same in every run).
WELL_FORMED_UNKNOWN = "nk_" + "0" * 32 + "2WJYRi"


async def test_key_in_bearer_header_is_accepted(client: AppClient) -> None:
    account = await make_account(client)
    response = await client.get("/api/v1/insights", headers=account.auth)
    assert response.status_code == 200


async def test_key_in_x_api_key_header_is_accepted(client: AppClient) -> None:
    account = await make_account(client)
    response = await client.get("/api/v1/insights", headers={"X-API-Key": account.key})
    assert response.status_code == 200


async def test_key_in_query_string_is_accepted(client: AppClient) -> None:
    account = await make_account(client)
    response = await client.get("/api/v1/insights", params={"api_key": account.key})
    assert response.status_code == 200


async def test_bearer_wins_over_x_api_key(client: AppClient) -> None:
    account = await make_account(client)
    headers = {"Authorization": "Bearer nk_wrong", "X-API-Key": account.key}
    response = await client.get("/api/v1/insights", headers=headers)
    assert response.status_code == 401
    assert response.json()["message"] == KEY_INVALID
    headers = {**account.auth, "X-API-Key": "nk_wrong"}
    assert (await client.get("/api/v1/insights", headers=headers)).status_code == 200


async def test_x_api_key_wins_over_query_string(client: AppClient) -> None:
    account = await make_account(client)
    response = await client.get(
        "/api/v1/insights", headers={"X-API-Key": "nk_wrong"}, params={"api_key": account.key}
    )
    assert response.status_code == 401
    response = await client.get(
        "/api/v1/insights", headers={"X-API-Key": account.key}, params={"api_key": "nk_wrong"}
    )
    assert response.status_code == 200


async def test_missing_key_is_401_saying_how_to_pass_one(client: AppClient) -> None:
    response = await client.get("/api/v1/insights")
    assert response.status_code == 401
    assert response.json() == {"error": "Unauthorized", "message": KEY_REQUIRED}


async def test_non_bearer_authorization_counts_as_no_key(client: AppClient) -> None:
    response = await client.get("/api/v1/insights", headers={"Authorization": "Basic YTpi"})
    assert response.status_code == 401
    assert response.json()["message"] == KEY_REQUIRED


@pytest.mark.parametrize("key", ["nk_short", "not a key", WELL_FORMED_UNKNOWN])
async def test_malformed_or_unknown_key_is_401_invalid(client: AppClient, key: str) -> None:
    response = await client.get("/api/v1/insights", headers={"X-API-Key": key})
    assert response.status_code == 401
    assert response.json() == {"error": "Unauthorized", "message": KEY_INVALID}


async def test_revoked_key_is_401_invalid(client: AppClient) -> None:
    account = await make_account(client, active=False)
    response = await client.get("/api/v1/insights", headers=account.auth)
    assert response.status_code == 401
    assert response.json() == {"error": "Unauthorized", "message": KEY_INVALID}


async def test_expired_key_is_401_invalid(client: AppClient) -> None:
    now = runtime_of(client).clock.now()
    account = await make_account(client, expires_at=now - timedelta(seconds=1))
    response = await client.get("/api/v1/insights", headers=account.auth)
    assert response.status_code == 401
    assert response.json()["message"] == KEY_INVALID


async def test_api_health_is_free_and_needs_no_key(client: AppClient) -> None:
    response = await client.get("/api/v1/health")
    assert response.status_code == 200
    assert "x-ratelimit-limit" not in response.headers


async def test_paths_outside_the_api_are_not_metered(client: AppClient) -> None:
    response = await client.get("/health-of-nothing")
    assert response.status_code == 404
    assert "x-ratelimit-limit" not in response.headers


def test_the_unknown_key_used_here_has_a_valid_checksum() -> None:
    assert is_well_formed(WELL_FORMED_UNKNOWN)
