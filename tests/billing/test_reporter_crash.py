"""The reporter process killed (SIGKILL) at each step of a report, then run again.

Whatever the step, once a run completes the units Stripe holds equal the ledger's billable units,
and no meter event identifier was counted twice. The kill is real: the `report-usage` command runs
in its own process and a failpoint (NOVO_FAILPOINTS) makes it SIGKILL itself at the named step.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from novo_gateway.billing.stripe_client import StripeBilling
from novo_gateway.kit.config import Settings
from tests.billing.conftest import Emulator, Ledger
from tests.integration.processes import wait_for


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "DATABASE_"))}
    env.update(
        DATABASE_PATH=str(settings.database_path),
        DATABASE_URL=settings.database_url,
        STRIPE_SECRET_KEY=settings.stripe_secret_key,
        STRIPE_API_BASE=settings.stripe_api_base,
        STRIPE_MAX_NETWORK_RETRIES="0",
        REPORTER_LEASE_SECONDS="1",
        LOG_LEVEL="warning",
        NOVO_FAILPOINTS="",
    )
    env.update(extra)
    return env


def _report_usage(settings: Settings, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "novo_gateway.cli", "report-usage", "--max-seconds", "60"],
        env=_env(settings, **extra),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _assert_exact(emulator: Emulator, customer_id: str, meter_id: str, units: int) -> None:
    assert emulator.total(customer_id, meter_id) == units
    twice = [i for i, n in Counter(emulator.identifiers()).items() if n > 1]
    assert twice == []


@pytest.mark.parametrize("step", ["after_claim", "before_send", "after_answer"])
async def test_killed_at_a_step_then_restarted_bills_each_call_once(
    stripe_settings: Settings,
    ledger: Ledger,
    stripe_billing: StripeBilling,
    emulator: Emulator,
    meter_id: str,
    step: str,
) -> None:
    ada = await ledger.customer(stripe_billing, "ada@example.com")
    await ledger.record(ada[0], ada[1], 250)

    killed = _report_usage(stripe_settings, NOVO_FAILPOINTS=f"reporter.{step}=kill")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    restarted = _report_usage(stripe_settings)

    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    _assert_exact(emulator, ada[2], meter_id, await ledger.billable_units(ada[0]))


async def test_killed_while_the_request_is_in_flight_bills_each_call_once(
    stripe_settings: Settings,
    ledger: Ledger,
    stripe_billing: StripeBilling,
    emulator: Emulator,
    meter_id: str,
) -> None:
    """The emulator holds the meter event for a second; the reporter dies while waiting."""
    ada = await ledger.customer(stripe_billing, "ada@example.com")
    await ledger.record(ada[0], ada[1], 40)
    emulator.fault("delay", "/v1/billing/meter_events", count=1, delay=1.0)
    process = subprocess.Popen(
        [sys.executable, "-m", "novo_gateway.cli", "report-usage"],
        env=_env(stripe_settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if any(f["matched"] for f in emulator.state(meter_events="false")["faults"]):
            break  # the emulator has taken the request and holds it
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    # The held request finishes at the emulator, as it would at Stripe.
    wait_for(lambda: emulator.total(ada[2], meter_id) == 40)

    restarted = _report_usage(stripe_settings)

    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    _assert_exact(emulator, ada[2], meter_id, 40)
