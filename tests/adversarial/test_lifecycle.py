"""Part 7: the edges of an account's billing life, through real processes. Every successful call
lands on an invoice: the calls an account makes while Stripe is slow to create its subscription,
and the calls made just before an immediate cancel, which Stripe's final invoice must hold.

The gateway runs as `novo-gateway serve` on this suite's PostgreSQL (and SQLite), beside the
Stripe emulator as its own process with its faults; the invoices are read from the emulator's
Stripe API as a customer's bank would see them.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.adversarial.conftest import GatewayFactory
from tests.adversarial.harness import EMULATOR_KEY, PASSWORD, Gateway
from tests.adversarial.stripe_side import EmulatorProcess
from tests.adversarial.system import (
    Account,
    Figures,
    Ledger,
    register,
    report_usage,
    unique_email,
)

PROVISIONING_DELAY_SECONDS = 6.0
PENDING_CALLS = 10
CALLS_BEFORE_CANCEL = 30


def _ledger(gateway: Gateway) -> Ledger:
    env = gateway.env
    return Ledger(database_url=env.get("DATABASE_URL", ""), database_path=env["DATABASE_PATH"])


def _stripe_get(emulator: EmulatorProcess, path: str, **params: str) -> dict[str, Any]:
    """Stripe's API on the emulator, with the secret key (as the SDK would send it)."""
    response = emulator.http.get(
        path, params=params, headers={"Authorization": f"Bearer {EMULATOR_KEY}"}
    )
    response.raise_for_status()
    data: dict[str, Any] = response.json()
    return data


def _invoiced_units(invoice: dict[str, Any]) -> int:
    """The quantity of an invoice's usage lines (the metered price's)."""
    return sum(int(line.get("quantity") or 0) for line in invoice["lines"]["data"])


async def _calls(client: httpx.AsyncClient, account: Account, count: int) -> Counter[int]:
    answers = await asyncio.gather(
        *(client.get("/api/v1/insights", headers=account.auth) for _ in range(count))
    )
    return Counter(answer.status_code for answer in answers)


async def _wait_for(condition: Callable[[], Any], what: str, seconds: float = 60) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        value = await condition()
        if value:
            return value
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("database", ["postgres", "sqlite"])
async def test_calls_made_while_provisioning_is_slow_are_invoiced_in_the_first_period(
    database: str,
    factory: GatewayFactory,
    make_gateway: Callable[..., Gateway],
    stripe_faults: EmulatorProcess,
    figures: Figures,
) -> None:
    gateway = make_gateway(factory.database(database), stripe_timeout_seconds=15).start()
    # Stripe holds the subscription's creation for 6 s: registration answers `pending` first.
    stripe_faults.fault(
        "delay", "/v1/subscriptions", method="POST", delay=PROVISIONING_DELAY_SECONDS
    )
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as client:
        email = unique_email("slowprov")
        created = await client.post("/auth/register", json={"email": email, "password": PASSWORD})
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["subscription"]["status"] == "pending"
        account = Account(email, body["user"]["id"], body["apiKey"]["key"], body["apiKey"]["id"])
        assert await _calls(client, account, PENDING_CALLS) == {200: PENDING_CALLS}
        pending = (await client.get("/billing/subscription", headers=account.auth)).json()
        assert pending["status"] == "pending"  # every call above was made before the period

        async def provisioned() -> bool:
            view = await client.get("/billing/subscription", headers=account.auth)
            return view.status_code == 200 and bool(view.json().get("id"))

        await _wait_for(provisioned, "the delayed subscription")
        result = await asyncio.to_thread(report_usage, gateway.env, 60)
        assert result.returncode == 0, result.stdout + result.stderr

        usage = (await client.get("/billing/usage", headers=account.auth)).json()
        assert usage["currentPeriod"]["totalCalls"] == PENDING_CALLS
        invoices = (await client.get("/billing/invoices", headers=account.auth)).json()
        upcoming = invoices["upcoming"]
        assert upcoming is not None
        assert sum(int(line["quantity"] or 0) for line in upcoming["lines"]) == PENDING_CALLS

        # And the invoice Stripe makes for the period bills them: end it now and look.
        canceled = await client.post(
            "/billing/subscription/cancel", json={"immediately": True}, headers=account.auth
        )
        assert canceled.status_code == 200, canceled.text
    ledger = _ledger(gateway)
    try:
        customer = await ledger.customer_of(account.user_id)
        _, billable = await ledger.events(account.user_id)
    finally:
        await ledger.close()
    assert customer is not None and billable == PENDING_CALLS
    listed = _stripe_get(stripe_faults, "/v1/invoices", customer=customer)["data"]
    invoiced = sum(_invoiced_units(invoice) for invoice in listed)
    assert invoiced == PENDING_CALLS, listed
    figures.add(
        "lifecycle",
        provisioning_delay_seconds=PROVISIONING_DELAY_SECONDS,
        pending_calls=PENDING_CALLS,
        pending_calls_invoiced=invoiced,
    )


@pytest.mark.parametrize("database", ["postgres", "sqlite"])
async def test_an_immediate_cancel_invoices_every_call_made_before_it(
    database: str,
    factory: GatewayFactory,
    make_gateway: Callable[..., Gateway],
    stripe_faults: EmulatorProcess,
    figures: Figures,
) -> None:
    # The reporter runs every hour here: the cancel comes well inside its interval.
    gateway = make_gateway(factory.database(database)).start()
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as client:
        account = await register(client, "cancelnow")
        assert await _calls(client, account, CALLS_BEFORE_CANCEL) == {200: CALLS_BEFORE_CANCEL}
        canceled = await client.post(
            "/billing/subscription/cancel", json={"immediately": True}, headers=account.auth
        )
        assert canceled.status_code == 200, canceled.text
        assert canceled.json()["status"] == "canceled"
        # The process that canceled refuses the next call at once.
        after = await client.get("/api/v1/insights", headers=account.auth)
        assert after.status_code == 402, after.text
    ledger = _ledger(gateway)
    try:
        customer = await ledger.customer_of(account.user_id)
    finally:
        await ledger.close()
    assert customer is not None
    listed = _stripe_get(stripe_faults, "/v1/invoices", customer=customer)["data"]
    finals = [i for i in listed if i["status"] in ("open", "paid") and _invoiced_units(i)]
    assert len(finals) == 1, listed
    assert _invoiced_units(finals[0]) == CALLS_BEFORE_CANCEL
    figures.add(
        "lifecycle",
        calls_before_immediate_cancel=CALLS_BEFORE_CANCEL,
        final_invoice_quantity=_invoiced_units(finals[0]),
    )
