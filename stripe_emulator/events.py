"""Events: v1 snapshot events (``/v1/events``) and v2 thin events (``/v2/core/events``).

Creating a v1 event queues a delivery to every enabled webhook endpoint and snapshot event
destination whose ``enabled_events`` match it; a thin event goes to thin event destinations
only (Stripe never sends thin events to v1 webhook endpoints, whose ``enabled_events`` cannot
name them).
"""

from __future__ import annotations

import copy
import fnmatch
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import orjson

from .clock import rfc3339
from .ids import new_id
from .render import present
from .state import EmulatorState


@dataclass
class RequestInfo:
    id: str | None
    idempotency_key: str | None


#: The API request being executed (events record it in ``request``), unset for clock work.
current_request: ContextVar[RequestInfo | None] = ContextVar("current_request", default=None)

#: Thin event types the emulator sends (to thin event destinations only).
THIN_EVENT_TYPES = frozenset(
    {
        "v1.billing.meter.error_report_triggered",
        "v1.billing.meter.no_meter_found",
        "v2.core.event_destination.ping",
    }
)
DESTINATION = "v2.core.event_destination"


def endpoint_wants(enabled: list[str], event_type: str) -> bool:
    return any(e == "*" or fnmatch.fnmatchcase(event_type, e) for e in enabled)


def _destinations(state: EmulatorState, payload: str, event_type: str) -> list[dict[str, Any]]:
    return [
        d
        for d in state.store.all(DESTINATION)
        if d["status"] == "enabled"
        and d["event_payload"] == payload
        and event_type in d["enabled_events"]
    ]


def emit(
    state: EmulatorState,
    event_type: str,
    obj: dict[str, Any],
    previous_attributes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Record a v1 event for ``obj`` (a snapshot of its current state) and queue deliveries."""
    req = current_request.get()
    data: dict[str, Any] = {"object": present(obj, None, state.resolve)}
    if previous_attributes is not None:
        data["previous_attributes"] = copy.deepcopy(previous_attributes)
    event: dict[str, Any] = {
        "id": new_id("evt"),
        "object": "event",
        "api_version": state.config.api_version,
        "created": state.clock.now(),
        "data": data,
        "livemode": False,
        "pending_webhooks": 0,
        "request": {
            "id": req.id if req else None,
            "idempotency_key": req.idempotency_key if req else None,
        },
        "type": event_type,
    }
    state.store.events[event["id"]] = event
    targets = [
        ep
        for ep in state.store.all("webhook_endpoint")
        if ep["status"] == "enabled" and endpoint_wants(ep["enabled_events"], event_type)
    ]
    destinations = _destinations(state, "snapshot", event_type)
    event["pending_webhooks"] = len(targets) + len(destinations)
    body = orjson.dumps(event, option=orjson.OPT_INDENT_2)
    for endpoint in targets:
        state.outbox.enqueue(event["id"], endpoint["id"], endpoint["url"], body)
    for dest in destinations:
        state.outbox.enqueue(event["id"], dest["id"], dest["webhook_endpoint"]["url"], body)
    return event


def emit_thin(
    state: EmulatorState,
    event_type: str,
    related: dict[str, Any] | None,
    data: dict[str, Any],
    *,
    only: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Record a v2 thin event about ``related`` (``{"id", "type", "url"}``) with ``data`` and
    send it to the thin destinations that enable its type (or to the destination ``only``)."""
    req = current_request.get()
    event: dict[str, Any] = {
        "id": new_id("evt_test", 28),
        "object": "v2.core.event",
        "changes": None,
        "context": None,
        "created": rfc3339(state.clock.now_float()),
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
    state.store.thin_events[event["id"]] = event
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
    targets = [only] if only is not None else _destinations(state, "thin", event_type)
    for dest in targets:
        state.outbox.enqueue(event["id"], dest["id"], dest["webhook_endpoint"]["url"], body)
    return event


def matches_type(event_type: str, wanted: str) -> bool:
    return fnmatch.fnmatchcase(event_type, wanted)
