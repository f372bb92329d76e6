"""The built-in endpoints' bodies, rendered without the framework's per-request work.

`GET /api/v1/health` and `GET /api/v1/insights` take no input, so routing, dependency solving and
response validation are pure overhead for them; on this machine FastAPI's share of such a request
was larger than the whole metered path (bench/README.md). The JSON `POST` endpoints take one body
model each: parsed and validated here with the same model, they need none of the framework's work
either, and a body the model refuses is handed to the framework so every error stays its own.
`gateway/fast_path.py` serves them with the bodies rendered here from the same endpoint table
(endpoints.py) the FastAPI routes are made from: every table entry without query parameters is
taken. The routes stay declared in FastAPI (OpenAPI, and the fallback for anything the fast path
does not take), and their `APIRoute` is put in the scope so usage and metrics name the route as
before.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import date, datetime
from typing import Any

import orjson
from fastapi.routing import APIRoute
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.routing import BaseRoute
from starlette.types import Scope

from novo_gateway.novo_api.endpoints import ENDPOINTS, Endpoint
from novo_gateway.novo_api.schemas import Meta

Render = Callable[[datetime, str], BaseModel]
Handle = Callable[[Any, datetime, Meta], BaseModel]


def _renderer(endpoint: Endpoint) -> Render:
    """The body of an endpoint without input, from its service call."""

    def render(now: datetime, request_id: str) -> BaseModel:
        return endpoint.handle(now, Meta(request_id=request_id, billed_units=endpoint.units))

    return render


# A stand-in request id: plain ASCII, so it is serialized as written and found again.
_ID_STAND_IN = "fastpathrequestidstandin"
_PLAIN_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
_DATETIME: TypeAdapter[datetime] = TypeAdapter(datetime)


class FastRoute:
    """One fast endpoint: its declared FastAPI route and how to render its body.

    The body is the route's model serialized by pydantic. Only the time and the request id change
    from one call to the next (within a day), so the serialized body is kept once a day as a
    template around those two values: a call serializes its time with pydantic and joins three
    pieces. A template is used only when it reproduces the model's bytes exactly (each stand-in
    found once) and the request id needs no JSON escaping; otherwise the model is serialized.
    """

    __slots__ = ("_template", "render", "route", "units")

    def __init__(self, route: APIRoute, render: Render, units: int) -> None:
        self.route = route
        self.render = render
        self.units = units  # units a metered call is billed (as the route's default)
        self._template: tuple[date, list[bytes] | None] | None = None

    def body(self, now: datetime, request_id: str) -> bytes:
        if _PLAIN_ID.fullmatch(request_id):
            template = self._template_for(now)
            if template is not None:
                time_json = _DATETIME.dump_json(now)
                head, middle, tail = template
                return b"".join((head, time_json, middle, request_id.encode(), tail))
        return self._serialize(now, request_id)

    def _serialize(self, now: datetime, request_id: str) -> bytes:
        model = self.render(now, request_id)
        return model.__pydantic_serializer__.to_json(model, by_alias=True)

    def _template_for(self, now: datetime) -> list[bytes] | None:
        day = now.date()
        if self._template is None or self._template[0] != day:
            self._template = (day, _split(self._serialize(now, _ID_STAND_IN), now))
        return self._template[1]


def _split(body: bytes, now: datetime) -> list[bytes] | None:
    """`[head, middle, tail]` around the time and the stand-in id (None unless both found once)."""
    time_json, id_text = _DATETIME.dump_json(now), _ID_STAND_IN.encode()
    if body.count(time_json) != 1 or body.count(id_text) != 1:
        return None
    head, rest = body.split(time_json)
    if id_text not in rest:  # the id comes first: not the shape of our responses
        return None
    middle, tail = rest.split(id_text)
    return [head, middle, tail]


class FastPost:
    """One fast JSON `POST` endpoint: its declared route, its body model and its service call."""

    __slots__ = ("handle", "model", "route", "units")

    def __init__(self, route: APIRoute, model: type[BaseModel], handle: Handle, units: int) -> None:
        self.route = route
        self.model = model
        self.handle = handle
        self.units = units

    def parse(self, raw: bytes) -> BaseModel | None:
        """The validated body, or None when the framework must answer (its error, its words).

        The model validates the parsed JSON as FastAPI does (Python mode). orjson refuses a few
        documents Python's `json` takes (NaN, integers past 64 bits): those go to FastAPI too.
        """
        try:
            return self.model.model_validate(orjson.loads(raw))
        except (orjson.JSONDecodeError, ValidationError):
            return None

    def body(self, parsed: BaseModel, now: datetime, request_id: str) -> bytes:
        model = self.handle(parsed, now, Meta(request_id=request_id, billed_units=self.units))
        return model.__pydantic_serializer__.to_json(model, by_alias=True)


class FastRoutes:
    """Exact paths served directly (`GET` and JSON `POST`); `match` is one dictionary read."""

    def __init__(self, routes: Iterable[BaseRoute]) -> None:
        self._get: dict[str, FastRoute] = {}
        self._post: dict[str, FastPost] = {}
        table: dict[tuple[str, str], Endpoint] = {
            (e.full_path, e.method): e for e in ENDPOINTS if e.fast
        }
        for route in routes:
            if not isinstance(route, APIRoute):
                continue
            for method in route.methods or ():
                endpoint = table.get((route.path, method))
                if endpoint is None:
                    continue
                if endpoint.body is None:
                    self._get[route.path] = FastRoute(route, _renderer(endpoint), endpoint.units)
                else:
                    self._post[route.path] = FastPost(
                        route, endpoint.body, endpoint.handle, endpoint.units
                    )

    @property
    def paths(self) -> frozenset[str]:
        return frozenset(self._get) | frozenset(self._post)

    def match(self, scope: Scope) -> FastRoute | FastPost | None:
        """The fast endpoint for this request, or None to let the framework route it."""
        if scope.get("root_path"):
            return None
        method = scope["method"]
        if method == "GET":
            return self._get.get(scope["path"])
        if method == "POST":
            return self._post.get(scope["path"])
        return None
