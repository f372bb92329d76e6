"""The pages around the API: the home page, the health check and the Prometheus metrics."""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import Final, Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel

from novo_gateway import __version__
from novo_gateway.dashboard.assets import asset
from novo_gateway.home.health import Part, State, readiness
from novo_gateway.home.page import CSS, CSS_PATH, SECURITY_HEADERS, render_home
from novo_gateway.kit import metrics
from novo_gateway.kit.errors import ErrorBody, ServiceUnavailable, Unauthorized
from novo_gateway.runtime import RuntimeDep

router = APIRouter()


class Health(BaseModel):
    status: Literal["healthy", "unhealthy"]
    version: str
    timestamp: datetime
    database: Literal["ok", "error"]
    # Each part a metered call needs, and its state (see /health/ready).
    checks: dict[Part, State]


class Ready(BaseModel):
    status: Literal["ready"]
    checks: dict[Part, State]


class Live(BaseModel):
    status: Literal["alive"]
    version: str


@router.get(
    "/health",
    summary="Gateway health: healthy when ready to serve metered calls",
    tags=["Service"],
    responses={503: {"model": Health, "description": "A part is not ready (see checks)"}},
)
async def health(response: Response, runtime: RuntimeDep) -> Health:
    ready = await readiness(runtime)
    if not ready.ready:
        response.status_code = 503
    return Health(
        status="healthy" if ready.ready else "unhealthy",
        version=__version__,
        timestamp=runtime.clock.now(),
        database="ok" if ready.parts["database"] == "ok" else "error",
        checks=ready.parts,
    )


@router.get("/health/live", summary="The process answers (liveness)", tags=["Service"])
async def health_live() -> Live:
    return Live(status="alive", version=__version__)


@router.get(
    "/health/ready",
    summary="Ready to serve metered calls (readiness)",
    tags=["Service"],
    responses={503: {"model": ErrorBody, "description": "A part is not ready; it is named"}},
)
async def health_ready(runtime: RuntimeDep) -> Ready:
    ready = await readiness(runtime)
    if not ready.ready:
        failing = ", ".join(f"{part} ({ready.parts[part]})" for part in ready.failing)
        raise ServiceUnavailable(f"Not ready: {failing}.", checks=ready.parts)
    return Ready(status="ready", checks=ready.parts)


@router.get("/", include_in_schema=False)
async def home(request: Request, runtime: RuntimeDep) -> HTMLResponse:
    settings = runtime.settings
    base_url = settings.public_url or str(request.base_url)
    page = render_home(settings, base_url, __version__)
    return HTMLResponse(page, headers=SECURITY_HEADERS)


@router.get(CSS_PATH, include_in_schema=False)
async def home_css() -> Response:
    headers = {"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"}
    return Response(CSS, media_type="text/css", headers=headers)


FAVICON: Final = asset("favicon.ico")  # 16 x 16, the dashboards' indigo


@router.get("/favicon.ico", include_in_schema=False)
async def favicon() -> Response:
    """The site's icon (browsers ask for it on every page): cached for a day."""
    headers = {"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"}
    return Response(FAVICON, media_type="image/x-icon", headers=headers)


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(request: Request, runtime: RuntimeDep) -> Response:
    token = runtime.settings.metrics_token
    if token and not _bearer_is(request.headers.get("authorization", ""), token):
        raise Unauthorized(
            "Metrics need the scrape token: send `Authorization: Bearer <METRICS_TOKEN>`.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    body, content_type = metrics.render()
    return Response(body, headers={"Content-Type": content_type})


def _bearer_is(authorization: str, token: str) -> bool:
    scheme, _, given = authorization.partition(" ")
    matches = hmac.compare_digest(given.strip().encode(), token.encode())
    return scheme.lower() == "bearer" and matches
