"""Rate limits with the `limits` library: in process by default, in Redis when REDIS_URL is set.

Strategy: fixed windows aligned to the injected clock. A hit on (bucket, identity) increments the
counter of the current window, `floor(clock.time() / per_seconds)`, with the storage's atomic
increment (`INCRBY` + `EXPIRE` in one Lua script on Redis; one uninterrupted step of the event loop
in `MemoryStorage`). One atomic increment per hit means that with `limit + n` concurrent hits
exactly `limit` are admitted, in one process and across every process sharing the Redis.

Why fixed windows: a moving window keeps one entry per admitted hit (up to the per-IP limit per
client) and still stamps entries with each process's clock; a fixed window is one integer per key.
The window index comes from the runtime's clock (the library's own strategies read `time.time()`
and cannot be given one), so tests move a `FrozenClock` instead of sleeping; the storage's expiry
only clears old counters. Processes whose clocks differ by a few milliseconds may count a hit at a
window boundary in the neighbouring window; NTP keeps that negligible.

Redis down: with RATE_LIMIT_FAIL_OPEN the hit is admitted (logged at most once a minute);
otherwise `ServiceUnavailable` (503) is raised. Never a 500.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.errors import StorageError
from redis.asyncio import ConnectionPool

from novo_gateway.clock import Clock
from novo_gateway.config import Settings
from novo_gateway.errors import ServiceUnavailable

log = logging.getLogger("novo_gateway.ratelimit")

# Short timeouts so a stalled Redis turns into a quick 503 (or a fail-open admit), not a hang.
_REDIS_TIMEOUT_SECONDS = 2.0
_UNAVAILABLE_LOG_EVERY_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
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


class RateLimiter:
    """Generic limits: `hit(bucket, identity, limit, per_seconds)` counts one call against a key.

    `bucket` names the kind of limit ("account", "ip", "login", ...) and `identity` whom it
    applies to; the same pair always shares one counter, whatever process asks.
    """

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self._settings = settings
        self._clock = clock
        self._fail_open = settings.rate_limit_fail_open
        self._last_unavailable_log = -math.inf
        self._pool: ConnectionPool | None = None
        self._storage: Storage
        if settings.redis_url:
            self._pool = ConnectionPool.from_url(
                settings.redis_url,
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
        else:
            self._storage = MemoryStorage(wrap_exceptions=True)

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
        key, reset_at = _window(bucket, identity, per_seconds, now)
        try:
            count = await self._storage.incr(key, _expiry(per_seconds), amount=cost)
        except StorageError as exc:
            return self._unavailable(exc, limit, reset_at, now)
        return _result(count <= limit, limit, count, reset_at, now)

    async def peek(
        self, bucket: str, identity: str, limit: int, per_seconds: int = 60
    ) -> LimitResult:
        """The state of a limit without counting a call; `allowed` tells whether one more fits."""
        now = self._clock.time()
        key, reset_at = _window(bucket, identity, per_seconds, now)
        try:
            count = await self._storage.get(key)
        except StorageError as exc:
            return self._unavailable(exc, limit, reset_at, now)
        return _result(count < limit, limit, count, reset_at, now)

    async def clear(self, bucket: str, identity: str, per_seconds: int = 60) -> None:
        """Forget the calls counted in the current window (e.g. failed logins after a success)."""
        key, _ = _window(bucket, identity, per_seconds, self._clock.time())
        try:
            await self._storage.clear(key)
        except StorageError as exc:
            self._unavailable(exc, 0, 0, 0.0)

    async def close(self) -> None:
        """Close the storage connection, if any."""
        if self._pool is not None:
            await self._pool.aclose()
        elif isinstance(self._storage, MemoryStorage):
            timer = self._storage.timer
            if timer is not None and not timer.done():
                timer.cancel()

    def _unavailable(self, exc: StorageError, limit: int, reset_at: int, now: float) -> LimitResult:
        mono = self._clock.monotonic()
        if mono - self._last_unavailable_log >= _UNAVAILABLE_LOG_EVERY_SECONDS:
            self._last_unavailable_log = mono
            log.warning(
                "rate limit storage unavailable (%s), %s calls",
                type(exc.storage_error).__name__,
                "admitting" if self._fail_open else "refusing",
            )
        if not self._fail_open:
            raise ServiceUnavailable(
                "Rate limiting is temporarily unavailable. Please retry shortly.",
                headers={"Retry-After": "1"},
            ) from exc
        return _result(True, limit, 0, reset_at, now)


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
