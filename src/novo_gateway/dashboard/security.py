"""What keeps the dashboards safe in a browser: cookies, CSRF tokens and security headers.

- The customer's login session (an `ns_` token, stored hashed in `login_sessions`) travels in an
  HttpOnly, SameSite=Lax cookie, Secure whenever the page is served over TLS.
- Every form carries a CSRF token. Signed in, it is an HMAC of the session cookie's value, so it
  needs no storage and changes with each sign-in; on a sign-in form (no session yet) it is a
  random value also set in a short-lived cookie (double submit). A cross-site `Origin` is refused
  as well.
- Pages are sent with a Content-Security-Policy that allows only this origin's script and style
  (no `unsafe-inline`, no third party), `no-store` caching, and no framing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Final
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from novo_gateway.billing.portal import origin_of
from novo_gateway.kit.config import Settings
from novo_gateway.kit.errors import Forbidden

SESSION_COOKIE: Final = "novo_session"
ADMIN_COOKIE: Final = "novo_admin"
SIGN_IN_CSRF_COOKIE: Final = "novo_sign_in"
SIGN_IN_CSRF_SECONDS: Final = 3600
CSRF_FIELD: Final = "csrf"
STRIPE_PORTAL_ORIGIN: Final = "https://billing.stripe.com"

CSRF_REFUSED: Final = (
    "This form has expired or was not sent from this site. Reload the page and try again."
)
CROSS_SITE_REFUSED: Final = "Forms may only be sent from this site."


def derived_csrf_token(secret: str, purpose: str = "csrf") -> str:
    """The CSRF token that goes with a cookie value (an HMAC of it; the value stays secret)."""
    return hmac.new(secret.encode(), purpose.encode(), hashlib.sha256).hexdigest()


def new_sign_in_token() -> str:
    """A random token for a sign-in form and its cookie."""
    return secrets.token_urlsafe(32)


def check_csrf(expected: str | None, given: str) -> None:
    """Refuse (403) unless the form's token equals the expected one."""
    if not expected or not given or not hmac.compare_digest(expected, given):
        raise Forbidden(CSRF_REFUSED)


def check_same_origin(request: Request, settings: Settings) -> None:
    """Refuse (403) a form whose `Origin` header names another site (browsers always send it)."""
    origin = request.headers.get("origin")
    if origin is None:
        return
    host = request.headers.get("host", "")
    if urlsplit(origin).netloc.lower() == host.lower() and host:
        return
    if settings.public_url and origin_of(origin) == origin_of(settings.public_url):
        return
    raise Forbidden(CROSS_SITE_REFUSED)


def is_tls(request: Request, settings: Settings) -> bool:
    """True when the browser reaches the gateway over https (directly or per PUBLIC_URL)."""
    return request.url.scheme == "https" or settings.public_url.lower().startswith("https://")


def set_cookie(
    response: Response,
    request: Request,
    settings: Settings,
    *,
    name: str,
    value: str,
    max_age: int,
    path: str,
) -> None:
    """An HttpOnly, SameSite=Lax cookie, Secure when served over TLS."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=path,
        httponly=True,
        samesite="lax",
        secure=is_tls(request, settings),
    )


def clear_cookie(
    response: Response, request: Request, settings: Settings, *, name: str, path: str = "/"
) -> None:
    response.delete_cookie(
        name, path=path, httponly=True, samesite="lax", secure=is_tls(request, settings)
    )


def portal_origin(settings: Settings) -> str:
    """Where the billing portal lives: Stripe's, or the emulator's host when one is set."""
    if settings.stripe_api_base:
        return origin_of(settings.stripe_api_base) or STRIPE_PORTAL_ORIGIN
    return STRIPE_PORTAL_ORIGIN


def content_security_policy(settings: Settings) -> str:
    """Only this origin's script and style, no inline code; forms post here (or to the portal,
    where the portal button's redirect goes)."""
    return "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self'",
            "connect-src 'self'",
            f"form-action 'self' {portal_origin(settings)}",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        )
    )


def security_headers(settings: Settings) -> dict[str, str]:
    """Headers of every dashboard page."""
    return {
        "Content-Security-Policy": content_security_policy(settings),
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "same-origin",
    }
