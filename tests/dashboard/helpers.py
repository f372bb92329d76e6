"""Helpers for the dashboard tests: sign in through the form as a browser would."""

from __future__ import annotations

import re

import httpx

from novo_gateway.kit.db import session_scope
from novo_gateway.runtime import Runtime
from tests.conftest import AppClient
from tests.factories import PASSWORD, create_api_key, create_user

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def runtime_of(client: AppClient) -> Runtime:
    runtime: Runtime = client.app.state.runtime
    return runtime


def csrf_of(html: str) -> str:
    """The CSRF token of the first form on a page."""
    found = _CSRF.search(html)
    assert found is not None, "no CSRF field on the page"
    return found.group(1)


async def customer(
    client: AppClient, email: str = "ada@example.com", name: str = "Ada"
) -> tuple[int, str]:
    """A customer with one API key: (user id, raw key)."""
    async with session_scope(runtime_of(client).sessions) as session:
        user = await create_user(session, email=email, name=name)
        _key, raw = await create_api_key(session, user, name="Default")
        return user.id, raw


async def sign_in(
    client: AppClient, email: str = "ada@example.com", password: str = PASSWORD
) -> httpx.Response:
    """Sign in through the form; the client keeps the cookies. Returns the POST's answer."""
    form = await client.get("/dashboard/login")
    assert form.status_code == 200
    return await client.post(
        "/dashboard/login",
        data={"email": email, "password": password, "csrf": csrf_of(form.text)},
    )


async def dashboard_csrf(client: AppClient) -> str:
    page = await client.get("/dashboard")
    assert page.status_code == 200, page.text
    return csrf_of(page.text)
