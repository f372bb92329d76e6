"""Turning stored objects into responses: ``expand[]``, includable fields and list pages."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .errors import StripeError, param_error
from .store import clone

Resolver = Callable[[str], dict[str, Any] | None]

_KEEP = "__keep__"
#: Fields Stripe only includes when asked for with ``expand[]`` (per object type).
INCLUDABLE: dict[str, tuple[str, ...]] = {"price": ("tiers",)}
_NOT_EXPANDABLE = {"id", "object"}
#: String fields that hold something other than an object id.
_NOT_EXPANDABLE_IDS = {
    "url",
    "identifier",
    "event_name",
    "lookup_key",
    "email",
    "name",
    "description",
    "status",
    "currency",
    "type",
    "number",
    "secret",
    "return_url",
    "hosted_invoice_url",
    "invoice_pdf",
}


def present(obj: dict[str, Any], expand: Sequence[str] | None, resolve: Resolver) -> dict[str, Any]:
    """A deep copy of ``obj`` with ``expand`` paths expanded and includable fields hidden."""
    out: dict[str, Any] = clone(obj)
    for path in expand or ():
        _expand(out, path.split("."), path, resolve)
    _strip(out)
    return out


def _expand(node: Any, parts: list[str], path: str, resolve: Resolver) -> None:
    if not parts or not isinstance(node, dict):
        return
    field, rest = parts[0], parts[1:]
    if field in INCLUDABLE.get(str(node.get("object")), ()):
        node.setdefault(_KEEP, []).append(field)
        return
    if field not in node or field in _NOT_EXPANDABLE:
        raise _cannot(path)
    value = node[field]
    if isinstance(value, str):
        if field in _NOT_EXPANDABLE_IDS:
            raise _cannot(path)
        target = resolve(value)
        if target is None:
            return
        node[field] = value = clone(target)
    if value is None:
        return
    if isinstance(value, dict) and value.get("object") == "list" and rest[:1] == ["data"]:
        for item in value.get("data", []):
            _expand(item, rest[1:], path, resolve)
        return
    if isinstance(value, dict):
        _expand(value, rest, path, resolve)
        return
    if isinstance(value, list):
        for item in value:
            _expand(item, rest, path, resolve)
        return
    raise _cannot(path)


def _cannot(path: str) -> StripeError:
    return param_error(f"This property cannot be expanded ({path}).", param="expand")


def _strip(node: Any) -> None:
    if isinstance(node, dict):
        keep = node.pop(_KEEP, ())
        fields = INCLUDABLE.get(str(node["object"]), ()) if "object" in node else ()
        for field in fields:
            if field not in keep:
                node.pop(field, None)
        for value in node.values():
            if isinstance(value, dict | list):
                _strip(value)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, dict | list):
                _strip(item)


def list_page(
    items: Sequence[dict[str, Any]],
    *,
    url: str,
    params: dict[str, Any],
    resolve: Resolver,
    kind_name: str = "object",
) -> dict[str, Any]:
    """One page of ``items`` (already in list order, newest first) with Stripe's cursors."""
    limit = int(params.get("limit") or 10)
    after, before = params.get("starting_after"), params.get("ending_before")
    ids = [item["id"] for item in items]
    if after is not None:
        if after not in ids:
            raise StripeError(
                400,
                f"No such {kind_name}: '{after}'",
                code="resource_missing",
                param="starting_after",
            )
        start = ids.index(after) + 1
        page, has_more = items[start : start + limit], start + limit < len(items)
    elif before is not None:
        if before not in ids:
            raise StripeError(
                400,
                f"No such {kind_name}: '{before}'",
                code="resource_missing",
                param="ending_before",
            )
        end = ids.index(before)
        start = max(0, end - limit)
        page, has_more = items[start:end], start > 0
    else:
        page, has_more = items[:limit], len(items) > limit
    expand = [p[len("data.") :] for p in params.get("expand") or () if p.startswith("data.")]
    bad = [p for p in params.get("expand") or () if not p.startswith("data.")]
    if bad:
        raise _cannot(bad[0])
    return {
        "object": "list",
        "data": [present(item, expand, resolve) for item in page],
        "has_more": has_more,
        "url": url,
    }
