"""`GET /health`: the gateway's version and a real `SELECT 1` on its database."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import create_async_engine

from novo_gateway import __version__
from tests.conftest import AppClient


async def test_health_reports_healthy_with_the_database_checked(client: AppClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert body["version"] == __version__
    assert body["database"] == "ok"
    assert datetime.fromisoformat(body["timestamp"]).tzinfo is not None


async def test_health_is_503_unhealthy_when_the_database_is_unreachable(
    client: AppClient, tmp_path: Path
) -> None:
    runtime = client.app.state.runtime
    working = runtime.engine
    # A real engine on a database that cannot be opened (its directory does not exist).
    broken = create_async_engine(f"sqlite+aiosqlite:///{tmp_path}/missing/dir/gateway.db")
    runtime.engine = broken
    try:
        response = await client.get("/health")
    finally:
        runtime.engine = working
        await broken.dispose()
    assert response.status_code == 503
    body = response.json()
    assert (body["status"], body["database"]) == ("unhealthy", "error")
    assert body["version"] == __version__


async def test_health_is_documented_with_its_503(client: AppClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert {"200", "503"} <= set(spec["paths"]["/health"]["get"]["responses"])
