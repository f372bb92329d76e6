"""Billing's reads of its own tables and of the ledger: what the reporter, the reconciler, the
usage views and the operator pages ask about usage reports and events still to report."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from novo_gateway.accounts.models import User
from novo_gateway.billing.models import ReportStatus, UsageReport
from novo_gateway.metering.models import UNREPORTED_BILLABLE, UsageEvent


async def count_reports(session: AsyncSession, status: ReportStatus) -> int:
    """How many usage reports have this status."""
    found = await session.scalar(select(func.count()).where(UsageReport.status == status))
    return int(found or 0)


async def sent_units(
    session: AsyncSession,
    customer_id: str,
    start: datetime,
    end: datetime,
    *,
    excluding: str | None = None,
) -> int:
    """Units of the customer's sent reports timestamped in [start, end), but for the report
    `excluding`."""
    query = select(func.coalesce(func.sum(UsageReport.units), 0)).where(
        UsageReport.stripe_customer_id == customer_id,
        UsageReport.status == ReportStatus.SENT,
        UsageReport.event_timestamp >= start,
        UsageReport.event_timestamp < end,
    )
    if excluding is not None:
        query = query.where(UsageReport.id != excluding)
    return int(await session.scalar(query) or 0)


async def sent_units_since(session: AsyncSession, user_id: int, start: datetime) -> int:
    """Units of the account's sent reports timestamped from `start` on."""
    found = await session.scalar(
        select(func.coalesce(func.sum(UsageReport.units), 0)).where(
            UsageReport.user_id == user_id,
            UsageReport.status == ReportStatus.SENT,
            UsageReport.event_timestamp >= start,
        )
    )
    return int(found or 0)


@dataclass(frozen=True, slots=True)
class ReportedUnits:
    """An account's reports timestamped in one period: units sent to the meter and carried over,
    and the latest sent report's timestamp and sending time."""

    sent: int
    carried: int
    last_event_at: datetime | None
    last_sent_at: datetime | None


async def reported_units(
    session: AsyncSession, user_id: int, start: datetime, end: datetime
) -> ReportedUnits:
    """What the account's reports timestamped in [start, end) told Stripe."""
    sent = UsageReport.status == ReportStatus.SENT
    carried = UsageReport.status == ReportStatus.CARRIED
    row = (
        await session.execute(
            select(
                func.coalesce(func.sum(UsageReport.units).filter(sent), 0),
                func.coalesce(func.sum(UsageReport.units).filter(carried), 0),
                func.max(UsageReport.event_timestamp).filter(sent),
                func.max(UsageReport.sent_at).filter(sent),
            ).where(
                UsageReport.user_id == user_id,
                UsageReport.event_timestamp >= start,
                UsageReport.event_timestamp < end,
            )
        )
    ).one()
    return ReportedUnits(int(row[0] or 0), int(row[1] or 0), row[2], row[3])


@dataclass(frozen=True, slots=True)
class CarriedPeriod:
    """Units of an earlier period carried over to an invoice, and what they cost."""

    period_start: datetime
    period_end: datetime
    units: int
    cents: int


async def carried_into(
    session: AsyncSession, user_id: int, start: datetime, end: datetime
) -> list[CarriedPeriod]:
    """What was carried over during [start, end): it is charged on the invoice that follows it,
    per period it belongs to, oldest first."""
    rows = await session.execute(
        select(
            UsageReport.period_start,
            UsageReport.carried_period_end,
            func.sum(UsageReport.units),
            func.coalesce(func.sum(UsageReport.carried_cents), 0),
        )
        .where(
            UsageReport.user_id == user_id,
            UsageReport.status == ReportStatus.CARRIED,
            UsageReport.sent_at >= start,
            UsageReport.sent_at < end,
        )
        .group_by(UsageReport.period_start, UsageReport.carried_period_end)
        .order_by(UsageReport.period_start)
    )
    return [
        CarriedPeriod(row[0], row[1] or row[0], int(row[2] or 0), int(row[3] or 0))
        for row in rows.all()
    ]


def unreported_of_customers(*columns: Any) -> Select[Any]:
    """`columns` over the billable events in no report yet of accounts with a Stripe customer
    (the partial index's condition, `UNREPORTED_BILLABLE`, as it is)."""
    return (
        select(*columns)
        .select_from(UsageEvent)
        .join(User, User.id == UsageEvent.user_id)
        .where(UNREPORTED_BILLABLE, User.stripe_customer_id.is_not(None))
    )
