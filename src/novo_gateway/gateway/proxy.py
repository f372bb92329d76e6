"""The streaming proxy to upstream HTTP services (see routes_table.py for which paths go where).

One pooled `httpx.AsyncClient` serves every route. The request body is streamed up and the
response streamed back chunk by chunk, so neither is held in memory. On the way:

* hop-by-hop headers (RFC 9110 §7.6.1: Connection, Keep-Alive, Proxy-*, TE, Trailer,
  Transfer-Encoding, Upgrade, and any header the Connection header names) are dropped both ways;
* the client's key never reaches the upstream: Authorization, X-API-Key and the `api_key` query
  parameter are removed, and the account is named instead by `X-Novo-Account-Id` (any value the
  client sent for it is discarded), with `X-Request-Id` and `X-Forwarded-For/Proto/Host`;
* like nginx, the upstream's Date and Server headers are not passed on (the gateway's server
  writes its own), nor its X-Request-Id (the gateway's id is the one the client sees).

Failures before the response starts use the common error shape: an unreachable upstream is 502
Bad Gateway, no answer within the timeout is 504 Gateway Timeout, and a full connection pool is
503. The timeout (the route's `timeout_seconds`, else UPSTREAM_TIMEOUT_SECONDS) bounds connecting
and each read or write, not the whole stream, so long streaming responses keep flowing. If the
upstream breaks off after the response has started, the status is already sent: the error is
raised so the server closes the connection and the client sees a truncated response, not a
complete-looking one.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Final
from urllib.parse import unquote_to_bytes

import httpx
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

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
# Host (httpx writes the upstream's) and Expect (the gateway's server already answered it).
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

# One pool for every upstream; sized for a busy single process, kept warm between bursts.
_POOL_LIMITS: Final = httpx.Limits(
    max_connections=256, max_keepalive_connections=64, keepalive_expiry=30.0
)


class UpstreamProxy:
    """Matches metered paths to upstream routes and forwards calls to them."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.table = RouteTable.from_settings(settings)
        self._client: httpx.AsyncClient | None = None
        if self.table:
            self._client = httpx.AsyncClient(
                limits=_POOL_LIMITS,
                timeout=settings.upstream_timeout_seconds,
                follow_redirects=False,
                trust_env=False,  # HTTP(S)_PROXY in the environment must not reroute calls
            )

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
        client = self._client
        assert client is not None, "forward() called without a configured upstream"
        timeout = route.timeout_seconds or self._settings.upstream_timeout_seconds
        request = client.build_request(
            scope["method"],
            _target_url(route, scope),
            headers=_upstream_headers(scope, identity, state.get("request_id")),
            content=_request_body(scope, receive),
            timeout=timeout,
        )
        try:
            response = await client.send(request, stream=True)
        except httpx.PoolTimeout:
            metrics.upstream_error("pool")
            err: GatewayError = ServiceUnavailable(
                "The gateway is too busy to reach the upstream service. Please retry shortly."
            )
            await _reply(err, scope, receive, send)
            return
        except httpx.TimeoutException:
            metrics.upstream_error("timeout")
            err = GatewayTimeout(
                f"The upstream service did not answer within {timeout:g} seconds. "
                "Please try again later."
            )
            await _reply(err, scope, receive, send)
            return
        except httpx.TransportError as exc:
            metrics.upstream_error("connect")
            log.warning("upstream %s unreachable: %s", route.upstream, type(exc).__name__)
            err = BadGateway("The upstream service could not be reached. Please try again later.")
            await _reply(err, scope, receive, send)
            return
        except ClientDisconnect:
            return  # the client went away while sending its body: nobody to answer
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": _response_headers(response.headers.raw),
                }
            )
            async for chunk in response.aiter_raw():
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except httpx.HTTPError:
            metrics.upstream_error("stream")
            log.warning("upstream %s broke off mid-response", route.upstream)
            raise
        finally:
            await response.aclose()

    async def close(self) -> None:
        """Close the pooled connections."""
        if self._client is not None:
            await self._client.aclose()


async def _reply(err: GatewayError, scope: Scope, receive: Receive, send: Send) -> None:
    await error_response(err)(scope, receive, send)


def _has_dot_segment(path: str) -> bool:
    return any(segment in (".", "..") for segment in path.split("/"))


def _target_url(route: Route, scope: Scope) -> httpx.URL:
    """The upstream URL: its own path, then the request's raw path (minus the prefix if asked)."""
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
    base = route.upstream.raw_path.rstrip(b"/")
    query = _without_key(scope.get("query_string", b""))
    return route.upstream.copy_with(raw_path=base + raw_path + (b"?" + query if query else b""))


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
) -> list[tuple[bytes, bytes]]:
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
            headers.append((lower, value))
    if not accepts_encoding:
        # httpx would ask for gzip; the body is passed through undecoded, so ask for what the
        # client can read.
        headers.append((b"accept-encoding", b"identity"))
    client_addr = scope.get("client")
    peer = client_addr[0].encode() if client_addr else b"unknown"
    headers += [
        (b"x-novo-account-id", str(identity.user_id).encode()),
        (b"x-forwarded-for", forwarded_for + b", " + peer if forwarded_for else peer),
        (b"x-forwarded-proto", scope.get("scheme", "http").encode()),
    ]
    if host:
        headers.append((b"x-forwarded-host", host))
    if request_id:
        headers.append((b"x-request-id", request_id.encode()))
    return headers


def _response_headers(upstream: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    drop = _DROP_RESPONSE | _connection_tokens(upstream)
    return [(name.lower(), value) for name, value in upstream if name.lower() not in drop]


def _request_body(scope: Scope, receive: Receive) -> AsyncIterator[bytes] | bytes | None:
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
    return _stream_body(receive)


async def _stream_body(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk: bytes = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return
