"""How the reporter groups pending events into reports: per customer and billing period.

All of a customer's events of its current period make one report whatever the hour; events of
another period never share a report with them; a batch cut in the middle of a customer's events
still bills every event once; and every event's report id names a report counting it.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from novo_gateway.accounts.models import User
from novo_gateway.billing.claim import ClaimBatch, Pending, plan_batches
from novo_gateway.billing.models import UsageReport
from novo_gateway.billing.reporter import ReporterRun, UsageReporter
from novo_gateway.billing.stripe_client import StripeBilling
from novo_gateway.kit.clock import Clock, FrozenClock
from novo_gateway.kit.db import session_scope
from novo_gateway.metering.models import UsageEvent
from novo_gateway.metering.writer import NewUsageEvent, UsageWriter
from tests.billing.conftest import Emulator, Ledger

NOW = datetime.now(UTC)
PERIOD_START = NOW - timedelta(days=2, minutes=30)
PERIOD_END = PERIOD_START + timedelta(days=30)


async def subscribed(
    ledger: Ledger,
    stripe: StripeBilling,
    email: str,
    start: datetime = PERIOD_START,
    end: datetime = PERIOD_END,
) -> tuple[int, int, str]:
    """A provisioned customer in its billing period [start, end)."""
    user_id, key_id, customer_id = await ledger.customer(stripe, email)
    async with session_scope(ledger.sessions) as session:
        user = await session.get_one(User, user_id)
        user.current_period_start, user.current_period_end = start, end
    return user_id, key_id, customer_id


async def assert_ledger_matches_reports(ledger: Ledger) -> list[UsageReport]:
    """Every billable event is in exactly one report, and each report counts exactly its events."""
    async with session_scope(ledger.sessions) as session:
        unclaimed = await session.scalar(
            select(func.count()).where(
                UsageEvent.billable.is_(True), UsageEvent.report_id.is_(None)
            )
        )
        per_report = {
            report_id: (int(count), int(units))
            for report_id, count, units in (
                await session.execute(
                    select(UsageEvent.report_id, func.count(), func.sum(UsageEvent.units))
                    .where(UsageEvent.report_id.is_not(None))
                    .group_by(UsageEvent.report_id)
                )
            ).all()
        }
        reports = list((await session.scalars(select(UsageReport))).all())
    assert unclaimed == 0
    assert per_report == {r.id: (r.event_count, r.units) for r in reports}
    return reports


async def first_event_id(ledger: Ledger, user_id: int) -> int:
    async with session_scope(ledger.sessions) as session:
        first = await session.scalar(
            select(func.min(UsageEvent.id)).where(UsageEvent.user_id == user_id)
        )
    assert first is not None
    return int(first)


def test_batches_pack_whole_customers_and_cut_only_a_bigger_one() -> None:
    counts = [(1, 40), (2, 50), (3, 20), (5, 250), (8, 10), (9, 100), (10, 1), (11, 1), (12, 1)]
    pending = [
        Pending(user_id, events, NOW - timedelta(hours=user_id)) for user_id, events in counts
    ]

    batches = plan_batches(pending, max_event_id=999, batch_size=100, max_customers=2)

    def members(*ids: int) -> tuple[tuple[int, datetime], ...]:
        return tuple((i, NOW - timedelta(hours=i)) for i in ids)

    assert batches == [
        ClaimBatch(members(1, 2), 999),  # 90 events
        ClaimBatch(members(3), 999),  # 20 + 250 would not fit
        ClaimBatch(members(5), 999, 100),
        ClaimBatch(members(5), 999, 100),
        ClaimBatch(members(5), 999, 100),  # 250 events cut in three
        ClaimBatch(members(8), 999),
        ClaimBatch(members(9), 999, 100),
        ClaimBatch(members(10, 11), 999),  # two customers at most
        ClaimBatch(members(12), 999),
    ]
    assert plan_batches([], max_event_id=0, batch_size=100) == []


async def test_many_customers_in_one_batch_make_one_report_each(
    ledger: Ledger,
    stripe_billing: StripeBilling,
    emulator: Emulator,
    meter_id: str,
    make_reporter: Callable[..., UsageReporter],
) -> None:
    customers = [await subscribed(ledger, stripe_billing, f"m{i}@example.com") for i in range(12)]
    for hours_ago in (30, 5, 1):  # three hours of the current period
        for i, (user_id, key_id, _) in enumerate(customers):
            at = NOW - timedelta(hours=hours_ago, minutes=i)
            await ledger.record(user_id, key_id, 2 + i, at=at, units=2)

    run = await make_reporter().run_once()

    assert run is not None and run.reports_created == 12 and run.sent == 12
    reports = await assert_ledger_matches_reports(ledger)
    by_customer = Counter(r.stripe_customer_id for r in reports)
    assert set(by_customer.values()) == {1}
    for i, (user_id, _, customer_id) in enumerate(customers):
        [report] = [r for r in reports if r.user_id == user_id]
        assert report.units == 3 * (2 + i) * 2 == emulator.total(customer_id, meter_id)
        assert report.id == f"nvr_{customer_id}_{await first_event_id(ledger, user_id)}"
        assert PERIOD_START <= report.window_start < report.window_end <= PERIOD_END
        assert report.event_timestamp == NOW - timedelta(hours=1, minutes=i)


async def test_a_customers_hours_of_one_period_make_one_report(
    ledger: Ledger,
    stripe_billing: StripeBilling,
    emulator: Emulator,
    meter_id: str,
    make_reporter: Callable[..., UsageReporter],
) -> None:
    ada = await subscribed(ledger, stripe_billing, "ada@example.com")
    for hours_ago in range(40, 0, -3):
        await ledger.record(ada[0], ada[1], 5, at=NOW - timedelta(hours=hours_ago))

    run = await make_reporter().run_once()

    assert run is not None and run.claimed_events == 70 and run.sent == 1
    [report] = await assert_ledger_matches_reports(ledger)
    assert (report.units, report.event_count, report.status) == (70, 70, "sent")
    assert report.period_start == PERIOD_START
    assert report.event_timestamp == NOW - timedelta(hours=1)
    assert emulator.total(ada[2], meter_id) == 70


async def test_a_billing_period_boundary_separates_reports(
    ledger: Ledger,
    stripe_billing: StripeBilling,
    emulator: Emulator,
    meter_id: str,
    make_reporter: Callable[..., UsageReporter],
) -> None:
    """Events of the last period, of this one, and past its end (the renewal not yet known)."""
    start = NOW - timedelta(days=1, minutes=20)  # mid-hour, so one hour has events of both
    end = NOW - timedelta(minutes=40)
    ada = await subscribed(ledger, stripe_billing, "ada@example.com", start, end)
    await ledger.record(ada[0], ada[1], 3, at=start - timedelta(hours=3))
    await ledger.record(ada[0], ada[1], 4, at=start - timedelta(minutes=5))
    await ledger.record(ada[0], ada[1], 5, at=start)
    await ledger.record(ada[0], ada[1], 6, at=start + timedelta(hours=5))
    await ledger.record(ada[0], ada[1], 7, at=end - timedelta(microseconds=1))
    await ledger.record(ada[0], ada[1], 8, at=end)
    await ledger.record(ada[0], ada[1], 9, at=end + timedelta(minutes=10))

    run = await make_reporter().run_once()

    assert run is not None and run.dead == 0
    reports = await assert_ledger_matches_reports(ledger)
    before = sorted(r.units for r in reports if r.event_timestamp < start)
    during = [r.units for r in reports if start <= r.event_timestamp < end]
    after = [r.units for r in reports if r.event_timestamp >= end]
    assert before == [3, 4]  # hourly windows of the earlier period
    assert during == [5 + 6 + 7]  # one report for the whole period
    assert sum(after) == 8 + 9 and len(after) in (1, 2)  # hourly windows after the period
    assert emulator.total(ada[2], meter_id) == sum(range(3, 10))


async def test_a_batch_cut_inside_a_customers_events_bills_each_event_once(
    ledger: Ledger,
    stripe_billing: StripeBilling,
    emulator: Emulator,
    meter_id: str,
    make_reporter: Callable[..., UsageReporter],
) -> None:
    big = await subscribed(ledger, stripe_billing, "big@example.com")
    small = [await subscribed(ledger, stripe_billing, f"s{i}@example.com") for i in range(4)]
    for round_ in range(3):
        await ledger.record(big[0], big[1], 9, at=NOW - timedelta(hours=3 - round_))
        for user_id, key_id, _ in small:
            await ledger.record(user_id, key_id, 2, at=NOW - timedelta(hours=3 - round_))

    run = await make_reporter(claim_batch=10).run_once()

    assert run is not None and run.claimed_events == 27 + 24 and run.dead == 0
    reports = await assert_ledger_matches_reports(ledger)
    assert sorted(r.event_count for r in reports if r.user_id == big[0]) == [7, 10, 10]
    assert emulator.total(big[2], meter_id) == 27
    for user_id, _, customer_id in small:
        assert [r.units for r in reports if r.user_id == user_id] == [6]
        assert emulator.total(customer_id, meter_id) == 6
    assert len(set(emulator.identifiers())) == len(emulator.identifiers()) == len(reports)


async def test_a_future_stamped_event_does_not_get_the_periods_report_refused(
    ledger: Ledger,
    stripe_billing: StripeBilling,
    emulator: Emulator,
    meter_id: str,
    make_reporter: Callable[..., UsageReporter],
) -> None:
    """A gateway whose clock runs ten minutes ahead: its events still bill in this period."""
    ada = await subscribed(ledger, stripe_billing, "ada@example.com")
    await ledger.record(ada[0], ada[1], 4, at=datetime.now(UTC) - timedelta(hours=2))
    await ledger.record(ada[0], ada[1], 2, at=datetime.now(UTC) + timedelta(minutes=10))

    run = await make_reporter().run_once()

    assert run is not None and (run.sent, run.dead) == (1, 0)
    [report] = await assert_ledger_matches_reports(ledger)
    assert PERIOD_START <= report.event_timestamp <= datetime.now(UTC)
    assert emulator.total(ada[2], meter_id) == 6


async def test_two_reporters_claiming_at_once_count_each_event_once(
    ledger: Ledger,
    stripe_billing: StripeBilling,
    make_reporter: Callable[..., UsageReporter],
) -> None:
    customers = [await subscribed(ledger, stripe_billing, f"t{i}@example.com") for i in range(6)]
    for user_id, key_id, _ in customers:
        await ledger.record(user_id, key_id, 15, at=NOW - timedelta(hours=2))
        await ledger.record(user_id, key_id, 15, at=NOW - timedelta(minutes=3))
    one = make_reporter(holder="one", claim_batch=20)
    two = make_reporter(holder="two", claim_batch=20)
    runs = [ReporterRun(), ReporterRun()]

    results = await asyncio.gather(one.claim(runs[0]), two.claim(runs[1]), return_exceptions=True)
    for reporter in (one, two):  # whichever holds the lease now finishes the job
        await reporter.claim(ReporterRun())

    claimed = [r for r in results if isinstance(r, int)]
    assert claimed and sum(claimed) <= 180
    reports = await assert_ledger_matches_reports(ledger)
    assert sum(r.units for r in reports) == 180


async def test_claims_overlapping_under_one_lease_still_count_each_event_once(
    ledger: Ledger,
    stripe_billing: StripeBilling,
    make_reporter: Callable[..., UsageReporter],
) -> None:
    """Two processes that both think they hold the lease (the same holder name) claim at once."""
    customers = [await subscribed(ledger, stripe_billing, f"o{i}@example.com") for i in range(5)]
    for user_id, key_id, _ in customers:
        await ledger.record(user_id, key_id, 12, at=NOW - timedelta(minutes=30))
    twins = [make_reporter(holder="same", claim_batch=25) for _ in range(2)]

    await asyncio.gather(*(t.claim(ReporterRun()) for t in twins), return_exceptions=True)
    await twins[0].claim(ReporterRun())  # whatever a failed claim left

    reports = await assert_ledger_matches_reports(ledger)
    assert sum(r.units for r in reports) == 60


async def test_v1_sends_several_customers_at_once_and_each_customers_reports_in_turn(
    ledger: Ledger,
    stripe_billing: StripeBilling,
    emulator: Emulator,
    meter_id: str,
    make_reporter: Callable[..., UsageReporter],
) -> None:
    customers = [await subscribed(ledger, stripe_billing, f"v{i}@example.com") for i in range(9)]
    for i, (user_id, key_id, _) in enumerate(customers):
        await ledger.record(user_id, key_id, i + 1, at=NOW - timedelta(minutes=20))
    backlog = customers[0]  # hourly reports of an earlier period, sent one after the other
    for days_ago in (3, 4, 5):
        await ledger.record(backlog[0], backlog[1], 10, at=NOW - timedelta(days=days_ago))
    emulator.fault("500", "/v1/billing/meter_events", count=2)

    run = await make_reporter(max_backoff_seconds=0.01).drain(max_seconds=30)

    assert run.sent == 12 and run.dead == 0 and run.retried == 2
    for i, (_, _, customer_id) in enumerate(customers):
        assert emulator.total(customer_id, meter_id) == i + 1 + (30 if i == 0 else 0)
    assert len(set(emulator.identifiers())) == len(emulator.identifiers()) == 12
    assert {r.status for r in await assert_ledger_matches_reports(ledger)} == {"sent"}


async def test_a_reporter_that_lost_its_lease_claims_nothing(
    ledger: Ledger,
    stripe_billing: StripeBilling,
    make_reporter: Callable[..., UsageReporter],
) -> None:
    ada = await subscribed(ledger, stripe_billing, "ada@example.com")
    await ledger.record(ada[0], ada[1], 5)
    holder, late = make_reporter(holder="holder"), make_reporter(holder="late")
    assert await holder.run_once() is not None
    await ledger.record(ada[0], ada[1], 3)

    run = ReporterRun()
    assert await late.claim(run) == 0

    assert run.claimed_events == 0
    assert [r.units for r in await ledger.reports()] == [5]


async def test_events_older_than_stripe_accepts_are_flagged_per_hour(
    ledger: Ledger,
    stripe_billing: StripeBilling,
    emulator: Emulator,
    meter_id: str,
    make_reporter: Callable[..., UsageReporter],
) -> None:
    """A backlog from long-gone periods keeps hourly windows: only what is too old expires."""
    ada = await subscribed(ledger, stripe_billing, "ada@example.com")
    clock = FrozenClock(NOW)
    await ledger.record(ada[0], ada[1], 3, at=NOW - timedelta(days=36))
    await ledger.record(ada[0], ada[1], 4, at=NOW - timedelta(days=34))
    await ledger.record(ada[0], ada[1], 5, at=NOW - timedelta(hours=1))

    run = await make_reporter(clock).run_once()

    assert run is not None and run.sent == 2
    reports = await assert_ledger_matches_reports(ledger)
    assert sorted((r.units, r.status) for r in reports) == [
        (3, "expired"),
        (4, "sent"),
        (5, "sent"),
    ]
    assert emulator.total(ada[2], meter_id) == 9


async def test_cuts_of_a_customer_whose_events_committed_out_of_time_order_bill_each_once(
    ledger: Ledger,
    stripe_billing: StripeBilling,
    emulator: Emulator,
    meter_id: str,
    make_reporter: Callable[..., UsageReporter],
) -> None:
    """Each cut starts where the previous one ended in time: an event committed late (a higher id,
    an earlier time), or one sharing the cut's last instant, is neither skipped nor billed twice."""
    big = await subscribed(ledger, stripe_billing, "big@example.com")
    for minutes in range(25, 0, -1):  # ids rise as times fall
        await ledger.record(big[0], big[1], 1, at=NOW - timedelta(minutes=minutes % 9))

    run = await make_reporter(claim_batch=7).run_once()

    assert run is not None and run.claimed_events == 25 and run.dead == 0
    reports = await assert_ledger_matches_reports(ledger)
    assert sorted(r.event_count for r in reports) == [4, 7, 7, 7]
    assert emulator.total(big[2], meter_id) == 25


