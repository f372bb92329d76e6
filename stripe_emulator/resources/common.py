"""Helpers shared by the resource handlers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import StripeError, param_error
from ..messages import ApiRequest
from ..render import list_page, present
from ..state import EmulatorState
from ..wire import EXPAND


def show(state: EmulatorState, req: ApiRequest, obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` as a response, with the request's ``expand[]``."""
    return present(obj, expand_of(req), state.resolve)


def expand_of(req: ApiRequest) -> list[str]:
    raw = req.params.get("expand")
    return [] if raw in (None, "") else list(EXPAND.convert(raw, "expand"))


def page(
    state: EmulatorState,
    req: ApiRequest,
    items: Sequence[dict[str, Any]],
    params: Mapping[str, Any],
    kind_name: str = "object",
    url: str | None = None,
) -> dict[str, Any]:
    return list_page(
        items, url=url or req.path, params=dict(params), resolve=state.resolve, kind_name=kind_name
    )


def merge_metadata(
    current: dict[str, str], update: Mapping[str, str | None] | None
) -> dict[str, str]:
    """Stripe's metadata update: ``""`` deletes a key, an empty hash clears everything."""
    if update is None:
        return {}
    merged = dict(current)
    for key, value in update.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def set_fields(obj: dict[str, Any], params: Mapping[str, Any], *names: str) -> None:
    for name in names:
        if name in params:
            obj[name] = params[name]


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """``previous_attributes`` for an update event: old values of the changed top-level keys."""
    return {k: before.get(k) for k in after if before.get(k) != after.get(k)}


def require_param(params: Mapping[str, Any], name: str) -> Any:
    value = params.get(name)
    if value is None:
        raise param_error(f"Missing required param: {name}.", param=name, code="parameter_missing")
    return value


def deleted(obj_id: str, obj_name: str) -> dict[str, Any]:
    return {"id": obj_id, "object": obj_name, "deleted": True}


def not_found_in_params(kind: str, obj_id: str, param: str) -> StripeError:
    return StripeError(400, f"No such {kind}: '{obj_id}'", code="resource_missing", param=param)
