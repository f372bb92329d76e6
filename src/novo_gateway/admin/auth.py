"""Who may see the operator dashboard: holders of ADMIN_TOKEN, and nobody when it is empty.

An operator signs in once with the token; the browser then holds `novo_admin`, a cookie scoped
to `/admin` whose value is an expiry, a nonce and an HMAC of both keyed by the token, so it
proves the token without containing it, ends on its own, and every such cookie stops working
when the token is changed. Each sign-in is also a row in `admin_sessions` (the cookie's SHA-256),
and signing out revokes it: a copied cookie is dead after sign-out, not only cleared in the
browser. Scripts may send `Authorization: Bearer <ADMIN_TOKEN>` instead.

Every guess at the token, as a Bearer token or through the sign-in form, is counted per client
address before it is compared (`AdminTokenThrottle`: LOGIN_MAX_FAILURES per
LOGIN_LOCKOUT_SECONDS, then 429) and each wrong one is logged with the address.

Answers: no ADMIN_TOKEN → 404 (the dashboard does not exist); no valid sign-in → 401 (the
sign-in form); any Bearer token but the admin token → 401 with one body, whether it is junk or a
customer's live key or session (a different answer would tell which credentials are live).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from fastapi import Request
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from novo_gateway.accounts.deps import bearer_token
from novo_gateway.accounts.throttle import AdminTokenThrottle
from novo_gateway.admin.models import AdminSession
from novo_gateway.dashboard.security import ADMIN_COOKIE, derived_csrf_token
from novo_gateway.kit.deps import client_ip
from novo_gateway.kit.errors import NotFound, Unauthorized
from novo_gateway.runtime import Runtime

log = logging.getLogger("novo_gateway.admin")

WRONG_TOKEN: Final = "Invalid admin token."  # noqa: S105 - a message, not a secret
SIGN_IN_FIRST: Final = "Sign in at /admin with the admin token, or send it as a Bearer token."


@dataclass(frozen=True, slots=True)
class Operator:
    """An authenticated operator; `csrf` is None for a Bearer token (not sent by browsers)."""

    via: str
    csrf: str | None = field(default=None, repr=False)
    cookie: str | None = field(default=None, repr=False)


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
    if len(parts) != 3 or not parts[0].isascii() or not parts[0].isdigit() or len(value) > 200:
        return False
    expires, nonce, mac = parts
    expected = _mac(admin_token, f"admin:{expires}.{nonce}")
    return hmac.compare_digest(expected, mac) and int(expires) > now


def _cookie_hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


async def open_admin_session(session: AsyncSession, runtime: Runtime) -> str:
    """Sign an operator in: a new cookie value, recorded so that sign-out can revoke it."""
    ttl = runtime.settings.session_ttl_seconds
    now = runtime.clock.now()
    value = new_admin_cookie(
        runtime.settings.admin_token, now=runtime.clock.time(), ttl_seconds=ttl
    )
    await session.execute(delete(AdminSession).where(AdminSession.expires_at <= now))
    session.add(
        AdminSession(
            token_hash=_cookie_hash(value),
            created_at=now,
            expires_at=now + timedelta(seconds=ttl),
        )
    )
    await session.flush()
    return value


async def close_admin_session(session: AsyncSession, cookie: str, *, now: datetime) -> None:
    """Revoke the sign-in behind a cookie: from now on it is refused, wherever it is sent from."""
    await session.execute(
        update(AdminSession)
        .where(AdminSession.token_hash == _cookie_hash(cookie), AdminSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def _admin_session_live(session: AsyncSession, cookie: str, *, now: datetime) -> bool:
    found = await session.scalar(
        select(AdminSession.id).where(
            AdminSession.token_hash == _cookie_hash(cookie),
            AdminSession.revoked_at.is_(None),
            AdminSession.expires_at > now,
        )
    )
    return found is not None


def not_found(request: Request) -> NotFound:
    """The same 404 as any unknown path: without ADMIN_TOKEN there is no /admin."""
    return NotFound(f"The endpoint {request.method} {request.url.path} does not exist")


def admin_token_throttle(runtime: Runtime) -> AdminTokenThrottle:
    """Guesses at the admin token, per client address, on the shared rate limiter."""
    return AdminTokenThrottle(
        runtime.limiter,
        max_failures=runtime.settings.login_max_failures,
        window_seconds=runtime.settings.login_lockout_seconds,
    )


async def check_admin_token(request: Request, runtime: Runtime, given: str, *, via: str) -> bool:
    """True when `given` is the admin token; the guess is counted first and logged when wrong.

    Raises `Throttled` once the client's address has used up its guesses, even for the
    right token, until its window ends.
    """
    ip = client_ip(request, runtime.settings)
    throttle = admin_token_throttle(runtime)
    await throttle.reserve(ip)
    token = runtime.settings.admin_token
    if not (token and hmac.compare_digest(given.encode(), token.encode())):
        log.warning("admin: refused %s from %s (wrong token)", via, ip)
        return False
    await throttle.succeeded(ip)
    return True


async def operator_of(request: Request, session: AsyncSession, runtime: Runtime) -> Operator | None:
    """The operator making the request; None when nobody has signed in (show the form)."""
    if not runtime.settings.admin_token:
        raise not_found(request)
    bearer = bearer_token(request)
    if bearer is not None:
        if await check_admin_token(request, runtime, bearer, via="bearer token"):
            return Operator(via="bearer")
        raise Unauthorized(WRONG_TOKEN)
    cookie = request.cookies.get(ADMIN_COOKIE, "")
    if (
        cookie
        and admin_cookie_valid(runtime.settings.admin_token, cookie, now=runtime.clock.time())
        and await _admin_session_live(session, cookie, now=runtime.clock.now())
    ):
        return Operator(via="cookie", csrf=derived_csrf_token(cookie, "admin-csrf"), cookie=cookie)
    return None
