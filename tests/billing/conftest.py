"""Billing fixtures: the Stripe emulator over real HTTP, and gateway settings pointing at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from novo_gateway.billing.stripe_client import StripeBilling
from novo_gateway.config import Settings
from stripe_emulator import EmulatorServer

EMULATOR_KEY = "sk_test_emulator"


class Emulator:
    """The running emulator and its control endpoints (`/_emulator/...`)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=10)

    def reset(self) -> None:
        self.http.post("/_emulator/reset").raise_for_status()

    def state(self, **params: str) -> dict[str, Any]:
        response = self.http.get("/_emulator/state", params=params)
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def total(self, customer_id: str, meter_id: str) -> int:
        """The units Stripe holds for a customer on a meter."""
        totals = self.state(meter_events="false")["totals"]
        return int(float(totals.get(customer_id, {}).get(meter_id, "0")))

    def identifiers(self) -> list[str]:
        """Identifiers of every meter event Stripe counted."""
        return [
            e["identifier"]
            for e in self.state()["meter_events"]
            if e["error"] is None and not e["canceled"]
        ]

    def fault(
        self, kind: str, path: str, *, method: str = "POST", count: int = 1, **extra: Any
    ) -> None:
        body = {"kind": kind, "path": path, "method": method, "count": count, **extra}
        self.http.post("/_emulator/faults", json=body).raise_for_status()

    def advance(self, seconds: float) -> None:
        self.http.post("/_emulator/clock/advance", json={"seconds": seconds}).raise_for_status()

    def now(self) -> int:
        return int(self.http.get("/_emulator/clock").json()["now"])


@pytest.fixture(scope="session")
def emulator_server() -> Iterator[EmulatorServer]:
    server = EmulatorServer(port=0).start()
    yield server
    server.stop()


@pytest.fixture
def emulator(emulator_server: EmulatorServer) -> Iterator[Emulator]:
    """A freshly reset emulator for this test."""
    control = Emulator(emulator_server.url)
    control.reset()
    yield control
    control.http.close()


@pytest.fixture
def make_stripe_settings(
    make_settings: Callable[..., Settings], emulator: Emulator
) -> Callable[..., Settings]:
    """Gateway settings on this test's database that talk to the emulator."""

    def build(**overrides: Any) -> Settings:
        base: dict[str, Any] = {
            "stripe_secret_key": EMULATOR_KEY,
            "stripe_api_base": emulator.url,
            "stripe_max_network_retries": 0,
            "stripe_rate_limit_per_second": 1000.0,
            "stripe_timeout_seconds": 5.0,
        }
        return make_settings(**{**base, **overrides})

    return build


@pytest.fixture
def stripe_settings(make_stripe_settings: Callable[..., Settings]) -> Settings:
    return make_stripe_settings()


@pytest.fixture
async def stripe_billing(stripe_settings: Settings) -> Any:
    billing = StripeBilling(stripe_settings)
    yield billing
    await billing.close()
