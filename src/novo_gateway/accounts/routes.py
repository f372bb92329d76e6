"""Routes of the accounts domain: register, login, logout."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from novo_gateway.accounts import service
from novo_gateway.accounts.schemas import (
    LoginRequest,
    LoginResponse,
    LoginUser,
    RegisterRequest,
    RegisterResponse,
    SessionInfo,
    SubscriptionSummary,
    UserSummary,
)
from novo_gateway.auth import (
    CurrentLoginSession,
    LoginThrottleDep,
    limit_sign_in_by_ip,
    no_store,
)
from novo_gateway.billing.provisioning import await_provisioning
from novo_gateway.db import session_scope
from novo_gateway.deps import RuntimeDep, Session
from novo_gateway.errors import (
    BadRequest,
    Conflict,
    RateLimitExceeded,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    error_responses,
)
from novo_gateway.keys.schemas import ApiKeyCreated, ApiKeyInfo, MessageResponse

# Register and login answer with a key or a session token: never cached (see `no_store`).
router = APIRouter(prefix="/auth", tags=["accounts"], dependencies=[Depends(no_store)])


@router.post(
    "/register",
    status_code=201,
    dependencies=[Depends(limit_sign_in_by_ip)],
    responses=error_responses(BadRequest, Conflict, RateLimitExceeded, ServiceUnavailable),
)
async def register(body: RegisterRequest, runtime: RuntimeDep) -> RegisterResponse:
    """Create an account and its first API key (shown once), then provision it at Stripe.

    The account commits first (its own unit of work, not the request session); provisioning
    then gets a short budget, so the answer holds the subscription when Stripe is quick and
    `{"status": "pending"}` when it is slow or down (the job retries in the background).
    """
    async with session_scope(runtime.sessions) as session:
        created = await service.register(
            session,
            email=body.email,
            password=body.password,
            name=body.display_name(),
            now=runtime.clock.now(),
        )
    user = await await_provisioning(
        runtime.jobs, runtime.sessions, user=created.user, job_id=created.job.id
    )
    return RegisterResponse(
        message="User registered successfully",
        user=UserSummary.of(user),
        api_key=ApiKeyCreated.of(created.key.row, created.key.raw_key),
        subscription=SubscriptionSummary.of(user),
    )


@router.post(
    "/login",
    dependencies=[Depends(limit_sign_in_by_ip)],
    responses=error_responses(BadRequest, Unauthorized, TooManyRequests, ServiceUnavailable),
)
async def login(
    body: LoginRequest, session: Session, runtime: RuntimeDep, throttle: LoginThrottleDep
) -> LoginResponse:
    """Check email and password; returns the account, its keys and a session token."""
    now = runtime.clock.now()
    result = await service.login(
        session,
        throttle,
        email=body.email,
        password=body.password,
        now=now,
        ttl_seconds=runtime.settings.session_ttl_seconds,
    )
    return LoginResponse(
        message="Login successful",
        user=LoginUser.of(result.user),
        api_keys=[
            ApiKeyInfo.of(key, now=now, pending_last_use=runtime.keys.pending_last_use(key.id))
            for key in result.keys
        ],
        session=SessionInfo(token=result.token, expires_at=result.expires_at),
    )


@router.post("/logout", responses=error_responses(Unauthorized))
async def logout(
    current: CurrentLoginSession, session: Session, runtime: RuntimeDep
) -> MessageResponse:
    """Revoke the session token sent as `Authorization: Bearer ns_...`."""
    await service.logout(session, current, now=runtime.clock.now())
    return MessageResponse(message="Logged out")
