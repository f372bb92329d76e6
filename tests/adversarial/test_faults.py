"""Part 4: faults under load. Stripe misbehaving, the gateway killed, PostgreSQL restarted, Redis
stopped; after each, every call the client saw answered 2xx is in the ledger exactly once, no
refused call is billed, and Σ billable units in the ledger == Σ units Stripe holds, per customer,
with no meter event identifier counted twice.

The gateway runs as `novo-gateway serve` on this suite's own PostgreSQL and Redis (restarting
them disturbs no other test run). Each call carries its own X-Request-Id, which the ledger keeps,
so the client's view and the ledger are compared call by call.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from tests.adversarial.conftest import GatewayFactory
from tests.adversarial.harness import Gateway, PrivatePostgres, PrivateRedis
from tests.adversarial.stripe_side import EmulatorProcess
from tests.adversarial.system import (
    Account,
    Answer,
    Figures,
    Ledger,
    assert_billed_exactly,
    audit_calls,
    blast,
    register,
    report_usage,
    request_bytes,
)

CRASH_REPETITIONS = int(os.environ.get("NOVO_CRASH_REPETITIONS", "2"))
REPORTER_POINTS = ("reporter.after_claim", "reporter.before_send", "reporter.after_answer")


async def _customers(gateway: Gateway, count: int, tag: str) -> list[Account]:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as client:
        return [await register(client, tag) for _ in range(count)]


def _calls(accounts: list[Account], count: int, tag: str) -> list[tuple[str, bytes]]:
    """`count` metered calls spread over the accounts, each with its own request id."""
    calls = []
    for i in range(count):
        account = accounts[i % len(accounts)]
        request_id = f"{tag}{i:06d}{uuid.uuid4().hex[:8]}"
        path = "/api/v1/insights" if i % 3 else "/api/v1/analytics?period=7d"
        headers = {"X-API-Key": account.key, "X-Request-Id": request_id}
        calls.append((request_id, request_bytes("GET", path, headers)))
    return calls


async def _drain_and_check(
    gateway: Gateway, emulator: EmulatorProcess, accounts: list[Account]
) -> int:
    """Report everything with the operator command, then compare ledger and Stripe."""
    env = {**gateway.env, "NOVO_FAILPOINTS": "", "REPORTER_MAX_BACKOFF_SECONDS": "1"}
    for _ in range(5):
        result = await asyncio.to_thread(report_usage, env, 90)
        if result.returncode == 0:
            break
    assert result.returncode == 0, result.stdout + result.stderr
    ledger = Ledger(database_url=env.get("DATABASE_URL", ""), database_path=env["DATABASE_PATH"])
    try:
        customers = [c for a in accounts if (c := await ledger.customer_of(a.user_id))]
        assert len(customers) == len(accounts)
        return await assert_billed_exactly(ledger, emulator, customers)
    finally:
        await ledger.close()


async def _audit(gateway: Gateway, sent: list[tuple[str, Answer]]) -> dict[str, int]:
    env = gateway.env
    ledger = Ledger(database_url=env.get("DATABASE_URL", ""), database_path=env["DATABASE_PATH"])
    try:
        return await audit_calls(ledger, sent)
    finally:
        await ledger.close()


@pytest.fixture
def gateway_on_pg(factory: GatewayFactory, redis_server: PrivateRedis) -> Iterator[Gateway]:
    gw = factory.gateway(
        factory.database("postgres"),
        redis_url=redis_server.url,
        rate_limit_key_prefix=f"faults-{uuid.uuid4().hex[:6]}",
        reporter_max_backoff_seconds=1,
    )
    yield gw
    gw.stop()


async def test_stripe_refusing_failing_stalling_and_dropping_leaves_billing_exact(
    gateway_on_pg: Gateway, stripe_faults: EmulatorProcess, figures: Figures
) -> None:
    gateway = gateway_on_pg.start()
    accounts = await _customers(gateway, 3, "stripefault")
    sent = _calls(accounts, 300, "sf")
    answers = await blast(gateway.port, [r for _, r in sent], connections=16)
    assert Counter(a.status for a in answers) == {200: 300}

    path = "/v1/billing/meter_events"
    stripe_faults.fault("429", path, count=3, retry_after=1)
    stripe_faults.fault("500", path, count=3)
    stripe_faults.fault("drop", path, count=3)  # processed by Stripe, the answer lost
    stripe_faults.fault("delay", path, count=2, delay=1.5)  # answered after the client gave up
    gateway.env["STRIPE_TIMEOUT_SECONDS"] = "1"  # for the operator's report-usage run
    units = await _drain_and_check(gateway, stripe_faults, accounts)
    injected = sum(f["matched"] for f in stripe_faults.faults())

    audit = await _audit(gateway, list(zip([i for i, _ in sent], answers, strict=True)))
    figures.add("faults", stripe_faults_injected=injected, stripe_fault_units_checked=units)
    assert injected == 11
    assert units == 300
    assert audit["answered_2xx"] == 300


async def test_gateway_killed_under_load_and_by_the_reporter_loses_and_doubles_nothing(
    gateway_on_pg: Gateway, emulator: EmulatorProcess, figures: Figures
) -> None:
    """SIGKILL from outside while calls are in flight, and the reporter's own failpoints (the
    process kills itself right after claiming, before sending, after Stripe answered), each
    CRASH_REPETITIONS times; the process is restarted after each and the load goes on."""
    gateway = gateway_on_pg
    gateway.env.update(USAGE_REPORTING_INTERVAL="300", REPORTER_LEASE_SECONDS="1")
    gateway.start()
    accounts = await _customers(gateway, 3, "crash")
    crashes = ["sigkill", *REPORTER_POINTS] * CRASH_REPETITIONS
    sent = _calls(accounts, 250 * len(crashes), "kill")
    progress = {"done": 0}

    async def count(done: int) -> None:
        progress["done"] = done

    load = asyncio.create_task(  # noqa: RUF006 - awaited below
        blast(gateway.port, [r for _, r in sent], connections=16, deadline=240, on_progress=count)
    )
    crashed = []
    for n, point in enumerate(crashes):
        if point == "sigkill":
            while progress["done"] < len(sent) * (n + 1) // (len(crashes) + 1):
                await asyncio.sleep(0.05)
            gateway.kill()
        else:  # started armed with this failpoint: the reporter kills the process there
            deadline = time.monotonic() + 30
            while gateway.process is not None and gateway.process.poll() is None:
                assert time.monotonic() < deadline, f"{point} was never reached"
                await asyncio.sleep(0.05)
        assert gateway.process is not None
        crashed.append((point, gateway.process.returncode))
        following = crashes[n + 1] if n + 1 < len(crashes) else "sigkill"
        gateway.env["NOVO_FAILPOINTS"] = "" if following == "sigkill" else f"{following}=kill"
        await asyncio.to_thread(gateway.start, may_exit=True)
    answers = await load

    assert all(code == -signal.SIGKILL for _, code in crashed), crashed
    audit = await _audit(gateway, list(zip([i for i, _ in sent], answers, strict=True)))
    gateway.stop()
    units = await _drain_and_check(gateway, emulator, accounts)
    figures.add(
        "faults",
        crash_points=len(set(crashes)),
        crash_repetitions=CRASH_REPETITIONS,
        crashes=len(crashed),
        crash_calls=audit["calls"],
        crash_calls_answered=audit["answered_2xx"],
        crash_calls_lost=0,
        crash_calls_doubled=0,
        crash_units_checked=units,
    )
    assert audit["answered_2xx"] > len(sent) * 0.9


async def test_postgresql_restarted_under_load_gives_503s_not_500s_and_loses_nothing(
    gateway_on_pg: Gateway,
    postgres: PrivatePostgres,
    emulator: EmulatorProcess,
    figures: Figures,
) -> None:
    gateway = gateway_on_pg.start()
    accounts = await _customers(gateway, 4, "pgrestart")
    sent = _calls(accounts, 1200, "pg")
    usage = [
        request_bytes("GET", "/billing/usage", {"X-API-Key": accounts[i % 4].key})
        for i in range(150)
    ]
    progress = {"done": 0}

    async def count(done: int) -> None:
        progress["done"] = done

    load = asyncio.create_task(  # noqa: RUF006 - awaited below
        blast(gateway.port, [r for _, r in sent], connections=16, on_progress=count)
    )
    views = asyncio.create_task(_slowly(gateway.port, usage))
    while progress["done"] < len(sent) // 3:
        await asyncio.sleep(0.05)
    await asyncio.to_thread(postgres.restart)
    answers, usage_answers = await load, await views

    metered = Counter(a.status for a in answers)
    viewed = Counter(a.status for a in usage_answers)
    audit = await _audit(gateway, list(zip([i for i, _ in sent], answers, strict=True)))
    units = await _drain_and_check(gateway, emulator, accounts)
    figures.add(
        "faults",
        postgres_restarts=1,
        postgres_calls=len(sent) + len(usage),
        postgres_503=metered[503] + viewed[503],
    )
    assert set(metered) <= {200, 503}, metered
    assert set(viewed) <= {200, 503}, viewed
    assert metered[200] > 0 and units == metered[200]
    assert audit["unanswered"] == 0
    assert '"level": "error", "logger": "uvicorn.error"' not in gateway.log_text()


async def _slowly(port: int, requests: list[bytes]) -> list[Answer]:
    """Account-endpoint reads beside the load, a few at a time, across the outage."""
    answers: list[Answer] = []
    for start in range(0, len(requests), 10):
        answers += await blast(port, requests[start : start + 10], connections=2)
        await asyncio.sleep(0.02)
    return answers


@pytest.mark.parametrize("fail_open", [False, True], ids=["fail-closed", "fail-open"])
async def test_redis_stopped_under_load_holds_the_configured_choice_without_500s(
    factory: GatewayFactory, emulator: EmulatorProcess, figures: Figures, fail_open: bool
) -> None:
    redis = PrivateRedis()  # its own: this test stops it
    redis.start()
    gateway = factory.gateway(
        factory.database("postgres"),
        redis_url=redis.url,
        rate_limit_key_prefix="redis-fault",
        rate_limit_fail_open=str(fail_open).lower(),
    )
    try:
        gateway.start()
        accounts = await _customers(gateway, 3, "redisfault")
        sent = _calls(accounts, 1200, "rd")
        progress = {"done": 0}

        async def count(done: int) -> None:
            progress["done"] = done

        load = asyncio.create_task(  # noqa: RUF006 - awaited below
            blast(gateway.port, [r for _, r in sent], connections=16, on_progress=count)
        )
        while progress["done"] < len(sent) // 4:
            await asyncio.sleep(0.05)
        redis.stop()
        outage_from = progress["done"]
        while progress["done"] < outage_from + len(sent) // 4:
            await asyncio.sleep(0.05)
        redis.start()
        answers = await load
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
            # Redis came back empty: failing closed, the limiter answers 503 for up to 2 s
            # more while the processes put their leased tokens back (kit/lease_store.py).
            deadline = time.monotonic() + 10
            while (
                after := await client.get("/api/v1/insights", headers=accounts[0].auth)
            ).status_code == 503 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
    finally:
        gateway.stop()
        redis.stop()

    statuses = Counter(a.status for a in answers)
    audit = await _audit(gateway, list(zip([i for i, _ in sent], answers, strict=True)))
    units = await _drain_and_check(gateway, emulator, accounts)
    figures.add("faults", redis_outages=1, redis_calls=len(sent), redis_503=statuses[503])
    if fail_open:
        assert statuses == {200: len(sent)}  # admitted (and billed) while Redis was away
    else:
        assert set(statuses) == {200, 503}  # refused, unbilled, while Redis was away
    assert units == statuses[200] + 1 == audit["answered_2xx"] + 1  # +1: the call after
    assert after.status_code == 200 and "x-ratelimit-remaining" in after.headers
