"""Real servers for proxy tests: a WSGI upstream (the standard library's wsgiref, in a thread),
the gateway under uvicorn on a real socket, and a raw HTTP/1.1 client that sends a request
target byte for byte (httpx would resolve `..` and re-encode the path before sending it).

wsgiref is the upstream on purpose: like gunicorn 21 and CGI, it maps `X-Novo-Account-Id` and
`X_Novo_Account_Id` to the one variable `HTTP_X_NOVO_ACCOUNT_ID` and joins their values.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import uvicorn

from novo_gateway.app import create_app
from novo_gateway.kit.config import Settings
from tests.conftest import AppClient

StartResponse = Any  # wsgiref's start_response callable


@dataclass(frozen=True)
class Seen:
    """One request as the upstream got it: the request line's target and the CGI variables."""

    method: str
    target: str
    environ: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        """A request header as a WSGI application reads it (`HTTP_X_NAME`)."""
        return self.environ.get("HTTP_" + name.upper().replace("-", "_"))


@dataclass
class RecordingUpstream:
    """A wsgiref server that records every request. It answers:

    - `.../page`: `page` as text/html (a page for the browser tests);
    - `POST .../collect`: 204, the body recorded in `collected` (a sink for a page's script);
    - `.../cookies`: two Set-Cookie headers, one of them for the gateway's own `novo_session`;
    - anything else: 200 with a JSON description of the request.
    """

    url: str = ""
    page: bytes = b""
    seen: list[Seen] = field(default_factory=list)
    collected: list[bytes] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)

    def app(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        seen = Seen(
            environ["REQUEST_METHOD"],
            environ["RAW_URI"],
            {k: v for k, v in environ.items() if isinstance(v, str)},
            body,
        )
        self.seen.append(seen)
        path: str = environ["PATH_INFO"]
        if path.endswith("/collect") and seen.method == "POST":
            self.collected.append(body)
            self.arrived.set()
            start_response("204 No Content", [("Access-Control-Allow-Origin", "*")])
            return [b""]
        if path.endswith("/page"):
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
            return [self.page]
        if path.endswith("/cookies"):
            cookies = [
                ("Set-Cookie", "novo_session=chosen-by-upstream; Path=/"),
                ("Set-Cookie", "theirs=1; Path=/"),
                ("X-Content-Type-Options", "off"),
            ]
            start_response("200 OK", [("Content-Type", "text/plain"), *cookies])
            return [b"cookies"]
        answer = {"target": seen.target, "accountId": seen.header("X-Novo-Account-Id")}
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(answer).encode()]


class _RawUriHandler(WSGIRequestHandler):
    def get_environ(self) -> dict[str, Any]:
        environ = super().get_environ()
        environ["RAW_URI"] = self.path  # the request line's target, as gunicorn names it
        return environ

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def wsgi_upstream(page: bytes = b"") -> Iterator[RecordingUpstream]:
    """A `RecordingUpstream` served by wsgiref on a free port, in a thread."""
    upstream = RecordingUpstream(page=page)
    server: WSGIServer = make_server("127.0.0.1", 0, upstream.app, handler_class=_RawUriHandler)
    upstream.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield upstream
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


@asynccontextmanager
async def served_gateway(settings: Settings) -> AsyncIterator[tuple[AppClient, int]]:
    """The gateway under uvicorn (its default HTTP parser) on a free port, in this loop;
    an HTTP client of it whose `app` gives its runtime, and the port."""
    app = create_app(settings)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", ws="none")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(2000):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    assert server.started, "the gateway did not start"
    client = AppClient(base_url=f"http://127.0.0.1:{port}", timeout=20)
    client.app = app
    try:
        yield client, port
    finally:
        await client.aclose()
        server.should_exit = True
        await task
        sock.close()


@dataclass(frozen=True)
class RawAnswer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name.lower()]


async def raw_request(
    port: int, target: bytes, headers: Iterable[tuple[str, str]] = (), method: bytes = b"GET"
) -> RawAnswer:
    """Send one request with `target` in the request line exactly as given; read the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    lines += [f"{name}: {value}".encode() for name, value in headers]
    writer.write(b"\r\n".join(lines) + b"\r\n\r\n")
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = [
        (k.strip().lower(), v.strip()) for k, _, v in (h.partition(":") for h in header_lines)
    ]
    if any(k == "transfer-encoding" and "chunked" in v for k, v in parsed):
        body = _unchunk(body)
    return RawAnswer(int(status_line.split()[1]), parsed, body)


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2 :]
    return out
