"""Webhook endpoints (``/v1/webhook_endpoints``) and events (``/v1/events``, ``/v2/core/events``),
plus v2 event destinations for thin events (``/v2/core/event_destinations``)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from ..clock import rfc3339
from ..errors import invalid, param_error
from ..events import matches_type
from ..ids import new_id, random_token
from ..wire import LIST_PARAMS, RANGE, Bool, Enum, List, Meta, Str, Unsupported, validate
from .common import deleted, merge_metadata, page, show

if TYPE_CHECKING:
    from ..emulator import Emulator
    from ..http import ApiRequest
    from ..router import Router

_EVENT_NAME = re.compile(r"^(\*|[a-z0-9_]+(\.[a-z0-9_*]+)*)$")
CREATE = {
    "url": Str(required=True),
    "enabled_events": List(Str(), required=True),
    "description": Str(emptyable=True),
    "metadata": Meta(),
    "api_version": Str(),
    "connect": Unsupported(),
}
UPDATE = {
    "url": Str(),
    "enabled_events": List(Str()),
    "description": Str(emptyable=True),
    "metadata": Meta(),
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


def _create(em: Emulator, req: ApiRequest) -> dict[str, Any]:
    p = validate(req.params, CREATE)
    _check(p)
    secret = f"whsec_{random_token(32)}"
    endpoint = {
        "id": new_id("we", 24),
        "object": "webhook_endpoint",
        "api_version": p.get("api_version"),
        "application": None,
        "created": em.now(),
        "description": p.get("description"),
        "enabled_events": p["enabled_events"],
        "livemode": False,
        "metadata": merge_metadata({}, p.get("metadata") or {}),
        "status": "enabled",
        "url": p["url"],
    }
    em.store.put("webhook_endpoint", endpoint)
    em.store.aux(endpoint["id"])["secret"] = secret
    return show(em, req, {**endpoint, "secret": secret})


def _retrieve(em: Emulator, req: ApiRequest) -> dict[str, Any]:
    validate(req.params, {})
    return show(em, req, em.store.require("webhook_endpoint", req.arg("id")))


def _update(em: Emulator, req: ApiRequest) -> dict[str, Any]:
    p = validate(req.params, UPDATE)
    _check(p)
    endpoint = em.store.require("webhook_endpoint", req.arg("id"))
    for key in ("url", "enabled_events", "description"):
        if key in p:
            endpoint[key] = p[key]
    if "metadata" in p:
        endpoint["metadata"] = merge_metadata(endpoint["metadata"], p["metadata"])
    if "disabled" in p:
        endpoint["status"] = "disabled" if p["disabled"] else "enabled"
    return show(em, req, endpoint)


def _delete(em: Emulator, req: ApiRequest) -> dict[str, Any]:
    validate(req.params, {})
    endpoint = em.store.require("webhook_endpoint", req.arg("id"))
    em.store.delete("webhook_endpoint", endpoint["id"])
    return deleted(endpoint["id"], "webhook_endpoint")


def _list(em: Emulator, req: ApiRequest) -> dict[str, Any]:
    p = validate(req.params, LIST_PARAMS)
    return page(em, req, em.store.all("webhook_endpoint"), p, "webhook_endpoint")


# -- events ----------------------------------------------------------------------------
def _events(em: Emulator, req: ApiRequest) -> dict[str, Any]:
    p = validate(
        req.params,
        {
            **LIST_PARAMS,
            "type": Str(),
            "types": List(Str(), max_items=20),
            "created": RANGE,
            "delivery_success": Bool(),
        },
    )
    from ..wire import in_range

    if p.get("type") and p.get("types"):
        raise invalid(
            "You may only specify one of these parameters: type, types.",
            param="types",
            code="parameters_exclusive",
        )
    wanted = p.get("types") or ([p["type"]] if p.get("type") else None)
    items = [
        e
        for e in reversed(list(em.store.events.values()))
        if (wanted is None or any(matches_type(e["type"], w) for w in wanted))
        and in_range(e["created"], p.get("created"))
        and ("delivery_success" not in p or (e["pending_webhooks"] == 0) == p["delivery_success"])
    ]
    return page(em, req, items, p, "event")


def _event(em: Emulator, req: ApiRequest) -> dict[str, Any]:
    validate(req.params, {})
    event = em.store.events.get(req.arg("id"))
    if event is None:
        return show(em, req, em.store.require("event", req.arg("id")))
    return show(em, req, event)


def _v2_events(em: Emulator, req: ApiRequest) -> dict[str, Any]:
    p = validate(
        req.params,
        {"limit": LIST_PARAMS["limit"], "page": Str(), "object_id": Str(), "types": List(Str())},
    )
    items = [
        e
        for e in reversed(list(em.store.thin_events.values()))
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


def _v2_event(em: Emulator, req: ApiRequest) -> dict[str, Any]:
    event = em.store.thin_events.get(req.arg("id"))
    if event is None:
        raise invalid(f"No such event: '{req.arg('id')}'", code="resource_missing")
    return event


# -- v2 event destinations (thin events only) ---------------------------------------------
DEST = "v2.core.event_destination"


def _dest_create(em: Emulator, req: ApiRequest) -> dict[str, Any]:
    p = validate(
        req.params,
        {
            "name": Str(required=True),
            "type": Enum("webhook_endpoint", required=True),
            "event_payload": Enum("thin", "snapshot", required=True),
            "enabled_events": List(Str(), required=True),
            "description": Str(),
            "webhook_endpoint": AnyDict(),
            "metadata": Meta(),
            "events_from": List(Str()),
            "snapshot_api_version": Str(),
            "include": List(Str()),
            "amazon_eventbridge": Unsupported(),
            "azure_event_grid": Unsupported(),
        },
    )
    url = (p.get("webhook_endpoint") or {}).get("url")
    if not url:
        raise param_error(
            "Missing required param: webhook_endpoint.url.",
            param="webhook_endpoint",
            code="parameter_missing",
        )
    _check({"url": url, "enabled_events": p["enabled_events"]})
    now = rfc3339(em.now())
    secret = f"whsec_{random_token(32)}"
    dest = {
        "id": new_id("ed_test", 24),
        "object": DEST,
        "created": now,
        "description": p.get("description") or "",
        "enabled_events": p["enabled_events"],
        "event_payload": p["event_payload"],
        "events_from": p.get("events_from"),
        "livemode": False,
        "metadata": merge_metadata({}, p.get("metadata") or {}),
        "name": p["name"],
        "snapshot_api_version": p.get("snapshot_api_version"),
        "status": "enabled",
        "status_details": None,
        "type": "webhook_endpoint",
        "updated": now,
        "webhook_endpoint": {"signing_secret": None, "url": url},
    }
    em.store.put(DEST, dest)
    em.store.aux(dest["id"])["secret"] = secret
    return {**dest, "webhook_endpoint": {"signing_secret": secret, "url": url}}


def _dest_get(em: Emulator, req: ApiRequest) -> dict[str, Any]:
    dest = em.store.require(DEST, req.arg("id"))
    secret = em.store.aux(dest["id"]).get("secret")
    include = req.params.get("include") or {}
    values = include.values() if isinstance(include, dict) else [include]
    if "webhook_endpoint.signing_secret" in values:
        return {**dest, "webhook_endpoint": {**dest["webhook_endpoint"], "signing_secret": secret}}
    return dest


def _dest_list(em: Emulator, req: ApiRequest) -> dict[str, Any]:
    return {"data": em.store.all(DEST), "next_page_url": None, "previous_page_url": None}


def _dest_delete(em: Emulator, req: ApiRequest) -> dict[str, Any]:
    em.store.require(DEST, req.arg("id"))
    em.store.delete(DEST, req.arg("id"))
    return {"id": req.arg("id"), "object": DEST, "deleted": True}


def _dest_toggle(status: str) -> Any:
    def handler(em: Emulator, req: ApiRequest) -> dict[str, Any]:
        dest = em.store.require(DEST, req.arg("id"))
        dest["status"] = status
        dest["updated"] = rfc3339(em.now())
        return dest

    return handler


class AnyDict(Str):
    def convert_value(self, value: Any, name: str) -> Any:
        if not isinstance(value, dict):
            raise param_error(f"Invalid object: {name}", param=name)
        return value


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
    router.delete("/v2/core/event_destinations/{id}", _dest_delete)
    router.post("/v2/core/event_destinations/{id}/enable", _dest_toggle("enabled"))
    router.post("/v2/core/event_destinations/{id}/disable", _dest_toggle("disabled"))
