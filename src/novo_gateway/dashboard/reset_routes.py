"""The dashboard's forgotten-password pages: ask for a reset link, then choose a new password.

They exist only when SMTP is configured (404 otherwise, as `/auth/password-reset`). Both are
sign-in forms: a double-submit CSRF token, a same-origin check, the per-client-IP limit of
sign-ins. Asking for a link answers the same whether an account has the email or not.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, BackgroundTasks, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from novo_gateway.accounts import reset
from novo_gateway.accounts.deps import limit_sign_in_by_ip, reset_throttle
from novo_gateway.accounts.mail import RESET_PAGE
from novo_gateway.accounts.passwords import MAX_LENGTH, MIN_LENGTH
from novo_gateway.accounts.schemas import normalise_email
from novo_gateway.dashboard.forms import CsrfField, EmailField, PasswordField
from novo_gateway.dashboard.security import SIGN_IN_CSRF_COOKIE, check_csrf, check_same_origin
from novo_gateway.dashboard.templating import render_sign_in
from novo_gateway.kit.deps import Session
from novo_gateway.kit.errors import BadRequest, GatewayError, NotFound
from novo_gateway.runtime import Runtime, RuntimeDep

router = APIRouter(prefix="/dashboard", include_in_schema=False)

FORGOT_PAGE: Final = "/dashboard/forgot-password"
SIGN_IN: Final = "/dashboard/login"
INVALID_EMAIL: Final = "Enter the email address of your account."
TOO_SHORT: Final = f"Choose a password of {MIN_LENGTH} to {MAX_LENGTH} characters."
ResetTokenField = Annotated[str, Form(max_length=200)]


def _enabled(request: Request, runtime: Runtime) -> None:
    if not runtime.settings.password_reset_enabled:
        raise NotFound(f"The endpoint {request.method} {request.url.path} does not exist")


def _form(
    request: Request, runtime: Runtime, template: str, status_code: int = 200, **context: Any
) -> Response:
    return render_sign_in(
        request,
        runtime.settings,
        template,
        {"error": None, "notice": None, "email": "", **context},
        status_code=status_code,
    )


def _checked_form(request: Request, runtime: Runtime, csrf: str) -> None:
    _enabled(request, runtime)
    check_same_origin(request, runtime.settings)
    check_csrf(request.cookies.get(SIGN_IN_CSRF_COOKIE), csrf)


@router.get("/forgot-password")
async def forgot_password_form(request: Request, runtime: RuntimeDep) -> Response:
    _enabled(request, runtime)
    return _form(request, runtime, "forgot_password.html")


@router.post("/forgot-password", dependencies=[Depends(limit_sign_in_by_ip)])
async def forgot_password(
    request: Request,
    runtime: RuntimeDep,
    background: BackgroundTasks,
    email: EmailField = "",
    csrf: CsrfField = "",
) -> Response:
    _checked_form(request, runtime, csrf)
    try:
        try:
            address = normalise_email(email)
        except ValueError:
            raise BadRequest(INVALID_EMAIL) from None
        await reset.request_reset(
            reset_throttle(runtime.limiter, runtime.settings),
            background,
            runtime.sessions,
            runtime.settings,
            email=address,
            now=runtime.clock.now(),
        )
    except GatewayError as exc:
        return _form(
            request,
            runtime,
            "forgot_password.html",
            status_code=exc.status_code,
            error=exc.message,
            email=email,
        )
    return RedirectResponse(f"{SIGN_IN}?notice=reset-sent", status_code=303)


@router.get(RESET_PAGE.removeprefix("/dashboard"))
async def reset_password_form(
    request: Request, runtime: RuntimeDep, token: Annotated[str, Query(max_length=200)] = ""
) -> Response:
    _enabled(request, runtime)
    return _form(request, runtime, "reset_password.html", token=token)


@router.post(RESET_PAGE.removeprefix("/dashboard"), dependencies=[Depends(limit_sign_in_by_ip)])
async def reset_password(
    request: Request,
    session: Session,
    runtime: RuntimeDep,
    token: ResetTokenField = "",
    password: PasswordField = "",
    csrf: CsrfField = "",
) -> Response:
    _checked_form(request, runtime, csrf)
    try:
        if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
            raise BadRequest(TOO_SHORT)
        await reset.finish_password_reset(
            session, token=token, new_password=password, now=runtime.clock.now()
        )
    except GatewayError as exc:
        return _form(
            request,
            runtime,
            "reset_password.html",
            status_code=exc.status_code,
            error=exc.message,
            token=token,
        )
    return RedirectResponse(f"{SIGN_IN}?notice=password-reset", status_code=303)
