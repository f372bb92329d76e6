"""Request dependencies of the accounts domain: who is calling (`CurrentAccount`), sign-in limits.

Credentials are tried in this order, the first one present decides:

1. `Authorization: Bearer ns_...`: a login session token from `POST /auth/login`;
2. an API key: `Authorization: Bearer nk_...`, then `X-API-Key`, then `?api_key=`;
3. for the original's clients, `email` and `password` in the JSON body (throttled like logins:
   per email, and per client IP with the limit of register and login).

A password is never read from a query string: a `password` query parameter is a 400, whatever
else the request carries. Once known, the account is held to its own per-minute limit
(ACCOUNT_RATE_LIMIT_PER_MINUTE, bucket "account-endpoints"), apart from the metered limit, so a
customer who used up their API calls can still look at their usage and keys.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request, Response

from novo_gateway.accounts import service as accounts
from novo_gateway.accounts.models import LoginSession, User
from novo_gateway.accounts.passwords import MAX_LENGTH
from novo_gateway.accounts.schemas import normalise_email
from novo_gateway.accounts.session_tokens import is_session_token
from novo_gateway.accounts.throttle import LoginThrottle, PasswordResetThrottle
from novo_gateway.keys.cache import KeyCache
from novo_gateway.keys.deps import KeyCacheDep
from novo_gateway.kit import jsonbody
from novo_gateway.kit.clock import Clock
from novo_gateway.kit.config import Settings
from novo_gateway.kit.credentials import KEY_INVALID, KEY_REQUIRED
from novo_gateway.kit.deps import (
    ClockDep,
    LimiterDep,
    Session,
    SettingsDep,
    client_ip,
    from_state,
)
from novo_gateway.kit.errors import BadRequest, RateLimitExceeded, Unauthorized
from novo_gateway.kit.limiter import RateLimiter

# Apart from the metered path's "account" bucket: using up API calls leaves these endpoints open.
ACCOUNT_BUCKET = "account-endpoints"
# Register and login cost a password hash each; this caps them per client IP (same rate).
SIGN_IN_IP_BUCKET = "sign-in-ip"
INVALID_SESSION = "Invalid or expired session token. Log in again."
SESSION_REQUIRED = "A session token is required: send Authorization: Bearer <token from login>."
QUERY_CREDENTIALS_REFUSED = (
    "Passwords are never accepted in the query string. "
    "Use an API key or a session token, or send the credentials in the JSON body."
)

# After registering: run the account's provisioning job now and wait briefly for it, returning
# the account as it then stands. Billing provides it (the app wires it in; accounts sits below).
AwaitProvisioning = Callable[[User, int], Awaitable[User]]


def bearer_token(request: Request) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, if any."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


async def current_account(
    request: Request,
    session: Session,
    clock: ClockDep,
    keys: KeyCacheDep,
    limiter: LimiterDep,
    settings: SettingsDep,
    response: Response,
) -> User:
    """The account the request authenticates as, after its per-account rate limit."""
    if "password" in request.query_params:
        raise BadRequest(QUERY_CREDENTIALS_REFUSED)
    user = await _authenticate(request, session, clock, keys, limiter, settings)
    await _limit_account(limiter, settings, user.id, response)
    no_store(response)
    return user


def no_store(response: Response) -> None:
    """Answers about an account (keys, tokens, usage, portal links) are never cached or sniffed."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"


async def current_login_session(
    request: Request, session: Session, clock: ClockDep
) -> LoginSession:
    """The live login session whose token is the bearer token (for logout)."""
    token = bearer_token(request)
    if token is None or not is_session_token(token):
        raise Unauthorized(SESSION_REQUIRED)
    found = await accounts.find_login_session(session, token, now=clock.now())
    if found is None:
        raise Unauthorized(INVALID_SESSION)
    return found[0]


