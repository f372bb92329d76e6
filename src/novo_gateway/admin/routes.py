"""Routes of the operator dashboard: sign in and out, the overview, retrying a dead report.

Read-mostly: the one action is the CLI's `retry-report`. Every action, and every refused
sign-in, is logged with the client's address.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import RedirectResponse, Response

from novo_gateway.accounts.deps import limit_sign_in_by_ip
from novo_gateway.admin import service
from novo_gateway.admin.auth import (
    SIGN_IN_FIRST,
    WRONG_TOKEN,
    Operator,
    check_admin_token,
    close_admin_session,
    not_found,
    open_admin_session,
    operator_of,
)
from novo_gateway.billing import operations
from novo_gateway.dashboard.forms import CsrfField, TokenField
from novo_gateway.dashboard.security import (
    ADMIN_COOKIE,
    SIGN_IN_CSRF_COOKIE,
    check_csrf,
    check_same_origin,
    clear_cookie,
    set_cookie,
)
from novo_gateway.dashboard.templating import render, render_sign_in
from novo_gateway.kit.deps import Session, client_ip
from novo_gateway.kit.errors import Throttled, Unauthorized
from novo_gateway.runtime import Runtime, RuntimeDep

log = logging.getLogger("novo_gateway.admin")
router = APIRouter(prefix="/admin", include_in_schema=False)

HOME: Final = "/admin"
NOTICES: Final[dict[str, str]] = {
    "signed-out": "You are signed out.",
    "requeued": "The report is back in the queue; the reporter sends it on its next run.",
    "not-dead": "That report is not dead-lettered (already retried or sent).",
}
ReportId = Annotated[str, Path(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_\-]+$")]


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _sign_in_page(
    request: Request, runtime: Runtime, *, error: str | None = None, status_code: int = 401
) -> Response:
    notice = NOTICES.get(request.query_params.get("notice", ""))
    return render_sign_in(
        request,
        runtime.settings,
        "admin_login.html",
        {"error": error, "notice": notice},
        status_code=status_code,
    )


async def _form_operator(
    request: Request, session: Session, runtime: Runtime, csrf: str
) -> Operator:
    """The operator sending a form: signed in, same origin, with the form's CSRF token."""
    check_same_origin(request, runtime.settings)
    operator = await operator_of(request, session, runtime)
    if operator is None:
        raise Unauthorized(SIGN_IN_FIRST)
    if operator.csrf is not None:
        check_csrf(operator.csrf, csrf)
    return operator


@router.get("")
async def admin_page(request: Request, session: Session, runtime: RuntimeDep) -> Response:
    operator = await operator_of(request, session, runtime)
    if operator is None:
        return _sign_in_page(request, runtime)
    view = await service.overview(session, runtime.settings, now=runtime.clock.now())
    context: dict[str, Any] = {
        "view": view,
        "csrf": operator.csrf or "",
        "signed_in_with_cookie": operator.via == "cookie",
        "notice": NOTICES.get(request.query_params.get("notice", "")),
        "error": None,
    }
    return render(runtime.settings, "admin.html", context)


@router.post("/login", dependencies=[Depends(limit_sign_in_by_ip)])
async def admin_sign_in(
    request: Request,
    session: Session,
    runtime: RuntimeDep,
    token: TokenField = "",
    csrf: CsrfField = "",
) -> Response:
    if not runtime.settings.admin_token:
        raise not_found(request)
    check_same_origin(request, runtime.settings)
    check_csrf(request.cookies.get(SIGN_IN_CSRF_COOKIE), csrf)
    try:
        right = await check_admin_token(request, runtime, token, via="sign-in")
    except Throttled as exc:  # shown on the form, as a wrong token is
        page = _sign_in_page(request, runtime, error=exc.message, status_code=exc.status_code)
        page.headers.update(exc.headers)
        return page
    if not right:
        return _sign_in_page(request, runtime, error=WRONG_TOKEN)
    log.info("admin: operator signed in from %s", client_ip(request, runtime.settings))
    value = await open_admin_session(session, runtime)
    response = _redirect(HOME)
    set_cookie(
        response, request, runtime.settings, name=ADMIN_COOKIE, value=value,
        max_age=runtime.settings.session_ttl_seconds, path=HOME,
    )  # fmt: skip
    clear_cookie(response, request, runtime.settings, name=SIGN_IN_CSRF_COOKIE)
    return response


@router.post("/logout")
async def admin_sign_out(
    request: Request, session: Session, runtime: RuntimeDep, csrf: CsrfField = ""
) -> Response:
    operator = await _form_operator(request, session, runtime, csrf)
    if operator.cookie is not None:
        await close_admin_session(session, operator.cookie, now=runtime.clock.now())
    log.info("admin: operator signed out from %s", client_ip(request, runtime.settings))
    response = _redirect(f"{HOME}?notice=signed-out")
    clear_cookie(response, request, runtime.settings, name=ADMIN_COOKIE, path=HOME)
    return response


@router.post("/reports/{report_id}/retry")
async def retry_report(
    report_id: ReportId,
    request: Request,
    session: Session,
    runtime: RuntimeDep,
    csrf: CsrfField = "",
) -> Response:
    await _form_operator(request, session, runtime, csrf)
    requeued = await operations.requeue_dead(runtime.sessions, runtime.clock, report_id)
    log.info(
        "admin: retry of dead report %s requested from %s (%d requeued)",
        report_id,
        client_ip(request, runtime.settings),
        requeued,
    )
    notice = "requeued" if requeued else "not-dead"
    return _redirect(f"{HOME}?notice={notice}#reporter")
