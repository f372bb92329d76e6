"""`GET /`: the endpoints, the pricing from settings and a quick start, escaped and locked down."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from novo_gateway.home.page import money, render_home
from novo_gateway.kit.config import Settings
from tests.conftest import AppClient, make_test_settings

CONTRACT_PATHS = [
    "/auth/register",
    "/auth/login",
    "/auth/api-keys",
    "/api/v1/insights",
    "/api/v1/audience/analyze",
    "/api/v1/campaign/generate",
    "/api/v1/notifications/send",
    "/api/v1/analytics",
    "/api/v1/bulk/process",
    "/billing/usage",
    "/billing/invoices",
    "/billing/portal",
    "/billing/payment-method",
    "/billing/subscription",
    "/health",
]


async def test_home_lists_every_contract_endpoint(client: AppClient) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    for path in CONTRACT_PATHS:
        assert f"<code>{path}" in response.text


async def test_home_shows_pricing_from_settings(
    make_settings: Callable[..., Settings], start_app: Callable[..., Any]
) -> None:
    settings = make_settings(cost_per_call=Decimal("0.0025"), free_tier_calls=2500)
    page = (await (await start_app(settings)).get("/")).text
    assert "<strong>2,500</strong> units free every month" in page
    assert "<strong>$0.0025</strong> per unit" in page
    assert "25,000 one-unit calls in a\nmonth cost $56.25." in page  # in cents, as charged


async def test_home_shows_the_exact_example_cost_only_where_cents_round_it(
    make_settings: Callable[..., Settings], start_app: Callable[..., Any]
) -> None:
    settings = make_settings(cost_per_call=Decimal("0.0001234"), free_tier_calls=1000)
    page = (await (await start_app(settings)).get("/")).text
    assert "cost $1.11 ($1.1106 before rounding to cents)." in page


async def test_home_quick_start_shows_each_way_to_pass_a_key(client: AppClient) -> None:
    page = (await client.get("/")).text
    assert "curl -X POST http://gateway.test/auth/register" in page
    assert "Authorization: Bearer nk_your_api_key" in page
    assert "X-API-Key: nk_your_api_key" in page
    assert "?api_key=nk_your_api_key" in page
    assert "http://gateway.test/billing/usage" in page


async def test_home_escapes_the_configured_public_url(
    make_settings: Callable[..., Settings], start_app: Callable[..., Any]
) -> None:
    settings = make_settings(public_url='https://api.example"><script>alert(1)</script>')
    page = (await (await start_app(settings)).get("/")).text
    assert "<script" not in page
    assert "https://api.example&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;/auth" in page


def test_home_escapes_a_base_url_taken_from_the_request_host() -> None:
    page = render_home(make_test_settings(), "http://evil.test'<b>", "1.0<i>")
    assert "<b>" not in page
    assert "<i>" not in page
    assert "http://evil.test&#x27;&lt;b&gt;/api/v1/insights" in page
    assert "Version 1.0&lt;i&gt;." in page


async def test_home_sends_security_headers_without_unsafe_inline(client: AppClient) -> None:
    response = await client.get("/")
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "style-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    # Nothing inline for the policy to block.
    assert "style=" not in response.text
    assert "<style" not in response.text
    assert "<script" not in response.text


async def test_home_stylesheet_is_served_as_css(client: AppClient) -> None:
    page = (await client.get("/")).text
    assert '<link rel="stylesheet" href="/static/home.css">' in page
    response = await client.get("/static/home.css")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/css")
    assert response.headers["x-content-type-options"] == "nosniff"


def test_money_never_uses_an_exponent() -> None:
    assert money(Decimal("0.001")) == "$0.001"
    assert money(Decimal("0.00010")) == "$0.0001"
    assert money(Decimal("1E+1")) == "$10"
