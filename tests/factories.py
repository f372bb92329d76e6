"""Small builders of test data, written straight to the database."""

from __future__ import annotations

from datetime import datetime

from argon2 import PasswordHasher
from sqlalchemy.ext.asyncio import AsyncSession

from novo_gateway.accounts.models import User
from novo_gateway.billing.models import UsageReport
from novo_gateway.keys.models import ApiKey
from novo_gateway.keys.tokens import display_prefix, generate_key, hash_key
from novo_gateway.kit.models_base import utcnow

# Hashed once per test run so users made here can log in.
PASSWORD = "correct horse battery"
PASSWORD_HASH = PasswordHasher().hash(PASSWORD)


async def create_user(
    session: AsyncSession,
    *,
    email: str = "ada@example.com",
    name: str = "Ada",
    password_hash: str = PASSWORD_HASH,
    subscription_status: str = "active",
) -> User:
    user = User(
        email=email,
        name=name,
        password_hash=password_hash,
        subscription_status=subscription_status,
    )
    session.add(user)
    await session.flush()
    return user


async def create_api_key(
    session: AsyncSession,
    user: User,
    *,
    name: str = "API Key",
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """A key for `user`; returns the row and the raw key."""
    raw = generate_key()
    key = ApiKey(
        user_id=user.id,
        name=name,
        prefix=display_prefix(raw),
        key_hash=hash_key(raw),
        expires_at=expires_at,
        changed_at=utcnow(),
    )
    session.add(key)
    await session.flush()
    return key, raw


def usage_report(
    report_id: str,
    *,
    user_id: int,
    customer: str,
    units: int,
    at: datetime,
    status: str = "sent",
) -> UsageReport:
    """A usage report of `units` calls made at `at`, its period and window starting then."""
    return UsageReport(
        id=report_id,
        user_id=user_id,
        stripe_customer_id=customer,
        period_start=at,
        window_start=at,
        window_end=at,
        event_timestamp=at,
        units=units,
        event_count=units,
        status=status,
        next_attempt_at=at,
    )
