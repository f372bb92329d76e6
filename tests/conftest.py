"""Shared fixtures: real databases (a SQLite file and PostgreSQL), Redis, and the app over HTTP.

Every test that takes `settings` (or anything built on it) runs once on SQLite and once on
PostgreSQL. PostgreSQL and Redis are expected at 127.0.0.1 (override with DATABASE_URL_TEST and
REDIS_URL_TEST); when they are missing the tests that need them are skipped, except under CI,
where a missing service is an error.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import text

from novo_gateway.app import create_app
from novo_gateway.kit.clock import FrozenClock
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import create_engine
from novo_gateway.migrate import upgrade
from novo_gateway.models import Base

PG_URL = os.environ.get("DATABASE_URL_TEST", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("REDIS_URL_TEST", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

# Settings that keep tests independent of a developer's `.env` and environment.
BASE_SETTINGS: dict[str, Any] = {
    "_env_file": None,
    "stripe_secret_key": "",
    "redis_url": "",
    "database_url": "",
    "log_level": "warning",
}


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip (or, under CI, fail) when a real service the test needs is not running."""
    if _reachable(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def make_test_settings(**overrides: Any) -> Settings:
    return Settings(**{**BASE_SETTINGS, **overrides})


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (migrating once is much faster)."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(make_test_settings(database_path=path))
    return path


@contextmanager
def new_pg_database(prefix: str) -> Iterator[str]:
    """An empty PostgreSQL database of its own (its URL), dropped at the end."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin_url = PG_URL.rsplit("/", 1)[0] + "/postgres"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test run, migrated once, dropped at the end."""
    with new_pg_database("novo_test") as url:
        upgrade(make_test_settings(database_url=url))
        yield url


async def _truncate_all(url: str) -> None:
    engine = create_engine(make_test_settings(database_url=url))
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    await engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_overrides(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """Settings overrides pointing at an empty, migrated database of the chosen backend."""
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "gateway.db"
        shutil.copyfile(template, path)
        return {"database_path": path}
    url: str = request.getfixturevalue("pg_database")
    asyncio.run(_truncate_all(url))
    return {"database_url": url}


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def make_settings(db_overrides: dict[str, Any]) -> Callable[..., Settings]:
    """Build settings on this test's database, with any overrides."""

    def build(**overrides: Any) -> Settings:
        return make_test_settings(**{**db_overrides, **overrides})

    return build


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
def redis_url() -> str:
    require_service("Redis", "127.0.0.1", 6379)
    return REDIS_URL


class AppClient(httpx.AsyncClient):
    """An HTTP client bound to a running app; `app` gives access to its runtime."""

    app: Any


@pytest.fixture
async def start_app() -> AsyncIterator[Callable[..., Any]]:
    """Start an app (lifespan included) and get an HTTP client for it; stopped after the test."""
    started: list[tuple[AppClient, Any]] = []

    async def start(settings: Settings, clock: FrozenClock | None = None) -> AppClient:
        app = create_app(settings, clock=clock)
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
        client = AppClient(transport=transport, base_url="http://gateway.test")
        client.app = app
        started.append((client, lifespan))
        return client

    yield start
    for client, lifespan in reversed(started):
        await client.aclose()
        await lifespan.__aexit__(None, None, None)


@pytest.fixture
async def client(settings: Settings, start_app: Callable[..., Any]) -> AppClient:
    """The gateway on this test's database, with default settings."""
    app_client: AppClient = await start_app(settings)
    return app_client
