"""`/docs` and `/redoc` render in headless Chromium with nothing but this machine: no CDN, no
inline script, under the pages' Content-Security-Policy, and never inside a frame."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, Request, Route

from tests.browser.conftest import Gateway


class Offline:
    """Every request the page makes; any that leaves the gateway's origin is aborted."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.elsewhere: list[str] = []
        self.console_errors: list[str] = []

    async def route(self, route: Route, request: Request) -> None:
        parts = urlsplit(request.url)
        if f"{parts.scheme}://{parts.netloc}" == self.origin or parts.scheme in ("data", "blob"):
            await route.continue_()
        else:
            self.elsewhere.append(request.url)
            await route.abort("internetdisconnected")

    def console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append(message.text)


async def _open(browser: Browser, gateway: Gateway) -> tuple[Page, Offline]:
    context = await browser.new_context()
    offline = Offline(gateway.url)
    await context.route("**/*", offline.route)
    page = await context.new_page()
    page.on("console", offline.console)
    return page, offline


@pytest.mark.parametrize(
    ("path", "title_selector"),
    [("/docs", ".swagger-ui .info .title"), ("/redoc", "h1")],
)
async def test_the_api_docs_render_offline_under_their_csp(
    browser: Browser, gateway: Gateway, artifacts: Path, path: str, title_selector: str
) -> None:
    page, offline = await _open(browser, gateway)
    response = await page.goto(gateway.url + path)
    assert response is not None and response.status == 200
    title = page.locator(title_selector).first
    await title.wait_for(timeout=20_000)
    if path == "/docs":  # every operation is listed, e.g. the webhook
        await page.get_by_text("/webhooks/stripe", exact=False).first.wait_for(timeout=20_000)
    else:
        await page.get_by_text("/webhooks/stripe", exact=False).first.wait_for(
            state="attached", timeout=20_000
        )
    await page.screenshot(path=str(artifacts / f"docs{path.replace('/', '-')}.png"))

    assert "Novo Gateway" in await title.inner_text()
    assert offline.elsewhere == []
    # Nothing the page needs is refused by its policy. (ReDoc's footer links a logo on Redocly's
    # CDN: the policy blocks it before any request, which is the point of the policy.)
    refused = [e for e in offline.console_errors if "Content Security Policy" in e]
    assert [e for e in refused if "cdn.redoc.ly" not in e] == []
    headers = await response.all_headers()
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "script-src 'self';" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    await page.context.close()


async def test_the_docs_cannot_be_framed_by_another_page(
    browser: Browser, gateway: Gateway
) -> None:
    page, _ = await _open(browser, gateway)
    await page.goto(gateway.url + "/static/dashboard.css")  # a page of the gateway's origin
    # set_content returns after the load event, which waits for the frame's document.
    await page.set_content(f'<iframe id="f" src="{gateway.url}/docs"></iframe>')
    (frame,) = page.main_frame.child_frames

    # Chromium refuses to show the framed document (frame-ancestors 'none', X-Frame-Options):
    # the frame holds its error page, not the docs.
    assert frame.url.startswith("chrome-error://"), frame.url
    assert await frame.locator("#swagger-ui").count() == 0
    await page.context.close()
