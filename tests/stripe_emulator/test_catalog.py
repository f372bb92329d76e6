"""Customers, payment methods, products and prices."""

from __future__ import annotations

import pytest
import stripe

from .helpers import create_meter


def test_customer_create_retrieve_update_delete(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create(
        {"email": "a@example.com", "name": "Ada", "metadata": {"account": "acc_1"}}
    )
    assert customer.id.startswith("cus_") and customer.object == "customer"
    assert client.v1.customers.retrieve(customer.id).metadata["account"] == "acc_1"
    updated = client.v1.customers.update(customer.id, {"email": "b@example.com"})
    assert updated.email == "b@example.com"
    gone = client.v1.customers.delete(customer.id)
    assert gone.deleted is True
    assert client.v1.customers.retrieve(customer.id).deleted is True


def test_customer_list_filters_by_email(client: stripe.StripeClient) -> None:
    client.v1.customers.create({"email": "a@example.com"})
    wanted = client.v1.customers.create({"email": "b@example.com"})
    found = client.v1.customers.list({"email": "b@example.com"}).data
    assert [c.id for c in found] == [wanted.id]


def test_test_card_token_becomes_the_default_payment_method(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create(
        {
            "payment_method": "pm_card_visa",
            "invoice_settings": {"default_payment_method": "pm_card_visa"},
        }
    )
    pm_id = customer.invoice_settings.default_payment_method
    assert pm_id.startswith("pm_") and pm_id != "pm_card_visa"
    pm = client.v1.payment_methods.retrieve(pm_id)
    assert (pm.card.last4, pm.customer) == ("4242", customer.id)


def test_declining_card_cannot_be_attached(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.CardError) as info:
        client.v1.customers.create({"payment_method": "pm_card_visa_chargeDeclined"})
    assert info.value.code == "card_declined"
    assert client.v1.customers.list().data == []


def test_payment_method_attach_and_set_default(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create({})
    pm = client.v1.payment_methods.attach("pm_card_chargeCustomerFail", {"customer": customer.id})
    updated = client.v1.customers.update(
        customer.id, {"invoice_settings": {"default_payment_method": pm.id}}
    )
    assert updated.invoice_settings.default_payment_method == pm.id


def test_default_payment_method_must_be_attached(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create({})
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.customers.update(
            customer.id, {"invoice_settings": {"default_payment_method": "pm_x"}}
        )
    assert info.value.param == "invoice_settings[default_payment_method]"


def test_product_create_update_list(client: stripe.StripeClient) -> None:
    product = client.v1.products.create({"name": "API", "metadata": {"tier": "pro"}})
    assert product.id.startswith("prod_")
    assert client.v1.products.update(product.id, {"active": False}).active is False
    assert [p.id for p in client.v1.products.list({"active": False}).data] == [product.id]
    assert client.v1.products.retrieve(product.id).metadata["tier"] == "pro"


def test_price_lookup_key_is_unique(client: stripe.StripeClient) -> None:
    client.v1.prices.create(
        {"currency": "usd", "unit_amount": 100, "product_data": {"name": "A"}, "lookup_key": "std"}
    )
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.prices.create(
            {
                "currency": "usd",
                "unit_amount": 200,
                "product_data": {"name": "B"},
                "lookup_key": "std",
            }
        )
    assert info.value.param == "lookup_key"


def test_transfer_lookup_key_moves_it_to_the_new_price(client: stripe.StripeClient) -> None:
    old = client.v1.prices.create(
        {"currency": "usd", "unit_amount": 100, "product_data": {"name": "A"}, "lookup_key": "std"}
    )
    new = client.v1.prices.create(
        {
            "currency": "usd",
            "unit_amount": 200,
            "product_data": {"name": "A"},
            "lookup_key": "std",
            "transfer_lookup_key": True,
        }
    )
    assert client.v1.prices.retrieve(old.id).lookup_key is None
    found = client.v1.prices.list({"lookup_keys": ["std"]}).data
    assert [p.id for p in found] == [new.id]


def test_price_list_filters_by_product_and_active(client: stripe.StripeClient) -> None:
    product = client.v1.products.create({"name": "A"})
    price = client.v1.prices.create({"currency": "usd", "unit_amount": 5, "product": product.id})
    client.v1.prices.create(
        {"currency": "usd", "unit_amount": 5, "product_data": {"name": "other"}}
    )
    client.v1.prices.update(price.id, {"active": False})
    found = client.v1.prices.list({"product": product.id, "active": False}).data
    assert [p.id for p in found] == [price.id]


def test_metered_price_needs_a_meter(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.prices.create(
            {
                "currency": "usd",
                "unit_amount": 1,
                "product_data": {"name": "A"},
                "recurring": {"interval": "month", "usage_type": "metered"},
            }
        )
    assert (info.value.code, info.value.param) == ("parameter_missing", "recurring[meter]")


def test_metered_price_on_a_meter(client: stripe.StripeClient) -> None:
    meter = create_meter(client)
    price = client.v1.prices.create(
        {
            "currency": "usd",
            "unit_amount_decimal": "0.1",
            "product_data": {"name": "A"},
            "recurring": {"interval": "month", "usage_type": "metered", "meter": meter.id},
        }
    )
    assert price.recurring.meter == meter.id
    assert (price.unit_amount, str(price.unit_amount_decimal)) == (None, "0.1")
    assert price.type == "recurring"


def test_last_tier_must_be_inf(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.prices.create(
            {
                "currency": "usd",
                "product_data": {"name": "A"},
                "billing_scheme": "tiered",
                "tiers_mode": "volume",
                "tiers": [{"up_to": 10, "unit_amount": 1}],
            }
        )
    assert info.value.param == "tiers[0][up_to]"


def test_tiered_price_rejects_unit_amount(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.prices.create(
            {
                "currency": "usd",
                "product_data": {"name": "A"},
                "unit_amount": 5,
                "billing_scheme": "tiered",
                "tiers_mode": "volume",
                "tiers": [{"up_to": "inf", "unit_amount": 1}],
            }
        )
