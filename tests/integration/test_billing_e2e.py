"""Billing end to end: real gateway processes, the real `stripe` SDK, the Stripe emulator.

Everything goes through the gateway's HTTP API as a customer would use it; the emulator stands in
for Stripe (its clock is moved to close billing periods) and delivers signed webhooks to the
gateway over HTTP.
"""

from __future__ import annotations

import asyncio
import html
import re
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from novo_gateway.accounts.models import User
from novo_gateway.billing.models import UsageReport, WebhookEvent
from novo_gateway.billing.setup import run_setup
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import create_engine, create_session_factory, session_scope
from tests.billing.conftest import EMULATOR_KEY, Emulator
from tests.integration.processes import (
    COMMAND,
    GatewayProcess,
    free_port,
    settings_env,
    wait_for,
)

PASSWORD = "correct horse battery staple"
GRACE = 3600 + 120  # Stripe keeps a renewal invoice in draft for an hour for late usage


class Gateway:
    """A running gateway process set up against the emulator, and what the test needs of it."""

    def __init__(self, process: GatewayProcess, settings: Settings, emulator: Emulator) -> None:
        self.process = process
        self.settings = settings
        self.emulator = emulator
        self.http = httpx.Client(base_url=process.url, timeout=30)

    def register(self, email: str = "ada@example.com", *, card: bool = True) -> str:
        """A new account, provisioned at Stripe; `card`: the customer then saves a card."""
        reply = self.http.post(
            "/auth/register", json={"email": email, "password": PASSWORD, "name": "Ada"}
        )
        assert reply.status_code == 201, reply.text
        key: str = reply.json()["apiKey"]["key"]
        wait_for(lambda: self.subscription(key)["status"] == "active", seconds=30)
        if card:
            self.save_card(key)
        return key

    def save_card(self, key: str, card: str = "pm_card_visa") -> None:
        """What a customer does: open the payment-method link and save a card on that page."""
        reply = self.http.post("/billing/payment-method", headers={"X-API-Key": key}, json={})
        assert reply.status_code == 200, reply.text
        url: str = reply.json()["url"]
        page = httpx.get(url).text
        found = re.search(r"action='([^']*/payment_method\?s=[^']*)'", page)
        assert found is not None, page
        base = url.split("/emulator/")[0]
        saved = httpx.post(base + html.unescape(found.group(1)), data={"card": card})
        assert saved.status_code == 303, saved.text
        wait_for(lambda: self.subscription(key)["paymentMethodOnFile"] is True, seconds=10)

    def subscription(self, key: str) -> dict[str, Any]:
        reply = self.http.get("/billing/subscription", headers={"X-API-Key": key})
        assert reply.status_code == 200, reply.text
        body: dict[str, Any] = reply.json()
        return body

    def call(self, key: str) -> httpx.Response:
        return self.http.get("/api/v1/insights", headers={"Authorization": f"Bearer {key}"})

    def calls(self, key: str, count: int) -> list[int]:
        async def run() -> list[int]:
            limit = asyncio.Semaphore(32)
            async with httpx.AsyncClient(base_url=self.process.url, timeout=30) as client:

                async def one() -> int:
                    async with limit:
                        reply = await client.get("/api/v1/insights", headers={"X-API-Key": key})
                        return reply.status_code

                return await asyncio.gather(*(one() for _ in range(count)))

        return asyncio.run(run())

    def stripe_total(self) -> int:
        totals = self.emulator.state(meter_events="false")["totals"]
        return sum(int(float(v)) for per in totals.values() for v in per.values())

    def close_period(self, key: str) -> None:
        """Move Stripe's clock past the end of the current period (and its draft hour)."""
        end = datetime.fromisoformat(self.subscription(key)["currentPeriodEnd"]).timestamp()
        self.emulator.advance(end - self.emulator.now() + GRACE)
        self.emulator.http.post("/_emulator/webhooks/flush").raise_for_status()

    def webhook_processed(self, event_type: str) -> bool:
        async def check() -> bool:
            engine = create_engine(self.settings)
            try:
                async with session_scope(create_session_factory(engine)) as session:
                    rows = await session.scalars(
                        select(WebhookEvent.status).where(WebhookEvent.type == event_type)
                    )
                    return "processed" in set(rows)
            finally:
                await engine.dispose()

        return asyncio.run(check())

    def stripe(self, method: str, path: str, **data: Any) -> dict[str, Any]:
        reply = self.emulator.http.request(
            method, path, data=data, headers={"Authorization": f"Bearer {EMULATOR_KEY}"}
        )
        reply.raise_for_status()
        body: dict[str, Any] = reply.json()
        return body


