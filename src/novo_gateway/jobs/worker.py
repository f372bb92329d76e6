"""The job runner: claims due rows of the `jobs` outbox, runs the handler for their kind, retries.

A job is never lost and never run by two workers at once:

- **Claim.** One UPDATE marks a batch of due jobs `running` with a lease (`locked_until`) and
  counts the attempt. On PostgreSQL the candidates are picked `FOR UPDATE SKIP LOCKED`, so
  workers in several processes take different jobs without waiting on each other; SQLite runs
  the single statement under its one write lock. The attempt count is the claim's fence: a
  worker whose lease ran out (and whose job was claimed again) cannot overwrite the new claim.
- **Run.** The handler gets the job's payload and opens its own session scopes, so no
  transaction stays open while it waits on Stripe. It must be idempotent: a crash after its
  work and before the job is marked done runs it again once the lease expires.
- **Retry.** A failure reschedules the job after an exponential backoff with jitter (honouring
  a `retry_after` hint on the exception) and keeps the error in `last_error`. Jobs are retried
  until they succeed; the backoff is capped so a fixed outage or configuration is picked up.

Jobs of a kind with no handler in this process stay pending for a process that has one. Done
jobs are deleted after JOB_RETENTION (7 days), by each runner once an hour.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.sql.elements import ColumnElement

from novo_gateway.jobs.models import Job, JobStatus
from novo_gateway.kit.clock import Clock
from novo_gateway.kit.db import SessionFactory, session_scope

log = logging.getLogger("novo_gateway.jobs")

MAX_ERROR_CHARS = 2000
# Done jobs are kept this long (what ran, and when, for a look after an incident), then deleted.
JOB_RETENTION = timedelta(days=7)
PRUNE_EVERY_SECONDS = 3600.0
ELSEWHERE_POLL_SECONDS = 0.05


@dataclass(frozen=True, slots=True)
class JobContext:
    """A claimed job as its handler sees it; `attempt` counts from 1."""

    id: int
    kind: str
    payload: Mapping[str, Any]
    attempt: int


JobHandler = Callable[[JobContext], Awaitable[None]]


@dataclass
class RunSummary:
    """What one `run_once` did."""

    succeeded: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


class JobRunner:
    """Runs due jobs in the background (`start`/`stop`) or on demand (`run_once`, `run_now`)."""

    def __init__(
        self,
        sessions: SessionFactory,
        clock: Clock,
        *,
        poll_seconds: float = 1.0,
        lease_seconds: float = 300.0,
        base_backoff_seconds: float = 2.0,
        max_backoff_seconds: float = 3600.0,
        batch_size: int = 10,
        rng: random.Random | None = None,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._handlers: dict[str, JobHandler] = {}
        self.poll_seconds = poll_seconds
        self.lease_seconds = lease_seconds
        self.base_backoff_seconds = base_backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.batch_size = batch_size
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not a secret
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._running: dict[int, asyncio.Task[bool]] = {}
        self._stopping = False
        self._next_prune = 0.0
        self.name = f"jobs-{uuid.uuid4().hex[:8]}"

    # --- Handlers -------------------------------------------------------------------------------

    def register(self, kind: str, handler: JobHandler) -> None:
        """Run `handler` for jobs of `kind` (one handler per kind)."""
        if kind in self._handlers:
            raise ValueError(f"a handler for job kind {kind!r} is already registered")
        self._handlers[kind] = handler

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(self._handlers)

    # --- Claiming -------------------------------------------------------------------------------

    def _due(self) -> ColumnElement[bool]:
        now = self._clock.now()
        return and_(
            Job.kind.in_(sorted(self._handlers)),
            or_(
                and_(Job.status == JobStatus.PENDING, Job.run_after <= now),
                and_(Job.status == JobStatus.RUNNING, Job.locked_until <= now),
            ),
        )

    async def _any_due(self) -> bool:
        """A read-only look first, so an idle poll takes no write lock (SQLite has one)."""
        async with session_scope(self._sessions) as session:
            found = await session.scalar(select(Job.id).where(self._due()).limit(1))
        return found is not None

    async def _claim(self, *, job_id: int | None = None, limit: int = 1) -> list[JobContext]:
        """Mark due jobs (or the one job `job_id` if due) running under a lease; return them."""
        if not self._handlers:
            return []
        if job_id is None and not await self._any_due():
            return []
        now = self._clock.now()
        async with session_scope(self._sessions) as session:
            due = self._due()
            if job_id is not None:
                target: ColumnElement[bool] = Job.id == job_id
            else:
                candidates = select(Job.id).where(due).order_by(Job.run_after, Job.id).limit(limit)
                if session.get_bind().dialect.name == "postgresql":
                    candidates = candidates.with_for_update(skip_locked=True)
                target = Job.id.in_(candidates.scalar_subquery())
            # `due` is checked again in the outer statement: on PostgreSQL it is re-evaluated on
            # the locked row, on SQLite the statement runs under the write lock.
            stmt = (
                update(Job)
                .where(target, due)
                .values(
                    status=JobStatus.RUNNING,
                    attempts=Job.attempts + 1,
                    locked_until=now + timedelta(seconds=self.lease_seconds),
                )
                .returning(Job.id, Job.kind, Job.payload, Job.attempts)
                .execution_options(synchronize_session=False)
            )
            rows = (await session.execute(stmt)).all()
        return [
            JobContext(id=row[0], kind=row[1], payload=dict(row[2] or {}), attempt=row[3])
            for row in sorted(rows, key=lambda r: r[0])
        ]

    # --- Running --------------------------------------------------------------------------------

    async def _execute(self, job: JobContext) -> bool:
        """Run one claimed job and record the outcome; True when it succeeded."""
        handler = self._handlers[job.kind]
        try:
            # Stay inside the lease, so no other worker claims the job while it still runs.
            async with asyncio.timeout(self.lease_seconds * 0.9):
                await handler(job)
        except asyncio.CancelledError:
            # Shutting down mid-job: give the job back now rather than at the lease's end.
            await asyncio.shield(self._release(job))
            raise
        except Exception as exc:
            await self._failed(job, exc)
            return False
        await self._finish(job)
        return True

    def _fence(self, job: JobContext) -> ColumnElement[bool]:
        return and_(Job.id == job.id, Job.status == JobStatus.RUNNING, Job.attempts == job.attempt)

    async def _finish(self, job: JobContext) -> None:
        async with session_scope(self._sessions) as session:
            await session.execute(
                update(Job)
                .where(self._fence(job))
                .values(status=JobStatus.DONE, locked_until=None, finished_at=self._clock.now())
                .execution_options(synchronize_session=False)
            )

    async def _release(self, job: JobContext) -> None:
        with contextlib.suppress(Exception):
            async with session_scope(self._sessions) as session:
                await session.execute(
                    update(Job)
                    .where(self._fence(job))
                    .values(status=JobStatus.PENDING, locked_until=None, attempts=Job.attempts - 1)
                    .execution_options(synchronize_session=False)
                )

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds before attempt `attempt + 1`: exponential, capped, with 'equal jitter'."""
        exponent = min(max(attempt - 1, 0), 60)
        ceiling = min(self.max_backoff_seconds, self.base_backoff_seconds * 2.0**exponent)
        delay: float = ceiling / 2 + self._rng.uniform(0, ceiling / 2)
        if retry_after is not None and retry_after > delay:
            delay = min(float(retry_after), self.max_backoff_seconds)
        return delay

    async def _failed(self, job: JobContext, exc: Exception) -> None:
        # Any exception may carry a `retry_after` hint (e.g. Stripe's Retry-After header).
        hint = getattr(exc, "retry_after", None)
        retry_after = float(hint) if isinstance(hint, int | float) else None
        delay = self.backoff(job.attempt, retry_after)
        error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
        log.warning(
            "job %s (%s) attempt %d failed, retrying in %.1f s: %s",
            job.id,
            job.kind,
            job.attempt,
            delay,
            error,
            exc_info=not isinstance(exc, ConnectionError | TimeoutError),
        )
        async with session_scope(self._sessions) as session:
            await session.execute(
                update(Job)
                .where(self._fence(job))
                .values(
                    status=JobStatus.PENDING,
                    locked_until=None,
                    last_error=error,
                    run_after=self._clock.now() + timedelta(seconds=delay),
                )
                .execution_options(synchronize_session=False)
            )

    def _track(self, job: JobContext) -> asyncio.Task[bool]:
        task = asyncio.create_task(self._execute(job), name=f"job-{job.id}")
        self._running[job.id] = task
        job_id = job.id

        def forget(_task: asyncio.Task[bool]) -> None:
            self._running.pop(job_id, None)

        task.add_done_callback(forget)
        return task

    async def run_once(self, progress: Callable[[RunSummary], None] | None = None) -> RunSummary:
        """Run every job due now, batch after batch, until none is left; `progress` sees the
        running totals after each batch."""
        summary = RunSummary()
        while not self._stopping:
            claimed = await self._claim(limit=self.batch_size)
            if not claimed:
                break
            results = await asyncio.gather(*(self._track(job) for job in claimed))
            for ok in results:
                if ok:
                    summary.succeeded += 1
                else:
                    summary.failed += 1
            if progress is not None:
                progress(summary)
        return summary

    async def run_now(self, job_id: int, *, wait_seconds: float) -> bool:
        """Run job `job_id` now if it is due (or wait for it if it runs here); True once done.

        Waits at most `wait_seconds`; the job keeps running in the background after that.
        False also when it failed (it is then rescheduled) or is not due.
        """
        task = self._running.get(job_id)
        if task is None:
            claimed = await self._claim(job_id=job_id)
            if not claimed:
                return await self._wait_elsewhere(job_id, wait_seconds)
            task = self._track(claimed[0])
        done, _ = await asyncio.wait({task}, timeout=wait_seconds)
        return task in done and not task.cancelled() and task.exception() is None and task.result()

    async def _wait_elsewhere(self, job_id: int, wait_seconds: float) -> bool:
        """Follow a job another process runs (or ran) until it is done, no longer running, or
        `wait_seconds` have passed."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_seconds):
                while True:
                    async with session_scope(self._sessions) as session:
                        status = await session.scalar(select(Job.status).where(Job.id == job_id))
                    if status != JobStatus.RUNNING:
                        return status == JobStatus.DONE
                    await asyncio.sleep(ELSEWHERE_POLL_SECONDS)
        return False

    async def prune(self) -> int:
        """Delete jobs done more than JOB_RETENTION ago (pending and running ones stay, however
        old); the number deleted. Jobs done before `finished_at` existed count from their
        creation."""
        cutoff = self._clock.now() - JOB_RETENTION
        finished = func.coalesce(Job.finished_at, Job.created_at)
        async with session_scope(self._sessions) as session:
            result = await session.execute(
                delete(Job)
                .where(Job.status == JobStatus.DONE, finished < cutoff)
                .execution_options(synchronize_session=False)
            )
        deleted = int(result.rowcount)  # type: ignore[attr-defined]
        if deleted:
            log.info("pruned %d jobs done before %s", deleted, cutoff.isoformat())
        return deleted

    # --- Background loop ------------------------------------------------------------------------

    def kick(self) -> None:
        """Wake the background loop now (e.g. after enqueueing a job that is due)."""
        self._wake.set()

    def start(self) -> None:
        """Run `run_forever` in a task of its own (the gateway's runtime starts workers itself)."""
        if self._loop_task is None and self._handlers:
            self._loop_task = asyncio.create_task(self.run_forever(), name=self.name)

    async def run_forever(self) -> None:
        """Poll for due jobs until `stop`; returns at once when no handler is registered."""
        while self._handlers and not self._stopping:
            self._wake.clear()  # before the pass: a kick during it triggers another pass
            try:
                await self.run_once()
                if self._clock.monotonic() >= self._next_prune:
                    self._next_prune = self._clock.monotonic() + PRUNE_EVERY_SECONDS
                    await self.prune()
            except Exception:
                log.exception("job runner pass failed; trying again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)

    async def stop(self, grace_seconds: float = 5.0) -> None:
        """Stop polling; jobs still running get `grace_seconds`, then are given back."""
        self._stopping = True
        self._wake.set()
        running = list(self._running.values())
        if running:
            _, late = await asyncio.wait(running, timeout=grace_seconds)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self._loop_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None
