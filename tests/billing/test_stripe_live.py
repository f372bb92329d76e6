"""The same Stripe calls against Stripe's own test mode, when a test key is given.

Set STRIPE_TEST_SECRET_KEY=sk_test_… to run these (they are skipped otherwise: this machine cannot
reach Stripe). They check the emulator's answers against the real thing for the calls billing
depends on.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from novo_gateway.billing.setup import setup_stripe
from novo_gateway.billing.stripe_client import DuplicateMeterEvent, StripeBilling
from novo_gateway.billing.stripe_types import MeterEvent
from novo_gateway.config import Settings
from tests.conftest import make_test_settings

KEY = os.environ.get("STRIPE_TEST_SECRET_KEY", "")

pytestmark = [
    pytest.mark.stripe_live,
    pytest.mark.skipif(not KEY.startswith("sk_test_"), reason="STRIPE_TEST_SECRET_KEY not set"),
]


@pytest.fixture
def live_settings() -> Settings:
    return make_test_settings(stripe_secret_key=KEY, stripe_api_base="")


@pytest.fixture
async def live(live_settings: Settings) -> AsyncIterator[StripeBilling]:
    billing = StripeBilling(live_settings)
    yield billing
    await billing.close()


async def test_setup_stripe_twice_changes_nothing_the_second_time(
    live: StripeBilling, live_settings: Settings
) -> None:
    await setup_stripe(live, live_settings)
    second = await setup_stripe(live, live_settings)
    assert second.changed == []


async def test_a_resent_meter_event_is_not_counted_twice(
    live: StripeBilling, live_settings: Settings
) -> None:
    await setup_stripe(live, live_settings)
    customer = await live.create_customer(
        email="live-test@example.com",
        name="Live test",
        account_id=0,
        idempotency_key=f"live-{uuid.uuid4()}",
    )
    event = MeterEvent(f"nvr_live_{uuid.uuid4().hex}", customer, 3, datetime.now(UTC))
    await live.meter_event(event_name=live_settings.stripe_meter_event_name, event=event)
    # The same identifier again: a replay of our own idempotency key, or Stripe's duplicate
    # answer; anything else (a second count is invisible here, summaries lag) fails the test.
    with contextlib.suppress(DuplicateMeterEvent):
        await live.meter_event(event_name=live_settings.stripe_meter_event_name, event=event)
