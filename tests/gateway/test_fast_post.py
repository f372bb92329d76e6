"""The fast path answers the built-in JSON POST endpoints as the full stack does, metering included.

The fast path takes only `Content-Type: application/json` exactly, so the same body sent as
`application/json; charset=utf-8` (which FastAPI reads the same way) gives the full stack's answer
to compare with, byte for byte, with the same request id and a frozen clock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from novo_gateway.kit.clock import FrozenClock
from novo_gateway.kit.config import Settings
from novo_gateway.kit.credentials import KEY_REQUIRED
from novo_gateway.novo_api.endpoints import ENDPOINTS
from novo_gateway.novo_api.fast import FastPost, FastRoutes
from novo_gateway.novo_api.routes import router as novo_router
from tests.conftest import AppClient
from tests.gateway.helpers import Account, ledger, make_account

REQUEST_ID = "fast-post-test-1"
FAST = "application/json"
FULL = "application/json; charset=utf-8"

BODIES: dict[str, Any] = {
    "/api/v1/audience/analyze": {"audienceId": "aud_42", "metrics": ["engagement"]},
    "/api/v1/campaign/generate": {
        "name": "Spring sale",
        "type": "email",
        "targetAudience": "returning customers",
    },
    "/api/v1/notifications/send": {
        "channel": "email",
        "recipients": ["a@example.com", "b@example.com"],
        "message": "Hello",
    },
    "/api/v1/bulk/process": {"items": ["lead-1", {"email": "x@example.com"}, ""]},
}


@pytest.fixture
async def frozen_client(
    settings: Settings, start_app: Callable[..., Any], clock: FrozenClock
) -> AppClient:
    app_client: AppClient = await start_app(settings, clock=clock)
    return app_client


async def _post(
    client: AppClient, account: Account | None, path: str, body: bytes, content_type: str
) -> httpx.Response:
    headers = {"Content-Type": content_type, "X-Request-Id": REQUEST_ID}
    if account is not None:
        headers.update(account.auth)
    return await client.post(path, content=body, headers=headers)


def _comparable(response: httpx.Response) -> tuple[int, bytes, list[tuple[str, str]]]:
    skip = {"date", "x-ratelimit-remaining", "ratelimit-remaining"}
    headers = [(k, v) for k, v in response.headers.multi_items() if k not in skip]
    return response.status_code, response.content, headers


@pytest.mark.parametrize("path", sorted(BODIES))
async def test_fast_post_is_byte_for_byte_the_routes_answer(
    frozen_client: AppClient, clock: FrozenClock, path: str
) -> None:
    account = await make_account(frozen_client)
    body = orjson.dumps(BODIES[path])
    fast = await _post(frozen_client, account, path, body, FAST)
    full = await _post(frozen_client, account, path, body, FULL)
    assert fast.status_code == 200, fast.text
    assert _comparable(fast) == _comparable(full)
    assert (fast.headers["x-ratelimit-remaining"], full.headers["x-ratelimit-remaining"]) == (
        "99",
        "98",
    )
    first, second = await ledger(frozen_client)
    fields = ("user_id", "api_key_id", "endpoint", "method", "status", "units", "billable")
    assert [getattr(first, f) for f in fields] == [getattr(second, f) for f in fields]
    assert (first.endpoint, first.method, first.billable, first.units) == (path, "POST", True, 1)
    assert first.request_id == second.request_id == REQUEST_ID
    assert first.created_at == second.created_at == clock.now()


@pytest.mark.parametrize(
    "body",
    [
        b'{"audienceId": ',  # not JSON
        b'{"audienceId": "aud_1", "unknown": 1}',  # a field the API does not know
        b'{"audienceId": 7}',  # a wrong type
        b"[]",  # not an object
        b'{"audienceId": "aud_1", "metrics": [NaN]}',  # JSON only Python's parser takes
    ],
)
async def test_a_body_the_model_refuses_gets_the_full_stacks_answer_and_one_limit_hit(
    frozen_client: AppClient, body: bytes
) -> None:
    account = await make_account(frozen_client)
    path = "/api/v1/audience/analyze"
    fast = await _post(frozen_client, account, path, body, FAST)
    full = await _post(frozen_client, account, path, body, FULL)
    assert fast.status_code == 400
    assert fast.json()["error"] == "Bad Request"
    assert _comparable(fast) == _comparable(full)
    # Admitted once by the fast path, not again by the full stack it handed the body to.
    assert fast.headers["x-ratelimit-remaining"] == "99"
    assert full.headers["x-ratelimit-remaining"] == "98"
    assert fast.headers["x-request-id"] == REQUEST_ID
    events = await ledger(frozen_client)
    assert [(e.status, e.billable, e.method) for e in events] == [(400, False, "POST")] * 2


async def test_fast_post_refuses_without_a_key_and_records_nothing(client: AppClient) -> None:
    body = orjson.dumps(BODIES["/api/v1/campaign/generate"])
    response = await _post(client, None, "/api/v1/campaign/generate", body, FAST)
    assert response.status_code == 401
    assert response.json() == {"error": "Unauthorized", "message": KEY_REQUIRED}
    assert response.headers["x-request-id"] == REQUEST_ID
    assert await ledger(client) == []


async def test_fast_post_over_the_limit_is_refused_with_429(
    make_settings: Callable[..., Settings], start_app: Callable[..., Any]
) -> None:
    client: AppClient = await start_app(make_settings(rate_limit_per_minute=1))
    account = await make_account(client)
    body = orjson.dumps(BODIES["/api/v1/bulk/process"])
    assert (await _post(client, account, "/api/v1/bulk/process", body, FAST)).status_code == 200
    refused = await _post(client, account, "/api/v1/bulk/process", body, FAST)
    assert refused.status_code == 429
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert len(await ledger(client)) == 1


async def test_a_body_over_the_limit_is_refused_with_413_before_any_work(
    make_settings: Callable[..., Settings], start_app: Callable[..., Any]
) -> None:
    client: AppClient = await start_app(make_settings(max_body_bytes=1024))
    account = await make_account(client)
    body = orjson.dumps({"items": ["x" * 100] * 20})
    response = await _post(client, account, "/api/v1/bulk/process", body, FAST)
    assert response.status_code == 413
    assert response.json()["error"] == "Payload Too Large"
    assert await ledger(client) == []


def test_every_post_endpoint_of_the_table_is_compared_byte_for_byte() -> None:
    assert set(BODIES) == {e.full_path for e in ENDPOINTS if e.body is not None}


def test_fast_routes_take_the_json_post_endpoints() -> None:
    routes = FastRoutes(novo_router.routes)
    assert routes.paths == {"/api/v1/health", "/api/v1/insights", *BODIES}
    for path in BODIES:
        assert isinstance(routes.match({"method": "POST", "path": path}), FastPost)
        assert routes.match({"method": "PUT", "path": path}) is None
        assert routes.match({"method": "POST", "path": path, "root_path": "/x"}) is None


@pytest.mark.parametrize(
    ("headers", "taken"),
    [
        ([(b"content-type", b"application/json"), (b"content-length", b"20")], True),
        ([(b"content-type", FULL.encode()), (b"content-length", b"20")], False),
        ([(b"content-type", b"text/plain"), (b"content-length", b"20")], False),
        ([(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")], False),
        ([(b"content-type", b"application/json"), (b"content-length", b"0")], False),
        ([(b"content-type", b"application/json")], False),
        ([(b"content-type", b"application/json"), (b"content-length", b"2000000")], False),
    ],
)
async def test_fast_path_takes_only_json_bodies_of_a_known_size(
    client: AppClient, headers: list[tuple[bytes, bytes]], taken: bool
) -> None:
    fast_path = client.app.fast_path
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/v1/bulk/process",
        "headers": headers,
    }
    assert (fast_path.match(scope) is not None) is taken
