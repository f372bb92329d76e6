"""The fast path answers the built-in GET endpoints as the full stack does, metering included.

A GET with a body is not taken by the fast path (gateway/fast_path.py), so sending `{}` with the
same request id and a frozen clock gives the full stack's answer to compare with, byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from novo_gateway.gateway.pipeline import NOT_RECORDED
from novo_gateway.kit.clock import FrozenClock
from novo_gateway.kit.config import Settings
from novo_gateway.kit.credentials import KEY_INVALID, KEY_REQUIRED
from novo_gateway.novo_api.endpoints import ENDPOINTS, Endpoint
from novo_gateway.novo_api.fast import FastRoute, FastRoutes
from novo_gateway.novo_api.routes import router as novo_router
from tests.conftest import AppClient
from tests.gateway.helpers import ledger, make_account, runtime_of

REQUEST_ID = "fast-path-test-1"


def _comparable(response: httpx.Response) -> tuple[int, bytes, list[tuple[str, str]]]:
    headers = [(k, v) for k, v in response.headers.multi_items() if k != "date"]
    return response.status_code, response.content, headers


async def _both_ways(client: AppClient, path: str, headers: dict[str, str]) -> tuple[Any, Any]:
    """The fast path's answer, then the full stack's (a body keeps the fast path out)."""
    headers = {**headers, "X-Request-Id": REQUEST_ID}
    fast = await client.get(path, headers=headers)
    full = await client.request("GET", path, headers=headers, content=b"{}")
    return fast, full


@pytest.fixture
async def frozen_client(
    settings: Settings, start_app: Callable[..., Any], clock: FrozenClock
) -> AppClient:
    app_client: AppClient = await start_app(settings, clock=clock)
    return app_client


async def test_fast_insights_is_byte_for_byte_the_routes_answer(frozen_client: AppClient) -> None:
    account = await make_account(frozen_client)
    fast, full = await _both_ways(frozen_client, "/api/v1/insights", account.auth)
    assert fast.status_code == 200
    assert fast.headers["x-ratelimit-remaining"] == "99"
    assert full.headers["x-ratelimit-remaining"] == "98"
    fast_view, full_view = _comparable(fast), _comparable(full)
    assert fast_view[:2] == full_view[:2]
    strip = {"x-ratelimit-remaining", "ratelimit-remaining"}
    assert [h for h in fast_view[2] if h[0] not in strip] == [
        h for h in full_view[2] if h[0] not in strip
    ]


async def test_fast_health_is_byte_for_byte_the_routes_answer(frozen_client: AppClient) -> None:
    fast, full = await _both_ways(frozen_client, "/api/v1/health", {})
    assert fast.status_code == 200
    assert _comparable(fast) == _comparable(full)
    assert await ledger(frozen_client) == []


@pytest.mark.parametrize(
    "endpoint",
    [e for e in ENDPOINTS if e.fast and e.body is None],
    ids=lambda e: e.path,
)
async def test_every_fast_get_of_the_table_is_byte_for_byte_the_routes_answer(
    frozen_client: AppClient, endpoint: Endpoint
) -> None:
    account = await make_account(frozen_client)
    fast, full = await _both_ways(frozen_client, endpoint.full_path, account.auth)
    assert fast.status_code == 200
    strip = {"x-ratelimit-remaining", "ratelimit-remaining"}
    fast_view, full_view = _comparable(fast), _comparable(full)
    assert fast_view[:2] == full_view[:2]
    assert [h for h in fast_view[2] if h[0] not in strip] == [
        h for h in full_view[2] if h[0] not in strip
    ]


async def test_fast_insights_records_the_same_event_as_the_full_stack(
    frozen_client: AppClient, clock: FrozenClock
) -> None:
    account = await make_account(frozen_client)
    await _both_ways(frozen_client, "/api/v1/insights", account.auth)
    fast, full = await ledger(frozen_client)
    fields = ("user_id", "api_key_id", "endpoint", "method", "status", "units", "billable")
    assert [getattr(fast, f) for f in fields] == [getattr(full, f) for f in fields]
    assert (fast.endpoint, fast.billable, fast.units) == ("/api/v1/insights", True, 1)
    assert fast.request_id == full.request_id == REQUEST_ID
    assert fast.created_at == full.created_at == clock.now()


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        ({}, 401, KEY_REQUIRED),
        ({"X-API-Key": "nk_not-a-key"}, 401, KEY_INVALID),
    ],
)
async def test_fast_path_refusals_have_the_error_shape_and_bill_nothing(
    client: AppClient, headers: dict[str, str], status: int, message: str
) -> None:
    response = await client.get("/api/v1/insights", headers=headers)
    assert response.status_code == status
    assert response.json() == {"error": "Unauthorized", "message": message}
    assert len(response.headers["x-request-id"]) == 32
    assert await ledger(client) == []


async def test_fast_path_refuses_over_the_limit_with_429_and_headers(
    make_settings: Callable[..., Settings], start_app: Callable[..., Any]
) -> None:
    client: AppClient = await start_app(make_settings(rate_limit_per_minute=1))
    account = await make_account(client)
    assert (await client.get("/api/v1/insights", headers=account.auth)).status_code == 200
    refused = await client.get("/api/v1/insights", headers=account.auth)
    assert refused.status_code == 429
    assert refused.json()["error"] == "Rate Limit Exceeded"
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert "retry-after" in refused.headers
    assert len(await ledger(client)) == 1


async def test_fast_path_answers_503_when_the_event_cannot_be_written(client: AppClient) -> None:
    account = await make_account(client)
    runtime = runtime_of(client)
    async with runtime.engine.begin() as conn:
        await conn.execute(text("ALTER TABLE usage_events RENAME TO usage_events_away"))
    try:
        failed = await client.get("/api/v1/insights", headers=account.auth)
    finally:
        async with runtime.engine.begin() as conn:
            await conn.execute(text("ALTER TABLE usage_events_away RENAME TO usage_events"))
    assert failed.status_code == 503
    assert failed.json() == {"error": "Service Unavailable", "message": NOT_RECORDED}
    assert failed.headers["x-ratelimit-limit"] == "100"
    assert await ledger(client) == []
    # The writer recovers: the next call is recorded.
    assert (await client.get("/api/v1/insights", headers=account.auth)).status_code == 200
    assert len(await ledger(client)) == 1


async def test_fast_path_keeps_the_api_key_of_the_query_out_of_the_access_log(
    client: AppClient, caplog: pytest.LogCaptureFixture
) -> None:
    account = await make_account(client)
    with caplog.at_level("INFO", logger="novo_gateway.access"):
        response = await client.get(f"/api/v1/insights?api_key={account.key}")
    assert response.status_code == 200
    assert account.key not in caplog.text
    assert "api_key=[REDACTED]" in caplog.text


@pytest.mark.parametrize(
    "when",
    [
        datetime(2026, 11, 26, 12, 0, tzinfo=UTC),
        datetime(2026, 11, 26, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(2027, 1, 1, 0, 0, 0, 7, tzinfo=UTC),
    ],
)
@pytest.mark.parametrize("request_id", ["0123456789abcdef", "client-id-9", "ünïcode", "x" * 64])
def test_fast_body_template_gives_the_models_exact_bytes(when: datetime, request_id: str) -> None:
    routes = FastRoutes(novo_router.routes)
    for path in ("/api/v1/health", "/api/v1/insights"):
        route = routes.match({"method": "GET", "path": path})
        assert isinstance(route, FastRoute)
        model = route.render(when, request_id)
        expected = model.__pydantic_serializer__.to_json(model, by_alias=True)
        assert route.body(when, request_id) == expected
        assert route.body(when, request_id) == expected  # from the cached template


def test_fast_routes_take_only_get_without_a_root_path() -> None:
    routes = FastRoutes(novo_router.routes)
    assert routes.match({"method": "POST", "path": "/api/v1/insights"}) is None
    assert routes.match({"method": "GET", "path": "/api/v1/bulk/process"}) is None
    assert routes.match({"method": "HEAD", "path": "/api/v1/insights"}) is None
    assert routes.match({"method": "GET", "path": "/api/v1/insights", "root_path": "/x"}) is None
    assert routes.match({"method": "GET", "path": "/api/v1/analytics"}) is None
