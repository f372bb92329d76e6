"""The usage reporter against the Stripe emulator: it never loses or doubles a billable call."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY

from novo_gateway.billing.events import EventContext, on_meter_error_report
from novo_gateway.billing.operations import requeue_dead
from novo_gateway.billing.reporter import UsageReporter
from novo_gateway.billing.stripe_client import StripeBilling
from novo_gateway.billing.stripe_types import PeriodInvoice
from novo_gateway.kit.clock import Clock, FrozenClock
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import session_scope
from tests.billing.conftest import METER_EVENT, Emulator, Ledger
from tests.factories import create_api_key, create_user, usage_report


def assert_no_identifier_twice(emulator: Emulator) -> None:
    counts = Counter(emulator.identifiers())
    assert [i for i, n in counts.items() if n > 1] == []


async def test_reported_units_equal_the_ledgers_billable_units(
    ledger: Ledger,
    stripe_billing: StripeBilling,
    emulator: Emulator,
    meter_id: str,
    make_reporter: Callable[..., UsageReporter],
) -> None:
    ada = await ledger.customer(stripe_billing, "ada@example.com")
    bob = await ledger.customer(stripe_billing, "bob@example.com")
    await ledger.record(ada[0], ada[1], 1500)
    await ledger.record(bob[0], bob[1], 7, units=3)
    await ledger.record(ada[0], ada[1], 40, status=500)  # failed calls are not billed

    run = await make_reporter().run_once()

    assert run is not None and run.sent == 2 and run.claimed_events == 1507
    assert emulator.total(ada[2], meter_id) == 1500 == await ledger.billable_units(ada[0])
    assert emulator.total(bob[2], meter_id) == 21 == await ledger.billable_units(bob[0])
    assert_no_identifier_twice(emulator)


async def test_a_second_run_sends_nothing_new(
    ledger: Ledger,
    stripe_billing: StripeBilling,
    emulator: Emulator,
    meter_id: str,
    make_reporter: Callable[..., UsageReporter],
) -> None:
    ada = await ledger.customer(stripe_billing, "ada@example.com")
    await ledger.record(ada[0], ada[1], 10)
    reporter = make_reporter()
    await reporter.run_once()

    again = await reporter.run_once()

    assert again is not None and again.sent == 0 and again.claimed_events == 0
    assert emulator.total(ada[2], meter_id) == 10


async def test_calls_recorded_during_a_report_go_into_the_next_one(
    ledger: Ledger,
    stripe_billing: StripeBilling,
    emulator: Emulator,
    meter_id: str,
    make_reporter: Callable[..., UsageReporter],
) -> None:
    ada = await ledger.customer(stripe_billing, "ada@example.com")
    await ledger.record(ada[0], ada[1], 5)
    reporter = make_reporter()
    from novo_gateway.billing.reporter import ReporterRun

    run = ReporterRun()
    await reporter.claim(run)
    await ledger.record(ada[0], ada[1], 3)  # arrives while the first report is in flight
    await reporter.send_due(run)
    assert emulator.total(ada[2], meter_id) == 5

    await reporter.run_once()

    assert emulator.total(ada[2], meter_id) == 8
    assert sorted(r.units for r in await ledger.reports()) == [3, 5]


async def test_unprovisioned_accounts_wait_until_they_have_a_customer(
    ledger: Ledger,
    stripe_billing: StripeBilling,
    emulator: Emulator,
    meter_id: str,
    make_reporter: Callable[..., UsageReporter],
) -> None:
    async with session_scope(ledger.sessions) as session:
        user = await create_user(session, email="new@example.com")
        key, _ = await create_api_key(session, user)
        user_id, key_id = user.id, key.id
    await ledger.record(user_id, key_id, 4)

    run = await make_reporter().run_once()

    assert run is not None and run.claimed_events == 0
    assert await make_reporter().pending() == 0  # not owed to Stripe until provisioned


@pytest.mark.parametrize(
    ("kind", "extra"),
    [("429", {"retry_after": 0}), ("500", {}), ("drop", {})],
)
async def test_stripe_faults_delay_but_never_lose_or_double_a_report(
    ledger: Ledger,
    stripe_billing: StripeBilling,
    emulator: Emulator,
    meter_id: str,
    make_reporter: Callable[..., UsageReporter],
    kind: str,
    extra: dict[str, Any],
) -> None:
    ada = await ledger.customer(stripe_billing, "ada@example.com")
    await ledger.record(ada[0], ada[1], 120)
    emulator.fault(kind, "/v1/billing/meter_events", count=2, **extra)

    run = await make_reporter(max_backoff_seconds=0.01).drain(max_seconds=30)

    assert run.retried >= 1 and run.dead == 0
    assert emulator.total(ada[2], meter_id) == 120
    assert_no_identifier_twice(emulator)
    assert [r.status for r in await ledger.reports()] == ["sent"]


async def test_a_report_stripe_already_holds_is_marked_sent(
    ledger: Ledger,
    stripe_billing: StripeBilling,
    emulator: Emulator,
    meter_id: str,
    make_reporter: Callable[..., UsageReporter],
) -> None:
    """A crash after Stripe's answer but before marking: the resend is a duplicate at Stripe."""
    from novo_gateway.billing.reporter import ReporterRun

    ada = await ledger.customer(stripe_billing, "ada@example.com")
    await ledger.record(ada[0], ada[1], 9)
    reporter = make_reporter()
    await reporter.claim(ReporterRun())
    [report] = await ledger.reports()
    await stripe_billing.call(  # what the crashed process had already sent
        stripe_billing.sdk.v1.billing.meter_events.create_async,
        params={
            "event_name": METER_EVENT,
            "payload": {"stripe_customer_id": ada[2], "value": "9"},
            "identifier": report.id,
            "timestamp": int(report.event_timestamp.timestamp()),
        },
    )

    run = await reporter.run_once()

    assert run is not None and run.sent == 1
    assert emulator.total(ada[2], meter_id) == 9
    assert [r.status for r in await ledger.reports()] == ["sent"]


