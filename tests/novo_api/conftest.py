"""A running gateway and a valid API key for calling the built-in Novo API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from novo_gateway.kit.db import session_scope
from tests.conftest import AppClient
from tests.factories import create_api_key, create_user


@dataclass
class Caller:
    """The gateway's HTTP client and headers carrying a valid key of an active account."""

    client: AppClient
    headers: dict[str, str]

    async def get(self, path: str) -> httpx.Response:
        return await self.client.get(path, headers=self.headers)

    async def post(self, path: str, payload: Any) -> httpx.Response:
        return await self.client.post(path, json=payload, headers=self.headers)


async def new_key(client: AppClient) -> str:
    """A raw API key of a new active account in the database of `client`'s app."""
    async with session_scope(client.app.state.runtime.sessions) as session:
        user = await create_user(session)
        _row, raw_key = await create_api_key(session, user)
    return raw_key


@pytest.fixture
async def caller(client: AppClient) -> Caller:
    return Caller(client=client, headers={"Authorization": f"Bearer {await new_key(client)}"})
