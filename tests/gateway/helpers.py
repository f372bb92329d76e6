"""Helpers for tests of the metered path: an account with a key, and reading the ledger."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from novo_gateway.kit.db import session_scope
from novo_gateway.metering.models import UsageEvent
from novo_gateway.runtime import Runtime
from tests.conftest import AppClient
from tests.factories import create_api_key, create_user


@dataclass(frozen=True)
class Account:
    user_id: int
    key_id: int
    key: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def runtime_of(client: AppClient) -> Runtime:
    runtime: Runtime = client.app.state.runtime
    return runtime


async def make_account(
    client: AppClient,
    email: str = "ada@example.com",
    *,
    active: bool = True,
    expires_at: datetime | None = None,
) -> Account:
    async with session_scope(runtime_of(client).sessions) as session:
        user = await create_user(session, email=email)
        key, raw = await create_api_key(session, user, expires_at=expires_at)
        key.is_active = active
    return Account(user.id, key.id, raw)


async def ledger(client: AppClient) -> list[UsageEvent]:
    async with session_scope(runtime_of(client).sessions) as session:
        rows = await session.scalars(select(UsageEvent).order_by(UsageEvent.id))
        return list(rows.all())
