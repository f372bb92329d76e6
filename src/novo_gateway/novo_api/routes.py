"""The built-in Novo API under /api/v1: thin handlers over `novo_api.service`.

The metered path (gateway/middleware.py) authenticates, rate-limits and records every call here
except `/api/v1/health`, which is free and needs no key. Handlers touch no database.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from novo_gateway.kit.errors import (
    BadRequest,
    Conflict,
    PayloadTooLarge,
    PaymentRequired,
    RateLimitExceeded,
    Unauthorized,
    UnprocessableContent,
    error_responses,
)
from novo_gateway.novo_api import service
from novo_gateway.novo_api.schemas import (
    MAX_BULK_ITEMS,
    AnalyticsResponse,
    ApiHealth,
    AudienceAnalysis,
    AudienceAnalyzeRequest,
    BulkProcessRequest,
    BulkResult,
    CampaignGenerateRequest,
    CampaignResponse,
    InsightsResponse,
    Meta,
    NotificationResponse,
    NotificationSendRequest,
    Period,
)
from novo_gateway.runtime import RuntimeDep

router = APIRouter(prefix=service.API_PREFIX, tags=["Novo API"])

# 409 and 422 answer a misused Idempotency-Key (gateway/idempotency.py).
_METERED_GET = error_responses(
    BadRequest, Unauthorized, PaymentRequired, Conflict, UnprocessableContent, RateLimitExceeded
)
_METERED_POST = error_responses(
    BadRequest,
    Unauthorized,
    PaymentRequired,
    Conflict,
    PayloadTooLarge,
    UnprocessableContent,
    RateLimitExceeded,
)


def _meta(request: Request, units: int = service.UNITS_PER_CALL) -> Meta:
    """The `meta` block: the request id set by RequestContextMiddleware and the billed units."""
    return Meta(request_id=getattr(request.state, "request_id", ""), billed_units=units)


@router.get("/health", summary="Health of the Novo API (free, no key)")
async def api_health(request: Request, runtime: RuntimeDep) -> ApiHealth:
    return service.health(runtime.clock.now(), _meta(request, units=0))


@router.get("/insights", summary="Marketing insights", responses=_METERED_GET)
async def get_insights(request: Request, runtime: RuntimeDep) -> InsightsResponse:
    return service.insights(runtime.clock.now(), _meta(request))


@router.post("/audience/analyze", summary="Analyze an audience", responses=_METERED_POST)
async def analyze_audience(
    body: AudienceAnalyzeRequest, request: Request, runtime: RuntimeDep
) -> AudienceAnalysis:
    return service.analyze_audience(body, runtime.clock.now(), _meta(request))


@router.post("/campaign/generate", summary="Generate a draft campaign", responses=_METERED_POST)
async def generate_campaign(
    body: CampaignGenerateRequest, request: Request, runtime: RuntimeDep
) -> CampaignResponse:
    return service.generate_campaign(body, runtime.clock.now(), _meta(request))


@router.post("/notifications/send", summary="Queue a notification", responses=_METERED_POST)
async def send_notification(
    body: NotificationSendRequest, request: Request, runtime: RuntimeDep
) -> NotificationResponse:
    return service.send_notification(body, runtime.clock.now(), _meta(request))


@router.get("/analytics", summary="Analytics for a period", responses=_METERED_GET)
async def get_analytics(
    request: Request,
    runtime: RuntimeDep,
    period: Annotated[Period, Query(description="How far back: 1d, 7d, 30d or 90d.")] = "7d",
) -> AnalyticsResponse:
    return service.analytics(period, runtime.clock.now(), _meta(request))


@router.post(
    "/bulk/process",
    summary=f"Process up to {MAX_BULK_ITEMS} items in one call (billed as one call)",
    responses=_METERED_POST,
)
async def process_bulk(
    body: BulkProcessRequest, request: Request, runtime: RuntimeDep
) -> BulkResult:
    return service.process_bulk(body, runtime.clock.now(), _meta(request))
