"""The usage views: never billed, open whatever the subscription state (auth: `CurrentAccount`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from novo_gateway.accounts.deps import CurrentAccount
from novo_gateway.billing.queries import carried_into
from novo_gateway.billing.usage_schemas import EndpointUsageResponse, UsageResponse
from novo_gateway.kit.deps import ClockDep, Session, SettingsDep
from novo_gateway.kit.errors import (
    BadRequest,
    RateLimitExceeded,
    ServiceUnavailable,
    Unauthorized,
    error_responses,
)
from novo_gateway.metering import queries
from novo_gateway.metering.deps import AccountReadsDep

router = APIRouter(prefix="/billing", tags=["usage"])

# 429: the account's limit on these endpoints, or its heavy reads already running; 503: a read
# stopped by the statement timeout (metering/reads.py).
_ERRORS = error_responses(BadRequest, Unauthorized, RateLimitExceeded, ServiceUnavailable)


@router.get("/usage", responses=_ERRORS)
async def get_usage(
    user: CurrentAccount,
    session: Session,
    reads: AccountReadsDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> UsageResponse:
    """Usage and estimated cost of the current billing period, and the last 30 days; late usage
    of earlier periods carried over to this period's invoice."""
    async with reads.bounded(session, user.id, heavy=False):
        usage = await queries.usage_summary(session, user, settings, now=clock.now())
        carried = await carried_into(session, user.id, usage.period.start, usage.period.end)
    return UsageResponse.of(usage, carried)


@router.get("/usage/endpoints", responses=_ERRORS)
async def get_endpoint_usage(
    user: CurrentAccount,
    session: Session,
    reads: AccountReadsDep,
    clock: ClockDep,
    days: Annotated[int, Query(ge=1, le=366, description="How many days back, 1 to 366.")] = 30,
) -> EndpointUsageResponse:
    """Calls, billed units and latency per endpoint over the last `days` days."""
    async with reads.bounded(session, user.id):
        period, stats = await queries.endpoint_usage(session, user.id, now=clock.now(), days=days)
    return EndpointUsageResponse.of(period, days, stats)
