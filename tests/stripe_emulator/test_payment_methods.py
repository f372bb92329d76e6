"""Payment methods as Stripe has them: no card, no payment; a card saved in the portal pays."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
import stripe

from .helpers import T0, Control, create_customer, create_meter, create_metered_price, send_usage

MONTH_2027_01 = 31 * 86400
GRACE = 3600
RENEWAL = T0 + MONTH_2027_01 + GRACE


@pytest.fixture
def clock(client: stripe.StripeClient) -> Any:
    return client.v1.test_helpers.test_clocks.create({"frozen_time": T0})


def _portal_config(client: stripe.StripeClient) -> Any:
    return client.v1.billing_portal.configurations.create(
        {"features": {"payment_method_update": {"enabled": True}}}
    )


def _card_less_past_due(client: stripe.StripeClient, clock: Any) -> tuple[Any, Any]:
    price = create_metered_price(client, create_meter(client).id)
    customer = create_customer(client, card=None, test_clock=clock.id)
    sub = client.v1.subscriptions.create({"customer": customer.id, "items": [{"price": price.id}]})
    assert sub.status == "active"  # the first invoice of a metered price is $0
    send_usage(client, customer.id, 1500)
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": RENEWAL})
    return customer, sub


def test_a_customer_without_a_payment_method_cannot_pay_and_goes_past_due(
    client: stripe.StripeClient, clock: Any
) -> None:
    customer, sub = _card_less_past_due(client, clock)

    current = client.v1.subscriptions.retrieve(sub.id, {"expand": ["latest_invoice"]})
    assert current.status == "past_due"
    invoice = current.latest_invoice
    assert (invoice.status, invoice.amount_remaining, invoice.attempt_count) == ("open", 50, 1)
    failed = client.v1.events.list({"type": "invoice.payment_failed"}).data
    assert [e.data.object.id for e in failed] == [invoice.id]
    assert client.v1.customers.retrieve(customer.id).delinquent is True


def test_a_zero_invoice_needs_no_payment_method(client: stripe.StripeClient, clock: Any) -> None:
    price = create_metered_price(client, create_meter(client).id)
    customer = create_customer(client, card=None, test_clock=clock.id)
    sub = client.v1.subscriptions.create({"customer": customer.id, "items": [{"price": price.id}]})
    send_usage(client, customer.id, 1000)  # the free tier only
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": RENEWAL})
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"


def test_a_card_saved_in_the_portal_pays_the_next_attempt(
    client: stripe.StripeClient, clock: Any
) -> None:
    customer, sub = _card_less_past_due(client, clock)
    config = _portal_config(client)
    session = client.v1.billing_portal.sessions.create(
        {
            "customer": customer.id,
            "configuration": config.id,
            "return_url": "https://example.com/billing",
            "flow_data": {
                "type": "payment_method_update",
                "after_completion": {
                    "type": "redirect",
                    "redirect": {"return_url": "https://example.com/billing?card=saved"},
                },
            },
        }
    )
    assert session.flow.type == "payment_method_update"
    page = httpx.get(session.url)
    assert "No payment method on file." in page.text
    action = re.search(r"action='([^']*/payment_method\?s=[^']*)'", page.text)
    assert action is not None

    saved = httpx.post(
        session.url.split("/emulator/")[0] + action.group(1).replace("&amp;", "&"),
        data={"card": "pm_card_visa"},
    )

    assert saved.status_code == 303
    assert saved.headers["location"] == "https://example.com/billing?card=saved"
    default = client.v1.customers.retrieve(customer.id).invoice_settings.default_payment_method
    assert default is not None and default.startswith("pm_")
    assert "Visa ending 4242" in httpx.get(session.url).text
    assert client.v1.subscriptions.retrieve(sub.id).status == "past_due"
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": RENEWAL + 3 * 86400 + 60})
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"
    [invoice] = client.v1.invoices.list({"subscription": sub.id, "status": "paid"}).data[:1]
    assert invoice.amount_paid == 50


def test_an_open_invoice_can_be_paid_from_the_portal(
    client: stripe.StripeClient, clock: Any, control: Control
) -> None:
    customer, sub = _card_less_past_due(client, clock)
    control.http.post("/_emulator/portal/default").raise_for_status()
    session = client.v1.billing_portal.sessions.create(
        {"customer": customer.id, "return_url": "https://example.com/billing"}
    )
    base = session.url.split("/emulator/")[0]
    page = httpx.get(session.url).text
    card = re.search(r"action='([^']*/payment_method\?s=[^']*)'", page)
    assert card is not None
    httpx.post(base + card.group(1), data={"card": "pm_card_visa"})
    pay = re.search(r"action='([^']*/pay/in_[^']*)'", httpx.get(session.url).text)
    assert pay is not None

    paid = httpx.post(base + pay.group(1))

    assert paid.status_code == 303
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"


def test_the_portal_forms_need_the_sessions_token(client: stripe.StripeClient, clock: Any) -> None:
    customer, _ = _card_less_past_due(client, clock)
    config = _portal_config(client)
    session = client.v1.billing_portal.sessions.create(
        {"customer": customer.id, "configuration": config.id, "return_url": "https://a.example"}
    )
    base = session.url.split("?")[0]
    refused = httpx.post(f"{base}/payment_method?s=wrong", data={"card": "pm_card_visa"})
    assert refused.status_code == 404
    assert client.v1.customers.retrieve(customer.id).invoice_settings.default_payment_method is None


def test_the_payment_method_flow_needs_the_feature_enabled(client: stripe.StripeClient) -> None:
    customer = create_customer(client, card=None)
    config = client.v1.billing_portal.configurations.create(
        {"features": {"invoice_history": {"enabled": True}}}
    )
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.billing_portal.sessions.create(
            {
                "customer": customer.id,
                "configuration": config.id,
                "return_url": "https://a.example",
                "flow_data": {"type": "payment_method_update"},
            }
        )
    assert caught.value.param == "flow_data[type]"
