"""Browser fixtures: the gateway under a real uvicorn server, the Stripe emulator beside it, and
one headless Chromium (Debian's, driven by Playwright) for the whole session.

Chromium comes from the `chromium` Debian package (`.ci/run` installs it); the tests are
skipped when it is missing, except under CI. The browser tests run on SQLite only: what they
check is the pages, and the server-side tests cover both databases.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from playwright.async_api import Browser, async_playwright

from novo_gateway.app import create_app
from novo_gateway.billing.stripe_client import StripeBilling
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import SessionFactory, create_engine, create_session_factory
from tests.billing.conftest import (  # noqa: F401 - fixtures used by these tests
    emulator,
    emulator_server,
    make_stripe_settings,
    stripe_billing,
    stripe_settings,
)
from tests.billing.webhook_helpers import StripeProduct, create_metered_price
from tests.conftest import IN_CI

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ADMIN_TOKEN = "operator-token-for-browser-tests-0123456789"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    """Browser tests run on SQLite only (the server-side tests cover PostgreSQL)."""
    return str(request.param)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    """One headless Chromium for the whole test session."""
    if not os.path.exists(CHROMIUM):
        message = f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


@pytest.fixture
def artifacts() -> Path:
    """Where screenshots go (gitignored)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


class ServerThread:
    """The gateway app served by uvicorn in a thread of its own (its own event loop)."""

    def __init__(self, settings: Settings, sock: socket.socket) -> None:
        config = uvicorn.Config(
            create_app(settings),
            log_level="warning",
            lifespan="on",
            ws="none",
            http="h11",
        )
        self.server = uvicorn.Server(config)
        self.sock = sock
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]})

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()


@dataclass
class Gateway:
    """A running gateway: its URL, its settings and direct access to its database."""

    url: str
    settings: Settings
    sessions: SessionFactory
    product: StripeProduct

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=20)


@asynccontextmanager
async def running_gateway(
    make_stripe_settings: Callable[..., Settings],  # noqa: F811
    stripe_billing: StripeBilling,  # noqa: F811
    **overrides: Any,
) -> AsyncIterator[Gateway]:
    """The gateway on a free port under uvicorn, billing through the Stripe emulator."""
    product = await create_metered_price(stripe_billing, "novo_api_calls")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    settings = make_stripe_settings(
        port=port,
        stripe_price_id=product.price_id,
        admin_token=ADMIN_TOKEN,
        # The gateway's reporter runs once at start, then rarely; a test may report sooner
        # with its own reporter once the short lease has lapsed.
        usage_reporting_interval=3_600_000,
        reporter_lease_seconds=1,
        **overrides,
    )
    server = ServerThread(settings, sock)
    server.start()
    engine = create_engine(settings)
    try:
        yield Gateway(
            url=f"http://127.0.0.1:{port}",
            settings=settings,
            sessions=create_session_factory(engine),
            product=product,
        )
    finally:
        await engine.dispose()
        server.stop()


@pytest.fixture
async def gateway(
    make_stripe_settings: Callable[..., Settings],  # noqa: F811
    stripe_billing: StripeBilling,  # noqa: F811
) -> AsyncIterator[Gateway]:
    """The gateway on a free port under uvicorn, billing through the Stripe emulator."""
    async with running_gateway(make_stripe_settings, stripe_billing) as running:
        yield running
