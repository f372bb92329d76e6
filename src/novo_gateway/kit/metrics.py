"""Prometheus metrics of the gateway, served at `GET /metrics`.

Labels are bounded: requests are labelled by route template (`/auth/api-keys/{key_id}`, a proxied
route's `/api/v1/search/*`), never by raw path, and unknown methods are folded into `OTHER`.

Paths no route matched (a call refused before routing, a 404) are labelled by the known paths and
the API prefix the app names at start-up (`name_paths`), else `unmatched`.

Other parts report through the small functions below: the usage writer calls
`usage_events_recorded(n)` after a commit, the metered path calls `rate_limited(bucket)` when it
refuses a call, and the proxy calls `upstream_error(kind)`.

Several worker processes (WORKERS > 1): each process would keep its own values, so a scrape would
see only the one that answered it. `serve` therefore turns on prometheus_client's multiprocess mode
by itself (`multiprocess_directory`): the workers write their values to files in a directory of
their own, emptied at start, and `/metrics` adds up every process's. Only counters and histograms
are defined, which multiprocess mode sums exactly; a gauge would need its `multiprocess_mode`.
One process (the default) keeps the in-memory registry.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final, Literal

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.types import Scope

UpstreamErrorKind = Literal["connect", "timeout", "pool", "stream"]

_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

HTTP_REQUESTS: Final = Counter(
    "novo_http_requests_total",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
)
HTTP_LATENCY: Final = Histogram(
    "novo_http_request_duration_seconds",
    "Time from receiving a request to the end of its response, by route template and status.",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
USAGE_EVENTS: Final = Counter(
    "novo_usage_events_recorded_total", "Usage events committed to the usage ledger."
)
RATE_LIMITED: Final = Counter(
    "novo_rate_limited_requests_total",
    "Requests refused by a rate limit, by limit (bucket).",
    ["bucket"],
)
UPSTREAM_ERRORS: Final = Counter(
    "novo_upstream_errors_total",
    "Upstream calls that failed: connect (502), timeout (504), pool (503), stream (cut off).",
    ["kind"],
)

USAGE_REPORTS: Final = Counter(
    "novo_usage_reports_total",
    "Usage reports to Stripe by outcome: sent, retried (429/5xx/network), dead (refused), expired.",
    ["outcome"],
)

# Known label values start at zero, so every series is visible before its first event.
for _bucket in ("ip", "account"):
    RATE_LIMITED.labels(_bucket)
for _kind in ("connect", "timeout", "pool", "stream"):
    UPSTREAM_ERRORS.labels(_kind)
for _outcome in ("sent", "retried", "dead", "expired"):
    USAGE_REPORTS.labels(_outcome)

# Set at start-up by `name_paths`: exact paths labelled as themselves, and the prefix whose other
# paths share one label (`<prefix>/*`).
_known_paths: frozenset[str] = frozenset()
_prefix: str | None = None

# Label children by (method, route, status): after the first request of a kind, recording is
# one dictionary read and two updates.
_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}


def route_label(scope: Scope) -> str:
    """The bounded route label of a finished request."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    state = scope.get("state")
    if state and (template := state.get("route_template")):
        return str(template)
    raw: str = scope.get("path", "")
    if raw in _known_paths:  # refused by the metered path before reaching the router
        return raw
    if _prefix is not None and raw.startswith(_prefix + "/"):
        return _prefix + "/*"
    return "unmatched"


def name_paths(prefix: str, known: frozenset[str]) -> None:
    """Label unrouted requests to `known` paths by their path, and others under `prefix` as one."""
    global _known_paths, _prefix
    _known_paths, _prefix = known, prefix


def observe_request(scope: Scope, status: int, seconds: float) -> None:
    """Count a finished HTTP request and its latency."""
    method = scope.get("method", "GET")
    if method not in _METHODS:
        method = "OTHER"
    key = (method, route_label(scope), status)
    pair = _children.get(key)
    if pair is None:
        labels = (key[0], key[1], str(status))
        pair = (HTTP_REQUESTS.labels(*labels), HTTP_LATENCY.labels(*labels))
        _children[key] = pair
    pair[0].inc()
    pair[1].observe(seconds)


def usage_events_recorded(count: int = 1) -> None:
    """Count usage events once they are committed."""
    if count > 0:
        USAGE_EVENTS.inc(count)


def rate_limited(bucket: str) -> None:
    """Count a request refused by a rate limit (`bucket`: a fixed name such as "account")."""
    RATE_LIMITED.labels(bucket).inc()


def upstream_error(kind: UpstreamErrorKind) -> None:
    """Count a failed upstream call."""
    UPSTREAM_ERRORS.labels(kind).inc()


def usage_reports(outcome: str, count: int) -> None:
    """Count usage reports by outcome (sent, retried, dead, expired)."""
    if count > 0:
        USAGE_REPORTS.labels(outcome).inc(count)


MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"


@contextmanager
def multiprocess_directory() -> Iterator[Path]:
    """Multiprocess mode for the worker processes started inside: PROMETHEUS_MULTIPROC_DIR set
    (to a new temporary directory, unless the operator named one) and emptied first."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):  # values of an earlier run's processes
            stale.unlink()
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="novo-metrics-") as directory:
        os.environ[MULTIPROC_ENV] = directory
        try:
            yield Path(directory)
        finally:
            del os.environ[MULTIPROC_ENV]


def render() -> tuple[bytes, str]:
    """The exposition text and its content type (all worker processes in multiprocess mode)."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
