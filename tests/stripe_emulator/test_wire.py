"""Stripe's wire format, authentication and error shapes."""

from __future__ import annotations

import base64

import httpx
import pytest
import stripe

from stripe_emulator.wire import parse_form

from .helpers import API_KEY


def test_bracketed_form_keys_become_nested_params() -> None:
    parsed = parse_form(
        [
            ("items[0][price]", "price_1"),
            ("metadata[k]", "v"),
            ("expand[]", "a"),
            ("expand[]", "b"),
            ("tiers[0][up_to]", "inf"),
        ]
    )
    assert parsed == {
        "items": {"0": {"price": "price_1"}},
        "metadata": {"k": "v"},
        "expand": {"0": "a", "1": "b"},
        "tiers": {"0": {"up_to": "inf"}},
    }


def test_unknown_parameter_is_rejected_with_parameter_unknown(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.customers.create({"emial": "typo@example.com"})  # type: ignore[typeddict-unknown-key]
    assert info.value.http_status == 400
    assert info.value.code == "parameter_unknown"
    assert info.value.param == "emial"
    assert info.value.user_message == "Received unknown parameter: emial"


def test_unknown_nested_parameter_names_its_full_path(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.customers.create({"invoice_settings": {"colour": "red"}})  # type: ignore[typeddict-unknown-key]
    assert info.value.param == "invoice_settings[colour]"


def test_missing_required_parameter_is_parameter_missing(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.products.create({})  # type: ignore[typeddict-item]
    assert (info.value.code, info.value.param) == ("parameter_missing", "name")


def test_unknown_id_is_404_resource_missing(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.customers.retrieve("cus_nope")
    assert info.value.http_status == 404
    assert info.value.code == "resource_missing"
    assert info.value.user_message == "No such customer: 'cus_nope'"


def test_request_without_api_key_is_401(url: str) -> None:
    response = httpx.get(f"{url}/v1/customers")
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert "You did not provide an API key" in error["message"]


def test_live_mode_key_is_rejected(url: str) -> None:
    response = httpx.get(
        f"{url}/v1/customers", headers={"Authorization": "Bearer sk_live_0123456789abcdef"}
    )
    assert response.status_code == 401
    assert response.json()["error"]["message"].startswith("Invalid API Key provided")


def test_sdk_with_wrong_key_raises_authentication_error(url: str) -> None:
    from .helpers import sdk_client

    with (
        sdk_client(url, api_key="pk_test_publishable") as sdk,
        pytest.raises(stripe.AuthenticationError),
    ):
        sdk.v1.customers.list()


def test_basic_auth_with_the_key_as_username_is_accepted(url: str) -> None:
    token = base64.b64encode(f"{API_KEY}:".encode()).decode()
    response = httpx.get(f"{url}/v1/customers", headers={"Authorization": f"Basic {token}"})
    assert response.status_code == 200
    assert response.json()["object"] == "list"


def test_every_response_carries_a_request_id(client: stripe.StripeClient) -> None:
    response = client.v1.customers.list().last_response
    assert response.request_id.startswith("req_")
    assert response.headers["Stripe-Version"] == "2026-10-28.endive"


def test_unrecognized_url_is_404(url: str) -> None:
    response = httpx.get(f"{url}/v1/nothing", headers={"Authorization": f"Bearer {API_KEY}"})
    assert response.status_code == 404
    assert "Unrecognized request URL (GET: /v1/nothing)" in response.json()["error"]["message"]


def test_empty_string_unsets_a_metadata_key(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create({"metadata": {"a": "1", "b": "2"}})
    updated = client.v1.customers.update(customer.id, {"metadata": {"a": ""}})
    assert updated.metadata.to_dict() == {"b": "2"}


def test_invalid_integer_is_rejected(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.customers.list({"limit": "ten"})  # type: ignore[typeddict-item]
    assert (info.value.code, info.value.param) == ("parameter_invalid_integer", "limit")


def test_unsupported_stripe_parameter_says_so(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.customers.create({"shipping": {"name": "x", "address": {"line1": "y"}}})
    assert info.value.code == "parameter_unsupported"
