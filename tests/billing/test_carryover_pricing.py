"""The price of carried-over units: the marginal price at their period's tier position."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from novo_gateway.billing.carryover import (
    describe,
    ended_at,
    marginal_cents,
    price_amount,
    settings_price,
    takes_usage,
)
from novo_gateway.billing.stripe_types import PeriodInvoice, PriceInfo, PriceTier
from novo_gateway.kit.config import Settings


def _price(*tiers: PriceTier, mode: str = "graduated") -> PriceInfo:
    return PriceInfo(
        id="price_x",
        product_id="prod_x",
        lookup_key=None,
        active=True,
        currency="usd",
        interval="month",
        usage_type="metered",
        meter_id="mtr_x",
        billing_scheme="tiered",
        tiers_mode=mode,
        tiers=tiers,
    )


# The default plan: 1,000 calls free, then $0.001 (0.1 cent) a call.
DEFAULT = _price(PriceTier(1000, Decimal(0)), PriceTier(None, Decimal("0.1")))
# A small plan: 10 free, then 1 cent a call.
SMALL = _price(PriceTier(10, Decimal(0)), PriceTier(None, Decimal(1)))


@pytest.mark.parametrize(
    ("invoiced", "late", "cents"),
    [
        (8, 2, 0),  # still inside the free tier: free
        (8, 7, 5),  # 2 free, 5 at 1 cent
        (10, 7, 7),  # all past the free tier
        (500, 7, 0),  # the default plan's free tier
        (0, 0, 0),
    ],
)
def test_late_units_cost_what_they_would_have_cost_in_their_own_period(
    invoiced: int, late: int, cents: int
) -> None:
    price = SMALL if invoiced < 100 else DEFAULT
    assert marginal_cents(price, invoiced, late) == cents


def test_late_units_are_priced_after_the_units_already_invoiced_not_from_zero() -> None:
    """Sent to the next period's meter they would have been free (inside its free tier)."""
    assert marginal_cents(DEFAULT, 1500, 700) == 70
    assert marginal_cents(DEFAULT, 0, 700) == 0


def test_carry_overs_of_one_period_add_up_to_one_invoice_of_all_its_units() -> None:
    """Stripe rounds each line to whole cents: the carry-overs are the differences of rounded
    totals, so the period's invoice and its carry-overs charge exactly what one line would."""
    invoiced, parts = 1003, [1, 2, 1, 4, 3]
    total_cents = round(price_amount(DEFAULT, invoiced))
    position = invoiced
    for units in parts:
        total_cents += marginal_cents(DEFAULT, position, units)
        position += units
    assert total_cents == 1 == int(price_amount(DEFAULT, 1014).to_integral_value())


def test_flat_amounts_and_volume_tiers_are_priced_as_stripe_prices_them() -> None:
    flat = _price(PriceTier(10, Decimal(0)), PriceTier(None, Decimal(1), flat_amount=Decimal(50)))
    assert marginal_cents(flat, 10, 1) == 51  # the first unit in a tier brings its flat amount
    assert marginal_cents(flat, 11, 1) == 1
    volume = _price(PriceTier(10, Decimal(2)), PriceTier(None, Decimal(1)), mode="volume")
    assert marginal_cents(volume, 9, 2) == 11 - 18  # all units move to the cheaper tier


def test_the_settings_price_matches_the_plan_setup_stripe_creates() -> None:
    price = settings_price(Settings(free_tier_calls=10, cost_per_call=Decimal("0.01")))
    assert marginal_cents(price, 8, 7) == 5


T = datetime(2026, 11, 1, tzinfo=UTC)
END = datetime(2026, 12, 1, tzinfo=UTC)


def _invoice(status: str, finalizes: datetime | None = None) -> PeriodInvoice:
    return PeriodInvoice("in_x", status, "cus_x", "sub_x", "usd", T, END, finalizes, 8, None)


def test_a_draft_takes_usage_until_shortly_before_it_finalizes() -> None:
    finalizes = datetime(2026, 12, 1, 1, tzinfo=UTC)
    assert takes_usage(_invoice("draft", finalizes), datetime(2026, 12, 1, 0, 54, tzinfo=UTC))
    assert not takes_usage(_invoice("draft", finalizes), datetime(2026, 12, 1, 0, 56, tzinfo=UTC))
    assert not takes_usage(_invoice("open"), T)
    assert not takes_usage(_invoice("paid"), T)


def test_the_end_of_a_reports_period_comes_from_the_accounts_known_period() -> None:
    inside, before, after = datetime(2026, 11, 20, tzinfo=UTC), T.replace(day=1, month=10), END
    assert ended_at(inside, T, END) == END
    assert ended_at(before, T, END) == T  # an earlier period: it ended by this one's start
    assert ended_at(after, T, END) is None  # a renewal not heard of yet: still running
    assert ended_at(inside, None, None) is None


def test_the_item_names_the_original_period() -> None:
    expected = "API usage 2026-11-01 – 2026-12-01, carried over: 7 calls"
    assert describe(_invoice("paid"), 7) == expected
