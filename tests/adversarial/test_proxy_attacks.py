"""Part 7: attacks through the proxy. A gateway process (PostgreSQL) routes `/api/v1/search` to
a wsgiref upstream (the standard library's WSGI server, which like gunicorn 21 and CGI joins
`X-Novo-Account-Id` and `X_Novo_Account_Id` into one variable). From outside, on the wire: every
spelling of a dot segment, every spelling of the account header and of the proxy and identity
headers an upstream may believe, the gateway's cookies and credentials, and encoded prefixes
on a `strip_prefix` route. The upstream records what reached it; the ledger what was recorded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.adversarial.conftest import GatewayFactory
from tests.adversarial.harness import Gateway
from tests.adversarial.system import Account, Figures, Ledger, register
from tests.gateway.proxy_corpus import DOT_SEGMENT_CORPUS, SPOOFED_HEADERS
from tests.gateway.wsgi_upstream import RecordingUpstream, raw_request, wsgi_upstream


@pytest.fixture(scope="module")
def upstream() -> Iterator[RecordingUpstream]:
    with wsgi_upstream() as server:
        yield server


@pytest.fixture(scope="module")
def database(factory: GatewayFactory) -> dict[str, str]:
    return factory.database("postgres")


@pytest.fixture(scope="module")
def gateway(
    factory: GatewayFactory,
    database: dict[str, str],
    upstream: RecordingUpstream,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Gateway]:
    routes = tmp_path_factory.mktemp("proxy-routes") / "routes.toml"
    routes.write_text(
        f'[[routes]]\nprefix = "/api/v1/search"\nupstream = "{upstream.url}"\n\n'
        f'[[routes]]\nprefix = "/api/v1/lookup"\nupstream = "{upstream.url}/base"\n'
        "strip_prefix = true\n"
    )
    process = factory.gateway(database, routes_file=str(routes)).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
async def account(gateway: Gateway) -> Account:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        return await register(client, "proxy")


@pytest.fixture
async def ledger(database: dict[str, str]) -> AsyncIterator[Ledger]:
    opened = Ledger(database["DATABASE_URL"])
    yield opened
    await opened.close()


async def test_dot_segments_in_every_spelling_never_reach_the_upstream_nor_the_bill(
    gateway: Gateway,
    account: Account,
    upstream: RecordingUpstream,
    ledger: Ledger,
    figures: Figures,
) -> None:
    arrived, (events_before, _) = len(upstream.seen), await ledger.events(account.user_id)
    statuses = [
        (await raw_request(gateway.port, target, [("X-API-Key", account.key)])).status
        for target in DOT_SEGMENT_CORPUS
    ]
    assert statuses == [400] * len(DOT_SEGMENT_CORPUS)
    assert len(upstream.seen) == arrived
    assert (await ledger.events(account.user_id))[0] == events_before
    figures.add(
        "proxy_dot_segments",
        spellings=len(DOT_SEGMENT_CORPUS),
        refused=statuses.count(400),
        reached_upstream=len(upstream.seen) - arrived,
        recorded=(await ledger.events(account.user_id))[0] - events_before,
    )


async def test_no_header_spelling_names_another_account_client_or_method_upstream(
    gateway: Gateway, account: Account, upstream: RecordingUpstream, figures: Figures
) -> None:
    headers = [(name, "2") for name in SPOOFED_HEADERS]
    headers += [
        ("X-API-Key", account.key),
        ("X_API_KEY", account.key),
        ("Authorization", "Basic Zm9vOmJhcg=="),
        ("Cookie", "novo_session=ns_stolen; novo_admin=a; theme=dark"),
    ]
    answer = await raw_request(gateway.port, b"/api/v1/search/me", headers)
    assert answer.status == 200
    seen = upstream.seen[-1]
    assert seen.header("X-Novo-Account-Id") == str(account.user_id)
    received = {k: v for k, v in seen.environ.items() if k.startswith("HTTP_")}
    spoofed = sorted(k for k, v in received.items() if v == "2" or "2," in v or ",2" in v)
    assert spoofed == []
    assert seen.header("Cookie") == "theme=dark"
    assert seen.header("Authorization") is None and seen.header("X-API-Key") is None
    assert answer.all("content-security-policy") == ["sandbox"]
    figures.add(
        "proxy_headers",
        spellings=len(SPOOFED_HEADERS) + 3,
        reached_upstream=len(spoofed),
        account_id_seen=seen.header("X-Novo-Account-Id") == str(account.user_id),
    )


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (b"/api/v1/looku%70/x%3Fadmin=1%20y", "/base/x%3Fadmin=1%20y"),
        (b"/api/v1/search/a%2Fb/%7E~/%E2%82%AC;v=1/x%3Fy?q=a%20b&flag", None),
    ],
)
async def test_the_path_reaches_the_upstream_as_the_client_sent_it(
    gateway: Gateway,
    account: Account,
    upstream: RecordingUpstream,
    target: bytes,
    expected: str | None,
) -> None:
    key = b"api_key=" + account.key.encode()
    answer = await raw_request(gateway.port, target + (b"&" if b"?" in target else b"?") + key)
    assert answer.status == 200
    assert upstream.seen[-1].target == (expected or target.decode())
