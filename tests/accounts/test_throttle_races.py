"""Guesses sent all at once: the lockout still holds, through every way a password is checked.

The attempt is counted before the password is, so 40 concurrent wrong passwords for one email
get at most LOGIN_MAX_FAILURES 401s and 429 for the rest, and the right password then gets 429.
The requests run concurrently on the app's event loop (real HTTP requests through the ASGI
transport); the real-process version, over sockets, is in tests/adversarial/test_sign_in_races.py.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from novo_gateway.kit.config import Settings
from tests.accounts.helpers import PASSWORD, register
from tests.conftest import AppClient

StartApp = Callable[..., Any]
GUESSES = 40
MAX_FAILURES = 5


async def _guess(client: AppClient, via: str, email: str, password: str) -> httpx.Response:
    body = {"email": email, "password": password}
    if via == "login":
        return await client.post("/auth/login", json=body)
    return await client.request("GET", "/billing/usage", json=body)


@pytest.mark.parametrize("via", ["login", "body-credentials"])
@pytest.mark.parametrize("shared", [False, True], ids=["in-process", "redis"])
async def test_concurrent_wrong_passwords_get_at_most_the_allowed_failures(
    make_settings: Callable[..., Settings],
    start_app: StartApp,
    request: pytest.FixtureRequest,
    via: str,
    shared: bool,
) -> None:
    redis: dict[str, Any] = {}
    if shared:
        redis_url = request.getfixturevalue("redis_url")
        redis = {"redis_url": redis_url, "rate_limit_key_prefix": f"t-{uuid.uuid4().hex}"}
    client = await start_app(
        make_settings(login_max_failures=MAX_FAILURES, account_rate_limit_per_minute=1000, **redis)
    )
    await register(client)

    answers = await asyncio.gather(
        *(_guess(client, via, "ada@example.com", f"guess {i}") for i in range(GUESSES))
    )
    right = await _guess(client, via, "ada@example.com", PASSWORD)

    counted = Counter(a.status_code for a in answers)
    assert counted == {401: MAX_FAILURES, 429: GUESSES - MAX_FAILURES}
    assert right.status_code == 429
    assert "Retry-After" in right.headers


async def test_the_body_credential_fallback_is_limited_per_client_address(
    make_settings: Callable[..., Settings], start_app: StartApp
) -> None:
    client = await start_app(make_settings(account_rate_limit_per_minute=3))
    await register(client)  # one of the three password checks of this minute
    answers = [
        await _guess(client, "body-credentials", f"someone{i}@example.com", "wrong!!")
        for i in range(2)
    ]
    refused = await _guess(client, "body-credentials", "ada@example.com", PASSWORD)

    assert [a.status_code for a in answers] == [401, 401]
    assert refused.status_code == 429
    assert refused.json()["error"] == "Rate Limit Exceeded"
    assert int(refused.headers["Retry-After"]) >= 1
