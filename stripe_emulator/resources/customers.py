"""Customers (``/v1/customers``) and payment methods (``/v1/payment_methods``)."""

from __future__ import annotations

from typing import Any

from .. import events, invoicing, payments
from ..errors import StripeError, invalid
from ..ids import new_id, random_token
from ..messages import ApiRequest
from ..router import Router
from ..state import EmulatorState
from ..wire import (
    LIST_PARAMS,
    RANGE,
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
from .common import deleted, diff, merge_metadata, not_found_in_params, page, set_fields, show

ADDRESS = Obj(
    {k: Str(emptyable=True) for k in ("city", "country", "line1", "line2", "postal_code", "state")},
    emptyable=True,
)
INVOICE_SETTINGS = Obj(
    {
        "default_payment_method": Str(emptyable=True),
        "footer": Str(emptyable=True),
        "custom_fields": Unsupported(),
        "rendering_options": Unsupported(),
    },
    emptyable=True,
)
COMMON = {
    "address": ADDRESS,
    "balance": Int(),
    "description": Str(emptyable=True),
    "email": Str(max_len=512, emptyable=True),
    "invoice_prefix": Str(max_len=12, emptyable=True),
    "invoice_settings": INVOICE_SETTINGS,
    "metadata": Metadata(),
    "name": Str(max_len=256, emptyable=True),
    "next_invoice_sequence": Int(min_value=1),
    "phone": Str(max_len=20, emptyable=True),
    "preferred_locales": ListOf(Str(), emptyable=True),
    "tax_exempt": Choice("none", "exempt", "reverse", emptyable=True),
    "shipping": Unsupported(),
    "tax": Unsupported(),
    "cash_balance": Unsupported(),
    "source": Unsupported(),
}
CREATE = {**COMMON, "payment_method": Str(), "test_clock": Str(), "tax_id_data": Unsupported()}
UPDATE = {**COMMON, "default_source": Unsupported()}
LIST = {**LIST_PARAMS, "email": Str(max_len=512), "created": RANGE, "test_clock": Str()}


def _create(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    p = validate(req.params, CREATE)
    clock_id = p.get("test_clock")
    clock: dict[str, Any] | None = None
    if clock_id:
        clock = state.store.get("test_helpers.test_clock", clock_id)
        if clock is None:
            raise not_found_in_params("test_clock", clock_id, "test_clock")
        members = [c for c in state.store.all("customer") if c.get("test_clock") == clock_id]
        if len(members) >= 3:
            raise invalid(
                "You can only attach up to 3 customers to a test clock.", param="test_clock"
            )
    customer_id = new_id("cus", 14)
    created = int(clock["frozen_time"]) if clock is not None else state.now()
    customer: dict[str, Any] = {
        "id": customer_id,
        "object": "customer",
        "address": None,
        "balance": 0,
        "created": created,
        "currency": None,
        "default_source": None,
        "delinquent": False,
        "description": None,
        "discount": None,
        "email": None,
        "invoice_prefix": random_token(8).upper(),
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": None,
            "footer": None,
            "rendering_options": None,
        },
        "livemode": False,
        "metadata": {},
        "name": None,
        "next_invoice_sequence": 1,
        "phone": None,
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": clock_id,
    }
    state.store.put("customer", customer)
    token_map: dict[str, str] = {}
    pm_param = p.get("payment_method")
    if pm_param:
        try:
            token_map[pm_param] = _attach(state, pm_param, customer_id, "payment_method")["id"]
        except StripeError:
            state.store.delete("customer", customer_id)
            raise
    try:
        _apply(state, customer, p, token_map)
    except StripeError:
        state.store.delete("customer", customer_id)
        raise
    events.emit(state, "customer.created", customer)
    return show(state, req, customer)


def _apply(
    state: EmulatorState, customer: dict[str, Any], p: dict[str, Any], token_map: dict[str, str]
) -> None:
    set_fields(
        customer,
        p,
        "address",
        "balance",
        "description",
        "email",
        "name",
        "phone",
        "next_invoice_sequence",
    )
    if "tax_exempt" in p:
        customer["tax_exempt"] = p["tax_exempt"] or "none"
    if "preferred_locales" in p:
        customer["preferred_locales"] = p["preferred_locales"] or []
    if p.get("invoice_prefix"):
        customer["invoice_prefix"] = p["invoice_prefix"]
    if "metadata" in p:
        customer["metadata"] = merge_metadata(customer["metadata"], p["metadata"])
    if "invoice_settings" in p:
        settings = dict(customer["invoice_settings"])
        given = p["invoice_settings"] or {}
        if "footer" in given:
            settings["footer"] = given["footer"]
        if "default_payment_method" in given:
            pm_id = given["default_payment_method"]
            if pm_id is not None:
                pm_id = token_map.get(pm_id, pm_id)
                pm = state.store.get("payment_method", pm_id)
                if pm is None or pm.get("customer") != customer["id"]:
                    raise invalid(
                        f"The customer does not have a payment method with the ID {pm_id}. The "
                        "payment method must be attached to the customer.",
                        param="invoice_settings[default_payment_method]",
                    )
            settings["default_payment_method"] = pm_id
        customer["invoice_settings"] = settings


def _retrieve(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    validate(req.params, {})
    customer_id = req.arg("id")
    customer = state.store.get("customer", customer_id)
    if customer is None:
        if state.store.internal.get(customer_id, {}).get("deleted"):
            return deleted(customer_id, "customer")
        customer = state.store.require("customer", customer_id)
    return show(state, req, customer)


def _update(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    p = validate(req.params, UPDATE)
    customer = state.store.require("customer", req.arg("id"))
    before = {k: v for k, v in customer.items()}
    _apply(state, customer, p, {})
    changes = diff(before, customer)
    if changes:
        events.emit(state, "customer.updated", customer, changes)
    return show(state, req, customer)


def _delete(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    validate(req.params, {})
    customer = state.store.require("customer", req.arg("id"))
    for sub in state.store.all("subscription"):
        if sub["customer"] == customer["id"] and sub["status"] not in (
            "canceled",
            "incomplete_expired",
        ):
            invoicing.end_subscription(
                state, sub, state.customer_now(customer["id"]), reason="cancellation_requested"
            )
    state.store.delete("customer", customer["id"])
    state.store.aux(customer["id"])["deleted"] = True
    events.emit(state, "customer.deleted", customer)
    return deleted(customer["id"], "customer")


def _list(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    p = validate(req.params, LIST)
    items = [
        c
        for c in state.store.all("customer")
        if ("email" not in p or c.get("email") == p["email"])
        and ("test_clock" not in p or c.get("test_clock") == p["test_clock"])
        and in_range(c["created"], p.get("created"))
    ]
    return page(state, req, items, p, "customer")


# -- payment methods -----------------------------------------------------------------------
def _attach(state: EmulatorState, pm_id: str, customer_id: str, param: str) -> dict[str, Any]:
    if payments.is_test_token(pm_id):
        return payments.create_from_token(state, pm_id, customer_id)
    pm = state.store.get("payment_method", pm_id)
    if pm is None:
        raise not_found_in_params("PaymentMethod", pm_id, param)
    if pm.get("customer") and pm["customer"] != customer_id:
        raise invalid(
            "The payment method you provided has already been attached to a customer.",
            param=param,
        )
    pm["customer"] = customer_id
    return pm


def _pm_attach(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    p = validate(req.params, {"customer": Str(required=True)})
    state.store.require("customer", p["customer"], param="customer", status=400)
    pm = _attach(state, req.arg("id"), p["customer"], "id")
    return show(state, req, pm)


def _pm_detach(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    validate(req.params, {})
    pm = state.store.require("payment_method", req.arg("id"))
    owner = state.store.get("customer", pm.get("customer") or "")
    if owner and owner["invoice_settings"].get("default_payment_method") == pm["id"]:
        owner["invoice_settings"]["default_payment_method"] = None
    pm["customer"] = None
    return show(state, req, pm)


def _pm_retrieve(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    validate(req.params, {})
    if payments.is_test_token(req.arg("id")):
        pm = payments.create_from_token(state, req.arg("id"), None)
        return show(state, req, pm)
    return show(state, req, state.store.require("payment_method", req.arg("id")))


def _pm_list(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    p = validate(req.params, {**LIST_PARAMS, "customer": Str(), "type": Str()})
    customer = req.path_params.get("id") or p.get("customer")
    if customer:
        state.store.require("customer", customer, param="customer", status=404)
    items = [
        pm
        for pm in state.store.all("payment_method")
        if (customer is None or pm.get("customer") == customer)
        and p.get("type", "card") == pm["type"]
    ]
    return page(state, req, items, p, "payment_method")


def register(router: Router) -> None:
    router.post("/v1/customers", _create)
    router.get("/v1/customers", _list)
    router.get("/v1/customers/{id}", _retrieve)
    router.post("/v1/customers/{id}", _update)
    router.delete("/v1/customers/{id}", _delete)
    router.get("/v1/customers/{id}/payment_methods", _pm_list)
    router.get("/v1/payment_methods", _pm_list)
    router.get("/v1/payment_methods/{id}", _pm_retrieve)
    router.post("/v1/payment_methods/{id}/attach", _pm_attach)
    router.post("/v1/payment_methods/{id}/detach", _pm_detach)
