"""Subscriptions: creation, periods, updates, cancellation and the payment-driven lifecycle."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from .helpers import (
    T0,
    Control,
    create_customer,
    create_meter,
    create_metered_price,
    send_usage,
)

MONTH_2027_01 = 31 * 86400
GRACE = 3600


@pytest.fixture
def price(client: stripe.StripeClient) -> stripe.Price:
    return create_metered_price(client, create_meter(client).id)


@pytest.fixture
def clock(client: stripe.StripeClient) -> stripe.test_helpers.TestClock:
    return client.v1.test_helpers.test_clocks.create({"frozen_time": T0})


def _flat_price(client: stripe.StripeClient, cents: int = 1000) -> stripe.Price:
    return client.v1.prices.create(
        {
            "currency": "usd",
            "unit_amount": cents,
            "product_data": {"name": "Base plan"},
            "recurring": {"interval": "month"},
        }
    )


def _subscribe(
    client: stripe.StripeClient, customer_id: str, price_id: str, **extra: Any
) -> stripe.Subscription:
    return client.v1.subscriptions.create(
        {"customer": customer_id, "items": [{"price": price_id}], **extra}
    )


def test_create_expands_latest_invoice_customer_and_price(
    client: stripe.StripeClient, price: stripe.Price
) -> None:
    customer = create_customer(client)
    sub = _subscribe(
        client,
        customer.id,
        price.id,
        expand=["latest_invoice", "customer", "items.data.price.product"],
        metadata={"account": "acc_1"},
    )
    assert sub.id.startswith("sub_") and sub.status == "active"
    assert sub.customer.email == "dev@example.com"
    assert sub.latest_invoice.billing_reason == "subscription_create"
    assert (sub.latest_invoice.status, sub.latest_invoice.amount_due) == ("paid", 0)
    item = sub["items"].data[0]
    assert item.id.startswith("si_") and item.price.product.name == "Novo API"
    assert sub.metadata["account"] == "acc_1"


def test_items_carry_a_monthly_period_from_the_anchor(
    client: stripe.StripeClient, price: stripe.Price, clock: Any
) -> None:
    customer = create_customer(client, test_clock=clock.id)
    sub = _subscribe(client, customer.id, price.id)
    item = sub["items"].data[0]
    assert sub.billing_cycle_anchor == T0 == sub.start_date
    assert (item.current_period_start, item.current_period_end) == (T0, T0 + MONTH_2027_01)
    assert "current_period_end" not in sub


def test_unknown_price_is_resource_missing(client: stripe.StripeClient) -> None:
    customer = create_customer(client)
    with pytest.raises(stripe.InvalidRequestError) as info:
        _subscribe(client, customer.id, "price_missing")
    assert (info.value.code, info.value.param) == ("resource_missing", "items[0][price]")


def test_list_filters_by_customer_status_and_price(
    client: stripe.StripeClient, price: stripe.Price
) -> None:
    first = create_customer(client)
    second = create_customer(client)
    mine = _subscribe(client, first.id, price.id)
    other = _subscribe(client, second.id, price.id)
    client.v1.subscriptions.cancel(other.id)
    assert [s.id for s in client.v1.subscriptions.list({"customer": first.id}).data] == [mine.id]
    assert [s.id for s in client.v1.subscriptions.list({"price": price.id}).data] == [mine.id]
    canceled = client.v1.subscriptions.list({"status": "canceled"}).data
    assert [s.id for s in canceled] == [other.id]


def test_cancel_with_invoice_now_bills_usage_so_far(
    client: stripe.StripeClient, price: stripe.Price, clock: Any
) -> None:
    customer = create_customer(client, test_clock=clock.id)
    sub = _subscribe(client, customer.id, price.id)
    send_usage(client, customer.id, 1500)
    canceled = client.v1.subscriptions.cancel(
        sub.id, {"invoice_now": True, "expand": ["latest_invoice"]}
    )
    assert canceled.status == "canceled" and canceled.ended_at == T0
    assert (canceled.latest_invoice.amount_paid, canceled.latest_invoice.status) == (50, "paid")


def test_cancel_without_invoice_now_does_not_bill_usage(
    client: stripe.StripeClient, price: stripe.Price, clock: Any
) -> None:
    customer = create_customer(client, test_clock=clock.id)
    sub = _subscribe(client, customer.id, price.id)
    send_usage(client, customer.id, 1500)
    client.v1.subscriptions.cancel(sub.id)
    assert [i.billing_reason for i in client.v1.invoices.list({"customer": customer.id}).data] == [
        "subscription_create"
    ]


def test_cancel_at_period_end_invoices_the_last_period_then_ends(
    client: stripe.StripeClient, price: stripe.Price, clock: Any
) -> None:
    customer = create_customer(client, test_clock=clock.id)
    sub = _subscribe(client, customer.id, price.id)
    updated = client.v1.subscriptions.update(sub.id, {"cancel_at_period_end": True})
    assert updated.cancel_at == T0 + MONTH_2027_01 and updated.status == "active"
    send_usage(client, customer.id, 2000)
    client.v1.test_helpers.test_clocks.advance(
        clock.id, {"frozen_time": T0 + MONTH_2027_01 + GRACE}
    )
    final = client.v1.subscriptions.retrieve(sub.id, {"expand": ["latest_invoice"]})
    assert final.status == "canceled" and final.ended_at == T0 + MONTH_2027_01
    assert (final.latest_invoice.amount_paid, final.latest_invoice.status) == (100, "paid")


def test_period_end_on_the_global_clock_closes_the_period(
    client: stripe.StripeClient, control: Control, price: stripe.Price
) -> None:
    customer = create_customer(client)
    sub = _subscribe(client, customer.id, price.id)
    send_usage(client, customer.id, 11_000)
    end = sub["items"].data[0].current_period_end
    control.advance(end - control.now() + GRACE)
    renewed = client.v1.subscriptions.retrieve(sub.id, {"expand": ["latest_invoice"]})
    assert renewed["items"].data[0].current_period_start == end
    invoice = renewed.latest_invoice
    assert (invoice.billing_reason, invoice.status, invoice.amount_paid) == (
        "subscription_cycle",
        "paid",
        1000,
    )
    assert (invoice.period_start, invoice.period_end) == (sub.start_date, end)


def test_failed_renewal_makes_it_past_due_and_paying_makes_it_active(
    client: stripe.StripeClient, price: stripe.Price, clock: Any
) -> None:
    customer = create_customer(client, card="pm_card_chargeCustomerFail", test_clock=clock.id)
    sub = _subscribe(client, customer.id, price.id)
    send_usage(client, customer.id, 1500)
    client.v1.test_helpers.test_clocks.advance(
        clock.id, {"frozen_time": T0 + MONTH_2027_01 + GRACE}
    )
    past_due = client.v1.subscriptions.retrieve(sub.id, {"expand": ["latest_invoice"]})
    invoice = past_due.latest_invoice
    assert past_due.status == "past_due"
    assert client.v1.customers.retrieve(customer.id).delinquent is True
    assert (invoice.status, invoice.attempt_count, invoice.amount_remaining) == ("open", 1, 50)
    assert invoice.next_payment_attempt == T0 + MONTH_2027_01 + GRACE + 3 * 86400
    with pytest.raises(stripe.CardError):
        client.v1.invoices.pay(invoice.id)
    card = client.v1.payment_methods.attach("pm_card_visa", {"customer": customer.id})
    client.v1.customers.update(
        customer.id, {"invoice_settings": {"default_payment_method": card.id}}
    )
    paid = client.v1.invoices.pay(invoice.id)
    assert (paid.status, paid.amount_paid) == ("paid", 50)
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"
    assert client.v1.customers.retrieve(customer.id).delinquent is False


def test_dunning_cancels_after_the_last_retry_fails(
    client: stripe.StripeClient, price: stripe.Price, clock: Any
) -> None:
    customer = create_customer(client, card="pm_card_chargeCustomerFail", test_clock=clock.id)
    sub = _subscribe(client, customer.id, price.id)
    send_usage(client, customer.id, 1500)
    renewal = T0 + MONTH_2027_01 + GRACE
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": renewal})
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": renewal + 15 * 86400})
    invoice = client.v1.invoices.list({"subscription": sub.id, "status": "open"}).data[0]
    assert invoice.attempt_count == 4 and invoice.next_payment_attempt is None
    ended = client.v1.subscriptions.retrieve(sub.id)
    assert ended.status == "canceled"
    assert ended.cancellation_details.reason == "payment_failed"


def test_dunning_can_end_in_unpaid(
    client: stripe.StripeClient, control: Control, price: stripe.Price, clock: Any
) -> None:
    control.configure(dunning_final_status="unpaid")
    customer = create_customer(client, card="pm_card_chargeCustomerFail", test_clock=clock.id)
    sub = _subscribe(client, customer.id, price.id)
    send_usage(client, customer.id, 1500)
    renewal = T0 + MONTH_2027_01 + GRACE
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": renewal + 16 * 86400})
    assert client.v1.subscriptions.retrieve(sub.id).status == "unpaid"


def test_licensed_price_is_billed_in_advance(client: stripe.StripeClient, clock: Any) -> None:
    customer = create_customer(client, test_clock=clock.id)
    sub = _subscribe(client, customer.id, _flat_price(client).id, expand=["latest_invoice"])
    assert (sub.latest_invoice.amount_paid, sub["items"].data[0].quantity) == (1000, 1)
    line = sub.latest_invoice.lines.data[0]
    assert (line.period.start, line.period.end) == (T0, T0 + MONTH_2027_01)


def test_failed_first_payment_leaves_the_subscription_incomplete(
    client: stripe.StripeClient, clock: Any
) -> None:
    customer = create_customer(client, card="pm_card_chargeCustomerFail", test_clock=clock.id)
    sub = _subscribe(client, customer.id, _flat_price(client).id, expand=["latest_invoice"])
    assert sub.status == "incomplete"
    assert (sub.latest_invoice.status, sub.latest_invoice.attempt_count) == ("open", 1)
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": T0 + 24 * 3600})
    expired = client.v1.subscriptions.retrieve(sub.id, {"expand": ["latest_invoice"]})
    assert expired.status == "incomplete_expired"
    assert expired.latest_invoice.status == "void"


def test_error_if_incomplete_raises_and_creates_nothing(
    client: stripe.StripeClient, clock: Any
) -> None:
    customer = create_customer(client, card="pm_card_chargeCustomerFail", test_clock=clock.id)
    with pytest.raises(stripe.CardError) as info:
        _subscribe(
            client, customer.id, _flat_price(client).id, payment_behavior="error_if_incomplete"
        )
    assert info.value.code == "card_declined"
    assert client.v1.subscriptions.list({"status": "all"}).data == []


def test_removed_metered_item_bills_its_usage_until_removal(
    client: stripe.StripeClient, clock: Any
) -> None:
    first_meter = create_meter(client, event_name="calls_a")
    second_meter = create_meter(client, event_name="calls_b")
    per_call = [{"up_to": "inf", "unit_amount": 1}]
    price_a = create_metered_price(client, first_meter.id, per_call)
    price_b = create_metered_price(client, second_meter.id, per_call)
    customer = create_customer(client, test_clock=clock.id)
    sub = client.v1.subscriptions.create(
        {"customer": customer.id, "items": [{"price": price_a.id}, {"price": price_b.id}]}
    )
    send_usage(client, customer.id, 7, event_name="calls_a")
    item_a = next(i for i in sub["items"].data if i.price.id == price_a.id)
    client.v1.subscriptions.update(sub.id, {"items": [{"id": item_a.id, "deleted": True}]})
    send_usage(client, customer.id, 3, event_name="calls_b")
    client.v1.test_helpers.test_clocks.advance(
        clock.id, {"frozen_time": T0 + MONTH_2027_01 + GRACE}
    )
    invoice = client.v1.invoices.list({"subscription": sub.id}).data[0]
    assert sorted(line.amount for line in invoice.lines.data) == [3, 7]
    assert invoice.amount_paid == 10


def test_update_emits_previous_attributes(client: stripe.StripeClient, price: stripe.Price) -> None:
    customer = create_customer(client)
    sub = _subscribe(client, customer.id, price.id)
    client.v1.subscriptions.update(sub.id, {"metadata": {"plan": "pro"}})
    event = client.v1.events.list({"type": "customer.subscription.updated"}).data[0]
    assert event.data.previous_attributes.to_dict() == {"metadata": {}}
    assert event.data.object.metadata["plan"] == "pro"
