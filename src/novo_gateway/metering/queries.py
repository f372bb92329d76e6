"""Usage of one account, read from the ledger: period totals, days and endpoints.

Whole UTC days are read from the running counter `usage_daily` (one row per account and day,
kept exact by every write of events, see `daily.py`), so a period's totals cost a few rows
whatever the account's volume. A period that starts or ends inside a day adds that part of the
day from the events themselves: the part, or the day's counter less the rest of the day, whichever
covers less time. Endpoint statistics (mean and p95 latency) need the events. Every events query
is bounded to one account and a time range, so it is a range scan of the `(user_id, created_at)`
index, never a full scan of the ledger.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Date,
    Integer,
    Select,
    and_,
    case,
    column,
    func,
    literal,
    select,
    union_all,
    values,
)
from sqlalchemy.ext.asyncio import AsyncSession

from novo_gateway.accounts.models import SUBSCRIPTION_ENDED, User
from novo_gateway.kit.config import Settings
from novo_gateway.kit.models_base import UTCDateTime
from novo_gateway.metering import endpoints, pricing
from novo_gateway.metering.daily import billed_units, utc_midnight
from novo_gateway.metering.endpoints import EndpointStats as EndpointStats
from novo_gateway.metering.models import UsageDaily, UsageEvent

DAILY_BREAKDOWN_DAYS = 30
_DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class TimeRange:
    """From `start` (included) to `end` (excluded): a billing period, or the days a view covers."""

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

    period: TimeRange
    billable_units: int  # units that count toward the bill (the original's totalCalls)
    unbilled_calls: int  # recorded but not billed: failures, retries, refused by the handler
    free_tier_units: int
    units_beyond_free_tier: int
    free_tier_remaining: int
    estimated_cost: Decimal
    cost_per_unit: Decimal
    days: list[DayUsage]
    subscription_status: str
    calls: int = 0  # every call recorded in the period (requests), billed or not


def calendar_month(now: datetime) -> TimeRange:
    """The UTC calendar month holding `now`."""
    now = now.astimezone(UTC)
    start = datetime(now.year, now.month, 1, tzinfo=UTC)
    end = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
    return TimeRange(start, end)


def billing_period(user: User, now: datetime) -> TimeRange:
    """The subscription's current period once billing has set it, else the calendar month.

    In the account's first period the usage counts from the account's creation: calls made
    while it was pending (before its subscription existed) are billed in that period.
    """
    renews = not user.cancel_at_period_end and user.subscription_status not in SUBSCRIPTION_ENDED
    period = period_at(user.current_period_start, user.current_period_end, now, renews=renews)
    return TimeRange(counted_from(user, period.start), period.end)


def counted_from(user: User, period_start: datetime) -> datetime:
    """Where the ledger's count of a period starting at `period_start` begins: the account's
    creation for its first period (calls made while it was pending belong there), else the
    period's start."""
    first = user.billing_started_at
    if first is not None and period_start == first and user.created_at < first:
        return user.created_at
    return period_start


def period_at(
    start: datetime | None, end: datetime | None, now: datetime, *, renews: bool = True
) -> TimeRange:
    """[start, end) when `now` is inside it; past its end, the period that followed it (when the
    subscription `renews`: a renewal we were not told of yet, e.g. a webhook missed while the
    gateway was down); else (no period yet, or one that ended for good) the calendar month."""
    if start is not None and end is not None and start <= now:
        if now < end:
            return TimeRange(start, end)
        if renews and end > start:
            return following_period(start, end, now)
    return calendar_month(now)


# Stripe's shortest monthly period (February): shorter periods are days or weeks.
_SHORTEST_MONTH = timedelta(days=28)


def following_period(start: datetime, end: datetime, now: datetime) -> TimeRange:
    """The period holding `now` of a subscription whose period [start, end) has ended.

    Periods of whole months keep the billing cycle anchor's day, clamped to the month's last day
    as Stripe does (Jan 31 → Feb 28 → Mar 31): that day is the larger of the two ends' days,
    since no two months in a row are both shorter than it. Other periods (days, weeks) repeat
    their length.
    """
    months = (end.year - start.year) * 12 + end.month - start.month
    day = max(start.day, end.day)
    if end - start >= _SHORTEST_MONTH and months > 0 and _add_months(start, months, day) == end:
        while end <= now:
            start, end = end, _add_months(end, months, day)
        return TimeRange(start, end)
    length = end - start
    skipped = (now - end) // length
    start = end + skipped * length
    return TimeRange(start, start + length)


