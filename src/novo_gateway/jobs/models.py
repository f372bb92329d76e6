"""The job outbox: work written in the same transaction as the change that needs it."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from novo_gateway.kit.db import Base
from novo_gateway.kit.models_base import BigId, UTCDateTime, utcnow


class JobStatus(StrEnum):
    """Where a job stands."""

    PENDING = "pending"  # due at `run_after` (again, after a failure)
    RUNNING = "running"  # claimed by a runner until `locked_until`
    DONE = "done"  # finished; pruned after JOB_RETENTION


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_due", "status", "run_after"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    run_after: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When it was marked done (done jobs are pruned after JOB_RETENTION, see jobs/worker.py).
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