async def test_a_refused_report_is_dead_lettered_with_stripes_message(
    ledger: Ledger,
    stripe_billing: StripeBilling,
    emulator: Emulator,
    meter_id: str,
    make_reporter: Callable[..., UsageReporter],
) -> None:
    """Stripe refuses timestamps more than 5 minutes ahead: a 4xx that no retry fixes."""
    ada = await ledger.customer(stripe_billing, "ada@example.com")
    ahead = datetime.now(UTC) + timedelta(hours=1)
    await ledger.record(ada[0], ada[1], 2, at=ahead)

    run = await make_reporter(FrozenClock(ahead)).run_once()

    assert run is not None and run.dead == 1
    [report] = await ledger.reports()
    assert report.status == "dead" and "future" in (report.last_error or "").lower()
    assert emulator.total(ada[2], meter_id) == 0


async def test_events_older_than_stripe_accepts_are_flagged_not_sent(
    ledger: Ledger,
    stripe_billing: StripeBilling,
    emulator: Emulator,
    meter_id: str,
    make_reporter: Callable[..., UsageReporter],
) -> None:
    ada = await ledger.customer(stripe_billing, "ada@example.com")
    await ledger.record(ada[0], ada[1], 3, at=datetime.now(UTC) - timedelta(days=36))

    run = await make_reporter().run_once()

    assert run is not None and run.sent == 0
    assert [r.status for r in await ledger.reports()] == ["expired"]
    assert emulator.total(ada[2], meter_id) == 0


async def test_only_one_reporter_works_at_a_time(
    ledger: Ledger,
    stripe_billing: StripeBilling,
    emulator: Emulator,
    meter_id: str,
    make_reporter: Callable[..., UsageReporter],
) -> None:
    first, second = make_reporter(holder="one"), make_reporter(holder="two")
    assert await first.run_once() is not None

    assert await second.run_once() is None

    await first.stop()  # hands the lease back
    assert await second.run_once() is not None


