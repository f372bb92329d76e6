"""Stripe set-up: the meter, product, price, portal configuration, webhook endpoint and event
destination we bill with.

Idempotent: each object is found first (the meter by `event_name`, the product by its fixed id,
the price by `lookup_key`, the portal configuration by a metadata marker, the webhook endpoint and
the event destination by their URL) and created only when missing, so a second run changes
nothing. No idempotency keys are needed: every object is found again by these handles if a run
stops halfway.

Two receivers share the gateway's webhook URL: a v1 webhook endpoint for the snapshot events
(subscriptions, invoices) and a v2 event destination (`event_payload: thin`) for
`v1.billing.meter.error_report_triggered`, a thin event that Stripe sends only to event
destinations (a v1 endpoint's `enabled_events` cannot name it). Each has its own signing secret;
STRIPE_WEBHOOK_SECRET takes both, comma-separated. Stripe shows a secret only when the object is
created.

Pricing changes: a price cannot be edited, so when FREE_TIER_CALLS or COST_PER_CALL no longer
match the price holding the lookup key, a new price is created with `transfer_lookup_key=true`.
The old price stays active: subscriptions already on it keep it until moved (Stripe bills each
subscription at its own price); new subscriptions get the new price. Deactivate the old price
in the Dashboard once no subscription uses it.

The price is graduated: the first FREE_TIER_CALLS units at 0, then COST_PER_CALL dollars per
unit as `unit_amount_decimal` in cents (0.001 dollars → "0.1"), so that Stripe's invoice is the
gateway's estimate to the cent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from novo_gateway.billing.stripe_client import (
    API_VERSION,
    SETUP_MARKER,
    StripeBilling,
    StripeRejected,
)
from novo_gateway.billing.stripe_types import (
    EventDestinationInfo,
    MeterInfo,
    PriceInfo,
    PriceTier,
)
from novo_gateway.kit.clock import Clock
from novo_gateway.kit.config import Settings

DEFAULT_PRODUCT_ID = "prod_novo_api"
PRODUCT_NAME = "Novo API calls"
PRICE_LOOKUP_KEY = "novo_api_calls_monthly"
CURRENCY = "usd"
CUSTOMER_PAYLOAD_KEY = "stripe_customer_id"
VALUE_PAYLOAD_KEY = "value"
MARKER = SETUP_MARKER
WEBHOOK_PATH = "/webhooks/stripe"
METER_ERROR_EVENT = "v1.billing.meter.error_report_triggered"
WEBHOOK_EVENTS = (
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "invoice.created",
    "invoice.finalized",
    "invoice.paid",
    "invoice.payment_failed",
)
# Stripe's report of meter events naming no active meter (none made, or one deactivated).
METER_NOT_FOUND_EVENT = "v1.billing.meter.no_meter_found"
# Thin events: through the event destination only.
DESTINATION_EVENTS = (METER_ERROR_EVENT, METER_NOT_FOUND_EVENT)
# Stripe keeps at most 12 decimal places of a cent in `unit_amount_decimal`.
MAX_CENT_DECIMALS = 12


class SetupError(Exception):
    """Stripe holds something set-up cannot reconcile with the settings; the message says what."""


@dataclass(frozen=True, slots=True)
class Pricing:
    """The price plan of the settings: free calls per month, then dollars per call."""

    free_tier_calls: int
    cost_per_call: Decimal

    @classmethod
    def of(cls, settings: Settings) -> Pricing:
        return cls(free_tier_calls=settings.free_tier_calls, cost_per_call=settings.cost_per_call)

    @property
    def cents_per_call(self) -> Decimal:
        cents = self.cost_per_call * 100
        exponent = cents.normalize().as_tuple().exponent
        if isinstance(exponent, int) and -exponent > MAX_CENT_DECIMALS:
            raise SetupError(
                f"COST_PER_CALL={self.cost_per_call} has more precision than Stripe keeps "
                f"({MAX_CENT_DECIMALS} decimal places of a cent)."
            )
        return cents

    def tiers(self) -> tuple[PriceTier, ...]:
        paid = PriceTier(up_to=None, unit_amount=self.cents_per_call)
        if self.free_tier_calls == 0:
            return (paid,)
        return (PriceTier(up_to=self.free_tier_calls, unit_amount=Decimal(0)), paid)

    def tier_params(self) -> list[dict[str, Any]]:
        params: list[dict[str, Any]] = []
        for tier in self.tiers():
            up_to: int | str = "inf" if tier.up_to is None else tier.up_to
            if tier.unit_amount == 0:
                params.append({"up_to": up_to, "unit_amount": 0})
            else:
                params.append({"up_to": up_to, "unit_amount_decimal": _plain(tier.unit_amount)})
        return params


def _plain(value: Decimal) -> str:
    """A decimal without exponent or trailing zeros: Decimal("0.100") → "0.1"."""
    text = format(value.normalize(), "f")
    return text


@dataclass
class SetupResult:
    """The objects set-up found or created, and what it created or changed this run."""

    meter_id: str
    product_id: str
    price_id: str
    portal_configuration_id: str
    webhook_endpoint_id: str | None = None
    webhook_secret: str | None = field(default=None, repr=False)
    event_destination_id: str | None = None
    destination_secret: str | None = field(default=None, repr=False)
    changed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def webhook_secrets(self) -> list[str]:
        """The signing secrets shown this run: the endpoint's and the destination's."""
        return [s for s in (self.webhook_secret, self.destination_secret) if s]

    def env_lines(self) -> list[str]:
        """The settings to paste into `.env`."""
        lines = [
            f"STRIPE_PRODUCT_ID={self.product_id}",
            f"STRIPE_PRICE_ID={self.price_id}",
            f"STRIPE_PORTAL_CONFIGURATION_ID={self.portal_configuration_id}",
        ]
        if self.webhook_secrets:
            lines.append(f"STRIPE_WEBHOOK_SECRET={','.join(self.webhook_secrets)}")
        return lines


def webhook_url_for(settings: Settings, explicit: str | None = None) -> str | None:
    """The URL Stripe should send webhooks to: `explicit`, else PUBLIC_URL + /webhooks/stripe."""
    if explicit:
        return explicit
    if settings.public_url:
        return settings.public_url.rstrip("/") + WEBHOOK_PATH
    return None


async def setup_stripe(
    stripe: StripeBilling, settings: Settings, *, webhook_url: str | None = None
) -> SetupResult:
    """Find or create everything billing needs at Stripe; safe to run again."""
    changed: list[str] = []
    notes: list[str] = []
    pricing = Pricing.of(settings)
    pricing.cents_per_call  # noqa: B018 - refuse an unusable COST_PER_CALL before any write
    meter = await _ensure_meter(stripe, settings.stripe_meter_event_name, changed)
    product_id = settings.stripe_product_id or DEFAULT_PRODUCT_ID
    await _ensure_product(stripe, product_id, changed)
    price = await _ensure_price(stripe, pricing, meter, product_id, changed, notes)
    portal_id = await _ensure_portal(stripe, settings, changed)
    result = SetupResult(
        meter_id=meter.id,
        product_id=product_id,
        price_id=price.id,
        portal_configuration_id=portal_id,
        changed=changed,
        notes=notes,
    )
    if webhook_url:
        await _ensure_webhook(stripe, webhook_url, result)
        await _ensure_destination(stripe, webhook_url, result)
    return result


async def _ensure_meter(stripe: StripeBilling, event_name: str, changed: list[str]) -> MeterInfo:
    meter = await stripe.find_meter(event_name)
    if meter is None:
        meter = await stripe.create_meter(
            {
                "display_name": "Novo API calls",
                "event_name": event_name,
                "default_aggregation": {"formula": "sum"},
                "customer_mapping": {"type": "by_id", "event_payload_key": CUSTOMER_PAYLOAD_KEY},
                "value_settings": {"event_payload_key": VALUE_PAYLOAD_KEY},
            }
        )
        changed.append(f"meter {meter.id}")
        return meter
    if (meter.formula, meter.customer_payload_key, meter.value_payload_key) != (
        "sum",
        CUSTOMER_PAYLOAD_KEY,
        VALUE_PAYLOAD_KEY,
    ):
        raise SetupError(
            f"The Stripe meter {meter.id} ({event_name!r}) aggregates with {meter.formula!r} on "
            f"payload keys {meter.customer_payload_key!r}/{meter.value_payload_key!r}; billing "
            f"needs 'sum' on {CUSTOMER_PAYLOAD_KEY!r}/{VALUE_PAYLOAD_KEY!r}. A meter cannot be "
            "changed: set STRIPE_METER_EVENT_NAME to a new event name."
        )
    if meter.status != "active":
        meter = await stripe.reactivate_meter(meter.id)
        changed.append(f"meter {meter.id} (reactivated)")
    return meter


async def _ensure_product(stripe: StripeBilling, product_id: str, changed: list[str]) -> str:
    product = await stripe.find_product(product_id)
    if product is None:
        try:
            product = await stripe.create_product(
                {"id": product_id, "name": PRODUCT_NAME, "metadata": MARKER}
            )
        except StripeRejected as exc:
            # Another run created it between our lookup and this call.
            if exc.code != "resource_already_exists":
                raise
            return product_id
        changed.append(f"product {product.id}")
    elif not product.active:
        await stripe.update_product(product_id, {"active": True})
        changed.append(f"product {product_id} (reactivated)")
    return product_id


def _price_matches(price: PriceInfo, pricing: Pricing, meter: MeterInfo, product_id: str) -> bool:
    return (
        price.active
        and price.product_id == product_id
        and price.currency == CURRENCY
        and price.interval == "month"
        and price.usage_type == "metered"
        and price.meter_id == meter.id
        and price.billing_scheme == "tiered"
        and price.tiers_mode == "graduated"
        and price.tiers == pricing.tiers()
    )


async def _ensure_price(
    stripe: StripeBilling,
    pricing: Pricing,
    meter: MeterInfo,
    product_id: str,
    changed: list[str],
    notes: list[str],
) -> PriceInfo:
    current = await stripe.find_price(PRICE_LOOKUP_KEY)
    if current is not None and _price_matches(current, pricing, meter, product_id):
        return current
    params: dict[str, Any] = {
        "currency": CURRENCY,
        "product": product_id,
        "nickname": "Novo API calls, monthly",
        "lookup_key": PRICE_LOOKUP_KEY,
        "recurring": {"interval": "month", "usage_type": "metered", "meter": meter.id},
        "billing_scheme": "tiered",
        "tiers_mode": "graduated",
        "tiers": pricing.tier_params(),
        "metadata": MARKER,
    }
    if current is not None:
        params["transfer_lookup_key"] = True
    price = await stripe.create_price(params)
    changed.append(f"price {price.id}")
    if current is not None:
        notes.append(
            f"Pricing changed: the lookup key {PRICE_LOOKUP_KEY!r} moved from {current.id} to "
            f"{price.id}. Existing subscriptions stay on {current.id} (left active) until "
            "moved; set STRIPE_PRICE_ID to the new price so new accounts get it."
        )
    return price


async def _ensure_portal(stripe: StripeBilling, settings: Settings, changed: list[str]) -> str:
    found = await stripe.find_portal_configuration(MARKER)
    if found is not None:
        return found
    params: dict[str, Any] = {
        "business_profile": {"headline": "Novo API: manage your billing"},
        "features": {
            "customer_update": {"enabled": True, "allowed_updates": ["email", "name", "address"]},
            "invoice_history": {"enabled": True},
            "payment_method_update": {"enabled": True},
            "subscription_cancel": {"enabled": True, "mode": "at_period_end"},
        },
        "metadata": MARKER,
    }
    if settings.public_url:
        params["default_return_url"] = settings.public_url
    portal_id = await stripe.create_portal_configuration(params)
    changed.append(f"billing portal configuration {portal_id}")
    return portal_id


async def _ensure_webhook(stripe: StripeBilling, url: str, result: SetupResult) -> None:
    endpoint = await stripe.find_webhook_endpoint(url)
    if endpoint is None:
        endpoint = await stripe.create_webhook_endpoint(
            {
                "url": url,
                "enabled_events": list(WEBHOOK_EVENTS),
                "api_version": API_VERSION,
                "description": "Novo Gateway billing",
                "metadata": MARKER,
            }
        )
        result.changed.append(f"webhook endpoint {endpoint.id}")
        result.webhook_secret = endpoint.secret
    else:
        missing = [e for e in WEBHOOK_EVENTS if e not in endpoint.enabled_events]
        changes: dict[str, Any] = {}
        if missing and "*" not in endpoint.enabled_events:
            changes["enabled_events"] = sorted({*endpoint.enabled_events, *missing})
        if endpoint.status != "enabled":
            changes["disabled"] = False
        if changes:
            endpoint = await stripe.update_webhook_endpoint(endpoint.id, changes)
            result.changed.append(f"webhook endpoint {endpoint.id} (updated)")
        result.notes.append(
            f"The webhook endpoint {endpoint.id} for {url} already exists. Stripe shows its "
            "signing secret only when it is created: keep it in STRIPE_WEBHOOK_SECRET from that "
            "run, or roll the secret in the Dashboard."
        )
    result.webhook_endpoint_id = endpoint.id


def _ours(destination: EventDestinationInfo, url: str) -> bool:
    return destination.url == url and destination.event_payload == "thin"


async def _ensure_destination(stripe: StripeBilling, url: str, result: SetupResult) -> None:
    """The thin-event destination for meter error reports, sending to the same URL."""
    found = [d for d in await stripe.event_destinations() if _ours(d, url)]
    if not found:
        destination = await stripe.create_event_destination(
            {
                "name": "Novo Gateway meter errors",
                "description": "Meter events Stripe could not count",
                "type": "webhook_endpoint",
                "event_payload": "thin",
                "enabled_events": list(DESTINATION_EVENTS),
                "webhook_endpoint": {"url": url},
                "metadata": MARKER,
            }
        )
        result.changed.append(f"event destination {destination.id}")
        result.destination_secret = destination.secret
        result.event_destination_id = destination.id
        return
    destination = found[0]
    missing = [e for e in DESTINATION_EVENTS if e not in destination.enabled_events]
    if missing:
        events = sorted({*destination.enabled_events, *missing})
        destination = await stripe.update_event_destination(
            destination.id, {"enabled_events": events}
        )
        result.changed.append(f"event destination {destination.id} (updated)")
    if destination.status != "enabled":
        await stripe.enable_event_destination(destination.id)
        result.changed.append(f"event destination {destination.id} (enabled)")
    result.notes.append(
        f"The event destination {destination.id} for {url} already exists. Stripe shows its "
        "signing secret only when it is created: keep it in STRIPE_WEBHOOK_SECRET from that run."
    )
    result.event_destination_id = destination.id


async def run_setup(settings: Settings, *, webhook_url: str | None = None) -> SetupResult:
    """`setup_stripe` with a Stripe client of its own (for the CLI and the offline demo)."""
    stripe = StripeBilling(settings, Clock())
    try:
        return await setup_stripe(stripe, settings, webhook_url=webhook_url)
    finally:
        await stripe.close()
