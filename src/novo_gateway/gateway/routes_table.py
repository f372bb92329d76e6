"""Which metered paths go to an upstream HTTP service, and how many units a call there costs.

The table comes from settings:

* `ROUTES_FILE` (TOML, or JSON when the name ends in `.json`) lists routes:

      [[routes]]
      prefix = "/api/v1/search"           # required; under /api/v1, whole path segments
      upstream = "http://search:8080"     # optional when UPSTREAM_URL is set (then the default)
      units = 2                           # units billed per call (default 1)
      timeout_seconds = 5                 # optional; default UPSTREAM_TIMEOUT_SECONDS
      strip_prefix = false                # true: /api/v1/search/x is sent upstream as /x
      forward_headers = ["X_Tenant"]      # extra client headers let through (default none)
      security_headers = true             # false: no CSP or nosniff added to its answers
      content_security_policy = "sandbox" # the CSP added to its answers (default "sandbox")

  With a routes file, the file is the whole table. What `forward_headers`, `security_headers`
  and `content_security_policy` do is in forwarding.py; a `forward_headers` entry naming a
  header the gateway sets, a hop-by-hop header, `Authorization`, `X-API-Key` or `Cookie` is
  refused, as is a policy with a line break or non-ASCII characters.
* `UPSTREAM_URL` alone (no routes file) is a catch-all: every metered path that no built-in
  Novo endpoint serves goes there, at one unit per call.

Matching rule: the longest route prefix that equals the path or is followed in it by `/` wins
(`/api/v1/search` matches `/api/v1/search` and `/api/v1/search/x`, not `/api/v1/searches`). A route
from the routes file applies even where a built-in endpoint exists (that is how an operator moves
an endpoint upstream); the UPSTREAM_URL catch-all never takes a built-in endpoint's path.
`/api/v1/health` (free, no key) is always the built-in one. The request path is sent upstream as it
came (appended to the upstream URL's own path), minus the prefix when `strip_prefix` is set.

A file that cannot be read or parsed, or holds an invalid route, stops start-up with a message
naming the file and the field.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from novo_gateway.gateway.forwarding import SANDBOX, is_gateway_header
from novo_gateway.kit.config import Settings
from novo_gateway.novo_api.endpoints import API_PREFIX, BUILTIN_PATHS, UNITS_PER_CALL

HEALTH_PATH: Final = API_PREFIX + "/health"
_SEGMENT = re.compile(r"^[A-Za-z0-9._~!$&'()*+,;=:@-]+$")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 §5.6.2


class RoutesFileError(ValueError):
    """The routes file is missing, unreadable or invalid; the message names the file and field."""


@dataclass(frozen=True, slots=True)
class Route:
    """Where calls under `prefix` go and how they are billed."""

    prefix: str
    upstream: httpx.URL
    units: int = UNITS_PER_CALL
    timeout_seconds: float | None = None
    strip_prefix: bool = False
    # Lower-cased names of extra client headers forwarded (forwarding.py says which are not).
    forward_headers: frozenset[str] = frozenset()
    security_headers: bool = True
    content_security_policy: str = SANDBOX

    @property
    def label(self) -> str:
        """The route's name in the usage ledger, metrics and logs: `<prefix>/*`."""
        return f"{self.prefix}/*"


def upstream_url(value: str) -> httpx.URL:
    """An upstream base URL: http(s), a host, no query or fragment, no credentials."""
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL as exc:
        raise ValueError(f"not a valid URL ({exc})") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("must be an http:// or https:// URL with a host")
    if url.query or url.fragment or url.userinfo:
        raise ValueError("must not contain a query, a fragment or credentials")
    return url