async def test_an_unacknowledged_report_past_24_hours_is_checked_before_any_resend(
    ledger: Ledger,
    stripe_billing: StripeBilling,
    emulator: Emulator,
    meter_id: str,
    make_reporter: Callable[..., UsageReporter],
) -> None:
    """Stripe got the event (the answer was lost) and its dedup window has passed: no resend."""
    ada = await ledger.customer(stripe_billing, "ada@example.com")
    start = datetime.now(UTC) - timedelta(hours=30)
    await ledger.record(ada[0], ada[1], 6, at=start)
    clock = FrozenClock(start + timedelta(minutes=5))
    emulator.fault("drop", "/v1/billing/meter_events", count=1)
    reporter = make_reporter(clock)
    run = await reporter.run_once()
    assert run is not None and run.retried == 1
    assert emulator.total(ada[2], meter_id) == 6  # processed, answer dropped
    clock.set(datetime.now(UTC))  # 30 hours later, past Stripe's 24-hour dedup window

    await reporter.run_once()

    assert emulator.total(ada[2], meter_id) == 6
    [report] = await ledger.reports()
    assert report.status == "sent" and "summaries" in (report.last_error or "")


async def test_the_v2_stream_reports_in_batches_with_exact_totals(
    ledger: Ledger,
    stripe_billing: StripeBilling,
    emulator: Emulator,
    meter_id: str,
    make_stripe_settings: Callable[..., Settings],
) -> None:
    settings = make_stripe_settings(stripe_meter_api="v2")
    customers = [await ledger.customer(stripe_billing, f"c{i}@example.com") for i in range(130)]
    for user_id, key_id, _ in customers:
        await ledger.record(user_id, key_id, 3)
    reporter = UsageReporter(ledger.sessions, stripe_billing, settings, Clock())

    run = await reporter.drain(max_seconds=60)

    assert run.sent == 130 and run.dead == 0
    assert {e["source"] for e in emulator.state()["meter_events"]} == {"v2_stream"}
    for _, _, customer_id in customers:
        assert emulator.total(customer_id, meter_id) == 3
    assert_no_identifier_twice(emulator)


async def test_the_v2_stream_survives_faults_and_resends_without_doubling(
    ledger: Ledger,
    stripe_billing: StripeBilling,
    emulator: Emulator,
    meter_id: str,
    make_stripe_settings: Callable[..., Settings],
) -> None:
    settings = make_stripe_settings(stripe_meter_api="v2")
    ada = await ledger.customer(stripe_billing, "ada@example.com")
    await ledger.record(ada[0], ada[1], 12)
    emulator.fault("drop", "/v2/billing/meter_event_stream", count=1)
    emulator.fault("500", "/v2/billing/meter_event_stream", count=1)

    run = await UsageReporter(
        ledger.sessions, stripe_billing, settings, Clock(), max_backoff_seconds=0.01
    ).drain(max_seconds=30)

    assert run.sent == 1 and run.retried == 2
    assert emulator.total(ada[2], meter_id) == 12


async def test_report_outcomes_are_counted_in_the_metrics(
    ledger: Ledger,
    stripe_billing: StripeBilling,
    emulator: Emulator,
    meter_id: str,
    make_reporter: Callable[..., UsageReporter],
) -> None:
    def count(outcome: str) -> float:
        labels = {"outcome": outcome}
        return REGISTRY.get_sample_value("novo_usage_reports_total", labels) or 0.0

    before = {o: count(o) for o in ("sent", "dead")}
    ada = await ledger.customer(stripe_billing, "ada@example.com")
    await ledger.record(ada[0], ada[1], 2)
    ahead = datetime.now(UTC) + timedelta(hours=1)
    await ledger.record(ada[0], ada[1], 1, at=ahead)  # refused by Stripe: too far ahead

    await make_reporter(FrozenClock(ahead)).run_once()

    assert count("sent") == before["sent"] + 1
    assert count("dead") == before["dead"] + 1


async def test_stopping_hands_back_an_in_flight_report_within_a_bound(
    ledger: Ledger,
    stripe_billing: StripeBilling,
    emulator: Emulator,
    meter_id: str,
    make_stripe_settings: Callable[..., Settings],
) -> None:
    """SIGTERM during a slow Stripe call: the runtime's bounded stop cancels, the report waits."""
    settings = make_stripe_settings(usage_reporting_interval=100)
    ada = await ledger.customer(stripe_billing, "ada@example.com")
    await ledger.record(ada[0], ada[1], 5)
    emulator.fault("delay", "/v1/billing/meter_events", count=1, delay=3)
    reporter = UsageReporter(ledger.sessions, stripe_billing, settings, Clock())
    task = asyncio.create_task(reporter.run_forever())
    for _ in range(200):
        if any(f["matched"] for f in emulator.state(meter_events="false")["faults"]):
            break
        await asyncio.sleep(0.02)

    await reporter.stop()
    done, _ = await asyncio.wait([task], timeout=0.5)
    if not done:  # the call in flight outlasts the bound: the runtime cancels it
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    assert [r.status for r in await ledger.reports()] == ["pending"]
    successor = UsageReporter(ledger.sessions, stripe_billing, settings, Clock())
    for _ in range(600):  # until the held request completes at Stripe, as it would there
        if emulator.total(ada[2], meter_id) == 5:
            break
        await asyncio.sleep(0.05)
    assert (await successor.drain(max_seconds=30)).dead == 0
    assert emulator.total(ada[2], meter_id) == 5
    assert_no_identifier_twice(emulator)


