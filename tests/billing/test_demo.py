"""The offline demo: `novo-gateway serve` with no Stripe key runs the emulator beside it.

These tests start the real command in a subprocess, on free ports and a temporary SQLite file.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from stripe_emulator import EmulatorServer

COMMAND = str(Path(sys.executable).with_name("novo-gateway"))
START_SECONDS = 60.0
PASSWORD = "correct horse battery staple"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass
class Serve:
    process: subprocess.Popen[bytes]
    url: str
    emulator_port: int
    log_path: Path

    def logs(self) -> list[dict[str, Any]]:
        entries = []
        for line in self.log_path.read_text().splitlines():
            if line.startswith("{"):
                entries.append(json.loads(line))
        return entries

    def text(self) -> str:
        return self.log_path.read_text()

    def wait_until_up(self) -> None:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited early:\n{self.text()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"serve did not start:\n{self.text()}")

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    """Start `novo-gateway serve` in `tmp_path` with no Stripe key; killed at the end if alive."""
    started: list[Serve] = []

    def start(emulator_port: int | None = None) -> Serve:
        port, emulator_port = free_port(), emulator_port or free_port()
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("STRIPE_", "DATABASE_", "REDIS_", "PUBLIC_URL"))
        }
        env.update(
            DATABASE_PATH=str(tmp_path / "data" / "gateway.db"),
            PORT=str(port),
            STRIPE_EMULATOR_PORT=str(emulator_port),
            LOG_LEVEL="info",
            USAGE_REPORTING_INTERVAL="1000",
        )
        log_path = tmp_path / f"serve-{len(started)}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [COMMAND, "serve"], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        running = Serve(process, f"http://127.0.0.1:{port}", emulator_port, log_path)
        started.append(running)
        return running

    yield start
    for running in started:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait()


def emulator_pid(serve: Serve) -> int:
    for entry in serve.logs():
        message = entry["message"]
        if message.startswith("offline demo: Stripe emulator at") and "(pid " in message:
            return int(message.split("(pid ", 1)[1].split(")", 1)[0])
    raise AssertionError(f"no emulator pid in the log:\n{serve.text()}")


def test_serve_without_a_stripe_key_runs_the_whole_loop_and_stops_the_emulator(
    serve: Any,
) -> None:
    gateway: Serve = serve()
    gateway.wait_until_up()
    pid = emulator_pid(gateway)
    emulator_url = f"http://127.0.0.1:{gateway.emulator_port}"
    assert httpx.get(emulator_url + "/_emulator/health", timeout=5).json()["ok"] is True

    response = httpx.post(
        gateway.url + "/auth/register",
        json={"email": "newcomer@example.com", "password": PASSWORD, "name": "New"},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    status = body["subscription"]["status"]
    deadline = time.monotonic() + 30
    while status != "active" and time.monotonic() < deadline:  # provisioning may finish later
        login = httpx.post(
            gateway.url + "/auth/login",
            json={"email": "newcomer@example.com", "password": PASSWORD},
            timeout=10,
        )
        status = login.json()["user"]["subscriptionStatus"]
        time.sleep(0.2)
    assert status == "active"

    key = body["apiKey"]["key"]
    call = httpx.get(gateway.url + "/api/v1/insights", headers={"X-API-Key": key}, timeout=10)
    assert call.status_code == 200, call.text

    state = httpx.get(emulator_url + "/_emulator/state", timeout=5).json()
    assert state["counts"]["customer"] == 1
    assert state["counts"]["subscription"] == 1
    assert state["counts"]["webhook_endpoint"] == 1

    assert gateway.terminate() == 0
    assert not pid_alive(pid)
    assert "Stripe emulator (pid" in gateway.text() and "stopped" in gateway.text()
    with pytest.raises(httpx.ConnectError):
        httpx.get(emulator_url + "/_emulator/health", timeout=2)


def test_serve_refuses_a_port_taken_by_something_else(serve: Any) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        gateway: Serve = serve(emulator_port=squatter.getsockname()[1])
        assert gateway.process.wait(timeout=60) == 1
    assert "in use by another program" in gateway.text()
    assert "STRIPE_EMULATOR_PORT" in gateway.text()


def test_serve_reuses_an_emulator_already_running_and_leaves_it_running(serve: Any) -> None:
    server = EmulatorServer(port=free_port()).start()
    try:
        gateway: Serve = serve(emulator_port=server.config.port)
        gateway.wait_until_up()
        assert "already running" in gateway.text()
        state = httpx.get(server.url + "/_emulator/state", timeout=5).json()
        assert state["counts"]["price"] == 1
        assert gateway.terminate() == 0
        assert httpx.get(server.url + "/_emulator/health", timeout=5).json()["ok"] is True
    finally:
        server.stop()


def test_serve_restarted_keeps_the_emulator_state_beside_the_database(serve: Any) -> None:
    first: Serve = serve()
    first.wait_until_up()
    response = httpx.post(
        first.url + "/auth/register",
        json={"email": "first@example.com", "password": PASSWORD},
        timeout=30,
    )
    assert response.status_code == 201
    assert first.terminate() == 0

    second: Serve = serve(emulator_port=first.emulator_port)
    second.wait_until_up()
    response = httpx.post(
        second.url + "/auth/register",
        json={"email": "second@example.com", "password": PASSWORD},
        timeout=30,
    )
    assert response.status_code == 201
    emulator_url = f"http://127.0.0.1:{second.emulator_port}"
    counts = httpx.get(emulator_url + "/_emulator/state", timeout=5).json()["counts"]
    # The customers of both runs, one price and one (re-created) webhook endpoint.
    assert (counts["customer"], counts["price"], counts["webhook_endpoint"]) == (2, 1, 1)
    assert second.terminate() == 0


def test_the_demo_writes_its_secrets_readable_by_the_owner_only(serve: Any, tmp_path: Path) -> None:
    running: Serve = serve()
    running.wait_until_up()
    assert running.terminate() == 0

    state = tmp_path / "data" / "stripe-emulator.json"
    assert "whsec_" in state.read_text()  # the webhook endpoint's signing secret
    modes = {
        path.name: oct(path.stat().st_mode & 0o777)
        for path in (state, tmp_path / "data" / "gateway.db")
    }
    assert modes == {"stripe-emulator.json": "0o600", "gateway.db": "0o600"}


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """An operator command in the demo's directory, with no Stripe settings at all."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("STRIPE_", "DATABASE_", "REDIS_", "PUBLIC_URL"))
    }
    env.update(DATABASE_PATH=str(tmp_path / "data" / "gateway.db"), LOG_LEVEL="warning")
    return subprocess.run(
        [COMMAND, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )


def test_operator_commands_reach_the_emulator_that_serve_started(
    serve: Any, tmp_path: Path
) -> None:
    gateway: Serve = serve()
    gateway.wait_until_up()
    settings_file = tmp_path / "data" / "stripe-emulator.env"
    assert settings_file.stat().st_mode & 0o777 == 0o600
    emulator_url = f"http://127.0.0.1:{gateway.emulator_port}"

    for args in (["setup-stripe"], ["report-usage"], ["reconcile"]):
        result = _cli(tmp_path, *args)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        assert f"Using the offline Stripe emulator at {emulator_url}." in result.stderr
    setup = _cli(tmp_path, "setup-stripe")
    assert "nothing was created" in setup.stderr  # `serve` set Stripe up already
    assert "STRIPE_PRICE_ID=price_" in setup.stdout

    assert gateway.terminate() == 0
    assert not settings_file.exists()
    stopped = _cli(tmp_path, "report-usage")
    assert stopped.returncode == 2
    [line] = stopped.stderr.strip().splitlines()
    assert "make run" in line and "STRIPE_SECRET_KEY" in line


def test_operator_commands_without_stripe_or_the_demo_say_what_to_run(tmp_path: Path) -> None:
    for args in (["setup-stripe"], ["report-usage"], ["reconcile"]):
        result = _cli(tmp_path, *args)
        assert result.returncode == 2
        [line] = result.stderr.strip().splitlines()
        assert line.startswith("STRIPE_SECRET_KEY is not set and the offline Stripe emulator")
        assert "`make run`" in line
