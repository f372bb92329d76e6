"""The customer dashboard at a phone's width (375 px): every action reachable without scrolling
sideways, and the figures named as `/billing/usage` names them."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Browser, Locator

from tests.billing.conftest import Emulator
from tests.browser.conftest import Gateway
from tests.browser.helpers import backdate_period, record_days, register
from tests.browser.test_customer_dashboard import sign_in

WIDTH = 375


async def assert_in_view(element: Locator) -> None:
    """Shown, and wholly inside the viewport's width (not pushed off into a scrolling table)."""
    assert await element.is_visible()
    box = await element.bounding_box()
    assert box is not None
    assert box["x"] >= 0 and box["x"] + box["width"] <= WIDTH, box


async def test_keys_and_invoices_actions_fit_a_375_px_screen(
    browser: Browser, gateway: Gateway, emulator: Emulator, artifacts: Path
) -> None:
    ada = await register(gateway, "ada@example.com", "Ada Lovelace")
    start = await backdate_period(gateway, ada.user_id, days=3)
    await record_days(gateway, ada.user_id, start, [400, 500, 203])
    emulator.advance(2 * 3600)  # the first invoice is finalized after Stripe's grace period

    context = await browser.new_context(viewport={"width": WIDTH, "height": 812})
    page = await context.new_page()
    failed: list[str] = []  # any request the gateway answered with an error
    page.on(
        "response",
        lambda response: (
            failed.append(response.url)
            if response.status >= 400 and response.url.startswith(gateway.url)
            else None
        ),
    )
    await sign_in(page, gateway, ada.email)

    assert await page.evaluate("document.documentElement.scrollWidth") <= WIDTH
    revoke = page.locator("#keys-table button", has_text="Revoke").first
    await assert_in_view(revoke)
    await assert_in_view(page.locator("#invoices-table a.invoice-link").first)
    await assert_in_view(page.locator("#invoices-table a.invoice-pdf").first)
    # Each stacked cell still says what it is.
    labels = await page.evaluate(
        "[...document.querySelectorAll('#keys-table tbody tr:first-child td')]"
        ".map(td => getComputedStyle(td, '::before').content)"
    )
    assert '"Status"' in labels and '"Last used"' in labels
    await page.screenshot(path=str(artifacts / "dashboard-375.png"), full_page=True)

    # The page asked for nothing that is missing.
    assert failed == []
    await context.close()
