"""What reaches an upstream and what comes back, through real servers: the gateway under uvicorn
on a socket, a wsgiref upstream in a thread, and requests written byte for byte on the wire."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from novo_gateway.kit.config import Settings
from tests.conftest import AppClient
from tests.gateway.helpers import Account, ledger, make_account
from tests.gateway.proxy_corpus import DOT_SEGMENT_CORPUS, SPOOFED_HEADERS
from tests.gateway.wsgi_upstream import (
    RecordingUpstream,
    raw_request,
    served_gateway,
    wsgi_upstream,
)

OWN_POLICY = "sandbox allow-scripts; default-src 'none'"

# Paths with dots that are not dot segments: forwarded as sent.
DOTTED_BUT_FINE = [
    b"/api/v1/search/..a/b..",
    b"/api/v1/search/v1.2/file.tar.gz",
    b"/api/v1/search/.well-known/x",
]


def _routes(upstream: RecordingUpstream, path: Path) -> Path:
    path.write_text(
        f"""
[[routes]]
prefix = "/api/v1/search"
upstream = "{upstream.url}"
units = 2
forward_headers = ["X_Tenant"]

[[routes]]
prefix = "/api/v1/lookup"
upstream = "{upstream.url}/base/"
strip_prefix = true

[[routes]]
prefix = "/api/v1/raw"
upstream = "{upstream.url}"
security_headers = false

