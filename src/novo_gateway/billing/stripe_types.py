"""Our own small types for what Stripe answers, and the functions that build them.

`stripe_client.py` turns the SDK's objects into these, so the rest of the gateway never handles
`stripe` types. The builders take the SDK's objects as plain mappings and import nothing of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any


def _ts(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


@dataclass(frozen=True, slots=True)
class MeterEvent:
    """One usage report as a meter event: `identifier` makes a resend a no-op at Stripe."""

    identifier: str
    customer_id: str
    value: int
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class SubscriptionInfo:
    id: str
    customer_id: str
    status: str
    current_period_start: datetime | None
    current_period_end: datetime | None
    cancel_at_period_end: bool


@dataclass(frozen=True, slots=True)
class InvoiceInfo:
    id: str | None
    number: str | None
    status: str | None
    amount_due: int
    amount_paid: int
    total: int
    currency: str
    created: datetime | None
    period_start: datetime | None
    period_end: datetime | None
    pdf_url: str | None
    hosted_url: str | None


@dataclass(frozen=True, slots=True)
class MeterSummary:
    customer_id: str
    start: datetime
    end: datetime
    value: Decimal


def as_dict(obj: Any) -> Any:
    """A plain dict: SDK objects are not dicts (no `.get`); webhook payloads already are."""
    return obj.to_dict() if hasattr(obj, "to_dict") else obj


def subscription_info(sub: Any) -> SubscriptionInfo:
    sub = as_dict(sub)
    items = sub["items"]["data"] if sub.get("items") else []
    first = items[0] if items else {}
    return SubscriptionInfo(
        id=str(sub["id"]),
        customer_id=str(
            sub["customer"] if isinstance(sub["customer"], str) else sub["customer"]["id"]
        ),
        status=str(sub["status"]),
        current_period_start=_ts(first.get("current_period_start")),
        current_period_end=_ts(first.get("current_period_end")),
        cancel_at_period_end=bool(sub.get("cancel_at_period_end")),
    )


def invoice_info(inv: Any) -> InvoiceInfo:
    inv = as_dict(inv)
    return InvoiceInfo(
        id=inv.get("id"),
        number=inv.get("number"),
        status=inv.get("status"),
        amount_due=int(inv.get("amount_due") or 0),
        amount_paid=int(inv.get("amount_paid") or 0),
        total=int(inv.get("total") or 0),
        currency=str(inv.get("currency") or "usd"),
        created=_ts(inv.get("created")),
        period_start=_ts(inv.get("period_start")),
        period_end=_ts(inv.get("period_end")),
        pdf_url=inv.get("invoice_pdf"),
        hosted_url=inv.get("hosted_invoice_url"),
    )


# --- Billing endpoints: the upcoming invoice -------------------------------------------------


@dataclass(frozen=True, slots=True)
class InvoiceLineInfo:
    description: str | None
    amount: int
    quantity: int | None
    period_start: datetime | None
    period_end: datetime | None


@dataclass(frozen=True, slots=True)
class UpcomingInvoice:
    amount_due: int
    total: int
    currency: str
    period_start: datetime | None
    period_end: datetime | None
    next_payment_attempt: datetime | None
    lines: list[InvoiceLineInfo]


def upcoming_invoice(preview: Any) -> UpcomingInvoice:
    data = as_dict(preview)
    lines = (data.get("lines") or {}).get("data") or []
    return UpcomingInvoice(
        amount_due=int(data.get("amount_due") or 0),
        total=int(data.get("total") or 0),
        currency=str(data.get("currency") or "usd"),
        period_start=_ts(data.get("period_start")),
        period_end=_ts(data.get("period_end")),
        next_payment_attempt=_ts(data.get("next_payment_attempt")),
        lines=[
            InvoiceLineInfo(
                description=line.get("description"),
                amount=int(line.get("amount") or 0),
                quantity=line.get("quantity"),
                period_start=_ts((line.get("period") or {}).get("start")),
                period_end=_ts((line.get("period") or {}).get("end")),
            )
            for line in lines
        ],
    )


# --- Set-up and provisioning: meters, products, prices, webhook endpoints -------------------------


@dataclass(frozen=True, slots=True)
class MeterInfo:
    id: str
    event_name: str
    status: str
    formula: str
    customer_payload_key: str
    value_payload_key: str


@dataclass(frozen=True, slots=True)
class ProductInfo:
    id: str
    name: str
    active: bool


@dataclass(frozen=True, slots=True)
class PriceTier:
    """One graduated tier: `up_to` units (None: no limit) at `unit_amount` cents each."""

    up_to: int | None
    unit_amount: Decimal
    flat_amount: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class PriceInfo:
    id: str
    product_id: str
    lookup_key: str | None
    active: bool
    currency: str
    interval: str | None
    usage_type: str | None
    meter_id: str | None
    billing_scheme: str
    tiers_mode: str | None
    tiers: tuple[PriceTier, ...]
    unit_amount: Decimal | None = None  # per-unit prices (billing_scheme per_unit)


@dataclass(frozen=True, slots=True)
class WebhookEndpointInfo:
    id: str
    url: str
    status: str
    enabled_events: tuple[str, ...]
    secret: str | None = field(default=None, repr=False)


def _decimal(exact: Any, whole: Any) -> Decimal:
    if exact is not None:
        return Decimal(str(exact))
    return Decimal(int(whole or 0))


def meter_info(meter: Any) -> MeterInfo:
    data = as_dict(meter)
    return MeterInfo(
        id=str(data["id"]),
        event_name=str(data["event_name"]),
        status=str(data.get("status") or "active"),
        formula=str((data.get("default_aggregation") or {}).get("formula") or ""),
        customer_payload_key=str((data.get("customer_mapping") or {}).get("event_payload_key")),
        value_payload_key=str((data.get("value_settings") or {}).get("event_payload_key")),
    )


def product_info(product: Any) -> ProductInfo:
    data = as_dict(product)
    return ProductInfo(id=str(data["id"]), name=str(data.get("name")), active=bool(data["active"]))


def price_info(price: Any) -> PriceInfo:
    data = as_dict(price)
    recurring = data.get("recurring") or {}
    product = data.get("product")
    return PriceInfo(
        id=str(data["id"]),
        product_id=str(product if isinstance(product, str) else (product or {}).get("id")),
        lookup_key=data.get("lookup_key"),
        active=bool(data.get("active")),
        currency=str(data.get("currency")),
        interval=recurring.get("interval"),
        usage_type=recurring.get("usage_type"),
        meter_id=recurring.get("meter"),
        billing_scheme=str(data.get("billing_scheme")),
        tiers_mode=data.get("tiers_mode"),
        tiers=tuple(
            PriceTier(
                up_to=tier.get("up_to"),
                unit_amount=_decimal(tier.get("unit_amount_decimal"), tier.get("unit_amount")),
                flat_amount=_decimal(tier.get("flat_amount_decimal"), tier.get("flat_amount")),
            )
            for tier in data.get("tiers") or []
        ),
        unit_amount=None
        if data.get("unit_amount_decimal") is None and data.get("unit_amount") is None
        else _decimal(data.get("unit_amount_decimal"), data.get("unit_amount")),
    )


def webhook_endpoint_info(endpoint: Any) -> WebhookEndpointInfo:
    data = as_dict(endpoint)
    return WebhookEndpointInfo(
        id=str(data["id"]),
        url=str(data["url"]),
        status=str(data.get("status") or "enabled"),
        enabled_events=tuple(data.get("enabled_events") or ()),
        secret=data.get("secret"),
    )


# --- Late usage: the invoices of billing periods and the items carried over to the next one ------

# Metadata keys of the invoice items that carry late usage over (see billing/carryover.py).
ITEM_UNITS = "novo_units"
ITEM_PERIOD_START = "novo_period_start"
ITEM_SOURCE = "novo_report"


@dataclass(frozen=True, slots=True)
class PeriodInvoice:
    """A subscription's invoice for one billing period: what its metered lines invoiced."""

    id: str
    status: str
    customer_id: str
    subscription_id: str | None
    currency: str
    period_start: datetime
    period_end: datetime
    automatically_finalizes_at: datetime | None
    metered_units: int  # Σ quantity of its subscription item lines
    price_id: str | None  # the metered line's price

    def covers(self, at: datetime) -> bool:
        return self.period_start <= at < self.period_end


