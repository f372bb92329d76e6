"""Real parts for the adversarial suite: a private PostgreSQL and Redis, and gateway processes.

Everything here runs as separate processes on 127.0.0.1 and free ports, so the suite can kill,
restart and starve them without touching the shared PostgreSQL (5432) and Redis (6379) that other
test runs use. Each helper stops what it started, and only that (by its own process id).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
EMULATOR_KEY = "sk_test_emulator"
WEBHOOK_SECRET = "whsec_adversarial_current"
PASSWORD = "a long passphrase"
TEMPLATE = "adv_template"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: object, timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll `predicate()` until it is true; fail with `what` after `timeout` seconds."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def _as_postgres_user() -> list[str]:
    """Run PostgreSQL's tools as `postgres` when we are root (they refuse to run as root)."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL server's bin folder, if any."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return versions[-1].parent if versions else None


class PrivatePostgres:
    """A PostgreSQL cluster of our own in a temporary folder, listening on 127.0.0.1:port."""

    def __init__(self) -> None:
        bin_dir = postgres_bin()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL server binaries are not installed")
        self.bin = bin_dir
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="novo-adv-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self._template_ready = False
        os.chmod(self.dir, 0o755)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def _run(self, tool: str, *args: str, timeout: float = 60) -> None:
        subprocess.run(
            [*_as_postgres_user(), str(self.bin / tool), *args],
            check=True,
            capture_output=True,
            timeout=timeout,
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data} "
            "-c fsync=off -c full_page_writes=off -c max_connections=300 "
            "-c shared_buffers=64MB"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        """A fast restart: every connection is cut, committed data stays."""
        self.stop("fast")
        self.start()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new database, copied from a migrated template (migrating takes seconds; this not)."""
        if not self._template_ready:
            self._psql(f'CREATE DATABASE "{TEMPLATE}"')
            migrate(self.url(TEMPLATE))
            self._template_ready = True
        self._psql(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
        return self.url(name)

    def _psql(self, sql: str) -> None:
        psql = [str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port)]
        subprocess.run(
            [*psql, "-U", "postgres", "-q", "-c", sql],
            check=True,
            capture_output=True,
            timeout=30,
        )

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


def migrate(database_url: str = "", database_path: str = "") -> None:
    env = gateway_env(DATABASE_URL=database_url, DATABASE_PATH=database_path or "unused.db")
    subprocess.run(
        [PYTHON, "-m", "novo_gateway.cli", "migrate"],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )


class PrivateRedis:
    """A Redis server of our own on 127.0.0.1:port, no persistence."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self._answers, 10, "redis to accept connections")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


@contextlib.contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    """A started `PrivateRedis`, stopped afterwards (for a test that restarts its Redis)."""
    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def gateway_env(**overrides: str) -> dict[str, str]:
    """The environment of a gateway process: ours minus any gateway setting, plus `overrides`."""
    prefixes = ("STRIPE_", "DATABASE_", "REDIS_", "NOVO_", "RATE_LIMIT", "PUBLIC_URL", "PORT")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(
        LOG_LEVEL="info",
        STRIPE_MAX_NETWORK_RETRIES="0",
        STRIPE_TIMEOUT_SECONDS="5",
        STRIPE_RATE_LIMIT_PER_SECOND="1000",
        PYTHONUNBUFFERED="1",
    )
    env.update(overrides)
    return env


@dataclass
class Gateway:
    """One `novo-gateway serve` process; its JSON log lines go to `log_path`."""

    env: dict[str, str]
    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"gateway-{self.port}.log"

    def start(self, timeout: float = 60, *, may_exit: bool = False) -> Gateway:
        """Start and wait until it serves (or, with `may_exit`, until it serves or exits)."""
        self.launch()
        return self.wait_ready(timeout, may_exit=may_exit)

    def launch(self) -> None:
        """Start the process without waiting (start several, then `wait_ready` each)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    PYTHON,
                    "-m",
                    "novo_gateway.cli",
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                ],
                env=self.env,
                cwd=self.workdir,  # no developer's .env is read
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float = 60, *, may_exit: bool = False) -> Gateway:
        wait_until(
            lambda: self._healthy(may_exit), timeout, f"the gateway on port {self.port} to serve"
        )
        return self

    def _healthy(self, may_exit: bool = False) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            if may_exit:
                return True
            raise AssertionError(f"the gateway exited: {self.log_tail()}")
        try:
            return httpx.get(f"{self.url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        """SIGKILL: no shutdown work at all, as in a power cut or an OOM kill."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM and wait (SIGKILL after 30 s)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()

    def rss_mb(self) -> float:
        assert self.process is not None
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        match = re.search(r"VmHWM:\s+(\d+) kB", status)  # peak resident size
        return int(match.group(1)) / 1024 if match else 0.0

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_text()[-chars:]


@contextlib.contextmanager
def running(*gateways: Gateway) -> Iterator[tuple[Gateway, ...]]:
    """Start the gateways; stop them (SIGTERM) afterwards, whatever happened."""
    try:
        for gateway in gateways:
            gateway.launch()
        for gateway in gateways:
            gateway.wait_ready()
        yield gateways
    finally:
        for gateway in gateways:
            gateway.stop()
