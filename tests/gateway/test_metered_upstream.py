"""Calls the metered path sends upstream: recorded under their route with the route's units."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from novo_gateway.kit.config import Settings
from tests.conftest import AppClient
from tests.gateway.helpers import ledger, make_account


async def _answer(request: Request) -> Response:
    # The upstream's own rate-limit headers must not reach the client: the gateway's do.
    return JSONResponse(
        {"path": request.url.path},
        status_code=int(request.query_params.get("status", "200")),
        headers={"X-RateLimit-Limit": "999999", "RateLimit-Remaining": "5"},
    )


@pytest.fixture(scope="module")
async def upstream_url() -> AsyncIterator[str]:
    """A real HTTP service on a local port (uvicorn in the test loop)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    app = Starlette(routes=[Route("/{path:path}", _answer, methods=["GET", "POST"])])
    config = uvicorn.Config(app, log_level="warning", lifespan="off", ws="none", http="h11")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    await task
    sock.close()


@pytest.fixture
async def client(
    make_settings: Callable[..., Settings],
    start_app: Callable[..., Any],
    upstream_url: str,
    tmp_path: Path,
) -> AppClient:
    routes = tmp_path / "routes.toml"
    routes.write_text(
        f'[[routes]]\nprefix = "/api/v1/search"\nupstream = "{upstream_url}"\nunits = 3\n'
        '[[routes]]\nprefix = "/api/v1/gone"\nupstream = "http://127.0.0.1:1"\n'
    )
    app_client: AppClient = await start_app(make_settings(routes_file=routes))
    return app_client


async def test_upstream_call_is_recorded_under_its_route_with_the_route_units(
    client: AppClient,
) -> None:
    account = await make_account(client)
    response = await client.get("/api/v1/search/anything/here", headers=account.auth)
    assert response.status_code == 200
    assert response.json() == {"path": "/api/v1/search/anything/here"}
    (event,) = await ledger(client)
    assert (event.endpoint, event.units, event.billable) == ("/api/v1/search/*", 3, True)


async def test_gateway_rate_limit_headers_replace_the_upstream_ones(client: AppClient) -> None:
    account = await make_account(client)
    response = await client.get("/api/v1/search", headers=account.auth)
    assert response.headers.get_list("x-ratelimit-limit") == ["100"]
    assert response.headers.get_list("ratelimit-remaining") == ["99"]


async def test_upstream_error_is_recorded_unbilled(client: AppClient) -> None:
    account = await make_account(client)
    response = await client.get("/api/v1/search?status=500", headers=account.auth)
    assert response.status_code == 500
    (event,) = await ledger(client)
    assert (event.status, event.billable) == (500, False)


async def test_unreachable_upstream_is_recorded_as_an_unbilled_502(client: AppClient) -> None:
    account = await make_account(client)
    response = await client.get("/api/v1/gone", headers=account.auth)
    assert response.status_code == 502
    (event,) = await ledger(client)
    assert (event.endpoint, event.status, event.billable) == ("/api/v1/gone/*", 502, False)
