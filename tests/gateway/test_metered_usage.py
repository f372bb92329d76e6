"""Every authenticated call through the metered path becomes exactly one durable ledger event."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import Request
from sqlalchemy import text

from novo_gateway.gateway.pipeline import NOT_RECORDED, UNMATCHED_ENDPOINT
from novo_gateway.kit.clock import FrozenClock
from novo_gateway.kit.config import Settings
from novo_gateway.kit.errors import PaymentRequired, ServiceUnavailable
from novo_gateway.novo_api import endpoints
from tests.conftest import AppClient
from tests.gateway.helpers import ledger, make_account, runtime_of


def add_test_routes(client: AppClient) -> None:
    """Handlers with outcomes the built-in API does not give on demand (real routes, test-only)."""

    async def five_units(request: Request) -> dict[str, bool]:
        request.state.billed_units = 5
        return {"ok": True}

    async def crash() -> None:
        raise RuntimeError("handler bug")

    async def unavailable() -> None:
        raise ServiceUnavailable("The upstream is down.")

    async def echo_query(request: Request) -> dict[str, str]:
        return {"query": request.url.query}

    for path, endpoint in [
        ("/api/v1/test/units", five_units),
        ("/api/v1/test/crash", crash),
        ("/api/v1/test/unavailable", unavailable),
        ("/api/v1/test/echo", echo_query),
    ]:
        client.app.add_api_route(path, endpoint)


async def test_successful_call_is_recorded_as_billable_before_the_response(
    client: AppClient,
) -> None:
    account = await make_account(client)
    response = await client.get("/api/v1/insights", headers=account.auth)
    assert response.status_code == 200
    (event,) = await ledger(client)
    assert (event.user_id, event.api_key_id) == (account.user_id, account.key_id)
    assert (event.endpoint, event.method, event.status) == ("/api/v1/insights", "GET", 200)
    assert (event.units, event.billable) == (1, True)
    assert event.request_id == response.headers["x-request-id"]
    assert event.latency_ms >= 0


async def test_event_time_comes_from_the_runtime_clock(
    settings: Settings, start_app: Callable[..., Any], clock: FrozenClock
) -> None:
    client: AppClient = await start_app(settings, clock=clock)
    account = await make_account(client)
    await client.get("/api/v1/insights", headers=account.auth)
    (event,) = await ledger(client)
    assert event.created_at == clock.now()


async def test_client_error_from_the_handler_is_recorded_unbilled(client: AppClient) -> None:
    account = await make_account(client)
    response = await client.get("/api/v1/analytics?period=forever", headers=account.auth)
    assert response.status_code == 400
    (event,) = await ledger(client)
    assert (event.endpoint, event.status, event.billable) == ("/api/v1/analytics", 400, False)


async def test_server_error_from_the_handler_is_recorded_unbilled(client: AppClient) -> None:
    add_test_routes(client)
    account = await make_account(client)
    response = await client.get("/api/v1/test/unavailable", headers=account.auth)
    assert response.status_code == 503
    (event,) = await ledger(client)
    assert (event.status, event.billable) == (503, False)


async def test_unhandled_handler_exception_is_recorded_as_an_unbilled_500(
    client: AppClient,
) -> None:
    add_test_routes(client)
    account = await make_account(client)
    transport = httpx.ASGITransport(app=client.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as raw:
        response = await raw.get("/api/v1/test/crash", headers=account.auth)
    assert response.status_code == 500
    assert response.json()["error"] == "Internal Server Error"
    assert response.headers["x-ratelimit-limit"] == "100"
    assert response.headers["ratelimit-remaining"] == "99"
    (event,) = await ledger(client)
    assert (event.endpoint, event.status, event.billable) == ("/api/v1/test/crash", 500, False)


async def test_unknown_api_path_is_recorded_unbilled_under_one_marker(client: AppClient) -> None:
    account = await make_account(client)
    for path in ("/api/v1/nope", "/api/v1/also/nope"):
        assert (await client.get(path, headers=account.auth)).status_code == 404
    events = await ledger(client)
    assert {e.endpoint for e in events} == {UNMATCHED_ENDPOINT}
    assert not any(e.billable for e in events)


async def test_units_set_by_the_handler_are_recorded(client: AppClient) -> None:
    add_test_routes(client)
    account = await make_account(client)
    await client.get("/api/v1/test/units", headers=account.auth)
    (event,) = await ledger(client)
    assert (event.units, event.billable) == (5, True)


async def test_a_built_in_endpoint_bills_the_units_of_its_table_entry(
    client: AppClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The full stack reads the units from the endpoint table (the fast path takes them from the
    same entries when the app is built); HEAD bills as GET, a route outside the table one unit."""
    monkeypatch.setitem(endpoints._UNITS, ("GET", "/api/v1/insights"), 3)
    account = await make_account(client)
    # A body keeps the fast path out: this is the FastAPI route.
    await client.request("GET", "/api/v1/insights", headers=account.auth, content=b"{}")
    (event,) = await ledger(client)
    assert (event.endpoint, event.units, event.billable) == ("/api/v1/insights", 3, True)
    assert endpoints.units_of("HEAD", "/api/v1/insights") == 3
    assert endpoints.units_of("GET", "/api/v1/not-in-the-table") == endpoints.UNITS_PER_CALL
    for entry in endpoints.ENDPOINTS:
        if entry.full_path != "/api/v1/insights":
            assert endpoints.units_of(entry.method, entry.full_path) == entry.units


