"""The usage ledger: one row per authenticated metered call, never updated but to be claimed.

`usage_daily` is the ledger's running counter: per account and UTC day, the calls, the billed
units and the unbilled calls of that day's events. The ledger's store (`metering/store/`) adds
each insert's counts in the transaction that inserts the events, so the counter is exactly the
sum of the events, never more or less; events are inserted only through the store.
`usage_endpoint_daily` is kept the same way, per endpoint and latency bucket as well.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Date,
    ForeignKey,
    Index,
    LargeBinary,
    SmallInteger,
    String,
    TypeDecorator,
    UniqueConstraint,
    and_,
    column,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import TypeEngine

from novo_gateway.kit.db import Base
from novo_gateway.kit.models_base import BigId, UTCDateTime

# The reporter's pending events: billable and not yet in a report. Both databases use a partial
# index only for a query whose conditions match its own, and neither sees `billable` or
# `billable = true` as `billable IS true`: queries must say what the ORM renders for
# `report_id.is_(None)` and `billable.is_(True)` (`billable IS 1` on SQLite, `IS true` on
# PostgreSQL), as the reporter's and the admin page's do (tests/metering/test_usage_query_plans.py).
UNREPORTED_BILLABLE = and_(column("report_id").is_(None), column("billable").is_(True))


_HEX = frozenset("0123456789abcdef")


def encode_request_id(value: str) -> bytes:
    """A request id in as few bytes as it can be given back from.

    The gateway's own ids (32 lowercase hex digits) become their 16 bytes. Any other id (a
    client's `X-Request-Id`: letters, digits and dashes) is its UTF-8 after a zero byte (two
    when that would make 16 bytes), so it is never read back as hex.
    """
    if len(value) == 32 and _HEX.issuperset(value):
        return bytes.fromhex(value)
    text = value.encode()
    return (b"\0\0" if len(text) == 15 else b"\0") + text


def decode_request_id(value: bytes) -> str:
    if len(value) == 16:
        return value.hex()
    return value.lstrip(b"\0").decode()


class RequestId(TypeDecorator[str]):
    """A request id: text on SQLite, `encode_request_id`'s bytes on PostgreSQL (17 bytes on
    disk for the gateway's own ids, not 33)."""

    impl = String(64)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(LargeBinary())
        return dialect.type_descriptor(String(64))

    def process_bind_param(self, value: str | None, dialect: Dialect) -> Any:
        if value is None or dialect.name != "postgresql":
            return value
        return encode_request_id(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        if value is None or dialect.name != "postgresql":
            return value  # type: ignore[no-any-return]
        return decode_request_id(bytes(value))


class UsageEvent(Base):
    __tablename__ = "usage_events"
    __table_args__ = (
        # The usage views of one account over a time range (endpoints, a period's partial days).
        Index("ix_usage_events_user_created", "user_id", "created_at"),
        # The reporter's claim: only pending events are in it (an entry leaves once reported).
        # PostgreSQL keys it by account, as the claim groups: equal keys share one entry (a
        # posting list of row pointers, about 6 bytes an event). SQLite has no such sharing and
        # writes every page a commit touches to its log, so it keys it by id: new events land on
        # the last page, where an index by account would touch a page per account of a batch.
        Index("ix_usage_events_unreported", "user_id", postgresql_where=UNREPORTED_BILLABLE).ddl_if(
            dialect="postgresql"
        ),
        Index("ix_usage_events_unreported", "id", sqlite_where=UNREPORTED_BILLABLE).ddl_if(
            dialect="sqlite"
        ),
    )

    # On PostgreSQL the columns are stored in the order of migration 0004 (fixed-width ones
    # first, widest first, so no alignment padding); the order here is only the ORM's.
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"))
    endpoint: Mapped[str] = mapped_column(String(200))
    method: Mapped[str] = mapped_column(String(8))
    status: Mapped[int] = mapped_column(SmallInteger)
    latency_ms: Mapped[int]
    units: Mapped[int] = mapped_column(default=1)
    billable: Mapped[bool]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    request_id: Mapped[str | None] = mapped_column(RequestId())
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    report_id: Mapped[str | None] = mapped_column(String(100))


class UsageDaily(Base):
    """One account's usage on one UTC day: the sums of that day's `usage_events` rows."""

    __tablename__ = "usage_daily"
    # One B-tree on SQLite to search and update, not a table and its key index; on PostgreSQL
    # half of each page is left for the new versions of its rows (migration 0004).
    __table_args__ = ({"sqlite_with_rowid": False},)

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    calls: Mapped[int] = mapped_column(BigInteger)  # every recorded event
    billable_units: Mapped[int] = mapped_column(BigInteger)  # units of the billable events
    unbilled_calls: Mapped[int] = mapped_column(BigInteger)  # events not billed


class UsageEndpointDaily(Base):
    """One account's calls of one endpoint on one UTC day whose latency fell in one bucket: the
    sums of those `usage_events` rows (`endpoint_daily.py`). A day's rows are its histogram."""

    __tablename__ = "usage_endpoint_daily"
    __table_args__ = ({"sqlite_with_rowid": False},)

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    endpoint: Mapped[str] = mapped_column(String(200), primary_key=True)
    method: Mapped[str] = mapped_column(String(8), primary_key=True)
    bucket: Mapped[int] = mapped_column(SmallInteger, primary_key=True)  # latency bucket
    calls: Mapped[int] = mapped_column(BigInteger)
    billable_units: Mapped[int] = mapped_column(BigInteger)
    latency_ms_sum: Mapped[int] = mapped_column(BigInteger)


class UsageIdempotencyKey(Base):
    """The first billed call per account and client Idempotency-Key (kept 24 hours)."""

    __tablename__ = "usage_idempotency_keys"
    __table_args__ = (UniqueConstraint("user_id", "key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
