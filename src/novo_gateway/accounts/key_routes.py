"""Routes of an account's API keys: create, list and revoke the caller's keys."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path

from novo_gateway.accounts import service as accounts
from novo_gateway.accounts.deps import CurrentAccount
from novo_gateway.keys import service
from novo_gateway.keys.deps import KeyCacheDep
from novo_gateway.keys.schemas import (
    ApiKeyCreated,
    ApiKeyCreatedResponse,
    ApiKeyInfo,
    ApiKeyList,
    CreateKeyRequest,
    MessageResponse,
)
from novo_gateway.kit.deps import ClockDep, Session
from novo_gateway.kit.errors import (
    BadRequest,
    Conflict,
    NotFound,
    RateLimitExceeded,
    ServiceUnavailable,
    Unauthorized,
    error_responses,
)

router = APIRouter(prefix="/auth/api-keys", tags=["api keys"])

_AUTH_ERRORS = (BadRequest, Unauthorized, RateLimitExceeded, ServiceUnavailable)
MAX_ID = 2**63 - 1


@router.post("", status_code=201, responses=error_responses(*_AUTH_ERRORS, Conflict))
async def create_api_key(
    user: CurrentAccount,
    session: Session,
    clock: ClockDep,
    body: Annotated[CreateKeyRequest | None, Body()] = None,
) -> ApiKeyCreatedResponse:
    """A new API key for the caller's account; the key is in this response only."""
    body = body or CreateKeyRequest()
    now = clock.now()
    await accounts.lock_account(session, user.id)
    created = await service.create_key(
        session,
        user.id,
        now=now,
        name=body.key_label(service.DEFAULT_NAME),
        expires_at=body.expiry(now),
    )
    return ApiKeyCreatedResponse(
        message="API key created successfully",
        api_key=ApiKeyCreated.of(created.row, created.raw_key),
    )


@router.get("", responses=error_responses(*_AUTH_ERRORS))
async def list_api_keys(
    user: CurrentAccount, session: Session, clock: ClockDep, cache: KeyCacheDep
) -> ApiKeyList:
    """Every key of the caller's account, revoked ones included (prefixes only)."""
    now = clock.now()
    keys = await service.list_keys(session, user.id)
    return ApiKeyList(
        api_keys=[
            ApiKeyInfo.of(key, now=now, pending_last_use=cache.pending_last_use(key.id))
            for key in keys
        ]
    )


@router.delete("/{id}", responses=error_responses(*_AUTH_ERRORS, NotFound))
async def revoke_api_key(
    key_id: Annotated[int, Path(alias="id", ge=1, le=MAX_ID)],
    user: CurrentAccount,
    session: Session,
    clock: ClockDep,
    cache: KeyCacheDep,
) -> MessageResponse:
    """Revoke one of the caller's keys; every gateway process refuses it within a second."""
    await service.revoke_key(session, cache, user.id, key_id, now=clock.now())
    return MessageResponse(message="API key revoked successfully")
