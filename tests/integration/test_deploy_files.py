"""The deployment files are valid for the tools that read them (systemd, compose, nginx)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def test_the_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if IN_CI:
            pytest.fail("systemd-analyze is missing")
        pytest.skip("systemd-analyze is missing")
    # The unit as installed, with ExecStart pointing at this checkout's command.
    unit = (DEPLOY / "novo-gateway.service").read_text()
    installed = "/opt/novo-gateway/.venv/bin/novo-gateway"
    assert f"ExecStart={installed} serve" in unit
    command = str(Path(sys.executable).with_name("novo-gateway"))
    (tmp_path / "novo-gateway.service").write_text(unit.replace(installed, command))
    result = subprocess.run(
        [analyze, "verify", str(tmp_path / "novo-gateway.service")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "novo-gateway.service" not in result.stderr, result.stderr


def test_the_image_runs_as_a_user_with_a_liveness_healthcheck_and_no_dev_tools() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert dockerfile.count("\nFROM ${BASE_IMAGE}") == 2  # multi-stage, the base a build arg
    assert "ARG BASE_IMAGE=" in dockerfile
    assert "\nUSER novo\n" in dockerfile
    assert "/health/live" in dockerfile.split("HEALTHCHECK", 1)[1]
    assert "requirements.lock" in dockerfile and "requirements-dev.lock" not in dockerfile
