"""/auth/api-keys: create, list and revoke the caller's keys."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from novo_gateway.accounts.models import User
from novo_gateway.keys import tokens
from novo_gateway.keys.service import MAX_ACTIVE_KEYS
from novo_gateway.kit.clock import FrozenClock
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import session_scope
from tests.accounts.helpers import register, runtime_of
from tests.conftest import AppClient
from tests.factories import create_api_key

StartApp = Callable[..., Any]
NOTE = "Save this API key securely. It will not be shown again."


async def _account(client: AppClient, email: str = "ada@example.com") -> dict[str, str]:
    """Register an account; its auth headers (its first key)."""
    return {"X-API-Key": (await register(client, email=email))["apiKey"]["key"]}


def _iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


async def test_create_returns_the_new_key_once(client: AppClient) -> None:
    auth = await _account(client)
    response = await client.post("/auth/api-keys", headers=auth, json={"name": "ci"})
    assert response.status_code == 201
    body = response.json()
    assert body["message"] == "API key created successfully"
    api_key = body["apiKey"]
    assert {"id", "key", "name", "note", "expiresAt"} <= api_key.keys()
    assert api_key["name"] == "ci"
    assert api_key["note"] == NOTE
    assert api_key["expiresAt"] is None
    assert tokens.is_well_formed(api_key["key"])
    new_auth = {"X-API-Key": api_key["key"]}
    assert (await client.get("/auth/api-keys", headers=new_auth)).status_code == 200


@pytest.mark.parametrize(
    ("body", "name"),
    [
        (None, "API Key"),
        ({}, "API Key"),
        ({"keyName": "from the original"}, "from the original"),
        ({"name": "  spaced  "}, "spaced"),
        ({"name": "wins", "keyName": "loses"}, "wins"),
        ({"name": "   "}, "API Key"),
    ],
)
async def test_create_names_the_key(
    client: AppClient, body: dict[str, Any] | None, name: str
) -> None:
    auth = await _account(client)
    response = await client.post("/auth/api-keys", headers=auth, json=body)
    assert response.status_code == 201
    assert response.json()["apiKey"]["name"] == name


async def test_create_with_an_expiry_date(client: AppClient) -> None:
    auth = await _account(client)
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
    response = await client.post("/auth/api-keys", headers=auth, json={"expiresAt": _iso(expires)})
    assert response.status_code == 201
    assert datetime.fromisoformat(response.json()["apiKey"]["expiresAt"]) == expires


async def test_create_with_a_lifetime_in_days(
    settings: Settings, start_app: StartApp, clock: FrozenClock
) -> None:
    client = await start_app(settings, clock=clock)
    auth = await _account(client)
    response = await client.post("/auth/api-keys", headers=auth, json={"expiresInDays": 7})
    expires_at = datetime.fromisoformat(response.json()["apiKey"]["expiresAt"])
    assert expires_at == clock.now() + timedelta(days=7)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "n" * 101}, "name"),
        ({"keyName": 5}, "keyName"),
        ({"expiresAt": "2020-01-01T00:00:00Z"}, "expiresAt"),
        ({"expiresAt": "2999-01-01T00:00:00"}, "expiresAt"),
        ({"expiresAt": "next tuesday"}, "expiresAt"),
        ({"expiresInDays": 0}, "expiresInDays"),
        ({"expiresInDays": 100000}, "expiresInDays"),
        ({"expiresInDays": "7"}, "expiresInDays"),
        ({"expiresInDays": 7, "expiresAt": "2999-01-01T00:00:00Z"}, "expiresAt"),
        ({"userId": 2}, "userId"),
    ],
)
async def test_create_rejects_bad_input_naming_the_field(
    client: AppClient, body: dict[str, Any], field: str
) -> None:
    auth = await _account(client)
    response = await client.post("/auth/api-keys", headers=auth, json=body)
    assert response.status_code == 400
    assert response.json()["error"] == "Bad Request"
    assert field in response.json()["message"]


async def test_create_is_refused_past_the_active_key_cap(client: AppClient) -> None:
    created = await register(client)
    auth = {"X-API-Key": created["apiKey"]["key"]}
    runtime = runtime_of(client)
    async with session_scope(runtime.sessions) as session:
        user = await session.get_one(User, created["user"]["id"])
        for _ in range(MAX_ACTIVE_KEYS - 1):
            await create_api_key(session, user)
    refused = await client.post("/auth/api-keys", headers=auth, json={})
    assert refused.status_code == 409
    assert f"{MAX_ACTIVE_KEYS} active API keys" in refused.json()["message"]
    listed = (await client.get("/auth/api-keys", headers=auth)).json()["apiKeys"]
    spare = next(k for k in listed if k["id"] != created["apiKey"]["id"])
    assert (await client.delete(f"/auth/api-keys/{spare['id']}", headers=auth)).status_code == 200
    assert (await client.post("/auth/api-keys", headers=auth, json={})).status_code == 201


async def test_concurrent_creations_never_pass_the_active_key_cap(client: AppClient) -> None:
    created = await register(client)
    auth = {"X-API-Key": created["apiKey"]["key"]}
    async with session_scope(runtime_of(client).sessions) as session:
        user = await session.get_one(User, created["user"]["id"])
        for _ in range(MAX_ACTIVE_KEYS - 3):
            await create_api_key(session, user)
    answers = await asyncio.gather(
        *(client.post("/auth/api-keys", headers=auth, json={}) for _ in range(12))
    )
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201, 201] + [409] * 10, statuses
    listed = (await client.get("/auth/api-keys", headers=auth)).json()["apiKeys"]
    assert sum(1 for k in listed if k["isActive"]) == MAX_ACTIVE_KEYS


async def test_list_shows_every_key_without_the_key_itself(client: AppClient) -> None:
    created = await register(client)
    auth = {"X-API-Key": created["apiKey"]["key"]}
    second = (await client.post("/auth/api-keys", headers=auth, json={"name": "two"})).json()
    await client.delete(f"/auth/api-keys/{second['apiKey']['id']}", headers=auth)
    response = await client.get("/auth/api-keys", headers=auth)
    assert response.status_code == 200
    first, revoked = response.json()["apiKeys"]
    assert set(first) == {
        "id",
        "prefix",
        "name",
        "isActive",
        "lastUsed",
        "createdAt",
        "expiresAt",
        "revokedAt",
    }
    assert (first["id"], first["name"], first["isActive"]) == (
        created["apiKey"]["id"],
        "Default",
        True,
    )
    assert first["prefix"] == created["apiKey"]["key"][: tokens.DISPLAY_PREFIX_LEN]
    assert first["lastUsed"] is not None  # this very request, noted in memory
    assert (revoked["name"], revoked["isActive"]) == ("two", False)
    assert revoked["revokedAt"] is not None


async def test_revoked_key_is_refused(client: AppClient) -> None:
    created = await register(client)
    auth = {"X-API-Key": created["apiKey"]["key"]}
    second = (await client.post("/auth/api-keys", headers=auth, json={})).json()["apiKey"]
    response = await client.delete(f"/auth/api-keys/{second['id']}", headers=auth)
    assert response.status_code == 200
    assert response.json() == {"message": "API key revoked successfully"}
    for path in ("/auth/api-keys", "/api/v1/insights"):
        refused = await client.get(path, headers={"X-API-Key": second["key"]})
        assert refused.status_code == 401
        assert refused.json()["message"] == "Invalid or inactive API key."


async def test_a_key_can_revoke_itself_and_revoking_again_is_harmless(client: AppClient) -> None:
    created = await register(client)
    key_id = created["apiKey"]["id"]
    auth = {"X-API-Key": created["apiKey"]["key"]}
    assert (await client.delete(f"/auth/api-keys/{key_id}", headers=auth)).status_code == 200
    assert (await client.get("/auth/api-keys", headers=auth)).status_code == 401
    other = await client.request(
        "DELETE",
        f"/auth/api-keys/{key_id}",
        json={"email": "ada@example.com", "password": "correct horse battery staple"},
    )
    assert other.status_code == 200


async def test_another_accounts_key_is_not_found_and_not_listed(client: AppClient) -> None:
    ada = await register(client, email="ada@example.com")
    bob = await register(client, email="bob@example.com")
    bob_auth = {"X-API-Key": bob["apiKey"]["key"]}
    theirs = await client.delete(f"/auth/api-keys/{ada['apiKey']['id']}", headers=bob_auth)
    missing = await client.delete("/auth/api-keys/999999", headers=bob_auth)
    assert theirs.status_code == missing.status_code == 404
    assert (
        theirs.json() == missing.json() == {"error": "Not Found", "message": "API key not found."}
    )
    listed = (await client.get("/auth/api-keys", headers=bob_auth)).json()["apiKeys"]
    assert [k["id"] for k in listed] == [bob["apiKey"]["id"]]
    ada_auth = {"X-API-Key": ada["apiKey"]["key"]}
    assert (await client.get("/auth/api-keys", headers=ada_auth)).status_code == 200


@pytest.mark.parametrize("key_id", ["abc", "1.5", "0", "-1", "99999999999999999999999"])
async def test_revoke_with_a_bad_id_is_400_naming_it(client: AppClient, key_id: str) -> None:
    auth = await _account(client)
    response = await client.delete(f"/auth/api-keys/{key_id}", headers=auth)
    assert response.status_code == 400
    assert response.json()["error"] == "Bad Request"
    assert "'id'" in response.json()["message"]


async def test_account_endpoints_need_credentials(client: AppClient) -> None:
    for method, path in (
        ("POST", "/auth/api-keys"),
        ("GET", "/auth/api-keys"),
        ("DELETE", "/auth/api-keys/1"),
    ):
        response = await client.request(method, path)
        assert response.status_code == 401, (method, path)
