"""The API's messages: the request a handler gets and the response it gives (shared by the
router, the handlers and the ASGI app)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from .state import EmulatorState

Auth = Literal["secret", "session", "none"]


@dataclass
class ApiRequest:
    method: str
    path: str
    params: dict[str, Any]
    headers: dict[str, str]
    request_id: str
    base_url: str
    path_params: dict[str, str] = field(default_factory=dict)
    api_key: str | None = None
    idempotency_key: str | None = None
    v2: bool = False

    def arg(self, name: str) -> str:
        return self.path_params[name]


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(status=status, body=orjson.dumps(data), headers=dict(headers or {}))


HandlerResult = dict[str, Any] | Response
Handler = Callable[[EmulatorState, ApiRequest], HandlerResult]
