"""The same Stripe calls against Stripe's own test mode, when a test key is given.

Set STRIPE_TEST_SECRET_KEY=sk_test_… to run these (they are skipped otherwise: this machine cannot
reach Stripe). They check the emulator's answers against the real thing for the calls billing
depends on: `setup-stripe` with a webhook URL (twice), provisioning a customer, one usage report
and Stripe's summary of it, and a portal session on our configuration. Every test removes what
it created that Stripe lets us remove (webhook endpoint, event destination, customers and their
subscriptions); the meter, product, price and portal configuration stay, found again by the next
run as `setup-stripe` finds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from novo_gateway.billing.setup import (
    DESTINATION_EVENTS,
    METER_ERROR_EVENT,
    run_setup,
    setup_stripe,
)
from novo_gateway.billing.stripe_client import DuplicateMeterEvent, StripeBilling
from novo_gateway.billing.stripe_types import MeterEvent
from novo_gateway.kit.clock import Clock
from novo_gateway.kit.config import Settings
from tests.billing.test_setup_cli import cli_env, run
from tests.conftest import make_test_settings

KEY = os.environ.get("STRIPE_TEST_SECRET_KEY", "")
WEBHOOK_URL = "https://example.invalid/webhooks/stripe"
SUMMARY_WAIT_SECONDS = 180.0  # meter event summaries are eventually consistent

pytestmark = [
    pytest.mark.stripe_live,
    pytest.mark.skipif(not KEY.startswith("sk_test_"), reason="STRIPE_TEST_SECRET_KEY not set"),
]


@pytest.fixture
def live_settings() -> Settings:
    return make_test_settings(stripe_secret_key=KEY, stripe_api_base="")


@pytest.fixture
async def live(live_settings: Settings) -> AsyncIterator[StripeBilling]:
    billing = StripeBilling(live_settings, Clock())
    yield billing
    await billing.close()


@pytest.fixture
async def customers(live: StripeBilling) -> AsyncIterator[list[str]]:
    """Customers a test creates; deleted afterwards (which cancels their subscriptions)."""
    made: list[str] = []
    yield made
    for customer_id in made:
        with contextlib.suppress(Exception):
            await live.call(live.sdk.v1.customers.delete_async, customer_id)


async def _remove_webhook_receivers(live: StripeBilling, url: str) -> None:
    for endpoint in await live.webhook_endpoints():
        if endpoint.url == url:
            await live.delete_webhook_endpoint(endpoint.id)
    for destination in await live.event_destinations():
        if destination.url == url:
            await live.delete_event_destination(destination.id)


@pytest.fixture
async def clean_webhooks(live: StripeBilling) -> AsyncIterator[None]:
    await _remove_webhook_receivers(live, WEBHOOK_URL)
    yield
    await _remove_webhook_receivers(live, WEBHOOK_URL)


async def test_setup_stripe_with_a_webhook_url_twice_changes_nothing_the_second_time(
    live: StripeBilling, live_settings: Settings, clean_webhooks: None
) -> None:
    env = cli_env(live_settings, STRIPE_API_BASE="")
    first = await asyncio.to_thread(run, ["setup-stripe", "--webhook-url", WEBHOOK_URL], env)
    assert first.exit_code == 0, first.output
    lines = dict(line.split("=", 1) for line in first.stdout.splitlines() if "=" in line)
    assert len(lines["STRIPE_WEBHOOK_SECRET"].split(",")) == 2
    [endpoint] = [e for e in await live.webhook_endpoints() if e.url == WEBHOOK_URL]
    assert METER_ERROR_EVENT not in endpoint.enabled_events
    [destination] = [d for d in await live.event_destinations() if d.url == WEBHOOK_URL]
    assert (destination.event_payload, destination.enabled_events) == ("thin", DESTINATION_EVENTS)

    second = await run_setup(live_settings, webhook_url=WEBHOOK_URL)

    assert second.changed == []
    assert second.webhook_endpoint_id == endpoint.id
    assert second.event_destination_id == destination.id


async def test_provisioning_a_report_its_summary_and_a_portal_session(
    live: StripeBilling, live_settings: Settings, customers: list[str]
) -> None:
    setup = await setup_stripe(live, live_settings)
    customer = await live.create_customer(
        email="live-test@example.com",
        name="Live test",
        account_id=0,
        idempotency_key=f"live-{uuid.uuid4()}",
    )
    customers.append(customer)
    sub = await live.create_subscription(
        customer_id=customer,
        price_id=setup.price_id,
        account_id=0,
        idempotency_key=f"live-sub-{uuid.uuid4()}",
    )
    assert sub.status == "active"  # the first invoice of a metered price is $0: no card needed
    assert await live.has_payment_method(customer, sub.id) is False

    now = datetime.now(UTC).replace(second=0, microsecond=0)
    event = MeterEvent(f"nvr_live_{uuid.uuid4().hex}", customer, 3, now)
    await live.meter_event(event_name=live_settings.stripe_meter_event_name, event=event)
    # The same identifier again: a replay of our own idempotency key, or Stripe's duplicate
    # answer; anything else fails the test.
    with contextlib.suppress(DuplicateMeterEvent):
        await live.meter_event(event_name=live_settings.stripe_meter_event_name, event=event)
    total = await _summary(live, setup.meter_id, customer, now)
    assert total == 3

    url = await live.portal_url(customer, "https://example.invalid/dashboard")
    assert url.startswith("https://billing.stripe.com/")
    assert await live.portal_configuration() == setup.portal_configuration_id


async def _summary(live: StripeBilling, meter_id: str, customer: str, at: datetime) -> int:
    """Stripe's total for the customer around `at`, polled until it shows (bounded)."""
    deadline = time.monotonic() + SUMMARY_WAIT_SECONDS
    while True:
        total = await live.meter_total(
            meter_id=meter_id,
            customer_id=customer,
            start=at - timedelta(minutes=1),
            end=at + timedelta(minutes=2),
        )
        if total > 0 or time.monotonic() > deadline:
            return int(total)
        await asyncio.sleep(5)
