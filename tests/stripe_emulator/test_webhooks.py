"""Webhook endpoints, events, signed deliveries and their retries."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
import stripe

from .helpers import Control, WebhookReceiver


def _endpoint(
    client: stripe.StripeClient, url: str, events: list[str] | None = None
) -> stripe.WebhookEndpoint:
    return client.v1.webhook_endpoints.create({"url": url, "enabled_events": events or ["*"]})


def test_endpoint_secret_is_only_returned_on_create(
    client: stripe.StripeClient, receiver: WebhookReceiver
) -> None:
    endpoint = _endpoint(client, receiver.url)
    assert endpoint.id.startswith("we_") and endpoint.secret.startswith("whsec_")
    assert "secret" not in client.v1.webhook_endpoints.retrieve(endpoint.id)


def test_endpoint_update_list_and_delete(
    client: stripe.StripeClient, receiver: WebhookReceiver
) -> None:
    endpoint = _endpoint(client, receiver.url)
    updated = client.v1.webhook_endpoints.update(
        endpoint.id, {"disabled": True, "enabled_events": ["invoice.paid"]}
    )
    assert (updated.status, updated.enabled_events) == ("disabled", ["invoice.paid"])
    assert [e.id for e in client.v1.webhook_endpoints.list().data] == [endpoint.id]
    assert client.v1.webhook_endpoints.delete(endpoint.id).deleted is True


def test_deliveries_verify_with_construct_event(
    client: stripe.StripeClient, receiver: WebhookReceiver
) -> None:
    endpoint = _endpoint(client, receiver.url)
    customer = client.v1.customers.create({"email": "hook@example.com"})
    assert receiver.wait_for(lambda got: len(got) == 1)
    received = receiver.bodies()[0]
    event = stripe.Webhook.construct_event(received.body, received.signature, endpoint.secret)
    assert (event.type, event.data.object.id) == ("customer.created", customer.id)
    assert event.object == "event" and event.api_version == "2026-10-28.endive"
    assert event.livemode is False and event.request.id


def test_signature_with_another_secret_fails(
    client: stripe.StripeClient, receiver: WebhookReceiver
) -> None:
    _endpoint(client, receiver.url)
    client.v1.customers.create({})
    assert receiver.wait_for(lambda got: len(got) == 1)
    received = receiver.bodies()[0]
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(received.body, received.signature, "whsec_wrong")


def test_only_enabled_event_types_are_delivered(
    client: stripe.StripeClient, receiver: WebhookReceiver, control: Control
) -> None:
    _endpoint(client, receiver.url, ["customer.updated"])
    customer = client.v1.customers.create({})
    client.v1.customers.update(customer.id, {"name": "New"})
    control.flush()
    types = [json.loads(r.body)["type"] for r in receiver.bodies()]
    assert types == ["customer.updated"]
    body = json.loads(receiver.bodies()[0].body)
    assert body["data"]["previous_attributes"] == {"name": None}


def test_failed_delivery_is_retried_until_it_succeeds(
    client: stripe.StripeClient, receiver: WebhookReceiver, control: Control
) -> None:
    receiver.fail_next = 2
    endpoint = _endpoint(client, receiver.url)
    client.v1.customers.create({})
    flushed = control.flush()
    assert receiver.attempts == 3 and len(receiver.bodies()) == 1
    delivery = flushed["deliveries"][0]
    assert delivery["status"] == "succeeded"
    assert [a["status"] for a in delivery["attempts"]] == [500, 500, 200]
    received = receiver.bodies()[0]
    stripe.Webhook.construct_event(received.body, received.signature, endpoint.secret)
    assert client.v1.events.list().data[0].pending_webhooks == 0


def test_delivery_gives_up_after_the_last_attempt(
    client: stripe.StripeClient, receiver: WebhookReceiver, control: Control
) -> None:
    receiver.fail_next = 100
    _endpoint(client, receiver.url)
    client.v1.customers.create({})
    flushed = control.flush()
    assert flushed["counts"] == {"pending": 0, "succeeded": 0, "failed": 1}
    assert receiver.attempts == 4
    assert client.v1.events.list().data[0].pending_webhooks == 1


def test_unreachable_endpoint_is_retried_then_failed(
    client: stripe.StripeClient, control: Control
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    _endpoint(client, f"http://127.0.0.1:{port}/gone")
    client.v1.customers.create({})
    delivery = control.flush()["deliveries"][0]
    assert delivery["status"] == "failed" and len(delivery["attempts"]) == 4
    assert all(a["error"] for a in delivery["attempts"])


def test_events_list_filters_by_type_and_retrieves(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create({})
    client.v1.customers.update(customer.id, {"name": "x"})
    updates = client.v1.events.list({"type": "customer.updated"}).data
    assert [e.type for e in updates] == ["customer.updated"]
    assert {e.type for e in client.v1.events.list({"type": "customer.*"}).data} == {
        "customer.created",
        "customer.updated",
    }
    event = client.v1.events.retrieve(updates[0].id)
    assert event.data.object.name == "x"


def test_thin_events_go_to_event_destinations(
    client: stripe.StripeClient, receiver: WebhookReceiver
) -> None:
    client.v1.billing.meters.create(
        {"display_name": "x", "event_name": "api_call", "default_aggregation": {"formula": "sum"}}
    )
    destination = client.v2.core.event_destinations.create(
        {
            "name": "errors",
            "type": "webhook_endpoint",
            "event_payload": "thin",
            "enabled_events": ["v1.billing.meter.error_report_triggered"],
            "webhook_endpoint": {"url": receiver.url},
            "include": ["webhook_endpoint.signing_secret"],
        }
    )
    secret = destination.webhook_endpoint.signing_secret
    client.v1.billing.meter_events.create(
        {"event_name": "api_call", "payload": {"stripe_customer_id": "cus_missing", "value": "1"}}
    )
    assert receiver.wait_for(lambda got: len(got) == 1)
    received = receiver.bodies()[0]
    notification = client.parse_event_notification(received.body, received.signature, secret)
    assert notification.type == "v1.billing.meter.error_report_triggered"


def test_signature_can_use_the_emulator_clock(
    client: stripe.StripeClient, receiver: WebhookReceiver, control: Control
) -> None:
    control.configure(webhook_signature_clock="emulator")
    now = control.advance(86400)
    endpoint = _endpoint(client, receiver.url)
    client.v1.customers.create({})
    assert receiver.wait_for(lambda got: len(got) == 1)
    received = receiver.bodies()[0]
    stamp = int(received.signature.split(",")[0][2:])
    assert abs(stamp - now) < 5
    stripe.WebhookSignature.verify_header(
        received.body.decode(), received.signature, endpoint.secret, tolerance=None
    )


def _destination(client: stripe.StripeClient, url: str, **extra: Any) -> Any:
    return client.v2.core.event_destinations.create(
        {
            "name": "errors",
            "type": "webhook_endpoint",
            "event_payload": "thin",
            "enabled_events": ["v1.billing.meter.error_report_triggered"],
            "webhook_endpoint": {"url": url},
            "include": ["webhook_endpoint.signing_secret"],
            **extra,
        }
    )


def test_thin_events_never_reach_a_v1_endpoint_even_with_star(
    client: stripe.StripeClient, receiver: WebhookReceiver, control: Control
) -> None:
    _endpoint(client, receiver.url)  # enabled_events ["*"]
    client.v1.billing.meters.create(
        {"display_name": "x", "event_name": "api_call", "default_aggregation": {"formula": "sum"}}
    )
    client.v1.billing.meter_events.create(
        {"event_name": "api_call", "payload": {"stripe_customer_id": "cus_missing", "value": "1"}}
    )
    control.flush()
    assert client.v2.core.events.list().data[0].type == "v1.billing.meter.error_report_triggered"
    assert receiver.bodies() == []


def test_destination_redacts_url_and_secret_unless_included(
    client: stripe.StripeClient, receiver: WebhookReceiver
) -> None:
    created = _destination(client, receiver.url)
    assert created.webhook_endpoint.signing_secret.startswith("whsec_")
    assert created.webhook_endpoint.url is None
    plain = client.v2.core.event_destinations.retrieve(created.id)
    assert (plain.webhook_endpoint.url, plain.webhook_endpoint.signing_secret) == (None, None)
    shown = client.v2.core.event_destinations.retrieve(
        created.id, {"include": ["webhook_endpoint.url"]}
    )
    assert shown.webhook_endpoint.url == receiver.url
    without = client.v2.core.event_destinations.create(
        {
            "name": "x",
            "type": "webhook_endpoint",
            "event_payload": "thin",
            "enabled_events": ["v1.billing.meter.error_report_triggered"],
            "webhook_endpoint": {"url": receiver.url},
        }
    )
    assert without.webhook_endpoint.signing_secret is None


def test_destination_update_and_ping(
    client: stripe.StripeClient, receiver: WebhookReceiver
) -> None:
    destination = _destination(client, "http://127.0.0.1:9/nowhere")
    updated = client.v2.core.event_destinations.update(
        destination.id,
        {
            "name": "meter errors",
            "webhook_endpoint": {"url": receiver.url},
            "include": ["webhook_endpoint.url"],
        },
    )
    assert (updated.name, updated.webhook_endpoint.url) == ("meter errors", receiver.url)

    ping = client.v2.core.event_destinations.ping(destination.id)

    assert ping.type == "v2.core.event_destination.ping"
    assert receiver.wait_for(lambda got: len(got) == 1)
    received = receiver.bodies()[0]
    secret = destination.webhook_endpoint.signing_secret
    notification = client.parse_event_notification(received.body, received.signature, secret)
    assert notification.id == ping.id
    assert notification.related_object.id == destination.id


def test_destination_takes_only_types_of_its_payload(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v2.core.event_destinations.create(
            {
                "name": "x",
                "type": "webhook_endpoint",
                "event_payload": "thin",
                "enabled_events": ["invoice.paid"],
                "webhook_endpoint": {"url": "https://example.invalid/hooks"},
            }
        )
    assert "enabled_events[0]" in str(caught.value.user_message)


def test_a_snapshot_destination_receives_v1_events(
    client: stripe.StripeClient, receiver: WebhookReceiver
) -> None:
    destination = client.v2.core.event_destinations.create(
        {
            "name": "customers",
            "type": "webhook_endpoint",
            "event_payload": "snapshot",
            "enabled_events": ["customer.created"],
            "webhook_endpoint": {"url": receiver.url},
            "include": ["webhook_endpoint.signing_secret"],
        }
    )
    client.v1.customers.create({"email": "a@example.com"})
    assert receiver.wait_for(lambda got: len(got) == 1)
    received = receiver.bodies()[0]
    event = stripe.Webhook.construct_event(
        received.body.decode(), received.signature, destination.webhook_endpoint.signing_secret
    )
    assert event.type == "customer.created"
