"""Part 5: many gateway processes on one PostgreSQL and one Redis, and SQLite under many writers.

- Rate limits are exact across processes: `limit + 50` concurrent calls of one account, spread
  over both processes, admit exactly `limit`; the rest are 429 and unbilled.
- A key revoked through one process is refused by every process within a second.
- Both processes run the usage reporter; the lease lets one report at a time, so with both
  reporting during the load no meter event identifier reaches Stripe twice.
- 20,000 calls from many keys → 20,000 billable ledger events → 20,000 units at Stripe.
- SQLite: 50 concurrent writers plus the reporter: no "database is locked", no 500.
- Two databases on one Stripe account (staging beside production) both bill exactly.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from tests.adversarial.conftest import GatewayFactory
from tests.adversarial.harness import Gateway, PrivateRedis, running
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

TOTAL_CALLS = int(os.environ.get("NOVO_MANY_CALLS", "20000"))
KEYS = 40
LIMIT = 100


@pytest.fixture(scope="module")
def pair(factory: GatewayFactory, redis_server: PrivateRedis) -> Iterator[tuple[Gateway, Gateway]]:
    """Two processes on one database and one Redis, both running the usage reporter."""
    database = factory.database("postgres")
    settings = {
        "redis_url": redis_server.url,
        "rate_limit_key_prefix": f"many-{uuid.uuid4().hex[:6]}",
        "usage_reporting_interval": 250,
        "reporter_lease_seconds": 10,
        "reporter_max_backoff_seconds": 1,
    }
    first = factory.gateway(database, **settings)
    second = factory.gateway(database, **settings)
    with running(first, second):
        yield first, second


def _ledger(gateway: Gateway) -> Ledger:
    return Ledger(
        database_url=gateway.env.get("DATABASE_URL", ""),
        database_path=gateway.env.get("DATABASE_PATH", ""),
    )


async def _drain_and_check(
    gateway: Gateway, emulator: EmulatorProcess, accounts: list[Account]
) -> int:
    env = {**gateway.env, "REPORTER_MAX_BACKOFF_SECONDS": "1"}
    result = await asyncio.to_thread(report_usage, env, 120)
    assert result.returncode == 0, result.stdout + result.stderr
    ledger = _ledger(gateway)
    try:
        customers = [c for a in accounts if (c := await ledger.customer_of(a.user_id))]
        assert len(customers) == len(accounts)
        return await assert_billed_exactly(ledger, emulator, customers)
    finally:
        await ledger.close()


async def _away_from_a_minute_boundary() -> None:
    """Rate windows are whole minutes: start a burst (a few seconds) well inside one."""
    while not 1 <= time.time() % 60 <= 52:
        await asyncio.sleep(0.2)


async def test_limits_are_exact_across_processes_and_refusals_are_unbilled(
    factory: GatewayFactory, redis_server: PrivateRedis, figures: Figures
) -> None:
    database = factory.database("postgres")
    settings = {
        "redis_url": redis_server.url,
        "rate_limit_key_prefix": f"exact-{uuid.uuid4().hex[:6]}",
        "rate_limit_per_minute": LIMIT,
    }
    first, second = factory.gateway(database, **settings), factory.gateway(database, **settings)
    with running(first, second):
        async with httpx.AsyncClient(base_url=first.url, timeout=60) as client:
            accounts = [await register(client, "exact") for _ in range(5)]
        burst: dict[int, list[bytes]] = {gw.port: [] for gw in (first, second)}
        for account in accounts:
            for i in range(LIMIT + 50):
                port = (first, second)[i % 2].port
                burst[port].append(request_bytes("GET", "/api/v1/insights", account.auth))
        await _away_from_a_minute_boundary()
        results = await asyncio.gather(
            *(blast(port, requests, connections=25) for port, requests in burst.items())
        )
    answers = [a for result in results for a in result]
    ledger = _ledger(first)
    try:
        per_account = {a.user_id: await ledger.events(a.user_id) for a in accounts}
    finally:
        await ledger.close()
    statuses = Counter(a.status for a in answers)
    figures.add(
        "many_instances",
        limit_bursts=len(accounts),
        limit_burst_calls=len(answers),
        limit_admitted=statuses[200],
        limit_expected=LIMIT * len(accounts),
    )
    assert statuses == {200: LIMIT * len(accounts), 429: 50 * len(accounts)}
    assert set(per_account.values()) == {(LIMIT, LIMIT)}  # 429s are not even recorded


async def test_a_revoked_key_is_refused_by_every_process_within_a_second(
    pair: tuple[Gateway, Gateway], figures: Figures
) -> None:
    first, second = pair
    delays = []
    async with (
        httpx.AsyncClient(base_url=first.url, timeout=30) as one,
        httpx.AsyncClient(base_url=second.url, timeout=30) as other,
    ):
        account = await register(one, "revoke")
        for n in range(5):
            made = await one.post("/auth/api-keys", json={"name": f"k{n}"}, headers=account.auth)
            key, key_id = made.json()["apiKey"]["key"], made.json()["apiKey"]["id"]
            for client in (one, other):  # known (cached) by both processes
                assert (
                    await client.get("/api/v1/insights", headers={"X-API-Key": key})
                ).status_code == 200
            revoker = (one, other)[n % 2]
            assert (
                await revoker.delete(f"/auth/api-keys/{key_id}", headers=account.auth)
            ).status_code == 200
            revoked_at = time.monotonic()
            for client in (one, other):
                while (
                    await client.get("/api/v1/insights", headers={"X-API-Key": key})
                ).status_code != 401:
                    assert time.monotonic() - revoked_at < 5, "a revoked key was still accepted"
                    await asyncio.sleep(0.01)
            delays.append(time.monotonic() - revoked_at)
    figures.add(
        "many_instances", revocations=len(delays), revocation_max_seconds=round(max(delays), 2)
    )
    assert max(delays) < 1.0, delays


async def test_twenty_thousand_calls_on_two_processes_are_twenty_thousand_units_at_stripe(
    pair: tuple[Gateway, Gateway], emulator: EmulatorProcess, figures: Figures
) -> None:
    first, second = pair
    async with httpx.AsyncClient(base_url=first.url, timeout=60) as client:
        accounts = [await register(client, "bulk") for _ in range(KEYS // 2)]
        for account in list(accounts):  # a second key each: 40 keys in all
            made = await client.post(
                "/auth/api-keys", json={"name": "second"}, headers=account.auth
            )
            data = made.json()["apiKey"]
            accounts.append(Account(account.email, account.user_id, data["key"], data["id"]))
    sent: dict[int, list[tuple[str, bytes]]] = {first.port: [], second.port: []}
    for i in range(TOTAL_CALLS):
        account = accounts[i % len(accounts)]
        request_id = f"bulk{i:06d}{uuid.uuid4().hex[:8]}"
        headers = {**account.auth, "X-Request-Id": request_id}
        sent[(first, second)[i % 2].port].append(
            (request_id, request_bytes("GET", "/api/v1/insights", headers))
        )
    started = time.monotonic()
    results = await asyncio.gather(
        *(
            blast(port, [r for _, r in calls], connections=24, deadline=240)
            for port, calls in sent.items()
        )
    )
    seconds = time.monotonic() - started
    pairs = [
        (request_id, answer)
        for calls, answers in zip(sent.values(), results, strict=True)
        for (request_id, _), answer in zip(calls, answers, strict=True)
    ]
    owners = {a.user_id: a for a in accounts}
    ledger = _ledger(first)
    try:
        audit = await audit_calls(ledger, pairs)
        billable = sum([(await ledger.events(user_id))[1] for user_id in owners])
    finally:
        await ledger.close()
    units = await _drain_and_check(first, emulator, list(owners.values()))
    figures.add(
        "many_instances",
        processes=2,
        keys=len(accounts),
        calls=TOTAL_CALLS,
        calls_answered_200=audit["answered_2xx"],
        ledger_billable_units=billable,
        stripe_units=units,
        calls_per_second=round(TOTAL_CALLS / seconds),
    )
    assert audit["answered_2xx"] == TOTAL_CALLS
    assert billable == units == TOTAL_CALLS
    for gateway in pair:
        assert '"level": "error"' not in gateway.log_text()


async def test_sqlite_takes_fifty_concurrent_writers_and_the_reporter_without_locking_errors(
    factory: GatewayFactory, emulator: EmulatorProcess, figures: Figures
) -> None:
    gateway = factory.gateway(
        factory.database("sqlite"), usage_reporting_interval=200, reporter_max_backoff_seconds=1
    )
    try:
        gateway.start()
        async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as client:
            accounts = [await register(client, "lite") for _ in range(10)]
        writers: list[list[bytes]] = []
        for w in range(50):
            account = accounts[w % len(accounts)]
            work = [request_bytes("GET", "/api/v1/insights", account.auth) for _ in range(40)]
            work.insert(10, request_bytes("POST", "/auth/api-keys", account.auth, b""))
            work.insert(30, request_bytes("GET", "/billing/usage", account.auth))
            writers.append(work)
        results = await asyncio.gather(
            *(blast(gateway.port, work, connections=1) for work in writers)
        )
    finally:
        gateway.stop()
    answers: list[Answer] = [a for result in results for a in result]
    statuses = Counter(a.status for a in answers)
    log = gateway.log_text()
    units = await _drain_and_check(gateway, emulator, accounts)
    figures.add("many_instances", sqlite_writers=50, sqlite_requests=len(answers))
    assert statuses == {200: 50 * 41, 201: 50}
    assert "database is locked" not in log
    assert '"level": "error"' not in log
    assert units == 50 * 40


async def test_two_databases_on_one_stripe_account_both_bill_exactly(
    factory: GatewayFactory, emulator: EmulatorProcess
) -> None:
    """Account and event ids restart in each database; Stripe's idempotency keys and meter event
    identifiers must not collide (each was found colliding, and fixed)."""
    gateways = [factory.gateway(factory.database("sqlite")) for _ in range(2)]

    async def twin(gateway: Gateway) -> Account:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as client:
            account = await register(client, "twin")
            for _ in range(30):
                await client.get("/api/v1/insights", headers=account.auth)
        return account

    with running(*gateways):  # both register their account 1 in the same second
        accounts = await asyncio.gather(*(twin(gateway) for gateway in gateways))
    assert accounts[0].user_id == accounts[1].user_id  # the same ids in both databases
    for gateway, account in zip(gateways, accounts, strict=True):
        assert await _drain_and_check(gateway, emulator, [account]) == 30
