"""Invoice items: pending one-off charges that join the next invoice; late usage is not invoiced."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from .helpers import T0, create_customer, create_meter, create_metered_price, send_usage

PERIOD_END = T0 + 31 * 86400
NEXT_END = PERIOD_END + 30 * 86400


@pytest.fixture
def setup(client: stripe.StripeClient) -> tuple[Any, Any, Any]:
    clock = client.v1.test_helpers.test_clocks.create({"frozen_time": T0})
    price = create_metered_price(client, create_meter(client).id)
    customer = create_customer(client, test_clock=clock.id)
    sub = client.v1.subscriptions.create({"customer": customer.id, "items": [{"price": price.id}]})
    return clock, customer, sub


def _item(client: stripe.StripeClient, customer: Any, sub: Any, **extra: Any) -> Any:
    params: dict[str, Any] = {
        "customer": customer.id,
        "subscription": sub.id,
        "amount": 250,
        "currency": "usd",
        "description": "API usage, carried over: 7 calls",
        "period": {"start": T0, "end": PERIOD_END},
        "metadata": {"novo_units": "7"},
        **extra,
    }
    return client.v1.invoice_items.create(params)


def test_a_pending_item_has_stripes_shape(
    client: stripe.StripeClient, setup: tuple[Any, Any, Any]
) -> None:
    _, customer, sub = setup
    item = _item(client, customer, sub)
    assert item.id.startswith("ii_") and item.object == "invoiceitem"
    assert (item.amount, item.currency, item.quantity, item.invoice) == (250, "usd", 1, None)
    assert item.parent.subscription_details.subscription == sub.id
    assert (item.period.start, item.period.end) == (T0, PERIOD_END)
    assert item.metadata["novo_units"] == "7"
    assert client.v1.invoice_items.retrieve(item.id).amount == 250
    pending = client.v1.invoice_items.list({"customer": customer.id, "pending": True})
    assert [i.id for i in pending.data] == [item.id]


def test_a_pending_item_joins_the_next_renewal_invoice_once(
    client: stripe.StripeClient, setup: tuple[Any, Any, Any]
) -> None:
    clock, customer, sub = setup
    item = _item(client, customer, sub)
    preview = client.v1.invoices.create_preview({"customer": customer.id})
    assert [line.amount for line in preview.lines.data] == [0, 250]

    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": PERIOD_END + 3600})
    renewal = client.v1.invoices.list({"subscription": sub.id, "limit": 1}).data[0]
    assert (renewal.status, renewal.amount_paid) == ("paid", 250)
    [metered, carried] = renewal.lines.data
    assert metered.parent.type == "subscription_item_details"
    assert carried.parent.type == "invoice_item_details"
    assert carried.parent.invoice_item_details.invoice_item == item.id
    assert carried.description == "API usage, carried over: 7 calls"
    assert carried.metadata["novo_units"] == "7"
    assert client.v1.invoice_items.retrieve(item.id).invoice == renewal.id

    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": NEXT_END + 3600})
    following = client.v1.invoices.list({"subscription": sub.id, "limit": 1}).data[0]
    assert following.id != renewal.id and following.amount_due == 0


def test_usage_for_a_finalized_period_is_counted_by_the_meter_but_invoiced_nowhere(
    client: stripe.StripeClient, setup: tuple[Any, Any, Any]
) -> None:
    clock, customer, sub = setup
    meter_id = sub["items"].data[0].price.recurring.meter
    send_usage(client, customer.id, 1500, timestamp=T0 + 60)
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": PERIOD_END + 3600})
    send_usage(client, customer.id, 500, timestamp=PERIOD_END - 10)  # after finalization

    summaries = client.v1.billing.meters.event_summaries.list(
        meter_id, {"customer": customer.id, "start_time": T0, "end_time": PERIOD_END}
    )
    assert sum(s.aggregated_value for s in summaries.data) == 2000
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": NEXT_END + 3600})
    invoiced = [
        line.quantity
        for invoice in client.v1.invoices.list({"subscription": sub.id}).data
        for line in invoice.lines.data
    ]
    assert sum(invoiced) == 1500


def test_an_item_needs_an_amount_and_a_customer_it_belongs_with(
    client: stripe.StripeClient, setup: tuple[Any, Any, Any]
) -> None:
    _, customer, sub = setup
    other = create_customer(client)
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.invoice_items.create({"customer": customer.id, "currency": "usd"})
    assert info.value.param == "amount"
    with pytest.raises(stripe.InvalidRequestError) as info:
        _item(client, other, sub)
    assert info.value.param == "subscription"
    with pytest.raises(stripe.InvalidRequestError) as info:
        _item(client, customer, sub, pricing={"price": "price_x"})
    assert info.value.code == "parameter_unsupported"


def test_only_a_pending_item_can_be_deleted(
    client: stripe.StripeClient, setup: tuple[Any, Any, Any]
) -> None:
    clock, customer, sub = setup
    gone = _item(client, customer, sub)
    assert client.v1.invoice_items.delete(gone.id).deleted is True
    kept = _item(client, customer, sub)
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": PERIOD_END + 3600})
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoice_items.delete(kept.id)


def test_a_one_off_invoice_takes_the_customers_own_pending_items_when_asked(
    client: stripe.StripeClient, setup: tuple[Any, Any, Any]
) -> None:
    _, customer, sub = setup
    held = _item(client, customer, sub)  # the subscription's: waits for its next invoice
    own = _item(client, customer, sub, subscription=None)
    assert client.v1.invoices.create({"customer": customer.id}).lines.data == []  # exclude

    invoice = client.v1.invoices.create(
        {"customer": customer.id, "pending_invoice_items_behavior": "include"}
    )

    assert (invoice.status, invoice.billing_reason, invoice.auto_advance) == (
        "draft",
        "manual",
        False,
    )
    assert invoice.parent is None
    assert [line.amount for line in invoice.lines.data] == [250]
    assert client.v1.invoice_items.retrieve(own.id).invoice == invoice.id
    assert client.v1.invoice_items.retrieve(held.id).invoice is None
    final = client.v1.invoices.finalize_invoice(invoice.id)
    assert (final.status, final.total, final.amount_due) == ("open", 250, 250)
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.invoices.create({"customer": "cus_missing"})
    assert info.value.param == "customer"
