"""Stripe webhooks: verified, stored once by event id, then processed by a worker.

Receiving (`POST /webhooks/stripe`) does no Stripe work: the raw body's signature is checked
against every configured secret (rotation), the event is inserted by its id (a redelivery finds
it there and is answered 200 without a second insert), and the request commits and answers.
Right after the response the same process tries the event once; the background worker of every
process picks up whatever is due (a failed attempt, or an event whose first attempt was lost to a
crash) and retries with exponential backoff.

Each attempt first claims the event (one conditional UPDATE that pushes `next_attempt_at` past
a lease), then runs its handler and marks it `processed` in one transaction. A handler that fails
half-way is rolled back whole; the mark is conditional too, so two processes that both reach an
event cannot both apply it. After MAX_ATTEMPTS the event is `failed` (logged); a redelivery by
Stripe (or a resend from the dashboard) puts it back in the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from prometheus_client import Counter
from sqlalchemy import CursorResult, delete, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from novo_gateway.billing import events
from novo_gateway.billing.models import WebhookEvent, WebhookStatus
from novo_gateway.billing.stripe_client import (
    InvalidSignature,
    StripeBilling,
    StripeFailure,
    verify_webhook,
)
from novo_gateway.kit.clock import Clock
from novo_gateway.kit.db import SessionFactory, session_scope
from novo_gateway.kit.errors import BadRequest

log = logging.getLogger("novo_gateway.billing.webhooks")

MAX_ATTEMPTS = 12
BACKOFF_BASE_SECONDS = 5.0
BACKOFF_MAX_SECONDS = 1800.0
# A claimed attempt owns the event this long; after a crash the event is due again.
CLAIM_SECONDS = 120.0
# The receiving process gets the first go; other workers wait this long before taking it.
FIRST_ATTEMPT_SECONDS = 10.0
# Stripe retries a delivery for three days; ids are kept longer so redeliveries stay no-ops.
RETENTION = timedelta(days=30)
PRUNE_EVERY_SECONDS = 3600.0
BATCH = 50

INVALID_SIGNATURE = "Invalid Stripe signature."
MALFORMED_EVENT = "The webhook body is not a Stripe event."

WEBHOOK_EVENTS: Final = Counter(
    "novo_stripe_webhook_events_total",
    "Stripe events processed, by type and outcome (applied, stale, unknown_customer, ...).",
    ["type", "outcome"],
)
WEBHOOK_FAILURES: Final = Counter(
    "novo_stripe_webhook_failures_total",
    "Failed attempts at processing a Stripe event, by type (retried with backoff).",
    ["type"],
)


@dataclass(frozen=True, slots=True)
class Received:
    """What became of a delivery: `stored` is False for a redelivery or an ignored type."""

    event_id: str
    event_type: str
    stored: bool
    handled: bool


async def receive(
    session: AsyncSession,
    payload: bytes,
    signature: str | None,
    *,
    secrets: list[str],
    now: datetime,
) -> Received:
    """Verify a delivery and store its event once (flushes; the caller's scope commits)."""
    try:
        event = verify_webhook(payload, signature, secrets, now.timestamp())
    except (InvalidSignature, UnicodeDecodeError) as exc:
        if not secrets:
            log.error("a Stripe webhook arrived but STRIPE_WEBHOOK_SECRET is not set")
        else:
            log.info("Stripe webhook refused: %s", exc)
        raise BadRequest(INVALID_SIGNATURE) from None
    event_id, event_type = _identity(event)
    if event_type not in events.HANDLERS:
        return Received(event_id, event_type, stored=False, handled=False)
    created = events.event_time(event)
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    result = await session.execute(
        insert(WebhookEvent)
        .values(
            id=event_id,
            type=event_type,
            payload=event,
            object_created=int(created.timestamp()) if created else None,
            status=WebhookStatus.PENDING,
            attempts=0,
            next_attempt_at=now + timedelta(seconds=FIRST_ATTEMPT_SECONDS),
            received_at=now,
        )
        .on_conflict_do_nothing(index_elements=["id"])
    )
    if _rowcount(result) == 1:
        return Received(event_id, event_type, stored=True, handled=True)
    await _requeue(session, event_id, now)
    return Received(event_id, event_type, stored=False, handled=True)


def _identity(event: object) -> tuple[str, str]:
    if not isinstance(event, dict):  # signed, yet a list, a string or null: not an event
        raise BadRequest(MALFORMED_EVENT)
    event_id, event_type = event.get("id"), event.get("type")
    if not (isinstance(event_id, str) and 0 < len(event_id) <= 255):
        raise BadRequest(MALFORMED_EVENT)
    if not (isinstance(event_type, str) and 0 < len(event_type) <= 100):
        raise BadRequest(MALFORMED_EVENT)
    return event_id, event_type


async def _requeue(session: AsyncSession, event_id: str, now: datetime) -> None:
    """A redelivery of an event that failed before makes it due now (a failed one, again)."""
    await session.execute(
        update(WebhookEvent)
        .where(WebhookEvent.id == event_id, WebhookEvent.status == WebhookStatus.FAILED)
        .values(status=WebhookStatus.PENDING, attempts=0, next_attempt_at=now)
    )
    await session.execute(
        update(WebhookEvent)
        .where(
            WebhookEvent.id == event_id,
            WebhookEvent.status == WebhookStatus.PENDING,
            WebhookEvent.attempts > 0,
            WebhookEvent.next_attempt_at > now,
            # waiting after a failure, not claimed by an attempt in progress
            WebhookEvent.last_error.is_not(None),
        )
        .values(next_attempt_at=now)
    )


def _rowcount(result: Any) -> int:
    return int(result.rowcount) if isinstance(result, CursorResult) else 0


def backoff_seconds(attempts: int, retry_after: float | None = None) -> float:
    """Delay before the next attempt: exponential with jitter, at least Stripe's Retry-After."""
    delay = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2.0 ** max(0, attempts - 1))
    delay *= random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not a secret
    return max(delay, retry_after or 0.0)


