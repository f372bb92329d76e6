"""The dashboards on an origin of their own (DASHBOARD_HOST).

A cookie's `Path` does not keep a same-origin script away from `/dashboard`, so proxied answers
carry a CSP sandbox (gateway/forwarding.py); a separate host is the second wall. With
`DASHBOARD_HOST=dash.example.com`, requests are told apart by their `Host` header (the reverse
proxy in front must pass the client's, as nginx's `proxy_set_header Host $host` does):

* on the dashboard host, only the pages answer: `/dashboard`, `/admin`, `/docs`, `/redoc`,
  plus what they load (`/static`, `/openapi.json`) and `/health`; anything else, the metered
  API and every proxied route included, is 404, except that a `GET` of the home page `/` (the
  pages link to it) is redirected to PUBLIC_URL when that is set;
* on any other host, a `GET` or `HEAD` of `/dashboard`, `/admin`, `/docs` or `/redoc` (the home
  page links to them) is redirected to the dashboard host, with the scheme of PUBLIC_URL
  (else the request's); any other method there is 404, naming the host; the rest is served
  as before.

The host is compared case-insensitively, and without the port unless DASHBOARD_HOST names one.
"""

from __future__ import annotations

from typing import Final

from starlette.responses import RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from novo_gateway.kit.errors import NotFound, error_response

PAGE_PREFIXES: Final = ("/dashboard", "/admin", "/docs", "/redoc")
SHARED_PREFIXES: Final = ("/static", "/openapi.json", "/health")


def _under(path: str, prefixes: tuple[str, ...]) -> bool:
    return any(path == p or path.startswith(p + "/") for p in prefixes)


class HostSplit:
    """Decides which host may serve a request's path."""

    def __init__(self, dashboard_host: str, public_url: str = "") -> None:
        self.dashboard_host = dashboard_host
        self._with_port = dashboard_host.rsplit("]", 1)[-1].count(":") == 1
        self._public_url = public_url.rstrip("/")
        self._scheme = public_url.split("://", 1)[0].lower() if "://" in public_url else ""

    def _host(self, scope: Scope) -> str:
        for name, value in scope["headers"]:
            if name == b"host":
                host: str = value.decode("latin-1").strip().lower()
                if not self._with_port:
                    host = host.rsplit(":", 1)[0] if not host.endswith("]") else host
                return host.rstrip(".")
        return ""

    def refusal(self, scope: Scope) -> NotFound | RedirectResponse | None:
        """The 404 (or, for a page link, the redirect) for a path this request's host does not
        serve; None when it serves it."""
        if scope["type"] != "http":
            return None
        path: str = scope["path"]
        page = _under(path, PAGE_PREFIXES)
        reading = scope["method"] in ("GET", "HEAD")
        if self._host(scope) == self.dashboard_host:
            if page or _under(path, SHARED_PREFIXES):
                return None
            if path == "/" and reading and self._public_url:
                return RedirectResponse(self._public_url + "/", status_code=302)
            return NotFound("This address serves the dashboards only; call the API at its own.")
        if not page:
            return None
        if reading:
            scheme = self._scheme or scope.get("scheme", "http")
            query = scope.get("query_string", b"").decode("latin-1")
            target = f"{scheme}://{self.dashboard_host}{path}" + (f"?{query}" if query else "")
            return RedirectResponse(target, status_code=302)
        return NotFound(f"This page is served at {self.dashboard_host}.")


class HostSplitMiddleware:
    """Answers 404 for a path the request's host does not serve (see HostSplit)."""

    def __init__(self, app: ASGIApp, *, split: HostSplit) -> None:
        self.app = app
        self.split = split

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = self.split.refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send)
        elif isinstance(refusal, NotFound):
            await error_response(refusal)(scope, receive, send)
        else:
            await refusal(scope, receive, send)
