"""The upstream proxy against a real HTTP server on a local port (uvicorn in the test's loop)."""

from __future__ import annotations

import asyncio
import gzip
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client import REGISTRY
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route as StarletteRoute
from starlette.types import Message, Receive, Scope, Send

from novo_gateway.gateway.proxy import UpstreamBrokeOff, UpstreamProxy
from novo_gateway.keys.cache import KeyIdentity
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import session_scope
from novo_gateway.metering.models import UsageEvent
from tests.conftest import AppClient, make_test_settings
from tests.factories import create_api_key, create_user

IDENTITY = KeyIdentity(key_id=7, user_id=42)
REQUEST_ID = "req0123456789"


@dataclass
class Upstream:
    """A real HTTP server: `/echo...` describes the request it got, the rest test edge cases."""

    url: str
    stream_gate: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    first_part: asyncio.Event = field(default_factory=asyncio.Event)


async def _echo(request: Request) -> Response:
    return JSONResponse(
        {
            "method": request.method,
            "path": request.scope["raw_path"].decode(),
            "query": request.scope["query_string"].decode(),
            "headers": [[k.decode(), v.decode()] for k, v in request.scope["headers"]],
            "body": (await request.body()).decode(),
        },
        status_code=int(request.query_params.get("status", "200")),
    )


