"""API keys from the dashboard: created and shown once, revoked after confirming, CSRF enforced."""

from __future__ import annotations

import re

import pytest

from novo_gateway.accounts.models import User
from novo_gateway.keys.service import MAX_ACTIVE_KEYS
from novo_gateway.kit.db import session_scope
from tests.conftest import AppClient
from tests.dashboard.helpers import customer, dashboard_csrf, runtime_of, sign_in
from tests.factories import create_api_key

NEW_KEY = re.compile(r'id="new-key-value"[^>]*value="(nk_[0-9A-Za-z]+)"')


async def create(client: AppClient, name: str) -> str:
    response = await client.post(
        "/dashboard/keys", data={"csrf": await dashboard_csrf(client), "name": name}
    )
    assert response.status_code == 201
    found = NEW_KEY.search(response.text)
    assert found is not None
    return found.group(1)


def key_id_of(html: str, name: str) -> int:
    found = re.search(rf'<tr data-key-id="(\d+)">\s*<td class="key-name"[^>]*>{name}</td>', html)
    assert found is not None, name
    return int(found.group(1))


async def test_a_new_key_is_shown_once_and_calls_the_api(client: AppClient) -> None:
    await customer(client)
    await sign_in(client)

    key = await create(client, "CI runner")

    assert (await client.get("/api/v1/insights", headers={"X-API-Key": key})).status_code == 200
    later = (await client.get("/dashboard")).text
    assert key not in later
    assert "CI runner" in later and key[:11] in later  # listed by its prefix only


async def test_a_blank_name_gives_the_default_name(client: AppClient) -> None:
    await customer(client)
    await sign_in(client)

    await create(client, "   ")

    assert re.search(
        r"<td class=\"key-name\"[^>]*>API Key</td>", (await client.get("/dashboard")).text
    )


async def test_a_revoked_key_is_refused_by_the_api(client: AppClient) -> None:
    await customer(client)
    await sign_in(client)
    key = await create(client, "temporary")
    key_id = key_id_of((await client.get("/dashboard")).text, "temporary")

    response = await client.post(
        f"/dashboard/keys/{key_id}/revoke", data={"csrf": await dashboard_csrf(client)}
    )

    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard?notice=key-revoked#keys"
    assert (await client.get("/api/v1/insights", headers={"X-API-Key": key})).status_code == 401
    assert "The key is revoked" in (await client.get("/dashboard?notice=key-revoked")).text


async def test_another_customers_key_cannot_be_revoked(client: AppClient) -> None:
    _bob, bob_key = await customer(client, email="bob@example.com", name="Bob")
    await customer(client)
    await sign_in(client)  # as Ada

    response = await client.post(
        "/dashboard/keys/1/revoke", data={"csrf": await dashboard_csrf(client)}
    )

    assert response.status_code == 404
    assert "API key not found." in response.text
    assert "Bob" not in response.text and "bob@example.com" not in response.text
    assert (await client.get("/api/v1/insights", headers={"X-API-Key": bob_key})).status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard/keys",
        "/dashboard/keys/1/revoke",
        "/dashboard/subscription/cancel",
        "/dashboard/subscription/resume",
        "/dashboard/portal",
    ],
)
async def test_a_form_without_its_csrf_token_is_refused(client: AppClient, path: str) -> None:
    _user, key = await customer(client)
    await sign_in(client)

    missing = await client.post(path, data={"name": "x"})
    forged = await client.post(path, data={"csrf": "0" * 64, "name": "x"})

    assert missing.status_code == forged.status_code == 403
    assert forged.json()["error"] == "Forbidden"
    assert (await client.get("/api/v1/insights", headers={"X-API-Key": key})).status_code == 200
    assert (await client.get("/dashboard")).text.count("<tr data-key-id=") == 1


async def test_a_form_from_another_site_is_refused_even_with_the_token(client: AppClient) -> None:
    await customer(client)
    await sign_in(client)

    response = await client.post(
        "/dashboard/keys",
        data={"csrf": await dashboard_csrf(client), "name": "x"},
        headers={"Origin": "https://evil.example"},
    )

    assert response.status_code == 403


async def test_a_form_sent_after_the_session_ended_asks_to_sign_in_again(
    client: AppClient,
) -> None:
    response = await client.post("/dashboard/keys", data={"csrf": "x", "name": "x"})

    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard/login?notice=expired"


@pytest.mark.parametrize("key_id", ["0", "abc", str(2**63)])
async def test_a_bad_key_id_is_a_400_not_an_error(client: AppClient, key_id: str) -> None:
    await customer(client)
    await sign_in(client)

    response = await client.post(
        f"/dashboard/keys/{key_id}/revoke", data={"csrf": await dashboard_csrf(client)}
    )

    assert response.status_code == 400


async def test_a_refused_key_is_explained_on_the_page_with_its_status(client: AppClient) -> None:
    user_id, _key = await customer(client)
    async with session_scope(runtime_of(client).sessions) as session:
        user = await session.get_one(User, user_id)
        for _ in range(MAX_ACTIVE_KEYS - 1):
            await create_api_key(session, user)
    await sign_in(client)

    response = await client.post(
        "/dashboard/keys", data={"csrf": await dashboard_csrf(client), "name": "one too many"}
    )

    assert response.status_code == 409
    assert f"already has {MAX_ACTIVE_KEYS} active API keys" in response.text
    assert 'role="alert"' in response.text and 'id="new-key-value"' not in response.text
    assert "one too many" not in (await client.get("/dashboard")).text
