"""Part 3: attacks on `POST /webhooks/stripe` of a live gateway, and Stripe's own misbehaviour.

Forged deliveries (no signature, another secret, one byte changed, `v0` only, a timestamp 301 s
off either way, a signed body that is not an event) are refused with 400 and store nothing. Real
deliveries sent twice or out of order are applied once and in the right order, and a handler
that fails half-way (Stripe answering 500 while it runs) is rolled back, then applied once when
the event is delivered again. Accounts are provisioned through the gateway at the emulator.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import math
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from novo_gateway.accounts.models import User
from novo_gateway.billing.models import WebhookEvent
from stripe_emulator import sign_webhook
from tests.adversarial.conftest import GatewayFactory
from tests.adversarial.harness import WEBHOOK_SECRET, Gateway
from tests.adversarial.stripe_side import EmulatorProcess
from tests.adversarial.system import Account, Figures, Ledger, register

_ids = itertools.count(1)


@pytest.fixture(scope="module")
def gateway(factory: GatewayFactory, redis_server: Any) -> Iterator[Gateway]:
    gw = factory.gateway(
        factory.database("postgres"), redis_url=redis_server.url, rate_limit_key_prefix="hooks"
    )
    gw.start()
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
async def ledger(gateway: Gateway) -> AsyncIterator[Ledger]:
    opened = Ledger(database_url=gateway.env["DATABASE_URL"])
    yield opened
    await opened.close()


@pytest.fixture(scope="module")
def tally(figures: Figures) -> Iterator[dict[str, int]]:
    counts = {"forged_deliveries": 0, "forged_accepted": 0, "replays_and_reorders": 0}
    yield counts
    figures.add("webhooks", **counts)


@pytest.fixture
async def customer(gateway: Gateway, ledger: Ledger) -> tuple[Account, str, str]:
    """An account provisioned at Stripe: (account, customer id, subscription id)."""
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        account = await register(client, "hook")
        sub = (await client.get("/billing/subscription", headers=account.auth)).json()
    customer_id = await ledger.customer_of(account.user_id)
    assert customer_id and sub["status"] == "active", sub
    return account, customer_id, sub["id"]


def _event(event_type: str, obj: dict[str, Any], created: int) -> dict[str, Any]:
    return {
        "id": f"evt_adv_{next(_ids):06d}_{int(time.time() * 1000)}",
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": created,
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


def _subscription(sub_id: str, customer_id: str, status: str) -> dict[str, Any]:
    now = int(time.time())
    return {
        "id": sub_id,
        "object": "subscription",
        "customer": customer_id,
        "status": status,
        "cancel_at_period_end": False,
        "items": {
            "object": "list",
            "data": [
                {
                    "id": f"si_{sub_id}",
                    "object": "subscription_item",
                    "current_period_start": now - 86400,
                    "current_period_end": now + 29 * 86400,
                }
            ],
        },
        "metadata": {},
    }


async def _post(gateway: Gateway, body: bytes, signature: str | None) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        return await client.post("/webhooks/stripe", content=body, headers=headers)


async def _deliver(gateway: Gateway, event: dict[str, Any]) -> httpx.Response:
    body = json.dumps(event).encode()
    return await _post(gateway, body, sign_webhook(body, WEBHOOK_SECRET, int(time.time())))


async def _stored(ledger: Ledger, event_id: str) -> WebhookEvent | None:
    async with ledger.sessions() as session:
        return await session.get(WebhookEvent, event_id)


async def _status(ledger: Ledger, user_id: int) -> str:
    async with ledger.sessions() as session:
        status = await session.scalar(select(User.subscription_status).where(User.id == user_id))
    return str(status)


async def _wait_processed(ledger: Ledger, event_id: str, timeout: float = 20) -> WebhookEvent:
    deadline = time.monotonic() + timeout
    while True:
        row = await _stored(ledger, event_id)
        if row is not None and row.status == "processed":
            return row
        assert time.monotonic() < deadline, f"event {event_id} not processed: {row and row.status}"
        await _sleep()


async def _sleep() -> None:
    await asyncio.sleep(0.05)


def _v1(body: bytes, secret: str, timestamp: int) -> str:
    payload = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


async def test_forged_deliveries_are_refused_and_store_nothing(
    gateway: Gateway, ledger: Ledger, customer: tuple[Account, str, str], tally: dict[str, int]
) -> None:
    account, customer_id, sub_id = customer
    event = _event(
        "customer.subscription.updated",
        _subscription(sub_id, customer_id, "canceled"),
        int(time.time()),
    )
    body = json.dumps(event).encode()
    now = int(time.time())
    tampered = body.replace(b'"canceled"', b'"cancelee"')
    forged: list[tuple[str, bytes, str | None]] = [
        ("no signature", body, None),
        ("empty signature", body, ""),
        ("another secret", body, sign_webhook(body, "whsec_attacker", now)),
        ("one byte changed", tampered, sign_webhook(body, WEBHOOK_SECRET, now)),
        ("v0 only", body, f"t={now},v0={_v1(body, WEBHOOK_SECRET, now)}"),
        ("v1 under another name", body, f"t={now},v2={_v1(body, WEBHOOK_SECRET, now)}"),
        ("301 s old", body, sign_webhook(body, WEBHOOK_SECRET, now - 301)),
        ("two timestamps", body, f"t={now},t={now - 1000},v1={_v1(body, WEBHOOK_SECRET, now)}"),
        ("no timestamp", body, f"v1={_v1(body, WEBHOOK_SECRET, now)}"),
        (
            "signature of the bare body",
            body,
            f"t={now},v1=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest(),
        ),
        ("not UTF-8", body + b"\xff", sign_webhook(body + b"\xff", WEBHOOK_SECRET, now)),
    ]
    answers = {name: await _post(gateway, payload, sig) for name, payload, sig in forged}
    ahead = sign_webhook(body, WEBHOOK_SECRET, math.ceil(time.time()) + 301)  # signed just now
    answers["301 s ahead"] = await _post(gateway, body, ahead)
    tally["forged_deliveries"] += len(answers)
    accepted = {name: r.status_code for name, r in answers.items() if r.status_code != 400}
    tally["forged_accepted"] += len(accepted)
    assert accepted == {}
    assert all(r.json()["message"] == "Invalid Stripe signature." for r in answers.values())
    assert await _stored(ledger, event["id"]) is None
    assert await _status(ledger, account.user_id) == "active"
    # The same delivery signed right, 295 s off, is accepted: the window is the one documented.
    fresh = _event(
        "customer.subscription.updated", _subscription(sub_id, customer_id, "active"), now
    )
    fresh_body = json.dumps(fresh).encode()
    late = await _post(gateway, fresh_body, sign_webhook(fresh_body, WEBHOOK_SECRET, now - 295))
    assert late.status_code == 200


async def test_a_signed_body_that_is_not_an_event_is_a_400(
    gateway: Gateway, tally: dict[str, int]
) -> None:
    now = int(time.time())
    bodies = [b"[]", b'"evt"', b"null", b"{}", b'{"id": 5, "type": []}', b"not json"]
    answers = [await _post(gateway, b, sign_webhook(b, WEBHOOK_SECRET, now)) for b in bodies]
    tally["forged_deliveries"] += len(answers)
    statuses = [r.status_code for r in answers]
    tally["forged_accepted"] += sum(1 for s in statuses if s != 400)
    assert statuses == [400] * len(bodies)


async def test_the_same_event_delivered_twice_is_applied_once(
    gateway: Gateway, ledger: Ledger, customer: tuple[Account, str, str], tally: dict[str, int]
) -> None:
    account, customer_id, sub_id = customer
    event = _event(
        "customer.subscription.updated",
        _subscription(sub_id, customer_id, "past_due"),
        int(time.time()) + 5,
    )
    first = await _deliver(gateway, event)
    second = await _deliver(gateway, event)
    await _wait_processed(ledger, event["id"])
    third = await _deliver(gateway, event)
    tally["replays_and_reorders"] += 2

    assert [first.status_code, second.status_code, third.status_code] == [200, 200, 200]
    assert first.json()["duplicate"] is False
    assert second.json()["duplicate"] is True and third.json()["duplicate"] is True
    row = await _stored(ledger, event["id"])
    assert row is not None and row.attempts == 1
    assert await _status(ledger, account.user_id) == "past_due"


async def test_events_out_of_order_leave_the_newest_state(
    gateway: Gateway, ledger: Ledger, customer: tuple[Account, str, str], tally: dict[str, int]
) -> None:
    account, customer_id, sub_id = customer
    now = int(time.time())
    newer = _event(
        "customer.subscription.updated", _subscription(sub_id, customer_id, "unpaid"), now + 20
    )
    older = _event(
        "customer.subscription.updated", _subscription(sub_id, customer_id, "active"), now + 10
    )
    assert (await _deliver(gateway, newer)).status_code == 200
    await _wait_processed(ledger, newer["id"])
    assert (await _deliver(gateway, older)).status_code == 200
    await _wait_processed(ledger, older["id"])
    tally["replays_and_reorders"] += 1

    assert await _status(ledger, account.user_id) == "unpaid"
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        deadline = time.monotonic() + 5  # the access cache revalidates every 0.5 s
        while (await client.get("/api/v1/insights", headers=account.auth)).status_code != 402:
            assert time.monotonic() < deadline, "an unpaid account could still call the API"
            await _sleep()


async def test_a_handler_failing_half_way_is_rolled_back_then_applied_once_on_redelivery(
    gateway: Gateway,
    ledger: Ledger,
    customer: tuple[Account, str, str],
    stripe_faults: EmulatorProcess,
    tally: dict[str, int],
) -> None:
    account, customer_id, sub_id = customer
    now = int(time.time())
    # The account falls behind on payment...
    behind = _event(
        "customer.subscription.updated", _subscription(sub_id, customer_id, "past_due"), now + 30
    )
    await _deliver(gateway, behind)
    await _wait_processed(ledger, behind["id"])
    assert await _status(ledger, account.user_id) == "past_due"
    # ...then pays. The handler locks the account and asks Stripe for the subscription, which
    # answers 500: the attempt fails after it started writing, and nothing of it may remain.
    stripe_faults.fault("500", f"/v1/subscriptions/{sub_id}", method="GET", count=50)
    invoice = {
        "id": f"in_adv_{next(_ids)}",
        "object": "invoice",
        "customer": customer_id,
        "amount_due": 0,
        "currency": "usd",
        "parent": {"subscription_details": {"subscription": sub_id}},
    }
    paid = _event("invoice.paid", invoice, now + 40)
    assert (await _deliver(gateway, paid)).status_code == 200

    async def failed_once() -> bool:
        row = await _stored(ledger, paid["id"])
        return row is not None and row.last_error is not None

    deadline = time.monotonic() + 20
    while not await failed_once():
        assert time.monotonic() < deadline, "the failing attempt was never made"
        await _sleep()
    row = await _stored(ledger, paid["id"])
    assert row is not None and row.status == "pending" and "StripeFailure" in str(row.last_error)
    assert await _status(ledger, account.user_id) == "past_due"  # rolled back whole

    stripe_faults.clear_faults()
    redelivered = await _deliver(gateway, paid)
    done = await _wait_processed(ledger, paid["id"])
    again = await _deliver(gateway, paid)
    tally["replays_and_reorders"] += 2

    assert redelivered.json()["duplicate"] is True and again.json()["duplicate"] is True
    assert done.attempts == 2 and done.last_error is None
    assert await _status(ledger, account.user_id) == "active"