def _upstream_app(upstream: Upstream) -> Starlette:
    async def stream(_request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"first\n"
            await upstream.stream_gate.wait()
            yield b"second\n"

        return StreamingResponse(chunks(), media_type="text/plain")

    async def slow(_request: Request) -> Response:
        await upstream.release.wait()
        return Response("late")

    async def hop(_request: Request) -> Response:
        headers = {
            "Connection": "X-Hop-Secret",
            "X-Hop-Secret": "1",
            "Keep-Alive": "timeout=5",
            "Proxy-Authenticate": "Basic",
            "Trailer": "X-Checksum",
            "Upgrade": "h2c",
            "X-Request-Id": "upstream-id",
            "X-Kept": "yes",
        }
        return Response("ok", headers=headers)

    async def broken(_request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"partial"
            raise ConnectionAbortedError("the upstream dies mid-response")

        return StreamingResponse(chunks(), media_type="text/plain")

    async def upload(request: Request) -> Response:
        parts = []
        async for part in request.stream():
            if part:
                parts.append(part)
                upstream.first_part.set()  # the client sends the rest only after this
        return Response(b"|".join(parts))

    async def cookie(_request: Request) -> Response:
        return Response("set", headers={"Set-Cookie": "session=upstream-secret; Path=/"})

    async def zipped(_request: Request) -> Response:
        return Response(gzip.compress(b"squeezed"), headers={"Content-Encoding": "gzip"})

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    return Starlette(
        routes=[
            StarletteRoute("/api/v1/stream", stream),
            StarletteRoute("/api/v1/slow", slow),
            StarletteRoute("/api/v1/hop", hop),
            StarletteRoute("/api/v1/zipped", zipped),
            StarletteRoute("/api/v1/broken", broken),
            StarletteRoute("/api/v1/upload", upload, methods=["POST"]),
            StarletteRoute("/api/v1/cookie", cookie),
            StarletteRoute("/{path:path}", _echo, methods=methods),
        ]
    )


@pytest.fixture(scope="module")
async def upstream() -> AsyncIterator[Upstream]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    upstream = Upstream(url=f"http://127.0.0.1:{sock.getsockname()[1]}")
    config = uvicorn.Config(
        _upstream_app(upstream), log_level="warning", lifespan="off", ws="none", http="h11"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    yield upstream
    upstream.release.set()
    upstream.stream_gate.set()
    server.should_exit = True
    await task
    sock.close()


def _harness(proxy: UpstreamProxy) -> Callable[[Scope, Receive, Send], Any]:
    """Plays the metered path: the caller is authenticated, the route matched."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scope.setdefault("state", {})["request_id"] = REQUEST_ID
        route = proxy.match(scope["path"])
        assert route is not None
        await proxy.forward(route, scope, receive, send, IDENTITY)

    return app


@pytest.fixture
async def make_gateway() -> AsyncIterator[Callable[..., httpx.AsyncClient]]:
    """An HTTP client of a proxy built from the given settings (and `UpstreamProxy` options)."""
    opened: list[tuple[UpstreamProxy, httpx.AsyncClient]] = []

    def make(settings: Settings, **options: Any) -> httpx.AsyncClient:
        proxy = UpstreamProxy(settings, **options)
        transport = httpx.ASGITransport(app=_harness(proxy), client=("203.0.113.7", 50000))
        client = httpx.AsyncClient(transport=transport, base_url="http://gateway.test")
        opened.append((proxy, client))
        return client

    yield make
    for proxy, client in opened:
        await client.aclose()
        await proxy.close()


@pytest.fixture
def gateway(upstream: Upstream, make_gateway: Any) -> httpx.AsyncClient:
    client: httpx.AsyncClient = make_gateway(make_test_settings(upstream_url=upstream.url))
    return client


def _headers(echo: dict[str, Any]) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {}
    for name, value in echo["headers"]:
        seen.setdefault(name, []).append(value)
    return seen


def _upstream_errors(kind: str) -> float:
    return REGISTRY.get_sample_value("novo_upstream_errors_total", {"kind": kind}) or 0.0


async def test_method_path_query_and_body_are_forwarded(gateway: httpx.AsyncClient) -> None:
    response = await gateway.put(
        "/api/v1/things/a%2Fb?x=1&y=%20z&x=2", content=b'{"n": 1}', headers={"X-Custom": "v"}
    )
    assert response.status_code == 200
    echo = response.json()
    assert echo["method"] == "PUT"
    assert echo["path"] == "/api/v1/things/a%2Fb"
    assert echo["query"] == "x=1&y=%20z&x=2"
    assert echo["body"] == '{"n": 1}'
    assert _headers(echo)["x-custom"] == ["v"]
    assert _headers(echo)["content-length"] == ["8"]


async def test_client_key_is_removed_and_the_account_named(gateway: httpx.AsyncClient) -> None:
    headers = {
        "Authorization": "Bearer nk_secret",
        "X-API-Key": "nk_secret",
        "X-Novo-Account-Id": "1",
        "X-Request-Id": "client-chosen",
    }
    response = await gateway.get("/api/v1/echo?api_key=nk_secret&keep=1&API_KEY=x", headers=headers)
    echo = response.json()
    sent = _headers(echo)
    assert "nk_secret" not in response.text
    assert "authorization" not in sent
    assert "x-api-key" not in sent
    assert echo["query"] == "keep=1"
    assert sent["x-novo-account-id"] == ["42"]
    assert sent["x-request-id"] == [REQUEST_ID]


async def test_key_in_an_encoded_query_name_is_removed(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/api/v1/echo?api%5Fkey=nk_secret&keep=1")
    assert response.json()["query"] == "keep=1"


async def test_forwarded_headers_describe_the_client(
    gateway: httpx.AsyncClient, upstream: Upstream
) -> None:
    response = await gateway.get("/api/v1/echo", headers={"X-Forwarded-For": "198.51.100.1"})
    sent = _headers(response.json())
    assert sent["x-forwarded-for"] == ["203.0.113.7"]  # the peer: what it wrote is not believed
    assert sent["x-forwarded-proto"] == ["http"]
    assert sent["x-forwarded-host"] == ["gateway.test"]
    assert sent["host"] == [upstream.url.removeprefix("http://")]


async def test_forwarded_for_names_the_client_a_trusted_proxy_forwarded(
    upstream: Upstream, make_gateway: Any
) -> None:
    settings = make_test_settings(upstream_url=upstream.url, trusted_proxies=["203.0.113.0/24"])
    client = make_gateway(settings)
    chain = {"X-Forwarded-For": "6.6.6.6, 198.51.100.1"}
    response = await client.get("/api/v1/echo", headers=chain)
    assert _headers(response.json())["x-forwarded-for"] == ["198.51.100.1"]


async def test_non_ascii_header_bytes_are_forwarded_as_sent(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/api/v1/echo", headers={"X-Name": "Zoë Ünal".encode()})
    assert _headers(response.json())["x-name"] == ["Zoë Ünal"]


async def test_hop_by_hop_request_headers_are_dropped(gateway: httpx.AsyncClient) -> None:
    headers = {
        "Connection": "X-Hop-Secret, keep-alive",
        "X-Hop-Secret": "1",
        "Keep-Alive": "timeout=5",
        "TE": "trailers",
        "Trailer": "X-Checksum",
        "Upgrade": "websocket",
        "Proxy-Authorization": "Basic abc",
        "Expect": "100-continue",
        "X-End-To-End": "kept",
    }
    response = await gateway.get("/api/v1/echo", headers=headers)
    sent = _headers(response.json())
    for name in ("x-hop-secret", "keep-alive", "te", "trailer", "upgrade", "proxy-authorization"):
        assert name not in sent
    assert "expect" not in sent
    assert sent["x-end-to-end"] == ["kept"]
    assert sent.get("connection", ["keep-alive"]) == ["keep-alive"]  # httpx's own, to the pool


async def test_hop_by_hop_response_headers_are_dropped(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/api/v1/hop")
    assert response.text == "ok"
    for name in (
        "x-hop-secret",
        "keep-alive",
        "proxy-authenticate",
        "trailer",
        "upgrade",
        "connection",
        "server",
        "x-request-id",
    ):
        assert name not in response.headers
    assert response.headers["x-kept"] == "yes"


async def test_upstream_status_and_body_pass_through(gateway: httpx.AsyncClient) -> None:
    response = await gateway.delete("/api/v1/missing?status=404")
    assert response.status_code == 404
    assert response.json()["method"] == "DELETE"


async def test_head_passes_through_without_a_body(gateway: httpx.AsyncClient) -> None:
    response = await gateway.head("/api/v1/hop")
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["x-kept"] == "yes"
    assert (await gateway.get("/api/v1/hop")).text == "ok"  # the connection is still usable


async def test_a_large_body_streams_through_whole(gateway: httpx.AsyncClient) -> None:
    body = b"0123456789abcdef" * 131072  # 2 MiB, many reads and writes each way
    response = await gateway.post("/api/v1/upload", content=body)
    assert response.status_code == 200
    assert response.content.replace(b"|", b"") == body  # the upstream joins what it read by |


async def test_compressed_body_passes_through_undecoded(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/api/v1/zipped", headers={"Accept-Encoding": "gzip"})
    assert response.headers["content-encoding"] == "gzip"
    assert response.text == "squeezed"  # httpx decodes what the proxy passed on as it was


async def test_without_accept_encoding_upstream_is_asked_for_identity(
    gateway: httpx.AsyncClient,
) -> None:
    request = gateway.build_request("GET", "/api/v1/echo")
    del request.headers["accept-encoding"]
    response = await gateway.send(request)
    assert _headers(response.json())["accept-encoding"] == ["identity"]


async def test_chunked_request_body_is_streamed_up(gateway: httpx.AsyncClient) -> None:
    async def parts() -> AsyncIterator[bytes]:
        for part in (b"alpha,", b"beta,", b"gamma"):
            yield part

    response = await gateway.post("/api/v1/echo", content=parts())
    assert response.json()["body"] == "alpha,beta,gamma"


def _scope(path: str) -> Scope:
    return {
        "type": "http",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"gateway.test")],
        "client": ("203.0.113.7", 50000),
    }


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def test_response_is_streamed_before_the_upstream_finishes(upstream: Upstream) -> None:
    proxy = UpstreamProxy(make_test_settings(upstream_url=upstream.url))
    upstream.stream_gate.clear()
    received: list[bytes] = []

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body":
            received.append(message["body"])
            if message["body"] == b"first\n":
                # The upstream only sends the rest after the client has the first chunk.
                upstream.stream_gate.set()

    route = proxy.match("/api/v1/stream")
    assert route is not None
    scope = _scope("/api/v1/stream")
    try:
        await asyncio.wait_for(proxy.forward(route, scope, _no_body, send, IDENTITY), timeout=10)
    finally:
        await proxy.close()
    assert b"".join(received) == b"first\nsecond\n"
    assert received[0] == b"first\n"


async def test_upstream_breaking_off_mid_response_is_raised_not_hidden(
    upstream: Upstream,
) -> None:
    proxy = UpstreamProxy(make_test_settings(upstream_url=upstream.url))
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    route = proxy.match("/api/v1/broken")
    assert route is not None
    before = _upstream_errors("stream")
    try:
        with pytest.raises(UpstreamBrokeOff):
            await proxy.forward(route, _scope("/api/v1/broken"), _no_body, send, IDENTITY)
    finally:
        await proxy.close()
    assert sent[0]["status"] == 200
    assert all(m.get("more_body", True) for m in sent[1:])  # never marked complete
    assert _upstream_errors("stream") == before + 1


async def test_unreachable_upstream_is_502(make_gateway: Any) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens on this port now
    gateway = make_gateway(make_test_settings(upstream_url=f"http://127.0.0.1:{port}"))
    before = _upstream_errors("connect")
    response = await gateway.get("/api/v1/anything")
    assert response.status_code == 502
    assert response.json() == {
        "error": "Bad Gateway",
        "message": "The upstream service could not be reached. Please try again later.",
    }
    assert _upstream_errors("connect") == before + 1


async def test_slow_upstream_is_504(upstream: Upstream, make_gateway: Any) -> None:
    settings = make_test_settings(upstream_url=upstream.url, upstream_timeout_seconds=0.2)
    before = _upstream_errors("timeout")
    response = await make_gateway(settings).get("/api/v1/slow")
    assert response.status_code == 504
    assert response.json()["error"] == "Gateway Timeout"
    assert _upstream_errors("timeout") == before + 1


async def test_route_timeout_overrides_the_default(
    upstream: Upstream, make_gateway: Any, tmp_path: Path
) -> None:
    routes = tmp_path / "routes.toml"
    routes.write_text(
        f'[[routes]]\nprefix = "/api/v1/slow"\nupstream = "{upstream.url}"\ntimeout_seconds = 0.2\n'
    )
    response = await make_gateway(make_test_settings(routes_file=routes)).get("/api/v1/slow")
    assert response.status_code == 504
    assert "0.2 seconds" in response.json()["message"]


async def test_strip_prefix_sends_the_rest_under_the_upstream_path(
    upstream: Upstream, make_gateway: Any, tmp_path: Path
) -> None:
    routes = tmp_path / "routes.toml"
    routes.write_text(
        "[[routes]]\n"
        'prefix = "/api/v1/search"\n'
        f'upstream = "{upstream.url}/base/"\n'
        "strip_prefix = true\n"
    )
    client = make_gateway(make_test_settings(routes_file=routes))
    assert (await client.get("/api/v1/search/items?q=1")).json()["path"] == "/base/items"
    assert (await client.get("/api/v1/search")).json()["path"] == "/base/"


async def test_dot_segments_are_refused(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/api/v1/search/%2E%2E/admin")
    assert response.status_code == 400
    assert response.json()["error"] == "Bad Request"


async def test_request_body_is_streamed_up_before_the_client_finishes(upstream: Upstream) -> None:
    proxy = UpstreamProxy(make_test_settings(upstream_url=upstream.url))
    upstream.first_part.clear()
    parts = iter([b"alpha", b"omega"])
    sent: list[Message] = []

    async def receive() -> Message:
        part = next(parts)
        if part == b"omega":
            await upstream.first_part.wait()  # held until the upstream has the first part
        return {"type": "http.request", "body": part, "more_body": part != b"omega"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        **_scope("/api/v1/upload"),
        "method": "POST",
        "headers": [(b"host", b"gateway.test"), (b"transfer-encoding", b"chunked")],
    }
    route = proxy.match("/api/v1/upload")
    assert route is not None
    try:
        await asyncio.wait_for(proxy.forward(route, scope, receive, send, IDENTITY), timeout=10)
    finally:
        await proxy.close()
    assert sent[0]["status"] == 200
    assert b"".join(m.get("body", b"") for m in sent[1:]) == b"alpha|omega"


async def test_a_client_gone_while_sending_its_body_gets_no_answer(
    upstream: Upstream, make_gateway: Any
) -> None:
    proxy = UpstreamProxy(make_test_settings(upstream_url=upstream.url))
    messages: list[Message] = [
        {"type": "http.request", "body": b"alpha", "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return messages.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        **_scope("/api/v1/upload"),
        "method": "POST",
        "headers": [(b"host", b"gateway.test"), (b"content-length", b"100")],
    }
    route = proxy.match("/api/v1/upload")
    assert route is not None
    try:
        await proxy.forward(route, scope, receive, send, IDENTITY)
        assert sent == []
        # The pool still serves the next call.
        after: list[Message] = []

        async def collect(message: Message) -> None:
            after.append(message)

        await proxy.forward(route, _scope("/api/v1/echo"), _no_body, collect, IDENTITY)
        assert after[0]["status"] == 200
    finally:
        await proxy.close()


async def test_a_stalled_response_is_cut_after_the_read_timeout(upstream: Upstream) -> None:
    proxy = UpstreamProxy(
        make_test_settings(upstream_url=upstream.url, upstream_timeout_seconds=0.2)
    )
    upstream.stream_gate.clear()
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    route = proxy.match("/api/v1/stream")
    assert route is not None
    before = _upstream_errors("stream")
    try:
        with pytest.raises(UpstreamBrokeOff):
            await asyncio.wait_for(
                proxy.forward(route, _scope("/api/v1/stream"), _no_body, send, IDENTITY), timeout=10
            )
    finally:
        upstream.stream_gate.set()
        await proxy.close()
    assert sent[0]["status"] == 200
    assert sent[1]["body"] == b"first\n"
    assert all(m.get("more_body", True) for m in sent[1:])
    assert _upstream_errors("stream") == before + 1


async def test_cookies_the_upstream_sets_reach_the_client_not_the_next_call(
    gateway: httpx.AsyncClient,
) -> None:
    response = await gateway.get("/api/v1/cookie")
    assert response.headers["set-cookie"] == "session=upstream-secret; Path=/"
    gateway.cookies.clear()  # the test client keeps cookies; the proxy must not
    echo = (await gateway.get("/api/v1/echo")).json()
    assert "cookie" not in _headers(echo)


async def test_the_proxy_adds_no_user_agent_or_accept_of_its_own(
    gateway: httpx.AsyncClient,
) -> None:
    request = gateway.build_request("GET", "/api/v1/echo")
    del request.headers["user-agent"]
    del request.headers["accept"]
    sent = _headers((await gateway.send(request)).json())
    assert "user-agent" not in sent
    assert "accept" not in sent
    sent = _headers((await gateway.get("/api/v1/echo", headers={"User-Agent": "agent/1"})).json())
    assert sent["user-agent"] == ["agent/1"]


# --- the connection pool, against a minimal HTTP/1.1 server that counts its connections -----


@dataclass
class CountingUpstream:
    """Answers each request with the number of the connection it came on (1, 2, ...)."""

    url: str = ""
    opened: int = 0
    open_now: int = 0
    most_open: int = 0
    waiting: int = 0
    close_after_answer: bool = False  # close the connection without saying so
    drop_unanswered: bool = False  # read the request, then close without an answer
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.opened += 1
        number = self.opened
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                if self.drop_unanswered:
                    break
                self.waiting += 1
                await self.release.wait()
                self.waiting -= 1
                body = str(number).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
                if self.close_after_answer:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open_now -= 1
            writer.close()


@pytest.fixture
async def counting() -> AsyncIterator[CountingUpstream]:
    upstream = CountingUpstream()
    upstream.release.set()
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", 0)
    upstream.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    yield upstream
    upstream.release.set()
    server.close()
    await server.wait_closed()


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(10):
        while not condition():
            await asyncio.sleep(0.01)


async def test_connections_are_reused(counting: CountingUpstream, make_gateway: Any) -> None:
    gateway = make_gateway(make_test_settings(upstream_url=counting.url))
    answers = [(await gateway.get(f"/api/v1/call/{i}")).text for i in range(5)]
    assert answers == ["1"] * 5
    assert counting.opened == 1


async def test_the_pool_is_bounded_under_many_concurrent_calls(
    counting: CountingUpstream, make_gateway: Any
) -> None:
    gateway = make_gateway(make_test_settings(upstream_url=counting.url), max_connections=4)
    counting.release.clear()
    calls = [asyncio.create_task(gateway.get(f"/api/v1/call/{i}")) for i in range(40)]
    await _until(lambda: counting.waiting == 4)
    await asyncio.sleep(0.05)  # room for a fifth connection, were the pool not bounded
    assert counting.opened == 4
    counting.release.set()
    responses = await asyncio.gather(*calls)
    assert {r.status_code for r in responses} == {200}
    assert {r.text for r in responses} == {"1", "2", "3", "4"}  # the same four, reused
    assert counting.opened == counting.most_open == 4


async def test_a_full_pool_is_503_after_the_timeout(
    counting: CountingUpstream, make_gateway: Any, tmp_path: Path
) -> None:
    routes = tmp_path / "routes.toml"
    routes.write_text(
        f'[[routes]]\nprefix = "/api/v1/held"\nupstream = "{counting.url}"\ntimeout_seconds = 30\n'
        f'[[routes]]\nprefix = "/api/v1"\nupstream = "{counting.url}"\ntimeout_seconds = 0.2\n'
    )
    gateway = make_gateway(make_test_settings(routes_file=routes), max_connections=1)
    counting.release.clear()
    held = asyncio.create_task(gateway.get("/api/v1/held"))
    await _until(lambda: counting.waiting == 1)
    before = _upstream_errors("pool")
    response = await gateway.get("/api/v1/refused")
    assert response.status_code == 503
    assert response.json()["error"] == "Service Unavailable"
    assert _upstream_errors("pool") == before + 1
    counting.release.set()
    assert (await held).status_code == 200
    assert (await gateway.get("/api/v1/next")).status_code == 200
    assert counting.opened == 1


async def test_a_connection_the_upstream_closed_is_not_reused(
    counting: CountingUpstream, make_gateway: Any
) -> None:
    counting.close_after_answer = True
    gateway = make_gateway(make_test_settings(upstream_url=counting.url))
    assert (await gateway.get("/api/v1/first")).text == "1"
    await _until(lambda: counting.open_now == 0)
    second = await gateway.get("/api/v1/second")
    assert (second.status_code, second.text) == (200, "2")
    await _until(lambda: counting.open_now == 0)
    posted = await gateway.post("/api/v1/third", content=b"payload")
    if posted.status_code != 200:  # the close raced the call: a clean 502, never reused
        assert posted.status_code == 502
        assert posted.json()["error"] == "Bad Gateway"
    counting.close_after_answer = False
    assert (await gateway.get("/api/v1/fourth")).status_code == 200
    assert counting.opened >= 3


async def test_an_upstream_dropping_the_call_unanswered_is_502(
    counting: CountingUpstream, make_gateway: Any
) -> None:
    counting.drop_unanswered = True
    gateway = make_gateway(make_test_settings(upstream_url=counting.url))
    before = _upstream_errors("connect")
    response = await gateway.post("/api/v1/dropped", content=b"payload")
    assert response.status_code == 502
    assert response.json()["error"] == "Bad Gateway"
    assert _upstream_errors("connect") == before + 1
    counting.drop_unanswered = False
    assert (await gateway.get("/api/v1/after")).status_code == 200


# --- through the whole gateway: key auth, metering, then the proxy ---------------------------


async def _account(client: AppClient) -> tuple[int, str]:
    async with session_scope(client.app.state.runtime.sessions) as session:
        user = await create_user(session)
        _row, raw_key = await create_api_key(session, user)
    return user.id, raw_key


async def _event(client: AppClient, request_id: str) -> UsageEvent:
    async with session_scope(client.app.state.runtime.sessions) as session:
        event = await session.scalar(select(UsageEvent).where(UsageEvent.request_id == request_id))
    assert event is not None
    return event


async def test_gateway_proxies_a_metered_call_for_the_key_account(
    upstream: Upstream, make_settings: Callable[..., Settings], start_app: Callable[..., Any]
) -> None:
    client = await start_app(make_settings(upstream_url=upstream.url))
    user_id, raw_key = await _account(client)
    response = await client.get(f"/api/v1/recommendations?api_key={raw_key}&limit=5")
    assert response.status_code == 200
    echo = response.json()
    sent = _headers(echo)
    assert raw_key not in response.text
    assert echo["path"] == "/api/v1/recommendations"
    assert echo["query"] == "limit=5"
    assert sent["x-novo-account-id"] == [str(user_id)]
    assert sent["x-request-id"] == [response.headers["x-request-id"]]
    assert "x-ratelimit-remaining" in response.headers


async def test_gateway_bills_a_proxied_call_the_route_units(
    upstream: Upstream,
    make_settings: Callable[..., Settings],
    start_app: Callable[..., Any],
    tmp_path: Path,
) -> None:
    routes = tmp_path / "routes.toml"
    routes.write_text(
        f'[[routes]]\nprefix = "/api/v1/echo"\nupstream = "{upstream.url}"\nunits = 3\n'
    )
    client = await start_app(make_settings(routes_file=routes))
    _user_id, raw_key = await _account(client)
    response = await client.post(
        "/api/v1/echo/score", json={"lead": 1}, headers={"Authorization": f"Bearer {raw_key}"}
    )
    assert response.status_code == 200
    event = await _event(client, response.headers["x-request-id"])
    assert (event.units, event.billable, event.status) == (3, True, 200)
    assert event.endpoint == "/api/v1/echo/*"
    labels = {"method": "POST", "route": "/api/v1/echo/*", "status": "200"}
    assert REGISTRY.get_sample_value("novo_http_requests_total", labels)


async def test_gateway_records_an_unreachable_upstream_as_not_billable(
    make_settings: Callable[..., Settings], start_app: Callable[..., Any]
) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    client = await start_app(make_settings(upstream_url=f"http://127.0.0.1:{port}"))
    _user_id, raw_key = await _account(client)
    response = await client.get("/api/v1/recommendations", headers={"X-API-Key": raw_key})
    assert response.status_code == 502
    event = await _event(client, response.headers["x-request-id"])
    assert (event.status, event.billable) == (502, False)


async def test_gateway_keeps_builtin_endpoints_local_beside_a_catch_all(
    upstream: Upstream, make_settings: Callable[..., Settings], start_app: Callable[..., Any]
) -> None:
    client = await start_app(make_settings(upstream_url=upstream.url))
    _user_id, raw_key = await _account(client)
    response = await client.get("/api/v1/insights", headers={"X-API-Key": raw_key})
    assert response.status_code == 200
    assert "insights" in response.json()


async def test_gateway_refuses_a_call_without_key_before_the_upstream(
    upstream: Upstream, make_settings: Callable[..., Settings], start_app: Callable[..., Any]
) -> None:
    client = await start_app(make_settings(upstream_url=upstream.url))
    response = await client.get("/api/v1/recommendations")
    assert response.status_code == 401
    assert "method" not in response.json()


async def test_gateway_records_a_slow_upstream_as_not_billable(
    upstream: Upstream, make_settings: Callable[..., Settings], start_app: Callable[..., Any]
) -> None:
    settings = make_settings(upstream_url=upstream.url, upstream_timeout_seconds=0.2)
    client = await start_app(settings)
    _user_id, raw_key = await _account(client)
    response = await client.get("/api/v1/slow", headers={"X-API-Key": raw_key})
    assert response.status_code == 504
    event = await _event(client, response.headers["x-request-id"])
    assert (event.status, event.billable) == (504, False)
