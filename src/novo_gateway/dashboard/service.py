"""What the customer dashboard shows, gathered from the services that own each part.

Usage comes from `metering.queries`, keys from `keys.service`, the subscription, invoices and the
portal from `billing.service`. Nothing here writes but through those services.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession

from novo_gateway.accounts.models import SUBSCRIPTION_ENDED, User
from novo_gateway.billing import portal
from novo_gateway.billing import service as billing
from novo_gateway.billing.queries import carried_into
from novo_gateway.billing.schemas import Invoice, Upcoming
from novo_gateway.billing.usage_schemas import CarriedOver, CurrentPeriod, UsageResponse
from novo_gateway.dashboard.chart import UsageChart, usage_chart
from novo_gateway.keys import service as keys
from novo_gateway.keys.schemas import ApiKeyInfo
from novo_gateway.kit.errors import GatewayError
from novo_gateway.metering import queries as metering
from novo_gateway.runtime import Runtime

log = logging.getLogger("novo_gateway.dashboard")

# Stripe is read live for invoices; a slow Stripe must not hold the whole page.
INVOICES_TIMEOUT_SECONDS: Final = 8.0
INVOICES_SLOW = "Your invoices could not be loaded from Stripe just now. Reload to try again."
MAX_PLOT_DAYS: Final = 366


@dataclass(frozen=True, slots=True)
class Invoices:
    invoices: list[Invoice]
    upcoming: Upcoming | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Dashboard:
    """Everything on the customer's page."""

    user: User
    usage: CurrentPeriod  # the same figures, formatted the same way, as GET /billing/usage
    carried: CarriedOver  # late usage of earlier periods on this period's invoice (the same)
    chart: UsageChart
    endpoints: list[metering.EndpointStats]
    endpoint_days: int
    keys: list[ApiKeyInfo]
    subscription: billing.SubscriptionView
    invoices: Invoices


def period_days(period: metering.TimeRange) -> tuple[date, date]:
    """The first and last UTC day of a billing period (its end is exclusive)."""
    first = period.start.astimezone(UTC).date()
    last = (period.end - timedelta(microseconds=1)).astimezone(UTC).date()
    return first, max(first, last)


async def period_series(
    session: AsyncSession,
    user: User,
    summary: metering.UsageSummary,
    *,
    now: datetime,
) -> list[tuple[date, int]]:
    """Billed units per UTC day of the current period, from its first day to today.

    The ledger's daily view counts whole UTC days, and a period may start in the middle of one:
    the first day is given what the period total leaves after the other days, so the days add
    up to exactly what `/billing/usage` calls `totalCalls`.
    """
    first, _last = period_days(summary.period)
    today = now.astimezone(UTC).date()
    count = min(MAX_PLOT_DAYS, max(1, (today - first).days + 1))
    days = await metering.daily_usage(session, user.id, now=now, days=count)
    series = [(d.day, d.billable_units) for d in days]
    rest = sum(units for _, units in series[1:])
    series[0] = (series[0][0], max(0, summary.billable_units - rest))
    return series


async def load_invoices(runtime: Runtime, user: User) -> Invoices:
    """The account's invoices and the upcoming one; a Stripe problem becomes a message."""
    try:
        async with asyncio.timeout(INVOICES_TIMEOUT_SECONDS):
            listed, upcoming = await billing.invoices(runtime.stripe, user)
    except GatewayError as exc:
        return Invoices([], None, exc.message)
    except TimeoutError:
        log.warning("invoices for the dashboard took too long")
        return Invoices([], None, INVOICES_SLOW)
    return Invoices(
        [Invoice.of(i) for i in listed], Upcoming.of(upcoming) if upcoming else None, None
    )


async def dashboard(session: AsyncSession, runtime: Runtime, user: User) -> Dashboard:
    """Gather the customer's page: usage and its plot, endpoints, keys and billing."""
    settings, now = runtime.settings, runtime.clock.now()
    summary = await metering.usage_summary(session, user, settings, now=now)
    carried = await carried_into(session, user.id, summary.period.start, summary.period.end)
    usage = UsageResponse.of(summary, carried)
    series = await period_series(session, user, summary, now=now)
    first, last = period_days(summary.period)
    _period, endpoints = await metering.endpoint_usage(session, user.id, now=now, days=len(series))
    rows = await keys.list_keys(session, user.id)
    grace = timedelta(days=settings.stripe_past_due_grace_days)
    return Dashboard(
        user=user,
        usage=usage.current_period,
        carried=usage.carried_over,
        chart=usage_chart(
            series, first_day=first, last_day=last, free_tier=settings.free_tier_calls
        ),
        endpoints=endpoints,
        endpoint_days=len(series),
        keys=[
            ApiKeyInfo.of(k, now=now, pending_last_use=runtime.keys.pending_last_use(k.id))
            for k in reversed(rows)
        ],
        subscription=replace(
            billing.subscription_view(user, now=now, grace=grace),
            payment_method_on_file=await load_payment_method(runtime, user),
        ),
        invoices=await load_invoices(runtime, user),
    )


async def load_payment_method(runtime: Runtime, user: User) -> bool | None:
    """Whether Stripe holds a card for the account (None: unknown, so no banner)."""
    if not user.subscription_id or user.subscription_status in SUBSCRIPTION_ENDED:
        return None
    try:
        async with asyncio.timeout(INVOICES_TIMEOUT_SECONDS):
            return await billing.payment_method_on_file(runtime.stripe, user)
    except TimeoutError:
        log.warning("the payment method for the dashboard took too long")
        return None


def portal_return_url(base_url: str, runtime: Runtime) -> str | None:
    """Where the portal should send the customer back: this dashboard, when its origin is
    allowed (PORTAL_RETURN_ORIGINS); else None, the gateway's default."""
    url = base_url.rstrip("/") + "/dashboard"
    allowed = portal.allowed_origins(runtime.settings)
    return url if portal.origin_of(url) in allowed else None
