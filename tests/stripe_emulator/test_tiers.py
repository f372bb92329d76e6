"""Tier maths: graduated and volume tiers, flat amounts, rounding per line."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import stripe

from stripe_emulator.tiers import line_amount

from .helpers import (
    TIERS_FIRST_1000_FREE,
    create_customer,
    create_meter,
    create_metered_price,
    send_usage,
)

GRADUATED: dict[str, Any] = {
    "billing_scheme": "tiered",
    "tiers_mode": "graduated",
    "tiers": [
        {"flat_amount": None, "unit_amount": 0, "unit_amount_decimal": "0", "up_to": 1000},
        {"flat_amount": None, "unit_amount": None, "unit_amount_decimal": "0.1", "up_to": None},
    ],
}


@pytest.mark.parametrize(
    ("units", "cents"),
    [(0, 0), (999, 0), (1000, 0), (1001, 0), (1005, 1), (1500, 50), (11_000, 1000)],
)
def test_first_thousand_free_then_a_tenth_of_a_cent(units: int, cents: int) -> None:
    assert line_amount(GRADUATED, units) == cents


def test_line_amount_rounds_half_up_once_per_line() -> None:
    assert line_amount(GRADUATED, 1004) == 0
    assert line_amount(GRADUATED, 1015) == 2


def test_volume_mode_prices_every_unit_at_the_reached_tier() -> None:
    price = {
        "billing_scheme": "tiered",
        "tiers_mode": "volume",
        "tiers": [
            {"up_to": 1000, "unit_amount_decimal": "0.2"},
            {"up_to": None, "unit_amount_decimal": "0.1"},
        ],
    }
    assert line_amount(price, 1000) == 200
    assert line_amount(price, 1001) == 100


def test_graduated_flat_amount_is_added_once_the_tier_is_reached() -> None:
    price = {
        "billing_scheme": "tiered",
        "tiers_mode": "graduated",
        "tiers": [
            {"up_to": 1000, "flat_amount": 500, "unit_amount": 0},
            {"up_to": None, "flat_amount": 100, "unit_amount_decimal": "0.1"},
        ],
    }
    assert line_amount(price, 1) == 500
    assert line_amount(price, 1000) == 500
    assert line_amount(price, 1001) == 600


def test_volume_flat_amount_of_the_containing_tier() -> None:
    price = {
        "billing_scheme": "tiered",
        "tiers_mode": "volume",
        "tiers": [
            {"up_to": 10, "flat_amount": 1000},
            {"up_to": None, "flat_amount": 2000, "unit_amount": 1},
        ],
    }
    assert line_amount(price, 10) == 1000
    assert line_amount(price, 11) == 2011


def test_per_unit_decimal_price() -> None:
    price = {"billing_scheme": "per_unit", "unit_amount_decimal": "0.25"}
    assert line_amount(price, 3) == 1
    assert line_amount(price, Decimal(6)) == 2


def test_tiers_are_only_returned_when_expanded(client: stripe.StripeClient) -> None:
    meter = create_meter(client)
    price = create_metered_price(client, meter.id)
    assert "tiers" not in price
    expanded = client.v1.prices.retrieve(price.id, {"expand": ["tiers"]})
    assert [t.up_to for t in expanded.tiers] == [1000, None]
    assert str(expanded.tiers[1].unit_amount_decimal) == "0.1"


@pytest.mark.parametrize(("units", "cents"), [(1500, 50), (11_000, 1000)])
def test_upcoming_invoice_prices_usage_through_the_tiers(
    client: stripe.StripeClient, units: int, cents: int
) -> None:
    meter = create_meter(client)
    price = create_metered_price(client, meter.id, TIERS_FIRST_1000_FREE)
    customer = create_customer(client)
    sub = client.v1.subscriptions.create({"customer": customer.id, "items": [{"price": price.id}]})
    send_usage(client, customer.id, units)
    preview = client.v1.invoices.create_preview({"subscription": sub.id})
    assert preview.amount_due == cents
    assert preview.lines.data[0].quantity == units
