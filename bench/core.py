"""The request-path benchmark: the gateway in each mode against its free endpoint and a bare app.

For each mode (`embedded`: SQLite and in-process limits, the default; `postgres`: PostgreSQL and
Redis-shared limits) and worker count, starts `novo-gateway serve`, registers a customer over
HTTP and 999 more straight in the database (1,000 keys), starts a bare ASGI app and a local
upstream with the same worker count, and drives with wrk, interleaved within each round:

    bare          GET /                       the bare ASGI app (the ceiling of Python here)
    free          GET /api/v1/health          the gateway's free endpoint
    metered       GET /api/v1/insights        one key
    metered-1000  GET /api/v1/insights        1,000 keys, a different one each request
    post          POST /api/v1/audience/analyze with a JSON body, one key
    proxied       GET /api/v1/upstream/x      through the gateway to the local upstream
    upstream      GET /api/v1/upstream/x      the local upstream called directly

at 64 connections and at 1. Prints medians of requests/s, p50, p99 and p99.9, CPU per request
(all worker processes), peak RSS per worker, the ratios the performance targets are written in,
and checks that every metered 2xx left a committed ledger event. Writes every run to --json.

    .venv/bin/python bench/core.py [--modes embedded:1,embedded:2,postgres:1,postgres:2]
        [--scenarios bare,free,metered,...] [--duration 5] [--rounds 3] [--connections 64,1]
        [--reporting-interval 10000]

The gateway's usage reporter is out of the way unless `--reporting-interval` (ms) brings it in:
then it claims and reports what the load records, as it does in production.

Needs wrk (Debian package `wrk`); the postgres mode needs PostgreSQL and Redis on 127.0.0.1.
Numbers drift on a shared machine; ratios within one run much less (see bench/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.servers import RssSampler, Server, start_asgi, start_gateway

LUA = Path(__file__).with_name("drive.lua")
SCENARIOS = ("bare", "free", "metered", "metered-1000", "post", "proxied", "upstream")
METERED = ("metered", "metered-1000", "post", "proxied")
POST_BODY = b'{"audienceId": "aud_bench", "metrics": ["engagement", "reach"]}'
SEEDED_CUSTOMERS = 999


@dataclass(frozen=True)
class Target:
    server: str  # "gateway", "bare" or "upstream"
    path: str
    keys: str  # "none", "one" or "many"
    method: str = "GET"


TARGETS = {
    "bare": Target("bare", "/", "none"),
    "free": Target("gateway", "/api/v1/health", "none"),
    "metered": Target("gateway", "/api/v1/insights", "one"),
    "metered-1000": Target("gateway", "/api/v1/insights", "many"),
    "post": Target("gateway", "/api/v1/audience/analyze", "one", "POST"),
    "proxied": Target("gateway", "/api/v1/upstream/x", "one"),
    "upstream": Target("upstream", "/api/v1/upstream/x", "none"),
}


def wrk(url: str, connections: int, duration: float, args: list[str]) -> dict[str, float]:
    threads = min(2, connections)
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--latency"]
    command += ["-s", str(LUA), url, "--", *args]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def register(base: str) -> str:
    reply = httpx.post(
        f"{base}/auth/register",
        timeout=60,
        json={"email": "bench@example.com", "password": "benchmark passphrase", "name": "Bench"},
    )
    reply.raise_for_status()
    key: str = reply.json()["apiKey"]["key"]
    return key


def seed_customers(database: str, count: int) -> list[str]:
    """`count` active customers with one key each, written straight to the database."""
    from argon2 import PasswordHasher

    from novo_gateway.accounts.models import User
    from novo_gateway.keys.models import ApiKey
    from novo_gateway.keys.tokens import display_prefix, generate_key, hash_key
    from novo_gateway.kit.config import Settings
    from novo_gateway.kit.db import create_engine, create_session_factory, session_scope
    from novo_gateway.kit.models_base import utcnow

    is_url = "://" in database
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database if is_url else "",
        database_path=Path(database) if not is_url else Path("unused.db"),
    )
    password_hash = PasswordHasher().hash("benchmark passphrase")
    keys = [generate_key() for _ in range(count)]

    async def write() -> None:
        engine = create_engine(settings)
        async with session_scope(create_session_factory(engine)) as session:
            users = [
                User(
                    email=f"customer{i}@bench.example",
                    name=f"Customer {i}",
                    password_hash=password_hash,
                    subscription_status="active",
                )
                for i in range(count)
            ]
            session.add_all(users)
            await session.flush()
            now = utcnow()
            session.add_all(
                ApiKey(
                    user_id=user.id,
                    name="bench",
                    prefix=display_prefix(key),
                    key_hash=hash_key(key),
                    changed_at=now,
                )
                for user, key in zip(users, keys, strict=True)
            )
        await engine.dispose()

    asyncio.run(write())
    return keys


def count_events(database: str) -> int:
    """Committed ledger events of successful metered calls."""
    sql = "SELECT count(*) FROM usage_events WHERE status >= 200 AND status < 300"
    if "://" in database:
        import asyncpg

        async def pg() -> int:
            conn = await asyncpg.connect(database)
            try:
                return int(await conn.fetchval(sql))
            finally:
                await conn.close()

        return asyncio.run(pg())
    import sqlite3

    with sqlite3.connect(database) as db:
        return int(db.execute(sql).fetchone()[0])


def run_mode(mode: str, workers: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    scenarios = [s for s in args.scenarios.split(",") if s]
    upstream = start_asgi("bench.upstream_app:app", f"upstream-{workers}", workers, tmp)
    bare = start_asgi("bench.bare_app:app", f"bare-{workers}", workers, tmp)
    routes = tmp / "routes.toml"
    routes.write_text(f'[[routes]]\nprefix = "/api/v1/upstream"\nupstream = "{upstream.base}"\n')
    gateway = start_gateway(mode, workers, tmp, routes, args.reporting_interval)
    servers: dict[str, Server] = {"gateway": gateway, "bare": bare, "upstream": upstream}
    try:
        one = tmp / "one.keys"
        one.write_text(register(gateway.base) + "\n")
        many = tmp / "many.keys"
        seeded = seed_customers(gateway.extra["env_database"], SEEDED_CUSTOMERS)
        many.write_text("\n".join([one.read_text().strip(), *seeded]) + "\n")
        body = tmp / "post.json"
        body.write_text(POST_BODY.decode())
        keyfile = {"none": "-", "one": str(one), "many": str(many)}

        def drive(name: str, connections: int, duration: float) -> dict[str, float]:
            target = TARGETS[name]
            server = servers[target.server]
            body_arg = str(body) if target.method == "POST" else "-"
            cpu = server.cpu_seconds()
            result = wrk(
                server.base + target.path,
                connections,
                duration,
                [keyfile[target.keys], target.method, body_arg],
            )
            result["cpu_us"] = (server.cpu_seconds() - cpu) / max(1, result["requests"]) * 1e6
            return result

        # The key cache re-reads keys changed in the last few seconds (CHANGE_OVERLAP): let the
        # seeding age out of that window, then warm every path and load all 1,000 keys.
        time.sleep(6)
        for name in scenarios:
            drive(name, 16, 3 if name == "metered-1000" else 1)
        samplers = {n: RssSampler(s) for n, s in servers.items()}
        for sampler in samplers.values():
            sampler.start()
        runs: dict[str, dict[str, list[dict[str, float]]]] = {}
        for connections in args.connections:
            for _ in range(args.rounds):
                for name in scenarios:
                    result = drive(name, connections, args.duration)
                    runs.setdefault(str(connections), {}).setdefault(name, []).append(result)
        for sampler in samplers.values():
            sampler.running = False
        time.sleep(0.5)  # let the last responses' events land before counting
        answered = sum(
            int(r["status_2xx"])
            for by_name in runs.values()
            for name, results in by_name.items()
            if name in METERED
            for r in results
        )
        return {
            "mode": mode,
            "workers": workers,
            "runs": runs,
            "peak_rss_mb": {n: round(s.peak, 1) for n, s in samplers.items()},
            "metered_2xx_in_measured_runs": answered,
            "ledger_2xx_events_total": count_events(gateway.extra["env_database"]),
        }
    finally:
        for server in (gateway, bare, upstream):
            server.stop()


def median(results: list[dict[str, float]], field: str) -> float:
    return statistics.median(r[field] for r in results)


def ratio(by_name: dict[str, list[dict[str, float]]], a: str, b: str) -> str:
    """The median over rounds of a/b requests/s, each round's pair run under the same load."""
    if a not in by_name or b not in by_name:
        return "n/a"
    pairs = zip(by_name[a], by_name[b], strict=True)
    return f"{statistics.median(x['rps'] / y['rps'] for x, y in pairs if y['rps']):.2f}"


