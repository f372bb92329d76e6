"""API keys: create (the raw key is returned once), list, revoke. Services flush, never commit."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from novo_gateway.keys import tokens
from novo_gateway.keys.cache import KeyCache
from novo_gateway.keys.models import ApiKey
from novo_gateway.kit.errors import BadRequest, Conflict, NotFound

DEFAULT_NAME = "API Key"
MAX_ACTIVE_KEYS = 100


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key just created: the row, and the raw key to show this one time."""

    row: ApiKey
    raw_key: str = field(repr=False)


async def create_key(
    session: AsyncSession,
    user_id: int,
    *,
    now: datetime,
    name: str = DEFAULT_NAME,
    expires_at: datetime | None = None,
) -> NewKey:
    """A new active key for the account; refused past `MAX_ACTIVE_KEYS` or with a past expiry.

    The cap holds under races while the caller holds the account's row lock
    (`accounts.service.lock_account`; keys sits below accounts and does not import it).
    """
    if expires_at is not None and expires_at <= now:
        raise BadRequest("Invalid field 'expiresAt': the expiry must be in the future.")
    if await count_active_keys(session, user_id, now=now) >= MAX_ACTIVE_KEYS:
        raise Conflict(
            f"This account already has {MAX_ACTIVE_KEYS} active API keys, the most allowed. "
            "Revoke a key you no longer use, then create a new one."
        )
    raw = tokens.generate_key()
    key = ApiKey(
        user_id=user_id,
        name=name,
        prefix=tokens.display_prefix(raw),
        key_hash=tokens.hash_key(raw),
        is_active=True,
        created_at=now,
        expires_at=expires_at,
        changed_at=now,
    )
    session.add(key)
    await session.flush()
    return NewKey(row=key, raw_key=raw)


async def count_active_keys(session: AsyncSession, user_id: int, *, now: datetime) -> int:
    """Keys of the account that are neither revoked nor expired."""
    stmt = select(func.count(ApiKey.id)).where(
        ApiKey.user_id == user_id,
        ApiKey.is_active.is_(True),
        (ApiKey.expires_at.is_(None)) | (ApiKey.expires_at > now),
    )
    return int(await session.scalar(stmt) or 0)


async def list_keys(session: AsyncSession, user_id: int) -> list[ApiKey]:
    """Every key of the account, revoked ones included, oldest first."""
    stmt = select(ApiKey).where(ApiKey.user_id == user_id).order_by(ApiKey.id)
    return list((await session.scalars(stmt)).all())


async def revoke_key(
    session: AsyncSession, keys: KeyCache, user_id: int, key_id: int, *, now: datetime
) -> ApiKey:
    """Deactivate one of the account's keys (idempotent); another account's key is not found."""
    stmt = select(ApiKey).where(ApiKey.id == key_id, ApiKey.user_id == user_id)
    key = await session.scalar(stmt)
    if key is None:
        raise NotFound("API key not found.")
    if key.is_active:
        key.is_active = False
        key.revoked_at = now
        key.changed_at = now  # every process drops the key on its next revalidation pass
        await session.flush()
    keys.forget(key.id)
    return key
