"""Reconciliation: the ledger's reported units against Stripe's meter, and fixing the drift."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta

from novo_gateway.accounts.models import User
from novo_gateway.billing import operations
from novo_gateway.billing.models import UsageReport
from novo_gateway.billing.reconcile import SETTLE, Reconciler
from novo_gateway.billing.reporter import UsageReporter
from novo_gateway.billing.stripe_client import StripeBilling
from novo_gateway.billing.stripe_types import MeterEvent
from novo_gateway.kit.clock import Clock, FrozenClock
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import session_scope
from tests.billing.conftest import METER_EVENT, Emulator, Ledger
from tests.billing.subscriptions import (
    GRACE,
    emulator_time,
    invoiced_units,
    invoices,
    small_plan,
    subscribed,
)
from tests.integration.processes import settings_env


async def _report(ledger: Ledger, stripe: StripeBilling, settings: Settings) -> None:
    await UsageReporter(ledger.sessions, stripe, settings, Clock()).drain(max_seconds=30)


async def _lost_report(
    ledger: Ledger, stripe: StripeBilling, settings: Settings, units: int
) -> tuple[str, UsageReport]:
    """A customer's `units`, reported, then cancelled at Stripe (an adjustment): Stripe's meter
    misses a report the ledger has as sent. The customer's Stripe id and the report."""
    user_id, key_id, customer_id = await ledger.customer(stripe, "ada@example.com")
    await ledger.record(user_id, key_id, units)
    await _report(ledger, stripe, settings)
    [report] = await ledger.reports()
    await stripe.call(
        stripe.sdk.v1.billing.meter_event_adjustments.create_async,
        params={"event_name": METER_EVENT, "type": "cancel", "cancel": {"identifier": report.id}},
    )
    return customer_id, report


async def test_no_drift_once_everything_is_reported(
    ledger: Ledger,
    stripe_billing: StripeBilling,
    stripe_settings: Settings,
    emulator: Emulator,
    meter_id: str,
) -> None:
    ada = await ledger.customer(stripe_billing, "ada@example.com")
    await ledger.record(ada[0], ada[1], 42)
    await _report(ledger, stripe_billing, stripe_settings)

    [drift] = await Reconciler(ledger.sessions, stripe_billing, stripe_settings, Clock()).check()

    assert (drift.ledger_units, drift.reported_units, drift.stripe_units) == (42, 42, 42)
    assert drift.drift == 0 and drift.unreported_units == 0


async def test_unreported_units_are_shown_apart_from_drift(
    ledger: Ledger,
    stripe_billing: StripeBilling,
    stripe_settings: Settings,
    emulator: Emulator,
    meter_id: str,
) -> None:
    ada = await ledger.customer(stripe_billing, "ada@example.com")
    await ledger.record(ada[0], ada[1], 5)

    [drift] = await Reconciler(ledger.sessions, stripe_billing, stripe_settings, Clock()).check()

    assert drift.unreported_units == 5 and drift.drift == 0


async def test_units_stripe_lost_are_found_and_fixed_once(
    ledger: Ledger,
    stripe_billing: StripeBilling,
    stripe_settings: Settings,
    emulator: Emulator,
    meter_id: str,
) -> None:
    """Stripe cancels a report (an adjustment): the drift is sent again, and only once.

    The fix run again a minute later is the same request: the emulator, like Stripe, refuses an
    idempotency key reused with other parameters (a timestamp taken from the run's clock was one).
    """
    customer, report = await _lost_report(ledger, stripe_billing, stripe_settings, 30)
    assert report.sent_at is not None
    clock = FrozenClock(report.sent_at + SETTLE)
    reconciler = Reconciler(ledger.sessions, stripe_billing, stripe_settings, clock)
    [drift] = await reconciler.check()
    assert drift.drift == 30
    assert drift.reported_through == report.event_timestamp

    assert await reconciler.fix(drift) is True
    clock.advance(60)
    await reconciler.fix(drift)  # the same fix again: the same identifier, not counted again

    assert emulator.total(customer, meter_id) == 30
    [after] = await reconciler.check()
    assert after.drift == 0


