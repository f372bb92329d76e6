"""Webhook endpoints (``/v1/webhook_endpoints``) and events (``/v1/events``, ``/v2/core/events``),
plus v2 event destinations for thin events (``/v2/core/event_destinations``)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlparse

from ..clock import rfc3339
from ..errors import invalid, param_error
from ..events import THIN_EVENT_TYPES, emit_thin, matches_type
from ..ids import new_id, random_token
from ..messages import ApiRequest
from ..router import Router
from ..state import EmulatorState
from ..wire import (
    LIST_PARAMS,
    RANGE,
    AnyValue,
    Bool,
    Choice,
    ListOf,
    Metadata,
    Obj,
    Str,
    Unsupported,
    in_range,
    validate,
)
from .common import deleted, merge_metadata, page, show

_EVENT_NAME = re.compile(r"^(\*|[a-z0-9_]+(\.[a-z0-9_*]+)*)$")
CREATE = {
    "url": Str(required=True),
    "enabled_events": ListOf(Str(), required=True),
    "description": Str(emptyable=True),
    "metadata": Metadata(),
    "api_version": Str(),
    "connect": Unsupported(),
}
UPDATE = {
    "url": Str(),
    "enabled_events": ListOf(Str()),
    "description": Str(emptyable=True),
    "metadata": Metadata(),
    "disabled": Bool(),
}


def _check(p: dict[str, Any]) -> None:
    if "url" in p:
        parsed = urlparse(p["url"])
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise param_error(f"Invalid URL: {p['url']}", param="url", code="url_invalid")
    if "enabled_events" in p:
        if not p["enabled_events"]:
            raise param_error(
                "enabled_events must contain at least one event.", param="enabled_events"
            )
        for i, name in enumerate(p["enabled_events"]):
            if not _EVENT_NAME.match(name):
                raise param_error(
                    f"Invalid enabled_events[{i}]: {name}", param=f"enabled_events[{i}]"
                )


def _create(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    p = validate(req.params, CREATE)
    _check(p)
    secret = f"whsec_{random_token(32)}"
    endpoint = {
        "id": new_id("we", 24),
        "object": "webhook_endpoint",
        "api_version": p.get("api_version"),
        "application": None,
        "created": state.now(),
        "description": p.get("description"),
        "enabled_events": p["enabled_events"],
        "livemode": False,
        "metadata": merge_metadata({}, p.get("metadata") or {}),
        "status": "enabled",
        "url": p["url"],
    }
    state.store.put("webhook_endpoint", endpoint)
    state.store.aux(endpoint["id"])["secret"] = secret
    return show(state, req, {**endpoint, "secret": secret})


def _retrieve(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    validate(req.params, {})
    return show(state, req, state.store.require("webhook_endpoint", req.arg("id")))


def _update(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    p = validate(req.params, UPDATE)
    _check(p)
    endpoint = state.store.require("webhook_endpoint", req.arg("id"))
    for key in ("url", "enabled_events", "description"):
        if key in p:
            endpoint[key] = p[key]
    if "metadata" in p:
        endpoint["metadata"] = merge_metadata(endpoint["metadata"], p["metadata"])
    if "disabled" in p:
        endpoint["status"] = "disabled" if p["disabled"] else "enabled"
    return show(state, req, endpoint)


def _delete(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    validate(req.params, {})
    endpoint = state.store.require("webhook_endpoint", req.arg("id"))
    state.store.delete("webhook_endpoint", endpoint["id"])
    return deleted(endpoint["id"], "webhook_endpoint")


def _list(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    p = validate(req.params, LIST_PARAMS)
    return page(state, req, state.store.all("webhook_endpoint"), p, "webhook_endpoint")


# -- events ----------------------------------------------------------------------------
def _events(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    p = validate(
        req.params,
        {
            **LIST_PARAMS,
            "type": Str(),
            "types": ListOf(Str(), max_items=20),
            "created": RANGE,
            "delivery_success": Bool(),
        },
    )
    if p.get("type") and p.get("types"):
        raise invalid(
            "You may only specify one of these parameters: type, types.",
            param="types",
            code="parameters_exclusive",
        )
    wanted = p.get("types") or ([p["type"]] if p.get("type") else None)
    items = [
        e
        for e in reversed(list(state.store.events.values()))
        if (wanted is None or any(matches_type(e["type"], w) for w in wanted))
        and in_range(e["created"], p.get("created"))
        and ("delivery_success" not in p or (e["pending_webhooks"] == 0) == p["delivery_success"])
    ]
    return page(state, req, items, p, "event")


def _event(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    validate(req.params, {})
    event = state.store.events.get(req.arg("id"))
    if event is None:
        return show(state, req, state.store.require("event", req.arg("id")))
    return show(state, req, event)


def _v2_events(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    p = validate(
        req.params,
        {
            "limit": LIST_PARAMS["limit"],
            "page": Str(),
            "object_id": Str(),
            "types": ListOf(Str()),
            "created": Unsupported(),
        },
        expand=False,
    )
    items = [
        e
        for e in reversed(list(state.store.thin_events.values()))
        if ("object_id" not in p or (e.get("related_object") or {}).get("id") == p["object_id"])
        and ("types" not in p or e["type"] in p["types"])
    ]
    limit = p.get("limit") or 20
    start = int(p.get("page") or 0)
    chunk = items[start : start + limit]
    more = start + limit < len(items)
    return {
        "data": chunk,
        "next_page_url": f"/v2/core/events?page={start + limit}" if more else None,
        "previous_page_url": None,
    }


def _v2_event(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    validate(req.params, {}, expand=False)
    event = state.store.thin_events.get(req.arg("id"))
    if event is None:
        raise invalid(f"No such event: '{req.arg('id')}'", code="resource_missing")
    return event


# -- v2 event destinations -------------------------------------------------------------------
DEST = "v2.core.event_destination"
INCLUDE = ListOf(Str())
DEST_CREATE = {
    "name": Str(required=True),
    "type": Choice("webhook_endpoint", required=True),
    "event_payload": Choice("thin", "snapshot", required=True),
    "enabled_events": ListOf(Str(), required=True),
    "description": Str(),
    "webhook_endpoint": Obj({"url": Str(required=True)}),
    "metadata": Metadata(),
    "events_from": ListOf(Str()),
    "snapshot_api_version": Str(),
    "include": INCLUDE,
    "amazon_eventbridge": Unsupported(),
    "azure_event_grid": Unsupported(),
}
DEST_UPDATE = {
    "name": Str(),
    "description": Str(),
    "enabled_events": ListOf(Str()),
    "webhook_endpoint": Obj({"url": Str(required=True)}),
    "metadata": AnyValue(),
    "include": INCLUDE,
}


def _check_dest_events(payload: str, enabled: list[str]) -> None:
    """A thin destination takes thin event types, a snapshot one v1 (snapshot) event types."""
    if not enabled:
        raise param_error("enabled_events must contain at least one event.", param="enabled_events")
    for i, name in enumerate(enabled):
        thin = name in THIN_EVENT_TYPES
        if (payload == "thin") != thin:
            raise param_error(
                f"Invalid enabled_events[{i}]: {name} is not available for "
                f"event_payload {payload}.",
                param=f"enabled_events[{i}]",
            )


def _dest_view(state: EmulatorState, dest: dict[str, Any], include: list[str]) -> dict[str, Any]:
    """The destination as Stripe shows it: URL and signing secret redacted unless included."""
    secret = state.store.aux(dest["id"]).get("secret")
    url = dest["webhook_endpoint"]["url"]
    return {
        **dest,
        "webhook_endpoint": {
            "signing_secret": secret if "webhook_endpoint.signing_secret" in include else None,
            "url": url if "webhook_endpoint.url" in include else None,
        },
    }


def _include(p: dict[str, Any]) -> list[str]:
    return list(p.get("include") or [])


def _dest_create(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    p = validate(req.params, DEST_CREATE, expand=False)
    url = (p.get("webhook_endpoint") or {}).get("url")
    if not url:
        raise param_error(
            "Missing required param: webhook_endpoint.",
            param="webhook_endpoint",
            code="parameter_missing",
        )
    _check({"url": url})
    _check_dest_events(p["event_payload"], p["enabled_events"])
    if p["event_payload"] == "thin" and p.get("snapshot_api_version"):
        raise param_error(
            "snapshot_api_version is only for snapshot events.", param="snapshot_api_version"
        )
    now = rfc3339(state.now())
    dest = {
        "id": new_id("ed_test", 24),
        "object": DEST,
        "created": now,
        "description": p.get("description") or "",
        "enabled_events": p["enabled_events"],
        "event_payload": p["event_payload"],
        "events_from": p.get("events_from") or ["@self"],
        "livemode": False,
        "metadata": merge_metadata({}, p.get("metadata") or {}),
        "name": p["name"],
        "snapshot_api_version": p.get("snapshot_api_version")
        or (state.config.api_version if p["event_payload"] == "snapshot" else None),
        "status": "enabled",
        "status_details": None,
        "type": "webhook_endpoint",
        "updated": now,
        "webhook_endpoint": {"signing_secret": None, "url": url},
    }
    state.store.put(DEST, dest)
    state.store.aux(dest["id"])["secret"] = f"whsec_{random_token(32)}"
    return _dest_view(state, dest, _include(p))


def _dest_get(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    p = validate(req.params, {"include": INCLUDE}, expand=False)
    return _dest_view(state, state.store.require(DEST, req.arg("id")), _include(p))


def _dest_update(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    p = validate(req.params, DEST_UPDATE, expand=False)
    dest = state.store.require(DEST, req.arg("id"))
    if "enabled_events" in p:
        _check_dest_events(dest["event_payload"], p["enabled_events"])
        dest["enabled_events"] = p["enabled_events"]
    if "webhook_endpoint" in p:
        _check({"url": p["webhook_endpoint"]["url"]})
        dest["webhook_endpoint"] = {"signing_secret": None, "url": p["webhook_endpoint"]["url"]}
    for key in ("name", "description"):
        if key in p:
            dest[key] = p[key]
    if isinstance(p.get("metadata"), dict):
        update = {k: (None if v in (None, "") else str(v)) for k, v in p["metadata"].items()}
        dest["metadata"] = merge_metadata(dest["metadata"], update)
    dest["updated"] = rfc3339(state.now())
    return _dest_view(state, dest, _include(p))


def _dest_list(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    p = validate(
        req.params,
        {"include": INCLUDE, "limit": LIST_PARAMS["limit"], "page": Str()},
        expand=False,
    )
    items = [_dest_view(state, d, _include(p)) for d in reversed(state.store.all(DEST))]
    limit = p.get("limit") or 20
    page_token = str(p.get("page") or "0")
    start = int(page_token) if page_token.isdigit() else 0
    more = start + limit < len(items)
    return {
        "data": items[start : start + limit],
        "next_page_url": f"/v2/core/event_destinations?page={start + limit}" if more else None,
        "previous_page_url": None,
    }


def _dest_delete(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    validate(req.params, {}, expand=False)
    state.store.require(DEST, req.arg("id"))
    state.store.delete(DEST, req.arg("id"))
    return {"id": req.arg("id"), "object": DEST, "deleted": True}


def _dest_toggle(status: str) -> Any:
    def handler(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
        validate(req.params, {}, expand=False)
        dest = state.store.require(DEST, req.arg("id"))
        dest["status"] = status
        dest["updated"] = rfc3339(state.now())
        return _dest_view(state, dest, [])

    return handler


def _dest_ping(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    """Send a ``v2.core.event_destination.ping`` thin event to this destination only."""
    validate(req.params, {}, expand=False)
    dest = state.store.require(DEST, req.arg("id"))
    related = {
        "id": dest["id"],
        "type": DEST,
        "url": f"/v2/core/event_destinations/{dest['id']}",
    }
    return emit_thin(state, "v2.core.event_destination.ping", related, {}, only=dest)


def register(router: Router) -> None:
    router.post("/v1/webhook_endpoints", _create)
    router.get("/v1/webhook_endpoints", _list)
    router.get("/v1/webhook_endpoints/{id}", _retrieve)
    router.post("/v1/webhook_endpoints/{id}", _update)
    router.delete("/v1/webhook_endpoints/{id}", _delete)
    router.get("/v1/events", _events)
    router.get("/v1/events/{id}", _event)
    router.get("/v2/core/events", _v2_events)
    router.get("/v2/core/events/{id}", _v2_event)
    router.post("/v2/core/event_destinations", _dest_create)
    router.get("/v2/core/event_destinations", _dest_list)
    router.get("/v2/core/event_destinations/{id}", _dest_get)
    router.post("/v2/core/event_destinations/{id}", _dest_update)
    router.delete("/v2/core/event_destinations/{id}", _dest_delete)
    router.post("/v2/core/event_destinations/{id}/ping", _dest_ping)
    router.post("/v2/core/event_destinations/{id}/enable", _dest_toggle("enabled"))
    router.post("/v2/core/event_destinations/{id}/disable", _dest_toggle("disabled"))
