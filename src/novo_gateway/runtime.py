"""The long-lived parts of one gateway process, created at start-up and closed at shutdown."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine

from novo_gateway.clock import Clock
from novo_gateway.config import Settings
from novo_gateway.db import SessionFactory, create_engine, create_session_factory
from novo_gateway.gateway.access import AccessPolicy
from novo_gateway.gateway.proxy import UpstreamProxy
from novo_gateway.gateway.ratelimit import RateLimiter
from novo_gateway.keys.cache import KeyCache
from novo_gateway.metering.writer import UsageWriter


@dataclass
class Runtime:
    settings: Settings
    clock: Clock
    engine: AsyncEngine
    sessions: SessionFactory
    keys: KeyCache
    limiter: RateLimiter
    usage: UsageWriter
    access: AccessPolicy
    proxy: UpstreamProxy
    _started: bool = field(default=False, repr=False)

    @classmethod
    def build(cls, settings: Settings, clock: Clock | None = None) -> Runtime:
        clock = clock or Clock()
        engine = create_engine(settings)
        sessions = create_session_factory(engine)
        return cls(
            settings=settings,
            clock=clock,
            engine=engine,
            sessions=sessions,
            keys=KeyCache(sessions, clock, revalidate_ms=settings.key_revalidate_ms),
            limiter=RateLimiter(settings, clock),
            usage=UsageWriter(sessions, clock),
            access=AccessPolicy(sessions, settings, clock),
            proxy=UpstreamProxy(settings),
        )

    async def start(self) -> None:
        await self.keys.start()
        await self.usage.start()
        self._started = True

    async def stop(self) -> None:
        """Stop in reverse order: usage still queued is written before the database closes."""
        if self._started:
            await self.usage.stop()
            await self.keys.stop()
        await self.proxy.close()
        await self.limiter.close()
        await self.engine.dispose()
        self._started = False
