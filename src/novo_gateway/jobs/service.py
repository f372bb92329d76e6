"""The job outbox: `enqueue` writes a job row in the caller's transaction (never commits).

Work that must follow a change (e.g. creating the Stripe customer after a registration) is written
here in the same unit of work as the change, so both land or neither does; a worker runs it later.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from novo_gateway.jobs.models import Job, JobStatus


async def enqueue(
    session: AsyncSession,
    kind: str,
    payload: dict[str, Any],
    *,
    run_after: datetime | None = None,
) -> Job:
    """Add a pending job to the session and flush it; due at `run_after` (default: now)."""
    job = Job(kind=kind, payload=payload, status=JobStatus.PENDING, attempts=0)
    if run_after is not None:
        job.run_after = run_after
        job.created_at = run_after
    session.add(job)
    await session.flush()
    return job
