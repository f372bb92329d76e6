"""Rate limits with the `limits` library (owner: gateway domain). Interface stub."""

from __future__ import annotations

from dataclasses import dataclass

from novo_gateway.clock import Clock
from novo_gateway.config import Settings


@dataclass(frozen=True, slots=True)
class LimitResult:
    allowed: bool
    limit: int
    remaining: int
    reset_at: int  # epoch seconds


class RateLimiter:
    def __init__(self, settings: Settings, clock: Clock) -> None:
        self._settings = settings
        self._clock = clock

    async def hit(self, bucket: str, identity: str, limit_per_minute: int) -> LimitResult:
        raise NotImplementedError

    async def close(self) -> None:
        """Close the storage connection, if any."""
