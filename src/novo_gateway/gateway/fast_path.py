"""The hot path: the built-in endpoints answered in one pass, before the framework's stack.

`GET /api/v1/insights` (metered) and `GET /api/v1/health` (free) take no input; the JSON `POST`
endpoints take one body model each. Through the full stack each request crosses eight ASGI layers
(Starlette's error and body-limit middleware, FastAPI's telemetry and routing, our request
context, body limit and metered path), each wrapping `send`, and FastAPI then solves the route's
dependencies and validates and serializes through its own layers; on this machine that cost more
than the metering itself (bench/README.md). Here the same steps run inline, in the same order and
with the same helpers:

1. the request id (`X-Request-Id`) as `RequestContextMiddleware` gives it;
2. for a metered path, the pipeline's admission (gateway/pipeline.py: limits, key, access),
   exactly as the middleware;
3. for a `POST`, the body read and validated with the route's model; a body the model refuses
   (or anything unusual: a disconnect, JSON only Python's parser takes) goes with the admitted
   call to the full stack, which answers it exactly as before, its 400 included, without
   counting the call against the limits a second time;
4. the body, rendered by `novo_api.fast` from the same service function and schema as the route;
5. for a metered path, the usage event, committed before the response starts (503 if it cannot
   be); then the response with the rate-limit headers and the request id;
6. the access log line and the request metrics, as `RequestContextMiddleware` writes them.

Only requests the full stack would treat identically come here: `GET` without a body, or `POST`
of `Content-Type: application/json` with a `Content-Length` within MAX_BODY_BYTES; no root path.
Anything else (another method, a streamed body, an upstream route configured over the path) takes
the normal stack. An unexpected error answers 500 in the one error shape and is raised on, as
Starlette's error middleware does.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from novo_gateway.gateway.body import read_body, replay
from novo_gateway.gateway.idempotency import Tap
from novo_gateway.gateway.idempotency_store import Answer
from novo_gateway.gateway.pipeline import MeteredCall, MeteredPipeline, Refused, is_metered
from novo_gateway.kit import metrics
from novo_gateway.kit.errors import GatewayError, error_response
from novo_gateway.kit.request_context import (
    MAX_HEADER_BYTES,
    MAX_HEADERS,
    access_log,
    log_request,
    new_request_id,
)
from novo_gateway.novo_api.fast import FastPost, FastRoute, FastRoutes

log = logging.getLogger("novo_gateway.errors")

UNEXPECTED = "Something went wrong on our side. Please try again later."
_JSON = b"application/json"


class FastPath:
    """Serves the fast routes in one pass; `match` says whether a request is one of them."""

    def __init__(self, routes: FastRoutes, pipeline: MeteredPipeline, full_stack: ASGIApp) -> None:
        self._routes = routes
        self._pipeline = pipeline
        self._clock = pipeline.clock
        self._full_stack = full_stack  # the app without the fast path, for bodies it hands over
        self._max_body = pipeline.settings.max_body_bytes
        # An upstream route configured over a built-in path takes it (routes_table.py).
        self._proxied = frozenset(p for p in routes.paths if pipeline.proxy.match(p) is not None)

    def match(self, scope: Scope) -> FastRoute | FastPost | None:
        """The fast route of this request, or None when the normal stack must serve it."""
        if scope["type"] != "http":
            return None
        route = self._routes.match(scope)
        if route is None or route.route.path in self._proxied:
            return None
        headers = scope["headers"]
        if len(headers) > MAX_HEADERS:
            return None  # the normal stack refuses it (431)
        size, length, json = 0, b"0", False
        for name, value in headers:
            size += len(name) + len(value)
            if name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                return None
            elif name == b"content-type":
                json = value == _JSON
        if size > MAX_HEADER_BYTES:
            return None
        if isinstance(route, FastPost):
            # A JSON body of a size the body limit lets through; the rest (413, 415-like
            # content types, streamed bodies) is the normal stack's.
            if not (json and length.isdigit() and 0 < int(length) <= self._max_body):
                return None
        elif length != b"0":
            return None
        return route

    async def serve(
        self, route: FastRoute | FastPost, scope: Scope, receive: Receive, send: Send
    ) -> None:
        started = time.perf_counter()
        request_id = new_request_id(scope)
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        id_header = (b"x-request-id", request_id.encode())
        scope["route"] = route.route
        status: int | None = 500
        handed_over: list[Message] | None = None
        try:
            if isinstance(route, FastPost):
                outcome = await self._metered_post(route, scope, receive, send, id_header)
                if isinstance(outcome, int):
                    status = outcome
                else:
                    status, handed_over = None, outcome
            elif is_metered(scope):
                status = await self._metered_call(route, scope, receive, send, id_header)
            else:
                status = 200
                body = route.body(self._clock.now(), request_id)
                await _send_json(send, 200, body, [id_header])
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            await error_response(GatewayError(UNEXPECTED))(scope, receive, send)
            raise
        finally:
            if status is not None:
                elapsed = time.perf_counter() - started
                metrics.observe_request(scope, status, elapsed)
                if access_log.isEnabledFor(logging.INFO):
                    log_request(scope, status, elapsed, request_id)
        if handed_over is not None:
            # The admitted call (in the scope) and its body go to the full stack, which answers
            # it, logs it and counts it.
            await self._full_stack(scope, replay(handed_over, receive), send)

    async def _metered_call(
        self,
        route: FastRoute,
        scope: Scope,
        receive: Receive,
        send: Send,
        id_header: tuple[bytes, bytes],
    ) -> int:
        try:
            call = await self._pipeline.admit(scope)
        except Refused as refused:
            return await _send_error(refused.error, scope, receive, send, id_header)
        return await self._run(call, route, b"", None, scope, receive, send, id_header)

    async def _metered_post(
        self,
        route: FastPost,
        scope: Scope,
        receive: Receive,
        send: Send,
        id_header: tuple[bytes, bytes],
    ) -> int | list[Message]:
        """A JSON POST; the body's messages when the full stack must answer it."""
        try:
            call = await self._pipeline.admit(scope)
        except Refused as refused:
            return await _send_error(refused.error, scope, receive, send, id_header)
        messages, raw = await read_body(receive)
        parsed = route.parse(raw) if raw is not None else None
        if raw is None or parsed is None:
            return messages
        return await self._run(call, route, raw, parsed, scope, receive, send, id_header)

    async def _run(
        self,
        call: MeteredCall,
        route: FastRoute | FastPost,
        raw: bytes,
        parsed: Any,
        scope: Scope,
        receive: Receive,
        send: Send,
        id_header: tuple[bytes, bytes],
    ) -> int:
        """With an Idempotency-Key, claim it (or replay its answer); then answer the call."""
        tap: Tap | None = None
        if call.idempotency_key is not None:
            try:
                claimed = await self._pipeline.begin_idempotent(call, scope, raw)
            except Refused as refused:
                return await _send_error(refused.error, scope, receive, send, id_header)
            if isinstance(claimed, Answer):
                failed = await self._pipeline.replay(call, claimed, scope, send, (id_header,))
                if failed is not None:
                    return await _send_error(failed, scope, receive, send, id_header)
                return claimed.status
            tap = Tap(self._pipeline.idempotency, claimed)
        try:
            now, request_id = self._clock.now(), scope["state"]["request_id"]
            if isinstance(route, FastPost):
                body = route.body(parsed, now, request_id)
            else:
                body = route.body(now, request_id)
            return await self._answer(call, route, body, scope, receive, send, id_header, tap)
        finally:
            if tap is not None:
                await tap.abandon()  # nothing once the answer is stored

    async def _answer(
        self,
        call: MeteredCall,
        route: FastRoute | FastPost,
        body: bytes,
        scope: Scope,
        receive: Receive,
        send: Send,
        id_header: tuple[bytes, bytes],
        tap: Tap | None,
    ) -> int:
        """Record the call (503 if it cannot be), then send its 200 with the limit headers."""
        pipeline = self._pipeline
        event = pipeline.event(
            call,
            scope["state"],
            method=scope["method"],
            status=200,
            endpoint=route.route.path,
            matched=True,
            units=route.units,
        )
        if not await pipeline.record(event):
            return await _send_error(pipeline.not_recorded(call), scope, receive, send, id_header)
        if tap is not None:
            tap.label(event.endpoint, event.units, event.request_id)
            send = _tapped(send, tap)
        await _send_json(send, 200, body, [*call.account.raw_headers(), id_header])
        return 200


def _tapped(send: Send, tap: Tap) -> Send:
    """`send` that lets `tap` keep the response first."""

    async def tapped(message: Message) -> None:
        await tap.sending(message)
        await send(message)

    return tapped


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