[[routes]]
prefix = "/api/v1/own"
upstream = "{upstream.url}"
content_security_policy = "{OWN_POLICY}"
"""
    )
    return path


@pytest.fixture
def upstream() -> Iterator[RecordingUpstream]:
    with wsgi_upstream() as server:
        yield server


@pytest.fixture
async def gateway(
    upstream: RecordingUpstream, make_settings: Callable[..., Settings], tmp_path: Path
) -> AsyncIterator[tuple[AppClient, int, Account]]:
    settings = make_settings(routes_file=_routes(upstream, tmp_path / "routes.toml"))
    async with served_gateway(settings) as (client, port):
        account = await make_account(client)
        yield client, port, account


Gateway = tuple[AppClient, int, Account]


async def test_an_underscore_spelling_cannot_name_another_account_at_a_wsgi_upstream(
    gateway: Gateway, upstream: RecordingUpstream
) -> None:
    _client, port, account = gateway
    for spelling in ("X_Novo_Account_Id", "x_novo_account_id", "X-Novo_Account-Id"):
        answer = await raw_request(
            port, b"/api/v1/search/me", [("X-API-Key", account.key), (spelling, "2")]
        )
        assert answer.status == 200
        # wsgiref joins every spelling into HTTP_X_NOVO_ACCOUNT_ID: only the gateway's is left.
        assert answer.json()["accountId"] == str(account.user_id), spelling


async def test_dot_segments_in_every_spelling_are_refused_unbilled_before_the_upstream(
    gateway: Gateway, upstream: RecordingUpstream
) -> None:
    client, port, account = gateway
    for target in DOT_SEGMENT_CORPUS:
        answer = await raw_request(port, target, [("X-API-Key", account.key)])
        assert answer.status == 400, target
        assert set(answer.json()) == {"error", "message"}, target
        assert "'..'" in answer.json()["message"]
    assert upstream.seen == []  # nothing arrived
    assert await ledger(client) == []  # nothing recorded, so nothing billed

    for target in DOTTED_BUT_FINE:
        answer = await raw_request(port, target, [("X-API-Key", account.key)])
        assert answer.status == 200, target
        assert answer.json()["target"] == target.decode()
    events = await ledger(client)
    assert [(e.status, e.billable, e.units) for e in events] == [(200, True, 2)] * 3


async def test_the_path_and_query_reach_the_upstream_byte_for_byte(
    gateway: Gateway, upstream: RecordingUpstream
) -> None:
    _client, port, account = gateway
    path = b"/api/v1/search/a%2Fb/%7E~/%E2%82%AC/sp%20ace/semi;v=1/x%3Fy/100%25/A%2f"
    query = b"q=a%20b&flag&plus=%2B+1&API_KEY=x&Api%5FKey=y&n=1;api_key=z"
    answer = await raw_request(port, path + b"?" + query + b"&api_key=" + account.key.encode())
    assert answer.status == 200
    assert upstream.seen[-1].target == (path + b"?q=a%20b&flag&plus=%2B+1&n=1").decode()


async def test_strip_prefix_strips_an_encoded_prefix_and_keeps_the_rest_raw(
    gateway: Gateway, upstream: RecordingUpstream
) -> None:
    _client, port, account = gateway
    auth = [("X-API-Key", account.key)]
    answer = await raw_request(port, b"/api/v1/looku%70/x%3Fadmin=1%20y", auth)
    assert answer.status == 200
    assert upstream.seen[-1].target == "/base/x%3Fadmin=1%20y"  # never /x?admin=1 y
    answer = await raw_request(port, b"/api%2Fv1/lookup/items%2F2?q=1", auth)
    assert upstream.seen[-1].target == "/base/items%2F2?q=1"
    assert (await raw_request(port, b"/api/v1/lookup", auth)).status == 200
    assert upstream.seen[-1].target == "/base/"
    # The prefix would end inside an encoded segment: no split is right, so none is made.
    arrived = len(upstream.seen)
    answer = await raw_request(port, b"/api/v1/lookup%2Fadmin", auth)
    assert answer.status == 400
    assert len(upstream.seen) == arrived


async def test_identity_credential_and_underscore_headers_never_reach_the_upstream(
    gateway: Gateway, upstream: RecordingUpstream
) -> None:
    _client, port, account = gateway
    spoofed = SPOOFED_HEADERS
    headers = [(name, "10.0.0.1") for name in spoofed]
    headers += [
        ("X-API-Key", account.key),
        ("X_API_KEY", account.key),
        ("Authorization", "Basic Zm9vOmJhcg=="),
        ("X_Forwarded_For", "10.0.0.1"),
        ("X_Forwarded_Host", "evil.example"),
        ("Cookie", "novo_session=ns_secret; theme=dark; novo_admin=a; __Host-novo_x=b"),
        ("Cookie", "novo_sign_in=c"),
        ("X_Tenant", "t1"),  # allow-listed on this route
        ("X_Other", "o"),
        ("X-Custom", "c"),
    ]
    answer = await raw_request(port, b"/api/v1/search/h", headers)
    assert answer.status == 200
    seen = upstream.seen[-1]
    received = {k: v for k, v in seen.environ.items() if k.startswith("HTTP_")}
    spoofs = [k for k, v in received.items() if "10.0.0.1" in v or "evil" in v]
    assert spoofs == []
    assert seen.header("X-Request-Id") == answer.all("x-request-id")[0]  # the gateway's own
    assert seen.header("Authorization") is None
    assert seen.header("X-API-Key") is None
    assert account.key not in str(received)
    assert seen.header("Cookie") == "theme=dark"
    assert seen.header("X-Forwarded-For") == "127.0.0.1"
    assert seen.header("X-Forwarded-Host") == "127.0.0.1"
    assert seen.header("X-Tenant") == "t1"
    assert seen.header("X-Other") is None
    assert seen.header("X-Custom") == "c"


async def test_proxied_answers_are_sandboxed_and_cannot_set_the_gateway_cookies(
    gateway: Gateway,
) -> None:
    _client, port, account = gateway
    auth = [("X-API-Key", account.key)]
    answer = await raw_request(port, b"/api/v1/search/cookies", auth)
    assert answer.all("content-security-policy") == ["sandbox"]
    assert answer.all("x-content-type-options") == ["nosniff"]
    assert answer.all("set-cookie") == ["theirs=1; Path=/"]

    own = await raw_request(port, b"/api/v1/own/cookies", auth)
    assert own.all("content-security-policy") == [OWN_POLICY]
    assert own.all("x-content-type-options") == ["nosniff"]

    opted_out = await raw_request(port, b"/api/v1/raw/cookies", auth)
    assert opted_out.all("content-security-policy") == []
    assert opted_out.all("x-content-type-options") == ["off"]  # the upstream's own, as sent
    assert opted_out.all("set-cookie") == ["theirs=1; Path=/"]
