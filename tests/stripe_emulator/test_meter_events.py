"""v1 meter events: identifiers, timestamps, values, errors reported later, adjustments."""

from __future__ import annotations

import pytest
import stripe

from .helpers import T0, Control, WebhookReceiver, create_customer, create_meter, send_usage


@pytest.fixture
def meter(client: stripe.StripeClient) -> stripe.billing.Meter:
    return create_meter(client)


@pytest.fixture
def customer(client: stripe.StripeClient) -> stripe.Customer:
    return create_customer(client, card=None)


def test_event_is_recorded_and_counted(
    client: stripe.StripeClient,
    control: Control,
    meter: stripe.billing.Meter,
    customer: stripe.Customer,
) -> None:
    event = send_usage(client, customer.id, 42, identifier="req-1")
    assert (event.object, event.identifier) == ("billing.meter_event", "req-1")
    assert event.payload.to_dict() == {"stripe_customer_id": customer.id, "value": "42"}
    state = control.state()
    assert state["totals"] == {customer.id: {meter.id: "42"}}
    assert state["meter_events"][0]["identifier"] == "req-1"


def test_identifier_is_generated_when_absent(
    client: stripe.StripeClient, meter: stripe.billing.Meter, customer: stripe.Customer
) -> None:
    assert send_usage(client, customer.id, 1).identifier


def test_duplicate_identifier_is_rejected_without_retry(
    client: stripe.StripeClient,
    control: Control,
    meter: stripe.billing.Meter,
    customer: stripe.Customer,
) -> None:
    send_usage(client, customer.id, 5, identifier="dup")
    with pytest.raises(stripe.InvalidRequestError) as info:
        send_usage(client, customer.id, 5, identifier="dup")
    assert info.value.http_status == 400
    assert info.value.user_message == "An event already exists with identifier dup."
    assert info.value.headers["Stripe-Should-Retry"] == "false"
    state = control.state()
    assert state["totals"][customer.id][meter.id] == "5"
    assert state["counts"]["meter_event_duplicate"] == 1


def test_identifier_can_be_reused_after_24_hours(
    client: stripe.StripeClient,
    control: Control,
    meter: stripe.billing.Meter,
    customer: stripe.Customer,
) -> None:
    send_usage(client, customer.id, 5, identifier="daily")
    control.advance(23 * 3600)
    with pytest.raises(stripe.InvalidRequestError):
        send_usage(client, customer.id, 5, identifier="daily")
    control.advance(3600)
    send_usage(client, customer.id, 5, identifier="daily")
    assert control.state()["totals"][customer.id][meter.id] == "10"


def test_timestamp_older_than_35_days_is_rejected(
    client: stripe.StripeClient,
    control: Control,
    meter: stripe.billing.Meter,
    customer: stripe.Customer,
) -> None:
    now = control.now()
    send_usage(client, customer.id, 1, timestamp=now - 35 * 86400 + 60)
    with pytest.raises(stripe.InvalidRequestError) as info:
        send_usage(client, customer.id, 1, timestamp=now - 35 * 86400 - 60)
    assert info.value.param == "timestamp"


def test_timestamp_more_than_5_minutes_ahead_is_rejected(
    client: stripe.StripeClient,
    control: Control,
    meter: stripe.billing.Meter,
    customer: stripe.Customer,
) -> None:
    now = control.now()
    send_usage(client, customer.id, 1, timestamp=now + 240)
    with pytest.raises(stripe.InvalidRequestError) as info:
        send_usage(client, customer.id, 1, timestamp=now + 400)
    assert info.value.param == "timestamp"


def test_timestamp_window_follows_the_customers_test_clock(
    client: stripe.StripeClient,
    meter: stripe.billing.Meter,
) -> None:
    clock = client.v1.test_helpers.test_clocks.create({"frozen_time": T0})
    customer = create_customer(client, card=None, test_clock=clock.id)
    assert send_usage(client, customer.id, 1, timestamp=T0 - 86400).timestamp == T0 - 86400
    assert send_usage(client, customer.id, 1).timestamp == T0
    with pytest.raises(stripe.InvalidRequestError):
        send_usage(client, customer.id, 1, timestamp=T0 + 3600)