@dataclass(frozen=True, slots=True)
class CarriedItem:
    """An invoice item charging units of an earlier period on a later invoice."""

    id: str
    amount: int
    units: int
    period_start: datetime | None
    source: str | None  # the report (or reconcile fix) it charges
    invoice_id: str | None  # None while pending (it joins the next invoice)


def period_invoice(inv: Any, lines: list[Any]) -> PeriodInvoice | None:
    """The invoice as a period's invoice; None for one without a subscription or a period."""
    data = as_dict(inv)
    parent = data.get("parent") or {}
    subscription = (parent.get("subscription_details") or {}).get("subscription")
    start, end = _ts(data.get("period_start")), _ts(data.get("period_end"))
    if subscription is None or start is None or end is None or end <= start:
        return None
    units, price = 0, None
    for line in (as_dict(line) for line in lines):
        if ((line.get("parent") or {}).get("type")) != "subscription_item_details":
            continue
        units += int(line.get("quantity") or 0)
        price = ((line.get("pricing") or {}).get("price_details") or {}).get("price") or price
    return PeriodInvoice(
        id=str(data["id"]),
        status=str(data.get("status")),
        customer_id=str(
            data["customer"] if isinstance(data["customer"], str) else data["customer"]["id"]
        ),
        subscription_id=str(subscription),
        currency=str(data.get("currency") or "usd"),
        period_start=start,
        period_end=end,
        automatically_finalizes_at=_ts(data.get("automatically_finalizes_at")),
        metered_units=units,
        price_id=str(price) if price else None,
    )


def carried_item(item: Any) -> CarriedItem | None:
    """An invoice item that carries units over (None for any other item)."""
    data = as_dict(item)
    metadata = data.get("metadata") or {}
    if ITEM_UNITS not in metadata:
        return None
    start = metadata.get(ITEM_PERIOD_START)
    invoice = data.get("invoice")
    return CarriedItem(
        id=str(data["id"]),
        amount=int(data.get("amount") or 0),
        units=int(metadata[ITEM_UNITS]),
        period_start=_ts(int(start)) if start else None,
        source=metadata.get(ITEM_SOURCE),
        invoice_id=invoice if isinstance(invoice, str) or invoice is None else invoice["id"],
    )


@dataclass(frozen=True, slots=True)
class EventDestinationInfo:
    """A v2 event destination (thin events reach us only through one)."""

    id: str
    url: str | None
    status: str
    event_payload: str
    enabled_events: tuple[str, ...]
    metadata: dict[str, str]
    secret: str | None = field(default=None, repr=False)


def event_destination_info(destination: Any) -> EventDestinationInfo:
    data = as_dict(destination)
    endpoint = data.get("webhook_endpoint") or {}
    return EventDestinationInfo(
        id=str(data["id"]),
        url=endpoint.get("url"),
        status=str(data.get("status") or "enabled"),
        event_payload=str(data.get("event_payload") or ""),
        enabled_events=tuple(data.get("enabled_events") or ()),
        metadata=dict(data.get("metadata") or {}),
        secret=endpoint.get("signing_secret"),
    )
