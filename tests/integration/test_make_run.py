"""The README's first command, `make run`, from a fresh clone: it installs, migrates and serves.

This is the path a newcomer takes, so it is tested as they would take it: a `git clone` of this
repository's committed state into an empty folder, `make run` with only Python on the PATH, then
register, call, and read usage over real HTTP. It installs the locked dependencies into the
clone's own `.venv` (pip's cache makes repeat runs quick).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def fresh_clone(tmp_path: Path) -> Path:
    if shutil.which("git") is None or shutil.which("make") is None:
        pytest.skip("git and make are needed to run the README's command")
    target = tmp_path / "novo-gateway"
    subprocess.run(
        ["git", "clone", "--quiet", "--depth", "1", f"file://{ROOT}", str(target)],
        check=True,
        timeout=120,
    )
    return target


def test_make_run_from_a_fresh_clone_serves_the_whole_loop(fresh_clone: Path) -> None:
    port = _free_port()
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/root"),
        "PORT": str(port),
        "STRIPE_EMULATOR_PORT": str(_free_port()),
        "PYTHON": sys.executable,
    }
    log = (fresh_clone / "make-run.log").open("w")
    process = subprocess.Popen(
        ["make", "run"],
        cwd=fresh_clone,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while True:
            assert process.poll() is None, (fresh_clone / "make-run.log").read_text()[-3000:]
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "make run did not serve within 10 minutes"
            time.sleep(0.5)

        with httpx.Client(base_url=base, timeout=30) as client:
            registered = client.post(
                "/auth/register",
                json={"email": "new@example.com", "password": "a long passphrase", "name": "New"},
            )
            assert registered.status_code == 201, registered.text
            key = registered.json()["apiKey"]["key"]
            call = client.get("/api/v1/insights", headers={"Authorization": f"Bearer {key}"})
            assert call.status_code == 200
            usage = client.get("/billing/usage", headers={"X-API-Key": key})
            assert usage.json()["currentPeriod"]["totalCalls"] == 1
        assert (fresh_clone / "data" / "billing.db").exists()
        # The runtime set only: the test and lint tools come with `make test`.
        bin_dir = fresh_clone / ".venv" / "bin"
        assert (bin_dir / "novo-gateway").exists()
        assert not [tool for tool in ("pytest", "mypy", "ruff") if (bin_dir / tool).exists()]
        said = (fresh_clone / "make-run.log").read_text()
        assert "Installing the runtime dependencies from requirements.lock" in said
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        log.close()