async def test_on_sqlite_the_usage_writer_commits_between_two_claim_batches(
    ledger: Ledger,
    stripe_billing: StripeBilling,
    emulator: Emulator,
    meter_id: str,
    make_reporter: Callable[..., UsageReporter],
) -> None:
    """SQLite has one write lock: a metered call waits for one claim batch, not a whole claim."""
    if ledger.sessions.kw["bind"].dialect.name != "sqlite":
        pytest.skip("PostgreSQL locks rows: the claim and the writer never wait for each other")
    customers = [await subscribed(ledger, stripe_billing, f"c{i}@example.com") for i in range(30)]
    for user_id, key_id, _ in customers:
        await ledger.record(user_id, key_id, 10)
    writer = UsageWriter(ledger.sessions, Clock())
    await writer.start()
    reporter = make_reporter(claim_batch=10)  # a batch per customer
    run = ReporterRun()
    claiming = asyncio.create_task(reporter.claim(run))
    try:
        while run.claimed_events == 0:
            await asyncio.sleep(0.001)
        claimed_before = run.claimed_events
        user_id, key_id, _ = customers[0]
        await writer.record(
            NewUsageEvent(user_id, key_id, "/api/v1/insights", "GET", 200, 1, 1, True, NOW)
        )
        claimed_after = run.claimed_events
    finally:
        await claiming
        await writer.stop()
    assert claimed_after <= claimed_before + 10  # the batch under way at most
    assert run.claimed_events == 300
