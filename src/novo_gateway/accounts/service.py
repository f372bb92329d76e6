"""Accounts: register, check credentials, and login sessions. Services flush, never commit."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from novo_gateway.accounts.models import LoginSession, PasswordResetToken, SubscriptionStatus, User
from novo_gateway.accounts.passwords import Verdict, check_password, hash_password, needs_rehash
from novo_gateway.accounts.session_tokens import generate_session_token, hash_session_token
from novo_gateway.accounts.throttle import LoginThrottle
from novo_gateway.jobs.models import Job
from novo_gateway.jobs.service import enqueue
from novo_gateway.keys.models import ApiKey
from novo_gateway.keys.service import NewKey, create_key, list_keys
from novo_gateway.kit.db import lock_rows
from novo_gateway.kit.errors import Conflict, Unauthorized

FIRST_KEY_NAME = "Default"
PROVISION_JOB = "provision_customer"
INVALID_CREDENTIALS = "Invalid credentials"


@dataclass(frozen=True, slots=True)
class Registration:
    """A new account, its first API key and the job that will provision it with Stripe."""

    user: User
    key: NewKey
    job: Job


@dataclass(frozen=True, slots=True)
class Login:
    """A successful login: the account, its keys, and a new session token (shown once)."""

    user: User
    keys: list[ApiKey]
    token: str = field(repr=False)
    expires_at: datetime


async def register(
    session: AsyncSession, *, email: str, password: str, name: str, now: datetime
) -> Registration:
    """Create the account, its first key and its provisioning job in the caller's transaction.

    `email` must already be normalised. A taken email is a `Conflict`, also when another request
    takes it between the check and the insert (the unique constraint decides).
    """
    # Hashed before any query, so no transaction stays open during the ~50 ms of hashing.
    password_hash = await hash_password(password)
    if await session.scalar(select(User.id).where(User.email == email)) is not None:
        raise _email_taken()
    user = User(
        email=email,
        name=name,
        password_hash=password_hash,
        created_at=now,
        subscription_status=SubscriptionStatus.PENDING,
    )
    session.add(user)
    try:
        await session.flush()
    except IntegrityError:
        raise _email_taken() from None  # `from None`: the statement's parameters stay out
    await lock_account(session, user.id)
    key = await create_key(session, user.id, now=now, name=FIRST_KEY_NAME)
    job = await enqueue(session, PROVISION_JOB, {"user_id": user.id}, run_after=now)
    return Registration(user=user, key=key, job=job)


async def lock_account(session: AsyncSession, user_id: int) -> None:
    """Hold the account's row until the unit of work ends (before `keys.service.create_key`)."""
    await lock_rows(session, User, User.id == user_id)


async def check_credentials(
    session: AsyncSession, throttle: LoginThrottle, *, email: str, password: str
) -> User:
    """The account for a normalised email and its password, or `Unauthorized`.

    The attempt is counted before the password is looked at, so a locked-out email gets
    `Throttled` however many guesses arrive at once (see `throttle`). An unknown email costs
    the same time as a wrong password (a dummy hash is checked) and counts as a failure. A hash
    made before passwords were normalised, or with older parameters, is replaced.
    """
    await throttle.reserve(email)
    user = await session.scalar(select(User).where(User.email == email))
    verdict = await check_password(user.password_hash if user else None, password)
    if user is None or verdict is Verdict.MISMATCH:
        raise Unauthorized(INVALID_CREDENTIALS)
    await throttle.succeeded(email)
    if verdict is Verdict.MATCHED_RAW or needs_rehash(user.password_hash):
        user.password_hash = await hash_password(password)
        await session.flush()
    return user


async def login(
    session: AsyncSession,
    throttle: LoginThrottle,
    *,
    email: str,
    password: str,
    now: datetime,
    ttl_seconds: int,
) -> Login:
    """Check the credentials and open a login session (its expired ones are cleared)."""
    user = await check_credentials(session, throttle, email=email, password=password)
    await session.execute(
        delete(LoginSession).where(LoginSession.user_id == user.id, LoginSession.expires_at <= now)
    )
    token = generate_session_token()
    expires_at = now + timedelta(seconds=ttl_seconds)
    session.add(
        LoginSession(
            user_id=user.id,
            token_hash=hash_session_token(token),
            created_at=now,
            expires_at=expires_at,
        )
    )
    await session.flush()
    keys = await list_keys(session, user.id)
    return Login(user=user, keys=keys, token=token, expires_at=expires_at)


async def find_login_session(
    session: AsyncSession, token: str, *, now: datetime
) -> tuple[LoginSession, User] | None:
    """The live (unexpired, not revoked) session for a token, with its account."""
    stmt = (
        select(LoginSession, User)
        .join(User, User.id == LoginSession.user_id)
        .where(
            LoginSession.token_hash == hash_session_token(token),
            LoginSession.revoked_at.is_(None),
            LoginSession.expires_at > now,
        )
    )
    row = (await session.execute(stmt)).one_or_none()
    return None if row is None else (row[0], row[1])


async def logout(session: AsyncSession, login_session: LoginSession, *, now: datetime) -> None:
    """Revoke a login session: its token is refused from now on."""
    await session.execute(
        update(LoginSession)
        .where(LoginSession.id == login_session.id, LoginSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def revoke_sessions(
    session: AsyncSession, user_id: int, *, now: datetime, keep: int | None = None
) -> int:
    """Revoke every live login session of the account (API and dashboard), but `keep`'s.

    Returns how many were revoked. Their tokens are refused from the next request on, on every
    process: a session is looked up in the database on each request.
    """
    stmt = update(LoginSession).where(
        LoginSession.user_id == user_id,
        LoginSession.revoked_at.is_(None),
        LoginSession.expires_at > now,
    )
    if keep is not None:
        stmt = stmt.where(LoginSession.id != keep)
    result = cast("CursorResult[Any]", await session.execute(stmt.values(revoked_at=now)))
    return result.rowcount


async def change_password(
    session: AsyncSession,
    throttle: LoginThrottle,
    login_session: LoginSession,
    *,
    current_password: str,
    new_password: str,
    now: datetime,
) -> int:
    """Replace the password after checking the current one; other sessions are revoked.

    The current password is checked like a login (counted by the same throttle), so a stolen
    session cannot be used to guess it. Pending reset links die too. Returns the sessions revoked.
    """
    user = await session.get_one(User, login_session.user_id)
    await check_credentials(session, throttle, email=user.email, password=current_password)
    await set_password(session, user, new_password, now=now)
    return await revoke_sessions(session, user.id, now=now, keep=login_session.id)


async def set_password(session: AsyncSession, user: User, password: str, *, now: datetime) -> None:
    """Store a new password hash; reset links still open for the account are used up."""
    user.password_hash = await hash_password(password)
    await session.execute(
        update(PasswordResetToken)
        .where(PasswordResetToken.user_id == user.id, PasswordResetToken.used_at.is_(None))
        .values(used_at=now)
    )
    await session.flush()


def _email_taken() -> Conflict:
    return Conflict("An account with this email already exists. Log in instead.")
