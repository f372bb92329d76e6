"""Prices in `Decimal`, never float: the free tier, the cost of the units beyond it, and display.

What is billed is units, not calls: each billable ledger event carries its units (1 for a plain
call; a handler or an upstream route may bill more), and a period's usage is the sum of them.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

COST_PLACES = Decimal("0.0001")
CENTS = Decimal("0.01")


def billable_units(total_units: int, free_tier_units: int) -> int:
    """Units beyond the free tier (0 while within it)."""
    return max(0, total_units - free_tier_units)


def free_tier_remaining(total_units: int, free_tier_units: int) -> int:
    return max(0, free_tier_units - total_units)


def estimated_cost(total_units: int, free_tier_units: int, cost_per_unit: Decimal) -> Decimal:
    """max(0, units - free tier) * cost per unit, rounded half-up to 4 decimal places."""
    cost = billable_units(total_units, free_tier_units) * cost_per_unit
    return cost.quantize(COST_PLACES, rounding=ROUND_HALF_UP)


def format_cost(amount: Decimal) -> str:
    """An amount in dollars with 4 decimals, as the original shows it: `$1.2345`."""
    return f"${amount.quantize(COST_PLACES, rounding=ROUND_HALF_UP):f}"


def format_unit_price(cost_per_unit: Decimal) -> str:
    """The configured price per unit without trailing zeros: `$0.001`."""
    text = f"{cost_per_unit.normalize():f}"
    return f"${text}"


def to_cents(amount: Decimal) -> Decimal:
    """An amount in dollars rounded to whole cents, half up, as Stripe rounds an invoice line."""
    return amount.quantize(CENTS, rounding=ROUND_HALF_UP)


def format_charge(amount: Decimal) -> str:
    """What Stripe will charge for `amount`: dollars rounded to cents, `$0.10`."""
    return f"${to_cents(amount):f}"
