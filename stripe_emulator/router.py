"""A small method + path-template router (``/v1/customers/{id}``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .messages import Auth, Handler

_PARAM = re.compile(r"\{(\w+)\}")


@dataclass
class Route:
    method: str
    template: str
    handler: Handler
    auth: Auth
    pattern: re.Pattern[str]


class Router:
    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, template: str, handler: Handler, *, auth: Auth = "secret") -> None:
        regex = _PARAM.sub(
            r"(?P<\1>[^/]+)", re.escape(template).replace(r"\{", "{").replace(r"\}", "}")
        )
        self.routes.append(Route(method.upper(), template, handler, auth, re.compile(f"^{regex}$")))

    def get(self, template: str, handler: Handler, *, auth: Auth = "secret") -> None:
        self.add("GET", template, handler, auth=auth)

    def post(self, template: str, handler: Handler, *, auth: Auth = "secret") -> None:
        self.add("POST", template, handler, auth=auth)

    def delete(self, template: str, handler: Handler, *, auth: Auth = "secret") -> None:
        self.add("DELETE", template, handler, auth=auth)

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        for route in self.routes:
            if route.method != method:
                continue
            found = route.pattern.match(path)
            if found:
                return route, found.groupdict()
        return None
