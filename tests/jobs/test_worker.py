"""The job runner on SQLite and PostgreSQL: claims, runs, retries with backoff, loses no job."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import event, select

from novo_gateway.jobs.models import Job
from novo_gateway.jobs.service import enqueue
from novo_gateway.jobs.worker import JobContext, JobRunner
from novo_gateway.kit.clock import FrozenClock
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import SessionFactory, create_engine, create_session_factory, session_scope


class Flaky(Exception):
    """A failure a handler raises on purpose."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@pytest.fixture
async def sessions(settings: Settings) -> AsyncIterator[SessionFactory]:
    engine = create_engine(settings)
    yield create_session_factory(engine)
    await engine.dispose()


def make_runner(sessions: SessionFactory, clock: FrozenClock, **options: float) -> JobRunner:
    return JobRunner(sessions, clock, rng=random.Random(7), **options)  # type: ignore[arg-type]


async def add_job(
    sessions: SessionFactory, clock: FrozenClock, kind: str = "greet", **payload: object
) -> int:
    async with session_scope(sessions) as session:
        job = await enqueue(session, kind, dict(payload), run_after=clock.now())
        return job.id


async def test_run_once_tells_its_running_totals_after_each_batch(
    sessions: SessionFactory, clock: FrozenClock
) -> None:
    async def greet(job: JobContext) -> None:
        if job.payload["name"] == "bad":
            raise RuntimeError("refused")

    runner = make_runner(sessions, clock, batch_size=2)
    runner.register("greet", greet)
    for name in ("a", "b", "bad", "c", "d"):
        await add_job(sessions, clock, name=name)
    said: list[tuple[int, int]] = []

    summary = await runner.run_once(lambda s: said.append((s.succeeded, s.failed)))

    assert (summary.succeeded, summary.failed) == (4, 1)
    assert said[-1] == (4, 1)  # after the last batch: the summary's totals
    # A running count: it only grows, one report a batch.
    counts = [done + failed for done, failed in said]
    assert counts == sorted(set(counts)) and counts[0] > 0


async def load(sessions: SessionFactory, job_id: int) -> Job:
    async with session_scope(sessions) as session:
        return await session.get_one(Job, job_id)


async def test_due_job_runs_its_handler_once_and_is_marked_done(
    sessions: SessionFactory, clock: FrozenClock
) -> None:
    seen: list[JobContext] = []

    async def greet(job: JobContext) -> None:
        seen.append(job)

    runner = make_runner(sessions, clock)
    runner.register("greet", greet)
    job_id = await add_job(sessions, clock, name="ada")

    first = await runner.run_once()
    second = await runner.run_once()

    assert (first.succeeded, first.failed, second.succeeded) == (1, 0, 0)
    assert [(j.id, j.kind, dict(j.payload), j.attempt) for j in seen] == [
        (job_id, "greet", {"name": "ada"}, 1)
    ]
    job = await load(sessions, job_id)
    assert (job.status, job.attempts, job.locked_until) == ("done", 1, None)


async def test_failed_job_is_retried_after_backoff_with_last_error(
    sessions: SessionFactory, clock: FrozenClock
) -> None:
    calls = 0

    async def sometimes(job: JobContext) -> None:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise Flaky(f"Stripe is down (try {calls})")

    runner = make_runner(sessions, clock, base_backoff_seconds=10, max_backoff_seconds=600)
    runner.register("greet", sometimes)
    job_id = await add_job(sessions, clock)

    assert (await runner.run_once()).failed == 1
    job = await load(sessions, job_id)
    assert (job.status, job.attempts) == ("pending", 1)
    assert job.last_error == "Flaky: Stripe is down (try 1)"
    first_delay = (job.run_after - clock.now()).total_seconds()
    assert 5 <= first_delay <= 10

    assert (await runner.run_once()).succeeded == 0  # not due yet: nothing runs
    assert calls == 1

    clock.advance(first_delay)
    assert (await runner.run_once()).failed == 1
    job = await load(sessions, job_id)
    second_delay = (job.run_after - clock.now()).total_seconds()
    assert 10 <= second_delay <= 20
    assert job.last_error == "Flaky: Stripe is down (try 2)"

    clock.advance(second_delay)
    assert (await runner.run_once()).succeeded == 1
    job = await load(sessions, job_id)
    assert (job.status, job.attempts, calls) == ("done", 3, 3)


