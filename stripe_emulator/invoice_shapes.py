"""Invoice and invoice line objects in the shapes of API version 2026-10-28.endive."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from .ids import new_id
from .state import EmulatorState
from .tiers import line_amount


def new_invoice(
    state: EmulatorState,
    sub: dict[str, Any] | None,
    customer: dict[str, Any],
    *,
    billing_reason: str,
    period_start: int,
    period_end: int,
    created: int,
    invoice_id: str | None = None,
) -> dict[str, Any]:
    invoice_id = invoice_id or new_id("in", 24)
    parent = None
    if sub is not None:
        parent = {
            "quote_details": None,
            "subscription_details": {"metadata": dict(sub["metadata"]), "subscription": sub["id"]},
            "type": "subscription_details",
        }
    collection = sub["collection_method"] if sub else "charge_automatically"
    return {
        "id": invoice_id,
        "object": "invoice",
        "account_country": "US",
        "account_name": state.config.account_name,
        "account_tax_ids": None,
        "amount_due": 0,
        "amount_overpaid": 0,
        "amount_paid": 0,
        "amount_remaining": 0,
        "amount_shipping": 0,
        "application": None,
        "attempt_count": 0,
        "attempted": False,
        "auto_advance": True,
        "automatic_tax": {
            "disabled_reason": None,
            "enabled": False,
            "liability": None,
            "provider": None,
            "status": None,
        },
        "automatically_finalizes_at": None,
        "billing_reason": billing_reason,
        "collection_method": collection,
        "confirmation_secret": None,
        "created": created,
        "currency": sub["currency"] if sub else "usd",
        "custom_fields": None,
        "customer": customer["id"],
        "customer_address": customer.get("address"),
        "customer_email": customer.get("email"),
        "customer_name": customer.get("name"),
        "customer_phone": customer.get("phone"),
        "customer_shipping": None,
        "customer_tax_exempt": customer.get("tax_exempt", "none"),
        "customer_tax_ids": [],
        "default_payment_method": sub.get("default_payment_method") if sub else None,
        "default_source": None,
        "default_tax_rates": [],
        "description": None,
        "discounts": [],
        "due_date": None,
        "effective_at": None,
        "ending_balance": None,
        "footer": customer.get("invoice_settings", {}).get("footer"),
        "from_invoice": None,
        "hosted_invoice_url": None,
        "invoice_pdf": None,
        "issuer": {"type": "self"},
        "last_finalization_error": None,
        "latest_revision": None,
        "lines": {
            "object": "list",
            "data": [],
            "has_more": False,
            "total_count": 0,
            "url": f"/v1/invoices/{invoice_id}/lines",
        },
        "livemode": False,
        "metadata": {},
        "next_payment_attempt": None,
        "number": None,
        "on_behalf_of": None,
        "parent": parent,
        "payment_settings": {
            "default_mandate": None,
            "payment_method_options": None,
            "payment_method_types": None,
        },
        "period_end": period_end,
        "period_start": period_start,
        "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0,
        "receipt_number": None,
        "rendering": None,
        "shipping_cost": None,
        "shipping_details": None,
        "starting_balance": 0,
        "statement_descriptor": None,
        "status": "draft",
        "status_transitions": {
            "finalized_at": None,
            "marked_uncollectible_at": None,
            "paid_at": None,
            "voided_at": None,
        },
        "subtotal": 0,
        "subtotal_excluding_tax": 0,
        "test_clock": customer.get("test_clock"),
        "total": 0,
        "total_discount_amounts": [],
        "total_excluding_tax": 0,
        "total_pretax_credit_amounts": [],
        "total_taxes": [],
        "webhooks_delivered_at": created,
    }


def money(cents: Decimal | int, currency: str = "usd") -> str:
    value = Decimal(cents) / 100
    text = f"{value:,.2f}" if value == value.quantize(Decimal("0.01")) else f"{value:,f}"
    return ("$" if currency == "usd" else f"{currency.upper()} ") + text


def make_line(
    state: EmulatorState,
    invoice_id: str,
    sub_id: str | None,
    item_id: str | None,
    price: dict[str, Any],
    quantity: int,
    start: int,
    end: int,
    *,
    amount: int | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    product = state.store.get("product", price["product"]) or {"name": price["product"]}
    if amount is None:
        amount = line_amount(price, quantity)
    if description is None:
        if price["billing_scheme"] == "tiered":
            description = f"{quantity} × {product['name']} (tiered pricing)"
        else:
            unit = money(Decimal(price["unit_amount_decimal"]), price["currency"])
            per = f" / {price['recurring']['interval']}" if price.get("recurring") else ""
            description = f"{quantity} × {product['name']} (at {unit}{per})"
    parent = None
    if sub_id is not None:
        parent = {
            "invoice_item_details": None,
            "subscription_item_details": {
                "invoice_item": None,
                "proration": False,
                "proration_details": {"credited_items": None},
                "subscription": sub_id,
                "subscription_item": item_id,
            },
            "type": "subscription_item_details",
        }
    return {
        "id": new_id("il", 24),
        "object": "line_item",
        "amount": amount,
        "currency": price["currency"],
        "description": description,
        "discount_amounts": [],
        "discountable": True,
        "discounts": [],
        "invoice": invoice_id,
        "livemode": False,
        "metadata": {},
        "parent": parent,
        "period": {"end": end, "start": start},
        "pretax_credit_amounts": [],
        "pricing": {
            "price_details": {"price": price["id"], "product": price["product"]},
            "type": "price_details",
            "unit_amount_decimal": price.get("unit_amount_decimal"),
        },
        "quantity": quantity,
        "quantity_decimal": str(quantity),
        "subtotal": amount,
        "taxes": [],
    }


def item_line(item: dict[str, Any], invoice_id: str | None) -> dict[str, Any]:
    """The invoice line of a pending invoice item (``parent.type: invoice_item_details``)."""
    parent = item.get("parent") or {}
    sub_id = (parent.get("subscription_details") or {}).get("subscription")
    return {
        "id": new_id("il", 24),
        "object": "line_item",
        "amount": item["amount"],
        "currency": item["currency"],
        "description": item["description"],
        "discount_amounts": [],
        "discountable": item["discountable"],
        "discounts": [],
        "invoice": invoice_id,
        "livemode": False,
        "metadata": dict(item["metadata"]),
        "parent": {
            "invoice_item_details": {
                "invoice_item": item["id"],
                "proration": False,
                "proration_details": {"credited_items": None},
                "subscription": sub_id,
            },
            "subscription_item_details": None,
            "type": "invoice_item_details",
        },
        "period": dict(item["period"]),
        "pretax_credit_amounts": [],
        "pricing": dict(item["pricing"]),
        "quantity": item["quantity"],
        "quantity_decimal": item["quantity_decimal"],
        "subtotal": item["amount"],
        "taxes": [],
    }
