"""The hot path: the built-in GET endpoints answered in one pass, before the framework's stack.

`GET /api/v1/insights` (metered) and `GET /api/v1/health` (free) take no input. Through the full
stack each request crosses eight ASGI layers (Starlette's error and body-limit middleware, FastAPI's
telemetry and routing, our request context, body limit and metered path), each wrapping `send`;
on this machine those layers cost more than the metering itself (bench/README.md). Here the same
steps run inline, in the same order and with the same helpers:

1. the request id (`X-Request-Id`) as `RequestContextMiddleware` gives it;
2. for a metered path, `MeteredPath.admit` (limits, key, access), exactly as the middleware;
3. the body, rendered by `novo_api.fast` from the same service function and schema as the route;
4. for a metered path, the usage event, committed before the response starts (503 if it cannot
   be); then the response with the rate-limit headers and the request id;
5. the access log line and the request metrics, as `RequestContextMiddleware` writes them.

Only requests the full stack would treat identically come here: `GET`, no body, no root path.
Anything else (another method, a body, an upstream route configured over the path) takes the
normal stack. An unexpected error answers 500 in the one error shape and is raised on, as
Starlette's error middleware does.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from starlette.types import Message, Receive, Scope, Send

from novo_gateway import metrics
from novo_gateway.errors import GatewayError, ServiceUnavailable, error_response
from novo_gateway.gateway.middleware import NOT_RECORDED, MeteredPath, Refused, is_metered
from novo_gateway.http_middleware import (
    MAX_HEADER_BYTES,
    MAX_HEADERS,
    access_log,
    log_request,
    new_request_id,
)
from novo_gateway.novo_api.fast import FastRoute, FastRoutes

if TYPE_CHECKING:
    from novo_gateway.runtime import Runtime

log = logging.getLogger("novo_gateway.errors")

UNEXPECTED = "Something went wrong on our side. Please try again later."
_JSON = b"application/json"


class FastPath:
    """Serves the fast routes in one pass; `match` says whether a request is one of them."""

    def __init__(self, runtime: Runtime, routes: FastRoutes, metered: MeteredPath) -> None:
        self._runtime = runtime
        self._routes = routes
        self._metered = metered
        # An upstream route configured over a built-in path takes it (routes_table.py).
        self._proxied = frozenset(p for p in routes.paths if runtime.proxy.match(p) is not None)

    def match(self, scope: Scope) -> FastRoute | None:
        """The fast route of this request, or None when the normal stack must serve it."""
        if scope["type"] != "http":
            return None
        route = self._routes.match(scope)
        if route is None or route.route.path in self._proxied:
            return None
        headers = scope["headers"]
        if len(headers) > MAX_HEADERS:
            return None  # the normal stack refuses it (431)
        size = 0
        for name, value in headers:
            size += len(name) + len(value)
            if (name == b"content-length" and value != b"0") or name == b"transfer-encoding":
                return None
        return None if size > MAX_HEADER_BYTES else route

    async def serve(self, route: FastRoute, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        request_id = new_request_id(scope)
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        id_header = (b"x-request-id", request_id.encode())
        scope["route"] = route.route
        status = 500
        try:
            if is_metered(scope):
                status = await self._metered_call(route, scope, receive, send, id_header)
            else:
                status = 200
                body = route.body(self._runtime.clock.now(), request_id)
                await _send_json(send, 200, body, [id_header])
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            await error_response(GatewayError(UNEXPECTED))(scope, receive, send)
            raise
        finally:
            elapsed = time.perf_counter() - started
            metrics.observe_request(scope, status, elapsed)
            if access_log.isEnabledFor(logging.INFO):
                log_request(scope, status, elapsed, request_id)

    async def _metered_call(
        self,
        route: FastRoute,
        scope: Scope,
        receive: Receive,
        send: Send,
        id_header: tuple[bytes, bytes],
    ) -> int:
        metered = self._metered
        try:
            call = await metered.admit(scope)
        except Refused as refused:
            return await _send_error(refused.error, scope, receive, send, id_header)
        state: dict[str, Any] = scope["state"]
        body = route.body(self._runtime.clock.now(), state["request_id"])
        event = metered.event(
            call,
            state,
            method="GET",
            status=200,
            endpoint=route.route.path,
            matched=True,
            units=route.units,
        )
        if not await metered.record(event):
            err = ServiceUnavailable(NOT_RECORDED, headers=call.limit_headers)
            return await _send_error(err, scope, receive, send, id_header)
        await _send_json(send, 200, body, [*call.account.raw_headers(), id_header])
        return 200


async def _send_json(send: Send, status: int, body: bytes, headers: list[Any]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-length", str(len(body)).encode()),
                (b"content-type", _JSON),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _send_error(
    err: GatewayError, scope: Scope, receive: Receive, send: Send, id_header: tuple[bytes, bytes]
) -> int:
    """The gateway's own answer (401, 429, 402, 503), with the request id like any response."""

    async def with_id(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), id_header]}
        await send(message)

    await error_response(err)(scope, receive, with_id)
    return err.status_code
