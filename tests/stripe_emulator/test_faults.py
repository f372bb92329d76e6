"""Fault injection (429, 500, delay, drop) and the rate limiter."""

from __future__ import annotations

import time

import httpx
import pytest
import stripe

from .helpers import API_KEY, Control, create_customer, create_meter, sdk_client, send_usage


def test_injected_429_carries_retry_after(client: stripe.StripeClient, control: Control) -> None:
    control.fault(method="POST", path="/v1/customers", kind="429", retry_after=7, count=1)
    with pytest.raises(stripe.RateLimitError) as info:
        client.v1.customers.create({})
    assert info.value.http_status == 429
    assert info.value.headers["Retry-After"] == "7"
    assert info.value.json_body["error"]["code"] == "rate_limit"
    assert client.v1.customers.create({}).object == "customer"


def test_injected_500_is_an_api_error_and_does_nothing(
    client: stripe.StripeClient, control: Control
) -> None:
    control.fault(method="POST", path="/v1/customers", kind="500")
    with pytest.raises(stripe.APIError) as info:
        client.v1.customers.create({})
    assert info.value.http_status == 500
    assert client.v1.customers.list().data == []


def test_faults_only_hit_matching_method_and_path(
    client: stripe.StripeClient, control: Control
) -> None:
    control.fault(method="POST", path="/v1/billing/meter_events", kind="500", count=1)
    assert client.v1.customers.create({}).object == "customer"
    assert client.v1.customers.list().object == "list"


def test_delay_past_the_client_timeout_still_processes_the_request(
    url: str, client: stripe.StripeClient, control: Control
) -> None:
    create_meter(client)
    customer = create_customer(client, card=None)
    control.fault(method="POST", path="/v1/billing/meter_events", kind="delay", delay=0.5)
    with sdk_client(url, timeout=0.2) as impatient, pytest.raises(stripe.APIConnectionError):
        send_usage(impatient, customer.id, 7, identifier="slow-1")
    meter_id = client.v1.billing.meters.list().data[0].id
    deadline = time.monotonic() + 5
    while control.state()["totals"].get(customer.id) != {meter_id: "7"}:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_drop_processes_fully_then_closes_the_connection(
    client: stripe.StripeClient, control: Control
) -> None:
    meter = create_meter(client)
    customer = create_customer(client, card=None)
    control.fault(method="POST", path="/v1/billing/meter_events", kind="drop", count=1)
    with pytest.raises(stripe.APIConnectionError):
        send_usage(client, customer.id, 5, identifier="drop-1")
    state = control.state()
    assert state["totals"][customer.id] == {meter.id: "5"}
    assert [e["identifier"] for e in state["meter_events"]] == ["drop-1"]


def test_drop_is_seen_by_httpx_as_a_disconnect(url: str, control: Control) -> None:
    control.fault(method="POST", path="/v1/customers", kind="drop")
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(f"{url}/v1/customers", headers={"Authorization": f"Bearer {API_KEY}"})
    assert control.state()["counts"]["customer"] == 1


def test_retry_after_drop_with_same_key_is_replayed(
    client: stripe.StripeClient, control: Control
) -> None:
    create_meter(client)
    customer = create_customer(client, card=None)
    control.fault(method="POST", path="/v1/billing/meter_events", kind="drop")
    options: stripe.RequestOptions = {"idempotency_key": "report-1"}
    params = {
        "event_name": "api_call",
        "identifier": "drop-2",
        "payload": {"stripe_customer_id": customer.id, "value": "5"},
    }
    with pytest.raises(stripe.APIConnectionError):
        client.v1.billing.meter_events.create(params, options)
    replay = client.v1.billing.meter_events.create(params, options)
    assert replay.last_response.headers["Idempotent-Replayed"] == "true"
    assert control.state()["counts"]["meter_event"] == 1


def test_clearing_faults_disarms_them(client: stripe.StripeClient, control: Control) -> None:
    control.fault(method="POST", path="/v1/customers", kind="500", count=5)
    control.http.delete("/_emulator/faults").raise_for_status()
    assert client.v1.customers.create({}).object == "customer"


def test_rate_limit_answers_429_rate_limit(client: stripe.StripeClient, control: Control) -> None:
    control.configure(rate_limit=2, rate_limit_burst=2)
    client.v1.customers.list()
    client.v1.customers.list()
    with pytest.raises(stripe.RateLimitError) as info:
        client.v1.customers.list()
    assert info.value.json_body["error"]["code"] == "rate_limit"
    assert "Stripe-Should-Retry" not in info.value.headers
