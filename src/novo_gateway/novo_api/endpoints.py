"""The built-in endpoints, declared once: path, method, inputs, service call and units.

The FastAPI routes (routes.py), the fast path's renderers (fast.py) and the set of built-in paths
(which the upstream proxy's catch-all never takes) are all derived from `ENDPOINTS`. Adding an
endpoint is one entry here and its service function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from inspect import Parameter
from typing import Annotated, Final, Literal

from fastapi import Query
from pydantic import BaseModel

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
    NotificationResponse,
    NotificationSendRequest,
    Period,
)

API_PREFIX: Final = "/api/v1"
# Every metered call is billed one unit, bulk included (one call, one unit: simple to predict).
UNITS_PER_CALL: Final = 1


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One built-in endpoint.

    `handle` is the service function: called with the validated body (`body`) or the query
    parameters (`query`, in order) if any, then the time and the `meta` block. An endpoint with
    a body or no input at all is served by the fast path too.
    """

    name: str  # the handler's name, hence the OpenAPI operation id
    method: Literal["GET", "POST"]
    path: str  # under API_PREFIX
    summary: str
    response: type[BaseModel]
    handle: Callable[..., BaseModel]
    body: type[BaseModel] | None = None
    query: tuple[Parameter, ...] = ()
    units: int = UNITS_PER_CALL
    free: bool = False  # no key, not metered (GET and HEAD)

    @property
    def full_path(self) -> str:
        return API_PREFIX + self.path

    @property
    def fast(self) -> bool:
        return not self.query


ENDPOINTS: Final = (
    Endpoint(
        "api_health",
        "GET",
        "/health",
        "Health of the Novo API (free, no key)",
        ApiHealth,
        service.health,
        units=0,
        free=True,
    ),
    Endpoint(
        "get_insights", "GET", "/insights", "Marketing insights", InsightsResponse, service.insights
    ),
    Endpoint(
        "analyze_audience",
        "POST",
        "/audience/analyze",
        "Analyze an audience",
        AudienceAnalysis,
        service.analyze_audience,
        body=AudienceAnalyzeRequest,
    ),
    Endpoint(
        "generate_campaign",
        "POST",
        "/campaign/generate",
        "Generate a draft campaign",
        CampaignResponse,
        service.generate_campaign,
        body=CampaignGenerateRequest,
    ),
    Endpoint(
        "send_notification",
        "POST",
        "/notifications/send",
        "Queue a notification",
        NotificationResponse,
        service.send_notification,
        body=NotificationSendRequest,
    ),
    Endpoint(
        "get_analytics",
        "GET",
        "/analytics",
        "Analytics for a period",
        AnalyticsResponse,
        service.analytics,
        query=(
            Parameter(
                "period",
                Parameter.KEYWORD_ONLY,
                default="7d",
                annotation=Annotated[
                    Period, Query(description="How far back: 1d, 7d, 30d or 90d.")
                ],
            ),
        ),
    ),
    Endpoint(
        "process_bulk",
        "POST",
        "/bulk/process",
        f"Process up to {MAX_BULK_ITEMS} items in one call (billed as one call)",
        BulkResult,
        service.process_bulk,
        body=BulkProcessRequest,
    ),
)

# Paths served by the built-in endpoints; the upstream proxy's catch-all never takes these.
BUILTIN_PATHS: Final = frozenset(endpoint.full_path for endpoint in ENDPOINTS)
FREE_PATHS: Final = frozenset(endpoint.full_path for endpoint in ENDPOINTS if endpoint.free)
_UNITS: Final[dict[tuple[str, str], int]] = {
    (endpoint.method, endpoint.full_path): endpoint.units for endpoint in ENDPOINTS
}


def units_of(method: str, full_path: str) -> int:
    """The units a call to this route bills: its entry's, or UNITS_PER_CALL for a route the
    table does not hold."""
    return _UNITS.get(("GET" if method == "HEAD" else method, full_path), UNITS_PER_CALL)
