"""Part 2: authorization and authentication attacks (OWASP API Security Top 10, 2023).

Two accounts against one gateway process (PostgreSQL, Redis): each tries to reach what is the
other's (API1 BOLA), to set fields it may not (API3 mass assignment), to guess logins and keys
(API2), to leak keys into logs, to bounce the billing portal to another site, to store script in
names shown on HTML pages, and to read the API cross-origin (API8). A second process on the same
database runs with tight limits for the throttling attacks. Every attempt is counted; none may
succeed.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from novo_gateway.keys import tokens
from tests.adversarial.conftest import GatewayFactory
from tests.adversarial.harness import PASSWORD, Gateway
from tests.adversarial.system import Account, Figures, Ledger, login_token, register

ADMIN_TOKEN = "adversarial-admin-token-" + "0" * 24
XSS = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "</title><svg onload=alert(1)>",
    "'\"><iframe src=javascript:alert(1)>",
    "{{constructor.constructor('alert(1)')()}}",
]


@dataclass
class Attacks:
    """Attempts made and attempts that succeeded (must stay 0), for the figures."""

    tried: int = 0
    accepted: int = 0

    def expect(self, ok: bool, what: str, failures: list[str]) -> None:
        self.tried += 1
        if not ok:
            self.accepted += 1
            failures.append(what)


@pytest.fixture(scope="module")
def database(factory: GatewayFactory) -> dict[str, str]:
    return factory.database("postgres")


@pytest.fixture(scope="module")
def gateway(
    factory: GatewayFactory, database: dict[str, str], redis_server: Any
) -> Iterator[Gateway]:
    gw = factory.gateway(
        database,
        redis_url=redis_server.url,
        rate_limit_key_prefix="authz",
        admin_token=ADMIN_TOKEN,
    )
    gw.start()
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def tight(
    factory: GatewayFactory, database: dict[str, str], redis_server: Any
) -> Iterator[Gateway]:
    """The same database, with limits an attacker meets quickly."""
    gw = factory.gateway(
        database,
        redis_url=redis_server.url,
        rate_limit_key_prefix="authz-tight",
        rate_limit_per_minute=10,
        account_rate_limit_per_minute=1000,
        login_max_failures=5,
        login_lockout_seconds=300,
    )
    gw.start()
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
async def pair(gateway: Gateway) -> AsyncIterator[tuple[Account, Account]]:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as client:
        yield await register(client, "alice", name=XSS[0]), await register(client, "bob")


@pytest.fixture(scope="module")
def attacks(figures: Figures) -> Iterator[Attacks]:
    counted = Attacks()
    yield counted
    figures.add("authorization", attacks_tried=counted.tried, attacks_accepted=counted.accepted)


async def test_one_account_cannot_list_revoke_or_use_another_accounts_keys(
    gateway: Gateway, pair: tuple[Account, Account], attacks: Attacks
) -> None:
    alice, bob = pair
    failures: list[str] = []
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        extra = await client.post("/auth/api-keys", json={"name": "alice 2"}, headers=alice.auth)
        extra_id = extra.json()["apiKey"]["id"]
        bob_token = await login_token(client, bob)
        for auth in (bob.auth, {"Authorization": f"Bearer {bob_token}"}):
            for key_id in (alice.key_id, extra_id):
                revoke = await client.delete(f"/auth/api-keys/{key_id}", headers=auth)
                attacks.expect(revoke.status_code == 404, f"revoke {key_id}", failures)
            listed = await client.get("/auth/api-keys", headers=auth)
            ids = {k["id"] for k in listed.json()["apiKeys"]}
            attacks.expect(ids.isdisjoint({alice.key_id, extra_id}), "list", failures)
            attacks.expect(alice.key[:12] not in listed.text, "list prefix", failures)
        # Mixed credentials: the first one present decides, nothing is merged.
        mixed = await client.delete(
            f"/auth/api-keys/{alice.key_id}",
            headers={**bob.auth, "Authorization": f"Bearer {bob_token}"},
        )
        attacks.expect(mixed.status_code == 404, "mixed credentials", failures)
        still = await client.get("/api/v1/insights", headers=alice.auth)
        attacks.expect(still.status_code == 200, "alice's key still works", failures)
        # A key is only what it says: a well-formed key with one character changed is refused.
        forged = alice.key[:-1] + ("A" if alice.key[-1] != "A" else "B")
        attacks.expect(
            (await client.get("/api/v1/insights", headers={"X-API-Key": forged})).status_code
            == 401,
            "forged key",
            failures,
        )
    assert failures == []


async def test_one_account_cannot_see_another_accounts_usage_invoices_or_portal(
    gateway: Gateway, pair: tuple[Account, Account], attacks: Attacks
) -> None:
    alice, bob = pair
    failures: list[str] = []
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        for _ in range(7):
            await client.get("/api/v1/insights", headers=alice.auth)
        alice_usage = (await client.get("/billing/usage", headers=alice.auth)).json()
        ledger = Ledger(database_url=gateway.env["DATABASE_URL"])
        alice_customer = await ledger.customer_of(alice.user_id)
        await ledger.close()
        assert alice_customer is not None
        probes = [
            ("GET", "/billing/usage", {"user_id": alice.user_id}),
            ("GET", "/billing/usage", {"userId": alice.user_id, "customer": alice_customer}),
            ("GET", "/billing/usage/endpoints", {"days": 30, "user": alice.user_id}),
            ("GET", "/billing/invoices", {"customer": alice_customer}),
            ("GET", "/billing/subscription", {"customer": alice_customer}),
        ]
        for method, path, params in probes:
            response = await client.request(method, path, params=params, headers=bob.auth)
            leaked = alice_customer in response.text or alice.email in response.text
            attacks.expect(response.status_code < 500 and not leaked, path, failures)
        bob_usage = (await client.get("/billing/usage", headers=bob.auth)).json()
        attacks.expect(
            bob_usage["currentPeriod"]["totalCalls"] == 0, "bob's usage is his own", failures
        )
        attacks.expect(
            alice_usage["currentPeriod"]["totalCalls"] >= 7, "alice's usage is hers", failures
        )
        portal = await client.post(
            "/billing/portal", json={"customer": alice_customer}, headers=bob.auth
        )
        attacks.expect(portal.status_code == 400, "portal for another customer", failures)
        mine = await client.post("/billing/portal", json={}, headers=bob.auth)
        attacks.expect(
            mine.status_code == 200 and alice_customer not in mine.text, "own portal", failures
        )
        cancel = await client.post(
            "/billing/subscription/cancel",
            json={"customer": alice_customer, "immediately": True},
            headers=bob.auth,
        )
        attacks.expect(cancel.status_code == 400, "cancel another's subscription", failures)
        alice_sub = (await client.get("/billing/subscription", headers=alice.auth)).json()
        attacks.expect(alice_sub["status"] == "active", "alice still subscribed", failures)
    assert failures == []


async def test_fields_a_client_may_not_set_are_refused_not_ignored_or_honoured(
    gateway: Gateway, pair: tuple[Account, Account], attacks: Attacks
) -> None:
    alice, _bob = pair
    failures: list[str] = []
    forbidden_register = [
        {"id": 1},
        {"subscriptionStatus": "active"},
        {"isAdmin": True},
        {"stripeCustomerId": "cus_someone"},
        {"apiKey": {"key": "nk_mine"}},
        {"role": "admin"},
    ]
    forbidden_key = [
        {"id": 1},
        {"userId": alice.user_id},
        {"isActive": False},
        {"prefix": "nk_aaaa"},
        {"key": "nk_chosen"},
        {"revokedAt": None},
        {"createdAt": "2000-01-01T00:00:00Z"},
    ]
    forbidden_metered = [{"units": 0}, {"billedUnits": 0}, {"billable": False}, {"userId": 1}]
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        for extra in forbidden_register:
            body = {"email": f"mass{secrets.token_hex(4)}@example.com", "password": PASSWORD}
            response = await client.post("/auth/register", json={**body, **extra})
            named = next(iter(extra)) in response.text
            attacks.expect(response.status_code == 400 and named, f"register {extra}", failures)
        for extra in forbidden_key:
            response = await client.post("/auth/api-keys", json=extra, headers=alice.auth)
            attacks.expect(response.status_code == 400, f"key {extra}", failures)
        _events, before = await _billable(gateway, alice.user_id)
        for extra in forbidden_metered:
            body = {"audienceId": "aud_1", **extra}
            response = await client.post("/api/v1/audience/analyze", json=body, headers=alice.auth)
            attacks.expect(response.status_code == 400, f"metered {extra}", failures)
        for params in ({"units": 0}, {"billedUnits": "0"}):
            response = await client.get("/api/v1/insights", params=params, headers=alice.auth)
            attacks.expect(response.json()["meta"]["billedUnits"] == 1, f"query {params}", failures)
        response = await client.get(
            "/api/v1/insights", headers={**alice.auth, "X-Billed-Units": "0"}
        )
        attacks.expect(response.json()["meta"]["billedUnits"] == 1, "header units", failures)
        _events, after = await _billable(gateway, alice.user_id)
        attacks.expect(after - before == 3, "refused calls are not billed, others once", failures)
    assert failures == []


async def _billable(gateway: Gateway, user_id: int) -> tuple[int, int]:
    ledger = Ledger(database_url=gateway.env["DATABASE_URL"])
    try:
        return await ledger.events(user_id)
    finally:
        await ledger.close()


async def test_login_guessing_is_throttled_with_one_answer_for_unknown_and_wrong(
    tight: Gateway, gateway: Gateway, attacks: Attacks, figures: Figures
) -> None:
    failures: list[str] = []
    async with (
        httpx.AsyncClient(base_url=gateway.url, timeout=30) as open_client,
        httpx.AsyncClient(base_url=tight.url, timeout=30) as client,
    ):
        victim = await register(open_client, "victim")

        async def attempt(email: str, password: str) -> tuple[httpx.Response, float]:
            started = time.perf_counter()
            response = await client.post("/auth/login", json={"email": email, "password": password})
            return response, time.perf_counter() - started

        # Timing: wrong passwords for a known email against unknown emails, interleaved; each
        # email is fresh so no lockout interferes. Both check an argon2 hash.
        wrong_times: list[float] = []
        unknown_times: list[float] = []
        wrong_bodies, unknown_bodies = set(), set()
        known = [await register(open_client, f"timing{i}") for i in range(4)]
        await asyncio.sleep(0.5)  # their provisioning (the other process) is done, not competing
        for i in range(16):
            # Alternate which goes first, so drift in the machine's load favours neither.
            order = ("wrong", "unknown") if i % 2 else ("unknown", "wrong")
            for kind in order:
                if kind == "wrong":
                    wrong, took = await attempt(known[i % 4].email, f"not the password {i}")
                    wrong_times.append(took)
                    wrong_bodies.add((wrong.status_code, wrong.text))
                else:
                    email = f"nobody{secrets.token_hex(6)}@example.com"
                    unknown, took = await attempt(email, "not the password")
                    unknown_times.append(took)
                    unknown_bodies.add((unknown.status_code, unknown.text))
        attacks.expect(wrong_bodies == unknown_bodies, "same answer", failures)
        attacks.expect(len(wrong_bodies) == 1, "one answer", failures)
        ratio = statistics.median(wrong_times) / statistics.median(unknown_times)
        figures.add("authorization", login_timing_ratio=round(ratio, 2))
        # Generous bounds: an answer without the hash would be ~10x faster.
        attacks.expect(0.5 < ratio < 2.0, f"timing ratio {ratio:.2f}", failures)

        # Guessing one account's password: five failures, then refused even when right.
        answers = [(await attempt(victim.email, f"guess {i}"))[0].status_code for i in range(8)]
        right, _took = await attempt(victim.email, PASSWORD)
        attacks.expect(answers[:5] == [401] * 5, "first failures answered 401", failures)
        attacks.expect(set(answers[5:]) == {429}, "then locked out", failures)
        attacks.expect(right.status_code == 429, "right password locked out too", failures)
        attacks.expect("retry-after" in right.headers, "Retry-After", failures)
        unknown_lock = [
            (await attempt("ghost@example.com", f"g{i}"))[0].status_code for i in range(7)
        ]
        attacks.expect(unknown_lock[5:] == [429, 429], "unknown emails lock out too", failures)
    assert failures == []


async def test_key_guessing_is_throttled_per_client_and_never_admitted(
    tight: Gateway, attacks: Attacks
) -> None:
    failures: list[str] = []
    limit = 10 * 10  # RATE_LIMIT_PER_MINUTE x the per-IP multiplier
    async with httpx.AsyncClient(base_url=tight.url, timeout=30) as client:
        answers = []
        for i in range(limit + 20):
            guess = tokens.generate_key() if i % 2 else "nk_" + secrets.token_urlsafe(30)
            response = await client.get("/api/v1/insights", headers={"X-API-Key": guess})
            answers.append(response.status_code)
    attacks.tried += len(answers)
    accepted = [s for s in answers if s not in (401, 429)]
    attacks.accepted += len(accepted)
    assert accepted == []
    assert answers.count(401) <= limit
    assert answers[-20:] == [429] * 20
    assert failures == []


async def test_keys_sent_in_the_query_string_never_reach_the_logs(
    gateway: Gateway, pair: tuple[Account, Account], attacks: Attacks
) -> None:
    alice, _bob = pair
    secret_values = [alice.key, tokens.generate_key(), "nk_" + "q" * 40, PASSWORD]
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        token = await login_token(client, alice)
        secret_values.append(token)
        requests = [
            ("/api/v1/insights", f"api_key={alice.key}"),
            ("/api/v1/insights", f"period=7d&api_key={secret_values[1]}&x=1"),
            ("/api/v1/analytics", f"API_KEY={alice.key}&period=7d"),
            ("/api/v1/insights", f"api_key={secret_values[2]}&api_key={alice.key}"),
            ("/billing/usage", f"api_key={alice.key}"),
            ("/billing/usage", f"password={PASSWORD}&email={alice.email}"),
            ("/billing/usage", f"token={token}"),
            ("/auth/api-keys", f"api%5Fkey={alice.key}"),
            ("/nowhere", f"api_key={alice.key}"),
        ]
        for path, query in requests:
            await client.get(f"{path}?{query}")
    log = gateway.log_text()
    for value in secret_values:
        attacks.expect(value not in log, "secret in log", [])
    assert [v[:6] for v in secret_values if v in log] == []
    assert "[REDACTED]" in log


EVIL_RETURN_URLS = [
    "https://evil.example/",
    "//evil.example/",
    "http://localhost:{port}@evil.example/",
    "http://evil.example\\@localhost:{port}/",
    "http://localhost:{port}.evil.example/",
    "javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "http://127.0.0.1:{port}/\r\nLocation: https://evil.example/",
    "http://localhost:{port}%2f@evil.example/",
    "http://evil.example#http://localhost:{port}/",
    "http://localhost:{port}\t.evil.example/",
    "https://localhost:{port}/",
    "http://localhost:1/",
    "ftp://localhost:{port}/",
    "/\\evil.example",
    "http:///evil.example",
    "http://[::1]:{port}/",
    "http://0x7f.1:{port}/",
    "\u2028http://localhost:{port}/",
]


async def test_the_billing_portal_never_returns_to_another_site(
    gateway: Gateway, pair: tuple[Account, Account], attacks: Attacks
) -> None:
    alice, _bob = pair
    failures: list[str] = []
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        for template in EVIL_RETURN_URLS:
            url = template.format(port=3000)
            response = await client.post(
                "/billing/portal", json={"returnUrl": url}, headers=alice.auth
            )
            attacks.expect(response.status_code == 400, f"returnUrl {url!r}", failures)
        good = await client.post(
            "/billing/portal", json={"returnUrl": "http://localhost:3000/back"}, headers=alice.auth
        )
    assert good.status_code == 200
    assert failures == []


async def _dashboard_session(client: httpx.AsyncClient, account: Account) -> None:
    """Sign in to the customer dashboard as a browser does (CSRF token, same origin)."""
    form = await client.get("/dashboard/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf, form.text[:500]
    response = await client.post(
        "/dashboard/login",
        data={"email": account.email, "password": PASSWORD, "csrf": csrf.group(1)},
        headers={"Origin": str(client.base_url).rstrip("/")},
    )
    assert response.status_code in (302, 303), response.text[:500]


async def test_script_in_names_is_shown_as_text_on_every_html_page(
    gateway: Gateway, pair: tuple[Account, Account], attacks: Attacks
) -> None:
    alice, _bob = pair
    failures: list[str] = []
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        for payload in XSS:
            await client.post("/auth/api-keys", json={"name": payload[:100]}, headers=alice.auth)
        await register(client, "xss", name=XSS[1])
        pages = {
            "/": await client.get("/"),
            "/admin": await client.get(
                "/admin", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
            ),
        }
        pages["/dashboard/login"] = await client.get("/dashboard/login?notice=<script>x</script>")
        await _dashboard_session(client, alice)
        pages["/dashboard"] = await client.get("/dashboard")
    for path, page in pages.items():
        assert page.status_code == 200, (path, page.status_code)
        assert page.headers["content-type"].startswith("text/html")
        html = page.text
        for payload in XSS:
            attacks.expect(payload[:100] not in html, f"{path} raw {payload!r}", failures)
        attacks.expect("<script>x" not in html, f"{path} reflected", failures)
        csp = page.headers.get("content-security-policy", "")
        attacks.expect(
            "unsafe-inline" not in csp and ("script-src" in csp or "default-src 'none'" in csp),
            f"{path} CSP {csp!r}",
            failures,
        )
        attacks.expect(
            "<script>" not in html.replace("<script src=", ""), f"{path} inline", failures
        )
    # The escaped names are there: the pages show them, as text.
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages["/dashboard"].text
    assert "&lt;img src=x onerror=alert(1)&gt;" in pages["/admin"].text
    assert failures == []


async def test_security_headers_on_pages_and_on_answers_holding_secrets(
    gateway: Gateway, pair: tuple[Account, Account], attacks: Attacks
) -> None:
    alice, _bob = pair
    failures: list[str] = []
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        pages = [await client.get(p) for p in ("/", "/dashboard/login")]
        for page in pages:
            headers = page.headers
            attacks.expect(headers.get("x-content-type-options") == "nosniff", "nosniff", failures)
            framing = headers.get("x-frame-options") == "DENY" or "frame-ancestors 'none'" in (
                headers.get("content-security-policy", "")
            )
            attacks.expect(framing, f"framing {page.url}", failures)
            attacks.expect("referrer-policy" in headers, "referrer", failures)
        secrets_answers = [
            await client.post(
                "/auth/register",
                json={"email": f"hdr{secrets.token_hex(4)}@example.com", "password": PASSWORD},
            ),
            await client.post("/auth/login", json={"email": alice.email, "password": PASSWORD}),
            await client.post("/auth/api-keys", json={"name": "headers"}, headers=alice.auth),
            await client.get("/auth/api-keys", headers=alice.auth),
            await client.post("/billing/portal", json={}, headers=alice.auth),
        ]
        for answer in secrets_answers:
            assert answer.status_code in (200, 201), answer.text
            attacks.expect(
                answer.headers.get("cache-control") == "no-store",
                f"no-store {answer.url}",
                failures,
            )
            attacks.expect(
                answer.headers.get("x-content-type-options") == "nosniff",
                f"nosniff {answer.url}",
                failures,
            )
            attacks.expect("server" not in answer.headers, "server header", failures)
    assert failures == []


async def test_no_cross_origin_access_is_granted(
    gateway: Gateway, pair: tuple[Account, Account], attacks: Attacks
) -> None:
    alice, _bob = pair
    failures: list[str] = []
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        for path in ("/billing/usage", "/auth/api-keys", "/api/v1/insights", "/auth/login"):
            for origin in ("https://evil.example", "null", gateway.url):
                preflight = await client.options(
                    path,
                    headers={
                        "Origin": origin,
                        "Access-Control-Request-Method": "POST",
                        "Access-Control-Request-Headers": "x-api-key, content-type",
                    },
                )
                simple = await client.get(path, headers={**alice.auth, "Origin": origin})
                granted = [
                    h
                    for r in (preflight, simple)
                    for h in r.headers
                    if h.lower().startswith("access-control-allow")
                ]
                attacks.expect(granted == [], f"CORS {path} {origin}", failures)
    assert failures == []
