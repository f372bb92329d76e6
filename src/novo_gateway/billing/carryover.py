"""Late usage: units whose period's invoice no longer takes usage, charged on the next invoice.

Stripe invoices a period's metered usage from a draft that it keeps open for a grace period after
the period ends (an hour by default; the draft's `automatically_finalizes_at`). A meter event that
arrives after the finalization is still counted by the meter, but billed on no invoice. So before
a report of a period that has ended goes to the meter, the reporter asks Stripe for that period's
invoice (`closed_invoice`):

- no invoice yet, or a draft that finalizes more than `MARGIN` from now: the meter event goes out
  as usual, and Stripe prices it into that period's invoice;
- otherwise (finalized, or about to be): the units are charged (`charge`) as a pending invoice
  item on the subscription's next invoice, at the price they would have had in their own period:
  with graduated tiers, priced at the tier position after the units that period already invoiced
  (its metered line, plus earlier carry-overs of the same period), so units still inside the free
  tier cost 0. Once the subscription has ended no invoice follows: the item goes on a one-off
  invoice made and finalized at once (`ended_invoice` finds the invoice the units follow).
  The item's description names the original period and the units (`describe`), and its
  metadata holds the units, the period and the report.

A report is charged once: its item's idempotency key is derived from the report id, and before
creating one the customer's carry-over items are searched for the report (an item Stripe made
before a crash lost its answer is found, not made again, even after Stripe forgot the key).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from novo_gateway.billing.setup import Pricing
from novo_gateway.billing.stripe_client import StripeBilling
from novo_gateway.billing.stripe_types import CarriedItem, PeriodInvoice, PriceInfo, PriceTier
from novo_gateway.kit.config import Settings

# A draft finalizing sooner than this may not count a meter event sent now (Stripe aggregates
# asynchronously): its period is treated as closed.
MARGIN = timedelta(minutes=5)


def tiers_amount(tiers: Sequence[PriceTier], quantity: int, mode: str | None) -> Decimal:
    """The exact amount in cents of `quantity` units through the tiers (graduated or volume)."""
    if quantity <= 0:
        return Decimal(0)
    if mode == "volume":
        for tier in tiers:
            if tier.up_to is None or quantity <= tier.up_to:
                return tier.unit_amount * quantity + tier.flat_amount
        return Decimal(0)
    amount, floor = Decimal(0), 0
    for tier in tiers:
        ceiling = quantity if tier.up_to is None else min(quantity, tier.up_to)
        if ceiling > floor:
            amount += tier.unit_amount * (ceiling - floor) + tier.flat_amount
        if tier.up_to is None or quantity <= tier.up_to:
            break
        floor = tier.up_to
    return amount


def price_amount(price: PriceInfo, quantity: int) -> Decimal:
    """The exact amount in cents Stripe computes for `quantity` units of `price`."""
    if price.billing_scheme == "tiered":
        return tiers_amount(price.tiers, quantity, price.tiers_mode)
    return (price.unit_amount or Decimal(0)) * max(quantity, 0)


def _cents(amount: Decimal) -> int:
    """Whole cents, rounded half up, as Stripe rounds an invoice line."""
    return int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def marginal_cents(price: PriceInfo, invoiced: int, units: int) -> int:
    """What `units` more cost in a period that already invoiced `invoiced` units.

    The difference of the rounded amounts, so that the period's invoice and every carry-over of it
    add up to exactly what one invoice holding all the units would have charged."""
    return _cents(price_amount(price, invoiced + units)) - _cents(price_amount(price, invoiced))


def settings_price(settings: Settings) -> PriceInfo:
    """The price `setup-stripe` makes from the settings (for an invoice that names no price)."""
    return PriceInfo(
        id="settings",
        product_id="",
        lookup_key=None,
        active=True,
        currency="usd",
        interval="month",
        usage_type="metered",
        meter_id=None,
        billing_scheme="tiered",
        tiers_mode="graduated",
        tiers=Pricing.of(settings).tiers(),
    )


def describe(invoice: PeriodInvoice, units: int) -> str:
    """The item's line on the invoice: the original period and the units."""
    noun = "call" if units == 1 else "calls"
    return (
        f"API usage {invoice.period_start:%Y-%m-%d} – {invoice.period_end:%Y-%m-%d}, "
        f"carried over: {units} {noun}"
    )


