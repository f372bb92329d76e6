"""One error shape for the whole API: `{"error": "<title>", "message": "<what to do>"}`.

Services raise a subclass of `GatewayError`; one renderer turns it, framework errors and validation
errors into that shape. Nothing else builds error bodies.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel
from starlette.responses import JSONResponse


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: str
    message: str


class GatewayError(Exception):
    """Base of every error the API shows to a client."""

    status_code: ClassVar[int] = 500
    title: ClassVar[str] = "Internal Server Error"

    def __init__(
        self,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": self.title, "message": self.message, **self.extra}


class BadRequest(GatewayError):
    status_code = 400
    title = "Bad Request"


class Unauthorized(GatewayError):
    status_code = 401
    title = "Unauthorized"


class PaymentRequired(GatewayError):
    status_code = 402
    title = "Payment Required"


class Forbidden(GatewayError):
    status_code = 403
    title = "Forbidden"


class NotFound(GatewayError):
    status_code = 404
    title = "Not Found"


class RequestTimeout(GatewayError):
    status_code = 408
    title = "Request Timeout"


class Conflict(GatewayError):
    status_code = 409
    title = "Conflict"


class PayloadTooLarge(GatewayError):
    status_code = 413
    title = "Payload Too Large"


class UnprocessableContent(GatewayError):
    status_code = 422
    title = "Unprocessable Content"


class RequestHeaderFieldsTooLarge(GatewayError):
    status_code = 431
    title = "Request Header Fields Too Large"


class RateLimitExceeded(GatewayError):
    """A per-minute request limit used up: the metered API's, the account endpoints' or the
    sign-in one (the limiter's limits, announced in advance by their headers)."""

    status_code = 429
    title = "Rate Limit Exceeded"


class Throttled(GatewayError):
    """A guard against guessing or overload refused the request: too many sign-in or token
    guesses, connections from one client, or usage reads at once (with `Retry-After`)."""

    status_code = 429
    title = "Too Many Requests"


class BadGateway(GatewayError):
    status_code = 502
    title = "Bad Gateway"


class ServiceUnavailable(GatewayError):
    status_code = 503
    title = "Service Unavailable"


class GatewayTimeout(GatewayError):
    status_code = 504
    title = "Gateway Timeout"


def error_responses(*errors: type[GatewayError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for a route, so the document declares each error it can give."""
    return {err.status_code: {"model": ErrorBody, "description": err.title} for err in errors}


def error_response(err: GatewayError) -> JSONResponse:
    """The HTTP response for an error; also usable as an ASGI app by pure-ASGI middleware."""
    return JSONResponse(err.body(), status_code=err.status_code, headers=err.headers)
