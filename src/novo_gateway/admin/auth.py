"""Who may see the operator dashboard: holders of ADMIN_TOKEN, and nobody when it is empty.

An operator signs in once with the token; the browser then holds `novo_admin`, a cookie scoped
to `/admin` whose value is an expiry, a nonce and an HMAC of both keyed by the token, so it
proves the token without containing it, ends on its own, and every such cookie stops working
when the token is changed. Scripts may send `Authorization: Bearer <ADMIN_TOKEN>` instead.

Answers: no ADMIN_TOKEN → 404 (the dashboard does not exist); no credentials → 401 (the sign-in
form); a wrong token → 401; a customer's session or key → 403.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Final

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from novo_gateway.accounts import service as accounts
from novo_gateway.accounts.session_tokens import is_session_token
from novo_gateway.auth import bearer_token
from novo_gateway.dashboard.auth import viewer_of
from novo_gateway.dashboard.security import ADMIN_COOKIE, derived_csrf_token
from novo_gateway.errors import Forbidden, NotFound, Unauthorized
from novo_gateway.runtime import Runtime

OPERATORS_ONLY: Final = "The operator dashboard is for operators only."
WRONG_TOKEN: Final = "Invalid admin token."  # noqa: S105 - a message, not a secret
SIGN_IN_FIRST: Final = "Sign in at /admin with the admin token, or send it as a Bearer token."


@dataclass(frozen=True, slots=True)
class Operator:
    """An authenticated operator; `csrf` is None for a Bearer token (not sent by browsers)."""

    via: str
    csrf: str | None = field(default=None, repr=False)


def _mac(admin_token: str, message: str) -> str:
    return hmac.new(admin_token.encode(), message.encode(), hashlib.sha256).hexdigest()


def new_admin_cookie(admin_token: str, *, now: float, ttl_seconds: int) -> str:
    """A signed cookie value proving the token until `now + ttl_seconds`."""
    expires = int(now) + ttl_seconds
    nonce = secrets.token_urlsafe(12)
    return f"{expires}.{nonce}.{_mac(admin_token, f'admin:{expires}.{nonce}')}"


def admin_cookie_valid(admin_token: str, value: str, *, now: float) -> bool:
    """True when the cookie was signed with this token and has not expired."""
    parts = value.split(".")
    if len(parts) != 3 or not parts[0].isdigit() or len(value) > 200:
        return False
    expires, nonce, mac = parts
    expected = _mac(admin_token, f"admin:{expires}.{nonce}")
    return hmac.compare_digest(expected, mac) and int(expires) > now


def not_found(request: Request) -> NotFound:
    """The same 404 as any unknown path: without ADMIN_TOKEN there is no /admin."""
    return NotFound(f"The endpoint {request.method} {request.url.path} does not exist")


async def _is_customer(
    request: Request, session: AsyncSession, runtime: Runtime, bearer: str | None
) -> bool:
    if bearer is not None:
        if is_session_token(bearer):
            now = runtime.clock.now()
            return await accounts.find_login_session(session, bearer, now=now) is not None
        return await runtime.keys.authenticate(bearer) is not None
    return await viewer_of(request, session, runtime) is not None


async def operator_of(request: Request, session: AsyncSession, runtime: Runtime) -> Operator | None:
    """The operator making the request; None when nobody has signed in (show the form)."""
    token = runtime.settings.admin_token
    if not token:
        raise not_found(request)
    bearer = bearer_token(request)
    if bearer is not None:
        if hmac.compare_digest(bearer.encode(), token.encode()):
            return Operator(via="bearer")
        if await _is_customer(request, session, runtime, bearer):
            raise Forbidden(OPERATORS_ONLY)
        raise Unauthorized(WRONG_TOKEN)
    cookie = request.cookies.get(ADMIN_COOKIE, "")
    if cookie and admin_cookie_valid(token, cookie, now=runtime.clock.time()):
        return Operator(via="cookie", csrf=derived_csrf_token(cookie, "admin-csrf"))
    if await _is_customer(request, session, runtime, None):
        raise Forbidden(OPERATORS_ONLY)
    return None


def token_matches(runtime: Runtime, given: str) -> bool:
    """True when `given` is the admin token (compared in constant time)."""
    token = runtime.settings.admin_token
    return bool(token) and hmac.compare_digest(given.encode(), token.encode())