async def _meter_error_report(ledger: Ledger, identifier: str) -> None:
    """Stripe's `v1.billing.meter.error_report_triggered` naming one meter event, handled as the
    webhook worker handles it (its delivery is tested in tests/billing/test_webhook_stripe.py)."""
    error = {
        "code": "archived_meter",
        "error_count": 1,
        "sample_errors": [
            {"error_message": "The meter is inactive.", "request": {"identifier": identifier}}
        ],
    }
    event = {"id": "evt_test_thin", "data": {"reason": {"error_types": [error]}}}
    async with session_scope(ledger.sessions) as session:
        await on_meter_error_report(session, event, EventContext(datetime.now(UTC), None))


async def test_a_report_stripe_could_not_count_is_counted_when_an_operator_retries_it(
    ledger: Ledger,
    stripe_billing: StripeBilling,
    emulator: Emulator,
    meter_id: str,
    make_reporter: Callable[..., UsageReporter],
) -> None:
    """Stripe takes a meter event for an inactive meter, then reports it could not count it; it
    keeps the identifier for 24 hours all the same. The retry is a new send, counted once."""
    meters = stripe_billing.sdk.v1.billing.meters
    ada = await ledger.customer(stripe_billing, "ada@example.com")
    await ledger.record(ada[0], ada[1], 7)
    await stripe_billing.call(meters.deactivate_async, meter_id)
    await make_reporter().drain(max_seconds=30)
    [report] = await ledger.reports()
    await _meter_error_report(ledger, report.id)
    assert [r.status for r in await ledger.reports()] == ["dead"]

    await stripe_billing.call(meters.reactivate_async, meter_id)  # the operator's fix
    assert await requeue_dead(ledger.sessions, Clock(), report.id) == 1
    run = await make_reporter().drain(max_seconds=30)

    assert run.sent == 1
    assert emulator.total(ada[2], meter_id) == 7
    assert emulator.identifiers() == [f"{report.id}.r1"]
    # A late copy of the first error report is about the first send, not this one.
    await _meter_error_report(ledger, report.id)
    assert [r.status for r in await ledger.reports()] == ["sent"]
    await _meter_error_report(ledger, f"{report.id}.r1")
    assert [r.status for r in await ledger.reports()] == ["dead"]


async def test_a_subscriptions_last_invoice_counts_the_reports_of_its_end_second(
    ledger: Ledger, stripe_billing: StripeBilling
) -> None:
    """An immediate cancel's invoice bills usage through the second it ends in (a period's
    invoice stops before its end, which belongs to the next period). So a report sent in that
    second is one of those it counted, and a late report of 10 units was not: it is carried over,
    not taken for invoiced because the invoice counted more than the other reports."""
    user_id, _, customer = await ledger.customer(stripe_billing, "ada@example.com")
    end = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    sent = usage_report("nvr_final", user_id=user_id, customer=customer, units=30, at=end)
    late = usage_report("nvr_late", user_id=user_id, customer=customer, units=10, at=end)
    late.status = "pending"
    last = PeriodInvoice(
        id="in_final",
        status="paid",
        customer_id=customer,
        subscription_id="sub_ended",
        currency="usd",
        period_start=end - timedelta(days=3),
        period_end=end,
        automatically_finalizes_at=None,
        metered_units=30,
        price_id=None,
    )
    async with session_scope(ledger.sessions) as session:
        session.add_all([sent, late])
        await session.flush()
        invoiced = UsageReporter._invoiced_with_period
        assert not await invoiced(session, late, last, True)
        assert await invoiced(session, late, last, False)  # a period's: `end` is the next's
