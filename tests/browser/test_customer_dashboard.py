"""The customer dashboard in headless Chromium against a running gateway and the Stripe emulator."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from playwright.async_api import Browser, Dialog, Page

from tests.billing.conftest import Emulator
from tests.browser.conftest import Gateway
from tests.browser.helpers import PASSWORD, Customer, backdate_period, record_days, register

# Calls on each past day of the period: climbing past the 1,000 free calls.
PAST_DAYS = [40, 55, 62, 80, 71, 90, 104, 96, 120, 110, 135, 150]


def number(text: str) -> int:
    return int(text.strip().replace(",", ""))


async def sign_in(page: Page, gateway: Gateway, email: str) -> None:
    await page.goto(f"{gateway.url}/dashboard")
    assert page.url.endswith("/dashboard/login")  # redirected: not signed in
    await page.fill("input[name=email]", email)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{gateway.url}/dashboard")


async def accept(dialog: Dialog) -> None:
    await dialog.accept()


async def test_customer_signs_in_sees_usage_manages_keys_opens_an_invoice_and_signs_out(
    browser: Browser, gateway: Gateway, emulator: Emulator, artifacts: Path
) -> None:
    ada = await register(gateway, "ada@example.com", "Ada Lovelace")
    start = await backdate_period(gateway, ada.user_id, days=len(PAST_DAYS))
    await record_days(gateway, ada.user_id, start, PAST_DAYS)
    async with gateway.client() as http:
        for path in ["/api/v1/insights"] * 9 + ["/api/v1/analytics?period=7d"] * 4:
            assert (await http.get(path, headers=ada.auth)).status_code == 200
        usage = (await http.get("/billing/usage", headers=ada.auth)).json()["currentPeriod"]
    emulator.advance(2 * 3600)  # the first invoice is finalized after Stripe's grace period

    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    problems: list[str] = []  # script errors, and anything the CSP had to block
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on(
        "console",
        lambda message: (
            problems.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    await sign_in(page, gateway, ada.email)

    # The figures are /billing/usage's, and the plot has one point per day of the period so far.
    assert number(await page.inner_text("#stat-total")) == usage["totalCalls"]
    assert number(await page.inner_text("#stat-free-left")) == usage["freeTierRemaining"]
    assert (await page.inner_text("#stat-cost")).strip() == usage["estimatedCharge"]
    period_start = datetime.fromisoformat(usage["start"]).astimezone(UTC).date()
    days_so_far = (datetime.now(UTC).date() - period_start).days + 1
    points = page.locator("#usage-chart circle.point")
    assert await points.count() == days_so_far == len(PAST_DAYS) + 1
    last_total = await points.last.get_attribute("data-total")
    assert last_total is not None and int(last_total) == usage["totalCalls"]
    assert await page.locator("#usage-chart line.free-tier").count() == 1
    await page.screenshot(path=str(artifacts / "dashboard.png"), full_page=True)

    # Create a key: shown once, with a copy button; it calls the API.
    await page.fill("#new-key-name", "CI runner")
    await page.click("#create-key")
    new_key = await page.input_value("#new-key-value")
    assert re.fullmatch(r"nk_[0-9A-Za-z]{38}", new_key)
    await page.click("[data-copy=new-key-value]")
    await page.wait_for_selector("[data-copy=new-key-value]:has-text('Copied')")
    ci = Customer(ada.user_id, ada.email, new_key)
    async with gateway.client() as http:
        assert (await http.get("/api/v1/insights", headers=ci.auth)).status_code == 200

    # Revoke it (after confirming): the API refuses it.
    page.once("dialog", accept)
    row = page.locator("#keys-table tr", has_text="CI runner")
    await row.locator("button", has_text="Revoke").click()
    await page.wait_for_selector(".notice")
    assert "revoked" in await row.inner_text()
    async with gateway.client() as http:
        assert (await http.get("/api/v1/insights", headers=ci.auth)).status_code == 401

    # The invoice's hosted page opens at Stripe (the emulator).
    async with context.expect_page() as opened:
        await page.locator("#invoices-table a.invoice-link").first.click()
    invoice_page = await opened.value
    await invoice_page.wait_for_load_state()
    assert invoice_page.url.startswith(emulator.url)
    assert "Invoice" in await invoice_page.content()
    await invoice_page.close()

    # On a phone-width screen the page still fits.
    phone = await browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2)
    await phone.context.add_cookies(await context.cookies())
    await phone.goto(f"{gateway.url}/dashboard")
    width = await phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 390
    await phone.screenshot(path=str(artifacts / "dashboard-phone.png"), full_page=True)
    await phone.close()

    # Sign out: the page says so, and the dashboard asks to sign in again.
    await page.click("#sign-out")
    await page.wait_for_url(re.compile(r".*/dashboard/login\?notice=signed-out"))
    assert "signed out" in await page.inner_text(".notice")
    await page.goto(f"{gateway.url}/dashboard")
    assert page.url.endswith("/dashboard/login")
    assert problems == []
    await context.close()
