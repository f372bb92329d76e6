"""API-key credentials: where a request carries its key, and a query string without it.

One rule set, used by the metered pipeline (the handler's query, the idempotency fingerprint),
the upstream proxy and the access log:

- the key is read from `Authorization: Bearer`, else `X-API-Key`, else the query parameter named
  exactly `api_key` (as documented);
- a query parameter is a key parameter when its name, percent-decoded (`+` as a space), stripped
  and case-folded, is `api_key`; parameters are separated by `&` or `;`. This is wider than what
  is read as a key, so a key never reaches a handler, an upstream or a log line in any spelling;
- `without_api_key` drops every key parameter and keeps the rest byte for byte as sent;
  `redact_query` keeps every parameter but replaces the value of a key, and of a password or
  token, for the logs.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import parse_qsl, unquote_to_bytes

from starlette.types import Scope

KEY_REQUIRED: Final = (
    "API key is required. Provide it via Authorization header (Bearer), X-API-Key header, "
    "or api_key query parameter."
)
KEY_INVALID: Final = "Invalid or inactive API key."

_KEY_PARAM: Final = b"api_key"
# Names whose values the access log never shows: a key, and anything ending in password or token.
_SECRET_NAME: Final = re.compile(rb"(api_key|password|token)$")
_REDACTED: Final = b"[REDACTED]"


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
    if _KEY_PARAM in query:
        for name, value in parse_qsl(query.decode("latin-1")):
            if name == "api_key" and value:
                return value
    return None


def without_api_key(query: bytes) -> bytes:
    """The query string minus every key parameter (any case or encoding), the rest as sent."""
    if not _may_hold_key(query):
        return query
    kept = []
    for part in query.split(b"&"):
        pieces = part.split(b";")
        others = [piece for piece in pieces if _param_name(piece) != _KEY_PARAM]
        if len(others) == len(pieces):
            kept.append(part)  # no key in it: as sent, empty parts included
        elif others:
            kept.append(b";".join(others))
    return b"&".join(kept)


def redact_query(query: bytes) -> bytes:
    """The query string with the value of every key, password or token replaced (for logs)."""
    if not query:
        return query
    parts = []
    for part in query.split(b"&"):
        pieces = []
        for piece in part.split(b";"):
            name, sep, _value = piece.partition(b"=")
            if sep and _SECRET_NAME.search(_param_name(name)):
                piece = name + sep + _REDACTED
            pieces.append(piece)
        parts.append(b";".join(pieces))
    return b"&".join(parts)


def _may_hold_key(query: bytes) -> bool:
    """False when no parameter of `query` can be a key parameter (the common, cheap case)."""
    return bool(query) and (_KEY_PARAM in query.lower() or b"%" in query)


def _param_name(piece: bytes) -> bytes:
    """A parameter's name as compared: percent-decoded (`+` a space), stripped, case-folded."""
    name = piece.split(b"=", 1)[0]
    if b"%" in name or b"+" in name:
        name = unquote_to_bytes(name.replace(b"+", b" "))
    return name.strip().lower()
