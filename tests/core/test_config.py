"""Settings: documented in `.env.example`, validated at start, the original's names kept."""

from __future__ import annotations

import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from novo_gateway.config import Settings

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