class _AlreadyProcessed(Exception):
    """Another process applied the event first; this attempt's writes are rolled back."""


class WebhookWorker:
    """Processes stored Stripe events: right after receipt, and in the background when due."""

    def __init__(
        self,
        sessions: SessionFactory,
        clock: Clock,
        stripe: StripeBilling | None,
        *,
        poll_seconds: float = 1.0,
        on_access_change: Callable[[int], None] | None = None,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._stripe = stripe
        # Told of each account whose subscription an event changed, once that has committed.
        self._on_access_change = on_access_change
        self._poll_seconds = poll_seconds
        # One attempt at a time in this process: attempts after receipt and the background
        # pass never race each other here (other processes are kept out by the claim).
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._stopping = False
        self._next_prune = 0.0

    async def run_forever(self) -> None:
        """Process due events every `poll_seconds` until `stop()`."""
        while not self._stopping:
            try:
                await self.run_due()
                if self._clock.monotonic() >= self._next_prune:
                    self._next_prune = self._clock.monotonic() + PRUNE_EVERY_SECONDS
                    await self.prune()
            except Exception as exc:
                log.warning("webhook worker pass failed: %s", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_seconds)
            self._wake.clear()

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def run_due(self) -> int:
        """Attempt every event that is due now; the number processed."""
        now = self._clock.now()
        async with self._sessions() as session:
            due = (
                await session.scalars(
                    select(WebhookEvent.id)
                    .where(
                        WebhookEvent.status == WebhookStatus.PENDING,
                        WebhookEvent.next_attempt_at <= now,
                    )
                    .order_by(WebhookEvent.next_attempt_at)
                    .limit(BATCH)
                )
            ).all()
        processed = 0
        for event_id in due:
            if self._stopping:
                break
            processed += await self.process(event_id, only_if_due=True)
        return processed

    async def process(self, event_id: str, *, only_if_due: bool = False) -> bool:
        """One attempt at an event (any exception is kept on the event); True when it is done."""
        async with self._lock:
            now = self._clock.now()
            try:
                attempts = await self._claim(event_id, now, only_if_due=only_if_due)
            except Exception as exc:
                log.warning("could not claim Stripe event %s: %s", event_id, type(exc).__name__)
                return False
            if attempts is None:
                return False
            try:
                event_type, outcome = await self._apply(event_id, now)
            except _AlreadyProcessed:
                return False
            except Exception as exc:
                await self._failed(event_id, attempts, exc)
                return False
            WEBHOOK_EVENTS.labels(event_type, outcome).inc()
            return True

    async def _claim(self, event_id: str, now: datetime, *, only_if_due: bool) -> int | None:
        """Take the event for CLAIM_SECONDS; its attempt number, or None when not ours to try."""
        due = WebhookEvent.next_attempt_at <= now
        conditions = [
            WebhookEvent.id == event_id,
            WebhookEvent.status == WebhookStatus.PENDING,
            # Just received: the first attempt is ours, unless another process has claimed it.
            due if only_if_due else or_(WebhookEvent.attempts == 0, due),
        ]
        async with session_scope(self._sessions) as session:
            claimed = await session.execute(
                update(WebhookEvent)
                .where(*conditions)
                .values(
                    attempts=WebhookEvent.attempts + 1,
                    next_attempt_at=now + timedelta(seconds=CLAIM_SECONDS),
                )
            )
            if _rowcount(claimed) != 1:
                return None
            attempts: int | None = await session.scalar(
                select(WebhookEvent.attempts).where(WebhookEvent.id == event_id)
            )
        return attempts

    async def _apply(self, event_id: str, now: datetime) -> tuple[str, str]:
        async with session_scope(self._sessions) as session:
            row = await session.get(WebhookEvent, event_id)
            if row is None or row.status != WebhookStatus.PENDING:
                raise _AlreadyProcessed
            context = events.EventContext(now=now, stripe=self._stripe)
            outcome = await events.handle(session, dict(row.payload), context)
            marked = await session.execute(
                update(WebhookEvent)
                .where(WebhookEvent.id == event_id, WebhookEvent.status == WebhookStatus.PENDING)
                .values(status=WebhookStatus.PROCESSED, processed_at=now, last_error=None)
            )
            if _rowcount(marked) != 1:
                raise _AlreadyProcessed
            event_type = row.type
        if self._on_access_change is not None:  # committed: this process sees it at once
            for user_id in context.changed:
                self._on_access_change(user_id)
        return event_type, outcome

    async def _failed(self, event_id: str, attempts: int, exc: Exception) -> None:
        retry_after = exc.retry_after if isinstance(exc, StripeFailure) else None
        error = f"{type(exc).__name__}: {exc}"[:2000]
        now = self._clock.now()
        give_up = attempts >= MAX_ATTEMPTS
        async with session_scope(self._sessions) as session:
            event_type = await session.scalar(
                select(WebhookEvent.type).where(WebhookEvent.id == event_id)
            )
            await session.execute(
                update(WebhookEvent)
                .where(WebhookEvent.id == event_id, WebhookEvent.status == WebhookStatus.PENDING)
                .values(
                    status=WebhookStatus.FAILED if give_up else WebhookStatus.PENDING,
                    last_error=error,
                    next_attempt_at=now + timedelta(seconds=backoff_seconds(attempts, retry_after)),
                )
            )
        WEBHOOK_FAILURES.labels(str(event_type)).inc()
        if give_up:
            log.error("Stripe event %s failed %d times, given up: %s", event_id, attempts, error)
        else:
            log.warning("Stripe event %s failed (attempt %d): %s", event_id, attempts, error)

    async def prune(self) -> int:
        """Delete processed events older than RETENTION; the number deleted."""
        cutoff = self._clock.now() - RETENTION
        async with session_scope(self._sessions) as session:
            result = await session.execute(
                delete(WebhookEvent).where(
                    WebhookEvent.status == WebhookStatus.PROCESSED,
                    WebhookEvent.processed_at < cutoff,
                )
            )
        return _rowcount(result)
