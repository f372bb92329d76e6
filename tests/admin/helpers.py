"""Helpers for the operator dashboard tests."""

from __future__ import annotations

import httpx

from tests.conftest import AppClient
from tests.dashboard.helpers import csrf_of

ADMIN_TOKEN = "operator-secret-token-0123456789abcdef"
BEARER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def admin_sign_in(client: AppClient, token: str = ADMIN_TOKEN) -> httpx.Response:
    """Sign in through the operator form; the client keeps the cookie."""
    form = await client.get("/admin")
    return await client.post("/admin/login", data={"token": token, "csrf": csrf_of(form.text)})
