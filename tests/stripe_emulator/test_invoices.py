"""Invoices: previews, finalization grace, hosted pages and PDFs, payment and listing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import stripe

from .helpers import T0, create_customer, create_meter, create_metered_price, send_usage

PERIOD_END = T0 + 31 * 86400


@pytest.fixture
def setup(client: stripe.StripeClient) -> tuple[Any, Any, Any]:
    clock = client.v1.test_helpers.test_clocks.create({"frozen_time": T0})
    price = create_metered_price(client, create_meter(client).id)
    customer = create_customer(client, test_clock=clock.id)
    sub = client.v1.subscriptions.create({"customer": customer.id, "items": [{"price": price.id}]})
    return clock, customer, sub


def test_preview_shows_the_upcoming_invoice(
    client: stripe.StripeClient, setup: tuple[Any, Any, Any]
) -> None:
    _, customer, sub = setup
    send_usage(client, customer.id, 1500)
    preview = client.v1.invoices.create_preview({"customer": customer.id})
    assert preview.object == "invoice" and preview.id.startswith("upcoming_")
    assert (preview.period_start, preview.period_end) == (T0, PERIOD_END)
    assert preview.parent.subscription_details.subscription == sub.id
    line = preview.lines.data[0]
    assert (line.quantity, line.amount) == (1500, 50)
    assert line.parent.subscription_item_details.subscription_item == sub["items"].data[0].id
    assert line.pricing.price_details.price == sub["items"].data[0].price.id


def test_preview_without_subscription_is_invoice_upcoming_none(
    client: stripe.StripeClient,
) -> None:
    customer = create_customer(client)
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.invoices.create_preview({"customer": customer.id})
    assert info.value.code == "invoice_upcoming_none"


def test_renewal_invoice_stays_draft_during_the_grace_hour(
    client: stripe.StripeClient, setup: tuple[Any, Any, Any]
) -> None:
    clock, customer, sub = setup
    send_usage(client, customer.id, 1500)
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": PERIOD_END + 60})
    draft = client.v1.invoices.list({"subscription": sub.id, "status": "draft"}).data[0]
    assert draft.number is None and draft.automatically_finalizes_at == PERIOD_END + 3600
    send_usage(client, customer.id, 500, timestamp=PERIOD_END - 10)
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": PERIOD_END + 3600})
    paid = client.v1.invoices.retrieve(draft.id)
    assert (paid.status, paid.amount_paid, paid.lines.data[0].quantity) == ("paid", 100, 2000)


def test_finalized_invoice_has_number_and_hosted_pages(
    client: stripe.StripeClient, setup: tuple[Any, Any, Any]
) -> None:
    _, customer, sub = setup
    invoice = client.v1.invoices.retrieve(sub.latest_invoice)
    assert invoice.number.startswith(customer.invoice_prefix + "-")
    page = httpx.get(invoice.hosted_invoice_url)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert invoice.number in page.text
    pdf = httpx.get(invoice.invoice_pdf)
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-1.4") and pdf.content.rstrip().endswith(b"%%EOF")


def test_invoice_list_filters_by_customer_subscription_and_status(
    client: stripe.StripeClient, setup: tuple[Any, Any, Any]
) -> None:
    _, customer, sub = setup
    other = create_customer(client)
    assert [i.id for i in client.v1.invoices.list({"customer": customer.id}).data] == [
        sub.latest_invoice
    ]
    assert client.v1.invoices.list({"customer": other.id}).data == []
    assert len(client.v1.invoices.list({"subscription": sub.id, "status": "paid"}).data) == 1
    assert client.v1.invoices.list({"status": "open"}).data == []


def test_paying_a_paid_invoice_is_an_error(
    client: stripe.StripeClient, setup: tuple[Any, Any, Any]
) -> None:
    _, _, sub = setup
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.invoices.pay(sub.latest_invoice)
    assert info.value.code == "invoice_already_paid"


def test_invoice_lines_use_current_shapes(
    client: stripe.StripeClient, setup: tuple[Any, Any, Any]
) -> None:
    _, _, sub = setup
    invoice = client.v1.invoices.retrieve(sub.latest_invoice)
    assert invoice.parent.type == "subscription_details"
    line = client.v1.invoices.line_items.list(invoice.id).data[0]
    assert line.object == "line_item" and line.id.startswith("il_")
    assert line.parent.type == "subscription_item_details"
    assert line.pricing.type == "price_details"