async def test_a_drift_is_not_fixed_until_stripe_has_had_time_to_count_the_latest_report(
    ledger: Ledger,
    stripe_billing: StripeBilling,
    stripe_settings: Settings,
    emulator: Emulator,
    meter_id: str,
) -> None:
    """Stripe's summaries are eventually consistent: a report it accepted a moment ago may be
    missing from them, and fixing that drift would bill its units twice once Stripe caught up.
    (The emulator counts at once; the cancelled report stands in for one not counted yet.)"""
    customer, report = await _lost_report(ledger, stripe_billing, stripe_settings, 12)
    assert report.sent_at is not None
    clock = FrozenClock(report.sent_at + timedelta(minutes=1))
    reconciler = Reconciler(
        ledger.sessions, stripe_billing, stripe_settings, clock, settle=timedelta(minutes=10)
    )
    [drift] = await reconciler.check()
    assert drift.drift == 12 and drift.last_sent_at == report.sent_at

    assert reconciler.settles_at(drift) == report.sent_at + timedelta(minutes=10)
    assert await reconciler.fix(drift) is False
    assert emulator.total(customer, meter_id) == 0

    clock.set(report.sent_at + timedelta(minutes=10))
    assert reconciler.settles_at(drift) is None
    assert await reconciler.fix(drift) is True
    assert emulator.total(customer, meter_id) == 12


async def test_more_at_stripe_than_reported_is_drift_that_is_not_sent(
    ledger: Ledger,
    stripe_billing: StripeBilling,
    stripe_settings: Settings,
    emulator: Emulator,
    meter_id: str,
) -> None:
    ada = await ledger.customer(stripe_billing, "ada@example.com")
    await stripe_billing.meter_event(
        event_name=METER_EVENT,
        event=MeterEvent("someone-else", ada[2], 4, Clock().now()),
    )
    reconciler = Reconciler(ledger.sessions, stripe_billing, stripe_settings, Clock())

    [drift] = await reconciler.check()

    assert drift.drift == -4
    assert await reconciler.fix(drift) is False
    assert emulator.total(ada[2], meter_id) == 4


async def test_the_reconcile_command_exits_1_on_drift_and_0_after_fix(
    ledger: Ledger,
    stripe_billing: StripeBilling,
    stripe_settings: Settings,
    emulator: Emulator,
    meter_id: str,
    make_stripe_settings: Callable[..., Settings],
) -> None:
    customer, _ = await _lost_report(ledger, stripe_billing, stripe_settings, 8)

    def reconcile(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "novo_gateway.cli", "reconcile", *args],
            env=settings_env(stripe_settings),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    drifting = reconcile()
    assert drifting.returncode == 1 and "DRIFT +8" in drifting.stdout
    negative = reconcile("--fix", "--settle-minutes", "-1")
    assert negative.returncode == 2 and "--settle-minutes" in negative.stderr
    settling = reconcile("--fix")  # the report was sent a moment ago
    assert settling.returncode == 1 and "(not fixed: Stripe may not count" in settling.stdout
    assert emulator.total(customer, meter_id) == 0
    fixed = reconcile("--fix", "--settle-minutes", "0")
    assert fixed.returncode == 0 and "(fixed)" in fixed.stdout
    clean = reconcile()
    assert clean.returncode == 0 and " ok" in clean.stdout
    assert emulator.total(customer, meter_id) == 8


