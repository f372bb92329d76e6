"""The ledger's running counter (`usage_daily`): counts of a batch per account and UTC day.

Every write of usage events adds, in the same transaction, the counts of the events it inserts:
one upsert row per account and UTC day of the batch (calls, billed units, unbilled calls). The
usage writer does it itself (`writer.py`, `ledger_insert.py`); a session that flushes new
`UsageEvent` objects does it through the `after_flush` hook of `counters.py`. A batch that rolls
back takes its counts with it, so the counter is always the exact sum of the committed events.
Rows are sorted by account and day, so concurrent writers (other processes) lock counter rows in
one order.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import ColumnElement, Table, case, func
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from novo_gateway.metering.models import UsageDaily

# (user_id, day, calls, billable_units, unbilled_calls)
DayRow = tuple[int, date, int, int, int]
COUNTS = ("calls", "billable_units", "unbilled_calls")
_TABLE: Table = UsageDaily.__table__  # type: ignore[assignment]
_CHUNK = 1000  # rows per statement: 5,000 bound values, under both databases' limits

SQLITE_UPSERT = (
    "INSERT INTO usage_daily (user_id, day, calls, billable_units, unbilled_calls) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id, day) DO UPDATE SET "
    "calls = calls + excluded.calls, "
    "billable_units = billable_units + excluded.billable_units, "
    "unbilled_calls = unbilled_calls + excluded.unbilled_calls"
)
# One statement for the whole batch: the rows travel as five arrays.
POSTGRES_UPSERT = (
    "INSERT INTO usage_daily (user_id, day, calls, billable_units, unbilled_calls) "
    "SELECT * FROM unnest($1::bigint[], $2::date[], $3::bigint[], $4::bigint[], $5::bigint[]) "
    "ON CONFLICT (user_id, day) DO UPDATE SET "
    "calls = usage_daily.calls + excluded.calls, "
    "billable_units = usage_daily.billable_units + excluded.billable_units, "
    "unbilled_calls = usage_daily.unbilled_calls + excluded.unbilled_calls"
)


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


def sqlite_rows(rows: list[DayRow]) -> list[tuple[Any, ...]]:
    """Rows for `SQLITE_UPSERT` (a day is stored as SQLAlchemy's `Date` stores it there)."""
    return [
        (user, day.isoformat(), calls, units, unbilled)
        for user, day, calls, units, unbilled in rows
    ]


def postgres_arrays(rows: list[DayRow]) -> list[list[Any]]:
    """The five arrays of `POSTGRES_UPSERT`."""
    return [list(values) for values in zip(*rows, strict=True)]


def upsert_statements(dialect: str, rows: list[DayRow]) -> list[Any]:
    """SQLAlchemy statements adding `rows` to the counter (for writes made through a session)."""
    return counter_upserts(dialect, _TABLE, ("user_id", "day"), COUNTS, rows, _CHUNK)


def counter_upserts(
    dialect: str,
    table: Table,
    key: tuple[str, ...],
    counts: tuple[str, ...],
    rows: Sequence[tuple[Any, ...]],
    chunk: int,
) -> list[Any]:
    """Upserts of a running counter: rows of `key` then `counts` values, added on conflict,
    `chunk` rows a statement."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    statements = []
    for start in range(0, len(rows), chunk):
        values = [
            dict(zip((*key, *counts), row, strict=True)) for row in rows[start : start + chunk]
        ]
        stmt = insert(table).values(values)
        statements.append(
            stmt.on_conflict_do_update(
                index_elements=[table.c[name] for name in key],
                set_={name: table.c[name] + stmt.excluded[name] for name in counts},
            )
        )
    return statements
