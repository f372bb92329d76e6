"""The gateway's own table: one row per account and Idempotency-Key, kept 24 hours."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, LargeBinary, SmallInteger, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from novo_gateway.kit.db import Base
from novo_gateway.kit.models_base import BigId, UTCDateTime


class IdempotentRequestState(StrEnum):
    RUNNING = "running"  # claimed; its holder runs the request until `locked_until` at least
    DONE = "done"  # answered; the answer is stored when `body` is not null


class IdempotentRequest(Base):
    """A request made with an Idempotency-Key: its fingerprint, then its stored answer.

    The row is the lock: whoever inserts it (or takes over an expired one, see
    `gateway/idempotency_store.py`) runs the request; everyone else waits for its answer.
    """

    __tablename__ = "idempotent_requests"
    __table_args__ = (UniqueConstraint("user_id", "key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))  # SHA-256 of the request, hex
    state: Mapped[str] = mapped_column(String(16))
    owner: Mapped[str] = mapped_column(String(32))  # the holder's token (a takeover changes it)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    locked_until: Mapped[datetime] = mapped_column(UTCDateTime)
    # The answer, once DONE. `body` is null when the answer was too large to keep.
    status: Mapped[int | None] = mapped_column(SmallInteger)
    headers: Mapped[str | None] = mapped_column(Text)  # JSON list of [name, value]
    body: Mapped[bytes | None] = mapped_column(LargeBinary)
    body_bytes: Mapped[int | None]
    endpoint: Mapped[str | None] = mapped_column(String(200))
    units: Mapped[int | None]
    request_id: Mapped[str | None] = mapped_column(String(64))
