"""Benchmark of the metered path against the free endpoint, on the embedded default.

Starts `novo-gateway serve` (SQLite, in-process limits, its Stripe emulator), registers a
customer, then drives with wrk, interleaved in the same run: the free `GET /api/v1/health` and the
metered `GET /api/v1/insights` (key auth, two rate limits, a durable usage event per call). Prints
requests/s, latency percentiles, the metered/free ratio, the server's peak RSS, and checks that
every metered 200 left exactly one ledger event.

    .venv/bin/python bench/core.py [--duration 10] [--connections 64] [--rounds 3]

Needs wrk (Debian package `wrk`). Run by hand; numbers drift on a shared machine, ratios less so.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
LUA = Path(__file__).with_name("report.lua")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (uvicorn workers), in MB."""
    total = 0
    pids = [pid] + [
        int(p)
        for p in subprocess.run(
            ["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False
        ).stdout.split()
    ]
    for p in pids:
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        match = re.search(r"VmRSS:\s+(\d+) kB", status)
        total += int(match.group(1)) if match else 0
    return total / 1024


class Sampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.running = pid, 0.0, True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, rss_mb(self.pid))
            time.sleep(0.2)


def wrk(url: str, *, connections: int, duration: int, key: str | None) -> dict[str, float]:
    command = [
        "wrk",
        f"-t{min(2, connections)}",
        f"-c{connections}",
        f"-d{duration}s",
        "--latency",
        "-s",
        str(LUA),
    ]
    if key:
        command += ["-H", f"X-API-Key: {key}"]
    out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    data: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="novo-bench-"))
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "DATABASE_PATH": str(tmp / "bench.db"),
        "STRIPE_EMULATOR_PORT": str(free_port()),
        "RATE_LIMIT_PER_MINUTE": "100000000",
        "LOG_LEVEL": "warning",
        "WORKERS": str(args.workers),
    }
    env.pop("STRIPE_SECRET_KEY", None)
    server = subprocess.Popen(
        [str(ROOT / ".venv/bin/novo-gateway"), "serve"],
        env=env,
        cwd=tmp,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                sys.exit("the gateway did not start")
            time.sleep(0.2)
        reply = httpx.post(
            f"{base}/auth/register",
            timeout=30,
            json={
                "email": "bench@example.com",
                "password": "benchmark passphrase",
                "name": "Bench",
            },
        )
        reply.raise_for_status()
        key = reply.json()["apiKey"]["key"]

        sampler = Sampler(server.pid)
        sampler.start()
        results: dict[str, list[dict[str, float]]] = {"free": [], "metered": []}
        for _ in range(args.rounds):
            results["free"].append(
                wrk(
                    f"{base}/api/v1/health",
                    connections=args.connections,
                    duration=args.duration,
                    key=None,
                )
            )
            results["metered"].append(
                wrk(
                    f"{base}/api/v1/insights",
                    connections=args.connections,
                    duration=args.duration,
                    key=key,
                )
            )
        sampler.running = False

        def median(name: str, field: str) -> float:
            return statistics.median(r[field] for r in results[name])

        print(f"{'endpoint':10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9}")
        for name in ("free", "metered"):
            print(
                f"{name:10} {median(name, 'rps'):9.0f} {median(name, 'p50'):8.2f} "
                f"{median(name, 'p99'):8.2f} {median(name, 'p999'):9.2f}"
            )
        ratio = median("metered", "rps") / median("free", "rps")
        print(f"metered/free requests/s: {ratio:.2f}  (target >= 0.70)")
        print(
            f"peak RSS of the gateway: {sampler.peak:.0f} MB for {args.workers} worker(s)"
            f" + its Stripe emulator is separate (target < 150 MB per worker)"
        )

        ok_calls = sum(int(r["status_2xx"]) for r in results["metered"])
        with sqlite3.connect(tmp / "bench.db") as db:
            events = db.execute(
                "SELECT count(*) FROM usage_events WHERE endpoint = '/api/v1/insights'"
                " AND status = 200"
            ).fetchone()[0]
        print(f"metered 200s answered: {ok_calls}, durable ledger events: {events}")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
