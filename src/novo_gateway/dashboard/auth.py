"""Who is looking at the dashboard: the login session in the `novo_session` cookie."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from novo_gateway.accounts import service as accounts
from novo_gateway.accounts.deps import ACCOUNT_BUCKET
from novo_gateway.accounts.models import LoginSession, User
from novo_gateway.accounts.session_tokens import is_session_token
from novo_gateway.dashboard.security import SESSION_COOKIE, derived_csrf_token
from novo_gateway.kit.deps import Session
from novo_gateway.kit.errors import RateLimitExceeded
from novo_gateway.runtime import Runtime, RuntimeDep


@dataclass(frozen=True, slots=True)
class Viewer:
    """A signed-in customer: the account, its login session and the forms' CSRF token."""

    user: User
    login_session: LoginSession
    csrf: str = field(repr=False)


async def viewer_of(request: Request, session: Session, runtime: Runtime) -> Viewer | None:
    """The customer whose live login session is in the cookie, or None."""
    token = request.cookies.get(SESSION_COOKIE, "")
    if not token or len(token) > 128 or not is_session_token(token):
        return None
    found = await accounts.find_login_session(session, token, now=runtime.clock.now())
    if found is None:
        return None
    login_session, user = found
    return Viewer(user=user, login_session=login_session, csrf=derived_csrf_token(token))


async def optional_viewer(request: Request, session: Session, runtime: RuntimeDep) -> Viewer | None:
    """The signed-in customer, held to the per-account limit of the account endpoints."""
    viewer = await viewer_of(request, session, runtime)
    if viewer is not None:
        limit = runtime.settings.account_rate_limit_per_minute
        result = await runtime.limiter.hit(ACCOUNT_BUCKET, str(viewer.user.id), limit)
        if not result.allowed:
            raise RateLimitExceeded(
                f"You have exceeded {limit} requests per minute. Please slow down.",
                headers=result.headers(),
                retryAfter=result.reset_in,
            )
    return viewer


OptionalViewer = Annotated[Viewer | None, Depends(optional_viewer)]
