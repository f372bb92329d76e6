"""A local upstream for the proxy benchmark: a bare ASGI app answering a fixed JSON body.

    .venv/bin/uvicorn bench.upstream_app:app --no-access-log --port 8002

The gateway proxies `/api/v1/upstream/*` to it (ROUTES_FILE written by bench/core.py); the
harness also calls it directly, so the proxied figure is compared with the upstream alone.
"""

from __future__ import annotations

from bench.bare_app import app

__all__ = ["app"]
