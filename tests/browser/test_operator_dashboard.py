"""The operator dashboard, and what a customer cannot do, in headless Chromium."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from playwright.async_api import Browser, Dialog

from novo_gateway.billing.models import UsageReport, WebhookEvent
from novo_gateway.billing.reporter import UsageReporter
from novo_gateway.billing.stripe_client import StripeBilling
from novo_gateway.kit.clock import Clock
from novo_gateway.kit.db import session_scope
from tests.browser.conftest import ADMIN_TOKEN, Gateway
from tests.browser.helpers import PASSWORD, backdate_period, record_days, register

STRIPE_SAID = "No such customer: 'cus_deleted'"
MARKUP = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">'


async def accept(dialog: Dialog) -> None:
    await dialog.accept()


async def seed_operations(gateway: Gateway, stripe: StripeBilling) -> str:
    """Usage for three customers, one report run, a report Stripe refused, some webhooks."""
    for email, name, days in [
        ("ada@example.com", "Ada Lovelace", [90, 120, 140, 160, 180, 200, 230]),
        ("grace@example.com", "Grace Hopper", [20, 25, 40, 35, 30, 45, 50]),
        ("alan@example.com", "Alan Turing", [5, 3, 8, 0, 6, 2, 9]),
    ]:
        customer = await register(gateway, email, name)
        start = await backdate_period(gateway, customer.user_id, days=len(days))
        await record_days(gateway, customer.user_id, start, days)
    reporter = UsageReporter(gateway.sessions, stripe, gateway.settings, Clock())
    for _ in range(100):  # the gateway's own reporter holds the lease for a second after start
        if (run := await reporter.run_once()) is not None:
            break
        await asyncio.sleep(0.05)
    assert run is not None and run.sent > 0
    await reporter.stop()
    now = datetime.now(UTC)
    async with session_scope(gateway.sessions) as session:
        session.add(
            UsageReport(
                id="nvr_3_90001",
                user_id=3,
                stripe_customer_id="cus_deleted",
                period_start=now - timedelta(days=7),
                window_start=now - timedelta(hours=2),
                window_end=now - timedelta(hours=1),
                event_timestamp=now - timedelta(hours=1),
                units=17,
                event_count=17,
                status="dead",
                attempts=1,
                last_error=STRIPE_SAID,
                created_at=now - timedelta(hours=1),
            )
        )
        for i, (kind, status, error) in enumerate(
            [
                ("customer.subscription.created", "processed", None),
                ("invoice.created", "processed", None),
                ("invoice.paid", "processed", None),
                ("customer.subscription.updated", "failed", "KeyError: 'items'"),
            ]
        ):
            session.add(
                WebhookEvent(
                    id=f"evt_demo_{i}",
                    type=kind,
                    payload={},
                    status=status,
                    attempts=12 if status == "failed" else 1,
                    last_error=error,
                    received_at=now - timedelta(minutes=40 - i * 10),
                    processed_at=None if error else now - timedelta(minutes=39 - i * 10),
                    next_attempt_at=now,
                )
            )
    return "nvr_3_90001"


async def test_operator_signs_in_sees_customers_and_the_reporter_and_retries_a_dead_report(
    browser: Browser, gateway: Gateway, stripe_billing: StripeBilling, artifacts: Path
) -> None:
    report_id = await seed_operations(gateway, stripe_billing)
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()

    response = await page.goto(f"{gateway.url}/admin")
    assert response is not None and response.status == 401
    await page.fill("input[name=token]", "not-the-token")
    await page.click("button[type=submit]")
    assert "Invalid admin token." in await page.inner_text(".alert")
    await page.fill("input[name=token]", ADMIN_TOKEN)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{gateway.url}/admin")

    assert await page.inner_text("#total-customers") == "3"
    names = await page.locator("#customers-table .customer-name").all_inner_texts()
    assert names == ["Ada Lovelace", "Grace Hopper", "Alan Turing"]  # heaviest first
    assert await page.inner_text("#reporter-last-sent") != "—"
    assert await page.inner_text("#dead-count") == "1"
    assert STRIPE_SAID in await page.inner_text("#dead-reports")
    assert "KeyError: 'items'" in await page.inner_text("#webhook-failures")
    await page.screenshot(path=str(artifacts / "admin.png"), full_page=True)

    page.once("dialog", accept)
    await page.locator(f"#dead-reports form[action$='{report_id}/retry'] button").click()
    await page.wait_for_url(re.compile(r".*/admin\?notice=requeued"))
    assert await page.inner_text("#dead-count") == "0"

    await page.click("#admin-sign-out")
    await page.wait_for_url(re.compile(r".*/admin\?notice=signed-out"))
    assert await page.locator("input[name=token]").count() == 1
    await context.close()


async def test_a_customer_cannot_reach_admin_or_others_data_and_markup_stays_text(
    browser: Browser, gateway: Gateway
) -> None:
    bob = await register(gateway, "bob@example.com", "Bob")
    mallory = await register(gateway, "mallory@example.com", MARKUP)
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(f"{gateway.url}/dashboard/login")
    await page.fill("input[name=email]", mallory.email)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{gateway.url}/dashboard")

    # The name is shown as text, and nothing in it ran.
    assert await page.inner_text("#account-name") == MARKUP
    await page.fill("#new-key-name", '<img src=x onerror="window.__xss=3">')
    await page.click("#create-key")
    assert '<img src=x onerror="window.__xss=3">' in await page.inner_text("#new-key h2")
    assert await page.evaluate("window.__xss") is None

    # Another customer's data: not on the page, and their key cannot be revoked from here.
    assert "bob@example.com" not in await page.content()
    csrf = await page.locator("#keys input[name=csrf]").first.input_value()
    refused = await page.request.post(f"{gateway.url}/dashboard/keys/1/revoke", form={"csrf": csrf})
    assert refused.status == 404
    async with gateway.client() as http:
        assert (await http.get("/api/v1/insights", headers=bob.auth)).status_code == 200

    # The operator dashboard is closed to customers.
    response = await page.goto(f"{gateway.url}/admin")
    assert response is not None and response.status == 401
    await context.close()
