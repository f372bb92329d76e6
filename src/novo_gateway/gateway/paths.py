"""Request paths as the proxy sees them: dot segments in any spelling, and the raw path.

An upstream resolves the path it is sent in its own way: Tomcat drops `;` parameters from each
segment (`..;` is `..`), IIS and other Windows servers take `\\` as a separator and decode
`%uXXXX`, some servers decode a path twice, and Python frameworks may apply Unicode
normalization (two fullwidth stops, U+FF0E, are `..` under NFKC). A `..` that any of them sees
climbs above the route's prefix. So before routing, a copy of the raw path is decoded round by
round (at most `_MAX_DECODINGS` times) and each round is read the way those servers read it; a
segment that is only dots and spaces (after cutting `;` parameters, a decoded `?` or `#`, or a
NUL) in any round refuses the call. RFC 3986 §5.2.4 resolves `.` and `..` segments; with every
reading of them refused, a path that passes has nothing to resolve, and is forwarded as the
client sent it, never rebuilt from a decoded copy.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final
from urllib.parse import unquote_to_bytes

from starlette.types import Scope

DOT_SEGMENT_REFUSED: Final = (
    "The path may not contain '.' or '..' segments, in any spelling "
    "(encoded, with ';' parameters or with backslashes)."
)
# Decodings tried: a path still changing after this many is refused as well (no server decodes
# that deep, but such a path is not one a client needs).
_MAX_DECODINGS: Final = 3
_ESCAPE: Final = re.compile(rb"%(?:([0-9A-Fa-f]{2})|[uU]([0-9A-Fa-f]{4}))")
_SEGMENT_END: Final = re.compile(r"[;?#\x00]")  # what ends a segment's name for some server
# UTF-8 overlong forms of '.' that lenient decoders (old IIS) read as a dot.
_OVERLONG_DOTS: Final = (b"\xc0\xae", b"\xe0\x80\xae")


def raw_path(scope: Scope) -> bytes:
    """The path as the client sent it (ASGI `raw_path`), without a query."""
    raw: bytes | None = scope.get("raw_path")
    if raw is None:
        path: str = scope["path"]
        return path.encode("utf-8")
    return raw.split(b"?", 1)[0]


def has_dot_segment(raw: bytes) -> bool:
    """True when any reading of the raw path holds a `.` or `..` segment (module docstring)."""
    if b"." not in raw and b"%" not in raw and raw.isascii():
        return False  # no dot can hide in it: the common case costs three scans
    text = raw
    for _ in range(_MAX_DECODINGS):
        if _dots_in(text):
            return True
        decoded = _ESCAPE.sub(_unescape, text)
        if decoded == text:
            return False
        text = decoded
    return _dots_in(text) or _ESCAPE.search(text) is not None


def strip_prefix(raw: bytes, prefix: str) -> bytes | None:
    """The raw path minus `prefix`, the rest byte for byte; None when it cannot be split.

    The prefix is compared segment by segment with decoded copies of the raw segments, so a
    client that percent-encodes part of it (`/api/v1/searc%68/x`) is still routed, and what
    follows stays as the client sent it (`/x%3Fadmin=1` never becomes `/x?admin=1`). None when
    the prefix would end inside an encoded segment (`/api/v1/search%2Fx`).
    """
    consumed = 0
    seen = ""
    for segment in raw.split(b"/")[1:]:
        if len(seen) >= len(prefix):
            break
        seen += "/" + unquote_to_bytes(segment).decode("utf-8", "replace")
        consumed += 1 + len(segment)
    if seen != prefix:
        return None
    rest = raw[consumed:]
    return rest if rest.startswith(b"/") else b"/" + rest


def _unescape(match: re.Match[bytes]) -> bytes:
    if match[1] is not None:
        return bytes([int(match[1], 16)])
    return chr(int(match[2], 16)).encode("utf-8", "surrogatepass")  # IIS's %uXXXX


def _dots_in(raw: bytes) -> bool:
    if b"." not in raw and raw.isascii():
        return False
    for overlong in _OVERLONG_DOTS:
        raw = raw.replace(overlong, b".")
    text = raw.decode("utf-8", "replace")
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    for segment in text.replace("\\", "/").split("/"):
        if not segment or segment[0] not in ". \t":
            continue  # a name of dots and spaces starts with one
        name = _SEGMENT_END.split(segment, 1)[0]
        # Windows drops trailing dots and spaces from a name: '.. .' is '..' there.
        if "." in name and name.strip(". \t") == "":
            return True
    return False