def ended_at(at: datetime, start: datetime | None, end: datetime | None) -> datetime | None:
    """When the billing period holding `at` ended (at the latest), from the account's known
    current period [start, end): its end for `at` inside it, its start for `at` before it (an
    earlier period, which ended then or before); None when unknown (no period known, or `at`
    after its end: a period the gateway has not heard of yet, still running)."""
    if start is None or end is None or at >= end:
        return None
    return end if at >= start else start


def takes_usage(invoice: PeriodInvoice, now: datetime) -> bool:
    """True while the invoice can still count meter events: a draft not about to finalize."""
    if invoice.status != "draft":
        return False
    finalizes = invoice.automatically_finalizes_at
    return finalizes is None or now < finalizes - MARGIN


class CarryOver:
    """Finds the closed period of late usage and charges it on the next invoice."""

    def __init__(self, stripe: StripeBilling, settings: Settings) -> None:
        self._stripe = stripe
        self._settings = settings
        self._prices: dict[str, PriceInfo] = {}

    async def closed_invoice(
        self, customer_id: str, at: datetime, ended: datetime | None, now: datetime
    ) -> PeriodInvoice | None:
        """The invoice of the period holding `at` when it no longer takes usage, else None.

        Stripe is asked only once that period has ended (`ended`, see `ended_at`)."""
        if ended is None or now < ended:
            return None
        invoice = await self._stripe.invoice_covering(customer_id, at)
        if invoice is None or takes_usage(invoice, now):
            return None
        return invoice

    async def ended_invoice(
        self, customer_id: str, subscription_id: str | None, at: datetime, now: datetime
    ) -> PeriodInvoice | None:
        """For a subscription that has ended: the invoice of `at`'s period when it no longer
        takes usage, or the subscription's last invoice for usage after its end (calls admitted
        while an immediate cancel was in flight); None when usage still goes to the meter (a
        draft that still takes it) or Stripe made no invoice."""
        invoices = [
            invoice
            for invoice in await self._stripe.period_invoices(customer_id)
            if invoice.status != "void" and invoice.subscription_id == subscription_id
        ]
        for invoice in invoices:  # newest first
            if invoice.covers(at):
                return None if takes_usage(invoice, now) else invoice
        if invoices and invoices[0].period_end <= at:
            return invoices[0]
        return None

    async def charge(
        self, invoice: PeriodInvoice, units: int, source: str, subscription: str | None
    ) -> CarriedItem:
        """Charge `units` of the invoice's period on `subscription`'s next invoice (the account's
        live one), once per `source`.

        With no live subscription no invoice follows: the item is invoiced at once, on a one-off
        invoice of its own (with any other such item still pending)."""
        item = await self._item(invoice, units, source, subscription)
        if subscription is None:
            if item.invoice_id is None:
                await self._stripe.invoice_pending(
                    invoice.customer_id, idempotency_key=f"carry-invoice-{source}"
                )
            else:  # invoiced before a crash lost the rest
                await self._stripe.finalize_one_off(item.invoice_id)
        return item

    async def _item(
        self, invoice: PeriodInvoice, units: int, source: str, subscription: str | None
    ) -> CarriedItem:
        items = await self._stripe.carried_items(invoice.customer_id, since=invoice.period_start)
        for item in items:
            if item.source == source:
                return item  # made before a crash lost Stripe's answer
        already = invoice.metered_units + sum(
            item.units for item in items if item.period_start == invoice.period_start
        )
        price = await self._price(invoice.price_id)
        return await self._stripe.carry_over(
            invoice=invoice,
            units=units,
            amount=marginal_cents(price, already, units),
            description=describe(invoice, units),
            source=source,
            idempotency_key=f"carry-over-{source}",
            subscription=subscription,
        )

    async def _price(self, price_id: str | None) -> PriceInfo:
        if price_id is None:
            return settings_price(self._settings)
        if price_id not in self._prices:
            self._prices[price_id] = await self._stripe.retrieve_price(price_id)
        return self._prices[price_id]
