"""Bad input to the Novo API is refused with 400 in the common shape, naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from tests.novo_api.conftest import Caller

OK_CAMPAIGN = {"name": "Spring", "type": "email", "targetAudience": "everyone"}
OK_NOTIFICATION = {"channel": "email", "recipients": ["a@example.com"], "message": "Hi"}

BAD_BODIES: list[tuple[str, Any, str]] = [
    # path, body, the field the message must name
    ("/api/v1/audience/analyze", {}, "audienceId"),
    ("/api/v1/audience/analyze", {"audienceId": 5}, "audienceId"),
    ("/api/v1/audience/analyze", {"audienceId": "a" * 65}, "audienceId"),
    ("/api/v1/audience/analyze", {"audienceId": "a b"}, "audienceId"),
    ("/api/v1/audience/analyze", {"audienceId": "a", "metrics": ["fame"]}, "metrics.0"),
    ("/api/v1/audience/analyze", {"audienceId": "a", "metrics": []}, "metrics"),
    ("/api/v1/audience/analyze", {"audienceId": "a", "metrics": ["reach", "reach"]}, "metrics"),
    ("/api/v1/audience/analyze", {"audienceId": "a", "segments": 3}, "segments"),
    ("/api/v1/campaign/generate", {"type": "email", "targetAudience": "x"}, "name"),
    ("/api/v1/campaign/generate", {**OK_CAMPAIGN, "name": "   "}, "name"),
    ("/api/v1/campaign/generate", {**OK_CAMPAIGN, "name": "n" * 121}, "name"),
    ("/api/v1/campaign/generate", {**OK_CAMPAIGN, "type": "fax"}, "type"),
    ("/api/v1/campaign/generate", {**OK_CAMPAIGN, "targetAudience": 42}, "targetAudience"),
    ("/api/v1/campaign/generate", {**OK_CAMPAIGN, "budget": 10}, "budget"),
    ("/api/v1/notifications/send", {**OK_NOTIFICATION, "channel": "pigeon"}, "channel"),
    ("/api/v1/notifications/send", {**OK_NOTIFICATION, "recipients": []}, "recipients"),
    ("/api/v1/notifications/send", {**OK_NOTIFICATION, "recipients": "a@b.co"}, "recipients"),
    (
        "/api/v1/notifications/send",
        {**OK_NOTIFICATION, "recipients": [f"u{i}@example.com" for i in range(101)]},
        "recipients",
    ),
    (
        "/api/v1/notifications/send",
        {**OK_NOTIFICATION, "recipients": ["+15551234567"]},
        "recipients",
    ),
    (
        "/api/v1/notifications/send",
        {**OK_NOTIFICATION, "channel": "sms", "recipients": ["555-1234"]},
        "recipients",
    ),
    ("/api/v1/notifications/send", {**OK_NOTIFICATION, "message": ""}, "message"),
    ("/api/v1/notifications/send", {**OK_NOTIFICATION, "message": "m" * 2001}, "message"),
    ("/api/v1/bulk/process", {}, "items"),
    ("/api/v1/bulk/process", {"items": None}, "items"),
    ("/api/v1/bulk/process", {"items": []}, "items"),
    ("/api/v1/bulk/process", {"items": ["x"] * 1001}, "items"),
    ("/api/v1/bulk/process", {"items": [[1, 2]]}, "items.0"),
    ("/api/v1/bulk/process", {"items": ["ok", "x" * 1001]}, "items.1"),
    ("/api/v1/bulk/process", {"items": [{"nested": {"a": 1}}]}, "items.0"),
    ("/api/v1/bulk/process", {"items": ["ok"], "priority": "high"}, "priority"),
    ("/api/v1/bulk/process", ["ok"], "body"),
]


def _assert_names_field(response: Any, field: str) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "Bad Request"
    assert f"'{field}'" in body["message"]


@pytest.mark.parametrize(("path", "payload", "field"), BAD_BODIES)
async def test_bad_body_is_400_naming_the_field(
    caller: Caller, path: str, payload: Any, field: str
) -> None:
    _assert_names_field(await caller.post(path, payload), field)


@pytest.mark.parametrize("period", ["2d", "7D", "", "7", "365d"])
async def test_unknown_analytics_period_is_400_naming_period(caller: Caller, period: str) -> None:
    _assert_names_field(await caller.get(f"/api/v1/analytics?period={period}"), "period")


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/audience/analyze",
        "/api/v1/campaign/generate",
        "/api/v1/notifications/send",
        "/api/v1/bulk/process",
    ],
)
async def test_malformed_json_is_400_saying_so(caller: Caller, path: str) -> None:
    headers = {**caller.headers, "Content-Type": "application/json"}
    response = await caller.client.post(path, content=b'{"items": [', headers=headers)
    assert response.status_code == 400
    assert response.json()["message"] == "The request body is not valid JSON."


async def test_missing_body_is_400(caller: Caller) -> None:
    response = await caller.client.post("/api/v1/campaign/generate", headers=caller.headers)
    _assert_names_field(response, "body")
