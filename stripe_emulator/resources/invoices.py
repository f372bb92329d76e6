"""Invoices (``/v1/invoices``): create (a one-off draft), list, retrieve, lines, create_preview,
finalize, pay, void."""

from __future__ import annotations

from typing import Any

from .. import billing_cycle, events, invoicing, payments
from ..errors import StripeError, card_declined, invalid
from ..invoice_shapes import new_invoice
from ..messages import ApiRequest
from ..router import Router
from ..state import EmulatorState
from ..wire import (
    LIST_PARAMS,
    RANGE,
    Bool,
    Choice,
    Metadata,
    Str,
    Unsupported,
    in_range,
    validate,
)
from .common import merge_metadata, not_found_in_params, page, require_param, show

CREATE = {
    "customer": Str(),
    "auto_advance": Bool(),
    "collection_method": Choice("charge_automatically", "send_invoice"),
    "currency": Str(max_len=3),
    "description": Str(max_len=1500),
    "metadata": Metadata(),
    "pending_invoice_items_behavior": Choice("exclude", "include"),
}

LIST = {
    **LIST_PARAMS,
    "customer": Str(),
    "subscription": Str(),
    "status": Choice("draft", "open", "paid", "uncollectible", "void"),
    "collection_method": Choice("charge_automatically", "send_invoice"),
    "created": RANGE,
    "due_date": RANGE,
}
PREVIEW = {
    "customer": Str(),
    "subscription": Str(),
    "currency": Str(),
    "preview_mode": Choice("next", "recurring"),
    "subscription_details": Unsupported(),
    "invoice_items": Unsupported(),
    "customer_details": Unsupported(),
    "discounts": Unsupported(),
    "automatic_tax": Unsupported(),
    "schedule": Unsupported(),
    "schedule_details": Unsupported(),
}
PAY = {
    "payment_method": Str(),
    "paid_out_of_band": Bool(),
    "off_session": Bool(),
    "forgive": Bool(),
    "source": Unsupported(),
    "mandate": Unsupported(),
}


