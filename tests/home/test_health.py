"""`GET /health`: the gateway's version and a real `SELECT 1` on its database."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from novo_gateway import __version__
from novo_gateway.kit.config import Settings
from tests.conftest import AppClient, make_test_settings
from tests.gateway.helpers import make_account
from tests.integration.processes import free_port


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


async def test_live_answers_without_touching_the_database(client: AppClient) -> None:
    response = await client.get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "alive", "version": __version__}


async def test_ready_names_every_part_it_checked(client: AppClient) -> None:
    response = await client.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"database": "ok", "schema": "ok", "usage_writer": "ok"},
    }


async def test_a_deleted_sqlite_file_is_not_ready(
    start_app: Callable[..., Any], sqlite_template: Path, tmp_path: Path
) -> None:
    database = tmp_path / "gateway.db"
    shutil.copyfile(sqlite_template, database)
    client = await start_app(make_test_settings(database_path=database))
    assert (await client.get("/health/ready")).status_code == 200
    database.unlink()
    ready = await client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["error"] == "Service Unavailable"
    assert ready.json()["message"] == "Not ready: database (error), schema (error)."
    health = await client.get("/health")
    assert health.status_code == 503
    assert (health.json()["status"], health.json()["database"]) == ("unhealthy", "error")


async def test_a_schema_behind_the_code_is_not_ready(client: AppClient) -> None:
    engine = client.app.state.runtime.engine
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    ready = await client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["checks"]["schema"] == "behind"
    assert ready.json()["checks"]["database"] == "ok"


async def test_redis_down_is_not_ready(
    make_settings: Callable[..., Settings], start_app: Callable[..., Any]
) -> None:
    # Nothing listens on this port: Redis is configured but does not answer.
    client = await start_app(make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    ready = await client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["checks"]["redis"] == "error"


async def test_redis_up_is_checked(
    make_settings: Callable[..., Settings], start_app: Callable[..., Any], redis_url: str
) -> None:
    client = await start_app(make_settings(redis_url=redis_url))
    assert (await client.get("/health/ready")).json()["checks"]["redis"] == "ok"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs: a real file system that fills up (mounting needs root, as in CI)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_a_full_disk_is_not_ready_and_the_usage_writer_failing_is_named(
    small_disk: Path, start_app: Callable[..., Any], sqlite_template: Path, tmp_path: Path
) -> None:
    database = small_disk / "gateway.db"
    shutil.copyfile(sqlite_template, database)
    client = await start_app(make_test_settings(database_path=database))
    key = (await make_account(client)).key
    assert (await client.get("/health/ready")).status_code == 200
    # Fill the disk to the last byte.
    with (small_disk / "filler").open("wb", buffering=0) as filler, contextlib.suppress(OSError):
        while True:
            filler.write(b"\0" * 65536)
    called = await client.get("/api/v1/insights", headers={"X-API-Key": key})
    assert called.status_code == 503
    ready = await client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"] == "error"
    assert ready.json()["checks"]["usage_writer"] == "failing"
    assert (await client.get("/health")).status_code == 503

    (small_disk / "filler").unlink()
    assert (await client.get("/api/v1/insights", headers={"X-API-Key": key})).status_code == 200
    assert (await client.get("/health/ready")).status_code == 200


async def test_a_schema_a_newer_release_migrated_stays_ready(client: AppClient) -> None:
    engine = client.app.state.runtime.engine
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = 'from_a_newer_release'"))
    ready = await client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"]["schema"] == "ahead"
