"""The ledger's fixtures: sessions on the test's database and a running usage writer."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from novo_gateway.kit.clock import FrozenClock
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import SessionFactory, create_engine, create_session_factory
from novo_gateway.metering.writer import UsageWriter


@pytest.fixture
async def sessions(settings: Settings) -> AsyncIterator[SessionFactory]:
    engine = create_engine(settings)
    yield create_session_factory(engine)
    await engine.dispose()


@pytest.fixture
async def writer(sessions: SessionFactory, clock: FrozenClock) -> AsyncIterator[UsageWriter]:
    usage = UsageWriter(sessions, clock)
    await usage.start()
    yield usage
    await usage.stop()
