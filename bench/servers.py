"""Processes of the benchmark: the gateway in a mode, the bare app, the upstream; RSS and CPU."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ROOT / ".venv" / "bin"
PG_ADMIN = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split()]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _rss_mb(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else 0.0


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


@dataclass
class Server:
    """A started HTTP server: its base URL and the process group to stop."""

    name: str
    base: str
    process: subprocess.Popen[bytes]
    workers: int
    extra: dict[str, str] = field(default_factory=dict)
    cleanup: list[Callable[[], None]] = field(default_factory=list)

    def worker_pids(self) -> list[int]:
        """The processes that serve requests (not uvicorn's supervisor, not the emulator)."""
        if self.workers == 1:
            return [self.process.pid]
        workers = [p for p in _children(self.process.pid) if "spawn_main" in _cmdline(p)]
        return workers or [self.process.pid]

    def cpu_seconds(self) -> float:
        return sum(_cpu_seconds(p) for p in self.worker_pids())

    def rss_per_worker_mb(self) -> list[float]:
        return [_rss_mb(p) for p in self.worker_pids()]

    def stop(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.process.pid, signal.SIGKILL)
        for step in reversed(self.cleanup):
            step()


class RssSampler(threading.Thread):
    """Peak RSS of each worker of a server while the benchmark runs."""

    def __init__(self, server: Server) -> None:
        super().__init__(daemon=True)
        self.server, self.peak, self.running = server, 0.0, True

    def run(self) -> None:
        while self.running:
            sizes = self.server.rss_per_worker_mb()
            self.peak = max([self.peak, *sizes])
            time.sleep(0.25)


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            sys.exit(f"{url} did not start; see {log}")
        time.sleep(0.2)


def _spawn(
    command: list[str], env: dict[str, str], cwd: Path, log: Path
) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            command, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def start_asgi(module: str, name: str, workers: int, tmp: Path) -> Server:
    """A plain ASGI app under uvicorn (httptools and uvloop, as the gateway)."""
    port = free_port()
    log = tmp / f"{name}.log"
    command = [str(VENV_BIN / "uvicorn"), module, "--port", str(port), "--no-access-log"]
    command += ["--log-level", "warning", "--workers", str(workers)]
    process = _spawn(command, {**os.environ, "PYTHONPATH": str(ROOT)}, ROOT, log)
    base = f"http://127.0.0.1:{port}"
    _wait_ready(base + "/", process, log)
    return Server(name, base, process, workers)


def start_gateway(
    mode: str, workers: int, tmp: Path, routes: Path | None, reporting_interval_ms: int = 3_600_000
) -> Server:
    """`novo-gateway serve` in `embedded` (SQLite, in-process limits) or `postgres` mode.

    The usage reporter runs every `reporting_interval_ms` (by default out of the way: it is
    measured on its own by bench/ledger.py)."""
    port = free_port()
    workdir = tmp / f"gateway-{mode}-{workers}"
    workdir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PORT": str(port),
        "WORKERS": str(workers),
        "DATABASE_PATH": str(workdir / "bench.db"),
        "STRIPE_EMULATOR_PORT": str(free_port()),
        "RATE_LIMIT_PER_MINUTE": "1000000000",
        "LOG_LEVEL": "warning",
        "USAGE_REPORTING_INTERVAL": str(reporting_interval_ms),
    }
    for name in ("STRIPE_SECRET_KEY", "DATABASE_URL", "REDIS_URL", "UPSTREAM_URL"):
        env.pop(name, None)
    if routes is not None:
        env["ROUTES_FILE"] = str(routes)
    cleanup: list[Callable[[], None]] = []
    extra: dict[str, str] = {}
    if mode == "postgres":
        database = f"novo_bench_{uuid.uuid4().hex[:8]}"
        _psql(f'CREATE DATABASE "{database}"')
        cleanup.append(lambda: _psql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        env["DATABASE_URL"] = f"{PG_ADMIN}/{database}"
        env["REDIS_URL"] = REDIS_URL
        env["RATE_LIMIT_KEY_PREFIX"] = f"bench-{uuid.uuid4().hex[:8]}"
        subprocess.run(
            [str(VENV_BIN / "novo-gateway"), "migrate"],
            env=env,
            cwd=workdir,
            check=True,
            capture_output=True,
        )
    extra["env_database"] = env.get("DATABASE_URL", env["DATABASE_PATH"])
    log = workdir / "serve.log"
    process = _spawn([str(VENV_BIN / "novo-gateway"), "serve"], env, workdir, log)
    base = f"http://127.0.0.1:{port}"
    server = Server(f"gateway-{mode}", base, process, workers, extra, cleanup)
    try:
        _wait_ready(base + "/health", process, log)
    except SystemExit:
        server.stop()
        raise
    return server


def _psql(sql: str) -> None:
    import asyncio

    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(f"{PG_ADMIN}/postgres")
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())
