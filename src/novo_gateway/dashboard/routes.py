"""Routes of the customer dashboard: sign in and out, the page, keys, subscription, portal.

Pages are server-rendered HTML; every form is a POST with a CSRF token, answered with a
redirect (303) back to the page, except key creation, whose answer shows the new key once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import RedirectResponse, Response

from novo_gateway.accounts import service as accounts
from novo_gateway.accounts.deps import limit_sign_in_by_ip, login_throttle
from novo_gateway.accounts.passwords import MAX_LENGTH as PASSWORD_MAX_LENGTH
from novo_gateway.accounts.passwords import MIN_LENGTH as PASSWORD_MIN_LENGTH
from novo_gateway.accounts.schemas import normalise_email
from novo_gateway.billing import service as billing
from novo_gateway.billing.routes import MESSAGES as SUBSCRIPTION_MESSAGES
from novo_gateway.dashboard import service
from novo_gateway.dashboard.auth import OptionalViewer, Viewer
from novo_gateway.dashboard.forms import (
    CsrfField,
    EmailField,
    KeyNameField,
    PasswordField,
    key_name,
)
from novo_gateway.dashboard.security import (
    SESSION_COOKIE,
    SIGN_IN_CSRF_COOKIE,
    check_csrf,
    check_same_origin,
    clear_cookie,
    set_cookie,
)
from novo_gateway.dashboard.templating import render, render_sign_in
from novo_gateway.keys import service as keys
from novo_gateway.keys.schemas import KEY_NOTE
from novo_gateway.keys.service import NewKey
from novo_gateway.kit.deps import Session
from novo_gateway.kit.errors import BadRequest, GatewayError, Unauthorized
from novo_gateway.runtime import Runtime, RuntimeDep

router = APIRouter(prefix="/dashboard", include_in_schema=False)

HOME: Final = "/dashboard"
SIGN_IN: Final = "/dashboard/login"
MAX_ID: Final = 2**63 - 1

NOTICES: Final[dict[str, str]] = {
    "signed-out": "You are signed out.",
    "expired": "Your session has ended. Please sign in again.",
    "key-revoked": "The key is revoked: calls made with it are refused from now on.",
    "signed-out-everywhere": "You are signed out on every device.",
    "password-changed": "Your password is changed; every other device is signed out.",
    "reset-sent": "If an account uses this email, a link to reset its password is on its way.",
    "password-reset": "Your password is changed. Sign in with the new one.",
}
NOTICES.update({str(outcome): text for outcome, text in SUBSCRIPTION_MESSAGES.items()})

NEW_PASSWORD_LENGTH: Final = (
    f"Choose a new password of {PASSWORD_MIN_LENGTH} to {PASSWORD_MAX_LENGTH} characters."
)
KeyId = Annotated[int, Path(ge=1, le=MAX_ID)]


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _notice(request: Request) -> str | None:
    return NOTICES.get(request.query_params.get("notice", ""))


def _sign_in_page(
    request: Request,
    runtime: Runtime,
    *,
    error: str | None = None,
    email: str = "",
    status_code: int = 200,
) -> Response:
    """The sign-in form, with a fresh double-submit CSRF token in a cookie and the form."""
    return render_sign_in(
        request,
        runtime.settings,
        "login.html",
        {
            "error": error,
            "notice": _notice(request),
            "email": email,
            "reset_enabled": runtime.settings.password_reset_enabled,
        },
        status_code=status_code,
    )


async def _page(
    request: Request,
    session: Session,
    runtime: Runtime,
    viewer: Viewer,
    *,
    new_key: NewKey | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    view = await service.dashboard(session, runtime, viewer.user)
    context: dict[str, Any] = {
        "view": view,
        "csrf": viewer.csrf,
        "notice": _notice(request),
        "error": error,
        "new_key": new_key,
        "key_note": KEY_NOTE,
    }
    return render(runtime.settings, "dashboard.html", context, status_code=status_code)


async def form_viewer(
    request: Request, runtime: RuntimeDep, viewer: OptionalViewer, csrf: CsrfField = ""
) -> Viewer | None:
    """The viewer sending a form, after the origin and CSRF checks; None when signed out."""
    check_same_origin(request, runtime.settings)
    if viewer is None:
        return None
    check_csrf(viewer.csrf, csrf)
    return viewer


FormViewer = Annotated[Viewer | None, Depends(form_viewer)]


async def _act(
    request: Request,
    session: Session,
    runtime: Runtime,
    viewer: Viewer | None,
    action: Callable[[Viewer], Awaitable[Response]],
) -> Response:
    """Run a form's action for a signed-in viewer; a refusal is shown on the page, with its
    status, and nothing of the refused action is kept."""
    if viewer is None:
        return _redirect(f"{SIGN_IN}?notice=expired")
    try:
        return await action(viewer)
    except GatewayError as exc:
        await session.rollback()
        await session.refresh(viewer.user)
        return await _page(
            request, session, runtime, viewer, error=exc.message, status_code=exc.status_code
        )


@router.get("")
async def dashboard_page(
    request: Request, session: Session, runtime: RuntimeDep, viewer: OptionalViewer
) -> Response:
    if viewer is None:
        return _redirect(SIGN_IN)
    return await _page(request, session, runtime, viewer)


@router.get("/login")
async def sign_in_form(request: Request, runtime: RuntimeDep, viewer: OptionalViewer) -> Response:
    if viewer is not None:
        return _redirect(HOME)
    return _sign_in_page(request, runtime)


@router.post("/login", dependencies=[Depends(limit_sign_in_by_ip)])
async def sign_in(
    request: Request,
    session: Session,
    runtime: RuntimeDep,
    email: EmailField = "",
    password: PasswordField = "",
    csrf: CsrfField = "",
) -> Response:
    check_same_origin(request, runtime.settings)
    check_csrf(request.cookies.get(SIGN_IN_CSRF_COOKIE), csrf)
    try:
        if len(password) > PASSWORD_MAX_LENGTH or not password:
            raise Unauthorized(accounts.INVALID_CREDENTIALS)
        try:
            address = normalise_email(email)
        except ValueError:
            raise Unauthorized(accounts.INVALID_CREDENTIALS) from None
        result = await accounts.login(
            session,
            login_throttle(runtime.limiter, runtime.settings),
            email=address,
            password=password,
            now=runtime.clock.now(),
            ttl_seconds=runtime.settings.session_ttl_seconds,
        )
    except GatewayError as exc:
        return _sign_in_page(
            request, runtime, error=exc.message, email=email, status_code=exc.status_code
        )
    response = _redirect(HOME)
    set_cookie(
        response,
        request,
        runtime.settings,
        name=SESSION_COOKIE,
        value=result.token,
        max_age=runtime.settings.session_ttl_seconds,
        path="/",
    )
    clear_cookie(response, request, runtime.settings, name=SIGN_IN_CSRF_COOKIE)
    return response


@router.post("/logout")
async def sign_out(
    request: Request, session: Session, runtime: RuntimeDep, viewer: FormViewer
) -> Response:
    if viewer is not None:
        await accounts.logout(session, viewer.login_session, now=runtime.clock.now())
    response = _redirect(f"{SIGN_IN}?notice=signed-out")
    clear_cookie(response, request, runtime.settings, name=SESSION_COOKIE)
    return response


@router.post("/password", dependencies=[Depends(limit_sign_in_by_ip)])
async def change_password(
    request: Request,
    session: Session,
    runtime: RuntimeDep,
    viewer: FormViewer,
    current_password: PasswordField = "",
    new_password: PasswordField = "",
) -> Response:
    async def change(viewer: Viewer) -> Response:
        if not PASSWORD_MIN_LENGTH <= len(new_password) <= PASSWORD_MAX_LENGTH:
            raise BadRequest(NEW_PASSWORD_LENGTH)
        if not current_password or len(current_password) > PASSWORD_MAX_LENGTH:
            raise Unauthorized(accounts.INVALID_CREDENTIALS)
        await accounts.change_password(
            session,
            login_throttle(runtime.limiter, runtime.settings),
            viewer.login_session,
            current_password=current_password,
            new_password=new_password,
            now=runtime.clock.now(),
        )
        return _redirect(f"{HOME}?notice=password-changed#account")

    return await _act(request, session, runtime, viewer, change)


@router.post("/logout-all")
async def sign_out_everywhere(
    request: Request, session: Session, runtime: RuntimeDep, viewer: FormViewer
) -> Response:
    if viewer is not None:
        await accounts.revoke_sessions(session, viewer.user.id, now=runtime.clock.now())
    response = _redirect(f"{SIGN_IN}?notice=signed-out-everywhere")
    clear_cookie(response, request, runtime.settings, name=SESSION_COOKIE)
    return response


@router.post("/keys")
async def create_key(
    request: Request,
    session: Session,
    runtime: RuntimeDep,
    viewer: FormViewer,
    name: KeyNameField = "",
) -> Response:
    async def create(viewer: Viewer) -> Response:
        label = key_name(name, keys.DEFAULT_NAME)
        now = runtime.clock.now()
        await accounts.lock_account(session, viewer.user.id)
        created = await keys.create_key(session, viewer.user.id, now=now, name=label)
        return await _page(request, session, runtime, viewer, new_key=created, status_code=201)

    return await _act(request, session, runtime, viewer, create)


@router.post("/keys/{key_id}/revoke")
async def revoke_key(
    key_id: KeyId, request: Request, session: Session, runtime: RuntimeDep, viewer: FormViewer
) -> Response:
    async def revoke(viewer: Viewer) -> Response:
        now = runtime.clock.now()
        await keys.revoke_key(session, runtime.keys, viewer.user.id, key_id, now=now)
        return _redirect(f"{HOME}?notice=key-revoked#keys")

    return await _act(request, session, runtime, viewer, revoke)


@router.post("/subscription/cancel")
async def cancel_subscription(
    request: Request, session: Session, runtime: RuntimeDep, viewer: FormViewer
) -> Response:
    async def cancel(viewer: Viewer) -> Response:
        outcome = await billing.cancel(
            session,
            runtime.stripe,
            viewer.user,
            immediately=False,
            now=runtime.clock.now(),
            reporter=runtime.reporter,
            forget=runtime.access.forget,
        )
        return _redirect(f"{HOME}?notice={outcome}#billing")

    return await _act(request, session, runtime, viewer, cancel)


@router.post("/subscription/resume")
async def resume_subscription(
    request: Request, session: Session, runtime: RuntimeDep, viewer: FormViewer
) -> Response:
    async def resume(viewer: Viewer) -> Response:
        outcome = await billing.resubscribe(
            session,
            runtime.stripe,
            runtime.settings,
            viewer.user,
            now=runtime.clock.now(),
            forget=runtime.access.forget,
        )
        return _redirect(f"{HOME}?notice={outcome}#billing")

    return await _act(request, session, runtime, viewer, resume)


@router.post("/payment-method")
async def add_payment_method(
    request: Request, session: Session, runtime: RuntimeDep, viewer: FormViewer
) -> Response:
    async def open_form(viewer: Viewer) -> Response:
        back = service.portal_return_url(str(request.base_url), runtime)
        return _redirect(
            await billing.payment_method_url(runtime.stripe, runtime.settings, viewer.user, back)
        )

    return await _act(request, session, runtime, viewer, open_form)


@router.post("/portal")
async def billing_portal(
    request: Request, session: Session, runtime: RuntimeDep, viewer: FormViewer
) -> Response:
    async def open_portal(viewer: Viewer) -> Response:
        back = service.portal_return_url(str(request.base_url), runtime)
        return _redirect(
            await billing.portal_url(runtime.stripe, runtime.settings, viewer.user, back)
        )

    return await _act(request, session, runtime, viewer, open_portal)
