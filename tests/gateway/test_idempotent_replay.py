"""An Idempotency-Key names one request: run once, its answer replayed, another request refused.

Every test runs on SQLite and PostgreSQL. The upstream is a real HTTP server (uvicorn in the test's
loop) that counts the requests it serves and can be held mid-request, so "the work ran once" is
counted where the work happens.
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from novo_gateway.gateway.idempotency import Idempotency, fingerprint
from novo_gateway.kit.clock import FrozenClock
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import create_engine, create_session_factory
from novo_gateway.kit.errors import ServiceUnavailable
from tests.conftest import AppClient, make_test_settings
from tests.gateway.helpers import Account, ledger, make_account, runtime_of

NOTIFY = "/api/v1/notifications/send"
NOTE = {"channel": "email", "recipients": ["a@example.com"], "message": "Hello"}
WAIT = 10.0  # bound on waiting for an event of a real server in this test's loop


class Upstream:
    """A real upstream: counts its requests, can be held, answers the statuses it is given."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.arrived = asyncio.Event()
        self.gate = asyncio.Event()
        self.gate.set()
        self.statuses: list[int] = []
        self.url = ""

    async def handle(self, request: Request) -> Response:
        await request.body()
        self.hits[request.url.path] += 1
        self.arrived.set()
        await self.gate.wait()
        status = self.statuses.pop(0) if self.statuses else 200
        pad = "x" * int(request.query_params.get("size", "0"))
        return JSONResponse(
            {"hit": sum(self.hits.values()), "pad": pad},
            status_code=status,
            headers={"Location": "/api/v1/up/thing/1", "Set-Cookie": "s=1"},
        )


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
def gateway(
    make_settings: Callable[..., Settings],
    start_app: Callable[..., Any],
    clock: FrozenClock,
    upstream: Upstream,
    tmp_path: Path,
) -> Callable[..., Any]:
    """Start a gateway (with an upstream route `/api/v1/up`) with these settings."""
    routes = tmp_path / "routes.toml"
    routes.write_text(
        f'[[routes]]\nprefix = "/api/v1/up"\nupstream = "{upstream.url}"\nunits = 5\n'
    )

    async def start(**overrides: Any) -> AppClient:
        client: AppClient = await start_app(
            make_settings(routes_file=routes, **overrides), clock=clock
        )
        return client

    return start


def keyed(account: Account, key: str) -> dict[str, str]:
    return {**account.auth, "Idempotency-Key": key}


async def billed(client: AppClient) -> list[bool]:
    return [e.billable for e in await ledger(client)]


def idempotency_of(client: AppClient) -> Idempotency:
    return runtime_of(client).idempotency


