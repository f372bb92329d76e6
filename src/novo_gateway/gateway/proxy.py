"""The streaming proxy to upstream HTTP services (see routes_table.py for which paths go where).

One pooled aiohttp session serves every route. Its pool finds an idle connection to an origin in
constant time (a deque per origin; httpx's pool walked every pooled connection on every call,
which made a proxied call cost milliseconds at 64 concurrent calls); it is bounded at
`max_connections` calls in flight (one connection each), drops idle connections after
30 seconds, and never reuses one the upstream has closed (an idempotent call, such as a GET,
HEAD, PUT or DELETE, that meets a connection closed in the meantime is sent once more on a new
one, as RFC 9112 §9.3.1 allows, unless its body was already sent). The request body is streamed
up and the response streamed back chunk by chunk, so neither is held in memory. Cookies the
upstream sets are passed to the client, never kept by the pool. On the way:

* hop-by-hop headers (RFC 9110 §7.6.1: Connection, Keep-Alive, Proxy-*, TE, Trailer,
  Transfer-Encoding, Upgrade, and any header the Connection header names) are dropped both ways;
* the client's key never reaches the upstream: Authorization, X-API-Key and the `api_key` query
  parameter are removed, and the account is named instead by `X-Novo-Account-Id` (any value the
  client sent for it is discarded), with `X-Request-Id` and `X-Forwarded-For/Proto/Host`; the
  proxy adds no User-Agent or Accept of its own;
* like nginx, the upstream's Date and Server headers are not passed on (the gateway's server
  writes its own), nor its X-Request-Id (the gateway's id is the one the client sees).

Failures before the response starts use the common error shape: an unreachable upstream is 502
Bad Gateway, no answer within the timeout is 504 Gateway Timeout, and a full connection pool is
503. The timeout (the route's `timeout_seconds`, else UPSTREAM_TIMEOUT_SECONDS) bounds waiting for
a free connection, connecting, and each read once the request is sent, not the whole stream, so
long streaming responses keep flowing. If the upstream breaks off after the response has
started, the status is already sent: `UpstreamBrokeOff` is raised so the server closes the
connection and the client sees a truncated response, not a complete-looking one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Final
from urllib.parse import unquote_to_bytes

import aiohttp
from starlette.types import Receive, Scope, Send
from yarl import URL

from novo_gateway import metrics
from novo_gateway.config import Settings
from novo_gateway.errors import (
    BadGateway,
    BadRequest,
    GatewayError,
    GatewayTimeout,
    ServiceUnavailable,
    error_response,
)
from novo_gateway.gateway.routes_table import Route, RouteTable
from novo_gateway.keys.cache import KeyIdentity

log = logging.getLogger("novo_gateway.proxy")

HOP_BY_HOP: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
# Request headers never forwarded: the client's credentials, headers the proxy sets itself, the
# Host (the client writes the upstream's) and Expect (the gateway's server already answered it).
_DROP_REQUEST: Final = HOP_BY_HOP | {
    b"host",
    b"expect",
    b"authorization",
    b"x-api-key",
    b"x-novo-account-id",
    b"x-request-id",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"forwarded",
}
_DROP_RESPONSE: Final = HOP_BY_HOP | {b"date", b"server", b"x-request-id"}
_KEY_PARAM: Final = b"api_key"

# Upstream calls in flight per process (each holds one pooled connection), idle connections'
# lifetime, and the longest response line or header accepted from an upstream.
MAX_CONNECTIONS: Final = 256
_KEEPALIVE_SECONDS: Final = 30.0
_MAX_HEADER_BYTES: Final = 64 * 1024


class UpstreamBrokeOff(Exception):
    """The upstream failed after the response had started: the client's answer is cut short."""


