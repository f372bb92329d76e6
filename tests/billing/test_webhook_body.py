"""`POST /webhooks/stripe` reads its body with a size cap and a deadline of its own."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from novo_gateway.billing.webhook_routes import WEBHOOK_MAX_BYTES
from novo_gateway.kit.clock import FrozenClock
from novo_gateway.kit.config import Settings
from tests.billing.webhook_helpers import SECRET, event, now_ts, sign, stored_events, subscription
from tests.conftest import AppClient


@pytest.fixture
async def app(
    make_settings: Callable[..., Settings], start_app: Callable[..., Any], clock: FrozenClock
) -> AppClient:
    settings = make_settings(stripe_webhook_secret=[SECRET], body_timeout_seconds=0.5)
    client: AppClient = await start_app(settings, clock)
    return client


async def test_a_body_over_the_webhook_cap_is_a_413_even_when_signed(app: AppClient) -> None:
    payload = event(
        "customer.subscription.updated", subscription("sub_1", "cus_1"), created=now_ts(app)
    )
    payload["padding"] = "x" * WEBHOOK_MAX_BYTES
    body = json.dumps(payload).encode()
    headers = {"Stripe-Signature": sign(body, SECRET, now_ts(app))}

    async def streamed() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    declared = await app.post("/webhooks/stripe", content=body, headers=headers)
    chunked = await app.post("/webhooks/stripe", content=streamed(), headers=headers)

    for response in (declared, chunked):
        assert response.status_code == 413
        assert response.json()["error"] == "Payload Too Large"
    assert await stored_events(app) == []


async def test_a_body_that_stops_arriving_is_a_408_after_the_deadline(app: AppClient) -> None:
    never = asyncio.Event()  # the rest of the body never comes

    async def stalled() -> AsyncIterator[bytes]:
        yield b'{"id": "evt_1", '
        await never.wait()
        yield b"}"

    response = await app.post(
        "/webhooks/stripe", content=stalled(), headers={"Stripe-Signature": "t=1,v1=00"}
    )

    assert response.status_code == 408
    assert response.json() == {
        "error": "Request Timeout",
        "message": "The request body did not arrive within 0.5s. Send the whole request at once.",
    }
