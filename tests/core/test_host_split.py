"""DASHBOARD_HOST: the dashboards, the admin and the docs on a host of their own, and nothing
proxied or metered on it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from novo_gateway.kit.config import Settings
from tests.conftest import AppClient, make_test_settings
from tests.gateway.helpers import make_account
from tests.gateway.wsgi_upstream import RecordingUpstream, wsgi_upstream

ADMIN_TOKEN = "operator-token-for-host-split-tests-0123"
API = "http://api.example.test"
DASH = "http://dash.example.test"


@pytest.fixture
def upstream() -> Iterator[RecordingUpstream]:
    with wsgi_upstream() as server:
        yield server


@pytest.fixture
async def client(
    upstream: RecordingUpstream,
    make_settings: Callable[..., Settings],
    start_app: Callable[..., Any],
    tmp_path: Path,
) -> AppClient:
    routes = tmp_path / "routes.toml"
    routes.write_text(f'[[routes]]\nprefix = "/api/v1/search"\nupstream = "{upstream.url}"\n')
    settings = make_settings(
        dashboard_host="Dash.Example.Test",
        admin_token=ADMIN_TOKEN,
        routes_file=routes,
        public_url="https://api.example.test",
    )
    app_client: AppClient = await start_app(settings)
    return app_client


@pytest.mark.parametrize("path", ["/dashboard", "/dashboard/login", "/admin", "/docs", "/redoc"])
async def test_the_api_host_sends_page_links_to_the_dashboard_host(
    client: AppClient, path: str
) -> None:
    response = await client.get(API + path + "?x=1")
    assert response.status_code == 302
    assert response.headers["location"] == f"https://dash.example.test{path}?x=1"


@pytest.mark.parametrize("path", ["/dashboard/login", "/dashboard/keys", "/admin/login"])
async def test_the_api_host_refuses_forms_for_the_pages_and_names_their_host(
    client: AppClient, path: str
) -> None:
    response = await client.post(API + path, data={"email": "a@b.test", "password": "x"})
    assert response.status_code == 404
    assert response.json() == {
        "error": "Not Found",
        "message": "This page is served at dash.example.test.",
    }


async def test_the_dashboard_host_sends_the_home_link_to_the_public_url(
    client: AppClient,
) -> None:
    response = await client.get(DASH + "/")
    assert response.status_code == 302
    assert response.headers["location"] == "https://api.example.test/"
    assert (await client.post(DASH + "/")).status_code == 404


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/dashboard", 303),
        ("/dashboard/login", 200),
        ("/admin", 401),  # its sign-in form
        ("/docs", 200),
        ("/redoc", 200),
        ("/openapi.json", 200),
        ("/health", 200),
    ],
)
async def test_the_dashboard_host_serves_the_pages(
    client: AppClient, path: str, status: int
) -> None:
    response = await client.get(DASH + path)
    assert response.status_code == status
    assert (await client.get("http://DASH.example.test:8443" + path)).status_code == status


async def test_the_dashboard_host_serves_nothing_metered_or_proxied(
    client: AppClient, upstream: RecordingUpstream
) -> None:
    account = await make_account(client)
    for path in ("/api/v1/insights", "/api/v1/search/page", "/auth/api-keys", "/metrics"):
        response = await client.get(DASH + path, headers=account.auth)
        assert response.status_code == 404, path
        assert set(response.json()) == {"error", "message"}
    assert upstream.seen == []
    # The API host still serves them.
    assert (await client.get(API + "/api/v1/insights", headers=account.auth)).status_code == 200
    assert (await client.get(API + "/api/v1/search/x", headers=account.auth)).status_code == 200
    assert len(upstream.seen) == 1


async def test_without_the_setting_every_host_serves_everything(
    make_settings: Callable[..., Settings], start_app: Callable[..., Any]
) -> None:
    client = await start_app(make_settings())
    assert (await client.get(API + "/docs")).status_code == 200
    assert (await client.get(DASH + "/health")).status_code == 200


async def test_a_port_in_the_setting_must_match(
    make_settings: Callable[..., Settings], start_app: Callable[..., Any]
) -> None:
    client = await start_app(make_settings(dashboard_host="dash.example.test:8443"))
    assert (await client.get("http://dash.example.test:8443/docs")).status_code == 200
    assert (await client.get("http://dash.example.test:8443/")).status_code == 404  # no URL
    response = await client.get(DASH + "/docs")
    assert response.status_code == 302
    assert response.headers["location"] == "http://dash.example.test:8443/docs"


@pytest.mark.parametrize("value", ["https://dash.example.test", "dash.example.test/x", "a b"])
def test_a_dashboard_host_that_is_not_a_host_is_refused(value: str) -> None:
    with pytest.raises(ValidationError, match="dashboard_host"):
        make_test_settings(dashboard_host=value)
