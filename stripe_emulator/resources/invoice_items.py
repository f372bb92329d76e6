"""Invoice items (``/v1/invoiceitems``): one-off charges that join the customer's next invoice.

An item created without ``invoice`` is *pending* (``invoice: null``): the next invoice created
for the customer takes it (with ``subscription`` set, only that subscription's next invoice). The
emulator supports the amount form (``amount`` + ``currency``) and the unit form (``quantity`` +
``unit_amount_decimal``); prices, discounts and taxes on items are not modelled.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from .. import events
from ..errors import invalid
from ..ids import new_id
from ..messages import ApiRequest
from ..router import Router
from ..state import EmulatorState
from ..wire import (
    LIST_PARAMS,
    RANGE,
    Bool,
    Dec,
    Int,
    Metadata,
    Obj,
    Str,
    Unsupported,
    in_range,
    validate,
)
from .common import deleted, not_found_in_params, page, require_param, show

CREATE = {
    "customer": Str(),
    "amount": Int(),
    "currency": Str(max_len=3),
    "description": Str(max_len=5000),
    "metadata": Metadata(),
    "period": Obj({"start": Int(required=True), "end": Int(required=True)}),
    "subscription": Str(),
    "quantity": Int(min_value=0),
    "unit_amount_decimal": Dec(),
    "discountable": Bool(),
    "invoice": Unsupported(),
    "pricing": Unsupported(),
    "price_data": Unsupported(),
    "quantity_decimal": Unsupported(),
    "discounts": Unsupported(),
    "tax_rates": Unsupported(),
    "tax_behavior": Unsupported(),
    "tax_code": Unsupported(),
    "customer_account": Unsupported(),
}
LIST = {
    **LIST_PARAMS,
    "customer": Str(),
    "invoice": Str(),
    "pending": Bool(),
    "created": RANGE,
}


def _create(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    p = validate(req.params, CREATE)
    customer_id = require_param(p, "customer")
    customer = state.store.get("customer", customer_id)
    if customer is None:
        raise not_found_in_params("customer", customer_id, "customer")
    sub_id = p.get("subscription")
    if sub_id is not None:
        sub = state.store.get("subscription", sub_id)
        if sub is None:
            raise not_found_in_params("subscription", sub_id, "subscription")
        if sub["customer"] != customer_id:
            raise invalid(
                "The subscription does not belong to this customer.", param="subscription"
            )
    if "amount" in p and ("quantity" in p or "unit_amount_decimal" in p):
        raise invalid(
            "You may only specify one of these parameters: amount, unit_amount_decimal.",
            param="amount",
        )
    if "amount" in p:
        quantity, unit = 1, Decimal(p["amount"])
    elif "unit_amount_decimal" in p:
        quantity, unit = int(p.get("quantity", 1)), Decimal(p["unit_amount_decimal"])
    else:
        raise invalid(
            "Must provide one of amount or unit_amount_decimal (prices on invoice items are "
            "not supported by the emulator).",
            param="amount",
            code="parameter_missing",
        )
    amount = int((unit * quantity).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    now = state.customer_now(customer_id)
    period = p.get("period") or {"start": now, "end": now}
    if period["end"] < period["start"]:
        raise invalid("The period end must be at or after its start.", param="period[end]")
    item: dict[str, Any] = {
        "id": new_id("ii", 24),
        "object": "invoiceitem",
        "amount": amount,
        "currency": (p.get("currency") or "usd").lower(),
        "customer": customer_id,
        "date": now,
        "description": p.get("description"),
        "discountable": bool(p.get("discountable", amount >= 0)),
        "discounts": [],
        "invoice": None,
        "livemode": False,
        "metadata": p.get("metadata") or {},
        "net_amount": amount,
        "parent": None
        if sub_id is None
        else {
            "subscription_details": {"subscription": sub_id, "subscription_item": None},
            "type": "subscription_details",
        },
        "period": {"start": period["start"], "end": period["end"]},
        "pricing": {
            "price_details": None,
            "type": "price_details",
            "unit_amount_decimal": str(unit),
        },
        "proration": False,
        "proration_details": {"discount_amounts": []},
        "quantity": quantity,
        "quantity_decimal": str(quantity),
        "tax_rates": [],
        "test_clock": customer.get("test_clock"),
    }
    state.store.put("invoiceitem", item)
    events.emit(state, "invoiceitem.created", item)
    return show(state, req, item)


def _list(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    p = validate(req.params, LIST)
    items = [
        item
        for item in state.store.all("invoiceitem")
        if ("customer" not in p or item["customer"] == p["customer"])
        and ("invoice" not in p or item["invoice"] == p["invoice"])
        and ("pending" not in p or (item["invoice"] is None) == p["pending"])
        and in_range(item["date"], p.get("created"))
    ]
    return page(state, req, items, p, "invoiceitem")


def _retrieve(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    validate(req.params, {})
    return show(state, req, state.store.require("invoiceitem", req.arg("id")))


def _delete(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    validate(req.params, {})
    item = state.store.require("invoiceitem", req.arg("id"))
    if item["invoice"] is not None:
        raise invalid(
            "This invoice item is attached to an invoice and cannot be deleted.",
            code="invoice_not_editable",
        )
    state.store.delete("invoiceitem", item["id"])
    events.emit(state, "invoiceitem.deleted", item)
    return deleted(item["id"], "invoiceitem")


def register(router: Router) -> None:
    router.post("/v1/invoiceitems", _create)
    router.get("/v1/invoiceitems", _list)
    router.get("/v1/invoiceitems/{id}", _retrieve)
    router.delete("/v1/invoiceitems/{id}", _delete)
