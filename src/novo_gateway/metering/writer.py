"""Group-commit writer of usage events (owner: metering domain). Interface stub."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from novo_gateway.clock import Clock
from novo_gateway.db import SessionFactory


@dataclass(frozen=True, slots=True)
class NewUsageEvent:
    user_id: int
    api_key_id: int
    endpoint: str
    method: str
    status: int
    latency_ms: int
    units: int
    billable: bool
    created_at: datetime
    request_id: str | None = None
    idempotency_key: str | None = None


class UsageWriter:
    def __init__(self, sessions: SessionFactory, clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    async def start(self) -> None: ...

    async def stop(self) -> None:
        """Write everything still queued, then stop."""

    async def record(self, event: NewUsageEvent) -> None:
        """Return once the event is committed (durable)."""
        raise NotImplementedError
