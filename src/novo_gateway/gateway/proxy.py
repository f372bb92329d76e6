"""The streaming proxy to upstream HTTP services (see routes_table.py for which paths go where).

One pooled aiohttp session serves every route. Its pool finds an idle connection to an origin in
constant time (a deque per origin; httpx's pool walked every pooled connection on every call,
which made a proxied call cost milliseconds at 64 concurrent calls); it is bounded at
`max_connections` calls in flight (one connection each), drops idle connections after
30 seconds, and never reuses one the upstream has closed (an idempotent call, such as a GET,
HEAD, PUT or DELETE, that meets a connection closed in the meantime is sent once more on a new
one, as RFC 9112 §9.3.1 allows, unless its body was already sent). The request body is streamed
up and the response streamed back chunk by chunk, so neither is held in memory. Cookies the
upstream sets are passed to the client (but for the gateway's own `novo_*`), never kept by the
pool. What is sent (the raw path, the headers by name, the account named by `X-Novo-Account-Id`)
and what comes back (the CSP sandbox) is decided in forwarding.py; the proxy adds no User-Agent
or Accept of its own. A path with a dot segment in any spelling (paths.py) is refused with 400
by `screen`, which the metered path calls before routing, so the refusal is neither routed nor
billed.

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

import aiohttp
from starlette.types import Receive, Scope, Send
from yarl import URL

from novo_gateway.gateway.forwarding import incoming_headers, outgoing
from novo_gateway.gateway.paths import (
    DOT_SEGMENT_REFUSED,
    has_dot_segment,
    raw_path,
    strip_prefix,
)
from novo_gateway.gateway.routes_table import Route, RouteTable
from novo_gateway.keys.cache import KeyIdentity
from novo_gateway.kit import metrics
from novo_gateway.kit.client_ip import ClientIpResolver
from novo_gateway.kit.config import Settings
from novo_gateway.kit.errors import (
    BadGateway,
    BadRequest,
    GatewayError,
    GatewayTimeout,
    ServiceUnavailable,
    error_response,
)

log = logging.getLogger("novo_gateway.proxy")

PREFIX_SPLIT_REFUSED: Final = (
    "The path's route prefix must end at a '/': it may not end inside a percent-encoded segment."
)
# Scope key: the client's query string as sent (the metered path passes handlers a copy
# without `api_key`; the upstream gets the client's bytes minus the key, kit/credentials.py).
RAW_QUERY: Final = "novo.raw_query"

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
        self._client_ip = ClientIpResolver(settings.trusted_proxies)
        self.table = RouteTable.from_settings(settings)
        self._max_connections = max_connections
        self._slots = asyncio.Semaphore(max_connections)
        self._session: aiohttp.ClientSession | None = None  # made in the loop, on first use
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}
        self._bases: dict[str, tuple[str, bytes]] = {}

    def match(self, path: str) -> Route | None:
        """The upstream route for a request path, or None when the built-in endpoints serve it."""
        return self.table.match(path)

    def screen(self, scope: Scope) -> BadRequest | None:
        """The 400 for a metered path nothing may route (a dot segment in any spelling, or a
        stripped prefix ending inside an encoded segment); None for every other path.

        Called before routing and before anything is recorded. Keeps the client's query string
        as sent for `forward`.
        """
        scope[RAW_QUERY] = scope.get("query_string", b"")
        path = raw_path(scope)
        if has_dot_segment(path):
            return BadRequest(DOT_SEGMENT_REFUSED)
        route = self.table.match(scope["path"]) if self.table else None
        if route is not None and route.strip_prefix and strip_prefix(path, route.prefix) is None:
            return BadRequest(PREFIX_SPLIT_REFUSED)
        return None

    async def forward(
        self, route: Route, scope: Scope, receive: Receive, send: Send, identity: KeyIdentity
    ) -> None:
        """Send the call upstream for `identity`'s account and stream the answer back.

        Sets `state["route_template"]` (read by the metrics); the pipeline bills the route's
        units (gateway/pipeline.py).
        """
        scope.setdefault("state", {})["route_template"] = route.label
        # Checked again here (screen() runs first on the metered path), so no caller can
        # forward a path the check refuses.
        if has_dot_segment(raw_path(scope)):
            await _reply(BadRequest(DOT_SEGMENT_REFUSED), scope, receive, send)
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
        origin, base_path = self._base(route)
        request = outgoing(
            route,
            scope,
            scope.get(RAW_QUERY, scope.get("query_string", b"")),
            identity,
            scope["state"].get("request_id"),
            base_path,
            self._client_ip.resolve(scope),
        )
        if request is None:
            await _reply(BadRequest(PREFIX_SPLIT_REFUSED), scope, receive, send)
            return
        body = _request_body(scope, receive)
        try:
            response = await self._client().request(
                scope["method"],
                URL(origin + request.target.decode("latin-1"), encoded=True),
                headers=request.headers,
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
                    "headers": incoming_headers(route, response.raw_headers),
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

    def _base(self, route: Route) -> tuple[str, bytes]:
        """The upstream's origin and the path of its URL (without a final '/'), cached."""
        base = self._bases.get(route.prefix)
        if base is None:
            upstream = route.upstream
            origin = f"{upstream.scheme}://{upstream.netloc.decode('ascii')}"
            base = self._bases[route.prefix] = (origin, upstream.raw_path.rstrip(b"/"))
        return base

    async def close(self) -> None:
        """Close the pooled connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _reply(err: GatewayError, scope: Scope, receive: Receive, send: Send) -> None:
    await error_response(err)(scope, receive, send)


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
