"""Password reset by email: a single-use, short-lived token, stored as its SHA-256 only.

A request is answered before anything about the email is looked up: `email_reset_link` runs after
the answer (a background task), in its own unit of work, so neither the answer nor its timing
tells whether an account has the email. Requests are counted per email on the request path
(`PasswordResetThrottle`), so nobody can flood an inbox.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Final

from fastapi import BackgroundTasks
from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from novo_gateway.accounts.mail import Mailer
from novo_gateway.accounts.models import PasswordResetToken, User
from novo_gateway.accounts.service import revoke_sessions, set_password
from novo_gateway.accounts.session_tokens import generate_reset_token, hash_session_token
from novo_gateway.accounts.throttle import PasswordResetThrottle
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import SessionFactory, session_scope
from novo_gateway.kit.errors import BadRequest

log = logging.getLogger("novo_gateway.accounts")

INVALID_RESET_TOKEN: Final = (
    "This password reset link is invalid, used or expired. Ask for a new one."  # noqa: S105
)


async def start_password_reset(
    session: AsyncSession, *, email: str, now: datetime, ttl_seconds: int
) -> tuple[str, str] | None:
    """A new reset token for the account with this normalised email: (its email, the token).

    None when no account has the email. Only the token's hash is stored; the account's used
    and expired tokens are deleted (they can never be used again).
    """
    user = await session.scalar(select(User).where(User.email == email))
    if user is None:
        return None
    await session.execute(
        delete(PasswordResetToken).where(
            PasswordResetToken.user_id == user.id,
            or_(PasswordResetToken.used_at.is_not(None), PasswordResetToken.expires_at <= now),
        )
    )
    token = generate_reset_token()
    session.add(
        PasswordResetToken(
            user_id=user.id,
            token_hash=hash_session_token(token),
            created_at=now,
            expires_at=now + timedelta(seconds=ttl_seconds),
        )
    )
    await session.flush()
    return user.email, token


async def request_reset(
    throttle: PasswordResetThrottle,
    background: BackgroundTasks,
    sessions: SessionFactory,
    settings: Settings,
    *,
    email: str,
    now: datetime,
) -> None:
    """Count the request for this normalised email (429 past the limit), then, after the
    answer, email a reset link if an account has the email (`email_reset_link`)."""
    await throttle.reserve(email)
    background.add_task(
        email_reset_link,
        sessions,
        Mailer(settings),
        email=email,
        now=now,
        ttl_seconds=settings.password_reset_ttl_seconds,
    )


async def email_reset_link(
    sessions: SessionFactory, mailer: Mailer, *, email: str, now: datetime, ttl_seconds: int
) -> bool:
    """Make a token for the account with this email, if any, and email its link.

    Runs after the request was answered; a failure is logged (without the token), never raised.
    True when an email was sent.
    """
    try:
        async with session_scope(sessions) as session:
            started = await start_password_reset(
                session, email=email, now=now, ttl_seconds=ttl_seconds
            )
    except Exception as exc:  # after the answer: nobody to tell but the log
        log.warning("password reset: the token could not be stored (%s)", type(exc).__name__)
        return False
    if started is None:
        return False
    return await mailer.send_password_reset(*started)


async def finish_password_reset(
    session: AsyncSession, *, token: str, new_password: str, now: datetime
) -> User:
    """Set a new password with a reset token; the token is used up and every session revoked.

    The token is claimed by a conditional update before anything else, so two uses of one token
    at the same time cannot both succeed.
    """
    claimed = await session.execute(
        update(PasswordResetToken)
        .where(
            PasswordResetToken.token_hash == hash_session_token(token),
            PasswordResetToken.used_at.is_(None),
            PasswordResetToken.expires_at > now,
        )
        .values(used_at=now)
        .returning(PasswordResetToken.user_id)
    )
    user_id = claimed.scalar_one_or_none()
    if user_id is None:
        raise BadRequest(INVALID_RESET_TOKEN)
    user = await session.get_one(User, user_id)
    await set_password(session, user, new_password, now=now)
    await revoke_sessions(session, user.id, now=now)
    return user
