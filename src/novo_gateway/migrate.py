"""Runs the Alembic migrations in `migrations/` against the configured database."""

from __future__ import annotations

import asyncio
from functools import cache
from pathlib import Path
from typing import Literal

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import create_engine

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def alembic_config(settings: Settings | None = None) -> Config:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    if settings is not None:
        config.attributes["settings"] = settings
    return config


def upgrade(settings: Settings, revision: str = "head") -> list[str]:
    """Bring the database schema up to `revision` (blocking; call outside the event loop).

    Returns the revisions applied, oldest first, each as "id (description)"."""
    config = alembic_config(settings)
    applied: list[str] = []
    config.attributes["applied"] = applied
    command.upgrade(config, revision)
    return applied


@cache
def head_revision() -> str:
    """The revision the code's models expect: the newest migration."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "migrations/ holds no revision"
    return head


@cache
def _known_revisions() -> frozenset[str]:
    script = ScriptDirectory.from_config(alembic_config())
    return frozenset(r.revision for r in script.walk_revisions())


SchemaState = Literal["ok", "behind", "ahead"]


def schema_state(revision: str | None) -> SchemaState:
    """How the database's revision stands to the code's: at head, behind it (or never migrated),
    or ahead (a newer release migrated it: migrations only add, so this code still works)."""
    if revision == head_revision():
        return "ok"
    return "behind" if revision is None or revision in _known_revisions() else "ahead"


async def schema_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at; None when it was never migrated."""
    async with engine.connect() as conn:
        try:
            version = await conn.scalar(text("SELECT version_num FROM alembic_version"))
        except DBAPIError:  # no alembic_version table: an empty database
            return None
    return None if version is None else str(version)


def database_revision(settings: Settings) -> str | None:
    """`schema_revision` for the configured database (blocking; call outside the event loop)."""

    async def read() -> str | None:
        engine = create_engine(settings)
        try:
            return await schema_revision(engine)
        finally:
            await engine.dispose()

    return asyncio.run(read())
