"""The /_emulator control endpoints."""

from __future__ import annotations

import httpx
import stripe

from stripe_emulator import EmulatorServer

from .helpers import Control, create_customer, create_meter, send_usage


def test_clock_advance_by_seconds_and_to_a_timestamp(control: Control) -> None:
    start = control.now()
    assert control.advance(3600) >= start + 3600
    target = start + 7 * 86400
    response = control.http.post("/_emulator/clock/advance", json={"to": target})
    assert response.json()["now"] >= target
    assert control.http.post("/_emulator/clock/advance", json={"seconds": -5}).status_code == 400


def test_created_timestamps_follow_the_global_clock(
    client: stripe.StripeClient, control: Control
) -> None:
    later = control.advance(86400)
    assert client.v1.customers.create({}).created >= later


def test_state_lists_events_and_per_customer_totals(
    client: stripe.StripeClient, control: Control
) -> None:
    meter = create_meter(client)
    first = create_customer(client, card=None)
    second = create_customer(client, card=None)
    send_usage(client, first.id, 3, identifier="a")
    send_usage(client, second.id, 4, identifier="b")
    state = control.state()
    assert state["totals"] == {first.id: {meter.id: "3"}, second.id: {meter.id: "4"}}
    assert state["counts"]["customer"] == 2 and state["counts"]["meter_event"] == 2
    event = state["meter_events"][0]
    assert {k: event[k] for k in ("identifier", "customer", "value")} == {
        "identifier": "a",
        "customer": first.id,
        "value": "3",
    }
    only = control.state(customer=second.id, meter_events="true")
    assert [e["identifier"] for e in only["meter_events"]] == ["b"]


def test_reset_empties_everything(client: stripe.StripeClient, control: Control) -> None:
    client.v1.customers.create({})
    control.advance(100)
    control.reset()
    assert control.state()["counts"].get("customer", 0) == 0
    assert abs(control.http.get("/_emulator/clock").json()["offset"]) < 1


def test_runtime_config_rejects_unknown_settings(control: Control) -> None:
    assert control.http.post("/_emulator/config", json={"colour": 1}).status_code == 400
    assert control.http.post("/_emulator/config", json={"finalization_grace": 0}).status_code == 200


def test_control_token_guards_control_endpoints() -> None:
    with EmulatorServer(port=0, control_token="s3cret") as server:
        assert httpx.post(f"{server.url}/_emulator/reset").status_code == 401
        ok = httpx.post(f"{server.url}/_emulator/reset", headers={"X-Emulator-Token": "s3cret"})
        assert ok.status_code == 200


def test_the_global_clock_can_start_in_the_past_and_only_moves_forward() -> None:
    start = 1_700_000_000
    with EmulatorServer(port=0, clock_start=start) as server:
        now = httpx.get(f"{server.url}/_emulator/clock").json()["now"]
        assert start <= now < start + 60
        back = httpx.post(f"{server.url}/_emulator/clock/advance", json={"to": start - 10})
        assert back.status_code == 400
