"""Late usage at a period's end, through real processes: Stripe's meter endpoint failing from 20 s
before the end until 2 hours after it (past the invoice's finalization), and a gateway stopped
across the end for longer than that. The calls of the last seconds reach Stripe only after the
period's invoice is final; they must end up on the next invoice as carried-over items at the
price they had in their own period, and Σ invoiced units == Σ ledger billable units.

The emulator is this test's own: its clock starts a month back, so that the subscriptions made at
registration end about `LEAD` seconds later in real time; it is then moved to real time, so the
gateways (on the wall clock) and Stripe agree until the test moves Stripe two hours on.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from novo_gateway.billing.models import UsageReport
from stripe_emulator.periods import add_interval
from tests.adversarial.conftest import GatewayFactory
from tests.adversarial.harness import PYTHON, Gateway, wait_until
from tests.adversarial.stripe_side import EmulatorProcess, setup_stripe
from tests.adversarial.system import Account, Figures, Ledger, register

LEAD = 50  # seconds from registration to the period's end
BEFORE_END = 20  # the meter endpoint fails from this long before the end
# A small plan, so the late calls' price shows: 10 calls free, then 1 cent each.
PLAN = {"FREE_TIER_CALLS": "10", "COST_PER_CALL": "0.01"}
EARLY, LATE = 8, 7  # calls before the outage, calls in its first seconds (2 free, 5 at 1 cent)


def _month_before(target: int) -> int:
    """A time one calendar month (as the emulator counts one) before `target`."""
    for days in (28, 29, 30, 31):
        if add_interval(target - days * 86400, "month", 1) == target:
            return target - days * 86400
    return target - 30 * 86400


@pytest.fixture
def late_emulator() -> Iterator[EmulatorProcess]:
    start = _month_before(int(time.time()) + LEAD + 30)  # 30 s: set-up and start-up
    process = EmulatorProcess("--clock-start", str(start)).start()
    yield process
    process.stop()


class Stripe:
    """What Stripe holds for one customer, read with the secret key over HTTP."""

    def __init__(self, emulator: EmulatorProcess, key: str) -> None:
        self.http = httpx.Client(base_url=emulator.url, auth=(key, ""), timeout=30)

    def __enter__(self) -> Stripe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def invoices(self, customer: str) -> list[dict[str, Any]]:
        page = self.http.get("/v1/invoices", params={"customer": customer, "limit": 100})
        data: list[dict[str, Any]] = page.raise_for_status().json()["data"]
        return data

    def items(self, customer: str) -> list[dict[str, Any]]:
        page = self.http.get("/v1/invoiceitems", params={"customer": customer, "limit": 100})
        data: list[dict[str, Any]] = page.raise_for_status().json()["data"]
        return data

    def invoiced(self, customer: str) -> tuple[int, int]:
        """(units, cents) on the customer's final invoices: metered lines and carried items."""
        units = cents = 0
        for invoice in self.invoices(customer):
            if invoice["status"] == "draft":
                continue
            cents += invoice["total"]
            for line in invoice["lines"]["data"]:
                if line["parent"]["type"] == "subscription_item_details":
                    units += line["quantity"]
                else:
                    units += int(line["metadata"]["novo_units"])
        return units, cents


async def _calls(gateway: Gateway, account: Account, count: int) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        for _ in range(count):
            answer = await client.get("/api/v1/insights", headers=account.auth)
            assert answer.status_code == 200, answer.text


async def _period_end(gateway: Gateway, account: Account) -> float:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        body = (await client.get("/billing/subscription", headers=account.auth)).json()
    return datetime.fromisoformat(body["currentPeriodEnd"].replace("Z", "+00:00")).timestamp()


async def _reports(gateway: Gateway) -> dict[str, int]:
    """Report units by status, from the gateway's database."""
    ledger = Ledger(
        database_url=gateway.env.get("DATABASE_URL", ""),
        database_path=gateway.env["DATABASE_PATH"],
    )
    try:
        async with ledger.sessions() as session:
            rows = await session.execute(
                select(UsageReport.status, func.sum(UsageReport.units)).group_by(UsageReport.status)
            )
            return {str(status): int(units) for status, units in rows.all()}
    finally:
        await ledger.close()


async def _carried(gateway: Gateway, timeout: float) -> None:
    """Until the gateway's reporter has carried the late calls over (bounded)."""
    deadline = time.monotonic() + timeout
    while (await _reports(gateway)).get("carried") != LATE:
        assert time.monotonic() < deadline, f"not carried over: {await _reports(gateway)}"
        await asyncio.sleep(0.2)


