"""Who may make metered calls. Every account may, until the billing domain decides otherwise."""

from __future__ import annotations

from novo_gateway.clock import Clock
from novo_gateway.config import Settings
from novo_gateway.db import SessionFactory


class AccessPolicy:
    def __init__(self, sessions: SessionFactory, settings: Settings, clock: Clock) -> None:
        self._sessions = sessions
        self._settings = settings
        self._clock = clock

    async def check(self, user_id: int) -> None:
        """Raise `PaymentRequired` when the account may not make metered calls."""
