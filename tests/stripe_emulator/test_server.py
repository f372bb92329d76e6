"""Starting and stopping the emulator, the command line and state persistence."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
import stripe

from stripe_emulator import EmulatorServer, run_in_thread
from stripe_emulator.__main__ import parse_args

from .helpers import create_customer, create_meter, sdk_client, send_usage


def test_run_in_thread_is_ready_in_under_a_second() -> None:
    started = time.monotonic()
    url, stop = run_in_thread(port=0)
    try:
        elapsed = time.monotonic() - started
        assert elapsed < 1.0
        assert httpx.get(f"{url}/_emulator/health").json()["ok"] is True
    finally:
        stop()


def test_command_line_options_map_onto_the_config() -> None:
    config = parse_args(
        [
            "--port",
            "12111",
            "--state-file",
            "s.json",
            "--rate-limit",
            "25",
            "--webhook-retry-base",
            "0.5",
            "--finalization-grace",
            "0",
        ]
    )
    assert (config.port, config.state_file, config.rate_limit) == (12111, "s.json", 25.0)
    assert (config.webhook_retry_base, config.finalization_grace) == (0.5, 0)
    assert config.host == "127.0.0.1"


def test_state_file_keeps_objects_across_restarts(tmp_path: Path) -> None:
    state_file = str(tmp_path / "state.json")
    with EmulatorServer(port=0, state_file=state_file) as server, sdk_client(server.url) as sdk:
        customer = sdk.v1.customers.create({"email": "kept@example.com"})
    with EmulatorServer(port=0, state_file=state_file) as server, sdk_client(server.url) as sdk:
        assert sdk.v1.customers.retrieve(customer.id).email == "kept@example.com"


def test_state_file_keeps_usage_and_the_clock(tmp_path: Path) -> None:
    state_file = str(tmp_path / "state.json")
    with EmulatorServer(port=0, state_file=state_file) as server, sdk_client(server.url) as sdk:
        meter = create_meter(sdk)
        customer = create_customer(sdk, card=None)
        send_usage(sdk, customer.id, 12, identifier="kept-1")
        httpx.post(f"{server.url}/_emulator/clock/advance", json={"seconds": 3600})
    with EmulatorServer(port=0, state_file=state_file) as server, sdk_client(server.url) as sdk:
        state = httpx.get(f"{server.url}/_emulator/state").json()
        assert state["totals"] == {customer.id: {meter.id: "12"}}
        assert state["offset"] >= 3600
        with pytest.raises(stripe.InvalidRequestError):
            send_usage(sdk, customer.id, 12, identifier="kept-1")
