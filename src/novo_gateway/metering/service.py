"""Usage of one account, read from the ledger: period totals, days and endpoints.

Every query is bounded to one account and a time range, so it is a range scan of the
`(user_id, created_at)` index, never a full scan of the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from novo_gateway.accounts.models import User
from novo_gateway.config import Settings
from novo_gateway.metering import pricing
from novo_gateway.metering.models import UsageEvent

DAILY_BREAKDOWN_DAYS = 30


@dataclass(frozen=True, slots=True)
class Period:
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class DayUsage:
    day: date
    calls: int  # every recorded call
    billable_units: int


@dataclass(frozen=True, slots=True)
class UsageSummary:
    """An account's usage in its current billing period."""

    period: Period
    billable_units: int  # units that count toward the bill (the original's totalCalls)
    unbilled_calls: int  # recorded but not billed: failures, retries, refused by the handler
    free_tier_units: int
    units_beyond_free_tier: int
    free_tier_remaining: int
    estimated_cost: Decimal
    cost_per_unit: Decimal
    days: list[DayUsage]
    subscription_status: str


@dataclass(frozen=True, slots=True)
class EndpointStats:
    endpoint: str
    method: str
    calls: int
    billable_units: int
    avg_latency_ms: float
    p95_latency_ms: int


def calendar_month(now: datetime) -> Period:
    """The UTC calendar month holding `now`."""
    now = now.astimezone(UTC)
    start = datetime(now.year, now.month, 1, tzinfo=UTC)
    end = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
    return Period(start, end)


def billing_period(user: User, now: datetime) -> Period:
    """The subscription's current period once billing has set it, else the calendar month."""
    start, end = user.current_period_start, user.current_period_end
    if start is not None and end is not None and start <= now < end:
        return Period(start, end)
    return calendar_month(now)


def _in_range(
    user_id: int, start: datetime, end: datetime, *, end_included: bool = False
) -> list[ColumnElement[bool]]:
    """One account's events from `start` to `end` (excluded unless `end_included`)."""
    before_end = UsageEvent.created_at <= end if end_included else UsageEvent.created_at < end
    return [UsageEvent.user_id == user_id, UsageEvent.created_at >= start, before_end]


def _billed_units(billable: Any, units: Any) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((billable, units), else_=0)), 0)


async def usage_summary(
    session: AsyncSession, user: User, settings: Settings, *, now: datetime
) -> UsageSummary:
    """Totals of the current period, cost beyond the free tier, and the last 30 days."""
    period = billing_period(user, now)
    totals = select(
        _billed_units(UsageEvent.billable, UsageEvent.units),
        func.coalesce(func.sum(case((UsageEvent.billable, 0), else_=1)), 0),
    ).where(*_in_range(user.id, period.start, period.end))
    billed, unbilled = (await session.execute(totals)).one()
    free = settings.free_tier_calls
    return UsageSummary(
        period=period,
        billable_units=int(billed),
        unbilled_calls=int(unbilled),
        free_tier_units=free,
        units_beyond_free_tier=pricing.billable_units(int(billed), free),
        free_tier_remaining=pricing.free_tier_remaining(int(billed), free),
        estimated_cost=pricing.estimated_cost(int(billed), free, settings.cost_per_call),
        cost_per_unit=settings.cost_per_call,
        days=await daily_usage(session, user.id, now=now),
        subscription_status=user.subscription_status,
    )


async def daily_usage(
    session: AsyncSession, user_id: int, *, now: datetime, days: int = DAILY_BREAKDOWN_DAYS
) -> list[DayUsage]:
    """One entry per UTC day for the last `days` days (today included), oldest first."""
    today = now.astimezone(UTC).date()
    first = today - timedelta(days=days - 1)
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    end = start + timedelta(days=days)
    day = _utc_day(session)
    stmt = (
        select(day, func.count(), _billed_units(UsageEvent.billable, UsageEvent.units))
        .where(*_in_range(user_id, start, end))
        .group_by(day)
    )
    found = {
        _as_date(value): (int(calls), int(units))
        for value, calls, units in (await session.execute(stmt)).all()
    }
    result = []
    for offset in range(days):
        current = first + timedelta(days=offset)
        calls, units = found.get(current, (0, 0))
        result.append(DayUsage(current, calls, units))
    return result


async def endpoint_usage(
    session: AsyncSession, user_id: int, *, now: datetime, days: int
) -> tuple[Period, list[EndpointStats]]:
    """Calls, billed units and latency (mean and p95) per endpoint over the last `days` days."""
    period = Period(now - timedelta(days=days), now)
    partition = (UsageEvent.endpoint, UsageEvent.method)
    ranked = (
        select(
            UsageEvent.endpoint,
            UsageEvent.method,
            UsageEvent.latency_ms,
            UsageEvent.billable,
            UsageEvent.units,
            func.row_number()
            .over(partition_by=partition, order_by=UsageEvent.latency_ms)
            .label("rank"),
            func.count().over(partition_by=partition).label("n"),
        )
        .where(*_in_range(user_id, period.start, period.end, end_included=True))
        .subquery()
    )
    calls = func.count().label("calls")
    # Nearest-rank p95 in SQL on both databases: the smallest latency whose rank is at least
    # 95% of the endpoint's calls (integer arithmetic, so no float rounding).
    p95 = func.min(case((ranked.c.rank * 100 >= ranked.c.n * 95, ranked.c.latency_ms)))
    stmt = (
        select(
            ranked.c.endpoint,
            ranked.c.method,
            calls,
            _billed_units(ranked.c.billable, ranked.c.units),
            func.avg(ranked.c.latency_ms),
            p95,
        )
        .group_by(ranked.c.endpoint, ranked.c.method)
        .order_by(calls.desc(), ranked.c.endpoint, ranked.c.method)
    )
    stats = [
        EndpointStats(
            endpoint=endpoint,
            method=method,
            calls=int(count),
            billable_units=int(units),
            avg_latency_ms=round(float(avg), 2),
            p95_latency_ms=int(p95_value),
        )
        for endpoint, method, count, units, avg, p95_value in (await session.execute(stmt)).all()
    ]
    return period, stats


def _utc_day(session: AsyncSession) -> ColumnElement[Any]:
    """The UTC calendar day of an event (SQLite stores UTC text; PostgreSQL a timestamptz)."""
    if session.get_bind().dialect.name == "postgresql":
        return func.date(func.timezone("UTC", UsageEvent.created_at))
    return func.date(UsageEvent.created_at)


def _as_date(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))
