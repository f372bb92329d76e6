"""Request dependencies of the shared infrastructure: settings, clock, limiter, the session scope.

The app publishes these collaborators on `app.state` when it is built (novo_gateway.app); the
small functions here fetch them, typed, so a route names only what it uses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from functools import cache
from typing import Annotated, Any, TypeVar, cast

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from novo_gateway.kit.client_ip import ClientIpResolver
from novo_gateway.kit.clock import Clock
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import SessionFactory, session_scope
from novo_gateway.kit.limiter import RateLimiter

T = TypeVar("T")


def from_state(name: str, kind: type[T]) -> Callable[[Request], Coroutine[Any, Any, T]]:
    """A dependency returning `app.state.<name>`, a `kind` the app put there when it was built."""

    # `async def` although nothing is awaited: FastAPI runs a plain `def` dependency in its
    # thread pool, and that hand-off cost more than the rest of a small request (bench/README.md).
    async def get(request: Request) -> T:
        return cast(T, getattr(request.app.state, name))

    get.__name__ = f"get_{name}"
    return get


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One unit of work per request, committed before the response is sent."""
    sessions: SessionFactory = request.app.state.sessions
    async with session_scope(sessions) as session:
        yield session


def client_ip(request: Request, settings: Settings) -> str:
    """The client's address, through the trusted proxies (TRUSTED_PROXIES)."""
    return _ip_resolver(tuple(settings.trusted_proxies)).resolve(request.scope)


@cache
def _ip_resolver(trusted_proxies: tuple[str, ...]) -> ClientIpResolver:
    return ClientIpResolver(trusted_proxies)


SettingsDep = Annotated[Settings, Depends(from_state("settings", Settings))]
ClockDep = Annotated[Clock, Depends(from_state("clock", Clock))]
LimiterDep = Annotated[RateLimiter, Depends(from_state("limiter", RateLimiter))]
# The session factory, for a route that opens units of work of its own.
SessionsDep = Annotated[SessionFactory, Depends(from_state("sessions", SessionFactory))]
Session = Annotated[AsyncSession, Depends(get_session, scope="function")]
