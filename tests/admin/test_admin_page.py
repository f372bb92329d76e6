"""The operator dashboard: customers and their usage, the reporter's health, webhook failures."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from novo_gateway.accounts.models import User
from novo_gateway.billing.models import UsageReport, WebhookEvent
from novo_gateway.keys.models import ApiKey
from novo_gateway.kit.clock import FrozenClock
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import session_scope
from tests.admin.helpers import ADMIN_TOKEN, BEARER, admin_sign_in
from tests.conftest import AppClient
from tests.dashboard.helpers import csrf_of, customer, runtime_of
from tests.metering.ledger import add_insights_calls

NOW = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)
STRIPE_SAID = "No such customer: 'cus_gone'"


@pytest.fixture
async def admin_app(make_settings: Callable[..., Settings], start_app: Callable[..., Any]) -> Any:
    client: AppClient = await start_app(make_settings(admin_token=ADMIN_TOKEN), FrozenClock(NOW))
    return client


async def record(client: AppClient, user_id: int, count: int, *, billable: bool = True) -> None:
    async with session_scope(runtime_of(client).sessions) as session:
        key_id = await session.scalar(select(ApiKey.id).where(ApiKey.user_id == user_id))
        assert key_id is not None
        await add_insights_calls(
            session,
            user_id=user_id,
            key_id=key_id,
            count=count,
            at=NOW - timedelta(days=1),
            status=200 if billable else 500,
            latency_ms=3,
        )


async def dead_report(client: AppClient, user_id: int) -> str:
    report_id = f"nvr_{user_id}_1"
    async with session_scope(runtime_of(client).sessions) as session:
        session.add(
            UsageReport(
                id=report_id,
                user_id=user_id,
                stripe_customer_id="cus_gone",
                period_start=NOW - timedelta(days=9),
                window_start=NOW - timedelta(hours=3),
                window_end=NOW - timedelta(hours=2),
                event_timestamp=NOW - timedelta(hours=2),
                units=42,
                event_count=42,
                status="dead",
                attempts=1,
                last_error=STRIPE_SAID,
                created_at=NOW - timedelta(hours=2),
            )
        )
    return report_id


def cell(html: str, element_id: str) -> str:
    found = re.search(rf'id="{element_id}">([^<]*)<', html)
    assert found is not None, element_id
    return found.group(1).strip()


async def test_customers_are_listed_with_status_usage_and_estimated_cost(
    admin_app: AppClient,
) -> None:
    ada, _ = await customer(admin_app, "ada@example.com", "Ada")
    bob, _ = await customer(admin_app, "bob@example.com", "Bob")
    await record(admin_app, ada, 1500)
    await record(admin_app, ada, 7, billable=False)
    await record(admin_app, bob, 20)

    page = (await admin_app.get("/admin", headers=BEARER)).text

    assert cell(page, "total-customers") == "2"
    assert cell(page, "total-units") == "1,520"
    assert cell(page, "total-revenue") == "$0.50"  # Ada's 500 calls past the free tier
    assert 'id="total-revenue-exact"' not in page  # the charge is exact: shown once
    rows = re.findall(r"<tr>\s*<td class=\"wrap\"><strong class=\"customer-name\">(\w+)", page)
    assert rows == ["Ada", "Bob"]  # heaviest first
    assert "ada@example.com" in page and "bob@example.com" in page


async def test_units_and_charges_are_named_as_billing_usage_names_them(
    admin_app: AppClient,
) -> None:
    """Units this period (free tiers included) and the billable units apart, as the API's
    `units` and `billableUnits`; each customer's charge rounded to cents as Stripe charges it,
    with the exact estimate beside it where it differs."""
    ada, _ = await customer(admin_app, "ada@example.com", "Ada")
    bob, _ = await customer(admin_app, "bob@example.com", "Bob")
    await record(admin_app, ada, 1005)
    await record(admin_app, bob, 1005)

    page = (await admin_app.get("/admin", headers=BEARER)).text

    assert cell(page, "total-units") == "2,010"
    assert cell(page, "total-billable-units") == "10"
    assert "Billable calls" not in page and "Units this period" in page
    assert cell(page, "total-revenue") == "$0.02"  # two invoices of 5 units: $0.005 each, $0.01
    assert cell(page, "total-revenue-exact") == "$0.0100"
    assert page.count("$0.0050") == 2  # each customer's exact estimate, beside its $0.01


async def test_customer_names_with_markup_are_shown_as_text(admin_app: AppClient) -> None:
    await customer(admin_app, "eve@example.com", "<script>alert(1)</script>")

    page = (await admin_app.get("/admin", headers=BEARER)).text

    assert "<script>alert(1)" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


async def test_the_reporter_shows_what_stripe_has_not_acknowledged(admin_app: AppClient) -> None:
    ada, _ = await customer(admin_app)
    async with session_scope(runtime_of(admin_app).sessions) as session:
        (await session.get_one(User, ada)).stripe_customer_id = "cus_ada"
    await record(admin_app, ada, 30)

    page = (await admin_app.get("/admin", headers=BEARER)).text

    assert cell(page, "pending-units") == "30"
    assert cell(page, "reporter-lag") == "1 d 0 h"  # the oldest unreported call is a day old


async def test_a_dead_report_shows_stripes_message_and_can_be_retried(
    admin_app: AppClient, caplog: pytest.LogCaptureFixture
) -> None:
    ada, _ = await customer(admin_app)
    report_id = await dead_report(admin_app, ada)
    await admin_sign_in(admin_app)
    page = (await admin_app.get("/admin")).text
    assert cell(page, "dead-count") == "1"
    assert "No such customer: &#39;cus_gone&#39;" in page
    token = csrf_of(page.split(f'action="/admin/reports/{report_id}/retry"')[1])

    with caplog.at_level(logging.INFO, logger="novo_gateway.admin"):
        response = await admin_app.post(f"/admin/reports/{report_id}/retry", data={"csrf": token})

    assert response.status_code == 303
    assert response.headers["location"] == "/admin?notice=requeued#reporter"
    async with session_scope(runtime_of(admin_app).sessions) as session:
        report = await session.get_one(UsageReport, report_id)
        assert (report.status, report.attempts) == ("pending", 0)
        assert report.next_attempt_at == NOW  # the gateway's clock, not the wall clock
    assert any(f"retry of dead report {report_id}" in r.getMessage() for r in caplog.records)


async def test_a_retry_without_the_forms_csrf_token_is_refused(admin_app: AppClient) -> None:
    ada, _ = await customer(admin_app)
    report_id = await dead_report(admin_app, ada)
    await admin_sign_in(admin_app)

    response = await admin_app.post(f"/admin/reports/{report_id}/retry", data={"csrf": "x"})

    assert response.status_code == 403
    async with session_scope(runtime_of(admin_app).sessions) as session:
        assert (await session.get_one(UsageReport, report_id)).status == "dead"


async def test_a_retry_by_a_signed_out_visitor_is_a_401(admin_app: AppClient) -> None:
    response = await admin_app.post("/admin/reports/nvr_1_1/retry", data={"csrf": "x"})

    assert response.status_code == 401


async def test_retrying_a_report_that_is_not_dead_changes_nothing(admin_app: AppClient) -> None:
    response = await admin_app.post("/admin/reports/nvr_9_9/retry", headers=BEARER)

    assert response.headers["location"] == "/admin?notice=not-dead#reporter"


async def test_a_malformed_report_id_is_a_400(admin_app: AppClient) -> None:
    response = await admin_app.post("/admin/reports/a%20b/retry", headers=BEARER)

    assert response.status_code == 400


async def test_webhook_failures_are_listed_with_their_error(admin_app: AppClient) -> None:
    async with session_scope(runtime_of(admin_app).sessions) as session:
        for event_id, status, attempts, error in [
            ("evt_ok", "processed", 1, None),
            ("evt_bad", "failed", 12, "KeyError: 'customer'"),
            ("evt_retry", "pending", 2, "Stripe unreachable"),
        ]:
            session.add(
                WebhookEvent(
                    id=event_id,
                    type="invoice.paid",
                    payload={},
                    status=status,
                    attempts=attempts,
                    last_error=error,
                    received_at=NOW - timedelta(minutes=attempts),
                    next_attempt_at=NOW + timedelta(hours=1),
                )
            )

    page = (await admin_app.get("/admin", headers=BEARER)).text

    assert "1 failed · 1 being retried" in page
    failures = page.split('id="webhook-failures"')[1].split("</table>")[0]
    assert "evt_bad" in failures and "evt_retry" in failures and "evt_ok" not in failures
    assert "KeyError: &#39;customer&#39;" in failures
