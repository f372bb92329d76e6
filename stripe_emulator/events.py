"""Events: v1 snapshot events (``/v1/events``) and v2 thin events (``/v2/core/events``).

Creating an event queues a delivery to every enabled webhook endpoint (or v2 event
destination) whose ``enabled_events`` match it.
"""

from __future__ import annotations

import copy
import fnmatch
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from .clock import rfc3339
from .ids import new_id
from .render import present

if TYPE_CHECKING:
    from .emulator import Emulator


@dataclass
class RequestInfo:
    id: str | None
    idempotency_key: str | None


#: The API request being executed (events record it in ``request``), unset for clock work.
current_request: ContextVar[RequestInfo | None] = ContextVar("current_request", default=None)

#: Thin event types; v1 webhook endpoints receive them only when listed explicitly.
THIN_EVENT_TYPES = frozenset({"v1.billing.meter.error_report_triggered"})


def endpoint_wants(enabled: list[str], event_type: str) -> bool:
    if event_type in THIN_EVENT_TYPES:
        return event_type in enabled
    return any(e == "*" or fnmatch.fnmatchcase(event_type, e) for e in enabled)


def emit(
    em: Emulator,
    event_type: str,
    obj: dict[str, Any],
    previous_attributes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Record a v1 event for ``obj`` (a snapshot of its current state) and queue deliveries."""
    req = current_request.get()
    data: dict[str, Any] = {"object": present(obj, None, em.resolve)}
    if previous_attributes is not None:
        data["previous_attributes"] = copy.deepcopy(previous_attributes)
    event: dict[str, Any] = {
        "id": new_id("evt"),
        "object": "event",
        "api_version": em.config.api_version,
        "created": em.clock.now(),
        "data": data,
        "livemode": False,
        "pending_webhooks": 0,
        "request": {
            "id": req.id if req else None,
            "idempotency_key": req.idempotency_key if req else None,
        },
        "type": event_type,
    }
    em.store.events[event["id"]] = event
    targets = [
        ep
        for ep in em.store.all("webhook_endpoint")
        if ep["status"] == "enabled" and endpoint_wants(ep["enabled_events"], event_type)
    ]
    event["pending_webhooks"] = len(targets)
    body = orjson.dumps(event, option=orjson.OPT_INDENT_2)
    for endpoint in targets:
        em.webhooks.enqueue(event["id"], endpoint["id"], endpoint["url"], body)
    return event


def emit_thin(
    em: Emulator,
    event_type: str,
    related: dict[str, Any] | None,
    data: dict[str, Any],
) -> dict[str, Any]:
    """Record a v2 thin event about ``related`` (``{"id", "type", "url"}``) with ``data``."""
    req = current_request.get()
    event: dict[str, Any] = {
        "id": new_id("evt_test", 28),
        "object": "v2.core.event",
        "changes": None,
        "context": None,
        "created": rfc3339(em.clock.now_float()),
        "data": data,
        "livemode": False,
        "reason": (
            {"type": "request", "request": {"id": req.id, "idempotency_key": req.idempotency_key}}
            if req and req.id
            else None
        ),
        "related_object": related,
        "type": event_type,
    }
    em.store.thin_events[event["id"]] = event
    notification = {
        k: event[k]
        for k in (
            "id",
            "object",
            "type",
            "created",
            "livemode",
            "context",
            "reason",
            "related_object",
        )
    }
    body = orjson.dumps(notification, option=orjson.OPT_INDENT_2)
    for endpoint in em.store.all("webhook_endpoint"):
        if endpoint["status"] == "enabled" and endpoint_wants(
            endpoint["enabled_events"], event_type
        ):
            em.webhooks.enqueue(event["id"], endpoint["id"], endpoint["url"], body)
    for dest in em.store.all("v2.core.event_destination"):
        if dest["status"] == "enabled" and event_type in dest["enabled_events"]:
            url = (dest.get("webhook_endpoint") or {}).get("url")
            if url:
                em.webhooks.enqueue(event["id"], dest["id"], url, body)
    return event


def matches_type(event_type: str, wanted: str) -> bool:
    return fnmatch.fnmatchcase(event_type, wanted)
