"""In-process cost of one request through the gateway's ASGI app, without the HTTP server.

Builds the app on a fresh SQLite file (or DATABASE_URL), runs its lifespan, makes one customer and
one API key, then calls the ASGI app directly from `--concurrency` tasks for `--requests` calls
per path. Prints microseconds of CPU per request: the figure to watch while optimising, because
it is not disturbed by wrk or the HTTP parser sharing the two cores.

    .venv/bin/python bench/asgi_micro.py [--requests 20000] [--concurrency 64] [--profile out.txt]

The proxied path (`--only proxied`) calls the local upstream (bench/upstream_app.py, started here
under uvicorn in its own process, so its CPU is not counted) through a routes file.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from novo_gateway.app import create_app
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import session_scope
from novo_gateway.migrate import upgrade

PROXIED = "/api/v1/upstream/x"


async def make_key(app: Any, email: str = "micro@example.com") -> str:
    from argon2 import PasswordHasher

    from novo_gateway.accounts.models import User
    from novo_gateway.keys.models import ApiKey
    from novo_gateway.keys.tokens import display_prefix, generate_key, hash_key
    from novo_gateway.kit.models_base import utcnow

    runtime = app.state.runtime
    async with session_scope(runtime.sessions) as session:
        user = User(
            email=email,
            name="Micro",
            password_hash=PasswordHasher().hash("benchmark passphrase"),
            subscription_status="active",
        )
        session.add(user)
        await session.flush()
        raw = generate_key()
        session.add(
            ApiKey(
                user_id=user.id,
                name="bench",
                prefix=display_prefix(raw),
                key_hash=hash_key(raw),
                changed_at=utcnow(),
            )
        )
    return raw


async def drive(
    app: Any, path: str, headers: list[tuple[bytes, bytes]], n: int, conc: int, keys: list[str] = ()
) -> int:
    statuses: dict[int, int] = {}
    turn = 0

    async def one() -> None:
        nonlocal turn, headers
        if keys:
            turn += 1
            headers = [(b"x-api-key", keys[turn % len(keys)].encode())]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [(b"host", b"127.0.0.1"), *headers],
            "client": ("127.0.0.1", 5555),
            "server": ("127.0.0.1", 3000),
            "state": {},
        }

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses[message["status"]] = statuses.get(message["status"], 0) + 1

        await app(scope, receive, send)

    async def worker(count: int) -> None:
        for _ in range(count):
            await one()

    await asyncio.gather(*(worker(n // conc) for _ in range(conc)))
    assert set(statuses) == {200}, statuses
    return sum(statuses.values())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--profile", default="")
    parser.add_argument("--database-url", default="")
    parser.add_argument("--only", default="", help="run only the paths containing this text")
    parser.add_argument("--keys", type=int, default=1, help="customers whose keys take turns")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="novo-micro-"))
    with ExitStack() as stack:
        routes = None
        if not args.only or args.only in "proxied " + PROXIED:
            from bench.servers import start_asgi

            upstream = start_asgi("bench.upstream_app:app", "upstream", 1, tmp)
            stack.callback(upstream.stop)
            routes = tmp / "routes.toml"
            routes.write_text(
                f'[[routes]]\nprefix = "/api/v1/upstream"\nupstream = "{upstream.base}"\n'
            )
        measure(args, tmp, routes)


def measure(args: argparse.Namespace, tmp: Path, routes: Path | None) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_path=tmp / "micro.db",
        database_url=args.database_url,
        stripe_secret_key="",
        rate_limit_per_minute=100_000_000,
        log_level="warning",
        routes_file=routes,
    )
    upgrade(settings)
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run(settings, args))


async def run(settings: Settings, args: argparse.Namespace) -> None:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        keys = [await make_key(app, f"micro{i}@example.com") for i in range(args.keys)]
        key = keys[0]
        auth = [(b"x-api-key", key.encode())]
        await drive(app, "/api/v1/insights", auth, 500, 16, keys)  # warm up
        await drive(app, "/api/v1/health", [], 500, 16)
        if settings.routes_file is not None:
            await drive(app, PROXIED, auth, 500, 16, keys)
        for name, path, headers in (
            ("free /api/v1/health", "/api/v1/health", []),
            ("metered /api/v1/insights", "/api/v1/insights", auth),
            ("free /api/v1/health", "/api/v1/health", []),
            ("metered /api/v1/insights", "/api/v1/insights", auth),
            ("proxied " + PROXIED, PROXIED, auth),
            ("proxied " + PROXIED, PROXIED, auth),
        ):
            if "proxied" in name and settings.routes_file is None:
                continue
            if args.only not in name:
                continue
            profiler = cProfile.Profile() if args.profile and "free" not in name else None
            cpu, wall, loop_cpu = time.process_time(), time.perf_counter(), time.thread_time()
            if profiler:
                profiler.enable()
            many = keys if "free" not in name else []
            done = await drive(app, path, headers, args.requests, args.concurrency, many)
            if profiler:
                profiler.disable()
                with open(args.profile, "w") as out:  # noqa: ASYNC230
                    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(60)
            loop_cpu = time.thread_time() - loop_cpu
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            print(
                f"{name:28} {done / wall:8.0f} req/s  {cpu / done * 1e6:6.1f} us CPU/request"
                f" ({loop_cpu / done * 1e6:6.1f} us on the event loop's thread)"
            )


if __name__ == "__main__":
    main()
