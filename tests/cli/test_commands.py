"""The operator commands as a user runs them: real `novo-gateway` subprocesses on real databases."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from novo_gateway import __version__
from novo_gateway.migrate import head_revision
from tests.conftest import new_pg_database
from tests.integration.processes import free_port

COMMAND = str(Path(sys.executable).with_name("novo-gateway"))


def run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("STRIPE_", "DATABASE_", "REDIS_", "ADMIN_", "METRICS_"))
    }
    return subprocess.run(
        [COMMAND, *args],
        env={**base, "DATABASE_PATH": str(tmp_path / "gateway.db"), **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_version_prints_the_package_version(tmp_path: Path) -> None:
    result = run(["--version"], tmp_path)
    assert (result.returncode, result.stdout.strip()) == (0, f"novo-gateway {__version__}")


def test_migrate_names_each_migration_it_applied_then_says_nothing_is_left(
    tmp_path: Path,
) -> None:
    first = run(["migrate"], tmp_path)
    assert first.returncode == 0, first.stderr
    applied = [line for line in first.stdout.splitlines() if line.startswith("applied ")]
    assert applied[0].startswith("applied 0001 (")
    assert applied[-1].startswith(f"applied {head_revision()} (")
    assert f"{len(applied)} migrations applied" in first.stdout

    again = run(["migrate"], tmp_path)
    assert again.returncode == 0
    assert "applied " not in again.stdout
    assert "nothing to apply" in again.stdout


def test_reports_refuses_an_unknown_status(tmp_path: Path) -> None:
    assert run(["migrate"], tmp_path).returncode == 0
    result = run(["reports", "--status", "bogus"], tmp_path)
    assert result.returncode == 2
    assert "bogus" in result.stderr and "Traceback" not in result.stderr
    assert run(["reports", "--status", "sent"], tmp_path).returncode == 0


def test_retry_report_of_an_unknown_report_is_a_usage_error(tmp_path: Path) -> None:
    assert run(["migrate"], tmp_path).returncode == 0
    result = run(["retry-report", "nope"], tmp_path)
    assert result.returncode == 2
    assert "No dead-lettered report 'nope'" in result.stderr
    assert run(["retry-report", "all"], tmp_path).returncode == 0


@pytest.fixture
def empty_pg_database() -> Iterator[str]:
    """A PostgreSQL database that was never migrated, dropped after the test."""
    with new_pg_database("novo_empty") as url:
        yield url


@pytest.mark.postgres
def test_serve_refuses_a_database_that_was_never_migrated(
    tmp_path: Path, empty_pg_database: str
) -> None:
    result = run(
        ["serve", "--port", str(free_port())],
        tmp_path,
        DATABASE_URL=empty_pg_database,
        STRIPE_SECRET_KEY="sk_test_unused",
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"The database was never migrated; this version needs {head_revision()}: "
        "run `novo-gateway migrate` first."
    ]
    migrated = run(["migrate"], tmp_path, DATABASE_URL=empty_pg_database)
    assert migrated.returncode == 0 and "migrations applied" in migrated.stdout


def test_help_reflows_paragraphs_to_the_terminal_width(tmp_path: Path) -> None:
    result = run(["reconcile", "--help"], tmp_path, COLUMNS="80")
    assert result.returncode == 0
    lines = [line.strip() for line in result.stdout.splitlines()]
    # The docstring's own line break no longer leaves a one-word line behind.
    assert "latest" not in lines
    assert any(line.endswith("because its") or "its latest" in line for line in lines)