@pytest.fixture
def start_gateway(
    make_stripe_settings: Callable[..., Settings], emulator: Emulator, tmp_path: Path
) -> Iterator[Callable[..., Gateway]]:
    running: list[Gateway] = []

    def start(**overrides: Any) -> Gateway:
        settings = make_stripe_settings(**overrides)
        port = free_port()
        setup = asyncio.run(
            run_setup(settings, webhook_url=f"http://127.0.0.1:{port}/webhooks/stripe")
        )
        env = settings_env(settings)
        env.update(
            STRIPE_PRICE_ID=setup.price_id,
            STRIPE_PRODUCT_ID=setup.product_id,
            STRIPE_WEBHOOK_SECRET=",".join(setup.webhook_secrets),
            STRIPE_PORTAL_CONFIGURATION_ID=setup.portal_configuration_id,
            FREE_TIER_CALLS=str(settings.free_tier_calls),
            COST_PER_CALL=str(settings.cost_per_call),
            RATE_LIMIT_PER_MINUTE="100000",
            USAGE_REPORTING_INTERVAL="300",
            REPORTER_MAX_BACKOFF_SECONDS="0.3",
            STRIPE_TIMEOUT_SECONDS="2",
            STRIPE_PAST_DUE_GRACE_DAYS="0",
            KEY_REVALIDATE_MS="200",
        )
        process = GatewayProcess(env, tmp_path / f"gateway-{port}.log", port).wait_until_up()
        gateway = Gateway(process, settings, emulator)
        running.append(gateway)
        return gateway

    yield start
    for gateway in running:
        gateway.http.close()
        gateway.process.stop()


def test_a_month_of_usage_is_invoiced_to_the_cent_and_paid(
    start_gateway: Callable[..., Gateway],
) -> None:
    gateway = start_gateway()
    key = gateway.register()

    assert gateway.calls(key, 1500) == [200] * 1500
    wait_for(lambda: gateway.stripe_total() == 1500, seconds=60)
    usage = gateway.http.get("/billing/usage", headers={"X-API-Key": key}).json()
    assert usage["currentPeriod"]["totalCalls"] == 1500
    assert usage["currentPeriod"]["estimatedCost"] == "$0.5000"

    gateway.close_period(key)

    wait_for(lambda: gateway.webhook_processed("invoice.paid"), seconds=30)
    invoices = gateway.http.get("/billing/invoices", headers={"X-API-Key": key}).json()
    [invoice] = [i for i in invoices["invoices"] if i["amount"] > 0]
    assert (invoice["amount"], invoice["currency"], invoice["status"]) == (0.5, "USD", "paid")
    assert gateway.subscription(key)["status"] == "active"
    assert gateway.call(key).status_code == 200


def test_a_declined_payment_blocks_calls_until_the_invoice_is_paid(
    start_gateway: Callable[..., Gateway],
) -> None:
    gateway = start_gateway(free_tier_calls=0, cost_per_call="0.05")
    key = gateway.register()
    [customer] = gateway.stripe("GET", "/v1/customers")["data"]
    card = gateway.stripe(
        "POST", "/v1/payment_methods/pm_card_chargeCustomerFail/attach", customer=customer["id"]
    )
    gateway.stripe(
        "POST",
        f"/v1/customers/{customer['id']}",
        **{"invoice_settings[default_payment_method]": card["id"]},
    )
    assert gateway.calls(key, 20) == [200] * 20
    wait_for(lambda: gateway.stripe_total() == 20, seconds=60)

    gateway.close_period(key)

    wait_for(lambda: gateway.subscription(key)["status"] == "past_due", seconds=30)
    wait_for(lambda: gateway.call(key).status_code == 402, seconds=10)
    refused = gateway.call(key).json()
    assert (refused["error"], refused["status"]) == ("Payment Required", "past_due")
    assert gateway.http.get("/billing/usage", headers={"X-API-Key": key}).status_code == 200

    good = gateway.stripe(
        "POST", "/v1/payment_methods/pm_card_visa/attach", customer=customer["id"]
    )
    gateway.stripe(
        "POST",
        f"/v1/customers/{customer['id']}",
        **{"invoice_settings[default_payment_method]": good["id"]},
    )
    open_invoices = gateway.stripe("GET", "/v1/invoices", status="open")["data"]
    [unpaid] = [i for i in open_invoices if i["amount_due"] > 0]
    assert unpaid["amount_due"] == 100  # 20 calls at 5 cents
    gateway.stripe("POST", f"/v1/invoices/{unpaid['id']}/pay")
    gateway.emulator.http.post("/_emulator/webhooks/flush").raise_for_status()

    wait_for(lambda: gateway.subscription(key)["status"] == "active", seconds=30)
    wait_for(lambda: gateway.call(key).status_code == 200, seconds=10)


