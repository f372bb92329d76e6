"""The job runner's wiring: which domain handles each kind of job in this process, and the job
runner outside the gateway (`run-jobs`).

The `jobs` domain only runs what is registered with its `JobRunner`; the domains above it (billing's
provisioning) register their handlers here, so the runner never imports them.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable

from novo_gateway.billing.provisioning import Provisioner
from novo_gateway.billing.stripe_client import StripeBilling
from novo_gateway.jobs.worker import JobRunner, RunSummary
from novo_gateway.kit.clock import Clock
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import SessionFactory, create_engine, create_session_factory


def build_job_runner(
    settings: Settings, sessions: SessionFactory, clock: Clock, stripe: StripeBilling | None
) -> JobRunner:
    """A runner with every handler this process can run (Stripe jobs only with a Stripe key)."""
    runner = JobRunner(sessions, clock)
    if stripe is not None:
        Provisioner(sessions, stripe, settings, clock).register_with(runner)
    return runner


async def run_jobs(
    settings: Settings, *, once: bool, progress: Callable[[RunSummary], None] | None = None
) -> RunSummary:
    """Run due jobs: those due now (`once`, telling `progress` after each batch), or until
    SIGINT/SIGTERM."""
    clock = Clock()
    engine = create_engine(settings)
    stripe = StripeBilling(settings, clock) if settings.stripe_secret_key else None
    runner = build_job_runner(settings, create_session_factory(engine), clock, stripe)
    try:
        if once:
            return await runner.run_once(progress)
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        task = asyncio.create_task(runner.run_forever())
        await stopping.wait()
        await runner.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return RunSummary()
    finally:
        if stripe is not None:
            await stripe.close()
        await engine.dispose()
