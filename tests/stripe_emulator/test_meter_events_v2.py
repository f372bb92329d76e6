"""v2 meter events: sessions, the stream, the synchronous create and adjustments."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import stripe

from .helpers import Control, create_customer, create_meter, sdk_client


def _rfc3339(ts: int) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def customer(client: stripe.StripeClient) -> stripe.Customer:
    create_meter(client)
    return create_customer(client, card=None)


def test_session_gives_a_token_valid_for_15_minutes(client: stripe.StripeClient) -> None:
    session = client.v2.billing.meter_event_session.create()
    assert session.object == "v2.billing.meter_event_session"
    assert session.authentication_token
    lifetime = datetime.fromisoformat(session.expires_at) - datetime.fromisoformat(session.created)
    assert lifetime.total_seconds() == 900


def test_stream_events_are_counted(
    url: str, client: stripe.StripeClient, control: Control, customer: stripe.Customer
) -> None:
    token = client.v2.billing.meter_event_session.create().authentication_token
    now = control.now()
    with sdk_client(url, api_key=token) as stream:
        stream.v2.billing.meter_event_stream.create(
            {
                "events": [
                    {
                        "event_name": "api_call",
                        "identifier": f"s-{i}",
                        "timestamp": _rfc3339(now),
                        "payload": {"stripe_customer_id": customer.id, "value": "10"},
                    }
                    for i in range(3)
                ]
            }
        )
    state = control.state()
    assert sum(int(v) for v in state["totals"][customer.id].values()) == 30
    assert {e["source"] for e in state["meter_events"]} == {"v2_stream"}


def test_expired_session_is_rejected(
    url: str, client: stripe.StripeClient, control: Control, customer: stripe.Customer
) -> None:
    token = client.v2.billing.meter_event_session.create().authentication_token
    control.advance(901)
    with (
        sdk_client(url, api_key=token) as stream,
        pytest.raises(stripe.TemporarySessionExpiredError) as info,
    ):
        stream.v2.billing.meter_event_stream.create(
            {
                "events": [
                    {
                        "event_name": "api_call",
                        "payload": {"stripe_customer_id": customer.id, "value": "1"},
                    }
                ]
            }
        )
    assert info.value.http_status == 401
    assert info.value.code == "billing_meter_event_session_expired"


def test_stream_rejects_secret_keys(url: str, client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.AuthenticationError):
        client.v2.billing.meter_event_stream.create({"events": []})


def test_stream_takes_at_most_100_events(
    url: str, client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    token = client.v2.billing.meter_event_session.create().authentication_token
    event = {"event_name": "api_call", "payload": {"stripe_customer_id": customer.id, "value": "1"}}
    with (
        sdk_client(url, api_key=token) as stream,
        pytest.raises(stripe.InvalidRequestError) as info,
    ):
        stream.v2.billing.meter_event_stream.create({"events": [event] * 101})
    assert info.value.http_status == 400


def test_stream_drops_duplicate_identifiers(
    url: str, client: stripe.StripeClient, control: Control, customer: stripe.Customer
) -> None:
    token = client.v2.billing.meter_event_session.create().authentication_token
    event = {
        "event_name": "api_call",
        "identifier": "same",
        "payload": {"stripe_customer_id": customer.id, "value": "4"},
    }
    with sdk_client(url, api_key=token) as stream:
        stream.v2.billing.meter_event_stream.create({"events": [event, event]})
        stream.v2.billing.meter_event_stream.create({"events": [event]})
    assert list(control.state()["totals"][customer.id].values()) == ["4"]


def test_v2_create_is_synchronous_and_reports_duplicates(
    client: stripe.StripeClient, control: Control, customer: stripe.Customer
) -> None:
    params = {
        "event_name": "api_call",
        "identifier": "v2-1",
        "timestamp": _rfc3339(control.now()),
        "payload": {"stripe_customer_id": customer.id, "value": "8"},
    }
    event = client.v2.billing.meter_events.create(params)
    assert (event.object, event.identifier) == ("v2.billing.meter_event", "v2-1")
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v2.billing.meter_events.create(params)
    assert info.value.code == "duplicate_meter_event"
    assert info.value.json_body["error"]["type"] == "invalid_request_error"


def test_v2_errors_use_the_v2_shape(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v2.billing.meter_events.create({"payload": {}})  # type: ignore[typeddict-item]
    assert info.value.http_status == 400
    assert set(info.value.json_body["error"]) >= {"type", "code", "message"}
    assert "doc_url" not in info.value.json_body["error"]


def test_v2_adjustment_cancels_an_event(
    client: stripe.StripeClient, control: Control, customer: stripe.Customer
) -> None:
    client.v2.billing.meter_events.create(
        {
            "event_name": "api_call",
            "identifier": "v2-cancel",
            "payload": {"stripe_customer_id": customer.id, "value": "8"},
        }
    )
    adjustment = client.v2.billing.meter_event_adjustments.create(
        {"event_name": "api_call", "type": "cancel", "cancel": {"identifier": "v2-cancel"}}
    )
    assert adjustment.object == "v2.billing.meter_event_adjustment"
    assert control.state()["totals"] == {}
