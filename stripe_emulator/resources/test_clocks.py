"""Test clocks (``/v1/test_helpers/test_clocks``).

Customers created with ``test_clock`` live on the clock's ``frozen_time``. Advancing runs
everything that falls due (period ends, invoices, payments, retries, webhooks) in time order
before the call returns; the response says ``advancing`` like Stripe's, and the clock is
``ready`` as soon as it is retrieved again.
"""

from __future__ import annotations

from typing import Any

from ..billing_cycle import run_due
from ..errors import invalid
from ..ids import new_id
from ..messages import ApiRequest
from ..periods import add_interval, describe, interval_seconds
from ..router import Router
from ..state import EmulatorState
from ..wire import LIST_PARAMS, Int, Str, validate
from .common import deleted, page, show

KIND = "test_helpers.test_clock"


def _create(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    p = validate(req.params, {"frozen_time": Int(required=True), "name": Str(max_len=300)})
    now = state.now()
    clock = {
        "id": new_id("clock", 24),
        "object": KIND,
        "created": now,
        "deletes_after": now + 30 * 86400,
        "frozen_time": p["frozen_time"],
        "livemode": False,
        "name": p.get("name"),
        "status": "ready",
        "status_details": {},
    }
    state.store.put(KIND, clock)
    return show(state, req, clock)


def _retrieve(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    validate(req.params, {})
    return show(state, req, state.store.require(KIND, req.arg("id")))


def _list(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    p = validate(req.params, LIST_PARAMS)
    return page(state, req, state.store.all(KIND), p, "test_clock")


def _customers(state: EmulatorState, clock_id: str) -> list[dict[str, Any]]:
    return [c for c in state.store.all("customer") if c.get("test_clock") == clock_id]


def _advance(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    p = validate(req.params, {"frozen_time": Int(required=True)})
    clock = state.store.require(KIND, req.arg("id"))
    target = p["frozen_time"]
    if target <= clock["frozen_time"]:
        raise invalid(
            "The frozen_time must be after the test clock's current frozen_time.",
            param="frozen_time",
        )
    members = {c["id"] for c in _customers(state, clock["id"])}
    shortest: tuple[int, str] | None = None
    for sub in state.store.all("subscription"):
        if sub["customer"] in members and sub["status"] not in ("canceled", "incomplete_expired"):
            rec = sub["items"]["data"][0]["price"]["recurring"]
            span = interval_seconds(rec["interval"], rec["interval_count"])
            if shortest is None or span < shortest[0]:
                shortest = (span, describe(rec["interval"], rec["interval_count"]))
    if shortest is not None and target - clock["frozen_time"] > 2 * shortest[0]:
        raise invalid(
            "Cannot advance the test clock more than two intervals of the shortest "
            f"subscription interval ({shortest[1]}) at a time.",
            param="frozen_time",
        )
    if shortest is None and target > add_interval(clock["frozen_time"], "year", 2):
        raise invalid(
            "Cannot advance a test clock without subscriptions more than two years at a time.",
            param="frozen_time",
        )
    clock["frozen_time"] = target
    run_due(state, clock["id"])
    clock["status"] = "ready"
    return show(state, req, {**clock, "status": "advancing"})


def _delete(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    validate(req.params, {})
    clock = state.store.require(KIND, req.arg("id"))
    members = {c["id"] for c in _customers(state, clock["id"])}
    for kind in ("subscription", "invoice", "payment_method"):
        for obj in state.store.all(kind):
            if obj.get("customer") in members:
                state.store.delete(kind, obj["id"])
    for customer_id in members:
        state.store.delete("customer", customer_id)
        state.store.aux(customer_id)["deleted"] = True
    state.store.delete(KIND, clock["id"])
    return deleted(clock["id"], KIND)


def register(router: Router) -> None:
    router.post("/v1/test_helpers/test_clocks", _create)
    router.get("/v1/test_helpers/test_clocks", _list)
    router.get("/v1/test_helpers/test_clocks/{id}", _retrieve)
    router.delete("/v1/test_helpers/test_clocks/{id}", _delete)
    router.post("/v1/test_helpers/test_clocks/{id}/advance", _advance)
