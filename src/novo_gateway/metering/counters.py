"""A batch's rows for the ledger's two running counters.

`usage_daily` (per account and UTC day, `daily.py`) and `usage_endpoint_daily` (per endpoint and
latency bucket as well, `endpoint_daily.py`) are added to by the ledger's store (`store/`), in the
transaction that inserts the events, so both are always the exact sums of the committed events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from novo_gateway.metering import daily, endpoint_daily


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
