"""Secrets never leave: passwords, API keys and session tokens stay out of logs and later bodies."""

from __future__ import annotations

import logging

import pytest

from tests.accounts.helpers import PASSWORD, register
from tests.conftest import AppClient

WRONG_PASSWORD = "hunter2-but-longer"


async def test_no_password_key_or_token_reaches_the_logs(
    client: AppClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    created = await register(client)
    key = created["apiKey"]["key"]
    session = await client.post(
        "/auth/login", json={"email": "ada@example.com", "password": PASSWORD}
    )
    token = session.json()["session"]["token"]
    await client.post("/auth/login", json={"email": "ada@example.com", "password": WRONG_PASSWORD})
    await client.post("/auth/register", json={"email": "x@example.com", "password": "tiny"})
    await client.get("/auth/api-keys", params={"api_key": key})
    await client.get("/auth/api-keys", params={"api_key": key, "password": PASSWORD})
    await client.get("/auth/api-keys", headers={"Authorization": f"Bearer {token}"})
    await client.get("/api/v1/insights", params={"api_key": key})
    second = await client.post("/auth/api-keys", headers={"X-API-Key": key}, json={"name": "ci"})
    second_key = second.json()["apiKey"]["key"]
    await client.post("/auth/logout", headers={"Authorization": f"Bearer {token}"})

    # Every record but the test client's own "HTTP Request: <url>" lines (httpx, client side).
    records = [
        r
        for r in caplog.records
        if not (r.name == "httpx" and "http://gateway.test" in r.getMessage())
    ]
    assert records, "the requests should have been logged"
    logged = "".join(f"{r.getMessage()} {r.args!r} {r.exc_text}" for r in records)
    for secret in (PASSWORD, WRONG_PASSWORD, "tiny", key, second_key, token):
        assert secret not in logged


async def test_a_key_is_shown_once_and_never_listed_again(client: AppClient) -> None:
    created = await register(client)
    key = created["apiKey"]["key"]
    auth = {"X-API-Key": key}
    listed = await client.get("/auth/api-keys", headers=auth)
    logged_in = await client.post(
        "/auth/login", json={"email": "ada@example.com", "password": PASSWORD}
    )
    for response in (listed, logged_in):
        assert key not in response.text
        assert key[:11] in response.text  # only the display prefix


async def test_errors_do_not_echo_the_password(client: AppClient) -> None:
    await register(client)
    long_password = "p" * 1025
    responses = [
        await client.post("/auth/register", json={"email": "b@example.com", "password": "tiny"}),
        await client.post(
            "/auth/register", json={"email": "c@example.com", "password": long_password}
        ),
        await client.post(
            "/auth/login", json={"email": "ada@example.com", "password": WRONG_PASSWORD}
        ),
        await client.post("/auth/login", json={"email": "bad", "password": WRONG_PASSWORD}),
    ]
    for response in responses:
        assert response.status_code in (400, 401)
        for secret in ("tiny", long_password, WRONG_PASSWORD):
            assert secret not in response.text
