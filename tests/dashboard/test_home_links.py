"""The landing page leads to the dashboards and keeps its endpoints, pricing and quick start."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from novo_gateway.kit.config import Settings
from tests.conftest import AppClient


async def test_the_home_page_links_to_the_customer_dashboard(client: AppClient) -> None:
    page = (await client.get("/")).text

    assert 'href="/dashboard"' in page
    assert 'id="pricing"' in page and 'id="quick-start"' in page and 'id="endpoints"' in page


async def test_the_operator_link_appears_only_when_the_operator_dashboard_exists(
    client: AppClient, make_settings: Callable[..., Settings], start_app: Callable[..., Any]
) -> None:
    with_token: AppClient = await start_app(make_settings(admin_token="x" * 32))

    assert 'href="/admin"' not in (await client.get("/")).text
    assert 'href="/admin"' in (await with_token.get("/")).text