class _RouteEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    prefix: str
    upstream: str | None = None
    units: Annotated[int, Field(ge=1, le=1_000_000)] = UNITS_PER_CALL
    timeout_seconds: Annotated[float, Field(gt=0, le=3600)] | None = None
    strip_prefix: bool = False
    forward_headers: list[str] = []
    security_headers: bool = True
    content_security_policy: Annotated[str, Field(min_length=1, max_length=1024)] | None = None

    @field_validator("forward_headers")
    @classmethod
    def _extra_headers(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _TOKEN.match(name):
                raise ValueError(f"{name!r} is not a header name")
            if is_gateway_header(name):
                raise ValueError(
                    f"{name} is set by the gateway, hop-by-hop or a credential: it is never "
                    "forwarded from the client"
                )
        return value

    @field_validator("content_security_policy")
    @classmethod
    def _header_value(cls, value: str | None) -> str | None:
        if value is not None and not (value.isascii() and value.isprintable()):
            raise ValueError("must be printable ASCII on one line")
        return value

    @model_validator(mode="after")
    def _policy_needs_headers(self) -> _RouteEntry:
        if self.content_security_policy is not None and not self.security_headers:
            raise ValueError("content_security_policy has no effect with security_headers = false")
        return self

    @field_validator("prefix")
    @classmethod
    def _valid_prefix(cls, value: str) -> str:
        prefix = value.rstrip("/") if value != "/" else value
        if prefix != API_PREFIX and not prefix.startswith(API_PREFIX + "/"):
            raise ValueError(f"must be {API_PREFIX} or start with {API_PREFIX}/ (the metered path)")
        segments = prefix.split("/")[1:]
        if any(not _SEGMENT.match(s) or s in (".", "..") for s in segments):
            raise ValueError("must be a plain path: no empty, '.', '..' or encoded segments")
        if prefix == HEALTH_PATH or prefix.startswith(HEALTH_PATH + "/"):
            raise ValueError(f"{HEALTH_PATH} is the gateway's own free health check")
        return prefix

    @field_validator("upstream")
    @classmethod
    def _valid_upstream(cls, value: str | None) -> str | None:
        if value is not None:
            upstream_url(value)
        return value


class _RoutesFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    routes: list[_RouteEntry]


def _field_path(loc: Iterable[int | str]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "(top level)"


def _parse(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise RoutesFileError(f"Routes file {path}: cannot be read ({reason}).") from None
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise RoutesFileError(f"Routes file {path}: not valid JSON ({exc}).") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RoutesFileError(f"Routes file {path}: not valid TOML ({exc}).") from None


def load_routes(path: Path, default_upstream: str = "") -> tuple[Route, ...]:
    """The routes of a routes file; `default_upstream` (UPSTREAM_URL) fills a missing `upstream`."""
    try:
        parsed = _RoutesFile.model_validate(_parse(path))
    except ValidationError as exc:
        first = exc.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        raise RoutesFileError(
            f"Routes file {path}: {_field_path(first['loc'])}: {message}."
        ) from None
    routes = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(parsed.routes):
        if entry.prefix in seen:
            raise RoutesFileError(
                f"Routes file {path}: routes[{index}].prefix: {entry.prefix} is already "
                f"routed by routes[{seen[entry.prefix]}]."
            )
        seen[entry.prefix] = index
        upstream = entry.upstream or default_upstream
        if not upstream:
            raise RoutesFileError(
                f"Routes file {path}: routes[{index}].upstream: required when UPSTREAM_URL "
                "is not set."
            )
        try:
            url = upstream_url(upstream)
        except ValueError as exc:  # only UPSTREAM_URL can still be invalid here
            raise RoutesFileError(f"UPSTREAM_URL: {exc}.") from None
        routes.append(
            Route(
                prefix=entry.prefix,
                upstream=url,
                units=entry.units,
                timeout_seconds=entry.timeout_seconds,
                strip_prefix=entry.strip_prefix,
                forward_headers=frozenset(name.lower() for name in entry.forward_headers),
                security_headers=entry.security_headers,
                content_security_policy=entry.content_security_policy or SANDBOX,
            )
        )
    return tuple(routes)


class RouteTable:
    """Precomputed prefix lookup: `match` is a few dictionary reads, no I/O."""

    def __init__(
        self,
        routes: Iterable[Route] = (),
        *,
        catch_all: Route | None = None,
        builtin_paths: frozenset[str] = BUILTIN_PATHS,
    ) -> None:
        self._by_prefix: Mapping[str, Route] = {route.prefix: route for route in routes}
        self._depth = max((p.count("/") for p in self._by_prefix), default=0)
        self._catch_all = catch_all
        self._builtin = builtin_paths

    @classmethod
    def from_settings(cls, settings: Settings) -> RouteTable:
        """The table for ROUTES_FILE and UPSTREAM_URL (see the module docstring)."""
        if settings.routes_file is not None:
            return cls(load_routes(settings.routes_file, settings.upstream_url))
        if settings.upstream_url:
            try:
                url = upstream_url(settings.upstream_url)
            except ValueError as exc:
                raise RoutesFileError(f"UPSTREAM_URL: {exc}.") from None
            return cls(catch_all=Route(prefix=API_PREFIX, upstream=url))
        return cls()

    @property
    def routes(self) -> tuple[Route, ...]:
        """Every route, the catch-all last."""
        catch_all = (self._catch_all,) if self._catch_all else ()
        return (*self._by_prefix.values(), *catch_all)

    def __bool__(self) -> bool:
        return bool(self._by_prefix) or self._catch_all is not None

    def match(self, path: str) -> Route | None:
        """The route for a request path, or None when the built-in endpoints serve it."""
        if path == HEALTH_PATH or not (path == API_PREFIX or path.startswith(API_PREFIX + "/")):
            return None
        trimmed = path.rstrip("/") or "/"
        if self._by_prefix:
            # Start at the deepest ancestor any prefix could equal, then walk up to the root.
            parts = trimmed.split("/", self._depth + 1)
            candidate = "/".join(parts[: self._depth + 1])
            while candidate:
                route = self._by_prefix.get(candidate)
                if route is not None:
                    return route
                candidate = candidate[: candidate.rfind("/")]
        if self._catch_all is not None and trimmed not in self._builtin:
            return self._catch_all
        return None
