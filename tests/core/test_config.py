"""Settings: documented in `.env.example`, validated at start, the original's names kept."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from novo_gateway.kit.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def _documented_names() -> set[str]:
    lines = (ROOT / ".env.example").read_text().splitlines()
    return {line.split("=", 1)[0] for line in lines if re.match(r"^[A-Z0-9_]+=", line)}


def test_every_setting_is_documented_in_env_example() -> None:
    fields = {name.upper() for name in Settings.model_fields}
    assert fields == _documented_names()


def test_env_example_values_are_the_defaults() -> None:
    from_example = Settings(_env_file=ROOT / ".env.example")  # type: ignore[call-arg]
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    assert from_example == defaults


def test_original_names_and_defaults_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "8080")
    monkeypatch.setenv("USAGE_REPORTING_INTERVAL", "5000")
    monkeypatch.setenv("COST_PER_CALL", "0.002")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.port == 8080
    assert settings.usage_reporting_interval == 5000
    assert settings.cost_per_call == Decimal("0.002")
    assert settings.rate_limit_per_minute == 100
    assert settings.global_rate_limit_per_minute == 1000


def test_zero_free_tier_calls_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FREE_TIER_CALLS", "0")
    assert Settings(_env_file=None).free_tier_calls == 0  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "http"),
        ("PORT", "70000"),
        ("FREE_TIER_CALLS", "-1"),
        ("COST_PER_CALL", "cheap"),
        ("RATE_LIMIT_PER_MINUTE", "0"),
        ("METRICS_TOKEN", "too-short"),
    ],
)
def test_bad_value_is_rejected_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=name.lower()):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_postgres_urls_use_the_async_driver() -> None:
    settings = Settings(_env_file=None, database_url="postgres://u@h/db")  # type: ignore[call-arg]
    assert settings.sqlalchemy_url == "postgresql+asyncpg://u@h/db"
    assert not settings.is_sqlite


def test_serve_refuses_to_start_with_a_bad_setting(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "novo_gateway.cli", "serve"],
        env={
            "PATH": "/usr/bin:/bin",
            "PORT": "not-a-port",
            "DATABASE_PATH": str(tmp_path / "x.db"),
        },
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "port" in result.stderr.lower()
    assert "Traceback" not in result.stderr


def _run_cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The real command in a clean environment (no `.env`: run in an empty folder)."""
    return subprocess.run(
        [str(Path(sys.executable).with_name("novo-gateway")), *args],
        env={
            "PATH": "/usr/bin:/bin",
            "DATABASE_PATH": str(tmp_path / "data" / "gateway.db"),
            "STRIPE_EMULATOR_PORT": "1",  # never reached: every case stops before it
            **env,
        },
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_secret_setting_is_never_echoed_in_a_configuration_error(tmp_path: Path) -> None:
    result = _run_cli(
        tmp_path,
        "migrate",
        ADMIN_TOKEN="hunter2-secret-admin",
        DATABASE_URL="mysql://admin:db-password-1@db/x",
        REDIS_URL="redis://:redis-password-2@r/0",
        PORT="http",
    )

    assert result.returncode == 2
    assert "hunter2" not in result.stderr + result.stdout
    assert "password-" not in result.stderr + result.stdout
    lines = result.stderr.splitlines()
    # One line per bad setting, each naming its variable; a value only when it is no secret.
    assert len(lines) == 3, result.stderr
    assert lines[0] == (
        "Invalid setting PORT: Input should be a valid integer, unable to parse string as an "
        "integer (got 'http')."
    )
    assert lines[1].startswith("Invalid setting DATABASE_URL: must be a postgresql:// URL")
    assert lines[2].startswith("Invalid setting ADMIN_TOKEN: must be empty or at least 24")


def _bad_routes_file(tmp_path: Path) -> str:
    path = tmp_path / "routes.toml"
    path.write_text('[[routes]]\nprefix = "/api/v1/search"\nunits = "many"\n')
    return str(path)


def _routes_file_with_upstreams(tmp_path: Path) -> str:
    path = tmp_path / "routes.toml"
    path.write_text('[[routes]]\nprefix = "/api/v1/search"\nupstream = "http://127.0.0.1:9"\n')
    return str(path)


@pytest.mark.parametrize(
    ("variable", "env"),
    [
        ("DATABASE_URL", lambda tmp: {"DATABASE_URL": "mysql://x"}),
        ("ROUTES_FILE", lambda tmp: {"ROUTES_FILE": str(tmp / "missing.toml")}),
        ("ROUTES_FILE", lambda tmp: {"ROUTES_FILE": _bad_routes_file(tmp)}),
        ("UPSTREAM_URL", lambda tmp: {"UPSTREAM_URL": "ftp://files.example"}),
        (
            "UPSTREAM_URL",  # no longer ignored when the routes file names every upstream
            lambda tmp: {
                "UPSTREAM_URL": "not a url",
                "ROUTES_FILE": _routes_file_with_upstreams(tmp),
            },
        ),
        ("DATABASE_PATH", lambda tmp: {"DATABASE_PATH": str(tmp)}),  # a folder, not a file
    ],
    ids=["mysql", "routes-missing", "routes-invalid", "upstream", "upstream-with-routes", "db"],
)
def test_serve_stops_on_a_bad_setting_with_one_line_naming_it(
    tmp_path: Path, variable: str, env: Any
) -> None:
    result = _run_cli(tmp_path, "serve", "--port", "1", **env(tmp_path))

    assert result.returncode == 2, result.stderr[-2000:]
    assert len(result.stderr.splitlines()) == 1, result.stderr[-2000:]
    assert variable in result.stderr
    assert "Traceback" not in result.stderr
    # Nothing was started: the offline demo's emulator writes its log beside the database.
    assert not (tmp_path / "data" / "stripe-emulator.log").exists()


@pytest.fixture
def read_only_database(tmp_path: Path) -> Iterator[Path]:
    """A migrated SQLite file the process cannot write: immutable (root ignores file modes)."""
    path = tmp_path / "data" / "gateway.db"
    assert _run_cli(tmp_path, "migrate").returncode == 0
    if os.geteuid() != 0:
        path.chmod(0o444)
        yield path
        return
    if (
        shutil.which("chattr") is None
        or subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False).returncode
    ):
        pytest.skip("cannot make a file read-only for root here (chattr +i)")
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=False)


def test_serve_stops_on_a_read_only_database_file_with_one_line(
    tmp_path: Path, read_only_database: Path
) -> None:
    result = _run_cli(tmp_path, "serve", "--port", "1")

    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr == (
        f"DATABASE_PATH ({read_only_database}): the database cannot be used: attempt to write "
        "a readonly database.\n"
    )
    assert not (tmp_path / "data" / "stripe-emulator.log").exists()
