"""Test clocks: lifecycle, advance limits and closing billing periods."""

from __future__ import annotations

import pytest
import stripe

from .helpers import T0, create_customer, create_meter, create_metered_price, send_usage


def test_create_retrieve_list_delete(client: stripe.StripeClient) -> None:
    clock = client.v1.test_helpers.test_clocks.create({"frozen_time": T0, "name": "month"})
    assert clock.id.startswith("clock_") and clock.status == "ready"
    assert client.v1.test_helpers.test_clocks.retrieve(clock.id).frozen_time == T0
    assert [c.id for c in client.v1.test_helpers.test_clocks.list().data] == [clock.id]
    customer = create_customer(client, test_clock=clock.id)
    assert client.v1.test_helpers.test_clocks.delete(clock.id).deleted is True
    assert client.v1.customers.retrieve(customer.id).deleted is True


def test_customer_on_a_clock_lives_on_its_time(client: stripe.StripeClient) -> None:
    clock = client.v1.test_helpers.test_clocks.create({"frozen_time": T0})
    customer = create_customer(client, test_clock=clock.id)
    assert (customer.created, customer.test_clock) == (T0, clock.id)


def test_advance_must_move_forward(client: stripe.StripeClient) -> None:
    clock = client.v1.test_helpers.test_clocks.create({"frozen_time": T0})
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": T0 - 1})


def test_advance_is_limited_to_two_intervals(client: stripe.StripeClient) -> None:
    clock = client.v1.test_helpers.test_clocks.create({"frozen_time": T0})
    price = create_metered_price(client, create_meter(client).id)
    customer = create_customer(client, test_clock=clock.id)
    client.v1.subscriptions.create({"customer": customer.id, "items": [{"price": price.id}]})
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": T0 + 63 * 86400})
    assert info.value.param == "frozen_time"


def test_advancing_past_period_end_invoices_the_period(client: stripe.StripeClient) -> None:
    clock = client.v1.test_helpers.test_clocks.create({"frozen_time": T0})
    price = create_metered_price(client, create_meter(client).id)
    customer = create_customer(client, test_clock=clock.id)
    sub = client.v1.subscriptions.create({"customer": customer.id, "items": [{"price": price.id}]})
    send_usage(client, customer.id, 11_000)
    advanced = client.v1.test_helpers.test_clocks.advance(
        clock.id, {"frozen_time": T0 + 31 * 86400 + 3600}
    )
    assert advanced.status == "advancing"
    assert client.v1.test_helpers.test_clocks.retrieve(clock.id).status == "ready"
    invoice = client.v1.invoices.list({"subscription": sub.id}).data[0]
    assert (invoice.billing_reason, invoice.amount_due, invoice.status) == (
        "subscription_cycle",
        1000,
        "paid",
    )
    item = client.v1.subscriptions.retrieve(sub.id)["items"].data[0]
    assert item.current_period_start == T0 + 31 * 86400
    assert item.current_period_end == T0 + (31 + 28) * 86400


def test_three_customers_per_clock(client: stripe.StripeClient) -> None:
    clock = client.v1.test_helpers.test_clocks.create({"frozen_time": T0})
    for _ in range(3):
        create_customer(client, card=None, test_clock=clock.id)
    with pytest.raises(stripe.InvalidRequestError):
        create_customer(client, card=None, test_clock=clock.id)
