"""Accounts: register, check credentials, and login sessions. Services flush, never commit."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from novo_gateway.accounts.models import LoginSession, User
from novo_gateway.accounts.passwords import hash_password, needs_rehash, verify_password
from novo_gateway.accounts.session_tokens import generate_session_token, hash_session_token
from novo_gateway.accounts.throttle import LoginThrottle
from novo_gateway.errors import Conflict, Unauthorized
from novo_gateway.jobs.models import Job
from novo_gateway.jobs.service import enqueue
from novo_gateway.keys.models import ApiKey
from novo_gateway.keys.service import NewKey, create_key, list_keys

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
        subscription_status="pending",
    )
    session.add(user)
    try:
        await session.flush()
    except IntegrityError:
        raise _email_taken() from None  # `from None`: the statement's parameters stay out
    key = await create_key(session, user.id, now=now, name=FIRST_KEY_NAME)
    job = await enqueue(session, PROVISION_JOB, {"user_id": user.id}, run_after=now)
    return Registration(user=user, key=key, job=job)


async def check_credentials(
    session: AsyncSession, throttle: LoginThrottle, *, email: str, password: str
) -> User:
    """The account for a normalised email and its password, or `Unauthorized`.

    A locked-out email gets `TooManyRequests` before the password is looked at. An unknown email
    costs the same time as a wrong password (a dummy hash is checked) and counts as a failure.
    """
    await throttle.check(email)
    user = await session.scalar(select(User).where(User.email == email))
    matched = await verify_password(user.password_hash if user else None, password)
    if user is None or not matched:
        await throttle.record_failure(email)
        raise Unauthorized(INVALID_CREDENTIALS)
    await throttle.reset(email)
    if needs_rehash(user.password_hash):
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


def _email_taken() -> Conflict:
    return Conflict("An account with this email already exists. Log in instead.")