class UpstreamProxy:
    """Matches metered paths to upstream routes and forwards calls to them."""

    def __init__(self, settings: Settings, *, max_connections: int = MAX_CONNECTIONS) -> None:
        self._settings = settings
        self.table = RouteTable.from_settings(settings)
        self._max_connections = max_connections
        self._slots = asyncio.Semaphore(max_connections)
        self._session: aiohttp.ClientSession | None = None  # made in the loop, on first use
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}
        self._bases: dict[str, tuple[str, bytes]] = {}

    def match(self, path: str) -> Route | None:
        """The upstream route for a request path, or None when the built-in endpoints serve it."""
        return self.table.match(path)

    async def forward(
        self, route: Route, scope: Scope, receive: Receive, send: Send, identity: KeyIdentity
    ) -> None:
        """Send the call upstream for `identity`'s account and stream the answer back.

        Sets `state["billed_units"]` to the route's units (read by the metered path) and
        `state["route_template"]` (read by the metrics).
        """
        state = scope.setdefault("state", {})
        state["billed_units"] = route.units
        state["route_template"] = route.label
        if _has_dot_segment(scope["path"]):
            await _reply(
                BadRequest("The path may not contain '.' or '..' segments."), scope, receive, send
            )
            return
        timeout = route.timeout_seconds or self._settings.upstream_timeout_seconds
        slots = self._slots
        if slots.locked():  # every connection busy: wait for one, at most the timeout
            try:
                async with asyncio.timeout(timeout):
                    await slots.acquire()
            except TimeoutError:
                metrics.upstream_error("pool")
                err = ServiceUnavailable(
                    "The gateway is too busy to reach the upstream service. Please retry shortly."
                )
                await _reply(err, scope, receive, send)
                return
        else:
            await slots.acquire()  # a free slot: returns at once
        try:
            await self._exchange(route, timeout, scope, receive, send, identity)
        finally:
            slots.release()

    async def _exchange(
        self,
        route: Route,
        seconds: float,
        scope: Scope,
        receive: Receive,
        send: Send,
        identity: KeyIdentity,
    ) -> None:
        body = _request_body(scope, receive)
        try:
            response = await self._client().request(
                scope["method"],
                self._target_url(route, scope),
                headers=_upstream_headers(scope, identity, scope["state"].get("request_id")),
                data=body,
                timeout=self._timeout(seconds),
                allow_redirects=False,
            )
        except Exception as exc:
            if body is not None and body.disconnected:
                return  # the client went away while sending its body: nobody to answer
            if isinstance(exc, TimeoutError):
                metrics.upstream_error("timeout")
                err: GatewayError = GatewayTimeout(
                    f"The upstream service did not answer within {seconds:g} seconds. "
                    "Please try again later."
                )
            elif isinstance(exc, aiohttp.ClientError | OSError):
                metrics.upstream_error("connect")
                log.warning("upstream %s unreachable: %s", route.upstream, type(exc).__name__)
                err = BadGateway(
                    "The upstream service could not be reached. Please try again later."
                )
            else:
                raise
            await _reply(err, scope, receive, send)
            return
        complete = False
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status,
                    "headers": _response_headers(response.raw_headers),
                }
            )
            async for chunk in response.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            complete = True
        except (aiohttp.ClientError, TimeoutError) as exc:
            metrics.upstream_error("stream")
            log.warning("upstream %s broke off mid-response", route.upstream)
            raise UpstreamBrokeOff(f"{type(exc).__name__}: {exc}") from exc
        finally:
            if complete:
                response.release()  # the connection goes back to the pool
            else:
                response.close()  # unread bytes: the connection cannot be reused

    def _client(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                limit_per_host=0,
                keepalive_timeout=_KEEPALIVE_SECONDS,
            )
            session = self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),  # one customer's cookies never reach another
                auto_decompress=False,  # bodies pass through as the upstream encoded them
                skip_auto_headers=("User-Agent", "Accept"),
                trust_env=False,  # HTTP(S)_PROXY in the environment must not reroute calls
                max_line_size=_MAX_HEADER_BYTES,
                max_field_size=_MAX_HEADER_BYTES,
            )
        return session

    def _timeout(self, seconds: float) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(seconds)
        if timeout is None:
            timeout = aiohttp.ClientTimeout(
                total=None, connect=None, sock_connect=seconds, sock_read=seconds
            )
            self._timeouts[seconds] = timeout
        return timeout

    def _target_url(self, route: Route, scope: Scope) -> URL:
        """The upstream's URL and path, then the request's raw path (minus a stripped prefix)."""
        base = self._bases.get(route.prefix)
        if base is None:
            upstream = route.upstream
            origin = f"{upstream.scheme}://{upstream.netloc.decode('ascii')}"
            base = self._bases[route.prefix] = (origin, upstream.raw_path.rstrip(b"/"))
        origin, base_path = base
        target = base_path + _request_path(route, scope)
        query = _without_key(scope.get("query_string", b""))
        if query:
            target += b"?" + query
        return URL(origin + target.decode("latin-1"), encoded=True)

    async def close(self) -> None:
        """Close the pooled connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _reply(err: GatewayError, scope: Scope, receive: Receive, send: Send) -> None:
    await error_response(err)(scope, receive, send)


def _has_dot_segment(path: str) -> bool:
    return any(segment in (".", "..") for segment in path.split("/"))


def _request_path(route: Route, scope: Scope) -> bytes:
    """The request's raw path, minus the route's prefix when the route strips it."""
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
    raw_path = raw_path.split(b"?", 1)[0]
    if route.strip_prefix:
        prefix = route.prefix.encode()
        if raw_path.startswith(prefix):
            raw_path = raw_path[len(prefix) :]
        else:  # the client percent-encoded part of the prefix: strip it from the decoded path
            raw_path = scope["path"][len(route.prefix) :].encode()
        if not raw_path.startswith(b"/"):
            raw_path = b"/" + raw_path
    return raw_path


def _without_key(query: bytes) -> bytes:
    """The query string minus every `api_key` parameter (any case), the rest byte for byte."""
    if not query or (_KEY_PARAM not in query.lower() and b"%" not in query):
        return query
    kept = [
        part
        for part in query.split(b"&")
        if part
        and unquote_to_bytes(part.split(b"=", 1)[0].replace(b"+", b" ")).lower() != _KEY_PARAM
    ]
    return b"&".join(kept)


def _connection_tokens(headers: list[tuple[bytes, bytes]]) -> set[bytes]:
    """Header names listed in Connection: hop-by-hop for this message only."""
    return {
        token.strip().lower()
        for name, value in headers
        if name.lower() == b"connection"
        for token in value.split(b",")
    }


def _upstream_headers(
    scope: Scope, identity: KeyIdentity, request_id: str | None
) -> list[tuple[str, str]]:
    incoming: list[tuple[bytes, bytes]] = scope["headers"]
    drop = _DROP_REQUEST | _connection_tokens(incoming)
    headers = []
    host = b""
    forwarded_for = b""
    accepts_encoding = False
    for name, value in incoming:
        lower = name.lower()
        if lower == b"host":
            host = value
        elif lower == b"x-forwarded-for":
            forwarded_for = value
        elif lower == b"accept-encoding":
            accepts_encoding = True
        if lower not in drop:
            headers.append((lower.decode("latin-1"), _text(value)))
    if not accepts_encoding:
        # The upstream client would ask for gzip; the body is passed through undecoded, so ask
        # for what the client can read.
        headers.append(("accept-encoding", "identity"))
    client_addr = scope.get("client")
    peer = client_addr[0] if client_addr else "unknown"
    forwarded = _text(forwarded_for)
    headers += [
        ("x-novo-account-id", str(identity.user_id)),
        ("x-forwarded-for", f"{forwarded}, {peer}" if forwarded else peer),
        ("x-forwarded-proto", scope.get("scheme", "http")),
    ]
    if host:
        headers.append(("x-forwarded-host", _text(host)))
    if request_id:
        headers.append(("x-request-id", request_id))
    return headers


def _text(value: bytes) -> str:
    """A header value as the text the upstream client writes back as UTF-8: the same bytes
    whenever they are ASCII or UTF-8 (obs-text that is not UTF-8 is sent as its UTF-8 form)."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def _response_headers(upstream: tuple[tuple[bytes, bytes], ...]) -> list[tuple[bytes, bytes]]:
    drop = _DROP_RESPONSE | _connection_tokens(list(upstream))
    return [(name.lower(), value) for name, value in upstream if name.lower() not in drop]


def _request_body(scope: Scope, receive: Receive) -> _Body | None:
    """The body to send upstream: streamed when the client sent one, else none."""
    has_length = has_chunks = False
    for name, value in scope["headers"]:
        lower = name.lower()
        if lower == b"content-length":
            has_length = value.strip() != b"0"
        elif lower == b"transfer-encoding":
            has_chunks = True
    if not (has_length or has_chunks):
        return None
    return _Body(receive)


class _Body:
    """The client's body, chunk by chunk as the upstream client writes it."""

    __slots__ = ("_receive", "disconnected")

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.disconnected = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
                raise ConnectionAbortedError("the client went away while sending its body")
            chunk: bytes = message.get("body", b"")
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return
