"""The access cache forgets an account when a change of its subscription commits in this process,
and a read that began before the change is never kept."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import update

from novo_gateway.accounts.models import User
from novo_gateway.gateway.access import AccessPolicy
from novo_gateway.kit.clock import FrozenClock
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import SessionFactory, create_engine, create_session_factory, session_scope
from novo_gateway.kit.errors import PaymentRequired
from tests.factories import create_user


@pytest.fixture
async def sessions(settings: Settings) -> AsyncIterator[SessionFactory]:
    engine = create_engine(settings)
    yield create_session_factory(engine)
    await engine.dispose()


class HeldReads:
    """The real sessions, whose reads can be held after the database answered and before the
    caller sees the answer: how a read in flight while another request commits a change looks.
    (A seam around real sessions on the real database, not a stand-in for them.)"""

    def __init__(self, sessions: SessionFactory, *, holding: bool = True) -> None:
        self._sessions = sessions
        self.holding = holding
        self.answered = asyncio.Event()
        self.release = asyncio.Event()

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[Any]:
        async with self._sessions() as session:
            yield self._Held(session, self)

    class _Held:
        def __init__(self, session: Any, gate: HeldReads) -> None:
            self._session, self._gate = session, gate

        async def execute(self, *args: Any, **kwargs: Any) -> Any:
            result = await self._session.execute(*args, **kwargs)
            if self._gate.holding:
                self._gate.holding = False  # one read held; the next ones pass
                self._gate.answered.set()
                await self._gate.release.wait()
            return result


async def set_status(sessions: SessionFactory, user_id: int, status: str) -> None:
    async with session_scope(sessions) as session:
        await session.execute(
            update(User).where(User.id == user_id).values(subscription_status=status)
        )


async def test_a_read_begun_before_a_change_is_not_kept_after_the_change_is_forgotten(
    sessions: SessionFactory, settings: Settings, clock: FrozenClock
) -> None:
    async with session_scope(sessions) as session:
        user_id = (await create_user(session, subscription_status="active")).id
    held = HeldReads(sessions)
    policy = AccessPolicy(held, settings, clock)  # type: ignore[arg-type]

    first = asyncio.ensure_future(policy.check(user_id))
    await held.answered.wait()  # the database said "active"; the answer is on its way
    await set_status(sessions, user_id, "canceled")  # another request cancels and commits
    policy.forget(user_id)
    held.release.set()
    await first  # it raced the change: "active" may be its answer, but not kept

    with pytest.raises(PaymentRequired):
        await policy.check(user_id)


async def test_revalidation_read_before_a_change_does_not_overwrite_the_new_state(
    sessions: SessionFactory, settings: Settings, clock: FrozenClock
) -> None:
    async with session_scope(sessions) as session:
        user = await create_user(session, subscription_status="active")
        user.subscription_updated_at = clock.now()
        user_id = user.id
    held = HeldReads(sessions, holding=False)
    policy = AccessPolicy(held, settings, clock)  # type: ignore[arg-type]
    await policy.check(user_id)  # cached: active
    held.holding = True  # the next pass's read is held

    revalidating = asyncio.ensure_future(policy.revalidate())
    await held.answered.wait()  # the pass read "active"
    await set_status(sessions, user_id, "canceled")
    policy.forget(user_id)
    with pytest.raises(PaymentRequired):
        await policy.check(user_id)  # read anew: canceled, cached
    held.release.set()
    await revalidating

    with pytest.raises(PaymentRequired):
        await policy.check(user_id)