def _reconcile(gateway: Gateway) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "novo_gateway.cli", "reconcile"],
        env=gateway.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_calls_reaching_stripe_after_their_invoice_is_final_are_carried_over(
    factory: GatewayFactory, late_emulator: EmulatorProcess, figures: Figures
) -> None:
    emulator = late_emulator
    env = setup_stripe(emulator, **PLAN)
    settings = {**env, **PLAN, "USAGE_REPORTING_INTERVAL": "300"}
    outage = factory.gateway(
        factory.database("postgres"), reporter_max_backoff_seconds=1, **settings
    )
    stopped = factory.gateway(
        factory.database("sqlite"), reporter_max_backoff_seconds=1, **settings
    )
    gateways = (outage, stopped)
    with Stripe(emulator, env["STRIPE_SECRET_KEY"]) as stripe:
        try:
            for gateway in gateways:
                gateway.launch()
            for gateway in gateways:
                gateway.wait_ready()
            accounts = []
            for gateway in gateways:
                async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as client:
                    accounts.append(await register(client, "late"))
            # Stripe's clock to real time: from here the gateways and Stripe agree on the time.
            emulator.http.post("/_emulator/clock/advance", json={"to": time.time()})
            ends = [await _period_end(g, a) for g, a in zip(gateways, accounts, strict=True)]
            end = min(ends)
            assert end - time.time() > BEFORE_END + 5, "registration took too long for this test"
            customers = []
            for gateway, account in zip(gateways, accounts, strict=True):
                ledger = Ledger(
                    database_url=gateway.env.get("DATABASE_URL", ""),
                    database_path=gateway.env["DATABASE_PATH"],
                )
                customers.append(str(await ledger.customer_of(account.user_id)))
                await ledger.close()
                await _calls(gateway, account, EARLY)
            wait_until(
                lambda: all(emulator.totals().get(c) == EARLY for c in customers),
                30,
                "the early calls to reach Stripe's meter",
            )

            # 20 s before the end, Stripe's meter endpoint starts failing.
            wait_until(lambda: time.time() >= end - BEFORE_END, BEFORE_END + LEAD, "the outage")
            emulator.fault("500", "/v1/billing/meter_events", count=1_000_000)
            for gateway, account in zip(gateways, accounts, strict=True):
                await _calls(gateway, account, LATE)
            assert time.time() < end - 1, "the late calls were not all made before the period's end"
            stopped.stop()  # and this gateway stays down until two hours after the end

            # The period ends (Stripe drafts its invoice), then Stripe's clock moves 2 hours on:
            # the draft is finalized and paid, and the meter endpoint recovers.
            wait_until(
                lambda: all(len(stripe.invoices(c)) == 2 for c in customers),
                LEAD,
                "the period's end and its draft invoice",
            )
            emulator.http.post("/_emulator/clock/advance", json={"seconds": 2 * 3600})
            for customer in customers:
                closed = stripe.invoices(customer)[0]
                assert closed["status"] == "paid"
                assert closed["lines"]["data"][0]["quantity"] == EARLY
            # The gateway that stayed up carries its late calls over without the meter: they go to
            # no meter event once the invoice is final. (Its reporter may have found the draft open
            # just before the clock moved; a send that follows still meets the failing meter.)
            await _carried(outage, 60)
            emulator.clear_faults()
            stopped.start()
            await _carried(stopped, 60)

            for gateway, customer in zip(gateways, customers, strict=True):
                items = stripe.items(customer)
                assert sum(int(i["metadata"]["novo_units"]) for i in items) == LATE
                assert sum(i["amount"] for i in items) == 5  # 2 still free, 5 at 1 cent
                assert all(i["invoice"] is None for i in items)  # pending: the next invoice's
                assert all("carried over" in i["description"] for i in items)
                assert emulator.totals()[customer] == EARLY  # the meter never got them
                assert await _reports(gateway) == {"sent": EARLY, "carried": LATE}
                checked = _reconcile(gateway)
                assert checked.returncode == 0, checked.stdout + checked.stderr
                assert f"invoiced={EARLY + LATE}" in checked.stdout
        finally:
            for gateway in gateways:
                gateway.stop()

        # The next period's invoice takes the items: everything the ledger billed is invoiced.
        emulator.http.post("/_emulator/clock/advance", json={"seconds": 33 * 86400})
        invoiced = []
        for gateway, customer, account in zip(gateways, customers, accounts, strict=True):
            ledger = Ledger(
                database_url=gateway.env.get("DATABASE_URL", ""),
                database_path=gateway.env["DATABASE_PATH"],
            )
            owed = (await ledger.billable_units_by_customer())[customer]
            _, billable = await ledger.events(account.user_id)
            await ledger.close()
            units, cents = stripe.invoiced(customer)
            assert units == owed == billable == EARLY + LATE
            assert cents == 5  # what one invoice of all 15 calls would have charged
            invoiced.append(units)
    figures.add(
        "late_usage",
        late_calls=LATE * len(gateways),
        carried_units=LATE * len(gateways),
        carried_cents=5 * len(gateways),
        invoiced_units=sum(invoiced),
        ledger_units=sum(invoiced),
    )
