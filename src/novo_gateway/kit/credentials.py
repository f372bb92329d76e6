"""API-key credentials: where a request carries its key, and the query string without it."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

from starlette.types import Scope

KEY_REQUIRED = (
    "API key is required. Provide it via Authorization header (Bearer), X-API-Key header, "
    "or api_key query parameter."
)
KEY_INVALID = "Invalid or inactive API key."


def extract_api_key(scope: Scope) -> str | None:
    """The API key from `Authorization: Bearer`, else `X-API-Key`, else `?api_key=`."""
    bearer: str | None = None
    header_key: str | None = None
    for name, value in scope["headers"]:
        if name == b"authorization" and bearer is None:
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                bearer = token.strip()
        elif name == b"x-api-key" and header_key is None:
            header_key = value.decode("latin-1").strip() or None
    if bearer is not None:
        return bearer
    if header_key is not None:
        return header_key
    query: bytes = scope.get("query_string", b"")
    if b"api_key" in query:
        for name, value in parse_qsl(query.decode("latin-1")):
            if name == "api_key" and value:
                return value
    return None


def without_api_key(query: bytes) -> bytes:
    """The query string without `api_key`, so the key never reaches handlers or upstreams."""
    if b"api_key" not in query:
        return query
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    return urlencode([(k, v) for k, v in pairs if k != "api_key"]).encode("latin-1")
