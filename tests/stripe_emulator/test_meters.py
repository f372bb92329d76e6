"""Billing meters and meter event summaries."""

from __future__ import annotations

import pytest
import stripe

from .helpers import Control, create_customer, create_meter, send_usage


def test_meter_create_and_retrieve(client: stripe.StripeClient) -> None:
    meter = create_meter(client)
    assert meter.id.startswith("mtr_") and meter.object == "billing.meter"
    assert meter.status == "active"
    assert meter.customer_mapping.event_payload_key == "stripe_customer_id"
    assert client.v1.billing.meters.retrieve(meter.id).event_name == "api_call"


def test_meter_defaults_payload_keys(client: stripe.StripeClient) -> None:
    meter = client.v1.billing.meters.create(
        {"display_name": "x", "event_name": "x", "default_aggregation": {"formula": "count"}}
    )
    assert meter.customer_mapping.to_dict() == {
        "event_payload_key": "stripe_customer_id",
        "type": "by_id",
    }
    assert meter.value_settings.event_payload_key == "value"


def test_event_name_is_unique_among_active_meters(client: stripe.StripeClient) -> None:
    first = create_meter(client)
    with pytest.raises(stripe.InvalidRequestError) as info:
        create_meter(client)
    assert info.value.param == "event_name"
    client.v1.billing.meters.deactivate(first.id)
    assert create_meter(client).status == "active"


def test_deactivate_and_reactivate(client: stripe.StripeClient) -> None:
    meter = create_meter(client)
    inactive = client.v1.billing.meters.deactivate(meter.id)
    assert inactive.status == "inactive" and inactive.status_transitions.deactivated_at
    assert client.v1.billing.meters.reactivate(meter.id).status == "active"


def test_update_changes_only_the_display_name(client: stripe.StripeClient) -> None:
    meter = create_meter(client)
    assert client.v1.billing.meters.update(meter.id, {"display_name": "Calls"}).display_name == (
        "Calls"
    )
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.billing.meters.update(meter.id, {"event_name": "other"})  # type: ignore[typeddict-unknown-key]


def test_meter_list_filters_by_status(client: stripe.StripeClient) -> None:
    meter = create_meter(client)
    other = create_meter(client, event_name="other")
    client.v1.billing.meters.deactivate(other.id)
    assert [m.id for m in client.v1.billing.meters.list({"status": "active"}).data] == [meter.id]


def test_summary_aggregates_start_inclusive_end_exclusive(
    client: stripe.StripeClient, control: Control
) -> None:
    meter = create_meter(client)
    customer = create_customer(client, card=None)
    minute = control.now() // 60 * 60 - 3600
    send_usage(client, customer.id, 10, timestamp=minute)
    send_usage(client, customer.id, 5, timestamp=minute + 59)
    send_usage(client, customer.id, 100, timestamp=minute + 60)
    summaries = client.v1.billing.meters.event_summaries.list(
        meter.id, {"customer": customer.id, "start_time": minute, "end_time": minute + 60}
    )
    assert [s.aggregated_value for s in summaries.data] == [15.0]
    assert summaries.data[0].object == "billing.meter_event_summary"


def test_summary_times_must_be_on_minute_boundaries(client: stripe.StripeClient) -> None:
    meter = create_meter(client)
    customer = create_customer(client, card=None)
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.billing.meters.event_summaries.list(
            meter.id, {"customer": customer.id, "start_time": 61, "end_time": 120}
        )
    assert info.value.param == "start_time"


def test_summary_grouped_by_hour_newest_first(
    client: stripe.StripeClient, control: Control
) -> None:
    meter = create_meter(client)
    customer = create_customer(client, card=None)
    hour = control.now() // 3600 * 3600 - 3 * 3600
    send_usage(client, customer.id, 1, timestamp=hour + 10)
    send_usage(client, customer.id, 2, timestamp=hour + 3600 + 10)
    send_usage(client, customer.id, 3, timestamp=hour + 3600 + 20)
    summaries = client.v1.billing.meters.event_summaries.list(
        meter.id,
        {
            "customer": customer.id,
            "start_time": hour,
            "end_time": hour + 3 * 3600,
            "value_grouping_window": "hour",
        },
    )
    assert [(s.start_time - hour, s.aggregated_value) for s in summaries.data] == [
        (3600, 5.0),
        (0, 1.0),
    ]


def test_count_and_last_formulas(client: stripe.StripeClient, control: Control) -> None:
    counter = create_meter(client, event_name="calls", formula="count")
    gauge = create_meter(client, event_name="seats", formula="last")
    customer = create_customer(client, card=None)
    start = control.now() // 60 * 60 - 600
    for i, value in enumerate((4, 9, 2)):
        send_usage(client, customer.id, value, timestamp=start + i, event_name="calls")
        send_usage(client, customer.id, value, timestamp=start + i, event_name="seats")
    window = {"customer": customer.id, "start_time": start, "end_time": start + 60}
    assert (
        client.v1.billing.meters.event_summaries.list(counter.id, window).data[0].aggregated_value
        == 3.0
    )
    assert (
        client.v1.billing.meters.event_summaries.list(gauge.id, window).data[0].aggregated_value
        == 2.0
    )