def report(result: dict[str, Any]) -> None:
    print(f"\n## mode {result['mode']}, {result['workers']} worker(s)")
    for connections, by_name in result["runs"].items():
        print(f"\n{connections} connection(s), medians of {len(next(iter(by_name.values())))}")
        print(
            f"{'scenario':13} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} "
            f"{'CPU us/req':>10} {'errors':>6}"
        )
        for name, runs in by_name.items():
            print(
                f"{name:13} {median(runs, 'rps'):8.0f} {median(runs, 'p50'):8.2f} "
                f"{median(runs, 'p99'):8.2f} {median(runs, 'p999'):9.2f} "
                f"{median(runs, 'cpu_us'):10.1f} {sum(int(r['errors']) for r in runs):6d}"
            )

        print(
            f"ratios: metered/free {ratio(by_name, 'metered', 'free')} "
            "(target >= 0.85; core issue 0.70), "
            f"metered/bare {ratio(by_name, 'metered', 'bare')} (>= 0.5), "
            f"1000 keys/1 key {ratio(by_name, 'metered-1000', 'metered')} (>= 0.95), "
            f"proxied/upstream {ratio(by_name, 'proxied', 'upstream')} (>= 0.7)"
        )
        if "metered" in by_name and "free" in by_name:
            gap = median(by_name["metered"], "p99") - median(by_name["free"], "p99")
            print(f"p99 metered - free: {gap:+.2f} ms (target <= +2 ms at 64 connections)")
    print(f"peak RSS per worker, MB: {result['peak_rss_mb']} (target < 150 for the gateway)")
    print(
        f"metered 2xx answered in measured runs: {result['metered_2xx_in_measured_runs']}; "
        f"2xx events in the ledger (warm-up included): {result['ledger_2xx_events_total']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="embedded:1")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", default="64,1")
    parser.add_argument("--json", default="", help="write every run to this file")
    parser.add_argument(
        "--reporting-interval",
        type=int,
        default=3_600_000,
        help="the gateway's USAGE_REPORTING_INTERVAL in ms (default: the reporter out of the way;"
        " 10000 claims and reports beside the load every 10 s)",
    )
    args = parser.parse_args()
    args.connections = [int(c) for c in args.connections.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="novo-bench-"))
    results = []
    for spec in args.modes.split(","):
        mode, _, workers = spec.partition(":")
        result = run_mode(mode, int(workers or 1), args, tmp)
        report(result)
        results.append(result)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