def test_non_numeric_value_is_rejected(
    client: stripe.StripeClient, meter: stripe.billing.Meter, customer: stripe.Customer
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.billing.meter_events.create(
            {
                "event_name": "api_call",
                "payload": {"stripe_customer_id": customer.id, "value": "lots"},
            }
        )
    assert info.value.param == "payload[value]"


def test_fractional_value_is_rejected(
    client: stripe.StripeClient, meter: stripe.billing.Meter, customer: stripe.Customer
) -> None:
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.billing.meter_events.create(
            {
                "event_name": "api_call",
                "payload": {"stripe_customer_id": customer.id, "value": "1.5"},
            }
        )


def test_negative_value_corrects_usage(
    client: stripe.StripeClient,
    control: Control,
    meter: stripe.billing.Meter,
    customer: stripe.Customer,
) -> None:
    send_usage(client, customer.id, 10)
    send_usage(client, customer.id, -3)
    assert control.state()["totals"][customer.id][meter.id] == "7"


def test_unknown_customer_is_accepted_and_reported_later(
    client: stripe.StripeClient,
    control: Control,
    receiver: WebhookReceiver,
    meter: stripe.billing.Meter,
) -> None:
    destination = client.v2.core.event_destinations.create(
        {
            "name": "meter errors",
            "type": "webhook_endpoint",
            "event_payload": "thin",
            "enabled_events": ["v1.billing.meter.error_report_triggered"],
            "webhook_endpoint": {"url": receiver.url},
            "include": ["webhook_endpoint.signing_secret"],
        }
    )
    event = send_usage(client, "cus_unknown", 9, identifier="orphan")
    assert event.identifier == "orphan"
    state = control.state()
    assert state["totals"] == {}
    assert state["meter_events"][0]["error"] == "meter_event_customer_not_found"
    assert receiver.wait_for(lambda got: len(got) == 1)
    received = receiver.bodies()[0]
    notification = client.parse_event_notification(
        received.body, received.signature, destination.webhook_endpoint.signing_secret
    )
    assert notification.type == "v1.billing.meter.error_report_triggered"
    full = notification.fetch_event()
    error_type = full.data.reason.error_types[0]
    assert error_type.code == "meter_event_customer_not_found"
    assert error_type.sample_errors[0].request.identifier == "orphan"
    assert notification.fetch_related_object().id == meter.id


def test_event_without_active_meter_is_accepted_but_not_counted(
    client: stripe.StripeClient, control: Control, customer: stripe.Customer
) -> None:
    send_usage(client, customer.id, 3, event_name="nobody_listens")
    assert control.state()["meter_events"][0]["error"] == "no_meter"


def test_cancel_adjustment_removes_the_event(
    client: stripe.StripeClient,
    control: Control,
    meter: stripe.billing.Meter,
    customer: stripe.Customer,
) -> None:
    send_usage(client, customer.id, 4, identifier="keep")
    send_usage(client, customer.id, 6, identifier="oops")
    adjustment = client.v1.billing.meter_event_adjustments.create(
        {"event_name": "api_call", "type": "cancel", "cancel": {"identifier": "oops"}}
    )
    assert (adjustment.object, adjustment.status) == ("billing.meter_event_adjustment", "pending")
    assert control.state()["totals"][customer.id][meter.id] == "4"


def test_cancel_adjustment_only_within_24_hours(
    client: stripe.StripeClient,
    control: Control,
    meter: stripe.billing.Meter,
    customer: stripe.Customer,
) -> None:
    send_usage(client, customer.id, 6, identifier="late")
    control.advance(24 * 3600 + 1)
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.billing.meter_event_adjustments.create(
            {"event_name": "api_call", "type": "cancel", "cancel": {"identifier": "late"}}
        )
    assert info.value.param == "cancel[identifier]"


def test_identifier_longer_than_100_characters_is_rejected(
    client: stripe.StripeClient, meter: stripe.billing.Meter, customer: stripe.Customer
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as info:
        send_usage(client, customer.id, 1, identifier="x" * 101)
    assert info.value.param == "identifier"
