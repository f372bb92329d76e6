"""Idempotency-Key attacked from outside: two gateway processes on one PostgreSQL, a real upstream.

- One key reused on other endpoints, bodies, queries and a proxied route worth 5 units: every
  reuse is 422, nothing runs, the ledger gains nothing (before: all served, +1 billed in total).
- 50 concurrent retries of one request with one key, spread over both processes: the work runs
  once (one notification id for all; the upstream reached once), it is billed once, the other
  49 answers are the same bytes with `Idempotent-Replayed: true`; and Stripe is sent exactly that.
- A process SIGKILLed while it holds a key: the retry on the other process is 409 until the
  claim lapses (IDEMPOTENCY_LOCK_SECONDS), then runs; billed once.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.adversarial.conftest import GatewayFactory
from tests.adversarial.harness import Gateway, running
from tests.adversarial.stripe_side import EmulatorProcess
from tests.adversarial.system import (
    Account,
    Figures,
    Ledger,
    assert_billed_exactly,
    register,
    report_usage,
)

NOTIFY = "/api/v1/notifications/send"
NOTE = {"channel": "email", "recipients": ["a@example.com"], "message": "Hello"}
RETRIES = 50
LOCK_SECONDS = 3


class Upstream:
    """A real HTTP upstream in the test's loop: counts requests per path, can hold them."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.arrived = asyncio.Event()
        self.gate = asyncio.Event()
        self.gate.set()
        self.url = ""

    async def handle(self, request: Request) -> Response:
        await request.body()
        self.hits[request.url.path] += 1
        self.arrived.set()
        await self.gate.wait()
        return JSONResponse({"run": self.hits[request.url.path], "id": uuid.uuid4().hex})


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    served = Upstream()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    app = Starlette(routes=[Route("/{path:path}", served.handle, methods=["GET", "POST"])])
    config = uvicorn.Config(app, log_level="warning", lifespan="off", ws="none", http="h11")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    served.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    yield served
    served.gate.set()
    server.should_exit = True
    await task
    sock.close()


@pytest.fixture
def pair(
    factory: GatewayFactory, upstream: Upstream, tmp_path: Path
) -> Iterator[tuple[Gateway, Gateway]]:
    """Two gateway processes on one fresh PostgreSQL database, with a 5-unit upstream route."""
    routes = tmp_path / "routes.toml"
    routes.write_text(
        f'[[routes]]\nprefix = "/api/v1/up"\nupstream = "{upstream.url}"\nunits = 5\n'
    )
    database = factory.database("postgres")
    settings = {"routes_file": str(routes), "idempotency_lock_seconds": LOCK_SECONDS}
    first = factory.gateway(database, **settings)
    second = factory.gateway(database, **settings)
    with running(first, second):
        yield first, second


def _ledger(gateway: Gateway) -> Ledger:
    return Ledger(database_url=gateway.env["DATABASE_URL"])


async def _events(gateway: Gateway, account: Account) -> tuple[int, int]:
    ledger = _ledger(gateway)
    try:
        return await ledger.events(account.user_id)
    finally:
        await ledger.close()


def keyed(account: Account, key: str) -> dict[str, str]:
    return {**account.auth, "Idempotency-Key": key}


async def test_one_key_reused_on_other_requests_is_refused_and_never_billed(
    pair: tuple[Gateway, Gateway], upstream: Upstream, figures: Figures
) -> None:
    first, second = pair
    async with (
        httpx.AsyncClient(base_url=first.url, timeout=60) as one,
        httpx.AsyncClient(base_url=second.url, timeout=60) as two,
    ):
        account = await register(one, "idem-reuse")
        ok = await one.get("/api/v1/insights", headers=keyed(account, "k"))
        assert ok.status_code == 200
        others: list[tuple[str, str, dict[str, Any] | None]] = [
            ("POST", "/api/v1/bulk/process", {"items": [f"lead-{i}" for i in range(1000)]}),
            ("POST", NOTIFY, NOTE),
            ("POST", "/api/v1/up/search", {"q": "x"}),
            ("GET", "/api/v1/up/search", None),
            ("GET", "/api/v1/analytics?period=7d", None),
            ("GET", "/api/v1/insights?page=2", None),
        ]
        answers = [
            await (one if i % 2 else two).request(
                method, path, json=body, headers=keyed(account, "k")
            )
            for i in range(60)
            for method, path, body in [others[i % len(others)]]
        ]
    codes = Counter(a.status_code for a in answers)
    assert codes == {422: 60}, codes
    assert all(a.json()["error"] == "Unprocessable Content" for a in answers)
    assert upstream.hits.total() == 0
    assert await _events(first, account) == (1, 1)  # the first call only: +0 for the reuses
    figures.add(
        "idempotency",
        reused_key_calls=60,
        reused_key_refused_422=codes[422],
        reused_key_units_billed=0,
        reused_key_upstream_requests=upstream.hits.total(),
    )