async def test_retry_after_hint_on_the_error_sets_the_next_attempt(
    sessions: SessionFactory, clock: FrozenClock
) -> None:
    async def limited(job: JobContext) -> None:
        raise Flaky("rate limited", retry_after=120)

    runner = make_runner(sessions, clock, base_backoff_seconds=1)
    runner.register("greet", limited)
    job_id = await add_job(sessions, clock)
    await runner.run_once()
    job = await load(sessions, job_id)
    assert job.run_after == clock.now() + timedelta(seconds=120)


def test_backoff_doubles_per_attempt_with_jitter_and_is_capped() -> None:
    runner = JobRunner(None, FrozenClock(), base_backoff_seconds=2, max_backoff_seconds=60)  # type: ignore[arg-type]
    for attempt, ceiling in [(1, 2), (2, 4), (3, 8), (4, 16), (5, 32), (6, 60), (40, 60)]:
        delays = {runner.backoff(attempt) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays), (attempt, delays)
        assert len(delays) > 1  # jittered: retries of many jobs do not line up
    assert runner.backoff(10_000) <= 60  # no overflow on very old jobs


async def test_job_without_a_handler_here_stays_pending(
    sessions: SessionFactory, clock: FrozenClock
) -> None:
    runner = make_runner(sessions, clock)
    runner.register("greet", lambda job: asyncio.sleep(0))
    job_id = await add_job(sessions, clock, kind="unknown_kind")
    assert (await runner.run_once()).succeeded == 0
    job = await load(sessions, job_id)
    assert (job.status, job.attempts) == ("pending", 0)


async def test_job_scheduled_later_waits_until_its_time(
    sessions: SessionFactory, clock: FrozenClock
) -> None:
    ran: list[int] = []

    async def record(job: JobContext) -> None:
        ran.append(job.id)

    runner = make_runner(sessions, clock)
    runner.register("greet", record)
    async with session_scope(sessions) as session:
        later = await enqueue(session, "greet", {}, run_after=clock.now() + timedelta(minutes=5))
    await runner.run_once()
    assert ran == []
    clock.advance(300)
    await runner.run_once()
    assert ran == [later.id]


async def test_job_of_a_crashed_worker_is_claimed_again_when_its_lease_expires(
    sessions: SessionFactory, clock: FrozenClock
) -> None:
    ran: list[int] = []

    async def record(job: JobContext) -> None:
        ran.append(job.attempt)

    crashed = make_runner(sessions, clock, lease_seconds=60)
    crashed.register("greet", record)
    job_id = await add_job(sessions, clock)
    assert [j.id for j in await crashed._claim(limit=5)] == [job_id]  # claimed, then "crashes"

    survivor = make_runner(sessions, clock, lease_seconds=60)
    survivor.register("greet", record)
    await survivor.run_once()
    assert ran == []  # the lease still holds
    clock.advance(61)
    await survivor.run_once()
    assert ran == [2]
    assert (await load(sessions, job_id)).status == "done"


async def test_late_worker_cannot_overwrite_the_claim_that_replaced_it(
    sessions: SessionFactory, clock: FrozenClock
) -> None:
    async def boom(job: JobContext) -> None:
        raise Flaky("late failure")

    slow = make_runner(sessions, clock, lease_seconds=60)
    slow.register("greet", boom)
    job_id = await add_job(sessions, clock)
    (stale,) = await slow._claim(limit=1)
    clock.advance(61)
    fresh = make_runner(sessions, clock, lease_seconds=60)
    fresh.register("greet", boom)
    (current,) = await fresh._claim(limit=1)
    assert current.attempt == stale.attempt + 1

    await slow._failed(stale, Flaky("late failure"))  # the stale worker reports last
    job = await load(sessions, job_id)
    assert (job.status, job.attempts, job.last_error) == ("running", 2, None)


async def test_two_runners_never_run_the_same_job_twice(
    sessions: SessionFactory, clock: FrozenClock
) -> None:
    ran: list[int] = []

    async def record(job: JobContext) -> None:
        await asyncio.sleep(0)
        ran.append(job.id)

    runners = [make_runner(sessions, clock, batch_size=3) for _ in range(3)]
    for runner in runners:
        runner.register("greet", record)
    ids = [await add_job(sessions, clock, n=n) for n in range(12)]

    await asyncio.gather(*(runner.run_once() for runner in runners))

    assert sorted(ran) == ids
    async with session_scope(sessions) as session:
        statuses = set((await session.scalars(select(Job.status))).all())
    assert statuses == {"done"}


