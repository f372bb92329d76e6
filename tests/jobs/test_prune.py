"""Done jobs are deleted a week after they finished; pending and running jobs never are."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from novo_gateway.jobs.models import Job
from novo_gateway.jobs.service import enqueue
from novo_gateway.jobs.worker import JOB_RETENTION, JobContext, JobRunner
from novo_gateway.kit.clock import FrozenClock
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import SessionFactory, create_engine, create_session_factory, session_scope


@pytest.fixture
async def sessions(settings: Settings) -> AsyncIterator[SessionFactory]:
    engine = create_engine(settings)
    yield create_session_factory(engine)
    await engine.dispose()


async def test_done_jobs_are_pruned_after_the_retention_and_unfinished_ones_are_kept(
    sessions: SessionFactory, clock: FrozenClock
) -> None:
    runner = JobRunner(sessions, clock)

    async def work(job: JobContext) -> None:
        return None

    runner.register("work", work)
    async with session_scope(sessions) as session:
        for name in ("done_long_ago", "done_lately", "pending"):
            kind = "work" if name != "pending" else "later"
            await enqueue(session, kind, {"name": name}, run_after=clock.now())
    first = await runner.run_once()  # runs both "work" jobs now; "later" has no handler here
    assert first.succeeded == 2
    async with session_scope(sessions) as session:
        jobs = {job.payload["name"]: job for job in (await session.scalars(select(Job))).all()}
        # The first was done eight days ago (as the runner stamps it, on its clock).
        await session.execute(
            update(Job)
            .where(Job.id == jobs["done_long_ago"].id)
            .values(finished_at=clock.now() - JOB_RETENTION - timedelta(days=1))
        )
    assert jobs["done_lately"].finished_at == clock.now()

    clock.advance(timedelta(days=6).total_seconds())
    assert await runner.prune() == 1

    async with session_scope(sessions) as session:
        left = {job.payload["name"] for job in (await session.scalars(select(Job))).all()}
    assert left == {"done_lately", "pending"}
    clock.advance(timedelta(days=365).total_seconds())
    assert await runner.prune() == 1  # the pending job stays, however old
