"""Turns every exception the framework can raise into the one error shape; no stack trace leaks."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, Response
from starlette.routing import Match

from novo_gateway.connection_guard import CUT_OFF
from novo_gateway.gateway.pipeline import limit_headers_of
from novo_gateway.kit.errors import (
    BadRequest,
    GatewayError,
    NotFound,
    PayloadTooLarge,
    RequestTimeout,
    ServiceUnavailable,
    error_response,
)

log = logging.getLogger("novo_gateway.errors")

_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")
_TITLES = {
    400: "Bad Request",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    415: "Unsupported Media Type",
}


def _field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def describe_validation(errors: list[dict[str, Any]]) -> tuple[str, list[dict[str, str]]]:
    """A sentence naming the first bad field, and every problem as {field, message}."""
    details = []
    for err in errors:
        if err.get("type") == "json_invalid":
            return "The request body is not valid JSON.", [{"field": "body", "message": "invalid"}]
        details.append({"field": _field_name(err.get("loc", ())), "message": str(err.get("msg"))})
    if not details:
        return "The request is invalid.", details
    first = details[0]
    return f"Invalid field '{first['field']}': {first['message']}.", details


async def _on_gateway_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return error_response(exc)


async def _on_validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    message, details = describe_validation(list(exc.errors()))
    return error_response(BadRequest(message, details=details))


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        err: GatewayError = NotFound(
            f"The endpoint {request.method} {request.url.path} does not exist"
        )
        return error_response(err)
    if exc.status_code == 413:
        return error_response(PayloadTooLarge(str(exc.detail)))
    title = _TITLES.get(exc.status_code, "Error")
    body = {"error": title, "message": str(exc.detail)}
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request)
    return JSONResponse(body, status_code=exc.status_code, headers=headers)


def _allowed_methods(request: Request) -> str:
    """Every method some route serves on this path (the router names only one route's)."""
    routes = request.app.router.routes
    allowed = [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes
        )
    ]
    return ", ".join(allowed)


DATABASE_UNAVAILABLE = "The database is unavailable right now. Please retry shortly."
# SQLSTATE classes of an unreachable server: connection exceptions, and shutdown/starting up.
_UNAVAILABLE_SQLSTATES = ("08", "57P")


def database_unreachable(exc: BaseException) -> bool:
    """True for a lost or refused database connection (a restart, a failover), not a bad query."""
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeout | ConnectionError):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    # The driver's own error, e.g. asyncpg's CannotConnectNowError (57P03, shutting down).
    cause: BaseException | None = exc.orig
    for _ in range(5):
        if cause is None:
            return False
        if isinstance(cause, ConnectionError):
            return True
        state = getattr(cause, "sqlstate", None)
        if isinstance(state, str) and state.startswith(_UNAVAILABLE_SQLSTATES):
            return True
        cause = cause.__cause__
    return False


async def _on_database_error(request: Request, exc: Exception) -> Response:
    """A database outage is a 503 the client may retry; any other database error is a bug."""
    if not database_unreachable(exc):
        return await _on_unexpected(request, exc)
    log.warning(
        "database unavailable on %s %s: %s", request.method, request.url.path, type(exc).__name__
    )
    return error_response(ServiceUnavailable(DATABASE_UNAVAILABLE, headers={"Retry-After": "1"}))


async def _on_client_gone(request: Request, exc: Exception) -> Response:
    """The client left (or was cut off past a read deadline) before its body was read: nobody
    will read this answer, and it is no error of ours. Answered (for the access log) with the
    status the client was sent when the server cut it off."""
    log.info("client disconnected before sending its body: %s %s", request.method, request.url.path)
    if request.scope.get("state", {}).get(CUT_OFF) == RequestTimeout.status_code:
        return error_response(RequestTimeout("The request body did not arrive in time."))
    return error_response(BadRequest("The request body was not received."))


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    # A metered call's limit headers, as on its every other answer (gateway/pipeline.py).
    headers = limit_headers_of(request.scope)
    err = GatewayError("Something went wrong on our side. Please try again later.", headers=headers)
    return error_response(err)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(GatewayError, _on_gateway_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(ClientDisconnect, _on_client_gone)
    for database_error in (DBAPIError, PoolTimeout, ConnectionError):
        app.add_exception_handler(database_error, _on_database_error)
    app.add_exception_handler(Exception, _on_unexpected)
