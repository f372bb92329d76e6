"""Accounts with a Stripe subscription on a small plan, and what Stripe invoiced them (for the
late-usage and reconciliation tests)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from novo_gateway.accounts.models import User
from novo_gateway.billing.stripe_client import StripeBilling
from novo_gateway.kit.db import session_scope
from tests.billing.conftest import Emulator, Ledger

GRACE = 3600


@dataclass
class Subscribed:
    user_id: int
    key_id: int
    customer: str
    subscription: str
    start: datetime
    end: datetime


async def small_plan(stripe: StripeBilling, meter_id: str) -> str:
    """A monthly metered price: 10 calls free, then 1 cent a call."""
    price = await stripe.call(
        stripe.sdk.v1.prices.create_async,
        params={
            "currency": "usd",
            "product_data": {"name": "Novo API"},
            "billing_scheme": "tiered",
            "tiers_mode": "graduated",
            "tiers": [{"up_to": 10, "unit_amount": 0}, {"up_to": "inf", "unit_amount": 1}],
            "recurring": {"interval": "month", "usage_type": "metered", "meter": meter_id},
        },
    )
    return str(price.id)


async def subscribed(ledger: Ledger, stripe: StripeBilling, price_id: str) -> Subscribed:
    """An account with a Stripe subscription, its current period stored as the webhooks would."""
    user_id, key_id, customer = await ledger.customer(stripe, "ada@example.com")
    sub = await stripe.create_subscription(
        customer_id=customer, price_id=price_id, account_id=user_id, idempotency_key="sub-ada"
    )
    assert sub.current_period_start and sub.current_period_end
    async with session_scope(ledger.sessions) as session:
        user = await session.get_one(User, user_id)
        user.subscription_id, user.subscription_status = sub.id, sub.status
        user.current_period_start = sub.current_period_start
        user.current_period_end = sub.current_period_end
    return Subscribed(
        user_id, key_id, customer, sub.id, sub.current_period_start, sub.current_period_end
    )


def emulator_time(emulator: Emulator) -> datetime:
    return datetime.fromtimestamp(emulator.now(), UTC)


async def invoices(stripe: StripeBilling, customer: str) -> list[Any]:
    page = await stripe.call(
        stripe.sdk.v1.invoices.list_async, params={"customer": customer, "limit": 100}
    )
    return list(page.data)


async def invoiced_units(stripe: StripeBilling, customer: str) -> int:
    """Σ metered quantities of the customer's finalized invoices plus Σ carried units."""
    units = 0
    for invoice in await invoices(stripe, customer):
        if invoice.status == "draft":
            continue
        for line in invoice.lines.data:
            if line.parent.type == "subscription_item_details":
                units += line.quantity
            else:
                units += int(line.metadata["novo_units"])
    return units
