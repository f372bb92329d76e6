"""The long-lived parts of one gateway process, created at start-up and closed at shutdown."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from novo_gateway.background_jobs import build_job_runner
from novo_gateway.billing.reporter import UsageReporter
from novo_gateway.billing.stripe_client import StripeBilling
from novo_gateway.billing.webhooks import WebhookWorker
from novo_gateway.gateway.access import AccessPolicy
from novo_gateway.gateway.idempotency import Idempotency
from novo_gateway.gateway.proxy import UpstreamProxy
from novo_gateway.jobs.worker import JobRunner
from novo_gateway.keys.cache import KeyCache
from novo_gateway.kit.clock import Clock
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import SessionFactory, create_engine, create_session_factory
from novo_gateway.kit.limiter import RateLimiter
from novo_gateway.metering.reads import AccountReads
from novo_gateway.metering.writer import UsageWriter

log = logging.getLogger("novo_gateway.runtime")

# How long shutdown waits for a background worker to finish its current step before cancelling it.
WORKER_STOP_SECONDS = 10.0


class Worker(Protocol):
    """A background loop of the gateway process (usage reporter, job runner, webhook processor)."""

    async def run_forever(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class Runtime:
    settings: Settings
    clock: Clock
    engine: AsyncEngine
    sessions: SessionFactory
    keys: KeyCache
    limiter: RateLimiter
    usage: UsageWriter
    access: AccessPolicy
    proxy: UpstreamProxy
    idempotency: Idempotency
    stripe: StripeBilling | None = None
    # The usage reporter (also used by an immediate cancel; a worker when reporting is on).
    reporter: UsageReporter | None = None
    jobs: JobRunner | None = None
    webhooks: WebhookWorker | None = None
    workers: list[Worker] = field(default_factory=list)
    reads: AccountReads = field(default_factory=AccountReads)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list, repr=False)
    _started: bool = field(default=False, repr=False)

    @classmethod
    def build(cls, settings: Settings, clock: Clock | None = None) -> Runtime:
        clock = clock or Clock()
        engine = create_engine(settings)
        sessions = create_session_factory(engine)
        runtime = cls(
            settings=settings,
            clock=clock,
            engine=engine,
            sessions=sessions,
            keys=KeyCache(sessions, clock, revalidate_ms=settings.key_revalidate_ms),
            limiter=RateLimiter(settings, clock),
            usage=UsageWriter(sessions, clock),
            access=AccessPolicy(sessions, settings, clock),
            proxy=UpstreamProxy(settings),
            idempotency=Idempotency(
                sessions,
                clock,
                max_answer_bytes=settings.idempotency_max_answer_bytes,
                wait_seconds=settings.idempotency_wait_seconds,
                lock_seconds=settings.idempotency_lock_seconds,
            ),
            reads=AccountReads(
                per_account=settings.usage_reads_per_account,
                timeout_seconds=settings.usage_read_timeout_seconds,
            ),
        )
        if settings.stripe_secret_key:
            runtime.stripe = StripeBilling(settings, clock)
            runtime.reporter = UsageReporter(sessions, runtime.stripe, settings, clock)
            if settings.usage_reporting_interval > 0:
                runtime.workers.append(runtime.reporter)
        runtime.webhooks = WebhookWorker(
            sessions, clock, runtime.stripe, on_access_change=runtime.access.forget
        )
        runtime.workers += [runtime.access, runtime.webhooks]
        if runtime.limiter.shared:  # re-seeds its leases when Redis loses them
            runtime.workers.append(runtime.limiter)
        # The jobs outbox (Stripe provisioning, ...); register kicks it and waits briefly.
        runtime.jobs = build_job_runner(settings, sessions, clock, runtime.stripe)
        runtime.workers.append(runtime.jobs)
        return runtime

    async def start(self, *, workers: bool = True) -> None:
        await self.keys.start()
        await self.usage.start()
        if workers:
            self._tasks = [asyncio.create_task(w.run_forever()) for w in self.workers]
        self._started = True

    async def stop(self) -> None:
        """Stop in reverse order: usage still queued is written before the database closes."""
        if self._started:
            await self._stop_workers()
            if self.reporter is not None and self.reporter not in self.workers:
                await self.reporter.stop()  # gives its instance name back
            await self.usage.stop()
            await self.keys.stop()
        await self.proxy.close()
        await self.limiter.close()
        if self.stripe is not None:
            await self.stripe.close()
        await self.engine.dispose()
        self._started = False

    async def _stop_workers(self) -> None:
        """Ask each worker to stop after its current step; cancel those that take too long."""
        for worker in self.workers:
            await worker.stop()
        if not self._tasks:
            return
        _done, pending = await asyncio.wait(self._tasks, timeout=WORKER_STOP_SECONDS)
        for task in pending:
            log.warning("background worker did not stop in time; cancelling it")
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
