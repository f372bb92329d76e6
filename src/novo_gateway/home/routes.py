"""The pages around the API: the home page, the health check and the Prometheus metrics."""

from __future__ import annotations

import asyncio
import hmac
import logging
from datetime import datetime
from typing import Final, Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from novo_gateway import __version__, metrics
from novo_gateway.deps import RuntimeDep
from novo_gateway.errors import Unauthorized
from novo_gateway.home.page import CSS, CSS_PATH, SECURITY_HEADERS, render_home

log = logging.getLogger("novo_gateway.health")
router = APIRouter()

# A health probe must answer quickly even when the database hangs.
DATABASE_CHECK_TIMEOUT_SECONDS: Final = 3.0


class Health(BaseModel):
    status: Literal["healthy", "unhealthy"]
    version: str
    timestamp: datetime
    database: Literal["ok", "error"]


async def database_ok(engine: AsyncEngine) -> bool:
    """True when `SELECT 1` succeeds on the gateway's database within the timeout."""
    try:
        async with asyncio.timeout(DATABASE_CHECK_TIMEOUT_SECONDS):
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means unhealthy; the probe itself must not fail
        log.warning("database health check failed: %s", type(exc).__name__)
        return False
    return True


@router.get(
    "/health",
    summary="Gateway health, with a database check",
    tags=["Service"],
    responses={503: {"model": Health, "description": "The database is unreachable"}},
)
async def health(response: Response, runtime: RuntimeDep) -> Health:
    ok = await database_ok(runtime.engine)
    if not ok:
        response.status_code = 503
    return Health(
        status="healthy" if ok else "unhealthy",
        version=__version__,
        timestamp=runtime.clock.now(),
        database="ok" if ok else "error",
    )


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