async def test_run_now_runs_one_job_and_reports_success(
    sessions: SessionFactory, clock: FrozenClock
) -> None:
    async def fine(job: JobContext) -> None:
        return None

    runner = make_runner(sessions, clock)
    runner.register("greet", fine)
    job_id = await add_job(sessions, clock)
    assert await runner.run_now(job_id, wait_seconds=5) is True
    assert (await load(sessions, job_id)).status == "done"
    assert await runner.run_now(job_id, wait_seconds=5) is True  # already done: nothing runs
    assert await runner.run_now(job_id + 1000, wait_seconds=5) is False  # no such job


async def test_run_now_reports_failure_and_leaves_the_job_scheduled(
    sessions: SessionFactory, clock: FrozenClock
) -> None:
    async def boom(job: JobContext) -> None:
        raise Flaky("down")

    runner = make_runner(sessions, clock)
    runner.register("greet", boom)
    job_id = await add_job(sessions, clock)
    assert await runner.run_now(job_id, wait_seconds=5) is False
    job = await load(sessions, job_id)
    assert (job.status, job.attempts, job.last_error) == ("pending", 1, "Flaky: down")


async def test_run_now_stops_waiting_after_the_budget_and_the_job_finishes_later(
    sessions: SessionFactory, clock: FrozenClock
) -> None:
    release = asyncio.Event()

    async def slow(job: JobContext) -> None:
        await release.wait()

    runner = make_runner(sessions, clock)
    runner.register("greet", slow)
    job_id = await add_job(sessions, clock)
    assert await runner.run_now(job_id, wait_seconds=0.01) is False
    assert (await load(sessions, job_id)).status == "running"
    release.set()
    assert await runner.run_now(job_id, wait_seconds=5) is True  # waits for the same run
    assert (await load(sessions, job_id)).attempts == 1


async def test_stop_gives_a_running_job_back_without_counting_the_attempt(
    sessions: SessionFactory, clock: FrozenClock
) -> None:
    async def forever(job: JobContext) -> None:
        await asyncio.Event().wait()

    runner = make_runner(sessions, clock)
    runner.register("greet", forever)
    job_id = await add_job(sessions, clock)
    await runner.run_now(job_id, wait_seconds=0.01)
    await runner.stop(grace_seconds=0.01)
    job = await load(sessions, job_id)
    assert (job.status, job.attempts, job.locked_until) == ("pending", 0, None)


async def test_background_loop_runs_a_job_when_kicked(
    sessions: SessionFactory, clock: FrozenClock
) -> None:
    done = asyncio.Event()

    async def record(job: JobContext) -> None:
        done.set()

    runner = make_runner(sessions, clock, poll_seconds=60)
    runner.register("greet", record)
    runner.start()
    try:
        await add_job(sessions, clock)
        runner.kick()
        await asyncio.wait_for(done.wait(), timeout=10)
    finally:
        await runner.stop()


def test_registering_two_handlers_for_one_kind_is_refused() -> None:
    runner = JobRunner(None, FrozenClock())  # type: ignore[arg-type]
    runner.register("greet", lambda job: asyncio.sleep(0))
    with pytest.raises(ValueError, match="already registered"):
        runner.register("greet", lambda job: asyncio.sleep(0))


async def test_run_now_follows_a_job_another_process_is_running(
    sessions: SessionFactory, clock: FrozenClock
) -> None:
    release = asyncio.Event()

    async def slow(job: JobContext) -> None:
        await release.wait()

    other_process = make_runner(sessions, clock)
    other_process.register("greet", slow)
    here = make_runner(sessions, clock)
    here.register("greet", slow)
    job_id = await add_job(sessions, clock)
    await other_process.run_now(job_id, wait_seconds=0.01)  # claimed and running over there

    assert await here.run_now(job_id, wait_seconds=0.05) is False  # still running: gives up
    waiting = asyncio.create_task(here.run_now(job_id, wait_seconds=10))
    release.set()
    assert await waiting is True
    assert (await load(sessions, job_id)).attempts == 1


async def test_an_idle_poll_only_reads(
    sessions: SessionFactory, clock: FrozenClock, settings: Settings
) -> None:
    statements: list[str] = []
    engine = create_engine(settings)
    idle_sessions = create_session_factory(engine)

    def record(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
        statements.append(statement.lstrip().split()[0].upper())

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        runner = make_runner(idle_sessions, clock)
        runner.register("greet", lambda job: asyncio.sleep(0))
        await runner.run_once()
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
        await engine.dispose()
    assert statements and set(statements) <= {"SELECT", "PRAGMA"}
