"""Password change, sign out everywhere, and password reset by email through a real SMTP server.

The SMTP server is aiosmtpd's (tests/accounts/smtp.py), started by each reset test on a free
port of 127.0.0.1: the gateway sends with aiosmtplib over a real socket.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from novo_gateway.accounts.models import PasswordResetToken
from novo_gateway.kit.clock import FrozenClock
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import session_scope
from tests.accounts.helpers import PASSWORD, login, register, runtime_of
from tests.accounts.smtp import Inbox, reset_settings, smtp_server
from tests.conftest import AppClient, make_test_settings

StartApp = Callable[..., Any]
NEW_PASSWORD = "a brand new passphrase"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _session(client: AppClient, password: str = PASSWORD) -> dict[str, str]:
    return bearer((await login(client, password=password))["session"]["token"])


async def _live(client: AppClient, auth: dict[str, str]) -> bool:
    return (await client.get("/auth/api-keys", headers=auth)).status_code == 200


# --- password change -------------------------------------------------------------------------


async def test_changing_the_password_revokes_the_other_sessions(client: AppClient) -> None:
    await register(client)
    here, elsewhere, other = [await _session(client) for _ in range(3)]

    response = await client.post(
        "/auth/password",
        headers=here,
        json={"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD},
    )

    assert response.status_code == 200
    assert response.json() == {"message": "Password changed", "revokedSessions": 2}
    assert await _live(client, here)
    assert not await _live(client, elsewhere) and not await _live(client, other)
    refused = await client.post(
        "/auth/login", json={"email": "ada@example.com", "password": PASSWORD}
    )
    assert refused.status_code == 401
    await login(client, password=NEW_PASSWORD)


async def test_a_wrong_current_password_changes_nothing_and_counts_as_a_failure(
    make_settings: Callable[..., Settings], start_app: StartApp, clock: FrozenClock
) -> None:
    client = await start_app(make_settings(login_max_failures=2), clock=clock)
    await register(client)
    here = await _session(client)
    body = {"currentPassword": "not it", "newPassword": NEW_PASSWORD}

    answers = [
        (await client.post("/auth/password", headers=here, json=body)).status_code for _ in range(3)
    ]

    assert answers == [401, 401, 429]
    assert await _live(client, here)
    clock.advance(int(await _retry_after(client)))
    await login(client)  # the password is unchanged


async def _retry_after(client: AppClient) -> str:
    locked = await client.post(
        "/auth/login", json={"email": "ada@example.com", "password": PASSWORD}
    )
    assert locked.status_code == 429
    return locked.headers["Retry-After"]


async def test_changing_the_password_needs_a_session_token(client: AppClient) -> None:
    created = await register(client)
    body = {"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD}
    for headers in ({}, {"X-API-Key": created["apiKey"]["key"]}, bearer("ns_forged")):
        response = await client.post("/auth/password", headers=headers, json=body)
        assert response.status_code == 401


async def test_a_new_password_shorter_than_the_minimum_is_a_400(client: AppClient) -> None:
    await register(client)
    here = await _session(client)
    response = await client.post(
        "/auth/password", headers=here, json={"currentPassword": PASSWORD, "newPassword": "short"}
    )
    assert response.status_code == 400
    assert response.json()["error"] == "Bad Request"


# --- sign out everywhere ---------------------------------------------------------------------


async def test_logout_all_revokes_every_session_of_the_account_only(client: AppClient) -> None:
    created = await register(client)
    await register(client, email="bob@example.com")
    sessions = [await _session(client) for _ in range(3)]
    bob = bearer((await login(client, email="bob@example.com"))["session"]["token"])

    response = await client.post("/auth/logout-all", headers=sessions[0])

    assert response.status_code == 200
    assert response.json() == {"message": "Logged out everywhere", "revokedSessions": 3}
    assert [await _live(client, s) for s in sessions] == [False, False, False]
    assert await _live(client, bob)
    assert await _live(client, {"X-API-Key": created["apiKey"]["key"]})  # keys are not sessions


async def test_logout_all_ends_dashboard_sign_ins_too(client: AppClient) -> None:
    await register(client)
    form = await client.get("/dashboard/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    signed_in = await client.post(
        "/dashboard/login",
        data={"email": "ada@example.com", "password": PASSWORD, "csrf": csrf.group(1)},
    )
    assert signed_in.status_code == 303
    assert (await client.get("/dashboard")).status_code == 200

    await client.post("/auth/logout-all", headers=await _session(client))

    page = await client.get("/dashboard")
    assert (page.status_code, page.headers["location"]) == (303, "/dashboard/login")


# --- password reset by email -----------------------------------------------------------------


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    with smtp_server() as running:
        yield running


@pytest.fixture
async def reset_app(
    make_settings: Callable[..., Settings],
    start_app: StartApp,
    smtp: tuple[Inbox, int],
    clock: FrozenClock,
) -> AppClient:
    _inbox, port = smtp
    settings = make_settings(**reset_settings(port, password_reset_ttl_seconds=900))
    client: AppClient = await start_app(settings, clock=clock)
    return client


async def test_a_reset_link_is_emailed_and_sets_a_new_password_once(
    reset_app: AppClient, smtp: tuple[Inbox, int]
) -> None:
    inbox, _port = smtp
    await register(reset_app)
    signed_in = await _session(reset_app)

    response = await reset_app.post("/auth/password-reset", json={"email": "ADA@example.com"})

    assert response.status_code == 202
    await inbox.wait_for(1)
    [(recipients, message)] = inbox.messages
    assert recipients == ["ada@example.com"]
    assert message["Subject"] == "Reset your Novo Gateway password"
    assert message["From"] == "Novo Gateway <no-reply@gateway.test>"
    token = inbox.token()
    async with session_scope(runtime_of(reset_app).sessions) as session:
        [stored] = (await session.scalars(select(PasswordResetToken))).all()
    assert stored.token_hash == hashlib.sha256(token.encode()).hexdigest()  # only its hash

    confirm = {"token": token, "newPassword": NEW_PASSWORD}
    done = await reset_app.post("/auth/password-reset/confirm", json=confirm)
    again = await reset_app.post(
        "/auth/password-reset/confirm", json={**confirm, "newPassword": "yet another one!"}
    )

    assert done.status_code == 200
    assert again.status_code == 400
    assert again.json()["message"].startswith("This password reset link is invalid")
    assert not await _live(reset_app, signed_in)
    await login(reset_app, password=NEW_PASSWORD)


async def test_with_a_dashboard_host_the_link_points_to_it(
    make_settings: Callable[..., Settings], start_app: StartApp, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    client = await start_app(make_settings(**reset_settings(port, dashboard_host="dash.test")))
    await register(client)

    await client.post("/auth/password-reset", json={"email": "ada@example.com"})

    await inbox.wait_for(1)
    assert inbox.token(public_url="https://dash.test").startswith("npr_")


async def test_the_answer_is_the_same_whether_the_email_has_an_account(
    reset_app: AppClient, smtp: tuple[Inbox, int]
) -> None:
    inbox, _port = smtp
    await register(reset_app)

    known = await reset_app.post("/auth/password-reset", json={"email": "ada@example.com"})
    unknown = await reset_app.post("/auth/password-reset", json={"email": "nobody@example.com"})

    assert (known.status_code, known.json()) == (unknown.status_code, unknown.json())
    await inbox.wait_for(1)
    assert [rcpt for rcpt, _ in inbox.messages] == [["ada@example.com"]]


async def test_a_reset_token_expires(
    reset_app: AppClient, smtp: tuple[Inbox, int], clock: FrozenClock
) -> None:
    inbox, _port = smtp
    await register(reset_app)
    await reset_app.post("/auth/password-reset", json={"email": "ada@example.com"})
    await inbox.wait_for(1)
    token = inbox.token()

    clock.advance(900)
    response = await reset_app.post(
        "/auth/password-reset/confirm", json={"token": token, "newPassword": NEW_PASSWORD}
    )

    assert response.status_code == 400
    await login(reset_app)


async def test_used_and_expired_reset_tokens_are_deleted_at_the_next_request(
    reset_app: AppClient, smtp: tuple[Inbox, int], clock: FrozenClock
) -> None:
    inbox, _port = smtp
    await register(reset_app)
    for _ in range(2):
        await reset_app.post("/auth/password-reset", json={"email": "ada@example.com"})
    await inbox.wait_for(2)
    await reset_app.post(
        "/auth/password-reset/confirm", json={"token": inbox.token(1), "newPassword": NEW_PASSWORD}
    )
    clock.advance(900)

    await reset_app.post("/auth/password-reset", json={"email": "ada@example.com"})
    await inbox.wait_for(3)

    async with session_scope(runtime_of(reset_app).sessions) as session:
        [left] = (await session.scalars(select(PasswordResetToken))).all()
    assert left.token_hash == hashlib.sha256(inbox.token(2).encode()).hexdigest()


async def test_changing_the_password_uses_up_open_reset_links(
    reset_app: AppClient, smtp: tuple[Inbox, int]
) -> None:
    inbox, _port = smtp
    await register(reset_app)
    await reset_app.post("/auth/password-reset", json={"email": "ada@example.com"})
    await inbox.wait_for(1)
    token = inbox.token()
    await reset_app.post(
        "/auth/password",
        headers=await _session(reset_app),
        json={"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD},
    )

    response = await reset_app.post(
        "/auth/password-reset/confirm", json={"token": token, "newPassword": "something else!"}
    )

    assert response.status_code == 400


async def test_reset_requests_are_limited_per_email(
    make_settings: Callable[..., Settings],
    start_app: StartApp,
    smtp: tuple[Inbox, int],
) -> None:
    inbox, port = smtp
    client = await start_app(make_settings(**reset_settings(port, login_max_failures=2)))
    await register(client)
    answers = [
        (await client.post("/auth/password-reset", json={"email": "ada@example.com"})).status_code
        for _ in range(3)
    ]
    assert answers == [202, 202, 429]
    await inbox.wait_for(2)
    assert len(inbox.messages) == 2


async def test_without_smtp_settings_there_is_no_password_reset(client: AppClient) -> None:
    for path, body in (
        ("/auth/password-reset", {"email": "ada@example.com"}),
        ("/auth/password-reset/confirm", {"token": "npr_x", "newPassword": NEW_PASSWORD}),
    ):
        response = await client.post(path, json=body)
        assert response.status_code == 404
        assert response.json()["message"].startswith("Password reset by email is not enabled")


def test_smtp_needs_a_sender_and_a_public_url() -> None:
    with pytest.raises(ValidationError, match="smtp_from"):
        make_test_settings(smtp_host="mail.example.com")
    with pytest.raises(ValidationError, match="PUBLIC_URL"):
        make_test_settings(smtp_host="mail.example.com", smtp_from="a@example.com")
