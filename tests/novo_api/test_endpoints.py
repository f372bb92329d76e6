"""Each built-in Novo endpoint answers a valid call with its documented shape, ending in `meta`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from novo_gateway.kit.clock import FrozenClock
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import session_scope
from novo_gateway.metering.models import UsageEvent
from novo_gateway.novo_api import endpoints
from novo_gateway.novo_api.routes import router
from novo_gateway.novo_api.schemas import DEFAULT_AUDIENCE_METRICS
from tests.novo_api.conftest import Caller, new_key


def _ok(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert list(body)[-1] == "meta"
    assert body["meta"]["requestId"] == response.headers["x-request-id"]
    return body


async def test_health_is_free_and_needs_no_key(caller: Caller) -> None:
    body = _ok(await caller.client.get("/api/v1/health"))
    assert body["status"] == "ok"
    assert datetime.fromisoformat(body["timestamp"]).tzinfo is not None
    assert body["meta"]["billedUnits"] == 0


async def test_insights_lists_insights_billed_one_unit(caller: Caller) -> None:
    body = _ok(await caller.get("/api/v1/insights"))
    assert body["meta"]["billedUnits"] == 1
    assert len(body["insights"]) == 4
    for insight in body["insights"]:
        assert set(insight) == {"id", "category", "title", "description", "impact", "confidence"}
        assert 0 <= insight["confidence"] <= 1


async def test_audience_analysis_gives_segments_with_the_requested_metrics(caller: Caller) -> None:
    payload = {"audienceId": "aud_42", "metrics": ["engagement", "lifetimeValue"]}
    response = await caller.post("/api/v1/audience/analyze", payload)
    body = _ok(response)
    assert body["audienceId"] == "aud_42"
    assert sum(s["size"] for s in body["segments"]) == body["totalSize"]
    for segment in body["segments"]:
        assert set(segment["metrics"]) == {"engagement", "lifetimeValue"}


async def test_audience_analysis_is_the_same_for_the_same_audience(caller: Caller) -> None:
    payload = {"audienceId": "aud_42"}
    first = await caller.post("/api/v1/audience/analyze", payload)
    second = await caller.post("/api/v1/audience/analyze", payload)
    assert _ok(first)["segments"] == _ok(second)["segments"]
    assert set(first.json()["segments"][0]["metrics"]) == set(DEFAULT_AUDIENCE_METRICS)


async def test_campaign_generate_returns_a_draft_with_an_id(caller: Caller) -> None:
    payload = {"name": "Spring sale", "type": "email", "targetAudience": "returning customers"}
    response = await caller.post("/api/v1/campaign/generate", payload)
    campaign = _ok(response)["campaign"]
    assert campaign["id"].startswith("cmp_")
    assert campaign["status"] == "draft"
    assert campaign["name"] == "Spring sale"
    assert campaign["type"] == "email"
    assert campaign["targetAudience"] == "returning customers"
    assert set(campaign["content"]) == {"subject", "body", "callToAction"}


async def test_each_generated_campaign_gets_its_own_id(caller: Caller) -> None:
    payload = {"name": "Spring sale", "type": "sms", "targetAudience": "everyone"}
    ids = set()
    for _ in range(2):
        response = await caller.post("/api/v1/campaign/generate", payload)
        ids.add(_ok(response)["campaign"]["id"])
    assert len(ids) == 2


async def test_notification_is_queued_with_an_estimated_delivery(
    make_settings: Callable[..., Settings], start_app: Callable[..., Any]
) -> None:
    clock = FrozenClock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    client = await start_app(make_settings(), clock=clock)
    headers = {"X-API-Key": await new_key(client)}
    payload = {
        "channel": "email",
        "recipients": ["a@example.com", "b@example.com"],
        "message": "Hi",
    }
    response = await client.post("/api/v1/notifications/send", json=payload, headers=headers)
    notification = _ok(response)["notification"]
    assert notification["id"].startswith("ntf_")
    assert notification["status"] == "queued"
    assert notification["recipients"] == 2
    queued = datetime.fromisoformat(notification["queuedAt"])
    assert queued == clock.now()
    assert datetime.fromisoformat(notification["estimatedDelivery"]) > queued


async def test_analytics_defaults_to_seven_days(caller: Caller) -> None:
    body = _ok(await caller.get("/api/v1/analytics"))
    assert body["period"] == "7d"
    assert len(body["daily"]) == 7
    assert body["totals"]["impressions"] == sum(d["impressions"] for d in body["daily"])


async def test_analytics_periods_agree_on_shared_days(caller: Caller) -> None:
    week = _ok(await caller.get("/api/v1/analytics?period=7d"))
    month = _ok(await caller.get("/api/v1/analytics?period=30d"))
    assert len(month["daily"]) == 30
    assert month["daily"][-7:] == week["daily"]


async def test_bulk_counts_processed_successful_and_failed(caller: Caller) -> None:
    payload = {"items": ["lead-1", {"email": "x@example.com", "score": 3}, "", {}]}
    response = await caller.post("/api/v1/bulk/process", payload)
    body = _ok(response)
    assert (body["processed"], body["successful"], body["failed"]) == (4, 2, 2)
    assert [f["index"] for f in body["failures"]] == [2, 3]
    assert body["meta"]["billedUnits"] == 1


async def test_bulk_accepts_the_maximum_number_of_items(caller: Caller) -> None:
    payload = {"items": [f"item-{i}" for i in range(1000)]}
    response = await caller.post("/api/v1/bulk/process", payload)
    assert _ok(response)["processed"] == 1000


async def test_openapi_declares_the_error_responses_of_metered_endpoints(caller: Caller) -> None:
    spec = (await caller.client.get("/openapi.json")).json()
    insights = spec["paths"]["/api/v1/insights"]["get"]["responses"]
    assert {"200", "400", "401", "402", "429"} <= set(insights)
    bulk = spec["paths"]["/api/v1/bulk/process"]["post"]["responses"]
    assert {"200", "400", "401", "402", "413", "429"} <= set(bulk)


def test_builtin_paths_are_exactly_the_router_paths() -> None:
    assert {route.path for route in router.routes} == endpoints.BUILTIN_PATHS  # type: ignore[attr-defined]


async def test_billed_units_in_meta_match_the_ledger(caller: Caller) -> None:
    response = await caller.post("/api/v1/bulk/process", {"items": ["a", "b", "c"]})
    meta = _ok(response)["meta"]
    async with session_scope(caller.client.app.state.runtime.sessions) as session:
        event = await session.scalar(
            select(UsageEvent).where(UsageEvent.request_id == meta["requestId"])
        )
    assert event is not None
    assert (event.units, event.billable) == (meta["billedUnits"], True)
    assert event.endpoint == "/api/v1/bulk/process"
