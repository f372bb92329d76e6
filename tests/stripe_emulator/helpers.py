"""Helpers for the Stripe emulator tests: SDK clients, a webhook receiver, common fixtures' guts."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import requests
import stripe

API_KEY = "sk_test_emulator"
# 2027-01-01T00:00:00Z, a Friday; test clocks start here.
T0 = 1798761600
TIERS_FIRST_1000_FREE = [
    {"up_to": 1000, "unit_amount": 0},
    {"up_to": "inf", "unit_amount_decimal": "0.1"},
]


@contextmanager
def sdk_client(
    url: str, api_key: str = API_KEY, timeout: float = 10.0
) -> Iterator[stripe.StripeClient]:
    """A ``StripeClient`` on the emulator with its own HTTP session, closed afterwards."""
    session = requests.Session()
    http = stripe.RequestsClient(session=session, timeout=timeout)
    client = stripe.StripeClient(
        api_key,
        base_addresses={"api": url, "meter_events": url},
        max_network_retries=0,
        http_client=http,
    )
    try:
        yield client
    finally:
        session.close()


@dataclass
class Received:
    body: bytes
    signature: str
    path: str


@dataclass
class WebhookReceiver:
    """A tiny HTTP server recording POSTs; answers ``fail_with`` for the first ``fail_next``."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    fail_next: int = 0
    fail_with: int = 500
    attempts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if predicate(list(self.received)):
                    return True
            time.sleep(0.02)
        return False

    def bodies(self) -> list[Received]:
        with self.lock:
            return list(self.received)


def make_receiver() -> tuple[WebhookReceiver, ThreadingHTTPServer]:
    state = WebhookReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with state.lock:
                state.attempts += 1
                failing = state.fail_next > 0
                if failing:
                    state.fail_next -= 1
                else:
                    state.received.append(
                        Received(body, self.headers.get("Stripe-Signature", ""), self.path)
                    )
            self.send_response(state.fail_with if failing else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/webhooks"
    return state, server


class Control:
    """The emulator's ``/_emulator`` control endpoints."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=10)

    def close(self) -> None:
        self.http.close()

    def reset(self) -> None:
        self.http.post("/_emulator/reset").raise_for_status()

    def state(self, **params: str) -> dict[str, Any]:
        response = self.http.get("/_emulator/state", params=params)
        response.raise_for_status()
        return dict(response.json())

    def now(self) -> int:
        return int(self.http.get("/_emulator/clock").json()["now"])

    def advance(self, seconds: float) -> int:
        response = self.http.post("/_emulator/clock/advance", json={"seconds": seconds})
        response.raise_for_status()
        return int(response.json()["now"])

    def fault(self, **spec: Any) -> None:
        self.http.post("/_emulator/faults", json=spec).raise_for_status()

    def configure(self, **settings: Any) -> None:
        self.http.post("/_emulator/config", json=settings).raise_for_status()

    def flush(self, timeout: float = 5.0) -> dict[str, Any]:
        response = self.http.post("/_emulator/webhooks/flush", json={"timeout": timeout})
        return dict(response.json())


def create_meter(
    client: stripe.StripeClient, event_name: str = "api_call", formula: str = "sum"
) -> Any:
    return client.v1.billing.meters.create(
        {
            "display_name": "API calls",
            "event_name": event_name,
            "default_aggregation": {"formula": formula},
            "customer_mapping": {"event_payload_key": "stripe_customer_id", "type": "by_id"},
            "value_settings": {"event_payload_key": "value"},
        }
    )


def create_metered_price(
    client: stripe.StripeClient,
    meter_id: str,
    tiers: list[dict[str, Any]] | None = None,
    mode: str = "graduated",
) -> Any:
    return client.v1.prices.create(
        {
            "currency": "usd",
            "product_data": {"name": "Novo API"},
            "billing_scheme": "tiered",
            "tiers_mode": mode,
            "tiers": tiers or TIERS_FIRST_1000_FREE,
            "recurring": {"interval": "month", "usage_type": "metered", "meter": meter_id},
        }
    )


def create_customer(
    client: stripe.StripeClient, card: str | None = "pm_card_visa", **extra: Any
) -> Any:
    params: dict[str, Any] = {"email": "dev@example.com", **extra}
    if card:
        params["payment_method"] = card
        params["invoice_settings"] = {"default_payment_method": card}
    return client.v1.customers.create(params)


def send_usage(
    client: stripe.StripeClient,
    customer_id: str,
    value: int,
    identifier: str | None = None,
    timestamp: int | None = None,
    event_name: str = "api_call",
) -> Any:
    params: dict[str, Any] = {
        "event_name": event_name,
        "payload": {"stripe_customer_id": customer_id, "value": str(value)},
    }
    if identifier is not None:
        params["identifier"] = identifier
    if timestamp is not None:
        params["timestamp"] = timestamp
    return client.v1.billing.meter_events.create(params)
