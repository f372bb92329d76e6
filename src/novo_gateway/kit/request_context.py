"""What every request gets, whichever entry serves it (the app's middleware, http_middleware.py,
or the fast path): its id, its access-log line (secrets in the query redacted), the header limits.
"""

from __future__ import annotations

import logging
import os

from starlette.types import Scope

from novo_gateway.kit.credentials import redact_query

access_log = logging.getLogger("novo_gateway.access")


def new_request_id(scope: Scope) -> str:
    """The client's `X-Request-Id` when it is sane, else 32 random hex digits (as uuid4().hex)."""
    return _incoming_request_id(scope) or os.urandom(16).hex()


def log_request(scope: Scope, status: int, elapsed: float, request_id: str) -> None:
    """The access log line of a finished request (secrets in the query string redacted)."""
    query: bytes = scope.get("query_string", b"")
    path = scope["path"] + ("?" + redact_query(query).decode("latin-1") if query else "")
    access_log.info(
        "%s %s %d %.1fms",
        scope["method"],
        path,
        status,
        elapsed * 1000,
        extra={"request_id": request_id},
    )


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            text: str = value.decode("latin-1")
            if 0 < len(text) <= 64 and text.replace("-", "").isalnum():
                return text
    return None


# The HTTP server (uvicorn with httptools) sets no limit on headers; past these a request is
# refused before any work (key lookup, limits, billing) is done for it.
MAX_HEADER_BYTES = 32_768
MAX_HEADERS = 100
HEADERS_TOO_LARGE = (
    f"The request headers are too large (at most {MAX_HEADERS} headers and "
    f"{MAX_HEADER_BYTES} bytes). Send fewer or shorter headers."
)