@pytest.mark.parametrize(("path", "units"), [(NOTIFY, 1), ("/api/v1/up/send", 5)])
async def test_fifty_concurrent_retries_across_two_processes_run_once_and_bill_once(
    pair: tuple[Gateway, Gateway],
    upstream: Upstream,
    emulator: EmulatorProcess,
    figures: Figures,
    path: str,
    units: int,
) -> None:
    first, second = pair
    async with (
        httpx.AsyncClient(base_url=first.url, timeout=60) as one,
        httpx.AsyncClient(base_url=second.url, timeout=60) as two,
    ):
        account = await register(one, "idem-burst")
        answers = await asyncio.gather(
            *(
                (one if i % 2 else two).post(path, json=NOTE, headers=keyed(account, "burst"))
                for i in range(RETRIES)
            )
        )
    assert Counter(a.status_code for a in answers) == {200: RETRIES}
    assert len({a.content for a in answers}) == 1, "every retry got the first answer's bytes"
    replayed = [a for a in answers if a.headers.get("idempotent-replayed") == "true"]
    assert len(replayed) == RETRIES - 1
    if path == NOTIFY:
        assert len({a.json()["notification"]["id"] for a in answers}) == 1
    else:
        assert upstream.hits[path] == 1
    assert await _events(first, account) == (RETRIES, units)
    result = await asyncio.to_thread(report_usage, first.env, 120)
    assert result.returncode == 0, result.stdout + result.stderr
    ledger = _ledger(first)
    try:
        customer = await ledger.customer_of(account.user_id)
        assert customer is not None
        assert await assert_billed_exactly(ledger, emulator, [customer]) == units
    finally:
        await ledger.close()
    kind = "builtin" if path == NOTIFY else "proxied"
    runs = len({a.content for a in answers}) if path == NOTIFY else upstream.hits[path]
    figures.add(
        "idempotency",
        **{
            f"{kind}_concurrent_retries": RETRIES,
            f"{kind}_work_runs": runs,
            f"{kind}_replayed": len(replayed),
            f"{kind}_stripe_units": units,
        },
    )


async def test_a_claim_of_a_killed_process_lapses_and_the_retry_runs_once(
    pair: tuple[Gateway, Gateway], upstream: Upstream, figures: Figures
) -> None:
    first, second = pair
    async with (
        httpx.AsyncClient(base_url=first.url, timeout=60) as one,
        httpx.AsyncClient(base_url=second.url, timeout=60) as two,
    ):
        account = await register(one, "idem-crash")
        upstream.gate.clear()
        held = asyncio.create_task(
            one.post("/api/v1/up/pay", json=NOTE, headers=keyed(account, "pay"))
        )
        await asyncio.wait_for(upstream.arrived.wait(), 30)
        first.kill()  # SIGKILL while it holds the key, its request at the upstream
        with pytest.raises(httpx.HTTPError):
            await held
        upstream.gate.set()
        seen: Counter[int] = Counter()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while True:  # bounded: the claim lapses LOCK_SECONDS after its last renewal
            retry = await two.post("/api/v1/up/pay", json=NOTE, headers=keyed(account, "pay"))
            seen[retry.status_code] += 1
            if retry.status_code == 200:
                break
            assert retry.status_code == 409, retry.text
            assert loop.time() < deadline, "the dead process's claim never lapsed"
        again = await two.post("/api/v1/up/pay", json=NOTE, headers=keyed(account, "pay"))
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == retry.content
    # The killed process reached the upstream once, the retry once; nothing else ran.
    assert upstream.hits["/api/v1/up/pay"] == 2
    _total, billed = await _events(second, account)
    assert billed == 5  # the killed call was never recorded, the retry billed once
    figures.add("idempotency", killed_holder_retries_409=seen[409], killed_holder_billed=billed)
