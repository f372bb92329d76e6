"""The built-in Novo API under /api/v1: FastAPI routes derived from the endpoint table.

The metered pipeline (gateway/pipeline.py) authenticates, rate-limits and records every call here
except `/api/v1/health`, which is free and needs no key. Handlers touch no database.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from inspect import Parameter, Signature
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from novo_gateway.kit.clock import Clock
from novo_gateway.kit.deps import ClockDep
from novo_gateway.kit.errors import (
    BadRequest,
    Conflict,
    PayloadTooLarge,
    PaymentRequired,
    RateLimitExceeded,
    Unauthorized,
    UnprocessableContent,
    error_responses,
)
from novo_gateway.novo_api.endpoints import API_PREFIX, ENDPOINTS, Endpoint
from novo_gateway.novo_api.schemas import Meta

router = APIRouter(prefix=API_PREFIX, tags=["Novo API"])

# 409 and 422 answer a misused Idempotency-Key (gateway/idempotency.py).
_METERED_GET = error_responses(
    BadRequest, Unauthorized, PaymentRequired, Conflict, UnprocessableContent, RateLimitExceeded
)
_METERED_POST = error_responses(
    BadRequest,
    Unauthorized,
    PaymentRequired,
    Conflict,
    PayloadTooLarge,
    UnprocessableContent,
    RateLimitExceeded,
)

_BASE_PARAMETERS = (
    Parameter("request", Parameter.POSITIONAL_OR_KEYWORD, annotation=Request),
    Parameter("clock", Parameter.POSITIONAL_OR_KEYWORD, annotation=ClockDep),
)


def _handler(endpoint: Endpoint) -> Callable[..., Awaitable[BaseModel]]:
    """The route's handler: the endpoint's inputs, the time and the `meta` block to its service
    call. The request id is the one RequestContextMiddleware set."""
    names = [p.name for p in endpoint.query] or (["body"] if endpoint.body is not None else [])

    async def handler(request: Request, clock: Clock, **inputs: Any) -> BaseModel:
        meta = Meta(
            request_id=getattr(request.state, "request_id", ""), billed_units=endpoint.units
        )
        args = [inputs[name] for name in names]
        return endpoint.handle(*args, clock.now(), meta)

    parameters = list(_BASE_PARAMETERS)
    if endpoint.body is not None:
        parameters.insert(
            0, Parameter("body", Parameter.POSITIONAL_OR_KEYWORD, annotation=endpoint.body)
        )
    parameters += endpoint.query
    handler.__signature__ = Signature(parameters, return_annotation=endpoint.response)  # type: ignore[attr-defined]
    handler.__name__ = handler.__qualname__ = endpoint.name
    return handler


for _endpoint in ENDPOINTS:
    _responses = {} if _endpoint.free else (_METERED_POST if _endpoint.body else _METERED_GET)
    router.add_api_route(
        _endpoint.path,
        _handler(_endpoint),
        methods=[_endpoint.method],
        summary=_endpoint.summary,
        responses=_responses,
    )
