"""Routes of the accounts domain: register, login, logout, password change and reset."""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, Depends

from novo_gateway.accounts import reset, service
from novo_gateway.accounts.deps import (
    AwaitProvisioningDep,
    CurrentLoginSession,
    LoginThrottleDep,
    ResetThrottleDep,
    limit_sign_in_by_ip,
    no_store,
)
from novo_gateway.accounts.schemas import (
    ChangePasswordRequest,
    LoginRequest,
    LoginResponse,
    LoginUser,
    PasswordResetConfirm,
    PasswordResetRequest,
    RegisterRequest,
    RegisterResponse,
    SessionInfo,
    SessionsRevoked,
    SubscriptionSummary,
    UserSummary,
)
from novo_gateway.keys.deps import KeyCacheDep
from novo_gateway.keys.schemas import ApiKeyCreated, ApiKeyInfo, MessageResponse
from novo_gateway.kit.db import session_scope
from novo_gateway.kit.deps import ClockDep, Session, SessionsDep, SettingsDep
from novo_gateway.kit.errors import (
    BadRequest,
    Conflict,
    NotFound,
    RateLimitExceeded,
    ServiceUnavailable,
    Throttled,
    Unauthorized,
    error_responses,
)

RESET_DISABLED = "Password reset by email is not enabled on this gateway (no SMTP settings)."

# Register and login answer with a key or a session token: never cached (see `no_store`).
router = APIRouter(prefix="/auth", tags=["accounts"], dependencies=[Depends(no_store)])


@router.post(
    "/register",
    status_code=201,
    dependencies=[Depends(limit_sign_in_by_ip)],
    responses=error_responses(BadRequest, Conflict, RateLimitExceeded, ServiceUnavailable),
)
async def register(
    body: RegisterRequest,
    sessions: SessionsDep,
    clock: ClockDep,
    await_provisioning: AwaitProvisioningDep,
) -> RegisterResponse:
    """Create an account and its first API key (shown once), then provision it at Stripe.

    The account commits first (its own unit of work, not the request session); provisioning
    then gets a short budget, so the answer holds the subscription when Stripe is quick and
    `{"status": "pending"}` when it is slow or down (the job retries in the background).
    """
    async with session_scope(sessions) as session:
        created = await service.register(
            session,
            email=body.email,
            password=body.password,
            name=body.display_name(),
            now=clock.now(),
        )
    user = await await_provisioning(created.user, created.job.id)
    return RegisterResponse(
        message="User registered successfully",
        user=UserSummary.of(user),
        api_key=ApiKeyCreated.of(created.key.row, created.key.raw_key),
        subscription=SubscriptionSummary.of(user),
    )


@router.post(
    "/login",
    dependencies=[Depends(limit_sign_in_by_ip)],
    responses=error_responses(BadRequest, Unauthorized, Throttled, ServiceUnavailable),
)
async def login(
    body: LoginRequest,
    session: Session,
    clock: ClockDep,
    settings: SettingsDep,
    keys: KeyCacheDep,
    throttle: LoginThrottleDep,
) -> LoginResponse:
    """Check email and password; returns the account, its keys and a session token."""
    now = clock.now()
    result = await service.login(
        session,
        throttle,
        email=body.email,
        password=body.password,
        now=now,
        ttl_seconds=settings.session_ttl_seconds,
    )
    return LoginResponse(
        message="Login successful",
        user=LoginUser.of(result.user),
        api_keys=[
            ApiKeyInfo.of(key, now=now, pending_last_use=keys.pending_last_use(key.id))
            for key in result.keys
        ],
        session=SessionInfo(token=result.token, expires_at=result.expires_at),
    )


@router.post("/logout", responses=error_responses(Unauthorized))
async def logout(
    current: CurrentLoginSession, session: Session, clock: ClockDep
) -> MessageResponse:
    """Revoke the session token sent as `Authorization: Bearer ns_...`."""
    await service.logout(session, current, now=clock.now())
    return MessageResponse(message="Logged out")


@router.post("/logout-all", responses=error_responses(Unauthorized))
async def logout_everywhere(
    current: CurrentLoginSession, session: Session, clock: ClockDep
) -> SessionsRevoked:
    """Sign out everywhere: revoke every session token of the account, this one included.

    Dashboard sign-ins are login sessions too, so they end as well. API keys are not sessions
    and keep working (revoke them at `DELETE /auth/api-keys/{id}`).
    """
    revoked = await service.revoke_sessions(session, current.user_id, now=clock.now())
    return SessionsRevoked(message="Logged out everywhere", revoked_sessions=revoked)


@router.post(
    "/password",
    dependencies=[Depends(limit_sign_in_by_ip)],
    responses=error_responses(BadRequest, Unauthorized, Throttled, RateLimitExceeded),
)
async def change_password(
    body: ChangePasswordRequest,
    current: CurrentLoginSession,
    session: Session,
    clock: ClockDep,
    throttle: LoginThrottleDep,
) -> SessionsRevoked:
    """Change the password (the current one is checked like a login); other sessions end.

    Needs the session token (`Authorization: Bearer ns_...`); that session stays signed in.
    """
    revoked = await service.change_password(
        session,
        throttle,
        current,
        current_password=body.current_password,
        new_password=body.new_password,
        now=clock.now(),
    )
    return SessionsRevoked(message="Password changed", revoked_sessions=revoked)


@router.post(
    "/password-reset",
    status_code=202,
    dependencies=[Depends(limit_sign_in_by_ip)],
    responses=error_responses(BadRequest, NotFound, Throttled, RateLimitExceeded),
)
async def request_password_reset(
    body: PasswordResetRequest,
    sessions: SessionsDep,
    settings: SettingsDep,
    clock: ClockDep,
    throttle: ResetThrottleDep,
    background: BackgroundTasks,
) -> MessageResponse:
    """Email a single-use reset link, when SMTP is configured (404 otherwise).

    The answer is the same whether an account has the email or not, and so is its timing: the
    account is looked up, and the email sent, after the answer.
    """
    if not settings.password_reset_enabled:
        raise NotFound(RESET_DISABLED)
    await reset.request_reset(
        throttle,
        background,
        sessions,
        settings,
        email=body.email,
        now=clock.now(),
    )
    minutes = settings.password_reset_ttl_seconds // 60
    return MessageResponse(
        message=(
            "If an account uses this email, a link to reset its password is on its way. "
            f"It works once, within {minutes} minutes."
        )
    )


@router.post(
    "/password-reset/confirm",
    dependencies=[Depends(limit_sign_in_by_ip)],
    responses=error_responses(BadRequest, NotFound, RateLimitExceeded),
)
async def confirm_password_reset(
    body: PasswordResetConfirm, session: Session, settings: SettingsDep, clock: ClockDep
) -> MessageResponse:
    """Set a new password with the emailed token; every session of the account ends."""
    if not settings.password_reset_enabled:
        raise NotFound(RESET_DISABLED)
    await reset.finish_password_reset(
        session, token=body.token, new_password=body.new_password, now=clock.now()
    )
    return MessageResponse(message="Password changed. Log in with the new password.")