async def until_waiting(idempotency: Idempotency) -> None:
    """Bounded poll until a request of this gateway waits on a key held by another."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while idempotency.waiting == 0:
        assert loop.time() < deadline, "no request started waiting"
        await asyncio.sleep(0.005)


async def test_retry_replays_the_answer_with_its_meta_and_bills_once(
    gateway: Callable[..., Any],
) -> None:
    client = await gateway()
    account = await make_account(client)
    first = await client.post(NOTIFY, json=NOTE, headers=keyed(account, "n-1"))
    again = await client.post(NOTIFY, json=NOTE, headers=keyed(account, "n-1"))
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.content == first.content  # the same notification id and original meta
    assert again.json()["meta"]["requestId"] == first.headers["x-request-id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert again.headers["content-type"] == first.headers["content-type"]
    # The rate-limit headers are the retry's own.
    assert (
        int(again.headers["x-ratelimit-remaining"])
        == int(first.headers["x-ratelimit-remaining"]) - 1
    )
    assert await billed(client) == [True, False]


async def test_replay_of_a_proxied_answer_does_not_reach_the_upstream_again(
    gateway: Callable[..., Any], upstream: Upstream
) -> None:
    client = await gateway()
    account = await make_account(client)
    first = await client.post("/api/v1/up/orders", json={"n": 1}, headers=keyed(account, "o"))
    again = await client.post("/api/v1/up/orders", json={"n": 1}, headers=keyed(account, "o"))
    assert first.status_code == again.status_code == 200
    assert again.content == first.content
    assert again.headers["location"] == "/api/v1/up/thing/1"
    assert again.headers["idempotent-replayed"] == "true"
    assert "set-cookie" not in again.headers  # only the headers that describe the body
    assert upstream.hits["/api/v1/up/orders"] == 1
    events = await ledger(client)
    assert [(e.endpoint, e.units, e.billable) for e in events] == [
        ("/api/v1/up/*", 5, True),
        ("/api/v1/up/*", 5, False),
    ]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/v1/insights", None),  # another endpoint
        ("POST", "/api/v1/bulk/process", {"items": ["a"] * 1000}),  # another endpoint and body
        ("POST", NOTIFY, {**NOTE, "message": "Other"}),  # the same endpoint, another body
        ("POST", NOTIFY + "?x=1", NOTE),  # another query
        ("POST", "/api/v1/up/orders", NOTE),  # a proxied route
    ],
)
async def test_key_reused_for_another_request_is_422_not_run_and_not_billed(
    gateway: Callable[..., Any],
    upstream: Upstream,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    client = await gateway()
    account = await make_account(client)
    assert (await client.post(NOTIFY, json=NOTE, headers=keyed(account, "k"))).status_code == 200
    reused = await client.request(method, path, json=body, headers=keyed(account, "k"))
    assert reused.status_code == 422
    error = reused.json()
    assert error["error"] == "Unprocessable Content"
    assert "Idempotency-Key" in error["message"]
    assert "x-ratelimit-limit" in reused.headers
    assert upstream.hits.total() == 0
    assert await billed(client) == [True]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("TRACE", NOTIFY, 405),
        ("QUERY", NOTIFY, 405),
        ("GET", NOTIFY, 405),
        ("POST", "/api/v1/insights", 405),
        ("GET", "/api/v1/nowhere", 404),
    ],
)
async def test_a_request_no_endpoint_serves_keeps_its_404_or_405_whatever_its_key(
    gateway: Callable[..., Any], method: str, path: str, status: int
) -> None:
    client = await gateway()
    account = await make_account(client)
    assert (await client.post(NOTIFY, json=NOTE, headers=keyed(account, "k"))).status_code == 200
    refused = await client.request(method, path, headers=keyed(account, "k"))
    assert refused.status_code == status
    assert (await billed(client))[0] is True and not any((await billed(client))[1:])


async def test_api_key_in_the_query_is_not_part_of_the_fingerprint(
    gateway: Callable[..., Any],
) -> None:
    client = await gateway()
    account = await make_account(client)
    key = {"Idempotency-Key": "q"}
    first = await client.get(f"/api/v1/analytics?period=7d&api_key={account.key}", headers=key)
    again = await client.get("/api/v1/analytics?period=7d", headers=keyed(account, "q"))
    assert first.status_code == again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content


async def test_a_key_is_scoped_to_its_account(gateway: Callable[..., Any]) -> None:
    client = await gateway()
    ada = await make_account(client, "ada@example.com")
    bob = await make_account(client, "bob@example.com")
    first = await client.post(NOTIFY, json=NOTE, headers=keyed(ada, "shared"))
    other = await client.post(NOTIFY, json=NOTE, headers=keyed(bob, "shared"))
    assert "idempotent-replayed" not in other.headers
    assert other.json()["notification"]["id"] != first.json()["notification"]["id"]
    assert await billed(client) == [True, True]


async def test_retry_while_the_first_runs_gets_409_after_the_wait_and_never_runs_twice(
    gateway: Callable[..., Any], upstream: Upstream
) -> None:
    client = await gateway(idempotency_wait_seconds=0)
    account = await make_account(client)
    upstream.gate.clear()
    first = asyncio.create_task(client.post("/api/v1/up/pay", headers=keyed(account, "p")))
    await asyncio.wait_for(upstream.arrived.wait(), WAIT)
    during = await client.post("/api/v1/up/pay", headers=keyed(account, "p"))
    assert during.status_code == 409
    assert during.json()["error"] == "Conflict"
    assert during.headers["retry-after"] == "1"
    upstream.gate.set()
    assert (await first).status_code == 200
    after = await client.post("/api/v1/up/pay", headers=keyed(account, "p"))
    assert after.headers["idempotent-replayed"] == "true"
    assert after.content == (await first).content
    assert upstream.hits["/api/v1/up/pay"] == 1
    assert await billed(client) == [True, False]


async def test_retry_while_the_first_runs_waits_and_gets_its_answer(
    gateway: Callable[..., Any], upstream: Upstream
) -> None:
    client = await gateway(idempotency_wait_seconds=WAIT)
    account = await make_account(client)
    upstream.gate.clear()
    first = asyncio.create_task(client.post("/api/v1/up/pay", headers=keyed(account, "p")))
    await asyncio.wait_for(upstream.arrived.wait(), WAIT)
    second = asyncio.create_task(client.post("/api/v1/up/pay", headers=keyed(account, "p")))
    await until_waiting(idempotency_of(client))
    upstream.gate.set()
    one, two = await first, await second
    assert (one.status_code, two.status_code) == (200, 200)
    assert two.content == one.content
    assert two.headers["idempotent-replayed"] == "true"
    assert upstream.hits["/api/v1/up/pay"] == 1


@pytest.mark.parametrize("path", [NOTIFY, "/api/v1/up/notify"])
async def test_concurrent_retries_run_the_work_once_and_bill_once(
    gateway: Callable[..., Any], upstream: Upstream, path: str
) -> None:
    client = await gateway()
    account = await make_account(client)
    answers = await asyncio.gather(
        *(client.post(path, json=NOTE, headers=keyed(account, "burst")) for _ in range(30))
    )
    assert {a.status_code for a in answers} == {200}
    assert len({a.content for a in answers}) == 1
    assert sum("idempotent-replayed" not in a.headers for a in answers) == 1
    assert upstream.hits[path] == (1 if path.startswith("/api/v1/up") else 0)
    assert sorted(await billed(client)) == [False] * 29 + [True]


async def test_two_gateways_on_one_database_run_a_key_once(
    gateway: Callable[..., Any],
) -> None:
    one, two = await gateway(), await gateway()
    account = await make_account(one)
    answers = await asyncio.gather(
        *(
            (one if i % 2 else two).post(NOTIFY, json=NOTE, headers=keyed(account, "both"))
            for i in range(30)
        )
    )
    assert {a.status_code for a in answers} == {200}
    assert len({a.json()["notification"]["id"] for a in answers}) == 1
    assert sorted(await billed(one)) == [False] * 29 + [True]


@pytest.mark.parametrize("status", [500, 502, 503, 429])
async def test_a_failed_answer_is_not_stored_so_a_retry_runs_again(
    gateway: Callable[..., Any], upstream: Upstream, status: int
) -> None:
    client = await gateway()
    account = await make_account(client)
    upstream.statuses = [status]
    failed = await client.post("/api/v1/up/pay", headers=keyed(account, "f"))
    retried = await client.post("/api/v1/up/pay", headers=keyed(account, "f"))
    assert (failed.status_code, retried.status_code) == (status, 200)
    assert "idempotent-replayed" not in retried.headers
    assert upstream.hits["/api/v1/up/pay"] == 2
    assert await billed(client) == [False, True]


async def test_a_client_error_answer_is_stored_and_replayed(gateway: Callable[..., Any]) -> None:
    client = await gateway()
    account = await make_account(client)
    bad = {"channel": "pigeon", "recipients": [], "message": ""}
    first = await client.post(NOTIFY, json=bad, headers=keyed(account, "bad"))
    again = await client.post(NOTIFY, json=bad, headers=keyed(account, "bad"))
    assert first.status_code == again.status_code == 400
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert await billed(client) == [False, False]


async def test_an_answer_over_the_bound_is_sent_whole_but_a_retry_gets_422(
    gateway: Callable[..., Any], upstream: Upstream
) -> None:
    client = await gateway()  # IDEMPOTENCY_MAX_ANSWER_BYTES: 65,536
    account = await make_account(client)
    path = "/api/v1/up/report?size=200000"
    first = await client.get(path, headers=keyed(account, "big"))
    assert first.status_code == 200
    assert len(first.json()["pad"]) == 200_000
    again = await client.get(path, headers=keyed(account, "big"))
    assert again.status_code == 422
    error = again.json()
    assert error["originalStatus"] == 200
    assert error["originalRequestId"] == first.headers["x-request-id"]
    assert "too large" in error["message"]
    assert upstream.hits["/api/v1/up/report"] == 1
    assert await billed(client) == [True]


async def test_the_answer_bound_is_a_setting(gateway: Callable[..., Any]) -> None:
    client = await gateway(idempotency_max_answer_bytes=100)
    account = await make_account(client)
    assert (await client.post(NOTIFY, json=NOTE, headers=keyed(account, "s"))).status_code == 200
    again = await client.post(NOTIFY, json=NOTE, headers=keyed(account, "s"))
    assert again.status_code == 422
    assert again.json()["originalStatus"] == 200


async def test_a_claim_whose_holder_died_lapses_after_the_lock_time(
    gateway: Callable[..., Any], clock: FrozenClock
) -> None:
    client = await gateway(idempotency_wait_seconds=0, idempotency_lock_seconds=60)
    account = await make_account(client)
    # A process claimed this request and died: its row is left running, never renewed.
    body = b'{"channel":"email","recipients":["a@example.com"],"message":"Hello"}'
    print_ = fingerprint("POST", NOTIFY.encode(), b"", body)
    now = clock.now()
    store = idempotency_of(client).store
    await store.insert(account.user_id, "dead", print_, "gone", now, now + timedelta(seconds=60))
    headers = {**keyed(account, "dead"), "Content-Type": "application/json"}
    assert (await client.post(NOTIFY, content=body, headers=headers)).status_code == 409
    clock.advance(60)
    taken = await client.post(NOTIFY, content=body, headers=headers)
    assert taken.status_code == 200
    assert "idempotent-replayed" not in taken.headers
    assert await billed(client) == [True]


async def test_a_retry_waiting_on_a_dead_claim_takes_it_over_once_it_lapses(
    gateway: Callable[..., Any], clock: FrozenClock
) -> None:
    client = await gateway(idempotency_wait_seconds=WAIT, idempotency_lock_seconds=60)
    account = await make_account(client)
    body = b'{"channel":"email","recipients":["a@example.com"],"message":"Hello"}'
    print_ = fingerprint("POST", NOTIFY.encode(), b"", body)
    now = clock.now()
    idempotency = idempotency_of(client)
    await idempotency.store.insert(
        account.user_id, "dead", print_, "gone", now, now + timedelta(seconds=60)
    )
    headers = {**keyed(account, "dead"), "Content-Type": "application/json"}
    retry = asyncio.create_task(client.post(NOTIFY, content=body, headers=headers))
    await until_waiting(idempotency)
    clock.advance(60)  # the dead holder's claim lapses while the retry waits (it arrived before)
    taken = await retry
    assert taken.status_code == 200
    assert "idempotent-replayed" not in taken.headers
    assert await billed(client) == [True]


async def test_a_running_claim_is_renewed_so_a_slow_call_is_not_taken_over(
    gateway: Callable[..., Any], upstream: Upstream, clock: FrozenClock
) -> None:
    client = await gateway(idempotency_wait_seconds=0, idempotency_lock_seconds=3)
    account = await make_account(client)
    store = idempotency_of(client).store
    upstream.gate.clear()
    first = asyncio.create_task(client.post("/api/v1/up/slow", headers=keyed(account, "s")))
    await asyncio.wait_for(upstream.arrived.wait(), WAIT)
    seen = await store.get(account.user_id, "s")
    assert seen is not None
    clock.advance(2)  # within the lock; the holder renews from here (every second)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while True:  # bounded poll until the holder has renewed its claim
        renewed = await store.get(account.user_id, "s")
        assert renewed is not None
        if renewed.locked_until > seen.locked_until:
            break
        assert loop.time() < deadline, "the claim was never renewed"
        await asyncio.sleep(0.05)
    clock.advance(2)  # past the first lock, within the renewed one
    during = await client.post("/api/v1/up/slow", headers=keyed(account, "s"))
    assert during.status_code == 409
    upstream.gate.set()
    assert (await first).status_code == 200
    assert upstream.hits["/api/v1/up/slow"] == 1


async def test_keys_past_their_24_hours_are_deleted(
    gateway: Callable[..., Any], clock: FrozenClock
) -> None:
    client = await gateway()
    account = await make_account(client)
    await client.get("/api/v1/insights", headers=keyed(account, "old"))
    clock.advance(25 * 3600)  # past the window, and the hourly purge is due
    await client.get("/api/v1/insights", headers=keyed(account, "new"))
    store = idempotency_of(client).store
    assert await store.get(account.user_id, "old") is None
    assert await store.get(account.user_id, "new") is not None


async def test_a_key_is_free_for_another_request_after_24_hours(
    gateway: Callable[..., Any], clock: FrozenClock
) -> None:
    client = await gateway()
    account = await make_account(client)
    await client.post(NOTIFY, json=NOTE, headers=keyed(account, "day"))
    clock.advance(24 * 3600 - 1)
    refused = await client.get("/api/v1/insights", headers=keyed(account, "day"))
    assert refused.status_code == 422
    clock.advance(1)
    reused = await client.get("/api/v1/insights", headers=keyed(account, "day"))
    assert reused.status_code == 200
    assert "idempotent-replayed" not in reused.headers
    assert await billed(client) == [True, True]


async def test_a_structured_field_string_names_the_same_key(gateway: Callable[..., Any]) -> None:
    client = await gateway()
    account = await make_account(client)
    await client.post(NOTIFY, json=NOTE, headers=keyed(account, "abc"))
    again = await client.post(NOTIFY, json=NOTE, headers=keyed(account, '"abc"'))
    assert again.headers["idempotent-replayed"] == "true"


async def test_two_idempotency_key_headers_are_400(gateway: Callable[..., Any]) -> None:
    client = await gateway()
    account = await make_account(client)
    raw = [*account.auth.items(), ("Idempotency-Key", "a"), ("Idempotency-Key", "b")]
    response = await client.post(NOTIFY, json=NOTE, headers=raw)
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["message"]
    assert await ledger(client) == []


async def test_an_unreachable_database_is_503_and_nothing_runs(clock: FrozenClock) -> None:
    # A real refused connection: a PostgreSQL URL on a port where nothing listens.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    engine = create_engine(make_test_settings(database_url=f"postgresql://x@127.0.0.1:{port}/x"))
    idempotency = Idempotency(
        create_session_factory(engine),
        clock,
        max_answer_bytes=65_536,
        wait_seconds=0,
        lock_seconds=60,
    )
    try:
        with pytest.raises(ServiceUnavailable) as refused:
            await idempotency.begin(1, "k", fingerprint("GET", b"/", b"", b""), clock.now())
        assert refused.value.headers == {"Retry-After": "1"}
        assert "did not run" in refused.value.message
    finally:
        await engine.dispose()
