"""Idempotency keys: replay, mismatch, in-flight conflicts and the 24-hour expiry."""

from __future__ import annotations

import threading
import time

import pytest
import stripe

from .helpers import Control, sdk_client


def test_same_key_replays_the_first_response(client: stripe.StripeClient) -> None:
    first = client.v1.customers.create({"email": "a@example.com"}, {"idempotency_key": "key-1"})
    again = client.v1.customers.create({"email": "a@example.com"}, {"idempotency_key": "key-1"})
    assert again.id == first.id
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    assert len(client.v1.customers.list().data) == 1


def test_replayed_error_is_the_stored_error(client: stripe.StripeClient) -> None:
    params = {
        "event_name": "x",
        "payload": {"stripe_customer_id": "cus_1", "value": "1"},
        "identifier": "dup-1",
    }
    client.v1.billing.meter_events.create(params)
    for _ in range(2):
        with pytest.raises(stripe.InvalidRequestError) as info:
            client.v1.billing.meter_events.create(params, {"idempotency_key": "key-err"})
    assert info.value.headers["Idempotent-Replayed"] == "true"


def test_same_key_with_other_parameters_is_an_idempotency_error(
    client: stripe.StripeClient,
) -> None:
    client.v1.customers.create({"email": "a@example.com"}, {"idempotency_key": "key-2"})
    with pytest.raises(stripe.IdempotencyError) as info:
        client.v1.customers.create({"email": "b@example.com"}, {"idempotency_key": "key-2"})
    assert info.value.http_status == 400
    assert "Keys for idempotent requests can only be used with the same parameters" in str(
        info.value.user_message
    )


def test_parameter_validation_errors_are_not_stored(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.products.create({}, {"idempotency_key": "key-3"})  # type: ignore[typeddict-item]
    product = client.v1.products.create({"name": "fixed"}, {"idempotency_key": "key-3"})
    assert product.name == "fixed"


def test_concurrent_request_with_the_same_key_gets_409(
    url: str, control: Control, client: stripe.StripeClient
) -> None:
    control.fault(method="POST", path="/v1/customers", kind="delay", delay=0.6, count=1)
    results: list[str] = []

    def slow() -> None:
        with sdk_client(url) as sdk:
            results.append(
                sdk.v1.customers.create({"email": "a@example.com"}, {"idempotency_key": "key-4"}).id
            )

    thread = threading.Thread(target=slow)
    thread.start()
    deadline = time.monotonic() + 5
    while control.http.get("/_emulator/faults").json()["faults"][0]["matched"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with pytest.raises(stripe.APIError) as info:
        client.v1.customers.create({"email": "a@example.com"}, {"idempotency_key": "key-4"})
    thread.join()
    assert info.value.http_status == 409
    assert info.value.json_body["error"]["code"] == "idempotency_key_in_use"
    assert info.value.headers["Stripe-Should-Retry"] == "true"
    assert len(results) == 1


def test_keys_expire_after_24_hours(client: stripe.StripeClient, control: Control) -> None:
    first = client.v1.customers.create({"email": "a@example.com"}, {"idempotency_key": "key-5"})
    control.advance(24 * 3600 + 1)
    second = client.v1.customers.create({"email": "b@example.com"}, {"idempotency_key": "key-5"})
    assert second.id != first.id
    assert "Idempotent-Replayed" not in second.last_response.headers


def test_oldest_keys_are_evicted_beyond_the_configured_bound() -> None:
    from stripe_emulator.idempotency import IdempotencyLayer
    from stripe_emulator.messages import Response
    from stripe_emulator.store import Store

    layer = IdempotencyLayer(Store(), max_keys=2)
    for key in ("a", "b", "c"):
        assert layer.begin(key, "fp", 0, "req_1") is None
        layer.finish(key, Response(200, b"{}"))
    assert list(layer.store.idempotency) == ["b", "c"]
    assert layer.begin("c", "fp", 0, "req_2") is not None
