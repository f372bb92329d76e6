"""Real gateway processes for end-to-end tests: `novo-gateway serve` on a free port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

from novo_gateway.kit.config import Settings

COMMAND = str(Path(sys.executable).with_name("novo-gateway"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a subprocess the same database and Stripe as `settings`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("STRIPE_", "DATABASE_", "REDIS_", "RATE_LIMIT", "NOVO_"))
    }
    env.update(
        DATABASE_PATH=str(settings.database_path),
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        STRIPE_SECRET_KEY=settings.stripe_secret_key,
        STRIPE_API_BASE=settings.stripe_api_base,
        STRIPE_MAX_NETWORK_RETRIES="0",
        LOG_LEVEL="warning",
    )
    return env


class GatewayProcess:
    """`novo-gateway serve` in a subprocess; stopped with SIGTERM on exit."""

    def __init__(self, env: dict[str, str], log_path: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [COMMAND, "serve", "--port", str(self.port)],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_until_up(self, seconds: float = 60) -> GatewayProcess:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited:\n{self.log_path.read_text()[-4000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"serve did not start:\n{self.log_path.read_text()[-4000:]}")

    def stop(self) -> int:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._log.close()
        return int(self.process.returncode)

    def __enter__(self) -> GatewayProcess:
        return self.wait_until_up()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def wait_for(condition: object, *, seconds: float = 30, every: float = 0.05) -> None:
    """Poll `condition()` until it is true; fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(every)
    raise AssertionError(f"condition not met within {seconds}s")
