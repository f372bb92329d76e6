"""Bodies over MAX_BODY_BYTES are refused with 413 in the common shape, however they are sent."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from novo_gateway.kit.config import Settings
from tests.conftest import AppClient
from tests.novo_api.conftest import new_key

LIMIT = 2048


@pytest.fixture
async def small(make_settings: Callable[..., Settings], start_app: Callable[..., Any]) -> AppClient:
    client: AppClient = await start_app(make_settings(max_body_bytes=LIMIT))
    return client


def _assert_413(response: Any) -> None:
    assert response.status_code == 413
    body = response.json()
    assert body["error"] == "Payload Too Large"
    assert str(LIMIT) in body["message"]


async def test_a_declared_length_over_the_limit_is_refused_before_reading(small: AppClient) -> None:
    response = await small.post(
        "/auth/register", content=b"x" * (LIMIT + 1), headers={"content-type": "application/json"}
    )
    _assert_413(response)


async def test_a_streamed_body_over_the_limit_is_refused(small: AppClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b'{"pad": "' + b"x" * 1000 + b'"}'

    response = await small.post(
        "/auth/register", content=chunks(), headers={"content-type": "application/json"}
    )
    _assert_413(response)


async def test_a_body_within_the_limit_is_read(small: AppClient) -> None:
    response = await small.post("/auth/register", json={"email": "a@example.com"})
    assert response.status_code == 400  # read and validated: the password is missing


async def test_a_malformed_content_length_is_refused(small: AppClient) -> None:
    response = await small.post("/auth/register", content=b"{}", headers={"content-length": "lots"})
    assert response.status_code in (400, 413)
    assert set(response.json()) >= {"error", "message"}


async def test_an_oversized_metered_call_is_refused_and_not_billed(small: AppClient) -> None:
    key = await new_key(small)

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"items": ["' + b"x" * (LIMIT * 2) + b'"]}'

    response = await small.post(
        "/api/v1/bulk/process",
        content=chunks(),
        headers={"content-type": "application/json", "X-API-Key": key},
    )
    _assert_413(response)
    usage = (await small.get("/billing/usage", headers={"X-API-Key": key})).json()
    assert usage["currentPeriod"]["totalCalls"] == 0
