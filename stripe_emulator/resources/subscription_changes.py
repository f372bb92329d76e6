"""Subscription changes: update (``POST /v1/subscriptions/{id}``) and cancel (``DELETE``)."""

from __future__ import annotations

import copy
from typing import Any

from .. import events, invoicing
from ..errors import StripeError, invalid
from ..messages import ApiRequest
from ..router import Router
from ..state import EmulatorState
from ..wire import Bool, ListOf, Obj, Str, Unsupported, validate
from .common import diff, merge_metadata, not_found_in_params, show
from .subscriptions import (
    COMMON,
    ITEM,
    check_items,
    check_payment_method,
    make_item,
    plan_of,
    recurring_price,
)

UPDATE = {
    **COMMON,
    "items": ListOf(Obj({**ITEM, "id": Str(), "deleted": Bool(), "clear_usage": Bool()})),
    "cancellation_details": Obj({"comment": Str(emptyable=True), "feedback": Str()}),
    "billing_cycle_anchor": Unsupported(),
    "pause_collection": Unsupported(),
}
CANCEL = {
    "invoice_now": Bool(),
    "prorate": Bool(),
    "cancellation_details": Obj({"comment": Str(emptyable=True), "feedback": Str()}),
}


def _update(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    p = validate(req.params, UPDATE)
    sub = state.store.require("subscription", req.arg("id"))
    if sub["status"] in ("canceled", "incomplete_expired") and set(p) - {
        "metadata",
        "cancellation_details",
        "expand",
    }:
        raise invalid(
            "A canceled subscription can only update its cancellation_details and metadata."
        )
    before = copy.deepcopy(sub)
    now = state.customer_now(sub["customer"])
    if "default_payment_method" in p:
        check_payment_method(state, sub["customer"], p["default_payment_method"])
        sub["default_payment_method"] = p["default_payment_method"]
    for key in ("cancel_at_period_end", "description", "days_until_due", "collection_method"):
        if key in p:
            sub[key] = p[key]
    if p.get("cancel_at_period_end"):
        sub["canceled_at"] = now
        sub["cancel_at"] = sub["items"]["data"][0]["current_period_end"]
    elif p.get("cancel_at_period_end") is False:
        sub["canceled_at"] = None
        sub["cancel_at"] = None
    if "metadata" in p:
        sub["metadata"] = merge_metadata(sub["metadata"], p["metadata"])
    if "cancellation_details" in p:
        sub["cancellation_details"].update(p["cancellation_details"] or {})
    if "items" in p:
        _update_items(state, sub, p["items"], now)
    changes = diff(before, sub)
    if changes:
        events.emit(state, "customer.subscription.updated", sub, changes)
    return show(state, req, sub)


def _update_items(
    state: EmulatorState, sub: dict[str, Any], specs: list[dict[str, Any]], now: int
) -> None:
    internal = state.store.aux(sub["id"])
    items: list[dict[str, Any]] = sub["items"]["data"]
    current = items[0] if items else None
    start = current["current_period_start"] if current else now
    end = current["current_period_end"] if current else now
    by_id = {item["id"]: item for item in items}
    for i, spec in enumerate(specs):
        item_id = spec.get("id")
        if item_id is not None and item_id not in by_id:
            raise not_found_in_params("subscription_item", item_id, f"items[{i}][id]")
        if item_id is None:
            price = recurring_price(state, spec.get("price"), f"items[{i}][price]")
            item = make_item(state, sub["id"], price, spec, start, end, now)
            state.store.aux(item["id"])["usage_from"] = now
            items.append(item)
            by_id[item["id"]] = item
            continue
        item = by_id[item_id]
        if spec.get("deleted"):
            _retire(state, internal, item, now, bool(spec.get("clear_usage")))
            items.remove(item)
            continue
        if spec.get("price") and spec["price"] != item["price"]["id"]:
            price = recurring_price(state, spec["price"], f"items[{i}][price]")
            _retire(state, internal, item, now, bool(spec.get("clear_usage")))
            item["price"], item["plan"] = copy.deepcopy(price), plan_of(price)
            state.store.aux(item["id"])["usage_from"] = now + 1
            if price["recurring"]["usage_type"] == "metered":
                item.pop("quantity", None)
            else:
                item.setdefault("quantity", 1)
        if spec.get("quantity") is not None and "quantity" in item:
            item["quantity"] = spec["quantity"]
        if "metadata" in spec:
            item["metadata"] = merge_metadata(item["metadata"], spec["metadata"])
    if not items:
        raise invalid("A subscription must have at least one active plan.", param="items")
    check_items(items)
    sub["items"]["total_count"] = len(items)


def _retire(
    state: EmulatorState,
    internal: dict[str, Any],
    item: dict[str, Any],
    now: int,
    clear_usage: bool,
) -> None:
    """A metered item leaving mid-period still bills its usage so far (unless cleared)."""
    if item["price"]["recurring"]["usage_type"] != "metered" or clear_usage:
        return
    internal.setdefault("removed_items", []).append(
        {
            "id": item["id"],
            "price": copy.deepcopy(item["price"]),
            "removed_at": now,
            "usage_until": now + 1,
            "usage_from": state.store.aux(item["id"]).get(
                "usage_from", item["current_period_start"]
            ),
        }
    )


def _cancel(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    p = validate(req.params, CANCEL)
    sub = state.store.require("subscription", req.arg("id"))
    if sub["status"] in ("canceled", "incomplete_expired"):
        raise StripeError(
            400, "This subscription has already been canceled.", code="resource_missing", param="id"
        )
    now = state.customer_now(sub["customer"])
    if "cancellation_details" in p:
        sub["cancellation_details"].update(p["cancellation_details"] or {})
    if p.get("invoice_now"):
        invoice = invoicing.period_invoice(state, sub, now, advance=None, through_end=True)
        if invoice is not None:
            invoicing.issue(state, sub, invoice, now)
    sub["canceled_at"] = now
    invoicing.end_subscription(state, sub, now, reason="cancellation_requested")
    return show(state, req, sub)


def register(router: Router) -> None:
    router.post("/v1/subscriptions/{id}", _update)
    router.delete("/v1/subscriptions/{id}", _cancel)
