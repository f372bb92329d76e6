"""Pure ASGI middleware around every request: request id and access log, and the body size limit."""

from __future__ import annotations

import asyncio
import logging
import time

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from novo_gateway.kit import metrics
from novo_gateway.kit.errors import (
    PayloadTooLarge,
    RequestHeaderFieldsTooLarge,
    RequestTimeout,
    error_response,
)
from novo_gateway.kit.request_context import (
    HEADERS_TOO_LARGE,
    MAX_HEADER_BYTES,
    MAX_HEADERS,
    access_log,
    log_request,
    new_request_id,
)


class RequestContextMiddleware:
    """Gives each request an id (`X-Request-Id`, kept if the client sent a sane one) and logs it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            metrics.observe_request(scope, status, elapsed)
            if access_log.isEnabledFor(logging.INFO):
                log_request(scope, status, elapsed, request_id)


class BodySizeLimitMiddleware:
    """Refuses bodies over `max_bytes` with 413, by Content-Length or while streaming, and
    oversized headers with 431."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        header_bytes = 0
        for name, value in headers:
            header_bytes += len(name) + len(value)
            if name == b"content-length" and (not value.isdigit() or int(value) > self.max_bytes):
                await error_response(self._too_large())(scope, receive, send)
                return
        if header_bytes > MAX_HEADER_BYTES or len(headers) > MAX_HEADERS:
            await error_response(RequestHeaderFieldsTooLarge(HEADERS_TOO_LARGE))(
                scope, receive, send
            )
            return
        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not response_started:
                await error_response(self._too_large())(scope, receive, send)

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(_BodyTooLarge(self.max_bytes).detail)


class _BodyTooLarge(HTTPException):
    """Raised while reading an oversized body; an HTTPException so the framework passes it on."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(
            413, f"The request body is larger than {max_bytes} bytes. Send a smaller body."
        )


async def read_body(request: Request, *, max_bytes: int, seconds: float) -> bytes:
    """The request's body: PayloadTooLarge past `max_bytes` (by Content-Length or as it
    streams), RequestTimeout when it has not all arrived within `seconds`.

    For a route that reads its body by hand and wants a tighter bound than the server's
    (MAX_BODY_BYTES, BODY_TIMEOUT_SECONDS): memory and time spent on a body stay bounded even
    under another HTTP server or in front of a slow proxy."""
    too_large = PayloadTooLarge(
        f"The request body is larger than {max_bytes} bytes. Send a smaller body."
    )
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(seconds):
            async for chunk in request.stream():
                size += len(chunk)
                if size > max_bytes:
                    raise too_large
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeout(
            f"The request body did not arrive within {seconds:g}s. Send the whole request at once."
        ) from None
    return b"".join(chunks)
