"""Signing in to the dashboard: the session cookie's flags, CSRF on the form, signing out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from novo_gateway.dashboard.security import SESSION_COOKIE
from novo_gateway.kit.config import Settings
from tests.conftest import AppClient
from tests.dashboard.helpers import csrf_of, customer, dashboard_csrf, sign_in


def cookie_header(response: Any, name: str) -> str:
    found = [h for h in response.headers.get_list("set-cookie") if h.startswith(f"{name}=")]
    assert found, f"no {name} cookie set"
    return str(found[0])


async def test_dashboard_without_a_session_redirects_to_the_sign_in_form(
    client: AppClient,
) -> None:
    response = await client.get("/dashboard")

    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard/login"


async def test_sign_in_sets_an_httponly_samesite_session_cookie_without_secure_over_http(
    client: AppClient,
) -> None:
    await customer(client)

    response = await sign_in(client)

    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard"
    cookie = cookie_header(response, SESSION_COOKIE)
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Path=/" in cookie
    assert "Secure" not in cookie
    assert cookie.split(";")[0].removeprefix(f"{SESSION_COOKIE}=").startswith("ns_")


async def test_the_session_cookie_is_secure_when_served_over_tls(
    make_settings: Callable[..., Settings], start_app: Callable[..., Any]
) -> None:
    client: AppClient = await start_app(make_settings(public_url="https://gateway.test"))
    client.base_url = "https://gateway.test"
    await customer(client)

    response = await sign_in(client)

    assert "Secure" in cookie_header(response, SESSION_COOKIE)


async def test_signed_in_the_dashboard_greets_the_customer(client: AppClient) -> None:
    await customer(client, name="Ada")
    await sign_in(client)

    page = await client.get("/dashboard")

    assert page.status_code == 200
    assert 'id="account-name">Ada<' in page.text


async def test_a_wrong_password_shows_the_form_again_with_a_401(client: AppClient) -> None:
    await customer(client)

    response = await sign_in(client, password="not the password")

    assert response.status_code == 401
    assert "Invalid credentials" in response.text
    assert 'value="ada@example.com"' in response.text  # kept, so only the password is retyped
    assert SESSION_COOKIE not in response.headers.get("set-cookie", "")


async def test_a_malformed_email_is_a_401_on_the_form_not_an_error(client: AppClient) -> None:
    response = await sign_in(client, email="not an email")

    assert response.status_code == 401
    assert "Invalid credentials" in response.text


async def test_an_oversized_field_is_a_400(client: AppClient) -> None:
    form = await client.get("/dashboard/login")

    response = await client.post(
        "/dashboard/login",
        data={"email": "a" * 400, "password": "x", "csrf": csrf_of(form.text)},
    )

    assert response.status_code == 400
    assert response.json()["error"] == "Bad Request"


async def test_sign_in_without_the_forms_csrf_token_is_refused(client: AppClient) -> None:
    await customer(client)
    await client.get("/dashboard/login")  # the cookie half only

    response = await client.post(
        "/dashboard/login", data={"email": "ada@example.com", "password": "x", "csrf": "forged"}
    )

    assert response.status_code == 403
    assert SESSION_COOKIE not in response.headers.get("set-cookie", "")


async def test_sign_in_posted_from_another_site_is_refused(client: AppClient) -> None:
    await customer(client)
    form = await client.get("/dashboard/login")

    response = await client.post(
        "/dashboard/login",
        data={"email": "ada@example.com", "password": "x", "csrf": csrf_of(form.text)},
        headers={"Origin": "https://evil.example"},
    )

    assert response.status_code == 403


async def test_sign_out_ends_the_session_and_its_cookie_no_longer_works(
    client: AppClient,
) -> None:
    await customer(client)
    await sign_in(client)
    old_cookie = client.cookies[SESSION_COOKIE]

    response = await client.post("/dashboard/logout", data={"csrf": await dashboard_csrf(client)})

    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard/login?notice=signed-out"
    client.cookies.set(SESSION_COOKIE, old_cookie)
    assert (await client.get("/dashboard")).status_code == 303


async def test_sign_out_without_the_csrf_token_keeps_the_session(client: AppClient) -> None:
    await customer(client)
    await sign_in(client)

    response = await client.post("/dashboard/logout", data={"csrf": "forged"})

    assert response.status_code == 403
    assert (await client.get("/dashboard")).status_code == 200


async def test_a_forged_session_cookie_is_treated_as_signed_out(client: AppClient) -> None:
    client.cookies.set(SESSION_COOKIE, "ns_" + "x" * 43)

    assert (await client.get("/dashboard")).status_code == 303


async def test_an_email_with_markup_comes_back_escaped_in_the_form(client: AppClient) -> None:
    response = await sign_in(client, email='"><script>alert(1)</script>')

    assert response.status_code == 401
    assert "<script>alert(1)" not in response.text
    assert 'value="&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in response.text
