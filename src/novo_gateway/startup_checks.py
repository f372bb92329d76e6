"""What `novo-gateway` checks before it starts anything: each problem is one line naming the
setting, and the command stops with exit code 2 (no traceback, no child process started)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from pydantic import ValidationError
from pydantic_settings import SettingsError
from sqlalchemy.exc import SQLAlchemyError

from novo_gateway.gateway.routes_table import RoutesFileError, RouteTable, upstream_url
from novo_gateway.kit.config import Settings, error_lines
from novo_gateway.kit.db import create_private_file
from novo_gateway.migrate import upgrade


class ConfigError(Exception):
    """Start-up refused; `lines` says why, one line per bad setting."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def load_settings() -> Settings:
    """The settings from the environment and `.env`, or ConfigError naming each bad one."""
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError([f"Invalid setting {line}" for line in error_lines(exc)]) from None
    except SettingsError as exc:
        raise ConfigError([f"Invalid setting: {exc}"]) from None


def check_upstreams(settings: Settings) -> None:
    """UPSTREAM_URL is valid whenever set (also when ROUTES_FILE names every upstream), and the
    routes file is readable and valid."""
    lines = []
    if settings.upstream_url:
        try:
            upstream_url(settings.upstream_url)
        except ValueError as exc:
            lines.append(f"Invalid setting UPSTREAM_URL: {exc}.")
    if settings.routes_file is not None:
        try:
            RouteTable.from_settings(settings)
        except RoutesFileError as exc:
            if not str(exc).startswith("UPSTREAM_URL"):  # said above
                lines.append(f"Invalid setting ROUTES_FILE: {exc}")
    if lines:
        raise ConfigError(lines)


def migrate(settings: Settings) -> list[str]:
    """Apply the migrations (their revisions); a database that cannot be opened or written is
    a ConfigError."""
    sqlite_file = (
        settings.database_path if settings.is_sqlite and not settings.database_url else None
    )
    try:
        if sqlite_file is not None:
            _check_sqlite_opens(sqlite_file)
        applied = upgrade(settings)
        if sqlite_file is not None:
            _check_sqlite_writable(sqlite_file)
    except (SQLAlchemyError, OSError, sqlite3.Error) as exc:
        raise ConfigError(
            [f"{_database_variable(settings)}: the database cannot be used: {_reason(exc)}."]
        ) from None
    return applied


def _check_sqlite_opens(path: Path) -> None:
    """The file opens (made if missing, private, as the engine makes it): a folder or an
    unreadable path fails here, in this thread, rather than in the async driver's worker thread,
    which outlives a failed connection and would print its own traceback as the command exits."""
    path.parent.mkdir(parents=True, exist_ok=True)
    create_private_file(path)
    sqlite3.connect(path, timeout=10).close()


def _check_sqlite_writable(path: Path) -> None:
    """A write the file must take (rolled back): a read-only file (a read-only mount, an
    immutable file, a file of another user) fails here, not on the first request."""
    conn = sqlite3.connect(path, timeout=10)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE alembic_version SET version_num = version_num")
    finally:
        conn.rollback()
        conn.close()


def _database_variable(settings: Settings) -> str:
    if settings.database_url:
        return "DATABASE_URL"  # its value may hold a password: never shown
    return f"DATABASE_PATH ({settings.database_path})"


def _reason(exc: BaseException) -> str:
    """The driver's own first line (not SQLAlchemy's, which repeats the statement)."""
    cause = getattr(exc, "orig", None) or exc
    text = str(cause).strip().splitlines()
    return (text[0] if text else type(cause).__name__)[:200].rstrip(".")