def _add_months(at: datetime, months: int, day: int) -> datetime:
    """`at` moved by `months`, on `day` or the month's last day when it is shorter."""
    year, month = divmod(at.month - 1 + months, 12)
    year += at.year
    last = calendar.monthrange(year, month + 1)[1]
    return at.replace(year=year, month=month + 1, day=min(day, last))


def _in_range(
    user_id: int, start: datetime, end: datetime, *, end_included: bool = False
) -> list[ColumnElement[bool]]:
    """One account's events from `start` to `end` (excluded unless `end_included`)."""
    before_end = UsageEvent.created_at <= end if end_included else UsageEvent.created_at < end
    return [UsageEvent.user_id == user_id, UsageEvent.created_at >= start, before_end]


async def usage_summary(
    session: AsyncSession, user: User, settings: Settings, *, now: datetime
) -> UsageSummary:
    """Totals of the current period, cost beyond the free tier, and the last 30 days."""
    period = billing_period(user, now)
    totals = await period_totals(session, user.id, period.start, period.end)
    billed, unbilled = totals.billable_units, totals.unbilled_calls
    free = settings.free_tier_calls
    return UsageSummary(
        period=period,
        billable_units=billed,
        unbilled_calls=unbilled,
        free_tier_units=free,
        units_beyond_free_tier=pricing.billable_units(billed, free),
        free_tier_remaining=pricing.free_tier_remaining(billed, free),
        estimated_cost=pricing.estimated_cost(billed, free, settings.cost_per_call),
        cost_per_unit=settings.cost_per_call,
        days=await daily_usage(session, user.id, now=now),
        subscription_status=user.subscription_status,
        calls=totals.calls,
    )


@dataclass(slots=True)
class Totals:
    calls: int = 0
    billable_units: int = 0
    unbilled_calls: int = 0

    def add(self, other: Totals, sign: int = 1) -> None:
        self.calls += sign * other.calls
        self.billable_units += sign * other.billable_units
        self.unbilled_calls += sign * other.unbilled_calls


async def period_totals(
    session: AsyncSession, user_id: int, start: datetime, end: datetime
) -> Totals:
    """One account's calls, billed units and unbilled calls from `start` to `end` (excluded).

    One statement: the counter's whole days and the events of the partial days, each a row.
    """
    parts = _period_parts(start, end)
    totals = Totals()
    if not parts:
        return totals
    selects = [_part_select(user_id, index, part) for index, part in enumerate(parts)]
    stmt = selects[0] if len(selects) == 1 else union_all(*selects)
    for index, calls, units, unbilled in (await session.execute(stmt)).all():
        sign = parts[int(index)].sign
        totals.add(Totals(int(calls), int(units), int(unbilled)), sign)
    return totals


# Ranges per statement of `billed_units_by_account`: four bound values each, under both databases'
# limits on parameters.
_RANGES_PER_STATEMENT = 5_000


async def billed_units_by_account(
    session: AsyncSession, periods: Mapping[int, tuple[datetime, datetime]]
) -> dict[int, int]:
    """Billed units of many accounts, each from its own `start` to `end` (excluded).

    What `period_totals` counts, for all of them at once: the ranges of every account (the
    counter's whole days, the partial days' events) go into a few set statements, so the cost is
    the accounts' partial days, not their periods' events. Accounts with no usage are left out.
    """
    days: list[tuple[int, date, date, int]] = []
    events: list[tuple[int, datetime, datetime, int]] = []
    for user_id, (start, end) in periods.items():
        for part in _period_parts(start, end):
            if part.from_events:
                events.append((user_id, part.start, part.end, part.sign))
            else:
                days.append((user_id, part.start.date(), part.end.date(), part.sign))
    units: dict[int, int] = {}
    statements = [
        _sum_over_ranges(
            days[i : i + _RANGES_PER_STATEMENT],
            Date,
            UsageDaily.user_id,
            UsageDaily.day,
            UsageDaily.billable_units,
        )
        for i in range(0, len(days), _RANGES_PER_STATEMENT)
    ] + [
        _sum_over_ranges(
            events[i : i + _RANGES_PER_STATEMENT],
            UTCDateTime,
            UsageEvent.user_id,
            UsageEvent.created_at,
            UsageEvent.units,
            UsageEvent.billable.is_(True),
        )
        for i in range(0, len(events), _RANGES_PER_STATEMENT)
    ]
    for stmt in statements:
        for user_id, billed in (await session.execute(stmt)).all():
            units[int(user_id)] = units.get(int(user_id), 0) + int(billed or 0)
    return {user_id: billed for user_id, billed in units.items() if billed}


