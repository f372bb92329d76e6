"""Invoices: lines priced through the tiers, finalization, payment attempts and the
subscription status changes that follow a payment (active / past_due / unpaid / canceled).

Dunning: after an automatic renewal payment fails the subscription becomes ``past_due`` and
the invoice is retried ``dunning_retry_days`` later (3, then 5, then 7 days by default); when
the last retry fails the subscription becomes ``dunning_final_status`` (``canceled`` by default;
the invoice stays ``open``). Paying the invoice later (``POST /v1/invoices/{id}/pay``) makes a
``past_due``/``unpaid`` subscription ``active`` again once it has no other unpaid invoice.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from . import events, payments
from .ids import random_token
from .invoice_shapes import item_line, make_line, new_invoice
from .metering import aggregate
from .state import EmulatorState
from .tiers import line_amount, to_cents


def save_invoice(state: EmulatorState, invoice: dict[str, Any]) -> None:
    """Store an invoice and index it under its subscription (for the billing cycle)."""
    state.store.put("invoice", invoice)
    sub_id = sub_id_of(invoice)
    if sub_id:
        state.store.aux(sub_id).setdefault("invoices", []).append(invoice["id"])


def usage_quantity(
    state: EmulatorState, price: dict[str, Any], customer_id: str, start: int, end: int
) -> int:
    meter = state.store.get("billing.meter", price["recurring"]["meter"])
    if meter is None or end <= start:
        return 0
    return max(0, int(aggregate(state, meter, customer_id, start, end)))


def subscription_lines(
    state: EmulatorState,
    sub: dict[str, Any],
    invoice_id: str,
    *,
    usage: tuple[int, int] | None,
    advance: tuple[int, int] | None,
    proration: Decimal | None = None,
) -> list[dict[str, Any]]:
    """Metered usage over ``usage`` (per item, from when it joined, plus items removed during
    the period) and licensed items billed in advance for ``advance``."""
    lines: list[dict[str, Any]] = []
    internal = state.store.aux(sub["id"])
    for item in sub["items"]["data"]:
        price = item["price"]
        if price["recurring"]["usage_type"] == "metered":
            if usage is not None:
                start = max(usage[0], state.store.aux(item["id"]).get("usage_from", usage[0]))
                qty = usage_quantity(state, price, sub["customer"], start, usage[1])
                line = make_line(
                    state, invoice_id, sub["id"], item["id"], price, qty, usage[0], usage[1]
                )
                _note_usage(state, invoice_id, line, start, usage[1])
                lines.append(line)
        elif advance is not None:
            qty = int(item.get("quantity") or 1)
            amount = line_amount(price, qty)
            if proration is not None:
                amount = to_cents(Decimal(amount) * proration)
            lines.append(
                make_line(
                    state,
                    invoice_id,
                    sub["id"],
                    item["id"],
                    price,
                    qty,
                    advance[0],
                    advance[1],
                    amount=amount,
                )
            )
    if usage is not None:
        for removed in internal.get("removed_items", []):
            price = removed["price"]
            start = max(usage[0], removed.get("usage_from", usage[0]))
            end = min(usage[1], removed["usage_until"])
            qty = usage_quantity(state, price, sub["customer"], start, end)
            line = make_line(
                state,
                invoice_id,
                sub["id"],
                removed["id"],
                price,
                qty,
                usage[0],
                min(usage[1], removed["removed_at"]),
            )
            _note_usage(state, invoice_id, line, start, end)
            lines.append(line)
    return lines


def _note_usage(
    state: EmulatorState, invoice_id: str, line: dict[str, Any], start: int, end: int
) -> None:
    """Remember which usage window a metered line prices (re-priced at finalization)."""
    if invoice_id:
        state.store.aux(invoice_id).setdefault("usage", {})[line["id"]] = [start, end]


def pending_item_lines(
    state: EmulatorState, customer_id: str, sub_id: str | None, invoice_id: str | None
) -> list[dict[str, Any]]:
    """Lines for the customer's pending invoice items that this subscription's next invoice
    takes (items tied to another subscription wait for that one's). With an ``invoice_id`` the
    items are attached to that invoice and stop being pending; without one (a preview) they stay."""
    lines = []
    for item in reversed(state.store.all("invoiceitem")):  # oldest first
        if item["customer"] != customer_id or item["invoice"] is not None:
            continue
        parent = item.get("parent") or {}
        owner = (parent.get("subscription_details") or {}).get("subscription")
        if owner is not None and owner != sub_id:
            continue
        if invoice_id:
            item["invoice"] = invoice_id
        lines.append(item_line(item, invoice_id))
    return lines


def set_lines(invoice: dict[str, Any], lines: list[dict[str, Any]]) -> None:
    total = sum(line["amount"] for line in lines)
    invoice["lines"]["data"] = lines
    invoice["lines"]["total_count"] = len(lines)
    for key in ("subtotal", "subtotal_excluding_tax", "total", "total_excluding_tax"):
        invoice[key] = total
    invoice["amount_due"] = max(total, 0)
    invoice["amount_remaining"] = max(total, 0) - invoice["amount_paid"]


def finalize(state: EmulatorState, invoice: dict[str, Any], at: int) -> None:
    customer = state.store.get("customer", invoice["customer"])
    prefix = customer["invoice_prefix"] if customer else "EMU"
    seq = customer["next_invoice_sequence"] if customer else state.store.next_counter("invoice")
    if customer:
        customer["next_invoice_sequence"] = seq + 1
    invoice["number"] = f"{prefix}-{seq:04d}"
    base = state.base_url.rstrip("/")
    token = random_token(20)
    invoice["hosted_invoice_url"] = f"{base}/emulator/i/{invoice['id']}?s={token}"
    invoice["invoice_pdf"] = f"{base}/emulator/i/{invoice['id']}/pdf?s={token}"
    invoice["status"] = "open"
    invoice["status_transitions"]["finalized_at"] = at
    invoice["effective_at"] = at
    invoice["ending_balance"] = 0
    invoice["automatically_finalizes_at"] = None
    if invoice["collection_method"] == "send_invoice":
        sub = state.store.get("subscription", sub_id_of(invoice) or "")
        days = (sub or {}).get("days_until_due") or 30
        invoice["due_date"] = at + int(days) * 86400
    events.emit(state, "invoice.finalized", invoice)
    if invoice["amount_due"] == 0:
        mark_paid(state, invoice, at)


def period_invoice(
    state: EmulatorState,
    sub: dict[str, Any],
    end: int,
    *,
    advance: tuple[int, int] | None,
    through_end: bool = False,
) -> dict[str, Any] | None:
    """The ``subscription_cycle`` draft for the current period up to ``end``, its lines set:
    metered usage, licensed items billed in advance for ``advance``, and the pending invoice
    items; ``None`` when there is nothing to bill. ``through_end`` (an immediate cancellation)
    counts usage up to and including the second ``end``, each usage line ending at ``end``."""
    customer = state.store.require("customer", sub["customer"])
    start = sub["items"]["data"][0]["current_period_start"]
    invoice = new_invoice(
        state,
        sub,
        customer,
        billing_reason="subscription_cycle",
        period_start=start,
        period_end=end,
        created=end,
    )
    usage_end = end + 1 if through_end else end
    lines = subscription_lines(state, sub, invoice["id"], usage=(start, usage_end), advance=advance)
    if through_end:
        for line in lines:
            line["period"]["end"] = end
    lines += pending_item_lines(state, sub["customer"], sub["id"], invoice["id"])
    state.store.aux(sub["id"])["removed_items"] = []
    if not lines:
        return None
    set_lines(invoice, lines)
    return invoice


def issue(
    state: EmulatorState,
    sub: dict[str, Any],
    invoice: dict[str, Any],
    at: int,
    *,
    finalizes_at: int | None = None,
    charge: bool = True,
) -> None:
    """Issue a subscription's invoice (its lines set): saved as the subscription's latest
    invoice, ``invoice.created``; then finalized and charged now, or, with ``finalizes_at``,
    left a draft that the billing cycle finalizes and charges then (a renewal's grace period).
    ``charge=False`` finalizes without a payment attempt (``default_incomplete`` creation)."""
    invoice["automatically_finalizes_at"] = finalizes_at
    save_invoice(state, invoice)
    sub["latest_invoice"] = invoice["id"]
    events.emit(state, "invoice.created", invoice)
    if finalizes_at is None:
        finalize_and_charge(state, invoice, at, automatic=False, charge=charge)


def finalize_and_charge(
    state: EmulatorState, invoice: dict[str, Any], at: int, *, automatic: bool, charge: bool = True
) -> None:
    """Finalize, then attempt the payment of an open invoice collected automatically
    (``automatic``: the billing cycle's attempt, which schedules dunning retries)."""
    finalize(state, invoice, at)
    if (
        charge
        and invoice["status"] == "open"
        and invoice["collection_method"] == "charge_automatically"
    ):
        attempt_payment(state, invoice, at, automatic=automatic)


def sub_id_of(invoice: dict[str, Any]) -> str | None:
    parent = invoice.get("parent") or {}
    details = parent.get("subscription_details") or {}
    sub_id = details.get("subscription")
    return str(sub_id) if sub_id else None


def mark_paid(state: EmulatorState, invoice: dict[str, Any], at: int) -> None:
    invoice["amount_paid"] = invoice["amount_due"]
    invoice["amount_remaining"] = 0
    invoice["status"] = "paid"
    invoice["status_transitions"]["paid_at"] = at
    invoice["next_payment_attempt"] = None
    events.emit(state, "invoice.paid", invoice)
    if invoice["amount_due"] > 0:
        events.emit(state, "invoice.payment_succeeded", invoice)
    customer = state.store.get("customer", invoice["customer"])
    if customer is not None and customer.get("delinquent"):
        customer["delinquent"] = any(
            inv["customer"] == customer["id"] and inv["status"] == "open" and inv["attempted"]
            for inv in state.store.all("invoice")
        )
    sub_id = sub_id_of(invoice)
    sub = state.store.get("subscription", sub_id) if sub_id else None
    if (
        sub is not None
        and sub["status"] in ("incomplete", "past_due", "unpaid")
        and not unpaid_invoices(state, sub["id"])
    ):
        set_status(state, sub, "active")


def unpaid_invoices(state: EmulatorState, sub_id: str) -> list[dict[str, Any]]:
    return [
        inv
        for inv in state.store.all("invoice")
        if sub_id_of(inv) == sub_id and inv["status"] == "open" and inv["attempted"]
    ]


def attempt_payment(
    state: EmulatorState,
    invoice: dict[str, Any],
    at: int,
    *,
    automatic: bool,
    payment_method: str | None = None,
) -> str | None:
    """Charge the invoice; ``None`` on success, else the decline code."""
    customer = state.store.require("customer", invoice["customer"])
    sub_id = sub_id_of(invoice)
    sub = state.store.get("subscription", sub_id) if sub_id else None
    pm = (
        payment_method
        or invoice.get("default_payment_method")
        or (sub.get("default_payment_method") if sub else None)
        or payments.default_payment_method(state, customer)
    )
    invoice["attempt_count"] += 1
    invoice["attempted"] = True
    decline = payments.charge_outcome(state, customer, pm)
    if decline is None:
        mark_paid(state, invoice, at)
        return None
    info = state.store.aux(invoice["id"])
    if automatic and invoice["billing_reason"] != "subscription_create":
        failures = int(info.get("auto_failures", 0))
        info["auto_failures"] = failures + 1
        schedule = state.config.dunning_retry_days
        invoice["next_payment_attempt"] = (
            at + schedule[failures] * 86400 if failures < len(schedule) else None
        )
    customer["delinquent"] = True
    events.emit(state, "invoice.payment_failed", invoice)
    if sub is not None and sub["status"] == "active":
        set_status(state, sub, "past_due")
    if (
        automatic
        and sub is not None
        and invoice["next_payment_attempt"] is None
        and invoice["billing_reason"] != "subscription_create"
    ):
        final = state.config.dunning_final_status
        if final == "canceled":
            end_subscription(state, sub, at, reason="payment_failed")
        elif final == "unpaid":
            set_status(state, sub, "unpaid")
    return decline


def void(state: EmulatorState, invoice: dict[str, Any], at: int) -> None:
    invoice["status"] = "void"
    invoice["status_transitions"]["voided_at"] = at
    invoice["next_payment_attempt"] = None
    invoice["amount_remaining"] = 0
    events.emit(state, "invoice.voided", invoice)


def set_status(state: EmulatorState, sub: dict[str, Any], status: str) -> None:
    if sub["status"] == status:
        return
    previous = {"status": sub["status"]}
    sub["status"] = status
    events.emit(state, "customer.subscription.updated", sub, previous)


def end_subscription(state: EmulatorState, sub: dict[str, Any], at: int, *, reason: str) -> None:
    """Cancel now: status ``canceled``, ``ended_at`` set, ``customer.subscription.deleted``."""
    sub["status"] = "canceled"
    sub["ended_at"] = at
    sub["canceled_at"] = sub.get("canceled_at") or at
    sub["cancellation_details"] = {**sub["cancellation_details"], "reason": reason}
    events.emit(state, "customer.subscription.deleted", sub)
