"""The built-in GET endpoints' bodies, rendered without the framework's per-request work.

`GET /api/v1/health` and `GET /api/v1/insights` take no input, so routing, dependency solving and
response validation are pure overhead for them; on this machine FastAPI's share of such a request
was larger than the whole metered path (bench/README.md). `gateway/fast_path.py` serves them with
the bodies rendered here from the same service functions and schemas the FastAPI routes use. The
routes stay declared in FastAPI (OpenAPI, and the fallback for anything the fast path does not
take), and their `APIRoute` is put in the scope so usage and metrics name the route as before.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import date, datetime

from fastapi.routing import APIRoute
from pydantic import BaseModel, TypeAdapter
from starlette.routing import BaseRoute
from starlette.types import Scope

from novo_gateway.novo_api import service
from novo_gateway.novo_api.schemas import Meta

Render = Callable[[datetime, str], BaseModel]

# path → how to answer it (the service call of the FastAPI handler of the same path).
_RENDERERS: dict[str, Render] = {
    service.API_PREFIX + "/health": lambda now, request_id: service.health(
        now, Meta(request_id=request_id, billed_units=0)
    ),
    service.API_PREFIX + "/insights": lambda now, request_id: service.insights(
        now, Meta(request_id=request_id, billed_units=service.UNITS_PER_CALL)
    ),
}


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


class FastRoutes:
    """Exact `GET` paths served directly; `match` is one dictionary read."""

    def __init__(self, routes: Iterable[BaseRoute]) -> None:
        self._by_path: dict[str, FastRoute] = {}
        for route in routes:
            render = _RENDERERS.get(getattr(route, "path", ""))
            methods = getattr(route, "methods", None) or ()
            if isinstance(route, APIRoute) and render is not None and "GET" in methods:
                self._by_path[route.path] = FastRoute(route, render, service.UNITS_PER_CALL)

    @property
    def paths(self) -> frozenset[str]:
        return frozenset(self._by_path)

    def match(self, scope: Scope) -> FastRoute | None:
        """The fast endpoint for this request, or None to let the framework route it."""
        if scope["method"] != "GET" or scope.get("root_path"):
            return None
        return self._by_path.get(scope["path"])
