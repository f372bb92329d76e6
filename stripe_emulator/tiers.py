"""Price maths in ``Decimal``: per-unit, graduated and volume tiers.

A line's amount is computed exactly in decimal cents and rounded once, half up, to an integer
number of cents. Graduated: every tier prices the units that fall inside it, and a tier's
``flat_amount`` is added when at least one unit falls inside it. Volume: all units are priced
at the tier that contains the total quantity, plus that tier's ``flat_amount``. A quantity of
zero costs nothing in either mode (negative totals are billed as zero, as Stripe does for
meters).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any


def to_cents(amount: Decimal) -> int:
    return int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def decimal_field(tier: Mapping[str, Any], name: str) -> Decimal:
    raw = tier.get(f"{name}_decimal")
    if raw is None:
        raw = tier.get(name)
    return Decimal(str(raw)) if raw is not None else Decimal(0)


def graduated(tiers: Sequence[Mapping[str, Any]], quantity: Decimal) -> Decimal:
    total = Decimal(0)
    lower = Decimal(0)
    for tier in tiers:
        if quantity <= lower:
            break
        upper = tier.get("up_to")
        top = quantity if upper is None else min(quantity, Decimal(upper))
        units = top - lower
        if units > 0:
            total += units * decimal_field(tier, "unit_amount") + decimal_field(tier, "flat_amount")
        if upper is None:
            break
        lower = Decimal(upper)
    return total


def volume(tiers: Sequence[Mapping[str, Any]], quantity: Decimal) -> Decimal:
    if quantity <= 0:
        return Decimal(0)
    for tier in tiers:
        upper = tier.get("up_to")
        if upper is None or quantity <= Decimal(upper):
            return quantity * decimal_field(tier, "unit_amount") + decimal_field(
                tier, "flat_amount"
            )
    return Decimal(0)  # pragma: no cover - the last tier is always up_to=inf


def price_amount(price: Mapping[str, Any], quantity: Decimal | int) -> Decimal:
    """The exact amount in cents (unrounded) for ``quantity`` units of ``price``."""
    qty = Decimal(quantity)
    if qty <= 0:
        return Decimal(0)
    if price.get("billing_scheme") == "tiered":
        tiers = price.get("tiers") or []
        if price.get("tiers_mode") == "volume":
            return volume(tiers, qty)
        return graduated(tiers, qty)
    return qty * decimal_field(price, "unit_amount")


def line_amount(price: Mapping[str, Any], quantity: Decimal | int) -> int:
    """Integer cents for one invoice line (rounded half up once per line)."""
    return to_cents(price_amount(price, quantity))


def decimal_text(value: Decimal) -> str:
    """Stripe's decimal strings: no exponent, no trailing zeros (``"0.1"``, ``"1000"``)."""
    text = format(value.normalize(), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"
