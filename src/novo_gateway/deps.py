"""Request dependencies shared by every router: the runtime, the settings and the session scope."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import session_scope
from novo_gateway.runtime import Runtime


# `async def` although nothing is awaited: FastAPI runs a plain `def` dependency in its thread
# pool, and that hand-off cost more than the rest of a small request (see bench/README.md).
async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One unit of work per request, committed before the response is sent."""
    runtime: Runtime = request.app.state.runtime
    async with session_scope(runtime.sessions) as session:
        yield session


async def get_settings(request: Request) -> Settings:
    runtime: Runtime = request.app.state.runtime
    return runtime.settings


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
Session = Annotated[AsyncSession, Depends(get_session, scope="function")]