async def _authenticate(
    request: Request,
    session: Session,
    clock: Clock,
    keys: KeyCache,
    limiter: RateLimiter,
    settings: Settings,
) -> User:
    bearer = bearer_token(request)
    if bearer is not None and is_session_token(bearer):
        found = await accounts.find_login_session(session, bearer, now=clock.now())
        if found is None:
            raise Unauthorized(INVALID_SESSION)
        return found[1]
    raw_key = bearer or request.headers.get("x-api-key") or request.query_params.get("api_key")
    if raw_key:
        identity = await keys.authenticate(raw_key)
        user = None if identity is None else await session.get(User, identity.user_id)
        if user is None:
            raise Unauthorized(KEY_INVALID)
        return user
    credentials = await _body_credentials(request)
    if credentials is None:
        raise Unauthorized(KEY_REQUIRED)
    email, password = credentials
    try:
        email = normalise_email(email)
    except ValueError:
        raise Unauthorized(accounts.INVALID_CREDENTIALS) from None
    if len(password) > MAX_LENGTH:
        raise Unauthorized(accounts.INVALID_CREDENTIALS)
    # A password costs a hash: the per-client-IP limit of register and login applies here too.
    await limit_sign_in_by_ip(request, limiter, settings)
    return await accounts.check_credentials(
        session, login_throttle(limiter, settings), email=email, password=password
    )


async def _body_credentials(request: Request) -> tuple[str, str] | None:
    """`email` and `password` from a JSON object body, when both are strings."""
    if "json" not in request.headers.get("content-type", ""):
        return None
    try:
        body = jsonbody.loads(await request.body() or b"null")
    except jsonbody.JSONTooDeep:
        raise BadRequest(jsonbody.TOO_DEEP) from None
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    email, password = body.get("email"), body.get("password")
    if isinstance(email, str) and isinstance(password, str) and email and password:
        return email, password
    return None


def login_throttle(limiter: LimiterDep, settings: SettingsDep) -> LoginThrottle:
    """The failed-login throttle, on the shared rate limiter."""
    return LoginThrottle(
        limiter,
        max_failures=settings.login_max_failures,
        window_seconds=settings.login_lockout_seconds,
    )


def reset_throttle(limiter: LimiterDep, settings: SettingsDep) -> PasswordResetThrottle:
    """Reset emails per address: LOGIN_MAX_FAILURES per LOGIN_LOCKOUT_SECONDS."""
    return PasswordResetThrottle(
        limiter,
        max_failures=settings.login_max_failures,
        window_seconds=settings.login_lockout_seconds,
    )


async def limit_sign_in_by_ip(request: Request, limiter: LimiterDep, settings: SettingsDep) -> None:
    """At most ACCOUNT_RATE_LIMIT_PER_MINUTE password checks a minute per client IP.

    Registrations, logins, body-credential requests, password changes and resets share it.
    """
    limit = settings.account_rate_limit_per_minute
    result = await limiter.hit(SIGN_IN_IP_BUCKET, client_ip(request, settings), limit)
    if not result.allowed:
        raise RateLimitExceeded(
            f"You have exceeded {limit} sign-in requests per minute. Please slow down.",
            headers={"Retry-After": str(result.reset_in)},
            retryAfter=result.reset_in,
        )


async def _limit_account(
    limiter: RateLimiter, settings: Settings, user_id: int, response: Response
) -> None:
    limit = settings.account_rate_limit_per_minute
    result = await limiter.hit(ACCOUNT_BUCKET, str(user_id), limit)
    if not result.allowed:
        raise RateLimitExceeded(
            f"You have exceeded {limit} requests per minute. Please slow down.",
            headers=result.headers(),
            retryAfter=result.reset_in,
        )
    response.headers.update(result.headers())


CurrentAccount = Annotated[User, Depends(current_account)]
CurrentLoginSession = Annotated[LoginSession, Depends(current_login_session)]
LoginThrottleDep = Annotated[LoginThrottle, Depends(login_throttle)]
ResetThrottleDep = Annotated[PasswordResetThrottle, Depends(reset_throttle)]
AwaitProvisioningDep = Annotated[
    AwaitProvisioning, Depends(from_state("await_provisioning", AwaitProvisioning))
]
