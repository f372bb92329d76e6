"""Subscriptions (``/v1/subscriptions``) and subscription items."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

from .. import events, invoice_shapes, invoicing, payments
from ..errors import card_declined, invalid, missing_param
from ..ids import new_id
from ..messages import ApiRequest
from ..periods import add_interval
from ..router import Router
from ..state import EmulatorState
from ..wire import (
    LIST_PARAMS,
    RANGE,
    Bool,
    Choice,
    Int,
    ListOf,
    Metadata,
    Obj,
    Str,
    Unsupported,
    in_range,
    validate,
)
from .common import merge_metadata, not_found_in_params, page, show

ITEM = {
    "price": Str(),
    "quantity": Int(min_value=0),
    "metadata": Metadata(),
    "plan": Unsupported(),
    "price_data": Unsupported(),
    "tax_rates": Unsupported(),
    "discounts": Unsupported(),
    "billing_thresholds": Unsupported(),
}
COMMON = {
    "cancel_at_period_end": Bool(),
    "collection_method": Choice("charge_automatically", "send_invoice"),
    "days_until_due": Int(min_value=0),
    "default_payment_method": Str(emptyable=True),
    "description": Str(emptyable=True),
    "metadata": Metadata(),
    "off_session": Bool(),
    "payment_behavior": Choice("allow_incomplete", "default_incomplete", "error_if_incomplete"),
    "proration_behavior": Choice("create_prorations", "none", "always_invoice"),
    "cancel_at": Unsupported(),
    "trial_end": Unsupported(),
    "trial_period_days": Unsupported(),
    "discounts": Unsupported(),
    "default_tax_rates": Unsupported(),
    "automatic_tax": Unsupported(),
    "add_invoice_items": Unsupported(),
    "payment_settings": Unsupported(),
}
CREATE = {
    **COMMON,
    "customer": Str(required=True),
    "items": ListOf(Obj(ITEM), max_items=20),
    "billing_cycle_anchor": Int(),
    "currency": Str(),
    "billing_mode": Unsupported(),
    "backdate_start_date": Unsupported(),
}
STATUSES = (
    "active",
    "all",
    "canceled",
    "ended",
    "incomplete",
    "incomplete_expired",
    "past_due",
    "paused",
    "trialing",
    "unpaid",
)
LIST = {
    **LIST_PARAMS,
    "customer": Str(),
    "price": Str(),
    "status": Choice(*STATUSES),
    "test_clock": Str(),
    "created": RANGE,
    "collection_method": Choice("charge_automatically", "send_invoice"),
    "current_period_end": RANGE,
    "current_period_start": RANGE,
}


def plan_of(price: dict[str, Any]) -> dict[str, Any]:
    rec = price["recurring"]
    return {
        "id": price["id"],
        "object": "plan",
        "active": price["active"],
        "amount": price["unit_amount"],
        "amount_decimal": price["unit_amount_decimal"],
        "billing_scheme": price["billing_scheme"],
        "created": price["created"],
        "currency": price["currency"],
        "interval": rec["interval"],
        "interval_count": rec["interval_count"],
        "livemode": False,
        "metadata": dict(price["metadata"]),
        "meter": rec["meter"],
        "nickname": price["nickname"],
        "product": price["product"],
        "tiers_mode": price["tiers_mode"],
        "transform_usage": None,
        "trial_period_days": rec["trial_period_days"],
        "usage_type": rec["usage_type"],
    }


def recurring_price(state: EmulatorState, price_id: str | None, param: str) -> dict[str, Any]:
    if not price_id:
        raise missing_param(param)
    price = state.store.get("price", price_id)
    if price is None:
        raise not_found_in_params("price", price_id, param)
    if price["type"] != "recurring":
        raise invalid(
            "The price specified is set to `type=one_time` but this field only "
            "accepts prices with `type=recurring`.",
            param=param,
        )
    if not price["active"]:
        raise invalid(
            f"The price specified ({price_id}) is inactive. This field only accepts active prices.",
            param=param,
        )
    return price


def make_item(
    state: EmulatorState,
    sub_id: str,
    price: dict[str, Any],
    spec: dict[str, Any],
    start: int,
    end: int,
    now: int,
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": new_id("si", 14),
        "object": "subscription_item",
        "billing_thresholds": None,
        "created": now,
        "current_period_end": end,
        "current_period_start": start,
        "discounts": [],
        "metadata": merge_metadata({}, spec.get("metadata") or {}),
        "plan": plan_of(price),
        "price": copy.deepcopy(price),
        "subscription": sub_id,
        "tax_rates": [],
    }
    if price["recurring"]["usage_type"] == "licensed":
        item["quantity"] = spec.get("quantity", 1)
    elif spec.get("quantity") is not None:
        raise invalid(
            "Quantity should not be specified where usage_type is `metered`. "
            "Remove quantity from the request.",
            param="items[0][quantity]",
        )
    return item


def check_items(items: list[dict[str, Any]]) -> None:
    keys = {
        (
            i["price"]["currency"],
            i["price"]["recurring"]["interval"],
            i["price"]["recurring"]["interval_count"],
        )
        for i in items
    }
    if len(keys) > 1:
        raise invalid(
            "Currency and interval fields must match across all plans on this subscription.",
            param="items",
        )
    prices = [i["price"]["id"] for i in items]
    if len(prices) != len(set(prices)):
        raise invalid("Cannot add multiple subscription items with the same plan.", param="items")


def check_payment_method(state: EmulatorState, customer_id: str, pm_id: str | None) -> None:
    if pm_id is None:
        return
    pm = state.store.get("payment_method", pm_id)
    if pm is None or pm.get("customer") != customer_id:
        raise invalid(
            f"The customer does not have a payment method with the ID {pm_id}. The "
            "payment method must be attached to the customer.",
            param="default_payment_method",
        )


def _create(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    p = validate(req.params, CREATE)
    customer = state.store.get("customer", p["customer"])
    if customer is None:
        raise not_found_in_params("customer", p["customer"], "customer")
    specs = p.get("items") or []
    if not specs:
        raise missing_param("items")
    prices = [
        recurring_price(state, s.get("price"), f"items[{i}][price]") for i, s in enumerate(specs)
    ]
    check_payment_method(state, customer["id"], p.get("default_payment_method"))
    collection = p.get("collection_method", "charge_automatically")
    if collection == "send_invoice" and p.get("days_until_due") is None:
        raise missing_param("days_until_due")
    now = state.customer_now(customer["id"])
    anchor = p.get("billing_cycle_anchor") or now
    if anchor < now:
        raise invalid("billing_cycle_anchor cannot be in the past.", param="billing_cycle_anchor")
    rec = prices[0]["recurring"]
    cycle = 0 if anchor > now else 1
    end = add_interval(anchor, rec["interval"], rec["interval_count"] * cycle)
    sub_id = new_id("sub", 24)
    items = [
        make_item(state, sub_id, price, spec, now, end, now)
        for price, spec in zip(prices, specs, strict=True)
    ]
    check_items(items)
    sub: dict[str, Any] = {
        "id": sub_id,
        "object": "subscription",
        "application": None,
        "application_fee_percent": None,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
        "billing_cycle_anchor": anchor,
        "billing_cycle_anchor_config": None,
        "billing_mode": {"flexible": None, "type": "classic", "updated_at": None},
        "billing_thresholds": None,
        "cancel_at": None,
        "cancel_at_period_end": False,
        "canceled_at": None,
        "cancellation_details": {"comment": None, "feedback": None, "reason": None},
        "collection_method": collection,
        "created": now,
        "currency": prices[0]["currency"],
        "customer": customer["id"],
        "days_until_due": p.get("days_until_due"),
        "default_payment_method": p.get("default_payment_method"),
        "default_source": None,
        "default_tax_rates": [],
        "description": p.get("description"),
        "discounts": [],
        "ended_at": None,
        "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
        "items": {
            "object": "list",
            "data": items,
            "has_more": False,
            "total_count": len(items),
            "url": f"/v1/subscription_items?subscription={sub_id}",
        },
        "latest_invoice": None,
        "livemode": False,
        "metadata": merge_metadata({}, p.get("metadata") or {}),
        "next_pending_invoice_item_invoice": None,
        "on_behalf_of": None,
        "pause_collection": None,
        "payment_settings": {
            "payment_method_options": None,
            "payment_method_types": None,
            "save_default_payment_method": "off",
        },
        "pending_invoice_item_interval": None,
        "pending_setup_intent": None,
        "pending_update": None,
        "schedule": None,
        "start_date": now,
        "status": "active",
        "test_clock": customer.get("test_clock"),
        "transfer_data": None,
        "trial_end": None,
        "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
        "trial_start": None,
    }
    invoice = invoice_shapes.new_invoice(
        state,
        sub,
        customer,
        billing_reason="subscription_create",
        period_start=now,
        period_end=now,
        created=now,
    )
    proration = None
    if cycle == 0 and p.get("proration_behavior", "create_prorations") != "none":
        full = end - add_interval(end, rec["interval"], -rec["interval_count"])
        proration = Decimal(end - now) / Decimal(full)
    lines = invoicing.subscription_lines(
        state, sub, invoice["id"], usage=None, advance=(now, end), proration=proration
    )
    for item in items:
        if item["price"]["recurring"]["usage_type"] == "metered":
            lines.append(
                invoice_shapes.make_line(
                    state, invoice["id"], sub_id, item["id"], item["price"], 0, now, end
                )
            )
    invoicing.set_lines(invoice, lines)
    behavior = p.get("payment_behavior", "allow_incomplete")
    charge = invoice["amount_due"] > 0 and collection == "charge_automatically"
    if charge:
        pm = sub["default_payment_method"] or payments.default_payment_method(state, customer)
        decline = payments.charge_outcome(state, customer, pm)
        if decline and behavior == "error_if_incomplete":
            raise card_declined(decline, payments.DECLINE_MESSAGES.get(decline, "Declined."))
        if decline or behavior == "default_incomplete":
            sub["status"] = "incomplete"
    sub["latest_invoice"] = invoice["id"]
    state.store.put("subscription", sub)
    state.store.aux(sub_id)["cycle"] = cycle
    events.emit(state, "customer.subscription.created", sub)
    invoicing.issue(state, sub, invoice, now, charge=behavior != "default_incomplete")
    return show(state, req, sub)


def _retrieve(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    validate(req.params, {})
    return show(state, req, state.store.require("subscription", req.arg("id")))


def _list(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    p = validate(req.params, LIST)
    status = p.get("status")

    def status_ok(sub: dict[str, Any]) -> bool:
        if status is None:
            return sub["status"] not in ("canceled", "incomplete_expired")
        if status == "all":
            return True
        if status == "ended":
            return sub["status"] in ("canceled", "incomplete_expired")
        return bool(sub["status"] == status)

    items = [
        s
        for s in state.store.all("subscription")
        if status_ok(s)
        and ("customer" not in p or s["customer"] == p["customer"])
        and ("test_clock" not in p or s["test_clock"] == p["test_clock"])
        and ("collection_method" not in p or s["collection_method"] == p["collection_method"])
        and ("price" not in p or any(i["price"]["id"] == p["price"] for i in s["items"]["data"]))
        and in_range(s["created"], p.get("created"))
        and in_range(s["items"]["data"][0]["current_period_end"], p.get("current_period_end"))
        and in_range(s["items"]["data"][0]["current_period_start"], p.get("current_period_start"))
    ]
    return page(state, req, items, p, "subscription")


def _item_list(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    p = validate(req.params, {**LIST_PARAMS, "subscription": Str(required=True)})
    sub = state.store.require("subscription", p["subscription"], param="subscription", status=400)
    return page(state, req, list(sub["items"]["data"]), p, "subscription_item")


def _item_retrieve(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    validate(req.params, {})
    for sub in state.store.all("subscription"):
        for item in sub["items"]["data"]:
            if item["id"] == req.arg("id"):
                return show(state, req, item)
    return show(state, req, state.store.require("subscription_item", req.arg("id")))


def register(router: Router) -> None:
    router.post("/v1/subscriptions", _create)
    router.get("/v1/subscriptions", _list)
    router.get("/v1/subscriptions/{id}", _retrieve)
    router.get("/v1/subscription_items", _item_list)
    router.get("/v1/subscription_items/{id}", _item_retrieve)
