"""`GET /metrics`: Prometheus counters and latency by route template, with bounded labels."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import REGISTRY

from novo_gateway.kit import metrics
from novo_gateway.kit.config import Settings
from tests.conftest import AppClient
from tests.novo_api.conftest import new_key


def _requests(method: str, route: str, status: int) -> float:
    labels = {"method": method, "route": route, "status": str(status)}
    return REGISTRY.get_sample_value("novo_http_requests_total", labels) or 0.0


def _latency_count(route: str, status: int) -> float:
    labels = {"method": "GET", "route": route, "status": str(status)}
    return REGISTRY.get_sample_value("novo_http_request_duration_seconds_count", labels) or 0.0


async def test_metrics_exposes_every_gateway_series(client: AppClient) -> None:
    await client.get("/health")  # a histogram shows its buckets once it has a sample
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    for name in (
        "novo_http_requests_total",
        "novo_http_request_duration_seconds_bucket",
        "novo_usage_events_recorded_total",
        'novo_rate_limited_requests_total{bucket="account"}',
        'novo_upstream_errors_total{kind="timeout"}',
    ):
        assert name in response.text


async def test_requests_are_counted_by_route_template_and_status(client: AppClient) -> None:
    before = _requests("GET", "/api/v1/health", 200), _latency_count("/api/v1/health", 200)
    await client.get("/api/v1/health")
    await client.get("/api/v1/health")
    after = _requests("GET", "/api/v1/health", 200), _latency_count("/api/v1/health", 200)
    assert after == (before[0] + 2, before[1] + 2)
    assert 'route="/api/v1/health",status="200"' in (await client.get("/metrics")).text


async def test_metered_calls_are_labelled_by_their_endpoint(client: AppClient) -> None:
    headers = {"X-API-Key": await new_key(client)}
    ok_before = _requests("GET", "/api/v1/insights", 200)
    refused_before = _requests("GET", "/api/v1/insights", 401)
    await client.get("/api/v1/insights", headers=headers)
    await client.get("/api/v1/insights")
    assert _requests("GET", "/api/v1/insights", 200) == ok_before + 1
    assert _requests("GET", "/api/v1/insights", 401) == refused_before + 1


async def test_unknown_paths_share_one_label(client: AppClient) -> None:
    before = _requests("GET", "unmatched", 404)
    await client.get("/no/such/page-1")
    await client.get("/no/such/page-2")
    assert _requests("GET", "unmatched", 404) == before + 2
    assert "page-1" not in (await client.get("/metrics")).text


async def test_unknown_methods_share_one_label(client: AppClient) -> None:
    before = _requests("OTHER", "unmatched", 404) + _requests("OTHER", "/", 405)
    await client.request("BREW", "/")
    after = _requests("OTHER", "unmatched", 404) + _requests("OTHER", "/", 405)
    assert after == before + 1
    assert 'method="BREW"' not in (await client.get("/metrics")).text


def test_other_parts_count_usage_rate_limits_and_upstream_errors() -> None:
    def value(name: str, labels: dict[str, str] | None = None) -> float:
        return REGISTRY.get_sample_value(name, labels or {}) or 0.0

    usage = value("novo_usage_events_recorded_total")
    limited = value("novo_rate_limited_requests_total", {"bucket": "ip"})
    upstream = value("novo_upstream_errors_total", {"kind": "connect"})
    metrics.usage_events_recorded(3)
    metrics.usage_events_recorded(0)
    metrics.rate_limited("ip")
    metrics.upstream_error("connect")
    assert value("novo_usage_events_recorded_total") == usage + 3
    assert value("novo_rate_limited_requests_total", {"bucket": "ip"}) == limited + 1
    assert value("novo_upstream_errors_total", {"kind": "connect"}) == upstream + 1


async def test_metered_calls_and_rate_limit_refusals_are_counted(
    make_settings: Callable[..., Settings], start_app: Callable[..., Any]
) -> None:
    client: AppClient = await start_app(make_settings(rate_limit_per_minute=2))
    key = await new_key(client)
    usage = REGISTRY.get_sample_value("novo_usage_events_recorded_total") or 0.0
    labels = {"bucket": "account"}
    limited = REGISTRY.get_sample_value("novo_rate_limited_requests_total", labels) or 0.0

    statuses = [
        (await client.get("/api/v1/insights", headers={"X-API-Key": key})).status_code
        for _ in range(3)
    ]

    assert statuses == [200, 200, 429]
    assert REGISTRY.get_sample_value("novo_usage_events_recorded_total") == usage + 2
    assert REGISTRY.get_sample_value("novo_rate_limited_requests_total", labels) == limited + 1


async def test_metrics_need_the_scrape_token_when_one_is_set(
    make_settings: Callable[..., Settings], start_app: Callable[..., Any]
) -> None:
    token = "scrape-token-0123456789abcdef"
    client: AppClient = await start_app(make_settings(metrics_token=token))
    for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": token}):
        refused = await client.get("/metrics", headers=headers)
        assert refused.status_code == 401
        assert refused.json()["error"] == "Unauthorized"
        assert refused.headers["www-authenticate"] == "Bearer"
    allowed = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert allowed.status_code == 200
    assert "novo_http_requests_total" in allowed.text
