"""Helpers for the webhook, billing-route and access tests: signed deliveries and accounts."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import select

from novo_gateway.accounts.models import User
from novo_gateway.billing.models import WebhookEvent
from novo_gateway.billing.stripe_client import StripeBilling
from novo_gateway.kit.db import session_scope
from novo_gateway.runtime import Runtime
from stripe_emulator import sign_webhook
from tests.billing.conftest import attach_card
from tests.conftest import AppClient
from tests.factories import create_api_key, create_user

SECRET = "whsec_test_current"
OLD_SECRET = "whsec_test_previous"

_ids = itertools.count(1)


def runtime_of(client: AppClient) -> Runtime:
    runtime: Runtime = client.app.state.runtime
    return runtime


def now_ts(client: AppClient) -> int:
    return int(runtime_of(client).clock.time())


def event(
    event_type: str, obj: dict[str, Any], *, created: int, event_id: str | None = None
) -> dict[str, Any]:
    """A v1 snapshot event, shaped as Stripe sends it."""
    return {
        "id": event_id or f"evt_test_{next(_ids):06d}",
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": created,
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


def subscription(
    sub_id: str,
    customer_id: str,
    *,
    status: str = "active",
    period: tuple[int, int] = (1_790_000_000, 1_792_600_000),
    cancel_at_period_end: bool = False,
) -> dict[str, Any]:
    """A subscription object as in `customer.subscription.*` events (periods on the items)."""
    return {
        "id": sub_id,
        "object": "subscription",
        "customer": customer_id,
        "status": status,
        "cancel_at_period_end": cancel_at_period_end,
        "items": {
            "object": "list",
            "data": [
                {
                    "id": f"si_{sub_id}",
                    "object": "subscription_item",
                    "current_period_start": period[0],
                    "current_period_end": period[1],
                }
            ],
        },
        "metadata": {},
    }


def sign(body: bytes, secret: str, timestamp: int) -> str:
    return sign_webhook(body, secret, timestamp)


async def deliver(
    client: AppClient,
    payload: dict[str, Any] | bytes,
    *,
    secret: str = SECRET,
    timestamp: int | None = None,
    signature: str | None = None,
) -> httpx.Response:
    """POST a delivery to /webhooks/stripe, signed like Stripe signs it (unless given)."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    if signature is None:
        signature = sign(body, secret, now_ts(client) if timestamp is None else timestamp)
    headers = {"Content-Type": "application/json", "Stripe-Signature": signature}
    return await client.post("/webhooks/stripe", content=body, headers=headers)


@dataclass(frozen=True)
class Account:
    user_id: int
    key: str
    customer_id: str | None

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


async def make_account(
    client: AppClient,
    email: str = "ada@example.com",
    *,
    customer_id: str | None = "cus_test_ada",
    status: str = "active",
    subscription_id: str | None = None,
    **fields: Any,
) -> Account:
    """An account with an API key, its billing columns set as given."""
    runtime = runtime_of(client)
    async with session_scope(runtime.sessions) as session:
        user = await create_user(session, email=email, subscription_status=status)
        user.stripe_customer_id = customer_id
        user.subscription_id = subscription_id
        user.subscription_updated_at = runtime.clock.now()
        for name, value in fields.items():
            setattr(user, name, value)
        _key, raw = await create_api_key(session, user)
    return Account(user.id, raw, customer_id)


async def update_account(client: AppClient, user_id: int, **fields: Any) -> None:
    """Change billing columns as another writer would (marking the change for the caches)."""
    runtime = runtime_of(client)
    async with session_scope(runtime.sessions) as session:
        user = await session.get_one(User, user_id)
        for name, value in fields.items():
            setattr(user, name, value)
        user.subscription_updated_at = runtime.clock.now()


async def load_user(client: AppClient, user_id: int) -> User:
    async with session_scope(runtime_of(client).sessions) as session:
        return await session.get_one(User, user_id)


async def stored_events(client: AppClient) -> list[WebhookEvent]:
    async with session_scope(runtime_of(client).sessions) as session:
        rows = await session.scalars(select(WebhookEvent).order_by(WebhookEvent.received_at))
        return list(rows.all())


def ts(moment: datetime) -> int:
    return int(moment.timestamp())


@dataclass(frozen=True)
class StripeProduct:
    price_id: str
    meter_id: str


async def create_metered_price(stripe: StripeBilling, event_name: str) -> StripeProduct:
    """A meter and a graduated price at Stripe: 1000 calls free, then $0.001 per call; and our
    portal configuration (found by its metadata), as `setup-stripe` makes them."""
    await stripe.create_portal_configuration(
        {
            "features": {
                "invoice_history": {"enabled": True},
                "payment_method_update": {"enabled": True},
            },
            "metadata": {"novo_gateway": "billing"},
        }
    )
    meter = await stripe.call(
        stripe.sdk.v1.billing.meters.create_async,
        params={
            "display_name": "Novo API calls",
            "event_name": event_name,
            "default_aggregation": {"formula": "sum"},
            "customer_mapping": {"type": "by_id", "event_payload_key": "stripe_customer_id"},
            "value_settings": {"event_payload_key": "value"},
        },
    )
    product = await stripe.call(stripe.sdk.v1.products.create_async, params={"name": "Novo API"})
    price = await stripe.call(
        stripe.sdk.v1.prices.create_async,
        params={
            "product": product.id,
            "currency": "usd",
            "recurring": {"interval": "month", "usage_type": "metered", "meter": meter.id},
            "billing_scheme": "tiered",
            "tiers_mode": "graduated",
            "tiers": [
                {"up_to": 1000, "unit_amount": 0},
                {"up_to": "inf", "unit_amount_decimal": "0.1"},
            ],
        },
    )
    return StripeProduct(price_id=str(price.id), meter_id=str(meter.id))


async def subscribed_account(
    client: AppClient, stripe: StripeBilling, price_id: str, email: str = "ada@example.com"
) -> Account:
    """An account provisioned at Stripe: a customer with a card and an active subscription to
    the price."""
    account = await make_account(client, email, customer_id=None, status="pending")
    customer = await stripe.create_customer(
        email=email, name="Ada", account_id=account.user_id, idempotency_key=f"cus-{email}"
    )
    await attach_card(stripe, customer)
    sub = await stripe.create_subscription(
        customer_id=customer,
        price_id=price_id,
        account_id=account.user_id,
        idempotency_key=f"sub-{email}",
    )
    await update_account(
        client,
        account.user_id,
        stripe_customer_id=customer,
        subscription_id=sub.id,
        subscription_status=sub.status,
        current_period_start=sub.current_period_start,
        current_period_end=sub.current_period_end,
        cancel_at_period_end=sub.cancel_at_period_end,
    )
    return Account(account.user_id, account.key, customer)


async def stripe_events(stripe: StripeBilling, event_type: str) -> list[dict[str, Any]]:
    """Stripe's events of a type, oldest first, as the plain JSON a webhook carries."""
    page = await stripe.call(
        stripe.sdk.v1.events.list_async, params={"type": event_type, "limit": 100}
    )
    return [e.to_dict() for e in reversed(page.data)]
