"""Customer portal configurations and sessions."""

from __future__ import annotations

import httpx
import pytest
import stripe

from .helpers import Control, create_customer, create_meter, create_metered_price


def test_configuration_create_update_list(client: stripe.StripeClient) -> None:
    config = client.v1.billing_portal.configurations.create(
        {
            "features": {"invoice_history": {"enabled": True}},
            "default_return_url": "https://example.com/account",
        }
    )
    # A configuration made through the API never becomes the default (the Dashboard's is).
    assert config.id.startswith("bpc_") and config.is_default is False
    assert config.features.invoice_history.enabled is True
    updated = client.v1.billing_portal.configurations.update(
        config.id, {"features": {"subscription_cancel": {"enabled": True}}}
    )
    assert updated.features.subscription_cancel.enabled is True
    assert updated.features.invoice_history.enabled is True
    listed = client.v1.billing_portal.configurations.list({"is_default": False}).data
    assert [c.id for c in listed] == [config.id]
    assert client.v1.billing_portal.configurations.list({"is_default": True}).data == []


def test_session_page_shows_subscription_invoices_and_return_link(
    client: stripe.StripeClient,
) -> None:
    price = create_metered_price(client, create_meter(client).id)
    customer = create_customer(client, email="<b>alice</b>@example.com")
    sub = client.v1.subscriptions.create({"customer": customer.id, "items": [{"price": price.id}]})
    config = client.v1.billing_portal.configurations.create(
        {"features": {"invoice_history": {"enabled": True}}}
    )
    session = client.v1.billing_portal.sessions.create(
        {
            "customer": customer.id,
            "return_url": "https://example.com/back?a=1&b=<2>",
            "configuration": config.id,
        }
    )
    assert session.id.startswith("bps_") and session.configuration == config.id
    page = httpx.get(session.url)
    assert page.status_code == 200
    assert sub.id in page.text and "active" in page.text
    assert "https://example.com/back?a=1&amp;b=&lt;2&gt;" in page.text
    assert "&lt;b&gt;alice&lt;/b&gt;@example.com" in page.text
    assert "<b>alice</b>" not in page.text
    invoice = client.v1.invoices.retrieve(sub.latest_invoice)
    assert invoice.number in page.text


def test_session_without_configuration_fails_in_test_mode_until_a_default_is_saved(
    client: stripe.StripeClient, control: Control
) -> None:
    customer = create_customer(client, card=None)
    client.v1.billing_portal.configurations.create(
        {"features": {"invoice_history": {"enabled": True}}}
    )
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.billing_portal.sessions.create(
            {"customer": customer.id, "return_url": "https://example.com"}
        )
    assert info.value.user_message is not None
    assert info.value.user_message.startswith(
        "No configuration provided and your test mode default configuration has not been created."
    )
    saved = control.http.post("/_emulator/portal/default").json()["id"]
    session = client.v1.billing_portal.sessions.create(
        {"customer": customer.id, "return_url": "https://example.com"}
    )
    assert session.configuration == saved
    [default] = client.v1.billing_portal.configurations.list({"is_default": True}).data
    assert default.id == saved


def test_session_needs_a_return_url_without_a_default(
    client: stripe.StripeClient, control: Control
) -> None:
    control.http.post("/_emulator/portal/default").raise_for_status()
    customer = create_customer(client, card=None)
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.billing_portal.sessions.create({"customer": customer.id})
    assert info.value.param == "return_url"


def test_session_for_unknown_customer_is_resource_missing(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.billing_portal.sessions.create(
            {"customer": "cus_none", "return_url": "https://example.com"}
        )
    assert info.value.code == "resource_missing"
