"""In-process cache of verified API keys, kept in step with the database by a background task.

The hot path (`authenticate`) is one SHA-256 and a dict lookup: a known key costs no database
read and no `await` of I/O (the checksum is checked only for a key not in the cache). Only a
well-formed key not seen before is read from the database; unknown keys are remembered for a few
seconds (bounded, least recently used first out) so a client retrying a wrong key cannot turn each
request into a query.

Revocations made by any process reach every process within about a second: every
`revalidate_ms` the task reads the `api_keys` rows whose `changed_at` is newer than the newest it
has seen, minus a few seconds of overlap (clock skew between processes, transactions that commit
after a later one), and drops or refreshes them. `last_used_at` is not written per request: the
time is noted in memory and written in one batched UPDATE about every 30 seconds and at stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Table, Update, case, func, literal, or_, select, update

from novo_gateway.keys import tokens
from novo_gateway.keys.models import ApiKey
from novo_gateway.kit.clock import Clock
from novo_gateway.kit.db import SessionFactory, session_scope
from novo_gateway.kit.models_base import UTCDateTime

log = logging.getLogger("novo_gateway.keys.cache")

# Rows changed this long before the newest change seen are read again on every pass.
CHANGE_OVERLAP = timedelta(seconds=5)
LAST_USED_FLUSH_SECONDS = 30.0
LAST_USED_CHUNK = 500
MAX_KNOWN = 100_000
MAX_UNKNOWN = 10_000
UNKNOWN_TTL_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class KeyIdentity:
    """Who a verified API key belongs to."""

    key_id: int
    user_id: int
    expires_at: datetime | None = None

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


class KeyCache:
    def __init__(
        self,
        sessions: SessionFactory,
        clock: Clock,
        *,
        revalidate_ms: int,
        last_used_flush_seconds: float = LAST_USED_FLUSH_SECONDS,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._revalidate_ms = revalidate_ms
        self._flush_every = max(1, round(last_used_flush_seconds * 1000 / revalidate_ms))
        self._known: dict[str, KeyIdentity] = {}  # key hash → identity
        self._hash_of: dict[int, str] = {}  # key id → key hash
        self._unknown: OrderedDict[str, float] = OrderedDict()  # key hash → monotonic deadline
        self._loading: dict[str, asyncio.Task[KeyIdentity | None]] = {}
        self._used: dict[int, datetime] = {}  # key id → last use not yet written
        self._newest_change: datetime | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the background revalidation (revoked keys refused within a second)."""
        try:
            async with self._sessions() as session:
                self._newest_change = await session.scalar(select(func.max(ApiKey.changed_at)))
        except Exception as exc:
            log.warning("could not read the newest API key change: %s", type(exc).__name__)
            self._newest_change = self._clock.now()
        self._task = asyncio.create_task(self._run(), name="api-key-revalidation")

    async def stop(self) -> None:
        """Stop the background revalidation and write the pending last-used times."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush_last_used()

    async def authenticate(self, raw_key: str) -> KeyIdentity | None:
        """The key's identity, or None when it is malformed, unknown, revoked or expired."""
        digest = tokens.hash_key(raw_key)
        identity = self._known.get(digest)
        if identity is None:
            # Only a well-formed key is ever cached, so the checksum is checked on a miss only.
            if not tokens.is_well_formed(raw_key):
                return None
            identity = await self._lookup(digest)
            if identity is None:
                return None
        now = self._clock.now()
        if identity.is_expired(now):
            return None
        self._used[identity.key_id] = now
        return identity

    def forget(self, key_id: int) -> None:
        """Drop a key from this process's cache at once (after a local revocation)."""
        digest = self._hash_of.pop(key_id, None)
        if digest is not None:
            self._known.pop(digest, None)
            # Until the revocation commits, a concurrent request must not load it back.
            self._remember_unknown(digest)

    def pending_last_use(self, key_id: int) -> datetime | None:
        """The last use of a key noted in this process and not yet written to the database."""
        return self._used.get(key_id)

    async def revalidate(self) -> None:
        """Apply the key changes committed since the last pass (any process's)."""
        stmt = select(
            ApiKey.id,
            ApiKey.key_hash,
            ApiKey.user_id,
            ApiKey.is_active,
            ApiKey.expires_at,
            ApiKey.changed_at,
        )
        if self._newest_change is not None:
            since = min(self._newest_change, self._clock.now()) - CHANGE_OVERLAP
            stmt = stmt.where(ApiKey.changed_at > since)
        async with self._sessions() as session:
            rows = (await session.execute(stmt)).all()
        for row in rows:
            self._unknown.pop(row.key_hash, None)
            if row.is_active:
                if row.key_hash in self._known:
                    self._remember(row.key_hash, KeyIdentity(row.id, row.user_id, row.expires_at))
            elif row.key_hash in self._known:
                del self._known[row.key_hash]
                self._hash_of.pop(row.id, None)
            if self._newest_change is None or row.changed_at > self._newest_change:
                self._newest_change = row.changed_at

    async def flush_last_used(self) -> None:
        """Write the noted last-used times (never moving one backwards), a few UPDATEs in all.

        One statement per `LAST_USED_CHUNK` keys, not one per key: on SQLite every statement
        of an executemany is a step of the driver's thread that waits for the GIL while the
        event loop is busy, so a thousand keys took seconds under load and held the write
        lock all that time, stalling the usage ledger (bench/README.md).
        """
        if not self._used:
            return
        pending, self._used = self._used, {}
        items = sorted(pending.items())
        try:
            async with session_scope(self._sessions) as session:
                for start in range(0, len(items), LAST_USED_CHUNK):
                    await session.execute(_last_used_update(items[start : start + LAST_USED_CHUNK]))
        except BaseException as exc:
            # Kept for the next pass (also when cancelled mid-write; the UPDATE is idempotent).
            for key_id, when in pending.items():
                newer = self._used.get(key_id)
                self._used[key_id] = when if newer is None else max(newer, when)
            if not isinstance(exc, Exception):
                raise
            log.warning("could not write API key last-used times: %s", type(exc).__name__)

    async def _run(self) -> None:
        passes = 0
        while True:
            await asyncio.sleep(self._revalidate_ms / 1000)
            passes += 1
            try:
                await self.revalidate()
            except Exception as exc:
                log.warning("API key revalidation failed: %s", type(exc).__name__)
            if passes % self._flush_every == 0:
                await self.flush_last_used()

    async def _lookup(self, digest: str) -> KeyIdentity | None:
        deadline = self._unknown.get(digest)
        if deadline is not None:
            if deadline > self._clock.monotonic():
                self._unknown.move_to_end(digest)
                return None
            del self._unknown[digest]
        # One database read per key even when many requests bring it at once.
        task = self._loading.get(digest)
        if task is None:
            task = asyncio.ensure_future(self._load(digest))
            self._loading[digest] = task
            task.add_done_callback(lambda _done: self._loading.pop(digest, None))
        return await asyncio.shield(task)

    async def _load(self, digest: str) -> KeyIdentity | None:
        stmt = select(ApiKey.id, ApiKey.user_id, ApiKey.is_active, ApiKey.expires_at).where(
            ApiKey.key_hash == digest
        )
        async with self._sessions() as session:
            row = (await session.execute(stmt)).one_or_none()
        if row is None or not row.is_active:
            self._remember_unknown(digest)
            return None
        identity = KeyIdentity(row.id, row.user_id, row.expires_at)
        self._remember(digest, identity)
        return identity

    def _remember(self, digest: str, identity: KeyIdentity) -> None:
        if digest not in self._known and len(self._known) >= MAX_KNOWN:
            oldest = next(iter(self._known))
            self._hash_of.pop(self._known.pop(oldest).key_id, None)
        self._known[digest] = identity
        self._hash_of[identity.key_id] = digest

    def _remember_unknown(self, digest: str) -> None:
        self._unknown[digest] = self._clock.monotonic() + UNKNOWN_TTL_SECONDS
        self._unknown.move_to_end(digest)
        while len(self._unknown) > MAX_UNKNOWN:
            self._unknown.popitem(last=False)


def _last_used_update(items: list[tuple[int, datetime]]) -> Update:
    """`last_used_at = CASE id WHEN ... END` for these keys, where it moves forward."""
    table: Table = ApiKey.__table__  # type: ignore[assignment]
    used_at = case(
        {key_id: literal(when, UTCDateTime()) for key_id, when in items},
        value=table.c.id,
    )
    return (
        update(table)
        .where(table.c.id.in_([key_id for key_id, _ in items]))
        .where(or_(table.c.last_used_at.is_(None), table.c.last_used_at < used_at))
        .values(last_used_at=used_at)
    )
