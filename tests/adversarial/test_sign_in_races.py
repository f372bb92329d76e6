"""Part 2b: guessing passwords and the admin token in parallel, against real processes.

Two `novo-gateway serve` processes on one database (PostgreSQL, then SQLite) and one Redis. An
attacker sends 200 wrong passwords for one email at once, spread over both processes, through
`POST /auth/login` and through the credentials-in-the-body fallback of `GET /billing/usage`: at
most LOGIN_MAX_FAILURES are answered 401, the rest 429, and the right password is then refused
too. The same for the admin token sent as a Bearer token. The body-credential fallback is held to
the per-client-address limit of register and login. An operator's cookie copied before sign-out
is dead after it, and `/admin` answers a live customer credential exactly as it answers junk.

Client addresses: the processes trust 127.0.0.1 as a proxy, so each attack names its own client
address in `X-Forwarded-For` and the per-address counters of one attack do not touch another's.
The limiter's windows are aligned to the wall clock; an attack starts only when its window has
room left (`_clear_of_window_edge`), so it cannot straddle two windows.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.adversarial.conftest import GatewayFactory
from tests.adversarial.harness import PASSWORD, Gateway, PrivateRedis, running
from tests.adversarial.system import Figures, register

ADMIN_TOKEN = "adversarial-admin-token-" + "1" * 24
MAX_FAILURES = 5
LOCKOUT_SECONDS = 300
SIGN_IN_PER_MINUTE = 30
# 100 in flight per process: the limiter's Redis pool holds at most 100 connections (redis-py 8's
# default), and a request past that is refused with 503 (fail-closed), which would blur the count.
GUESSES = 200
_addresses = itertools.count(1)


def _client_address() -> dict[str, str]:
    """A client address of its own (IPv6 documentation prefix; only named, never reached)."""
    return {"X-Forwarded-For": f"2001:db8::{next(_addresses):x}"}


async def _clear_of_window_edge(window_seconds: int, margin: float = 20.0) -> None:
    """Wait (bounded by `margin`) until at least `margin` seconds are left in the current window."""
    left = window_seconds - time.time() % window_seconds
    if left < margin:
        await asyncio.sleep(left + 0.5)


@pytest.fixture(scope="module", params=["postgres", "sqlite"])
def pair(
    request: pytest.FixtureRequest, factory: GatewayFactory, redis_server: PrivateRedis
) -> Iterator[tuple[Gateway, Gateway]]:
    database = factory.database(request.param)
    settings = {
        "redis_url": redis_server.url,
        "rate_limit_key_prefix": f"races-{uuid.uuid4().hex[:6]}",
        "login_max_failures": MAX_FAILURES,
        "login_lockout_seconds": LOCKOUT_SECONDS,
        "account_rate_limit_per_minute": SIGN_IN_PER_MINUTE,
        "trusted_proxies": "127.0.0.1",
        "admin_token": ADMIN_TOKEN,
    }
    first = factory.gateway(database, **settings)
    second = factory.gateway(database, **settings)
    with running(first, second):
        yield first, second


@pytest.fixture
async def clients(pair: tuple[Gateway, Gateway]) -> AsyncIterator[list[httpx.AsyncClient]]:
    limits = httpx.Limits(max_connections=GUESSES, max_keepalive_connections=GUESSES)
    async with (
        httpx.AsyncClient(base_url=pair[0].url, timeout=120, limits=limits) as first,
        httpx.AsyncClient(base_url=pair[1].url, timeout=120, limits=limits) as second,
    ):
        yield [first, second]


async def _guess(
    client: httpx.AsyncClient, via: str, email: str, password: str, address: dict[str, str]
) -> httpx.Response:
    body = {"email": email, "password": password}
    if via == "login":
        return await client.post("/auth/login", json=body, headers=address)
    return await client.request("GET", "/billing/usage", json=body, headers=address)


@pytest.mark.parametrize("via", ["login", "body-credentials"])
async def test_200_parallel_wrong_passwords_get_at_most_the_allowed_failures(
    clients: list[httpx.AsyncClient], figures: Figures, via: str
) -> None:
    victim = await register(clients[0], "victim")
    await _clear_of_window_edge(LOCKOUT_SECONDS)
    # Each guess from its own address: only the per-account throttle stands in the way.
    addresses = [_client_address() for _ in range(GUESSES)]
    started = time.perf_counter()
    answers = await asyncio.gather(
        *(
            _guess(clients[i % 2], via, victim.email, f"guess {i}", addresses[i])
            for i in range(GUESSES)
        )
    )
    took = time.perf_counter() - started
    right = [
        await _guess(client, via, victim.email, PASSWORD, _client_address()) for client in clients
    ]

    counted = Counter(a.status_code for a in answers)
    assert counted == {401: MAX_FAILURES, 429: GUESSES - MAX_FAILURES}, counted
    assert [r.status_code for r in right] == [429, 429]
    assert all(int(r.headers["Retry-After"]) >= 1 for r in right)
    figures.add(
        "sign_in_races",
        **{
            f"{via}_parallel_guesses": GUESSES,
            f"{via}_answered_401": counted[401],
            f"{via}_seconds": round(took, 2),
        },
    )


async def test_the_body_credential_fallback_is_limited_per_client_address(
    clients: list[httpx.AsyncClient], figures: Figures
) -> None:
    await _clear_of_window_edge(60, margin=15)
    address = _client_address()
    # Other emails each time: only the per-address limit stands in the way.
    answers = await asyncio.gather(
        *(
            _guess(
                clients[i % 2],
                "body",
                f"nobody{i}-{uuid.uuid4().hex[:6]}@example.com",
                "x!",
                address,
            )
            for i in range(SIGN_IN_PER_MINUTE * 3)
        )
    )

    counted = Counter(a.status_code for a in answers)
    assert counted == {401: SIGN_IN_PER_MINUTE, 429: SIGN_IN_PER_MINUTE * 2}, counted
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.json()["error"] == "Rate Limit Exceeded"
    figures.add("sign_in_races", body_credentials_per_address_refused=counted[429])


async def test_parallel_admin_token_guesses_are_throttled_and_logged(
    pair: tuple[Gateway, Gateway], clients: list[httpx.AsyncClient], figures: Figures
) -> None:
    await _clear_of_window_edge(LOCKOUT_SECONDS)
    address = _client_address()
    logged_before = sum(g.log_text().count("refused bearer token") for g in pair)
    answers = await asyncio.gather(
        *(
            clients[i % 2].get(
                "/admin", headers={**address, "Authorization": f"Bearer guess-{i:04d}-{'x' * 30}"}
            )
            for i in range(100)
        )
    )
    right = await clients[0].get(
        "/admin", headers={**address, "Authorization": f"Bearer {ADMIN_TOKEN}"}
    )

    counted = Counter(a.status_code for a in answers)
    assert counted == {401: MAX_FAILURES, 429: 100 - MAX_FAILURES}, counted
    assert right.status_code == 429
    logged = sum(g.log_text().count("refused bearer token") for g in pair) - logged_before
    assert logged == MAX_FAILURES
    assert not any("guess-0" in g.log_text() for g in pair)  # the guesses themselves are not
    other = await clients[1].get(
        "/admin", headers={**_client_address(), "Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert other.status_code == 200  # another address is not locked out
    figures.add("sign_in_races", admin_bearer_guesses=100, admin_bearer_answered_401=counted[401])


async def _operator_cookie(client: httpx.AsyncClient, address: dict[str, str]) -> str:
    form = await client.get("/admin", headers=address)
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None, form.text[:300]
    signed_in = await client.post(
        "/admin/login", data={"token": ADMIN_TOKEN, "csrf": csrf.group(1)}, headers=address
    )
    assert signed_in.status_code == 303, signed_in.text[:300]
    return str(client.cookies["novo_admin"])


async def test_an_operator_cookie_copied_before_sign_out_is_dead_after_it(
    pair: tuple[Gateway, Gateway],
) -> None:
    address = _client_address()
    async with httpx.AsyncClient(base_url=pair[0].url, timeout=30) as browser:
        copied = await _operator_cookie(browser, address)
        page = await browser.get("/admin", headers=address)
        assert page.status_code == 200
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf is not None
        out = await browser.post("/admin/logout", data={"csrf": csrf.group(1)}, headers=address)
        assert out.status_code == 303

    # The copy, sent to either process, by someone who kept it.
    for gateway in pair:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as thief:
            thief.cookies.set("novo_admin", copied, path="/admin")
            response = await thief.get("/admin", headers=address)
            assert response.status_code == 401
            assert 'action="/admin/login"' in response.text


async def test_admin_answers_a_live_customer_credential_as_it_answers_junk(
    clients: list[httpx.AsyncClient],
) -> None:
    customer = await register(clients[0], "customer")
    login = await clients[0].post(
        "/auth/login",
        json={"email": customer.email, "password": PASSWORD},
        headers=_client_address(),
    )
    session_token = login.json()["session"]["token"]
    answers = set()
    for credential in (customer.key, session_token, "nk_" + "0" * 40, "ns_" + "0" * 43, "junk"):
        response = await clients[1].get(
            "/admin", headers={**_client_address(), "Authorization": f"Bearer {credential}"}
        )
        answers.add((response.status_code, response.text))

    assert answers == {(401, '{"error":"Unauthorized","message":"Invalid admin token."}')}