def _sum_over_ranges(
    rows: Sequence[tuple[int, Any, Any, int]],
    bound: Any,
    user_id: Any,
    at: Any,
    value: Any,
    *where: ColumnElement[bool],
) -> Select[Any, Any]:
    """Per account, the signed sum of `value` over its ranges [first, stop) of `at`."""
    ranges = (
        values(
            column("user_id", BigInteger),
            column("first", bound),
            column("stop", bound),
            column("sign", Integer),
            name="ranges",
        )
        .data(list(rows))
        .cte("ranges")  # a CTE: SQLite names no columns of a VALUES subquery
    )
    return (
        select(ranges.c.user_id, func.sum(ranges.c.sign * value))
        .join(
            at.table,
            and_(user_id == ranges.c.user_id, at >= ranges.c.first, at < ranges.c.stop),
        )
        .where(*where)
        .group_by(ranges.c.user_id)
    )


@dataclass(frozen=True, slots=True)
class _Part:
    """Counted days (`from_events` false) or events, from `start` to `end`, added or taken."""

    from_events: bool
    start: datetime
    end: datetime
    sign: int = 1


def _period_parts(start: datetime, end: datetime) -> list[_Part]:
    """What to add up for `start` to `end`: whole days from the counter, partial days' events."""
    parts: list[_Part] = []
    if start >= end:
        return parts
    first_midnight = utc_midnight(start)
    if first_midnight != start:  # the period starts inside a day
        head_end = min(first_midnight + _DAY, end)
        parts += _part_of_day(start, head_end)
        start = head_end
    if start >= end:
        return parts
    last_midnight = utc_midnight(end)  # `start` is a midnight now, at or before this one
    if last_midnight < end:  # the period ends inside a day
        parts += _part_of_day(last_midnight, end)
    if start < last_midnight:
        parts.append(_Part(False, start, last_midnight))
    return parts


def _part_of_day(start: datetime, end: datetime) -> list[_Part]:
    """Events from `start` to `end` within one UTC day: read directly, or as the day's counter
    less the events outside the range, whichever reads the shorter stretch of events."""
    midnight = utc_midnight(start)
    next_midnight = midnight + _DAY
    if (start - midnight) + (next_midnight - end) >= end - start:
        return [_Part(True, start, end)]
    parts = [_Part(False, midnight, next_midnight)]
    if start > midnight:
        parts.append(_Part(True, midnight, start, -1))
    if end < next_midnight:
        parts.append(_Part(True, end, next_midnight, -1))
    return parts


def _part_select(user_id: int, index: int, part: _Part) -> Select[int, int, int, int]:
    if part.from_events:
        return select(
            literal(index),
            func.count(),
            billed_units(UsageEvent.billable, UsageEvent.units),
            func.coalesce(func.sum(case((UsageEvent.billable, 0), else_=1)), 0),
        ).where(*_in_range(user_id, part.start, part.end))
    return select(
        literal(index),
        func.coalesce(func.sum(UsageDaily.calls), 0),
        func.coalesce(func.sum(UsageDaily.billable_units), 0),
        func.coalesce(func.sum(UsageDaily.unbilled_calls), 0),
    ).where(
        UsageDaily.user_id == user_id,
        UsageDaily.day >= part.start.date(),
        UsageDaily.day < part.end.date(),
    )


async def daily_usage(
    session: AsyncSession, user_id: int, *, now: datetime, days: int = DAILY_BREAKDOWN_DAYS
) -> list[DayUsage]:
    """One entry per UTC day for the last `days` days (today included), oldest first."""
    today = now.astimezone(UTC).date()
    first = today - timedelta(days=days - 1)
    stmt = select(UsageDaily.day, UsageDaily.calls, UsageDaily.billable_units).where(
        UsageDaily.user_id == user_id,
        UsageDaily.day >= first,
        UsageDaily.day < first + timedelta(days=days),
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
) -> tuple[TimeRange, list[EndpointStats]]:
    """Calls, billed units and latency (mean and p95) per endpoint over the last `days` days
    (whole days from the per-endpoint counter, see `endpoints.py`)."""
    period = TimeRange(now - timedelta(days=days), now)
    return period, await endpoints.endpoint_stats(session, user_id, period.start, period.end)


def _as_date(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))