async def test_no_false_drift_after_a_rollover_inside_a_minute(
    ledger: Ledger,
    stripe_billing: StripeBilling,
    stripe_settings: Settings,
    emulator: Emulator,
    meter_id: str,
) -> None:
    """The period ends at :30 of a minute; Stripe's summaries only take whole minutes, so the
    minute holding the rollover has calls of both periods. Nothing drifts."""
    ada = await ledger.customer(stripe_billing, "ada@example.com")
    rollover = Clock().now().replace(second=30, microsecond=0) - timedelta(minutes=5)
    async with session_scope(ledger.sessions) as session:
        user = await session.get_one(User, ada[0])
        user.current_period_start = rollover
        user.current_period_end = rollover + timedelta(days=30)
    await ledger.record(ada[0], ada[1], 3, at=rollover - timedelta(seconds=10))  # last period
    await ledger.record(ada[0], ada[1], 4, at=rollover + timedelta(seconds=5))
    await _report(ledger, stripe_billing, stripe_settings)

    [drift] = await Reconciler(ledger.sessions, stripe_billing, stripe_settings, Clock()).check()

    assert drift.drift == 0
    assert (drift.period_start, drift.ledger_units, drift.reported_units) == (rollover, 4, 4)
    assert drift.stripe_units == 7  # the rollover's minute, as Stripe sums it
    assert drift.window_reported_units == 7


async def test_units_reported_after_the_invoice_was_final_are_drift_that_fix_carries_over(
    ledger: Ledger,
    stripe_billing: StripeBilling,
    stripe_settings: Settings,
    emulator: Emulator,
    meter_id: str,
) -> None:
    """A gateway whose clock lags Stripe's sends a period's last report after Stripe finalized
    the invoice: Stripe's meter counts it, no invoice bills it, and the meter comparison is
    clean. Reconcile names it, `fix` carries it over once, then everything is invoiced."""
    ada = await subscribed(ledger, stripe_billing, await small_plan(stripe_billing, meter_id))
    await ledger.record(ada.user_id, ada.key_id, 8, at=ada.start + timedelta(minutes=1))
    await _report(ledger, stripe_billing, stripe_settings)
    emulator.advance((ada.end - emulator_time(emulator)).total_seconds() + GRACE + 60)
    await ledger.record(ada.user_id, ada.key_id, 5, at=ada.end - timedelta(seconds=10))
    lagging = FrozenClock(ada.end - timedelta(seconds=5))
    await UsageReporter(ledger.sessions, stripe_billing, stripe_settings, lagging).drain(
        max_seconds=10
    )
    reconciler = Reconciler(
        ledger.sessions, stripe_billing, stripe_settings, FrozenClock(emulator_time(emulator))
    )

    [closed] = await reconciler.check()
    assert closed.drift == 5
    assert (closed.ledger_units, closed.reported_units, closed.stripe_units) == (13, 13, 13)
    assert closed.invoiced_units == 8 and closed.closed
    assert reconciler.settles_at(closed) is None
    assert await reconciler.fix(closed) is True
    [after] = await reconciler.check()
    assert after.invoiced_units == 13 and after.drift == 0
    assert await reconciler.fix(after) is False

    emulator.advance(40 * 86400)  # the next invoice takes the item: 2 calls free, 3 at 1 cent
    renewal = (await invoices(stripe_billing, ada.customer))[0]
    assert [li.amount for li in renewal.lines.data if li.parent.type == "invoice_item_details"] == [
        3
    ]
    assert await invoiced_units(stripe_billing, ada.customer) == 13 == closed.ledger_units


async def test_report_usage_and_reconcile_tell_their_progress(
    ledger: Ledger,
    stripe_billing: StripeBilling,
    stripe_settings: Settings,
    emulator: Emulator,
    meter_id: str,
) -> None:
    for email in ("ada@example.com", "bob@example.com"):
        user_id, key_id, _customer = await ledger.customer(stripe_billing, email)
        await ledger.record(user_id, key_id, 3)
    said: list[str] = []
    run, left, _dead = await operations.report_all(
        stripe_settings, max_seconds=30, progress=said.append
    )
    assert (run.claimed_events, left) == (6, 0)
    assert said[-1] == f"6 events claimed, {run.sent} reports sent"

    said.clear()
    lines, drifting = await operations.reconcile(
        stripe_settings, fix=False, settle=timedelta(0), progress=said.append
    )
    assert drifting == 0 and len(lines) == 2
    assert said[:2] == ["invoices of 1/2 customers read", "invoices of 2/2 customers read"]
    assert said[-1] == "meter totals of 2/2 periods read"
