"""A batch's rows for the ledger's two running counters, and the session hook that adds them.

`usage_daily` (per account and UTC day, `daily.py`) and `usage_endpoint_daily` (per endpoint and
latency bucket as well, `endpoint_daily.py`) are added to in the transaction that inserts the
events: by the usage writer itself, and by any session flush that adds `UsageEvent` objects
(the hook below), so both are always the exact sums of the committed events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import event
from sqlalchemy.orm import Session, UOWTransaction

from novo_gateway.metering import daily, endpoint_daily
from novo_gateway.metering.models import UsageEvent


class CountedEvent(Protocol):
    """What the counters read of an event (a `NewUsageEvent` or a `UsageEvent`)."""

    @property
    def user_id(self) -> int: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def endpoint(self) -> str: ...
    @property
    def method(self) -> str: ...
    @property
    def latency_ms(self) -> int: ...
    @property
    def units(self) -> int: ...


@dataclass(frozen=True, slots=True)
class BatchCounts:
    """A batch's rows for the two counters."""

    days: list[daily.DayRow]
    endpoints: list[endpoint_daily.EndpointDayRow]


def count_batch(events: Sequence[CountedEvent], billed: Sequence[bool]) -> BatchCounts:
    """The counters' rows of `events`, each billed or not as `billed` says."""
    return BatchCounts(
        daily.count_days(
            [e.user_id for e in events],
            [e.created_at for e in events],
            [e.units for e in events],
            list(billed),
        ),
        endpoint_daily.count_endpoint_days(
            (e.user_id, e.created_at, e.endpoint, e.method, e.latency_ms, e.units, bill)
            for e, bill in zip(events, billed, strict=True)
        ),
    )


def upsert_statements(dialect: str, counts: BatchCounts) -> list[Any]:
    """SQLAlchemy statements adding `counts` to both counters (for writes through a session)."""
    return daily.upsert_statements(dialect, counts.days) + endpoint_daily.upsert_statements(
        dialect, counts.endpoints
    )


@event.listens_for(Session, "after_flush")
def _count_flushed_events(session: Session, _flush: UOWTransaction) -> None:
    """Add the counts of the `UsageEvent` objects this flush inserted, in its transaction."""
    added = [obj for obj in session.new if isinstance(obj, UsageEvent)]
    if not added:
        return
    connection = session.connection()
    counts = count_batch(added, [e.billable for e in added])
    for stmt in upsert_statements(connection.dialect.name, counts):
        connection.execute(stmt)
