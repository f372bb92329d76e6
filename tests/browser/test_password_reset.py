"""A forgotten password, reset in headless Chromium through the link a real SMTP server received;
then the password changed and every device signed out from the dashboard's Account section."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Dialog

from novo_gateway.kit.config import Settings
from tests.accounts.smtp import Inbox, smtp_server
from tests.browser.conftest import ServerThread

PASSWORD = "a long passphrase for tests"
NEW_PASSWORD = "a new passphrase, typed once"
NEWER_PASSWORD = "and another one after that"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    with smtp_server() as running:
        yield running


@pytest.fixture
async def gateway_url(
    make_settings: Callable[..., Settings], smtp: tuple[Inbox, int]
) -> AsyncIterator[str]:
    """The gateway under uvicorn, sending reset emails to the test's SMTP server."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = make_settings(
        smtp_host="127.0.0.1",
        smtp_port=smtp[1],
        smtp_security="none",
        smtp_from="Novo Gateway <no-reply@example.com>",
        public_url=url,
    )
    server = ServerThread(settings, sock)
    server.start()
    try:
        yield url
    finally:
        server.stop()


async def accept(dialog: Dialog) -> None:
    await dialog.accept()


async def test_a_customer_resets_a_forgotten_password_then_signs_out_everywhere(
    browser: Browser, gateway_url: str, smtp: tuple[Inbox, int], artifacts: Path
) -> None:
    inbox, _port = smtp
    async with httpx.AsyncClient(base_url=gateway_url) as http:
        created = await http.post(
            "/auth/register", json={"email": "ada@example.com", "password": PASSWORD}
        )
        assert created.status_code == 201
        api_session = (
            await http.post("/auth/login", json={"email": "ada@example.com", "password": PASSWORD})
        ).json()["session"]["token"]
    context = await browser.new_context()
    page = await context.new_page()

    # Forgot the password: the sign-in page links to the form that emails a link.
    await page.goto(f"{gateway_url}/dashboard/login")
    await page.click("#forgot-password")
    await page.fill("input[name=email]", "ada@example.com")
    await page.click("#send-reset-link")
    await page.wait_for_url(f"{gateway_url}/dashboard/login?notice=reset-sent")
    assert "a link to reset its password is on its way" in await page.inner_text(".notice")

    # The email's link opens the form; the new password replaces the old one.
    await inbox.wait_for(1)
    link = f"{gateway_url}/dashboard/reset-password?token={inbox.token(public_url=gateway_url)}"
    await page.goto(link)
    await page.screenshot(path=str(artifacts / "reset-password.png"), full_page=True)
    await page.fill("input[name=password]", NEW_PASSWORD)
    await page.click("#set-password")
    await page.wait_for_url(f"{gateway_url}/dashboard/login?notice=password-reset")
    async with httpx.AsyncClient(base_url=gateway_url) as http:
        assert (
            await http.get("/auth/api-keys", headers={"Authorization": f"Bearer {api_session}"})
        ).status_code == 401  # the reset signed out every session

    # Signed in with it, the Account section changes it again...
    await page.fill("input[name=email]", "ada@example.com")
    await page.fill("input[name=password]", NEW_PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{gateway_url}/dashboard")
    await page.fill("#change-password input[name=current_password]", NEW_PASSWORD)
    await page.fill("#change-password input[name=new_password]", NEWER_PASSWORD)
    await page.click("#change-password button[type=submit]")
    await page.wait_for_selector(".notice")
    assert "Your password is changed" in await page.inner_text(".notice")

    # ...and signs out on every device, this one included (after confirming).
    page.once("dialog", accept)
    await page.click("#sign-out-everywhere")
    await page.wait_for_url(f"{gateway_url}/dashboard/login?notice=signed-out-everywhere")
    await page.goto(f"{gateway_url}/dashboard")
    assert page.url == f"{gateway_url}/dashboard/login"
    await context.close()
