"""The ledger's running counter (`usage_daily`): counts of a batch per account and UTC day.

Every write of usage events adds, in the same transaction, the counts of the events it inserts:
one upsert row per account and UTC day of the batch (calls, billed units, unbilled calls). The
ledger's store adds them (`store/`), for the usage writer's batches and for any other insert of
events alike. A batch that rolls back takes its counts with it, so the counter is always the
exact sum of the committed events. Rows are sorted by account and day, so concurrent writers
(other processes) lock counter rows in one order.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import ColumnElement, case, func

# (user_id, day, calls, billable_units, unbilled_calls)
DayRow = tuple[int, date, int, int, int]


def utc_day(at: datetime) -> date:
    """The UTC calendar day of an event's time (the day its SQL views group it under)."""
    if at.tzinfo is UTC:
        return at.date()
    if at.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return at.astimezone(UTC).date()


def utc_midnight(at: datetime) -> datetime:
    """The UTC midnight starting the day of `at`."""
    at = at.astimezone(UTC)
    return datetime(at.year, at.month, at.day, tzinfo=UTC)


def billed_units(billable: Any, units: Any) -> ColumnElement[int]:
    """SQL: the sum of `units` over the billable rows (0 when none)."""
    return func.coalesce(func.sum(case((billable, units), else_=0)), 0)


def count_days(
    user_ids: list[int], times: list[datetime], units: list[int], billed: list[bool]
) -> list[DayRow]:
    """Counts per account and UTC day of the events given column by column, sorted."""
    counts: dict[tuple[int, date], list[int]] = {}
    for user_id, at, unit, bill in zip(user_ids, times, units, billed, strict=True):
        key = (user_id, at.date() if at.tzinfo is UTC else utc_day(at))
        found = counts.get(key)
        if found is None:
            counts[key] = [1, unit, 0] if bill else [1, 0, 1]
        elif bill:
            found[0] += 1
            found[1] += unit
        else:
            found[0] += 1
            found[2] += 1
    return sorted([(user, day, c[0], c[1], c[2]) for (user, day), c in counts.items()])