def test_a_customer_without_a_card_goes_past_due_and_recovers_after_adding_one(
    start_gateway: Callable[..., Gateway],
) -> None:
    """As on Stripe: no payment method, no payment. The free tier is used up, the period
    closes, the charge fails, past_due, 402 after the grace period; the customer saves a card
    through POST /billing/payment-method and Stripe's next attempt pays: 200 again."""
    gateway = start_gateway(free_tier_calls=10, cost_per_call="0.05")
    key = gateway.register(card=False)
    assert gateway.subscription(key)["paymentMethodOnFile"] is False
    assert gateway.calls(key, 20) == [200] * 20
    wait_for(lambda: gateway.stripe_total() == 20, seconds=60)

    gateway.close_period(key)

    wait_for(lambda: gateway.subscription(key)["status"] == "past_due", seconds=30)
    wait_for(lambda: gateway.call(key).status_code == 402, seconds=10)
    invoices = gateway.stripe("GET", "/v1/invoices")["data"]
    [failed] = [i for i in invoices if i["status"] == "open" and i["amount_due"] > 0]
    assert (failed["amount_due"], failed["attempt_count"]) == (50, 1)  # 10 calls at 5 cents

    gateway.save_card(key)
    gateway.emulator.advance(3 * 86400 + 60)  # Stripe's next automatic attempt
    gateway.emulator.http.post("/_emulator/webhooks/flush").raise_for_status()

    wait_for(lambda: gateway.subscription(key)["status"] == "active", seconds=30)
    wait_for(lambda: gateway.call(key).status_code == 200, seconds=10)
    paid = gateway.stripe("GET", f"/v1/invoices/{failed['id']}")
    assert (paid["status"], paid["amount_paid"]) == ("paid", 50)


@pytest.mark.parametrize(
    ("kind", "extra"),
    [("429", {"retry_after": 0}), ("500", {}), ("delay", {"delay": 3}), ("drop", {})],
)
def test_stripe_faults_while_reporting_leave_the_totals_exact(
    start_gateway: Callable[..., Gateway], kind: str, extra: dict[str, Any]
) -> None:
    gateway = start_gateway()
    key = gateway.register()
    gateway.emulator.fault(kind, "/v1/billing/meter_events", count=2, **extra)

    for _ in range(3):
        assert gateway.calls(key, 40) == [200] * 40

    wait_for(lambda: gateway.stripe_total() == 120, seconds=60)
    identifiers = Counter(gateway.emulator.identifiers())
    assert max(identifiers.values()) == 1


def test_a_meter_error_reaches_the_gateway_through_the_event_destination_and_dead_letters(
    start_gateway: Callable[..., Gateway], tmp_path: Path
) -> None:
    """Stripe sends `v1.billing.meter.error_report_triggered` only to a thin event destination:
    the gateway verifies the delivery with the destination's secret, reads the event from
    `GET /v2/core/events/{id}` and dead-letters the report it names, for `reports` to show."""
    gateway = start_gateway()
    key = gateway.register()
    assert gateway.call(key).status_code == 200
    user_id = asyncio.run(_user_id(gateway.settings))
    asyncio.run(_pending_report(gateway.settings, user_id, "nvr_cus_gone_1", "cus_gone"))

    wait_for(
        lambda: gateway.webhook_processed("v1.billing.meter.error_report_triggered"), seconds=30
    )

    [delivery] = [
        d
        for d in gateway.emulator.http.get("/_emulator/webhooks").json()["deliveries"]
        if d["endpoint"].startswith("ed_")
    ]
    assert delivery["status"] == "succeeded"
    env = {**settings_env(gateway.settings), "LOG_LEVEL": "warning"}
    listed = subprocess.run(
        [COMMAND, "reports", "--status", "dead"], env=env, capture_output=True, text=True
    )
    assert listed.returncode == 0, listed.stderr
    [line] = [row for row in listed.stdout.splitlines() if row.startswith("nvr_cus_gone_1")]
    assert "meter_event_customer_not_found: No customer cus_gone was found." in line
    retried = subprocess.run(
        [COMMAND, "retry-report", "nvr_cus_gone_1"], env=env, capture_output=True, text=True
    )
    assert retried.returncode == 0, retried.stderr
    assert "1 reports queued" in retried.stdout


async def _user_id(settings: Settings) -> int:
    engine = create_engine(settings)
    try:
        async with session_scope(create_session_factory(engine)) as session:
            return int((await session.scalars(select(User.id))).one())
    finally:
        await engine.dispose()


async def _pending_report(settings: Settings, user_id: int, report_id: str, customer: str) -> None:
    """A report for a customer Stripe does not know (deleted there, say): Stripe accepts the
    meter event and reports it later as not counted."""
    engine = create_engine(settings)
    now = datetime.now(UTC)
    try:
        async with session_scope(create_session_factory(engine)) as session:
            session.add(
                UsageReport(
                    id=report_id,
                    user_id=user_id,
                    stripe_customer_id=customer,
                    period_start=now,
                    window_start=now,
                    window_end=now,
                    event_timestamp=now,
                    units=7,
                    event_count=7,
                    status="pending",
                    next_attempt_at=now,
                )
            )
    finally:
        await engine.dispose()
