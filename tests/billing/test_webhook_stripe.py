"""Webhooks against the Stripe emulator: its own event payloads, and Stripe as the tie-breaker."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from novo_gateway.billing.models import UsageReport
from novo_gateway.billing.stripe_client import StripeBilling
from novo_gateway.billing.stripe_types import MeterEvent
from novo_gateway.kit.clock import FrozenClock
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import session_scope
from tests.billing.conftest import Emulator
from tests.billing.webhook_helpers import (
    SECRET,
    StripeProduct,
    create_metered_price,
    deliver,
    event,
    load_user,
    now_ts,
    stored_events,
    stripe_events,
    subscribed_account,
    subscription,
    update_account,
)
from tests.conftest import AppClient
from tests.factories import usage_report


@pytest.fixture
async def product(stripe_billing: StripeBilling) -> StripeProduct:
    return await create_metered_price(stripe_billing, "novo_api_calls")


@pytest.fixture
async def app(
    make_stripe_settings: Callable[..., Settings],
    start_app: Callable[..., Any],
    clock: FrozenClock,
    product: StripeProduct,
) -> AppClient:
    settings = make_stripe_settings(
        stripe_webhook_secret=[SECRET], stripe_price_id=product.price_id
    )
    client: AppClient = await start_app(settings, clock)
    return client


async def test_stripes_own_subscription_event_is_applied(
    app: AppClient, stripe_billing: StripeBilling, product: StripeProduct
) -> None:
    account = await subscribed_account(app, stripe_billing, product.price_id)
    user = await load_user(app, account.user_id)
    assert user.subscription_id is not None
    await stripe_billing.set_cancel_at_period_end(user.subscription_id, True)
    [updated] = await stripe_events(stripe_billing, "customer.subscription.updated")

    response = await deliver(app, updated)

    assert response.status_code == 200
    user = await load_user(app, account.user_id)
    assert user.cancel_at_period_end is True
    assert user.subscription_state_at is not None
    assert int(user.subscription_state_at.timestamp()) == updated["created"]


async def test_stripes_events_delivered_newest_first_leave_the_newest_state(
    app: AppClient, stripe_billing: StripeBilling, product: StripeProduct, emulator: Emulator
) -> None:
    account = await subscribed_account(app, stripe_billing, product.price_id)
    sub_id = (await load_user(app, account.user_id)).subscription_id
    assert sub_id is not None
    await stripe_billing.set_cancel_at_period_end(sub_id, True)
    emulator.advance(60)
    await stripe_billing.set_cancel_at_period_end(sub_id, False)
    first, second = await stripe_events(stripe_billing, "customer.subscription.updated")
    assert first["created"] < second["created"]

    await deliver(app, second)
    await deliver(app, first)

    assert (await load_user(app, account.user_id)).cancel_at_period_end is False


async def test_two_events_of_the_same_second_are_settled_by_asking_stripe(
    app: AppClient, stripe_billing: StripeBilling, product: StripeProduct
) -> None:
    account = await subscribed_account(app, stripe_billing, product.price_id)
    user = await load_user(app, account.user_id)
    assert user.subscription_id is not None and account.customer_id is not None
    t = now_ts(app)

    def update(status: str) -> dict[str, Any]:
        assert user.subscription_id is not None and account.customer_id is not None
        return event(
            "customer.subscription.updated",
            subscription(user.subscription_id, account.customer_id, status=status),
            created=t,
        )

    await deliver(app, update("past_due"))
    await deliver(app, update("unpaid"))  # same second: Stripe says the subscription is active

    assert (await load_user(app, account.user_id)).subscription_status == "active"


async def test_invoice_paid_brings_a_past_due_account_back_from_stripes_state(
    app: AppClient, stripe_billing: StripeBilling, product: StripeProduct
) -> None:
    account = await subscribed_account(app, stripe_billing, product.price_id)
    user = await load_user(app, account.user_id)
    await update_account(
        app, account.user_id, subscription_status="past_due", past_due_since=user.created_at
    )
    invoice = {
        "id": "in_paid",
        "object": "invoice",
        "customer": account.customer_id,
        "amount_due": 500,
        "currency": "usd",
        "parent": {"subscription_details": {"subscription": user.subscription_id}},
    }

    await deliver(app, event("invoice.paid", invoice, created=now_ts(app)))

    user = await load_user(app, account.user_id)
    assert (user.subscription_status, user.past_due_since) == ("active", None)


async def test_a_stripe_outage_while_processing_is_retried_later(
    app: AppClient,
    stripe_billing: StripeBilling,
    product: StripeProduct,
    emulator: Emulator,
    clock: FrozenClock,
) -> None:
    account = await subscribed_account(app, stripe_billing, product.price_id)
    user = await load_user(app, account.user_id)
    await update_account(app, account.user_id, subscription_status="past_due")
    invoice = {
        "id": "in_paid",
        "object": "invoice",
        "customer": account.customer_id,
        "parent": {"subscription_details": {"subscription": user.subscription_id}},
    }
    emulator.fault("500", f"/v1/subscriptions/{user.subscription_id}", method="GET")

    response = await deliver(app, event("invoice.paid", invoice, created=now_ts(app)))

    assert response.status_code == 200
    [stored] = await stored_events(app)
    assert stored.status == "pending" and stored.last_error is not None
    clock.advance(3600)
    runtime = app.app.state.runtime
    assert await runtime.webhooks.run_due() == 1
    assert (await load_user(app, account.user_id)).subscription_status == "active"


async def test_stripes_meter_error_report_is_read_in_full_and_marks_the_report(
    app: AppClient, stripe_billing: StripeBilling, product: StripeProduct
) -> None:
    account = await subscribed_account(app, stripe_billing, product.price_id)
    runtime = app.app.state.runtime
    now = runtime.clock.now()
    async with session_scope(runtime.sessions) as session:
        session.add(
            usage_report(
                "nvr_test_unknown_customer",
                user_id=account.user_id,
                customer="cus_does_not_exist",
                units=3,
                at=now,
            )
        )
    await stripe_billing.meter_event(
        event_name="novo_api_calls",
        event=MeterEvent(
            identifier="nvr_test_unknown_customer",
            customer_id="cus_does_not_exist",
            value=3,
            timestamp=now,
        ),
    )
    page = await stripe_billing.call(stripe_billing.sdk.v2.core.events.list_async)
    [thin] = [e.to_dict() for e in page.data]
    assert thin["type"] == "v1.billing.meter.error_report_triggered"
    notification = {k: v for k, v in thin.items() if k != "data"}  # as a webhook carries it

    response = await deliver(app, notification)

    assert response.status_code == 200
    [stored] = await stored_events(app)
    assert stored.status == "processed"
    async with session_scope(runtime.sessions) as session:
        report = await session.get_one(UsageReport, "nvr_test_unknown_customer")
    assert report.status == "dead"
    assert report.last_error is not None
    assert "meter_event_customer_not_found" in report.last_error


async def test_stripes_report_of_events_with_no_active_meter_marks_the_report(
    app: AppClient, stripe_billing: StripeBilling, product: StripeProduct
) -> None:
    """A deactivated meter: Stripe takes the event, cannot count it, and says so with a
    `v1.billing.meter.no_meter_found` thin event, which dead-letters the report it names."""
    account = await subscribed_account(app, stripe_billing, product.price_id)
    runtime = app.app.state.runtime
    now = runtime.clock.now()
    customer = (await load_user(app, account.user_id)).stripe_customer_id
    assert customer is not None
    async with session_scope(runtime.sessions) as session:
        session.add(
            usage_report(
                "nvr_test_no_meter", user_id=account.user_id, customer=customer, units=4, at=now
            )
        )
    meters = stripe_billing.sdk.v1.billing.meters
    await stripe_billing.call(meters.deactivate_async, product.meter_id)
    await stripe_billing.meter_event(
        event_name="novo_api_calls",
        event=MeterEvent(
            identifier="nvr_test_no_meter", customer_id=customer, value=4, timestamp=now
        ),
    )
    page = await stripe_billing.call(stripe_billing.sdk.v2.core.events.list_async)
    [thin] = [e.to_dict() for e in page.data if e.type == "v1.billing.meter.no_meter_found"]
    notification = {k: v for k, v in thin.items() if k != "data"}  # as a webhook carries it

    response = await deliver(app, notification)

    assert response.status_code == 200
    async with session_scope(runtime.sessions) as session:
        report = await session.get_one(UsageReport, "nvr_test_no_meter")
    assert report.status == "dead"
    assert report.last_error is not None and "archived_meter" in report.last_error
