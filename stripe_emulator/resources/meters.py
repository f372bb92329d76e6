"""Billing meters (``/v1/billing/meters``) and their event summaries."""

from __future__ import annotations

import hashlib
from typing import Any

from ..errors import invalid, param_error
from ..ids import new_id
from ..messages import ApiRequest
from ..metering import combine, counted
from ..router import Router
from ..state import EmulatorState
from ..wire import LIST_PARAMS, Choice, Int, Obj, Str, validate
from .common import page, show

CREATE = {
    "display_name": Str(required=True, max_len=250),
    "event_name": Str(required=True, max_len=100),
    "default_aggregation": Obj(
        {"formula": Choice("sum", "count", "last", required=True)}, required=True
    ),
    "customer_mapping": Obj(
        {
            "event_payload_key": Str(required=True, max_len=100),
            "type": Choice("by_id", required=True),
        }
    ),
    "value_settings": Obj({"event_payload_key": Str(required=True, max_len=100)}),
    "event_time_window": Choice("day", "hour"),
}
SUMMARIES = {
    **LIST_PARAMS,
    "customer": Str(required=True),
    "start_time": Int(required=True),
    "end_time": Int(required=True),
    "value_grouping_window": Choice("hour", "day"),
}
WINDOWS = {"hour": 3600, "day": 86400}


def _unique(state: EmulatorState, event_name: str, meter_id: str | None) -> None:
    for other in state.store.all("billing.meter"):
        if (
            other["id"] != meter_id
            and other["status"] == "active"
            and other["event_name"] == event_name
        ):
            raise invalid(
                f"An active meter with event_name `{event_name}` already exists ({other['id']}).",
                param="event_name",
            )


def _create(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    p = validate(req.params, CREATE)
    _unique(state, p["event_name"], None)
    now = state.now()
    meter = {
        "id": new_id("mtr", 24),
        "object": "billing.meter",
        "created": now,
        "customer_mapping": p.get("customer_mapping")
        or {"event_payload_key": "stripe_customer_id", "type": "by_id"},
        "default_aggregation": {"formula": p["default_aggregation"]["formula"]},
        "display_name": p["display_name"],
        "event_name": p["event_name"],
        "event_time_window": p.get("event_time_window"),
        "livemode": False,
        "status": "active",
        "status_transitions": {"deactivated_at": None},
        "updated": now,
        "value_settings": p.get("value_settings") or {"event_payload_key": "value"},
    }
    state.store.put("billing.meter", meter)
    return show(state, req, meter)


def _retrieve(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    validate(req.params, {})
    return show(state, req, state.store.require("billing.meter", req.arg("id")))


def _update(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    p = validate(req.params, {"display_name": Str(max_len=250)})
    meter = state.store.require("billing.meter", req.arg("id"))
    if "display_name" in p:
        meter["display_name"] = p["display_name"]
        meter["updated"] = state.now()
    return show(state, req, meter)


def _deactivate(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    validate(req.params, {})
    meter = state.store.require("billing.meter", req.arg("id"))
    if meter["status"] == "active":
        meter["status"] = "inactive"
        meter["status_transitions"] = {"deactivated_at": state.now()}
        meter["updated"] = state.now()
    return show(state, req, meter)


def _reactivate(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    validate(req.params, {})
    meter = state.store.require("billing.meter", req.arg("id"))
    if meter["status"] != "active":
        _unique(state, meter["event_name"], meter["id"])
        meter["status"] = "active"
        meter["updated"] = state.now()
    return show(state, req, meter)


def _list(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    p = validate(req.params, {**LIST_PARAMS, "status": Choice("active", "inactive")})
    items = [
        m for m in state.store.all("billing.meter") if p.get("status", m["status"]) == m["status"]
    ]
    return page(state, req, items, p, "billing.meter")


def _summary(meter_id: str, customer: str, start: int, end: int, value: float) -> dict[str, Any]:
    digest = hashlib.sha256(f"{meter_id}:{customer}:{start}:{end}".encode()).hexdigest()[:40]
    return {
        "id": f"mtrusg_test_{digest}",
        "object": "billing.meter_event_summary",
        "aggregated_value": value,
        "end_time": end,
        "livemode": False,
        "meter": meter_id,
        "start_time": start,
    }


def _event_summaries(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    p = validate(req.params, SUMMARIES)
    meter = state.store.require("billing.meter", req.arg("id"))
    start, end = p["start_time"], p["end_time"]
    for name, value in (("start_time", start), ("end_time", end)):
        if value % 60:
            raise param_error(f"{name} must be aligned with minute boundaries.", param=name)
    if end <= start:
        raise param_error("end_time must be after start_time.", param="end_time")
    customer = p["customer"]
    state.store.require("customer", customer, param="customer", status=400)
    window = WINDOWS.get(p.get("value_grouping_window", ""))
    records = [r for r in counted(state, meter["id"], customer) if start <= r["timestamp"] < end]
    items: list[dict[str, Any]] = []
    if window is None:
        value = float(combine(meter, records, start, end))
        items.append(_summary(meter["id"], customer, start, end, value))
    else:
        buckets: dict[int, list[dict[str, Any]]] = {}
        for record in records:
            ts = record["timestamp"]
            buckets.setdefault(ts - ts % window, []).append(record)
        for bucket in sorted(buckets, reverse=True):
            lo, hi = max(bucket, start), min(bucket + window, end)
            value = float(combine(meter, buckets[bucket], lo, hi))
            items.append(_summary(meter["id"], customer, lo, hi, value))
    return page(state, req, items, p, "billing.meter_event_summary")


def register(router: Router) -> None:
    router.post("/v1/billing/meters", _create)
    router.get("/v1/billing/meters", _list)
    router.get("/v1/billing/meters/{id}", _retrieve)
    router.post("/v1/billing/meters/{id}", _update)
    router.post("/v1/billing/meters/{id}/deactivate", _deactivate)
    router.post("/v1/billing/meters/{id}/reactivate", _reactivate)
    router.get("/v1/billing/meters/{id}/event_summaries", _event_summaries)
