"""What the operator dashboard shows: customers and their usage, the reporter, the webhooks.

Read-only queries over the gateway's own tables; the one action (retrying a dead-lettered
report) is the CLI's, `billing.operations.retry_dead`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from novo_gateway.accounts.models import User
from novo_gateway.billing.models import (
    ReportStatus,
    UsageReport,
    WebhookEvent,
    WebhookStatus,
    WorkerLease,
)
from novo_gateway.billing.queries import unreported_of_customers
from novo_gateway.billing.reporter import LEASE_NAME
from novo_gateway.kit.config import Settings
from novo_gateway.metering import pricing
from novo_gateway.metering.models import UsageEvent
from novo_gateway.metering.queries import billed_units_by_account, period_at

CUSTOMERS_SHOWN: Final = 200
DEAD_SHOWN: Final = 50
EVENTS_SHOWN: Final = 25


@dataclass(frozen=True, slots=True)
class CustomerRow:
    id: int
    email: str
    name: str
    status: str
    created_at: datetime
    provisioned: bool
    cancel_at_period_end: bool
    units: int
    estimated_cost: Decimal  # exact, to 4 decimal places

    @property
    def estimated_charge(self) -> Decimal:
        """What Stripe will charge: the estimate rounded to cents."""
        return pricing.to_cents(self.estimated_cost)


@dataclass(frozen=True, slots=True)
class Totals:
    customers: int
    by_status: dict[str, int]
    units: int  # counted toward the bills, free tiers included
    estimated_revenue: Decimal  # exact, to 4 decimal places
    billable_units: int = 0  # beyond each customer's free tier: what is charged
    estimated_charge: Decimal = Decimal(0)  # each customer's charge rounded to cents, added up


@dataclass(frozen=True, slots=True)
class DeadReport:
    id: str
    user_id: int
    email: str | None
    units: int
    attempts: int
    event_timestamp: datetime
    last_error: str | None


@dataclass(frozen=True, slots=True)
class ReporterHealth:
    configured: bool
    last_sent_at: datetime | None
    lease_holder: str | None
    lease_live: bool
    pending_reports: int
    pending_report_units: int
    unreported_events: int
    unreported_units: int
    oldest_unacknowledged: datetime | None
    lag: timedelta | None
    dead: list[DeadReport]
    dead_count: int
    expired_count: int

    @property
    def pending_units(self) -> int:
        """Billable units Stripe has not acknowledged yet (claimed or not)."""
        return self.pending_report_units + self.unreported_units


@dataclass(frozen=True, slots=True)
class WebhookRow:
    id: str
    type: str
    status: str
    attempts: int
    received_at: datetime
    processed_at: datetime | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class Webhooks:
    recent: list[WebhookRow]
    failures: list[WebhookRow]
    failed_count: int
    retrying_count: int


@dataclass(frozen=True, slots=True)
class Overview:
    now: datetime
    customers: list[CustomerRow]
    totals: Totals
    reporter: ReporterHealth
    webhooks: Webhooks


async def period_units(session: AsyncSession, *, now: datetime) -> dict[int, int]:
    """Billable units of each account with usage in its current period.

    The period is the subscription's when `now` is inside it, else the calendar month, as
    `/billing/usage` counts it, and counted as it does: whole days from the daily counter, only
    the partial days from the events (never every event of every period).
    """
    rows = (
        await session.execute(select(User.id, User.current_period_start, User.current_period_end))
    ).all()
    periods: dict[int, tuple[datetime, datetime]] = {}
    for user_id, start, end in rows:
        period = period_at(start, end, now)
        periods[int(user_id)] = (period.start, period.end)
    return await billed_units_by_account(session, periods)


async def customers(
    session: AsyncSession, settings: Settings, *, now: datetime
) -> tuple[list[CustomerRow], Totals]:
    """The most recent customers (heaviest users first) and totals over every customer."""
    units = await period_units(session, now=now)
    free, price = settings.free_tier_calls, settings.cost_per_call
    costs = [pricing.estimated_cost(u, free, price) for u in units.values()]
    by_status = {
        status: int(count)
        for status, count in (
            await session.execute(
                select(User.subscription_status, func.count()).group_by(User.subscription_status)
            )
        ).all()
    }
    users = (
        await session.scalars(select(User).order_by(User.id.desc()).limit(CUSTOMERS_SHOWN))
    ).all()
    rows = [
        CustomerRow(
            id=u.id,
            email=u.email,
            name=u.name,
            status=u.subscription_status,
            created_at=u.created_at,
            provisioned=u.stripe_customer_id is not None,
            cancel_at_period_end=u.cancel_at_period_end,
            units=units.get(u.id, 0),
            estimated_cost=pricing.estimated_cost(units.get(u.id, 0), free, price),
        )
        for u in users
    ]
    rows.sort(key=lambda r: (-r.units, -r.id))
    totals = Totals(
        customers=sum(by_status.values()),
        by_status=dict(sorted(by_status.items())),
        units=sum(units.values()),
        estimated_revenue=sum(costs, start=Decimal(0)),
        billable_units=sum(pricing.billable_units(u, free) for u in units.values()),
        estimated_charge=sum((pricing.to_cents(c) for c in costs), start=Decimal(0)),
    )
    return rows, totals


async def reporter_health(
    session: AsyncSession, settings: Settings, *, now: datetime
) -> ReporterHealth:
    """How far the usage reporter is behind, and the reports Stripe refused."""
    last_sent = await session.scalar(select(func.max(UsageReport.sent_at)))
    lease = await session.get(WorkerLease, LEASE_NAME)
    pending_count, pending_units, pending_oldest = (
        await session.execute(
            select(
                func.count(),
                func.coalesce(func.sum(UsageReport.units), 0),
                func.min(UsageReport.window_start),
            ).where(UsageReport.status == ReportStatus.PENDING)
        )
    ).one()
    unreported_count, unreported_units, unreported_oldest = (
        await session.execute(
            unreported_of_customers(
                func.count(),
                func.coalesce(func.sum(UsageEvent.units), 0),
                func.min(UsageEvent.created_at),
            )
        )
    ).one()
    oldest = min((t for t in (pending_oldest, unreported_oldest) if t is not None), default=None)
    counts = dict(
        (
            await session.execute(
                select(UsageReport.status, func.count())
                .where(UsageReport.status.in_((ReportStatus.DEAD, ReportStatus.EXPIRED)))
                .group_by(UsageReport.status)
            )
        ).all()
    )
    dead_rows = (
        await session.execute(
            select(UsageReport, User.email)
            .outerjoin(User, User.id == UsageReport.user_id)
            .where(UsageReport.status == ReportStatus.DEAD)
            .order_by(UsageReport.created_at.desc())
            .limit(DEAD_SHOWN)
        )
    ).all()
    return ReporterHealth(
        configured=bool(settings.stripe_secret_key),
        last_sent_at=last_sent,
        lease_holder=lease.holder if lease else None,
        lease_live=lease is not None and lease.expires_at > now,
        pending_reports=int(pending_count),
        pending_report_units=int(pending_units),
        unreported_events=int(unreported_count),
        unreported_units=int(unreported_units),
        oldest_unacknowledged=oldest,
        lag=max(timedelta(0), now - oldest) if oldest is not None else None,
        dead=[
            DeadReport(
                id=r.id,
                user_id=r.user_id,
                email=email,
                units=r.units,
                attempts=r.attempts,
                event_timestamp=r.event_timestamp,
                last_error=r.last_error,
            )
            for r, email in dead_rows
        ],
        dead_count=int(counts.get(ReportStatus.DEAD, 0)),
        expired_count=int(counts.get(ReportStatus.EXPIRED, 0)),
    )


_WEBHOOK_COLUMNS: Final = (
    WebhookEvent.id,
    WebhookEvent.type,
    WebhookEvent.status,
    WebhookEvent.attempts,
    WebhookEvent.received_at,
    WebhookEvent.processed_at,
    WebhookEvent.last_error,
)


async def _webhook_rows(session: AsyncSession, *conditions: Any) -> list[WebhookRow]:
    stmt = (
        select(*_WEBHOOK_COLUMNS)
        .where(*conditions)
        .order_by(WebhookEvent.received_at.desc())
        .limit(EVENTS_SHOWN)
    )
    return [WebhookRow(*row) for row in (await session.execute(stmt)).all()]


async def webhooks(session: AsyncSession) -> Webhooks:
    """The latest Stripe events, and those that failed or are being retried."""
    failed = WebhookEvent.status == WebhookStatus.FAILED
    retrying = (WebhookEvent.status == WebhookStatus.PENDING) & (WebhookEvent.attempts > 0)
    counts = (
        await session.execute(
            select(
                func.coalesce(func.sum(case((failed, 1), else_=0)), 0),
                func.coalesce(func.sum(case((retrying, 1), else_=0)), 0),
            ).select_from(WebhookEvent)
        )
    ).one()
    return Webhooks(
        recent=await _webhook_rows(session),
        failures=await _webhook_rows(session, failed | retrying),
        failed_count=int(counts[0]),
        retrying_count=int(counts[1]),
    )


async def overview(session: AsyncSession, settings: Settings, *, now: datetime) -> Overview:
    """Everything on the operator's page."""
    rows, totals = await customers(session, settings, now=now)
    return Overview(
        now=now,
        customers=rows,
        totals=totals,
        reporter=await reporter_health(session, settings, now=now),
        webhooks=await webhooks(session),
    )
