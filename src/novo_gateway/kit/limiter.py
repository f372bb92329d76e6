"""Rate limits with the `limits` library: in process by default, in Redis when REDIS_URL is set.

Strategy: fixed windows aligned to the injected clock. A hit on (bucket, identity) increments the
counter of the current window, `floor(clock.time() / per_seconds)`, with the storage's atomic
increment (`INCRBY` + `EXPIRE` in one Lua script on Redis; in process, a dictionary update with no
`await` in between, so one uninterrupted step of the event loop). One atomic increment per hit
means that with `limit + n` concurrent hits exactly `limit` are admitted, in one process and across
every process sharing the Redis.

In process the counters are a plain dictionary (`LocalCounters`) rather than the library's
`MemoryStorage`: that one takes an asyncio lock and schedules expiry timers on every hit, which
cost more than the rest of the metered path's limit checks together (see bench/README.md).

Why fixed windows: a moving window keeps one entry per admitted hit (up to the per-IP limit per
client) and still stamps entries with each process's clock; a fixed window is one integer per key.
The window index comes from the runtime's clock (the library's own strategies read `time.time()`
and cannot be given one), so tests move a `FrozenClock` instead of sleeping; the storage's expiry
only clears old counters. Processes whose clocks differ by a few milliseconds may count a hit at a
window boundary in the neighbouring window; NTP keeps that negligible.

Leases (`hit_leased`, the metered path's limits): with Redis, a round trip per call halved the
gateway's throughput, so each process leases a block of tokens from the shared counter (one
`INCRBY block`) and spends it locally. A lease is granted only the tokens still under the limit,
so the processes together never admit more than the limit. The block is a sixteenth of what was
left at the last lease (at most `MAX_LEASE`), so near the limit every call takes its own token and
no process holds many: the cost is that tokens one process leased and did not spend (its clients
went quiet, or the window ended) are not spent elsewhere, so a busy process may be refused up to
that many calls early. Without Redis, `hit_leased` is `hit`.

Redis restarted without persistence: a window's leases are a hash of each process's granted
tokens, and every process puts its own back when it learns the counters were lost, before anyone
is granted new ones (`lease_store.py`). So the limit holds across a restart of Redis: tokens
granted before it are still counted after it.

Redis down: with RATE_LIMIT_FAIL_OPEN the hit is admitted (logged at most once a minute);
otherwise `ServiceUnavailable` (503) is raised. Never a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from dataclasses import dataclass

from limits.aio.storage import RedisStorage
from limits.errors import StorageError
from redis.asyncio import BlockingConnectionPool, ConnectionPool
from redis.exceptions import RedisError

from novo_gateway.kit.clock import Clock
from novo_gateway.kit.config import Settings
from novo_gateway.kit.errors import ServiceUnavailable
from novo_gateway.kit.lease_store import HEARTBEAT_SECONDS, LeaseStore

log = logging.getLogger("novo_gateway.ratelimit")

# Short timeouts so a stalled Redis turns into a quick 503 (or a fail-open admit), not a hang.
_REDIS_TIMEOUT_SECONDS = 2.0
# Connections to Redis per process. More requests than this at once wait (up to the timeout
# above) for a free one rather than fail: a burst of logins must not turn into 503s.
REDIS_POOL_SIZE = 100
_UNAVAILABLE_LOG_EVERY_SECONDS = 60.0


@dataclass(slots=True)  # not frozen: on the hot path twice a call, and a frozen init is slower
class LimitResult:
    """The outcome of one hit (or peek) on a limit."""

    allowed: bool
    limit: int
    remaining: int
    reset_at: int  # epoch seconds when the window resets
    reset_in: int  # seconds until then (at least 1 while the window is open)

    def headers(self) -> dict[str, str]:
        """The original's `X-RateLimit-*` headers and the IETF `RateLimit-*` ones."""
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_at),
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_in),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.reset_in)
        return headers

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """`headers()` of an admitted call, encoded for an ASGI response (the hot path's form)."""
        limit, remaining = str(self.limit).encode(), str(self.remaining).encode()
        return [
            (b"x-ratelimit-limit", limit),
            (b"x-ratelimit-remaining", remaining),
            (b"x-ratelimit-reset", str(self.reset_at).encode()),
            (b"ratelimit-limit", limit),
            (b"ratelimit-remaining", remaining),
            (b"ratelimit-reset", str(self.reset_in).encode()),
        ]


