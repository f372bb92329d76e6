"""Operator actions on billing, as the CLI runs them: each builds what it needs and cleans up."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta

from sqlalchemy import select, update

from novo_gateway.billing.models import ReportStatus, UsageReport
from novo_gateway.billing.queries import count_reports
from novo_gateway.billing.reconcile import SETTLE, Reconciler
from novo_gateway.billing.reporter import ReporterRun, UsageReporter
from novo_gateway.billing.stripe_client import StripeBilling
from novo_gateway.kit.clock import Clock
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import SessionFactory, create_engine, create_session_factory, session_scope

# A running count for the operator while a long command works (cli.py prints it).
Progress = Callable[[str], None]


@asynccontextmanager
async def _database(settings: Settings) -> AsyncIterator[SessionFactory]:
    engine = create_engine(settings)
    try:
        yield create_session_factory(engine)
    finally:
        await engine.dispose()


@asynccontextmanager
async def _stripe(settings: Settings) -> AsyncIterator[StripeBilling]:
    stripe = StripeBilling(settings, Clock())
    try:
        yield stripe
    finally:
        await stripe.close()


async def report_all(
    settings: Settings, *, max_seconds: float, progress: Progress | None = None
) -> tuple[ReporterRun, int, int]:
    """Report everything pending; returns the run, what is still pending, and dead reports."""
    async with _database(settings) as sessions, _stripe(settings) as stripe:
        reporter = UsageReporter(sessions, stripe, settings, Clock())

        def tell(total: ReporterRun) -> None:
            if progress is not None:
                progress(f"{total.claimed_events} events claimed, {total.sent} reports sent")

        run = await reporter.drain(max_seconds=max_seconds, progress=tell)
        left = await reporter.pending()
        async with session_scope(sessions) as session:
            dead = await count_reports(session, ReportStatus.DEAD)
        return run, left, dead


async def list_reports(settings: Settings, *, status: str, limit: int) -> list[str]:
    async with _database(settings) as sessions, session_scope(sessions) as session:
        rows = (
            await session.scalars(
                select(UsageReport)
                .where(UsageReport.status == status)
                .order_by(UsageReport.created_at.desc())
                .limit(limit)
            )
        ).all()
        return [_report_line(r) for r in rows] or [f"No {status} reports."]


def _report_line(r: UsageReport) -> str:
    """One report as the `reports` command lists it; a carried one says where it was charged."""
    line = (
        f"{r.id}\taccount={r.user_id}\tunits={r.units}\tattempts={r.attempts}\t"
        f"at={r.event_timestamp.isoformat()}\tstatus={r.status}\t"
    )
    if r.status == ReportStatus.CARRIED and r.carried_period_end is not None:
        return line + (
            f"carried over to the next invoice: {r.carried_invoice_item} "
            f"${(r.carried_cents or 0) / 100:.2f} for "
            f"{r.period_start:%Y-%m-%d}..{r.carried_period_end:%Y-%m-%d}"
        )
    return line + (r.last_error or "")


async def retry_dead(settings: Settings, report_id: str) -> int:
    """Put dead-lettered reports back in the queue (one, or all with 'all')."""
    async with _database(settings) as sessions:
        return await requeue_dead(sessions, Clock(), report_id)


async def requeue_dead(sessions: SessionFactory, clock: Clock, report_id: str) -> int:
    """`retry_dead` on the gateway's own database sessions and clock (the operator page's).

    Each report goes out as a new send (`models.meter_identifier`): Stripe would take the
    identifier it already holds, although it did not count that event, for a duplicate."""
    async with session_scope(sessions) as session:
        query = update(UsageReport).where(UsageReport.status == ReportStatus.DEAD)
        if report_id != "all":
            query = query.where(UsageReport.id == report_id)
        result = await session.execute(
            query.values(
                status=ReportStatus.PENDING,
                next_attempt_at=clock.now(),
                attempts=0,
                first_attempt_at=None,
                resends=UsageReport.resends + 1,
            )
        )
        return int(result.rowcount)  # type: ignore[attr-defined]


async def reconcile(
    settings: Settings, *, fix: bool, settle: timedelta = SETTLE, progress: Progress | None = None
) -> tuple[list[str], int]:
    """Lines describing each customer's drift, and how many customers drift (and, with `fix`,
    how many positive drifts were left because their latest reports are too recent to judge)."""
    async with _database(settings) as sessions, _stripe(settings) as stripe:
        reconciler = Reconciler(sessions, stripe, settings, Clock(), settle=settle)
        lines, drifting = [], 0
        for d in await reconciler.check(progress=progress):
            state = "ok" if d.drift == 0 else f"DRIFT {d.drift:+}"
            if d.closed and d.drift > 0:
                state += " reported but not invoiced"
            if d.drift != 0 and not fix:
                drifting += 1
            if fix and d.drift > 0:
                settles_at = reconciler.settles_at(d)
                if settles_at is not None:
                    drifting += 1
                    state += (
                        " (not fixed: Stripe may not count the reports sent at"
                        f" {d.last_sent_at:%H:%M} yet; run again after {settles_at:%H:%M} UTC)"
                    )
                elif await reconciler.fix(d):
                    state += " (carried over to the next invoice)" if d.closed else " (fixed)"
            invoiced = "open" if d.invoiced_units is None else str(d.invoiced_units)
            lines.append(
                f"account={d.user_id} customer={d.customer_id} "
                f"period={d.period_start:%Y-%m-%d %H:%M:%S}..{d.period_end:%Y-%m-%d %H:%M:%S} "
                f"ledger={d.ledger_units} reported={d.reported_units} "
                f"carried={d.carried_units} unreported={d.unreported_units} "
                f"stripe={d.stripe_units} invoiced={invoiced} {state}"
            )
        return lines, drifting
