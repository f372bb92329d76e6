"""In-memory state behind one lock, JSON-serialisable for ``--state-file`` persistence.

Stripe objects are kept in their response shape (``objects[kind][id]``), in creation order;
bookkeeping that Stripe does not show lives in ``internal[id]``.
"""

from __future__ import annotations

import threading
from typing import Any

import orjson

from .errors import no_such

KIND_NAMES = {
    "customer": "customer",
    "product": "product",
    "price": "price",
    "subscription": "subscription",
    "subscription_item": "subscription_item",
    "invoice": "invoice",
    "invoiceitem": "invoiceitem",
    "billing.meter": "billing.meter",
    "billing_portal.configuration": "billing_portal.configuration",
    "billing_portal.session": "billing_portal.session",
    "webhook_endpoint": "webhook_endpoint",
    "test_helpers.test_clock": "test_clock",
    "payment_method": "payment_method",
    "v2.core.event_destination": "event destination",
}


class Store:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.version = 0
        #: Changed since the state file was last written.
        self.dirty = False
        self.clear()

    def clear(self) -> None:
        with self.lock:
            self.objects: dict[str, dict[str, dict[str, Any]]] = {}
            self.internal: dict[str, dict[str, Any]] = {}
            #: every meter event received (v1 and v2), in arrival order
            self.meter_events: list[dict[str, Any]] = []
            #: identifier -> index into meter_events of the newest event with it
            self.identifiers: dict[str, int] = {}
            #: "meter|customer" -> indexes into meter_events (rebuilt on load)
            self.usage_index: dict[str, list[int]] = {}
            #: v1 snapshot events, in creation order
            self.events: dict[str, dict[str, Any]] = {}
            #: v2 thin events (``v2.core.event``), in creation order
            self.thin_events: dict[str, dict[str, Any]] = {}
            #: delivery log: one entry per (event, endpoint)
            self.deliveries: list[dict[str, Any]] = []
            self.idempotency: dict[str, dict[str, Any]] = {}
            self.meter_sessions: dict[str, dict[str, Any]] = {}
            self.counters: dict[str, int] = {}
            self.version += 1

    def mark_dirty(self) -> None:
        """The state changed: the next periodic save writes the state file."""
        self.dirty = True

    def add_meter_event(self, record: dict[str, Any]) -> None:
        self.meter_events.append(record)
        index = len(self.meter_events) - 1
        self.identifiers[record["identifier"]] = index
        if record["meter"] and record["customer"]:
            self.usage_index.setdefault(f"{record['meter']}|{record['customer']}", []).append(index)

    # -- objects ---------------------------------------------------------------------------
    def put(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        self.objects.setdefault(kind, {})[obj["id"]] = obj
        return obj

    def get(self, kind: str, obj_id: str) -> dict[str, Any] | None:
        return self.objects.get(kind, {}).get(obj_id)

    def require(
        self, kind: str, obj_id: str, *, param: str = "id", status: int = 404
    ) -> dict[str, Any]:
        obj = self.get(kind, obj_id)
        if obj is None:
            raise no_such(KIND_NAMES.get(kind, kind), obj_id, param=param, status=status)
        return obj

    def delete(self, kind: str, obj_id: str) -> dict[str, Any] | None:
        self.internal.pop(obj_id, None)
        return self.objects.get(kind, {}).pop(obj_id, None)

    def all(self, kind: str) -> list[dict[str, Any]]:
        """Objects of a kind, newest first (Stripe's list order)."""
        return list(reversed(list(self.objects.get(kind, {}).values())))

    def find(self, obj_id: str) -> dict[str, Any] | None:
        for objs in self.objects.values():
            if obj_id in objs:
                return objs[obj_id]
        return None

    def aux(self, obj_id: str) -> dict[str, Any]:
        return self.internal.setdefault(obj_id, {})

    def next_counter(self, name: str) -> int:
        value = self.counters.get(name, 0) + 1
        self.counters[name] = value
        return value

    # -- persistence -----------------------------------------------------------------------
    def dump(self, clock_offset: float) -> bytes:
        with self.lock:
            data = {
                "format": 1,
                "clock_offset": clock_offset,
                "objects": self.objects,
                "internal": self.internal,
                "meter_events": self.meter_events,
                "identifiers": self.identifiers,
                "events": self.events,
                "thin_events": self.thin_events,
                "deliveries": self.deliveries,
                "idempotency": self.idempotency,
                "meter_sessions": self.meter_sessions,
                "counters": self.counters,
            }
            return orjson.dumps(data)

    def load(self, raw: bytes) -> float:
        data = orjson.loads(raw)
        with self.lock:
            self.clear()
            self.objects = data.get("objects", {})
            self.internal = data.get("internal", {})
            self.meter_events = data.get("meter_events", [])
            self.identifiers = data.get("identifiers", {})
            self.events = data.get("events", {})
            self.thin_events = data.get("thin_events", {})
            self.deliveries = data.get("deliveries", [])
            self.idempotency = data.get("idempotency", {})
            self.meter_sessions = data.get("meter_sessions", {})
            self.counters = data.get("counters", {})
            for index, record in enumerate(self.meter_events):
                if record["meter"] and record["customer"]:
                    key = f"{record['meter']}|{record['customer']}"
                    self.usage_index.setdefault(key, []).append(index)
        return float(data.get("clock_offset", 0.0))


def clone(obj: Any) -> Any:
    """A deep copy of JSON-shaped data (much faster than ``copy.deepcopy``)."""
    return orjson.loads(orjson.dumps(obj))
