"""Jinja2 for the dashboards: templates shipped in the package, every value escaped.

Autoescaping is on for every template, and undefined names are errors, so a value that comes
from a user (a name, a key's label, Stripe's error text) is always shown as text.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.requests import Request
from starlette.responses import HTMLResponse

from novo_gateway import __version__
from novo_gateway.dashboard.security import (
    SIGN_IN_CSRF_COOKIE,
    SIGN_IN_CSRF_SECONDS,
    new_sign_in_token,
    security_headers,
    set_cookie,
)
from novo_gateway.kit.config import Settings
from novo_gateway.metering import pricing


def _when(value: datetime | None) -> str:
    """`2026-11-26 14:05 UTC`; a dash when unknown."""
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _day(value: datetime | date | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, datetime):
        value = value.astimezone(UTC).date()
    return value.strftime("%b %-d, %Y")


def _duration(value: timedelta | None) -> str:
    """`45 s`, `12 min`, `3 h 5 min`, `2 d 4 h`; `none` when there is nothing to wait for."""
    if value is None:
        return "none"
    seconds = int(value.total_seconds())
    if seconds < 60:
        return f"{seconds} s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if hours == 0:
        return f"{minutes} min"
    if days == 0:
        return f"{hours} h {minutes % 60} min"
    return f"{days} d {hours % 24} h"


def _number(value: int | float | Decimal) -> str:
    return f"{value:,}"


def _amount(value: Decimal | int | float, currency: str = "USD") -> str:
    """An amount in currency units, in cents rounded half up as Stripe rounds: `$1.50`, or
    `1.50 EUR` for other currencies."""
    text = f"{pricing.to_cents(Decimal(value)):,f}"
    return f"${text}" if currency.upper() == "USD" else f"{text} {currency.upper()}"


def safe_url(value: str | None) -> str | None:
    """The URL when it is plain http(s), else None (never a `javascript:` link)."""
    if not value:
        return None
    try:
        scheme = urlsplit(value).scheme.lower()
    except ValueError:
        return None
    return value if scheme in {"http", "https"} else None


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("novo_gateway", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        when=_when,
        day=_day,
        duration=_duration,
        number=_number,
        amount=_amount,
        exact=pricing.format_cost,  # an estimate to 4 decimal places, beside its charge in cents
        safe_url=safe_url,
    )
    env.globals["version"] = __version__
    return env


def render(
    settings: Settings, template: str, context: dict[str, Any], *, status_code: int = 200
) -> HTMLResponse:
    """A page from a template, with the dashboards' security headers."""
    html = environment().get_template(template).render(**context)
    return HTMLResponse(html, status_code=status_code, headers=security_headers(settings))


def render_sign_in(
    request: Request,
    settings: Settings,
    template: str,
    context: dict[str, Any],
    *,
    status_code: int,
) -> HTMLResponse:
    """A sign-in form with a fresh double-submit CSRF token, in the form and in a cookie."""
    token = new_sign_in_token()
    response = render(settings, template, {**context, "csrf": token}, status_code=status_code)
    set_cookie(
        response,
        request,
        settings,
        name=SIGN_IN_CSRF_COOKIE,
        value=token,
        max_age=SIGN_IN_CSRF_SECONDS,
        path="/",
    )
    return response
