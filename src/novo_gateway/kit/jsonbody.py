"""Parsing a JSON request body without letting a hostile document crash the request.

Python's parser recurses once per nesting level: a few kilobytes of `[[[[...` raise
`RecursionError`, which is not a `ValueError`, so `except ValueError` misses it and the request
becomes a 500 with a traceback. Here nesting deeper than MAX_DEPTH is a `ValueError` like any
other malformed document (callers answer 400). FastAPI's own body parsing already answers 400
for it; this is for the places that read a body by hand.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

# Deeper than any document the API takes (its deepest body is two levels) and far below the
# interpreter's recursion limit, whatever the stack already holds when the body is parsed.
MAX_DEPTH: Final = 64
TOO_DEEP: Final = (
    f"The JSON body is nested deeper than {MAX_DEPTH} levels. Send a flatter document."
)


_STRING: Final = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS: Final = bytes(b for b in range(256) if b not in b"[]{}")


class JSONTooDeep(ValueError):
    """A JSON document nested deeper than MAX_DEPTH."""


def loads(data: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """`json.loads`, refusing (ValueError) documents nested deeper than `max_depth`."""
    raw = data.encode() if isinstance(data, str) else data
    # Counted in C: a document with fewer brackets than the limit cannot be nested past it,
    # and every body the API takes is in this case.
    if raw.count(b"[") + raw.count(b"{") > max_depth:
        _check_depth(raw, max_depth)
    try:
        return json.loads(raw)
    except RecursionError:  # only reachable with a max_depth near the recursion limit
        raise JSONTooDeep(f"JSON nested deeper than {max_depth} levels") from None


def _check_depth(raw: bytes, max_depth: int) -> None:
    """Peel one level of empty `[]`/`{}` pairs at a time, in C; past the limit, refuse."""
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    too_deep = re.compile(rb"[\[{]{%d}" % (max_depth + 1))
    for _ in range(max_depth):
        if too_deep.search(brackets):  # a run of openers alone says it (the usual attack)
            break
        peeled = brackets.replace(b"[]", b"").replace(b"{}", b"")
        if not peeled or peeled == brackets:  # all matched, or unbalanced (json says why)
            return
        brackets = peeled
    raise JSONTooDeep(f"JSON nested deeper than {max_depth} levels")
