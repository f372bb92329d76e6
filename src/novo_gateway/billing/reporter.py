"""The usage reporter: billable ledger events → one Stripe meter event per customer and window.

Each run, under a lease so that one process reports at a time:

1. **Claim** (`billing/claim.py`). Unreported billable events of provisioned customers are
   grouped per customer and window into `UsageReport` rows: all of a customer's events in its
   current billing period make one report; events outside it keep hourly windows, so that every
   event lands in the billing period it belongs to. Batches of whole customers, each one
   transaction of a few set statements. A report's id is `nvr_<Stripe customer>_<first event
   id>`: unique in the Stripe account, and fixed before anything is sent. Events recorded while a
   report is in flight are not in it; they belong to the next one.
2. **Send.** Each due report becomes one meter event whose `identifier` is the report id, so a
   resend after a crash or a lost answer is deduplicated by Stripe (v1: one call per report, a
   few customers at once and each customer's reports in turn; v2: 100 reports a call).
   Stripe's "already exists" answer means it holds the report: marked sent. 429, 5xx and
   network errors back off exponentially with jitter (honouring Retry-After); other refusals
   dead-letter the report until an operator retries it. A report first tried more than 24
   hours ago (past Stripe's dedup window) is checked against the meter's event summaries before
   any resend.
3. **Late usage** (`billing/carryover.py`). A report of a billing period that has ended goes to
   the meter only while that period's invoice still takes usage (a draft in Stripe's
   finalization grace). Once it is finalized, a meter event would be counted and billed on no
   invoice: the report is carried over instead, as a pending invoice item on the next invoice
   priced as in its own period, and its status is `carried`. An account whose subscription has
   ended has no next invoice: its late usage (calls admitted while an immediate cancel was in
   flight, dated even after Stripe's final invoice ends) is charged on a one-off invoice at once.

Crash anywhere and the ledger still says what is owed: claimed-but-unsent reports stay pending,
and a resend cannot double-bill.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from novo_gateway.accounts.models import SUBSCRIPTION_ENDED, SubscriptionStatus, User
from novo_gateway.billing.carryover import CarryOver, ended_at
from novo_gateway.billing.claim import STRIPE_MAX_EVENT_AGE, Claimer
from novo_gateway.billing.instance import instance_name
from novo_gateway.billing.lease import Lease
from novo_gateway.billing.models import ReportStatus, UsageReport
from novo_gateway.billing.queries import (
    count_reports,
    sent_units,
    sent_units_since,
    unreported_of_customers,
)
from novo_gateway.billing.stripe_client import (
    DuplicateMeterEvent,
    StripeBilling,
    StripeFailure,
    StripeRejected,
)
from novo_gateway.billing.stripe_types import MeterEvent, PeriodInvoice
from novo_gateway.kit import failpoints, metrics
from novo_gateway.kit.clock import Clock
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import SessionFactory, session_scope
from novo_gateway.metering.store.sqlite import MAX_LOCK_PAUSE_SECONDS

log = logging.getLogger("novo_gateway.billing.reporter")

LEASE_NAME = "usage-reporter"
STRIPE_DEDUP_WINDOW = timedelta(hours=24)
# Events per claim transaction (whole customers; a bigger customer is cut).
CLAIM_BATCH = 20_000
# SQLite has one write lock for the whole database, and while a claim holds it the gateway's
# usage writer waits, and with it every metered response. There a claim transaction takes at most
# SQLITE_CLAIM_BATCH events (30 ms for one customer's events, up to 170 ms when they lie on the
# pages of thousands of customers), and the claimer pauses between two of them for longer than
# the writer's longest pause between tries for the lock, so the writer commits in every gap: a
# metered call waits for one claim transaction at most, not for the whole run (bench/README.md).
# PostgreSQL locks rows: there the claim and the writer never wait for each other.
SQLITE_CLAIM_BATCH = 2_000
SQLITE_CLAIM_PAUSE_SECONDS = 2 * MAX_LOCK_PAUSE_SECONDS
SEND_BATCH = 100
# v1 meter event calls in flight at once (each its own transaction and pooled connection).
SEND_CONCURRENCY = 4


# Sent reports are the audit trail of what Stripe was told (and the events' `report_id` names
# them): kept for 13 months, past every invoice's reconciliation and a yearly audit, then deleted
# with the period (the ledger's events stay). Pending, dead and expired reports are never pruned.
REPORT_RETENTION = timedelta(days=400)
PRUNE_EVERY_SECONDS = 3600.0
# A customer's own claim (report_customer) is fenced by a lease of this name and its account id.
CUSTOMER_LEASE_PREFIX = "usage-reporter-customer-"
CUSTOMER_CLAIM_ATTEMPTS = 3
COUNTED_POLL_SECONDS = 0.5


class UsageNotReported(Exception):
    """Some of a customer's usage is not at Stripe yet (Stripe down, or a claim lost a race)."""

    def __init__(self, message: str, errors: list[str] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


@dataclass
class ReporterRun:
    """What one run did."""

    claimed_events: int = 0
    reports_created: int = 0
    sent: int = 0
    retried: int = 0
    dead: int = 0
    expired: int = 0
    carried: int = 0  # charged on the next invoice: their period's invoice was final
    errors: list[str] = field(default_factory=list)


class UsageReporter:
    def __init__(
        self,
        sessions: SessionFactory,
        stripe: StripeBilling,
        settings: Settings,
        clock: Clock,
        *,
        holder: str | None = None,
        max_backoff_seconds: float | None = None,
        claim_batch: int = CLAIM_BATCH,
    ) -> None:
        self._sessions = sessions
        self._stripe = stripe
        self._settings = settings
        self._clock = clock
        # A name that a restart of this process keeps: it takes over its own lease at once.
        self._name = instance_name(settings) if holder is None else None
        self._lease = Lease(
            sessions,
            clock,
            name=LEASE_NAME,
            holder=holder or (self._name.holder if self._name else ""),
            ttl=settings.reporter_lease_seconds,
        )
        if settings.is_sqlite:
            claim_batch = min(claim_batch, SQLITE_CLAIM_BATCH)
        self._claimer = Claimer(sessions, clock, self._lease, batch_size=claim_batch)
        self._carry = CarryOver(stripe, settings)
        self._claim_pause = SQLITE_CLAIM_PAUSE_SECONDS if settings.is_sqlite else 0.0
        self._max_backoff = max_backoff_seconds or settings.reporter_max_backoff_seconds
        self._stopping = False
        self._wake = asyncio.Event()
        self._running = False
        self._next_prune = 0.0
        self._lease_lost = False

    # --- One run --------------------------------------------------------------------------------

    async def run_once(self) -> ReporterRun | None:
        """Claim and send what is due; None when another process holds the reporter's lease."""
        if not await self._lease.acquire():
            return None
        run = ReporterRun()
        try:
            await self.claim(run)
            if self._lease_lost:
                return run  # another process holds the reporter now; it carries on
            failpoints.hit("reporter.after_claim")
            await self.send_due(run)
        finally:
            for outcome in ("sent", "retried", "dead", "expired", "carried"):
                metrics.usage_reports(outcome, getattr(run, outcome))
        return run

    async def claim(self, run: ReporterRun) -> int:
        """Claim every event pending now into reports, a batch per transaction; events claimed.

        Each batch renews the lease in its own transaction, so a holder that lost the lease stops
        claiming (and `run_once` then sends nothing)."""
        self._lease_lost = False
        claimed = 0
        for index, batch in enumerate(await self._claimer.plan()):
            if self._stopping:
                break
            if index and self._claim_pause:
                await asyncio.sleep(self._claim_pause)  # the usage writer's turn (SQLite)
            started = self._clock.monotonic()
            done = await self._claimer.claim(batch)
            if done is None:
                self._lease_lost = True
                log.warning("the reporter's lease is held by another process; claim stopped")
                break
            log.debug(
                "claimed %d events into %d reports in %.2f s",
                done.events,
                done.reports,
                self._clock.monotonic() - started,
            )
            run.claimed_events += done.events
            run.reports_created += done.reports
            claimed += done.events
        return claimed

    async def send_due(self, run: ReporterRun) -> None:
        """Send every report that is due: one meter event each (v1), or batches of 100 (v2)."""
        stream = self._settings.stripe_meter_api == "v2"
        while not self._stopping:
            due = await self._due()
            if not due:
                return
            if stream:
                if not await self._lease.acquire():
                    return
                await self._send([report_id for report_id, _ in due], run)
            elif not await self._send_each(due, run):
                return
            if len(due) < SEND_BATCH:
                return

    async def _send_each(self, due: list[tuple[str, str]], run: ReporterRun) -> bool:
        """v1: one call per report, up to SEND_CONCURRENCY at once but one at a time per customer
        (Stripe takes one meter event call per customer at a time); False once stopping or the
        lease is lost. The lease is renewed while sending, at least every third of its TTL."""
        per_customer: dict[str, list[str]] = {}
        for report_id, customer in due:
            per_customer.setdefault(customer, []).append(report_id)
        gate = asyncio.Semaphore(SEND_CONCURRENCY)
        renewing = asyncio.Lock()
        renewed = [float("-inf")]

        async def lease_held() -> bool:
            async with renewing:
                if self._clock.monotonic() - renewed[0] < self._lease.ttl / 3:
                    return True
                if not await self._lease.acquire():
                    return False
                renewed[0] = self._clock.monotonic()
                return True

        async def send_of(customer_reports: list[str]) -> bool:
            for report_id in customer_reports:
                async with gate:
                    if self._stopping or not await lease_held():
                        return False
                    await self._send([report_id], run)
            return True

        tasks = [asyncio.ensure_future(send_of(ids)) for ids in per_customer.values()]
        try:
            sent = await asyncio.gather(*tasks)
        except BaseException:  # no send outlives this call
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return all(sent)

    async def _due(self) -> list[tuple[str, str]]:
        """Up to SEND_BATCH due reports, oldest first: (report id, Stripe customer)."""
        async with session_scope(self._sessions) as session:
            rows = (
                await session.execute(
                    select(UsageReport.id, UsageReport.stripe_customer_id)
                    .where(
                        UsageReport.status == ReportStatus.PENDING,
                        UsageReport.next_attempt_at <= self._clock.now(),
                    )
                    .order_by(UsageReport.created_at, UsageReport.id)
                    .limit(SEND_BATCH)
                )
            ).all()
            due = [(str(r[0]), str(r[1])) for r in rows]
            # Record the first attempt durably before anything is sent, so the 24-hour check
            # below knows a report may already be at Stripe even after a crash mid-call.
            if due:
                await session.execute(
                    update(UsageReport)
                    .where(
                        UsageReport.id.in_([report_id for report_id, _ in due]),
                        UsageReport.first_attempt_at.is_(None),
                    )
                    .values(first_attempt_at=self._clock.now())
                )
            return due

    async def _send(self, report_ids: list[str], run: ReporterRun) -> None:
        """Send these reports in one Stripe call and record the outcome, in one transaction."""
        async with session_scope(self._sessions) as session:
            query = select(UsageReport).where(
                UsageReport.id.in_(report_ids), UsageReport.status == ReportStatus.PENDING
            )
            if session.get_bind().dialect.name == "postgresql":
                # A second reporter (should the lease ever overlap) skips reports being sent.
                query = query.with_for_update(skip_locked=True)
            now = self._clock.now()
            ready: list[UsageReport] = []
            for report in (await session.scalars(query)).all():
                if await self._already_at_stripe(session, report, now):
                    self._mark_sent(report, now, note="found in Stripe's meter summaries")
                    run.sent += 1
                else:
                    ready.append(report)
            if not ready:
                return
            for report in ready:
                report.attempts += 1
            failpoints.hit("reporter.before_send")
            metered: list[UsageReport] = []
            try:
                metered = await self._carry_late(session, ready, now, run)
                if metered:
                    await self._deliver(metered)
            except DuplicateMeterEvent:
                for report in metered:
                    self._mark_sent(report, now, note="Stripe already held this report")
                run.sent += len(metered)
            except StripeFailure as exc:
                ready = [r for r in ready if r.status == ReportStatus.PENDING]
                for report in ready:
                    delay = self._backoff(report.attempts, exc.retry_after)
                    report.next_attempt_at = now + timedelta(seconds=delay)
                    report.last_error = str(exc)[:1000]
                run.retried += len(ready)
                log.warning("%d reports not sent, will retry: %s", len(ready), exc)
            except StripeRejected as exc:
                ready = [r for r in ready if r.status == ReportStatus.PENDING]
                for report in ready:
                    report.status, report.last_error = ReportStatus.DEAD, str(exc)[:1000]
                run.dead += len(ready)
                log.error("%d reports refused by Stripe: %s", len(ready), exc)
            else:
                failpoints.hit("reporter.after_answer")
                for report in metered:
                    self._mark_sent(report, now)
                run.sent += len(metered)

    async def _carry_late(
        self, session: AsyncSession, reports: list[UsageReport], now: datetime, run: ReporterRun
    ) -> list[UsageReport]:
        """Carry over the reports whose period's invoice no longer takes usage; the rest, which
        go to the meter. Stripe is asked only about reports of a period that has ended."""
        rows = await session.execute(
            select(
                User.id,
                User.current_period_start,
                User.current_period_end,
                User.subscription_status,
                User.subscription_id,
            ).where(User.id.in_({report.user_id for report in reports}))
        )
        accounts = {int(r[0]): r[1:] for r in rows.all()}
        metered = []
        for report in reports:
            start, end, status, subscription = accounts.get(
                report.user_id, (None, None, None, None)
            )
            at, customer = report.event_timestamp, report.stripe_customer_id
            live = subscription if status not in SUBSCRIPTION_ENDED else None
            if live is not None:
                ended = ended_at(at, start, end)
                invoice = await self._carry.closed_invoice(customer, at, ended, now)
            else:  # no later invoice: late usage is invoiced at once
                invoice = await self._carry.ended_invoice(customer, subscription, at, now)
            if invoice is None and at < now - STRIPE_MAX_EVENT_AGE:
                report.status = ReportStatus.EXPIRED
                report.last_error = "older than Stripe accepts (35 days), no final invoice"
                run.expired += 1
            elif invoice is None:
                metered.append(report)
            elif await self._invoiced_with_period(session, report, invoice, live is None):
                # An earlier attempt reached Stripe in time (its answer was lost).
                self._mark_sent(report, now, note="invoiced with its own period")
                run.sent += 1
            else:
                item = await self._carry.charge(invoice, report.units, report.id, live)
                report.status, report.sent_at, report.last_error = ReportStatus.CARRIED, now, None
                report.period_start = invoice.period_start
                report.carried_period_end = invoice.period_end
                report.carried_invoice_item, report.carried_cents = item.id, item.amount
                run.carried += 1
                log.info(
                    "report %s (%d units) carried over to the next invoice: %s",
                    report.id,
                    report.units,
                    item.id,
                )
        return metered

    @staticmethod
    async def _invoiced_with_period(
        session: AsyncSession, report: UsageReport, invoice: PeriodInvoice, last: bool
    ) -> bool:
        """True when the finalized invoice counted more than the period's other sent reports:
        this report is among them. A subscription's `last` invoice (an immediate cancel's) also
        counts the usage of its end's second."""
        end = invoice.period_end + timedelta(seconds=1) if last else invoice.period_end
        others = await sent_units(
            session, report.stripe_customer_id, invoice.period_start, end, excluding=report.id
        )
        return invoice.metered_units >= others + report.units

    async def _already_at_stripe(
        self, session: AsyncSession, report: UsageReport, now: datetime
    ) -> bool:
        """True when Stripe is found to hold the report already: asked only of one first tried
        past Stripe's dedup window, and still for the meter (an older one is `_carry_late`'s,
        which carries it over or expires it)."""
        if report.event_timestamp < now - STRIPE_MAX_EVENT_AGE:
            return False
        first = report.first_attempt_at
        past_dedup_window = first is not None and now - first > STRIPE_DEDUP_WINDOW
        return past_dedup_window and await self._stripe_holds(session, report)

    async def _deliver(self, reports: list[UsageReport]) -> None:
        event_name = self._settings.stripe_meter_event_name
        events = [
            MeterEvent(r.identifier, r.stripe_customer_id, r.units, r.event_timestamp)
            for r in reports
        ]
        if self._settings.stripe_meter_api == "v2":
            await self._stripe.meter_event_stream(event_name=event_name, events=events)
            return
        [event] = events
        await self._stripe.meter_event(event_name=event_name, event=event)

    async def _stripe_holds(self, session: AsyncSession, report: UsageReport) -> bool:
        """True when Stripe's summary for the report's minute covers it (checked past 24 h)."""
        start = report.event_timestamp.replace(second=0, microsecond=0)
        end = start + timedelta(minutes=1)
        meter_id = await self._stripe.meter_id(self._settings.stripe_meter_event_name)
        held = await self._stripe.meter_total(
            meter_id=meter_id, customer_id=report.stripe_customer_id, start=start, end=end
        )
        already = await sent_units(session, report.stripe_customer_id, start, end)
        return held >= already + report.units

    @staticmethod
    def _mark_sent(report: UsageReport, now: datetime, note: str | None = None) -> None:
        report.status, report.sent_at, report.last_error = ReportStatus.SENT, now, note

    def _backoff(self, attempts: int, retry_after: float | None) -> float:
        base = min(self._max_backoff, 2.0 ** min(attempts, 20))
        delay = base * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not a secret
        return max(delay, retry_after or 0.0)

    # --- One customer, now: before an immediate cancel ------------------------------------------

    async def report_customer(self, user_id: int) -> None:
        """Claim and send every pending billable event of one customer now, whichever process
        holds the reporter's lease; raises `UsageNotReported` when some of it is still unsent.

        Safe beside the reporter: claims are fenced by a lease of this customer's own, marking
        an event is conditional (a claim that loses a race rolls back whole), and a report sent
        by both is deduplicated by Stripe on its identifier.
        """
        lease = Lease(
            self._sessions,
            self._clock,
            name=f"{CUSTOMER_LEASE_PREFIX}{user_id}"[:64],
            holder=self._lease.holder,
            ttl=self._lease.ttl,
        )
        claimer = Claimer(self._sessions, self._clock, lease, batch_size=self._claimer.batch_size)
        try:
            await self._claim_customer(claimer, user_id)
        finally:
            await lease.drop()
        run = ReporterRun()
        due = await self._customer_reports(user_id)
        step = SEND_BATCH if self._settings.stripe_meter_api == "v2" else 1
        for index in range(0, len(due), step):
            await self._send(due[index : index + step], run)
        if await self._customer_reports(user_id, mark=False):
            raise UsageNotReported("Stripe did not take all of the usage yet", run.errors)

    async def _claim_customer(self, claimer: Claimer, user_id: int) -> None:
        for attempt in range(1, CUSTOMER_CLAIM_ATTEMPTS + 1):
            try:
                for batch in await claimer.plan(user_id=user_id):
                    if await claimer.claim(batch) is None:
                        raise UsageNotReported("another process is reporting this customer")
                return
            except (DBAPIError, RuntimeError) as exc:  # lost a race with the reporter's claim
                if attempt == CUSTOMER_CLAIM_ATTEMPTS:
                    raise UsageNotReported(f"usage could not be claimed: {exc}") from exc

    async def _customer_reports(self, user_id: int, *, mark: bool = True) -> list[str]:
        """The customer's pending reports, oldest first, due or not (their first attempt noted)."""
        async with session_scope(self._sessions) as session:
            ids = list(
                (
                    await session.scalars(
                        select(UsageReport.id)
                        .where(
                            UsageReport.user_id == user_id,
                            UsageReport.status == ReportStatus.PENDING,
                        )
                        .order_by(UsageReport.created_at, UsageReport.id)
                    )
                ).all()
            )
            if ids and mark:
                await session.execute(
                    update(UsageReport)
                    .where(UsageReport.id.in_(ids), UsageReport.first_attempt_at.is_(None))
                    .values(first_attempt_at=self._clock.now())
                )
        return ids

    async def await_counted(self, user_id: int, *, within: float) -> bool:
        """Wait (at most `within` seconds) until Stripe's meter summaries hold every unit sent
        for the customer's current period; False when they still do not.

        Stripe answers a meter event before it aggregates it, and an invoice made now bills what
        is aggregated, so an immediate cancel waits for this before asking for its final invoice.
        """
        async with session_scope(self._sessions) as session:
            user = await session.get(User, user_id)
            if user is None or user.stripe_customer_id is None:
                return True
            start, customer = user.current_period_start, user.stripe_customer_id
            if start is None:
                return True
            sent = await sent_units_since(session, user_id, start)
        if sent == 0:
            return True
        meter_id = await self._stripe.meter_id(self._settings.stripe_meter_event_name)
        deadline = self._clock.monotonic() + within
        while True:
            end = self._clock.now().replace(second=0, microsecond=0) + timedelta(minutes=2)
            held = await self._stripe.meter_total(
                meter_id=meter_id,
                customer_id=customer,
                start=start.replace(second=0, microsecond=0),
                end=end,
            )
            if held >= sent:
                return True
            if self._clock.monotonic() >= deadline:
                log.warning("Stripe holds %s of %d units sent (account %s)", held, sent, user_id)
                return False
            await asyncio.sleep(COUNTED_POLL_SECONDS)

    # --- Long-running use -----------------------------------------------------------------------

    async def run_forever(self) -> None:
        """Report every USAGE_REPORTING_INTERVAL until stopped; errors are logged, never fatal."""
        interval = self._settings.usage_reporting_interval / 1000
        self._running = True
        try:
            while not self._stopping:
                try:
                    if await self.run_once() is not None and self._prune_due():
                        await self.prune()
                except Exception:
                    log.exception("usage report run failed; retrying next interval")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=interval)
        finally:
            self._running = False
            await self._lease.release()
            self._close_name()

    def _prune_due(self) -> bool:
        if self._clock.monotonic() < self._next_prune:
            return False
        self._next_prune = self._clock.monotonic() + PRUNE_EVERY_SECONDS
        return True

    async def prune(self) -> int:
        """Delete sent reports of periods that began more than REPORT_RETENTION ago; the number
        deleted. Pending, dead and expired reports are kept however old (they still need
        someone), and so is every report of a period that may still be reconciled or audited."""
        cutoff = self._clock.now() - REPORT_RETENTION
        async with session_scope(self._sessions) as session:
            result = await session.execute(
                delete(UsageReport)
                .where(UsageReport.status == ReportStatus.SENT, UsageReport.period_start < cutoff)
                .execution_options(synchronize_session=False)
            )
        deleted = int(result.rowcount)  # type: ignore[attr-defined]
        if deleted:
            log.info("pruned %d usage reports of periods before %s", deleted, cutoff.date())
        return deleted

    async def drain(
        self, *, max_seconds: float = 300.0, progress: Callable[[ReporterRun], None] | None = None
    ) -> ReporterRun:
        """Report everything pending and wait for Stripe's answers (the `report-usage` command);
        `progress` sees the running totals after each run."""
        total = ReporterRun()
        deadline = self._clock.monotonic() + max_seconds
        while self._clock.monotonic() < deadline:
            run = await self.run_once()
            if run is not None:
                for name in (
                    "claimed_events",
                    "reports_created",
                    "sent",
                    "retried",
                    "dead",
                    "carried",
                ):
                    setattr(total, name, getattr(total, name) + getattr(run, name))
                total.expired += run.expired
                if progress is not None:
                    progress(total)
            if not await self.pending():
                break
            await asyncio.sleep(min(1.0, max(0.05, await self._seconds_until_due())))
        await self.stop()
        return total

    async def pending(self) -> int:
        """Reports not yet acknowledged plus billable events not yet in a report."""
        async with session_scope(self._sessions) as session:
            reports = await count_reports(session, ReportStatus.PENDING)
            events = await session.scalar(
                unreported_of_customers(func.count()).where(
                    User.subscription_status != SubscriptionStatus.PENDING
                )
            )
        return reports + int(events or 0)

    async def _seconds_until_due(self) -> float:
        async with session_scope(self._sessions) as session:
            soonest = await session.scalar(
                select(func.min(UsageReport.next_attempt_at)).where(
                    UsageReport.status == ReportStatus.PENDING
                )
            )
        if soonest is None:
            return 0.0
        return (soonest - self._clock.now()).total_seconds()

    async def stop(self) -> None:
        """Stop after the report in flight; pending reports stay pending for the next holder."""
        self._stopping = True
        self._wake.set()
        if not self._running:
            await self._lease.release()
            self._close_name()

    def _close_name(self) -> None:
        if self._name is not None:
            self._name.close()
