"""Who may open /admin: nobody without ADMIN_TOKEN; with it, only its holders, never customers.

Every bad credential gets one answer, guesses at the token are throttled, and a sign-out ends
the sign-in on the server."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from novo_gateway.admin.auth import new_admin_cookie
from novo_gateway.dashboard.security import ADMIN_COOKIE
from novo_gateway.kit.clock import FrozenClock
from novo_gateway.kit.config import Settings
from tests.accounts.helpers import login
from tests.admin.helpers import ADMIN_TOKEN, BEARER, admin_sign_in
from tests.conftest import AppClient, make_test_settings
from tests.dashboard.helpers import csrf_of, customer, sign_in
from tests.factories import PASSWORD


@pytest.fixture
async def admin_app(make_settings: Callable[..., Settings], start_app: Callable[..., Any]) -> Any:
    client: AppClient = await start_app(make_settings(admin_token=ADMIN_TOKEN))
    return client


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/admin"), ("POST", "/admin/login"), ("POST", "/admin/reports/x/retry")],
)
async def test_without_an_admin_token_the_dashboard_does_not_exist(
    client: AppClient, method: str, path: str
) -> None:
    response = await client.request(method, path, headers=BEARER)

    assert response.status_code == 404
    assert response.json() == {
        "error": "Not Found",
        "message": f"The endpoint {method} {path} does not exist",
    }


async def test_without_credentials_the_sign_in_form_is_shown_with_a_401(
    admin_app: AppClient,
) -> None:
    response = await admin_app.get("/admin")

    assert response.status_code == 401
    assert 'action="/admin/login"' in response.text
    assert "unsafe-inline" not in response.headers["content-security-policy"]


async def test_a_wrong_bearer_token_is_a_401(admin_app: AppClient) -> None:
    response = await admin_app.get("/admin", headers={"Authorization": "Bearer wrong-token"})

    assert response.status_code == 401
    assert response.json()["message"] == "Invalid admin token."


async def test_the_admin_token_as_a_bearer_token_opens_the_dashboard(
    admin_app: AppClient,
) -> None:
    response = await admin_app.get("/admin", headers=BEARER)

    assert response.status_code == 200
    assert "Operator dashboard" in response.text


async def test_a_signed_in_customer_gets_the_sign_in_form_as_a_visitor_does(
    admin_app: AppClient,
) -> None:
    visitor = await admin_app.get("/admin")
    await customer(admin_app)
    await sign_in(admin_app)

    response = await admin_app.get("/admin")

    assert response.status_code == visitor.status_code == 401
    assert 'action="/admin/login"' in response.text


async def test_a_live_customer_credential_gets_the_same_answer_as_junk(
    admin_app: AppClient,
) -> None:
    _user, key = await customer(admin_app)
    session_token = (await login(admin_app, password=PASSWORD))["session"]["token"]
    answers = [
        await admin_app.get("/admin", headers={"Authorization": f"Bearer {credential}"})
        for credential in (key, session_token, "nk_" + "x" * 40, "ns_junk", "junk")
    ]

    assert {(r.status_code, r.text) for r in answers} == {
        (401, '{"error":"Unauthorized","message":"Invalid admin token."}')
    }


async def test_wrong_bearer_tokens_are_throttled_per_client_and_logged(
    make_settings: Callable[..., Settings],
    start_app: Callable[..., Any],
    clock: FrozenClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client: AppClient = await start_app(
        make_settings(admin_token=ADMIN_TOKEN, login_max_failures=3, login_lockout_seconds=60),
        clock=clock,
    )
    wrong = [
        (await client.get("/admin", headers={"Authorization": f"Bearer guess-{i}"})).status_code
        for i in range(5)
    ]
    right = await client.get("/admin", headers=BEARER)

    assert wrong == [401, 401, 401, 429, 429]
    assert right.status_code == 429
    assert 1 <= int(right.headers["Retry-After"]) <= 60
    refusals = [r for r in caplog.records if "refused bearer token from 203.0.113.7" in r.message]
    assert len(refusals) == 3
    assert not any("guess-" in r.getMessage() for r in caplog.records)
    clock.advance(int(right.headers["Retry-After"]))
    assert (await client.get("/admin", headers=BEARER)).status_code == 200


async def test_the_sign_in_form_and_bearer_guesses_share_one_throttle(
    make_settings: Callable[..., Settings], start_app: Callable[..., Any], clock: FrozenClock
) -> None:
    client: AppClient = await start_app(
        make_settings(admin_token=ADMIN_TOKEN, login_max_failures=2), clock=clock
    )
    assert (await admin_sign_in(client, token="form-guess")).status_code == 401
    assert (await client.get("/admin", headers={"Authorization": "Bearer x"})).status_code == 401

    refused = await admin_sign_in(client)

    assert refused.status_code == 429
    assert "Too many wrong admin tokens from this address." in refused.text
    assert 'action="/admin/login"' in refused.text
    assert int(refused.headers["Retry-After"]) >= 1
    assert ADMIN_COOKIE not in client.cookies


async def test_signing_in_with_the_token_sets_a_cookie_scoped_to_admin(
    admin_app: AppClient,
) -> None:
    response = await admin_sign_in(admin_app)

    assert response.status_code == 303
    cookie = next(
        h for h in response.headers.get_list("set-cookie") if h.startswith(f"{ADMIN_COOKIE}=")
    )
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/admin" in cookie
    assert ADMIN_TOKEN not in cookie
    assert (await admin_app.get("/admin")).status_code == 200


async def test_signing_in_with_a_wrong_token_shows_the_form_again(admin_app: AppClient) -> None:
    response = await admin_sign_in(admin_app, token="not-the-token")

    assert response.status_code == 401
    assert "Invalid admin token." in response.text
    assert ADMIN_COOKIE not in response.headers.get("set-cookie", "")


async def test_signing_in_without_the_forms_csrf_token_is_refused(admin_app: AppClient) -> None:
    await admin_app.get("/admin")

    response = await admin_app.post("/admin/login", data={"token": ADMIN_TOKEN, "csrf": "x"})

    assert response.status_code == 403


async def test_a_cookie_stops_working_when_the_token_changes(
    make_settings: Callable[..., Settings], start_app: Callable[..., Any]
) -> None:
    first: AppClient = await start_app(make_settings(admin_token=ADMIN_TOKEN))
    await admin_sign_in(first)
    rotated: AppClient = await start_app(
        make_settings(admin_token="another-operator-token-42424242")
    )
    rotated.cookies.set(ADMIN_COOKIE, first.cookies[ADMIN_COOKIE], path="/admin")

    assert (await rotated.get("/admin")).status_code == 401


async def test_a_forged_cookie_is_not_accepted(admin_app: AppClient) -> None:
    admin_app.cookies.set(ADMIN_COOKIE, "9999999999.nonce.deadbeef", path="/admin")

    assert (await admin_app.get("/admin")).status_code == 401


async def test_signing_out_clears_the_cookie(admin_app: AppClient) -> None:
    await admin_sign_in(admin_app)
    page = await admin_app.get("/admin")

    response = await admin_app.post("/admin/logout", data={"csrf": csrf_of(page.text)})

    assert response.status_code == 303
    assert (await admin_app.get("/admin")).status_code == 401


async def test_a_copy_of_the_cookie_is_dead_after_sign_out(admin_app: AppClient) -> None:
    await admin_sign_in(admin_app)
    copied = admin_app.cookies[ADMIN_COOKIE]
    page = await admin_app.get("/admin")
    await admin_app.post("/admin/logout", data={"csrf": csrf_of(page.text)})

    admin_app.cookies.set(ADMIN_COOKIE, copied, path="/admin")
    response = await admin_app.get("/admin")

    assert response.status_code == 401
    assert 'action="/admin/login"' in response.text


async def test_a_validly_signed_cookie_without_a_sign_in_is_refused(admin_app: AppClient) -> None:
    forged = new_admin_cookie(ADMIN_TOKEN, now=time.time(), ttl_seconds=3600)
    admin_app.cookies.set(ADMIN_COOKIE, forged, path="/admin")

    assert (await admin_app.get("/admin")).status_code == 401


def test_a_short_admin_token_is_refused_at_start() -> None:
    with pytest.raises(ValidationError, match="admin_token"):
        make_test_settings(admin_token="short")