async def test_query_string_key_never_reaches_the_handler(client: AppClient) -> None:
    add_test_routes(client)
    account = await make_account(client)
    response = await client.get(f"/api/v1/test/echo?x=1&api_key={account.key}")
    assert response.json() == {"query": "x=1"}


async def test_refused_calls_are_not_recorded(client: AppClient) -> None:
    await make_account(client)
    await client.get("/api/v1/insights")
    await client.get("/api/v1/insights", headers={"X-API-Key": "nk_wrong"})
    await client.get("/api/v1/health")
    assert await ledger(client) == []


async def test_concurrent_calls_give_exactly_one_event_each_billable_only_for_2xx(
    client: AppClient,
) -> None:
    account = await make_account(client)
    good = [client.get("/api/v1/insights", headers=account.auth) for _ in range(30)]
    bad = [client.get("/api/v1/analytics?period=x", headers=account.auth) for _ in range(20)]
    responses = await asyncio.gather(*good, *bad)
    assert sorted(r.status_code for r in responses) == [200] * 30 + [400] * 20
    events = await ledger(client)
    assert len(events) == 50
    assert (
        sorted((e.status, e.billable) for e in events) == [(200, True)] * 30 + [(400, False)] * 20
    )
    assert len({e.request_id for e in events}) == 50


async def test_failed_ledger_write_answers_503_and_bills_nothing(client: AppClient) -> None:
    account = await make_account(client)
    runtime = runtime_of(client)
    async with runtime.engine.begin() as conn:
        await conn.execute(text("ALTER TABLE usage_events RENAME TO usage_events_away"))
    try:
        response = await client.get(
            "/api/v1/insights", headers={**account.auth, "Idempotency-Key": "order-1"}
        )
    finally:
        async with runtime.engine.begin() as conn:
            await conn.execute(text("ALTER TABLE usage_events_away RENAME TO usage_events"))
    assert response.status_code == 503
    assert response.json() == {"error": "Service Unavailable", "message": NOT_RECORDED}
    assert "x-ratelimit-limit" in response.headers
    assert await ledger(client) == []
    # The writer carries on, and the failed call's Idempotency-Key was not used up.
    retry = await client.get(
        "/api/v1/insights", headers={**account.auth, "Idempotency-Key": "order-1"}
    )
    assert retry.status_code == 200
    assert [(e.status, e.billable) for e in await ledger(client)] == [(200, True)]


async def test_access_refusal_answers_its_error_and_is_not_recorded(
    client: AppClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stand-in policy: which accounts are refused is for billing to decide, not built yet.
    async def refuse_all(user_id: int) -> None:
        raise PaymentRequired("Your subscription is unpaid. Update your payment method.")

    monkeypatch.setattr(runtime_of(client).access, "check", refuse_all)
    account = await make_account(client)
    response = await client.get("/api/v1/insights", headers=account.auth)
    assert response.status_code == 402
    assert response.json()["error"] == "Payment Required"
    assert "x-ratelimit-remaining" in response.headers
    assert await ledger(client) == []


async def test_no_api_key_appears_in_any_log_line(
    client: AppClient, caplog: pytest.LogCaptureFixture
) -> None:
    account = await make_account(client)
    caplog.set_level(logging.DEBUG)
    await client.get(f"/api/v1/insights?api_key={account.key}")
    await client.get("/api/v1/insights?api_key=nk_not_a_real_key_but_secret")
    await client.get("/api/v1/nope", params={"api_key": account.key})
    gateway_records = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert any(r.name == "novo_gateway.access" for r in gateway_records)
    for record in gateway_records:
        line = record.getMessage() + repr(record.__dict__)
        assert account.key not in line
        assert "nk_not_a_real_key_but_secret" not in line
