"""The access check of the metered path: may this account make a billed call now?

The rules are in `billing/access.py`; this is the cache in front of them. `check` is a dict
lookup and a comparison: each account's standing (subscription status, `past_due_since`) is read
from the database once, then kept in memory. A background pass every KEY_REVALIDATE_MS reads the
users whose `subscription_updated_at` is newer than the newest change it has seen (minus a few
seconds of overlap for clock skew and late commits), so a status changed by a webhook in any
process is seen by every process within about a second. Entries are also re-read after
`MAX_AGE_SECONDS`, as a safety net for a writer that forgot to set `subscription_updated_at`.
The grace period of a past-due account is counted at call time, from the clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select

from novo_gateway.accounts.models import User
from novo_gateway.billing.access import Standing, refusal
from novo_gateway.kit.clock import Clock
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import SessionFactory
from novo_gateway.kit.errors import Unauthorized

log = logging.getLogger("novo_gateway.gateway.access")

CHANGE_OVERLAP = timedelta(seconds=5)
MAX_AGE_SECONDS = 300.0
MAX_CACHED = 100_000
UNKNOWN_ACCOUNT = "Invalid or inactive API key."


@dataclass(frozen=True, slots=True)
class _Entry:
    standing: Standing
    loaded_at: float  # monotonic


class AccessPolicy:
    def __init__(self, sessions: SessionFactory, settings: Settings, clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock
        self._grace = timedelta(days=settings.stripe_past_due_grace_days)
        self._revalidate_seconds = settings.key_revalidate_ms / 1000
        self._cache: dict[int, _Entry] = {}
        self._loading: dict[int, asyncio.Task[Standing | None]] = {}
        self._newest_change: datetime | None = None
        self._stopping = asyncio.Event()
        # `forget` counts here; a read that began before an account was forgotten may hold its
        # old state and is not cached (the account's last forget is kept in `_forgotten`).
        self._forgets = 0
        self._forgotten: dict[int, int] = {}

    async def run_forever(self) -> None:
        """Revalidate every KEY_REVALIDATE_MS until `stop()` (a worker of the runtime)."""
        try:
            async with self._sessions() as session:
                self._newest_change = await session.scalar(
                    select(func.max(User.subscription_updated_at))
                )
        except Exception as exc:
            log.warning("could not read the newest billing change: %s", type(exc).__name__)
            self._newest_change = self._clock.now()
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._revalidate_seconds)
            if self._stopping.is_set():
                return
            try:
                await self.revalidate()
            except Exception as exc:
                log.warning("access revalidation failed: %s", type(exc).__name__)

    async def stop(self) -> None:
        self._stopping.set()

    async def check(self, user_id: int) -> None:
        """Raise `PaymentRequired` when the account may not make metered calls."""
        entry = self._cache.get(user_id)
        if entry is None or self._clock.monotonic() - entry.loaded_at > MAX_AGE_SECONDS:
            standing = await self._load(user_id)
            if standing is None:
                raise Unauthorized(UNKNOWN_ACCOUNT)
        else:
            standing = entry.standing
        refused = refusal(standing, self._clock.now(), self._grace)
        if refused is not None:
            raise refused

    def forget(self, user_id: int) -> None:
        """Drop an account's cached standing in this process (after a local change commits).

        The next check reads the database; a read already in flight (begun before the change
        committed) is neither joined nor cached, so no stale answer outlives the change."""
        self._cache.pop(user_id, None)
        self._loading.pop(user_id, None)
        self._forgets += 1
        if user_id not in self._forgotten and len(self._forgotten) >= MAX_CACHED:
            self._forgotten.pop(next(iter(self._forgotten)))
        self._forgotten[user_id] = self._forgets

    def _stale(self, user_id: int, read_began: int) -> bool:
        """Whether the account was forgotten after a read that began at `read_began`."""
        return self._forgotten.get(user_id, 0) > read_began

    async def revalidate(self) -> None:
        """Apply the billing changes committed since the last pass (any process's)."""
        stmt = select(
            User.id, User.subscription_status, User.past_due_since, User.subscription_updated_at
        ).where(User.subscription_updated_at.is_not(None))
        if self._newest_change is not None:
            since = min(self._newest_change, self._clock.now()) - CHANGE_OVERLAP
            stmt = stmt.where(User.subscription_updated_at > since)
        began = self._forgets
        async with self._sessions() as session:
            rows = (await session.execute(stmt)).all()
        now = self._clock.monotonic()
        for row in rows:
            if row.id in self._cache and not self._stale(row.id, began):
                standing = Standing(row.subscription_status, row.past_due_since)
                self._cache[row.id] = _Entry(standing, now)
            changed: datetime = row.subscription_updated_at
            if self._newest_change is None or changed > self._newest_change:
                self._newest_change = changed

    async def _load(self, user_id: int) -> Standing | None:
        # One database read per account even when many of its calls arrive at once.
        task = self._loading.get(user_id)
        if task is None:
            task = asyncio.ensure_future(self._read(user_id))
            self._loading[user_id] = task

            def done(finished: asyncio.Task[Standing | None]) -> None:
                if self._loading.get(user_id) is finished:
                    self._loading.pop(user_id)

            task.add_done_callback(done)
        return await asyncio.shield(task)

    async def _read(self, user_id: int) -> Standing | None:
        began = self._forgets
        stmt = select(User.subscription_status, User.past_due_since).where(User.id == user_id)
        async with self._sessions() as session:
            row = (await session.execute(stmt)).one_or_none()
        if row is None:
            return None
        standing = Standing(row.subscription_status, row.past_due_since)
        if self._stale(user_id, began):
            return standing  # read before a change this process made: answer it, never keep it
        if user_id not in self._cache and len(self._cache) >= MAX_CACHED:
            self._cache.pop(next(iter(self._cache)))
        self._cache[user_id] = _Entry(standing, self._clock.monotonic())
        return standing
