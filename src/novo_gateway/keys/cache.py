"""In-process cache of verified API keys (owner: keys domain). Interface stub, to be completed."""

from __future__ import annotations

from dataclasses import dataclass

from novo_gateway.clock import Clock
from novo_gateway.db import SessionFactory


@dataclass(frozen=True, slots=True)
class KeyIdentity:
    """Who a verified API key belongs to."""

    key_id: int
    user_id: int


class KeyCache:
    def __init__(self, sessions: SessionFactory, clock: Clock, *, revalidate_ms: int) -> None:
        self._sessions = sessions
        self._clock = clock
        self._revalidate_ms = revalidate_ms

    async def start(self) -> None:
        """Start the background revalidation (revoked keys refused within a second)."""

    async def stop(self) -> None:
        """Stop the background revalidation."""

    async def authenticate(self, raw_key: str) -> KeyIdentity | None:
        """The key's identity, or None when it is malformed, unknown, revoked or expired."""
        raise NotImplementedError

    def forget(self, key_id: int) -> None:
        """Drop a key from this process's cache at once (after a local revocation)."""