class RateLimiter:
    """Generic limits: `hit(bucket, identity, limit, per_seconds)` counts one call against a key.

    `bucket` names the kind of limit ("account", "ip", "login", ...) and `identity` whom it
    applies to; the same pair always shares one counter, whatever process asks.
    """

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self._leases: dict[tuple[str, str, int], _Lease] = {}
        self._next_lease_sweep = -math.inf
        self._settings = settings
        self._clock = clock
        self._fail_open = settings.rate_limit_fail_open
        self._last_unavailable_log = -math.inf
        self._pool: ConnectionPool | None = None
        self._storage: RedisStorage | None = None
        self._store: LeaseStore | None = None
        self._reseeding: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._local = LocalCounters()
        if settings.redis_url:
            self._pool = BlockingConnectionPool.from_url(
                settings.redis_url,
                max_connections=REDIS_POOL_SIZE,
                timeout=_REDIS_TIMEOUT_SECONDS,
                socket_timeout=_REDIS_TIMEOUT_SECONDS,
                socket_connect_timeout=_REDIS_TIMEOUT_SECONDS,
            )
            self._storage = RedisStorage(
                "async+" + settings.redis_url,
                wrap_exceptions=True,
                implementation="redispy",
                key_prefix=settings.rate_limit_key_prefix,
                connection_pool=self._pool,  # type: ignore[arg-type]
            )
            self._store = LeaseStore(self._pool, settings.rate_limit_key_prefix)

    @property
    def shared(self) -> bool:
        """True when the counters live in Redis and are shared by every process."""
        return self._pool is not None

    async def hit(
        self,
        bucket: str,
        identity: str,
        limit: int,
        per_seconds: int = 60,
        *,
        cost: int = 1,
    ) -> LimitResult:
        """Count `cost` calls against the limit; `allowed` is False once the window is full.

        Raises `ServiceUnavailable` when the storage is unreachable and the limiter fails closed.
        """
        now = self._clock.time()
        if self._storage is None:
            reset_at = (int(now // per_seconds) + 1) * per_seconds
            count = self._local.incr((bucket, identity, per_seconds), reset_at, cost, now)
            return LimitResult(
                count <= limit,
                limit,
                max(0, limit - count),
                reset_at,
                max(1, math.ceil(reset_at - now)),
            )
        key, reset_at = _window(bucket, identity, per_seconds, now)
        try:
            count = await self._storage.incr(key, _expiry(per_seconds), amount=cost)
        except StorageError as exc:
            return self._unavailable(exc, limit, reset_at, now)
        return _result(count <= limit, limit, count, reset_at, now)

    async def hit_leased(
        self, bucket: str, identity: str, limit: int, per_seconds: int = 60
    ) -> LimitResult:
        """`hit`, spending tokens this process leased from Redis (see the module docstring)."""
        now = self._clock.time()
        reset_at = (int(now // per_seconds) + 1) * per_seconds
        reset_in = max(1, math.ceil(reset_at - now))
        key = (bucket, identity, per_seconds)
        store = self._store
        if store is None:  # `hit`, inline: this is the metered path's hot spot
            count = self._local.incr(key, reset_at, 1, now)
            return LimitResult(count <= limit, limit, max(0, limit - count), reset_at, reset_in)
        lease = self._leases.get(key)
        if lease is None or lease.reset_at != reset_at:
            if now >= self._next_lease_sweep:
                self._sweep_leases(now)
            lease = self._leases[key] = _Lease(reset_at)
        while True:
            if lease.used < lease.granted:
                lease.used += 1
                return LimitResult(True, limit, lease.remaining(limit), reset_at, reset_in)
            if lease.exhausted:
                return LimitResult(False, limit, 0, reset_at, reset_in)
            async with lease.lock:  # one lease request at a time; the others spend its tokens
                if lease.used < lease.granted or lease.exhausted:
                    continue
                block = max(1, min(MAX_LEASE, (limit - lease.seen) // LEASE_SHARE))
                window = store.key(bucket, identity, per_seconds, reset_at)
                try:
                    grant = await store.lease(
                        window, lease.granted, block, limit, _expiry(per_seconds)
                    )
                except (RedisError, OSError) as exc:
                    return self._unavailable(exc, limit, reset_at, now)
                if grant.lost:
                    self._reseed_soon()
                if grant.held:
                    return self._recovering(limit, reset_at, now)
                lease.granted += grant.granted
                lease.seen = grant.total
                lease.exhausted = grant.granted == 0

    def _sweep_leases(self, now: float) -> None:
        self._next_lease_sweep = now + LocalCounters.SWEEP_SECONDS
        for key in [k for k, lease in self._leases.items() if lease.reset_at <= now]:
            del self._leases[key]

    async def peek(
        self, bucket: str, identity: str, limit: int, per_seconds: int = 60
    ) -> LimitResult:
        """The state of a limit without counting a call; `allowed` tells whether one more fits."""
        now = self._clock.time()
        key, reset_at = _window(bucket, identity, per_seconds, now)
        if self._storage is None:
            count = self._local.get((bucket, identity, per_seconds), reset_at)
            return _result(count < limit, limit, count, reset_at, now)
        try:
            count = await self._storage.get(key)
        except StorageError as exc:
            return self._unavailable(exc, limit, reset_at, now)
        return _result(count < limit, limit, count, reset_at, now)

    async def clear(self, bucket: str, identity: str, per_seconds: int = 60) -> None:
        """Forget the calls counted in the current window (e.g. failed logins after a success)."""
        if self._storage is None:
            self._local.clear((bucket, identity, per_seconds))
            return
        key, _ = _window(bucket, identity, per_seconds, self._clock.time())
        try:
            await self._storage.clear(key)
        except StorageError as exc:
            self._unavailable(exc, 0, 0, 0.0)

    async def reseed(self) -> None:
        """Put this process's tokens of the current windows back into Redis if it lost them.

        One script call per leased window still open; a no-op without Redis or leases.
        """
        store = self._store
        if store is None:
            return
        now = self._clock.time()
        for (bucket, identity, per_seconds), lease in list(self._leases.items()):
            if lease.granted and lease.reset_at > now:
                window = store.key(bucket, identity, per_seconds, lease.reset_at)
                await store.lease(window, lease.granted, 0, 0, _expiry(per_seconds))

    async def heartbeat(self) -> None:
        """While this process holds tokens of an open window: re-seed them if Redis lost them.

        One GET when nothing changed; nothing at all when the process holds no tokens.
        """
        now = self._clock.time()
        store = self._store
        if store is None or not any(
            lease.granted and lease.reset_at > now for lease in self._leases.values()
        ):
            return
        if not await store.unchanged():
            await self.reseed()

    async def run_forever(self) -> None:
        """The heartbeat every `HEARTBEAT_SECONDS` until `stop()` (a worker of the runtime)."""
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), HEARTBEAT_SECONDS)
            if self._stopping.is_set():
                return
            try:
                await self.heartbeat()
            except (RedisError, OSError) as exc:
                log.debug("rate limit heartbeat failed: %s", type(exc).__name__)

    async def stop(self) -> None:
        self._stopping.set()

    async def ping(self) -> bool:
        """True when the shared storage answers (always True for in-process counters)."""
        return self._storage is None or await self._storage.check()

    async def close(self) -> None:
        """Close the storage connection, if any."""
        if self._reseeding is not None:
            self._reseeding.cancel()
            with contextlib.suppress(asyncio.CancelledError, RedisError, OSError):
                await self._reseeding
        if self._pool is not None:
            await self._pool.aclose()

    def _reseed_soon(self) -> None:
        """Re-seed every open window now, beside the call that learnt of the loss."""
        if self._reseeding is None or self._reseeding.done():
            self._reseeding = asyncio.create_task(self._reseed_quietly())

    async def _reseed_quietly(self) -> None:
        try:
            await self.reseed()
        except (RedisError, OSError) as exc:
            log.debug("rate limit re-seed failed: %s", type(exc).__name__)

    def _recovering(self, limit: int, reset_at: int, now: float) -> LimitResult:
        """Redis lost its counters a moment ago: refuse (503) or admit (fail open) until the
        processes have put their tokens back."""
        if not self._fail_open:
            raise ServiceUnavailable(
                "Rate limiting is recovering from a restart of its storage. Retry in a second.",
                headers={"Retry-After": "1"},
            )
        return _result(True, limit, 0, reset_at, now)

    def _unavailable(
        self, exc: StorageError | RedisError | OSError, limit: int, reset_at: int, now: float
    ) -> LimitResult:
        mono = self._clock.monotonic()
        if mono - self._last_unavailable_log >= _UNAVAILABLE_LOG_EVERY_SECONDS:
            self._last_unavailable_log = mono
            cause = exc.storage_error if isinstance(exc, StorageError) else exc
            log.warning(
                "rate limit storage unavailable (%s), %s calls",
                type(cause).__name__,
                "admitting" if self._fail_open else "refusing",
            )
        if not self._fail_open:
            raise ServiceUnavailable(
                "Rate limiting is temporarily unavailable. Please retry shortly.",
                headers={"Retry-After": "1"},
            ) from exc
        return _result(True, limit, 0, reset_at, now)


MAX_LEASE = 500
LEASE_SHARE = 16


class _Lease:
    """Tokens of one window this process leased from Redis, and how many it spent."""

    __slots__ = ("exhausted", "granted", "lock", "reset_at", "seen", "used")

    def __init__(self, reset_at: int) -> None:
        self.reset_at = reset_at
        self.granted = 0
        self.used = 0
        self.seen = 0  # the shared count after this process's last lease
        self.exhausted = False
        self.lock = asyncio.Lock()

    def remaining(self, limit: int) -> int:
        """Calls still possible in the window as this process knows it (its unspent tokens too)."""
        return max(0, limit - self.seen + self.granted - self.used)


class LocalCounters:
    """This process's window counters: `{(bucket, identity, seconds): (window end, count)}`.

    Exact without a lock: `incr` never awaits, so two hits cannot interleave. A hit in a later
    window starts its count again; entries of ended windows are dropped by a sweep at most every
    `SWEEP_SECONDS` of the limiter's clock, so memory stays at one entry per (bucket, identity)
    active in the last window or so.
    """

    SWEEP_SECONDS = 10.0

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, int], tuple[int, int]] = {}
        self._next_sweep = -math.inf

    def incr(self, key: tuple[str, str, int], reset_at: int, amount: int, now: float) -> int:
        """Add `amount` to the key's count in the window ending at `reset_at`; the new count."""
        if now >= self._next_sweep:
            self._sweep(now)
        entry = self._counts.get(key)
        count = amount if entry is None or entry[0] != reset_at else entry[1] + amount
        self._counts[key] = (reset_at, count)
        return count

    def get(self, key: tuple[str, str, int], reset_at: int) -> int:
        """The count of the window ending at `reset_at` (0 when nothing was counted in it)."""
        entry = self._counts.get(key)
        return 0 if entry is None or entry[0] != reset_at else entry[1]

    def clear(self, key: tuple[str, str, int]) -> None:
        self._counts.pop(key, None)

    def __len__(self) -> int:
        return len(self._counts)

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + self.SWEEP_SECONDS
        ended = [key for key, (reset_at, _) in self._counts.items() if reset_at <= now]
        for key in ended:
            del self._counts[key]


def _window(bucket: str, identity: str, per_seconds: int, now: float) -> tuple[str, int]:
    """The storage key of the current window and the epoch second it ends."""
    index = math.floor(now / per_seconds)
    return f"rl/{bucket}/{identity}/{per_seconds}/{index}", (index + 1) * per_seconds


def _expiry(per_seconds: int) -> int:
    # Only garbage collection: the window itself is chosen by the clock. A margin keeps a
    # counter alive while a slightly slower clock elsewhere still counts into it.
    return per_seconds + 5


def _result(allowed: bool, limit: int, count: int, reset_at: int, now: float) -> LimitResult:
    return LimitResult(
        allowed=allowed,
        limit=limit,
        remaining=max(0, limit - count),
        reset_at=reset_at,
        reset_in=max(1, math.ceil(reset_at - now)),
    )