def _create(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    """A one-off draft for a customer: with ``pending_invoice_items_behavior=include`` it takes
    the customer's pending items that no subscription holds (the default, ``exclude``, none).
    ``auto_advance`` defaults to false, as Stripe's does for an invoice made by the API."""
    p = validate(req.params, CREATE)
    customer_id = require_param(p, "customer")
    customer = state.store.get("customer", customer_id)
    if customer is None:
        raise not_found_in_params("customer", customer_id, "customer")
    now = state.customer_now(customer_id)
    invoice = new_invoice(
        state,
        None,
        customer,
        billing_reason="manual",
        period_start=now,
        period_end=now,
        created=now,
    )
    invoice["auto_advance"] = p.get("auto_advance", False)
    invoice["collection_method"] = p.get("collection_method", "charge_automatically")
    invoice["description"] = p.get("description")
    invoice["metadata"] = merge_metadata({}, p.get("metadata") or {})
    lines = []
    if p.get("pending_invoice_items_behavior") == "include":
        lines = invoicing.pending_item_lines(state, customer_id, None, invoice["id"])
    invoicing.set_lines(invoice, lines)
    invoicing.save_invoice(state, invoice)
    events.emit(state, "invoice.created", invoice)
    return show(state, req, invoice)


def _list(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    p = validate(req.params, LIST)
    items = [
        inv
        for inv in state.store.all("invoice")
        if ("customer" not in p or inv["customer"] == p["customer"])
        and ("subscription" not in p or invoicing.sub_id_of(inv) == p["subscription"])
        and ("status" not in p or inv["status"] == p["status"])
        and ("collection_method" not in p or inv["collection_method"] == p["collection_method"])
        and in_range(inv["created"], p.get("created"))
        and (
            p.get("due_date") is None
            or (inv["due_date"] is not None and in_range(inv["due_date"], p["due_date"]))
        )
    ]
    return page(state, req, items, p, "invoice")


def _retrieve(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    validate(req.params, {})
    return show(state, req, state.store.require("invoice", req.arg("id")))


def _lines(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    p = validate(req.params, LIST_PARAMS)
    invoice = state.store.require("invoice", req.arg("id"))
    return page(state, req, invoice["lines"]["data"], p, "line_item")


def _update(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    p = validate(
        req.params,
        {
            "metadata": Metadata(),
            "description": Str(emptyable=True),
            "auto_advance": Bool(),
            "footer": Str(emptyable=True),
        },
    )
    invoice = state.store.require("invoice", req.arg("id"))
    if "metadata" in p:
        invoice["metadata"] = merge_metadata(invoice["metadata"], p["metadata"])
    for key in ("description", "footer"):
        if key in p:
            invoice[key] = p[key]
    if "auto_advance" in p:
        invoice["auto_advance"] = p["auto_advance"]
    return show(state, req, invoice)


def _create_preview(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    p = validate(req.params, PREVIEW)
    if not p.get("customer") and not p.get("subscription"):
        raise invalid(
            "Must provide either customer or subscription.",
            param="customer",
            code="parameter_missing",
        )
    if p.get("subscription"):
        sub = state.store.get("subscription", p["subscription"])
        if sub is None:
            raise not_found_in_params("subscription", p["subscription"], "subscription")
        if p.get("customer") and p["customer"] != sub["customer"]:
            raise invalid(
                "The subscription does not belong to this customer.", param="subscription"
            )
    else:
        if state.store.get("customer", p["customer"]) is None:
            raise not_found_in_params("customer", p["customer"], "customer")
        subs = [
            s
            for s in state.store.all("subscription")
            if s["customer"] == p["customer"] and s["status"] in billing_cycle.LIVE
        ]
        if not subs:
            raise StripeError(
                400,
                f"No upcoming invoices for customer: {p['customer']}",
                code="invoice_upcoming_none",
            )
        sub = subs[-1]
    if sub["status"] not in billing_cycle.LIVE:
        raise StripeError(
            400, f"No upcoming invoices for subscription: {sub['id']}", code="invoice_upcoming_none"
        )
    preview = billing_cycle.preview_invoice(state, sub, state.customer_now(sub["customer"]))
    preview["id"] = f"upcoming_in_{sub['id'][4:]}"
    return show(state, req, preview)


def _finalize(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    p = validate(req.params, {"auto_advance": Bool()})
    invoice = state.store.require("invoice", req.arg("id"))
    if invoice["status"] != "draft":
        raise invalid(
            "This invoice is already finalized, you can't re-finalize a non-draft invoice.",
            code="invoice_not_editable",
        )
    if "auto_advance" in p:
        invoice["auto_advance"] = p["auto_advance"]
    now = state.customer_now(invoice["customer"])
    sub_id = invoicing.sub_id_of(invoice)
    sub = state.store.get("subscription", sub_id) if sub_id else None
    if sub is not None:
        billing_cycle.refresh_usage(state, invoice, sub)
    invoicing.finalize(state, invoice, now)
    return show(state, req, invoice)


def _pay(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    p = validate(req.params, PAY)
    invoice = state.store.require("invoice", req.arg("id"))
    now = state.customer_now(invoice["customer"])
    if invoice["status"] == "paid":
        raise invalid("Invoice is already paid", code="invoice_already_paid")
    if invoice["status"] == "void":
        raise invalid(
            "This invoice can no longer be paid because it was voided.", code="invoice_not_editable"
        )
    if invoice["status"] == "draft":
        sub_id = invoicing.sub_id_of(invoice)
        sub = state.store.get("subscription", sub_id) if sub_id else None
        if sub is not None:
            billing_cycle.refresh_usage(state, invoice, sub)
        invoicing.finalize(state, invoice, now)
        if invoice["status"] == "paid":
            return show(state, req, invoice)
    pm = p.get("payment_method")
    if pm is not None:
        if payments.is_test_token(pm):
            pm = payments.create_from_token(state, pm, invoice["customer"])["id"]
        found = state.store.get("payment_method", pm)
        if found is None:
            raise not_found_in_params("PaymentMethod", pm, "payment_method")
    if p.get("paid_out_of_band") or p.get("forgive"):
        invoicing.mark_paid(state, invoice, now)
        return show(state, req, invoice)
    decline = invoicing.attempt_payment(state, invoice, now, automatic=False, payment_method=pm)
    if decline is not None:
        raise card_declined(decline, payments.DECLINE_MESSAGES.get(decline, "Declined."))
    return show(state, req, invoice)


def _void(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    validate(req.params, {})
    invoice = state.store.require("invoice", req.arg("id"))
    if invoice["status"] not in ("open", "uncollectible"):
        raise invalid(
            f"You can only void open invoices (this one is {invoice['status']}).",
            code="invoice_not_editable",
        )
    invoicing.void(state, invoice, state.customer_now(invoice["customer"]))
    return show(state, req, invoice)


def _uncollectible(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    validate(req.params, {})
    invoice = state.store.require("invoice", req.arg("id"))
    if invoice["status"] != "open":
        raise invalid(
            "You can only mark open invoices as uncollectible.", code="invoice_not_editable"
        )
    invoice["status"] = "uncollectible"
    invoice["next_payment_attempt"] = None
    invoice["status_transitions"]["marked_uncollectible_at"] = state.customer_now(
        invoice["customer"]
    )
    return show(state, req, invoice)


def register(router: Router) -> None:
    router.post("/v1/invoices", _create)
    router.get("/v1/invoices", _list)
    router.post("/v1/invoices/create_preview", _create_preview)
    router.get("/v1/invoices/{id}", _retrieve)
    router.post("/v1/invoices/{id}", _update)
    router.get("/v1/invoices/{id}/lines", _lines)
    router.post("/v1/invoices/{id}/finalize", _finalize)
    router.post("/v1/invoices/{id}/pay", _pay)
    router.post("/v1/invoices/{id}/void", _void)
    router.post("/v1/invoices/{id}/mark_uncollectible", _uncollectible)
