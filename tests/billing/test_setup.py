"""setup-stripe on the emulator: what it creates, that a second run creates nothing, repricing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from novo_gateway.billing.setup import (
    DEFAULT_PRODUCT_ID,
    DESTINATION_EVENTS,
    METER_ERROR_EVENT,
    PRICE_LOOKUP_KEY,
    WEBHOOK_EVENTS,
    Pricing,
    SetupError,
    setup_stripe,
)
from novo_gateway.billing.stripe_client import StripeBilling
from novo_gateway.billing.stripe_types import MeterEvent
from novo_gateway.kit.clock import Clock
from novo_gateway.kit.config import Settings
from tests.billing.conftest import Emulator

WEBHOOK_URL = "http://127.0.0.1:9/webhooks/stripe"
SETUP_KINDS = (
    "billing.meter",
    "product",
    "price",
    "billing_portal.configuration",
    "webhook_endpoint",
    "v2.core.event_destination",
)


def counts(emulator: Emulator) -> dict[str, int]:
    found: dict[str, int] = emulator.state(meter_events="false")["counts"]
    return {kind: found.get(kind, 0) for kind in SETUP_KINDS}


async def run_setup(settings: Settings, webhook_url: str | None = WEBHOOK_URL) -> Any:
    stripe = StripeBilling(settings, Clock())
    try:
        return await setup_stripe(stripe, settings, webhook_url=webhook_url)
    finally:
        await stripe.close()


async def event_destination(stripe: StripeBilling, destination_id: str) -> dict[str, Any]:
    found = await stripe.call(
        stripe.sdk.v2.core.event_destinations.retrieve_async,
        destination_id,
        params={"include": ["webhook_endpoint.url"]},
    )
    data: dict[str, Any] = found.to_dict()
    return data


async def raw_price(stripe: StripeBilling, price_id: str) -> dict[str, Any]:
    price = await stripe.call(
        stripe.sdk.v1.prices.retrieve_async, price_id, params={"expand": ["tiers"]}
    )
    data: dict[str, Any] = price.to_dict()
    return data


def tiers_of(price: dict[str, Any]) -> list[tuple[int | None, str]]:
    """(up_to, unit amount in cents) of each tier; the SDK gives decimals as `Decimal`."""
    return [(t["up_to"], str(t["unit_amount_decimal"])) for t in price["tiers"]]


async def test_setup_creates_meter_product_tiered_price_portal_and_webhook(
    stripe_settings: Settings, stripe_billing: StripeBilling, emulator: Emulator
) -> None:
    result = await run_setup(stripe_settings)

    assert counts(emulator) == dict.fromkeys(SETUP_KINDS, 1)
    meter = (
        await stripe_billing.call(
            stripe_billing.sdk.v1.billing.meters.retrieve_async, result.meter_id
        )
    ).to_dict()
    assert meter["event_name"] == "novo_api_calls"
    assert meter["default_aggregation"] == {"formula": "sum"}
    assert meter["customer_mapping"] == {"event_payload_key": "stripe_customer_id", "type": "by_id"}
    assert meter["value_settings"] == {"event_payload_key": "value"}

    assert result.product_id == DEFAULT_PRODUCT_ID
    price = await raw_price(stripe_billing, result.price_id)
    assert price["product"] == DEFAULT_PRODUCT_ID
    assert price["lookup_key"] == PRICE_LOOKUP_KEY
    assert price["currency"] == "usd"
    assert price["recurring"]["interval"] == "month"
    assert price["recurring"]["usage_type"] == "metered"
    assert price["recurring"]["meter"] == result.meter_id
    assert (price["billing_scheme"], price["tiers_mode"]) == ("tiered", "graduated")
    assert [t["unit_amount"] for t in price["tiers"]] == [0, None]
    assert tiers_of(price) == [(1000, "0"), (None, "0.1")]

    endpoint = (
        await stripe_billing.call(
            stripe_billing.sdk.v1.webhook_endpoints.retrieve_async, result.webhook_endpoint_id
        )
    ).to_dict()
    assert endpoint["url"] == WEBHOOK_URL
    assert sorted(endpoint["enabled_events"]) == sorted(WEBHOOK_EVENTS)
    assert METER_ERROR_EVENT not in endpoint["enabled_events"]
    assert result.webhook_secret and result.webhook_secret.startswith("whsec_")
    destination = await event_destination(stripe_billing, result.event_destination_id)
    assert destination["event_payload"] == "thin"
    assert destination["type"] == "webhook_endpoint"
    assert destination["enabled_events"] == list(DESTINATION_EVENTS)
    assert destination["webhook_endpoint"]["url"] == WEBHOOK_URL
    assert destination["status"] == "enabled"
    assert result.destination_secret and result.destination_secret.startswith("whsec_")
    assert result.destination_secret != result.webhook_secret
    assert result.env_lines() == [
        f"STRIPE_PRODUCT_ID={DEFAULT_PRODUCT_ID}",
        f"STRIPE_PRICE_ID={result.price_id}",
        f"STRIPE_PORTAL_CONFIGURATION_ID={result.portal_configuration_id}",
        f"STRIPE_WEBHOOK_SECRET={result.webhook_secret},{result.destination_secret}",
    ]


async def test_second_setup_run_creates_nothing_and_finds_the_same_objects(
    stripe_settings: Settings, emulator: Emulator
) -> None:
    first = await run_setup(stripe_settings)
    before = counts(emulator)
    second = await run_setup(stripe_settings)

    assert counts(emulator) == before
    assert second.changed == []
    assert (second.meter_id, second.product_id, second.price_id) == (
        first.meter_id,
        first.product_id,
        first.price_id,
    )
    assert second.portal_configuration_id == first.portal_configuration_id
    assert second.webhook_endpoint_id == first.webhook_endpoint_id
    assert second.event_destination_id == first.event_destination_id
    # Stripe shows a webhook secret once: the second run says so instead of printing one.
    assert second.webhook_secret is None and second.destination_secret is None
    assert "STRIPE_WEBHOOK_SECRET" not in "\n".join(second.env_lines())
    assert any("signing secret" in note for note in second.notes)


async def test_changed_cost_per_call_moves_the_lookup_key_to_a_new_price(
    make_stripe_settings: Callable[..., Settings],
    stripe_billing: StripeBilling,
    emulator: Emulator,
) -> None:
    first = await run_setup(make_stripe_settings())
    repriced = await run_setup(make_stripe_settings(cost_per_call=Decimal("0.0025")))

    assert repriced.price_id != first.price_id
    assert repriced.changed == [f"price {repriced.price_id}"]
    new = await raw_price(stripe_billing, repriced.price_id)
    old = await raw_price(stripe_billing, first.price_id)
    assert new["lookup_key"] == PRICE_LOOKUP_KEY
    assert [str(t["unit_amount_decimal"]) for t in new["tiers"]] == ["0", "0.25"]
    # The old price keeps serving subscriptions already on it.
    assert (old["lookup_key"], old["active"]) == (None, True)
    assert counts(emulator)["price"] == 2
    assert any(first.price_id in note and repriced.price_id in note for note in repriced.notes)

    again = await run_setup(make_stripe_settings(cost_per_call=Decimal("0.0025")))
    assert (again.price_id, again.changed) == (repriced.price_id, [])


async def test_changed_free_tier_moves_the_lookup_key_to_a_new_price(
    make_stripe_settings: Callable[..., Settings], stripe_billing: StripeBilling
) -> None:
    first = await run_setup(make_stripe_settings(), webhook_url=None)
    second = await run_setup(make_stripe_settings(free_tier_calls=500), webhook_url=None)
    assert second.price_id != first.price_id
    price = await raw_price(stripe_billing, second.price_id)
    assert tiers_of(price) == [(500, "0"), (None, "0.1")]


async def test_no_free_tier_gives_a_single_paid_tier(
    make_stripe_settings: Callable[..., Settings], stripe_billing: StripeBilling
) -> None:
    result = await run_setup(make_stripe_settings(free_tier_calls=0), webhook_url=None)
    price = await raw_price(stripe_billing, result.price_id)
    assert tiers_of(price) == [(None, "0.1")]


async def test_without_a_webhook_url_no_endpoint_is_created(
    stripe_settings: Settings, emulator: Emulator
) -> None:
    result = await run_setup(stripe_settings, webhook_url=None)
    assert counts(emulator)["webhook_endpoint"] == 0
    assert (result.webhook_endpoint_id, result.webhook_secret) == (None, None)
    assert "STRIPE_WEBHOOK_SECRET" not in "\n".join(result.env_lines())


async def test_a_meter_with_other_aggregation_is_refused_not_reused(
    stripe_settings: Settings, stripe_billing: StripeBilling, emulator: Emulator
) -> None:
    await stripe_billing.call(
        stripe_billing.sdk.v1.billing.meters.create_async,
        params={
            "display_name": "calls",
            "event_name": "novo_api_calls",
            "default_aggregation": {"formula": "count"},
        },
    )
    with pytest.raises(SetupError, match="STRIPE_METER_EVENT_NAME"):
        await run_setup(stripe_settings)
    assert counts(emulator)["price"] == 0


async def test_existing_webhook_endpoint_missing_events_is_updated(
    stripe_settings: Settings, stripe_billing: StripeBilling, emulator: Emulator
) -> None:
    await stripe_billing.call(
        stripe_billing.sdk.v1.webhook_endpoints.create_async,
        params={"url": WEBHOOK_URL, "enabled_events": ["invoice.paid"]},
    )
    result = await run_setup(stripe_settings)
    assert counts(emulator)["webhook_endpoint"] == 1
    endpoint = (
        await stripe_billing.call(
            stripe_billing.sdk.v1.webhook_endpoints.retrieve_async, result.webhook_endpoint_id
        )
    ).to_dict()
    assert set(WEBHOOK_EVENTS) <= set(endpoint["enabled_events"])


async def test_a_disabled_event_destination_is_enabled_again(
    stripe_settings: Settings, stripe_billing: StripeBilling, emulator: Emulator
) -> None:
    first = await run_setup(stripe_settings)
    await stripe_billing.call(
        stripe_billing.sdk.v2.core.event_destinations.disable_async, first.event_destination_id
    )
    second = await run_setup(stripe_settings)
    assert second.event_destination_id == first.event_destination_id
    assert second.changed == [f"event destination {first.event_destination_id} (enabled)"]
    destination = await event_destination(stripe_billing, first.event_destination_id)
    assert destination["status"] == "enabled"
    assert counts(emulator)["v2.core.event_destination"] == 1


@pytest.mark.parametrize(
    ("cost", "cents"),
    [("0.001", "0.1"), ("0.01", "1"), ("1", "100"), ("0.000001", "0.0001"), ("0", "0")],
)
def test_cost_per_call_in_dollars_becomes_cents_without_rounding(cost: str, cents: str) -> None:
    pricing = Pricing(free_tier_calls=10, cost_per_call=Decimal(cost))
    paid = pricing.tier_params()[-1]
    assert paid.get("unit_amount_decimal", str(paid.get("unit_amount"))) == cents


def test_cost_per_call_finer_than_stripe_keeps_is_refused() -> None:
    pricing = Pricing(free_tier_calls=0, cost_per_call=Decimal("0.000000000000001"))
    with pytest.raises(SetupError, match="COST_PER_CALL"):
        pricing.tier_params()


async def test_invoice_for_usage_past_the_free_tier_is_our_estimate_to_the_cent(
    stripe_settings: Settings, stripe_billing: StripeBilling, emulator: Emulator
) -> None:
    result = await run_setup(stripe_settings, webhook_url=None)
    customer = await stripe_billing.create_customer(
        email="ada@example.com", name="Ada", account_id=1, idempotency_key="test-invoice"
    )
    sub = await stripe_billing.create_subscription(
        customer_id=customer, price_id=result.price_id, account_id=1, idempotency_key="test-sub"
    )
    await stripe_billing.meter_event(
        event_name="novo_api_calls",
        event=MeterEvent(
            identifier="usage-1",
            customer_id=customer,
            value=1500,
            timestamp=sub.current_period_start or datetime.now(UTC),
        ),
    )
    preview = await stripe_billing.upcoming_invoice(customer, sub.id)

    assert preview is not None
    # 1000 free calls, then 500 at $0.001: $0.50, as the gateway's estimate says.
    assert (preview.amount_due, preview.currency) == (50, "usd")
