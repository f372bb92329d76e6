"""The dashboard's account forms: change the password, sign out everywhere, reset by email."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from novo_gateway.dashboard.security import SESSION_COOKIE
from novo_gateway.kit.config import Settings
from tests.accounts.helpers import login
from tests.accounts.smtp import Inbox, reset_settings, smtp_server
from tests.conftest import AppClient
from tests.dashboard.helpers import csrf_of, customer, dashboard_csrf, sign_in
from tests.factories import PASSWORD

NEW_PASSWORD = "a brand new passphrase"


async def _api_session(client: AppClient, password: str = PASSWORD) -> dict[str, str]:
    token = (await login(client, password=password))["session"]["token"]
    return {"Authorization": f"Bearer {token}"}


async def _live(client: AppClient, auth: dict[str, str]) -> bool:
    return (await client.get("/auth/api-keys", headers=auth)).status_code == 200


async def test_the_dashboard_changes_the_password_and_signs_out_other_devices(
    client: AppClient,
) -> None:
    await customer(client)
    elsewhere = await _api_session(client)
    await sign_in(client)

    response = await client.post(
        "/dashboard/password",
        data={
            "csrf": await dashboard_csrf(client),
            "current_password": PASSWORD,
            "new_password": NEW_PASSWORD,
        },
    )

    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard?notice=password-changed#account"
    page = await client.get("/dashboard?notice=password-changed")
    assert "every other device is signed out" in page.text
    assert not await _live(client, elsewhere)
    await login(client, password=NEW_PASSWORD)


async def test_a_wrong_current_password_is_shown_on_the_page(client: AppClient) -> None:
    await customer(client)
    await sign_in(client)

    response = await client.post(
        "/dashboard/password",
        data={
            "csrf": await dashboard_csrf(client),
            "current_password": "not it",
            "new_password": NEW_PASSWORD,
        },
    )

    assert response.status_code == 401
    assert "Invalid credentials" in response.text
    await login(client, password=PASSWORD)  # unchanged


async def test_sign_out_everywhere_ends_the_dashboard_and_api_sessions(client: AppClient) -> None:
    await customer(client)
    api = await _api_session(client)
    await sign_in(client)

    response = await client.post(
        "/dashboard/logout-all", data={"csrf": await dashboard_csrf(client)}
    )

    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard/login?notice=signed-out-everywhere"
    assert f'{SESSION_COOKIE}=""' in response.headers["set-cookie"]
    assert not await _live(client, api)


async def test_the_account_forms_need_the_pages_csrf_token(client: AppClient) -> None:
    await customer(client)
    api = await _api_session(client)
    await sign_in(client)

    for path in ("/dashboard/logout-all", "/dashboard/password"):
        response = await client.post(
            path, data={"csrf": "x", "current_password": PASSWORD, "new_password": NEW_PASSWORD}
        )
        assert response.status_code == 403
    assert await _live(client, api)


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    with smtp_server() as running:
        yield running


@pytest.fixture
async def reset_client(
    make_settings: Callable[..., Settings], start_app: Callable[..., Any], smtp: tuple[Inbox, int]
) -> AppClient:
    client: AppClient = await start_app(make_settings(**reset_settings(smtp[1])))
    client.base_url = "https://gateway.test"  # PUBLIC_URL is https: cookies are Secure
    return client


async def test_a_forgotten_password_is_reset_through_the_emailed_link(
    reset_client: AppClient, smtp: tuple[Inbox, int]
) -> None:
    inbox, _port = smtp
    await customer(reset_client)
    sign_in_page = await reset_client.get("/dashboard/login")
    assert 'href="/dashboard/forgot-password"' in sign_in_page.text

    form = await reset_client.get("/dashboard/forgot-password")
    sent = await reset_client.post(
        "/dashboard/forgot-password", data={"email": "Ada@Example.com", "csrf": csrf_of(form.text)}
    )
    assert (sent.status_code, sent.headers["location"]) == (
        303,
        "/dashboard/login?notice=reset-sent",
    )
    await inbox.wait_for(1)
    token = inbox.token()

    page = await reset_client.get(f"/dashboard/reset-password?token={token}")
    assert page.status_code == 200
    assert f'name="token" value="{token}"' in page.text
    done = await reset_client.post(
        "/dashboard/reset-password",
        data={"token": token, "password": NEW_PASSWORD, "csrf": csrf_of(page.text)},
    )
    assert (done.status_code, done.headers["location"]) == (
        303,
        "/dashboard/login?notice=password-reset",
    )
    await sign_in(reset_client, password=NEW_PASSWORD)
    assert (await reset_client.get("/dashboard")).status_code == 200

    page = await reset_client.get(f"/dashboard/reset-password?token={token}")
    again = await reset_client.post(
        "/dashboard/reset-password",
        data={"token": token, "password": "yet another one!", "csrf": csrf_of(page.text)},
    )
    assert again.status_code == 400
    assert "invalid, used or expired" in again.text


async def test_an_unknown_email_gets_the_same_answer_and_no_email(
    reset_client: AppClient, smtp: tuple[Inbox, int]
) -> None:
    inbox, _port = smtp
    await customer(reset_client)
    answers = []
    for email in ("nobody@example.com", "ada@example.com"):
        form = await reset_client.get("/dashboard/forgot-password")
        response = await reset_client.post(
            "/dashboard/forgot-password", data={"email": email, "csrf": csrf_of(form.text)}
        )
        answers.append((response.status_code, response.headers["location"]))

    assert answers[0] == answers[1]
    await inbox.wait_for(1)
    assert [rcpt for rcpt, _ in inbox.messages] == [["ada@example.com"]]


async def test_without_smtp_there_are_no_reset_pages(client: AppClient) -> None:
    assert "forgot-password" not in (await client.get("/dashboard/login")).text
    for path in ("/dashboard/forgot-password", "/dashboard/reset-password?token=npr_x"):
        assert (await client.get(path)).status_code == 404
