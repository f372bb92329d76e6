"""The dashboards on an origin of their own (DASHBOARD_HOST).

A cookie's `Path` does not keep a same-origin script away from `/dashboard`, so proxied answers
carry a CSP sandbox (gateway/forwarding.py); a separate host is the second wall. With
`DASHBOARD_HOST=dash.example.com`, requests are told apart by their `Host` header (the reverse
proxy in front must pass the client's, as nginx's `proxy_set_header Host $host` does):

* on the dashboard host, only the pages answer: `/dashboard`, `/admin`, `/docs`, `/redoc`,
  plus what they load (`/static`, `/openapi.json`) and `/health`; anything else, the metered
  API and every proxied route included, is 404;
* on any other host, `/dashboard`, `/admin`, `/docs` and `/redoc` are 404, naming the host
  that serves them; the rest is served as before.

The host is compared case-insensitively, and without the port unless DASHBOARD_HOST names one.
"""

from __future__ import annotations

from typing import Final

from starlette.types import ASGIApp, Receive, Scope, Send

from novo_gateway.errors import NotFound, error_response

PAGE_PREFIXES: Final = ("/dashboard", "/admin", "/docs", "/redoc")
SHARED_PREFIXES: Final = ("/static", "/openapi.json", "/health")


def _under(path: str, prefixes: tuple[str, ...]) -> bool:
    return any(path == p or path.startswith(p + "/") for p in prefixes)


class HostSplit:
    """Decides which host may serve a request's path."""

    def __init__(self, dashboard_host: str) -> None:
        self.dashboard_host = dashboard_host
        self._with_port = dashboard_host.rsplit("]", 1)[-1].count(":") == 1

    def _host(self, scope: Scope) -> str:
        for name, value in scope["headers"]:
            if name == b"host":
                host: str = value.decode("latin-1").strip().lower()
                if not self._with_port:
                    host = host.rsplit(":", 1)[0] if not host.endswith("]") else host
                return host.rstrip(".")
        return ""

    def refusal(self, scope: Scope) -> NotFound | None:
        """The 404 for a path this request's host does not serve; None when it does."""
        if scope["type"] != "http":
            return None
        path: str = scope["path"]
        page = _under(path, PAGE_PREFIXES)
        if self._host(scope) == self.dashboard_host:
            if page or _under(path, SHARED_PREFIXES):
                return None
            return NotFound("This address serves the dashboards only; call the API at its own.")
        if page:
            return NotFound(f"This page is served at {self.dashboard_host}.")
        return None


class HostSplitMiddleware:
    """Answers 404 for a path the request's host does not serve (see HostSplit)."""

    def __init__(self, app: ASGIApp, *, split: HostSplit) -> None:
        self.app = app
        self.split = split

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = self.split.refusal(scope)
        if refusal is not None:
            await error_response(refusal)(scope, receive, send)
            return
        await self.app(scope, receive, send)
