"""The dashboard page: /billing/usage's figures, the plot, escaping, the security headers."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from novo_gateway.accounts.models import User
from novo_gateway.billing.models import UsageReport
from novo_gateway.keys.models import ApiKey
from novo_gateway.kit.clock import FrozenClock
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import session_scope
from tests.conftest import AppClient
from tests.dashboard.helpers import customer, runtime_of, sign_in
from tests.metering.ledger import add_insights_calls

NOW = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)


async def record(
    client: AppClient, user_id: int, at: datetime, count: int, *, status: int = 200
) -> None:
    async with session_scope(runtime_of(client).sessions) as session:
        key_id = await session.scalar(select(ApiKey.id).where(ApiKey.user_id == user_id))
        assert key_id is not None
        await add_insights_calls(
            session,
            user_id=user_id,
            key_id=key_id,
            count=count,
            at=at,
            status=status,
            latency_ms=5,
        )


@pytest.fixture
async def march(make_settings: Callable[..., Settings], start_app: Callable[..., Any]) -> AppClient:
    """The gateway on March 10th, 2026, 15:00 UTC (a calendar-month period: no subscription)."""
    client: AppClient = await start_app(make_settings(), FrozenClock(NOW))
    return client


def figure(html: str, element_id: str) -> str:
    found = re.search(rf'id="{element_id}">([^<]*)<', html)
    assert found is not None, element_id
    return found.group(1).strip()


async def test_the_figures_are_those_of_billing_usage(march: AppClient) -> None:
    """Units and calls named apart, and the charge in cents beside the exact estimate."""
    user_id, key = await customer(march)
    await record(march, user_id, NOW - timedelta(days=9), 700)
    await record(march, user_id, NOW - timedelta(days=2), 453)
    await record(march, user_id, NOW - timedelta(hours=1), 3, status=500)
    await sign_in(march)

    page = (await march.get("/dashboard")).text
    usage = (await march.get("/billing/usage", headers={"X-API-Key": key})).json()

    period = usage["currentPeriod"]
    assert figure(page, "stat-total") == f"{period['units']:,}" == "1,153"
    assert figure(page, "stat-calls") == f"{period['calls']:,}" == "1,156"
    assert figure(page, "stat-free-left") == str(period["freeTierRemaining"]) == "0"
    assert figure(page, "stat-cost") == period["estimatedCharge"] == "$0.15"
    assert figure(page, "stat-cost-exact") == period["estimatedCost"] == "$0.1530"
    assert "Units this period" in page and "Calls this period" not in page


async def test_the_exact_estimate_is_shown_only_where_it_differs(march: AppClient) -> None:
    user_id, _key = await customer(march)
    await record(march, user_id, NOW - timedelta(days=2), 1150)
    await sign_in(march)

    page = (await march.get("/dashboard")).text

    assert figure(page, "stat-cost") == "$0.15"
    assert 'id="stat-cost-exact"' not in page


async def test_the_plot_has_one_point_per_day_of_the_period_so_far(march: AppClient) -> None:
    user_id, _key = await customer(march)
    await record(march, user_id, datetime(2026, 3, 1, 0, 0, tzinfo=UTC), 5)
    await record(march, user_id, datetime(2026, 3, 4, 9, 0, tzinfo=UTC), 7)
    await record(march, user_id, datetime(2026, 3, 10, 14, 0, tzinfo=UTC), 1)
    await record(march, user_id, datetime(2026, 2, 28, 23, 0, tzinfo=UTC), 50)  # last period
    await sign_in(march)

    page = (await march.get("/dashboard")).text

    points = re.findall(r'class="point"[^>]*data-units="(\d+)" data-total="(\d+)"', page)
    assert len(points) == 10  # March 1st to 10th
    assert [int(units) for units, _ in points] == [5, 0, 0, 7, 0, 0, 0, 0, 0, 1]
    assert int(points[-1][1]) == 13
    assert 'class="free-tier"' in page


async def test_the_first_day_counts_only_usage_inside_a_period_that_began_that_day(
    march: AppClient,
) -> None:
    user_id, _key = await customer(march)
    async with session_scope(runtime_of(march).sessions) as session:
        user = await session.get_one(User, user_id)
        user.current_period_start = datetime(2026, 3, 8, 12, 0, tzinfo=UTC)
        user.current_period_end = datetime(2026, 4, 8, 12, 0, tzinfo=UTC)
    await record(march, user_id, datetime(2026, 3, 8, 11, 0, tzinfo=UTC), 40)  # before it
    await record(march, user_id, datetime(2026, 3, 8, 13, 0, tzinfo=UTC), 4)
    await record(march, user_id, datetime(2026, 3, 9, 13, 0, tzinfo=UTC), 6)
    await sign_in(march)

    page = (await march.get("/dashboard")).text

    points = re.findall(r'class="point"[^>]*data-units="(\d+)" data-total="(\d+)"', page)
    assert [int(units) for units, _ in points] == [4, 6, 0]
    assert figure(page, "stat-total") == "10"


async def test_names_with_markup_are_shown_as_text(client: AppClient) -> None:
    await customer(client, name='<script>alert("x")</script><img src=x onerror=alert(1)>')
    await sign_in(client)
    csrf = re.search(r'name="csrf" value="([^"]+)"', (await client.get("/dashboard")).text)
    assert csrf is not None
    await client.post(
        "/dashboard/keys", data={"csrf": csrf.group(1), "name": "<b onmouseover=alert(2)>k</b>"}
    )

    page = (await client.get("/dashboard")).text

    assert "<script>alert" not in page
    assert "<img src=x" not in page
    assert "<b onmouseover" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    assert "&lt;b onmouseover=alert(2)&gt;k&lt;/b&gt;" in page


@pytest.mark.parametrize("path", ["/dashboard", "/dashboard/login"])
async def test_pages_forbid_inline_code_and_third_parties_in_their_csp(
    client: AppClient, path: str
) -> None:
    if path == "/dashboard":
        await customer(client)
        await sign_in(client)

    response = await client.get(path)

    assert response.status_code == 200
    csp = response.headers["content-security-policy"]
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "default-src 'none'" in csp
    assert "script-src 'self'" in csp and "style-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-frame-options"] == "DENY"
    # Nothing inline that the policy would block, and nothing loaded from elsewhere.
    assert not re.search(r"<script(?![^>]*\bsrc=)", response.text)
    assert " style=" not in response.text and "<style" not in response.text
    assert not re.search(r'(src|href)="(https?:)?//', response.text)


@pytest.mark.parametrize(
    ("path", "media_type"),
    [("/static/dashboard.css", "text/css"), ("/static/dashboard.js", "text/javascript")],
)
async def test_the_stylesheet_and_script_are_served_from_the_package(
    client: AppClient, path: str, media_type: str
) -> None:
    response = await client.get(path)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media_type)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert len(response.content) > 500


async def test_without_stripe_the_billing_section_says_why_instead_of_failing(
    client: AppClient,
) -> None:
    await customer(client)
    await sign_in(client)

    page = await client.get("/dashboard")

    assert page.status_code == 200
    assert 'id="invoices-message"' in page.text


async def test_late_usage_carried_over_to_this_period_is_shown_with_its_price(
    march: AppClient,
) -> None:
    user_id, key = await customer(march)
    await sign_in(march)
    assert 'id="stat-carried"' not in (await march.get("/dashboard")).text
    async with session_scope(runtime_of(march).sessions) as session:
        session.add(
            UsageReport(
                id="nvr_cus_x_1",
                user_id=user_id,
                stripe_customer_id="cus_x",
                period_start=datetime(2026, 2, 1, tzinfo=UTC),
                window_start=datetime(2026, 2, 28, 23, tzinfo=UTC),
                window_end=datetime(2026, 3, 1, tzinfo=UTC),
                event_timestamp=datetime(2026, 2, 28, 23, 59, tzinfo=UTC),
                units=7,
                event_count=7,
                status="carried",
                sent_at=NOW - timedelta(days=8),
                carried_period_end=datetime(2026, 3, 1, tzinfo=UTC),
                carried_invoice_item="ii_1",
                carried_cents=5,
            )
        )

    page = (await march.get("/dashboard")).text
    usage = (await march.get("/billing/usage", headers={"X-API-Key": key})).json()

    assert usage["carriedOver"]["totalCalls"] == 7 and usage["carriedOver"]["amount"] == "$0.0500"
    assert figure(page, "stat-carried") == ("plus 7 units of earlier periods carried over: $0.05")
