"""Billing period arithmetic: intervals added to an anchor, months clamped to their length.

Periods are computed from the ``billing_cycle_anchor`` each time (never accumulated), so an
anchor on the 31st bills on Feb 28/29 and returns to the 31st in March, as Stripe does.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta


def add_interval(anchor: int, interval: str, count: int) -> int:
    """``anchor`` plus ``count`` intervals (``day``, ``week``, ``month``, ``year``)."""
    if interval == "day":
        return anchor + 86400 * count
    if interval == "week":
        return anchor + 7 * 86400 * count
    dt = datetime.fromtimestamp(anchor, tz=UTC)
    months = count * (12 if interval == "year" else 1)
    index = dt.year * 12 + (dt.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    day = min(dt.day, calendar.monthrange(year, month)[1])
    moved = dt.replace(year=year, month=month, day=day)
    return int(moved.timestamp())


def interval_seconds(interval: str, count: int) -> int:
    """A nominal length, for limits such as "two intervals" on test clock advances."""
    base = {"day": 86400, "week": 7 * 86400, "month": 31 * 86400, "year": 366 * 86400}
    return base[interval] * count


def describe(interval: str, count: int) -> str:
    return interval if count == 1 else f"{count} {interval}s"


def format_day(ts: int) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%b %d, %Y").replace(" 0", " ")


def day_floor(ts: int) -> int:
    dt = datetime.fromtimestamp(ts, tz=UTC)
    return int((dt - timedelta(hours=dt.hour, minutes=dt.minute, seconds=dt.second)).timestamp())
