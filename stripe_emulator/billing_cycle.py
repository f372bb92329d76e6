"""Time-driven billing: period ends, renewal invoices, finalization, payment retries.

Whenever a clock moves (the global clock through ``/_emulator/clock/advance`` or the scheduler,
a test clock through ``advance``), due actions run in time order, each at its own due time:
``invoice.upcoming`` (``upcoming_days`` before a renewal), the period end (a draft invoice
for the ended period's usage plus licensed items for the next period; the items move to the
next period), finalization ``finalization_grace`` seconds later followed by the payment
attempt, dunning retries, and expiry of ``incomplete`` subscriptions after 23 hours.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from . import events, invoice_shapes, invoicing
from .periods import add_interval
from .state import EmulatorState

INCOMPLETE_TTL = 23 * 3600
LIVE = ("active", "past_due", "unpaid", "trialing")
MAX_STEPS = 100_000

Action = tuple[int, int, Callable[[int], None]]


def next_period_end(sub: dict[str, Any], internal: dict[str, Any]) -> int:
    item = sub["items"]["data"][0]["price"]["recurring"]
    return add_interval(
        sub["billing_cycle_anchor"],
        item["interval"],
        item["interval_count"] * (internal["cycle"] + 1),
    )


def _customer_in_scope(state: EmulatorState, customer_id: str, clock_id: str | None) -> bool:
    customer = state.store.get("customer", customer_id)
    if customer is None:
        return False
    return customer.get("test_clock") == clock_id


def run_due_global(state: EmulatorState) -> None:
    """Run everything due for customers that are not on a test clock."""
    run_due(state, None)


def run_due(state: EmulatorState, clock_id: str | None) -> None:
    """Run due work, subscription by subscription (each in time order)."""
    subs = [
        sub
        for sub in reversed(state.store.all("subscription"))
        if _customer_in_scope(state, sub["customer"], clock_id)
    ]
    for sub in subs:
        for _ in range(MAX_STEPS):
            actions = _due_actions(state, sub)
            if not actions:
                break
            due, _, run = min(actions, key=lambda a: (a[0], a[1]))
            run(due)


def _due_actions(state: EmulatorState, sub: dict[str, Any]) -> list[Action]:
    actions: list[Action] = []
    now = state.customer_now(sub["customer"])
    internal = state.store.aux(sub["id"])
    if sub["status"] == "incomplete":
        due = sub["created"] + INCOMPLETE_TTL
        if due <= now:
            actions.append((due, 0, _bind(_expire_incomplete, state, sub)))
    elif sub["status"] in LIVE:
        end = sub["items"]["data"][0]["current_period_end"]
        upcoming = end - state.config.upcoming_days * 86400
        start = sub["items"]["data"][0]["current_period_start"]
        if upcoming <= now and upcoming > start and internal.get("upcoming_sent_for") != end:
            actions.append((upcoming, 1, _bind(_upcoming, state, sub)))
        elif end <= now:
            actions.append((end, 2, _bind(_renew, state, sub)))
    for invoice_id in internal.get("invoices", ()):
        invoice = state.store.get("invoice", invoice_id)
        if invoice is None:
            continue
        if invoice["status"] == "draft" and invoice["automatically_finalizes_at"] is not None:
            due = invoice["automatically_finalizes_at"]
            if due <= now:
                actions.append((due, 3, _bind(_finalize_and_charge, state, invoice)))
        elif invoice["status"] == "open" and invoice["next_payment_attempt"] is not None:
            due = invoice["next_payment_attempt"]
            if due <= now:
                actions.append((due, 4, _bind(_retry, state, invoice)))
    return actions


def _bind(
    fn: Callable[[EmulatorState, dict[str, Any], int], None],
    state: EmulatorState,
    obj: dict[str, Any],
) -> Callable[[int], None]:
    return lambda at: fn(state, obj, at)


def _expire_incomplete(state: EmulatorState, sub: dict[str, Any], at: int) -> None:
    for invoice in state.store.all("invoice"):
        if invoicing.sub_id_of(invoice) == sub["id"] and invoice["status"] == "open":
            invoicing.void(state, invoice, at)
    invoicing.set_status(state, sub, "incomplete_expired")
    sub["ended_at"] = at


def preview_invoice(state: EmulatorState, sub: dict[str, Any], at: int) -> dict[str, Any]:
    """The upcoming invoice: usage so far in the current period + next period's licensed."""
    customer = state.store.require("customer", sub["customer"])
    internal = state.store.aux(sub["id"])
    start = sub["items"]["data"][0]["current_period_start"]
    end = sub["items"]["data"][0]["current_period_end"]
    ends = bool(sub["cancel_at_period_end"])
    following = next_period_end(sub, internal)
    invoice = invoice_shapes.new_invoice(
        state,
        sub,
        customer,
        billing_reason="upcoming",
        period_start=start,
        period_end=end,
        created=at,
        invoice_id=f"upcoming_{sub['id']}",
    )
    invoice["id"] = None
    lines = invoicing.subscription_lines(
        state, sub, "", usage=(start, end), advance=None if ends else (end, following)
    )
    lines += invoicing.pending_item_lines(state, sub["customer"], sub["id"], None)
    for line in lines:
        line["invoice"] = None
    invoicing.set_lines(invoice, lines)
    invoice["lines"]["url"] = "/v1/invoices/upcoming/lines"
    invoice["automatically_finalizes_at"] = end + state.config.finalization_grace
    invoice["next_payment_attempt"] = end + state.config.finalization_grace
    return invoice


def _upcoming(state: EmulatorState, sub: dict[str, Any], at: int) -> None:
    end = sub["items"]["data"][0]["current_period_end"]
    state.store.aux(sub["id"])["upcoming_sent_for"] = end
    if sub["cancel_at_period_end"]:
        return
    events.emit(state, "invoice.upcoming", preview_invoice(state, sub, at))


def _renew(state: EmulatorState, sub: dict[str, Any], at: int) -> None:
    """The period that ended at ``at`` is invoiced; the next one starts (or the sub ends)."""
    internal = state.store.aux(sub["id"])
    end = at
    ending = bool(sub["cancel_at_period_end"])
    following = next_period_end(sub, internal)
    previous: dict[str, Any] = {
        "items": copy.deepcopy(sub["items"]),
        "latest_invoice": sub["latest_invoice"],
    }
    invoice = invoicing.period_invoice(
        state, sub, end, advance=None if ending else (end, following)
    )
    if invoice is not None:
        invoicing.issue(state, sub, invoice, at, finalizes_at=at + state.config.finalization_grace)
    if ending:
        invoicing.end_subscription(state, sub, at, reason="cancellation_requested")
        return
    internal["cycle"] += 1
    for item in sub["items"]["data"]:
        item["current_period_start"] = end
        item["current_period_end"] = following
        state.store.aux(item["id"]).pop("usage_from", None)
    if previous["latest_invoice"] == sub["latest_invoice"]:
        del previous["latest_invoice"]
    events.emit(state, "customer.subscription.updated", sub, previous)


def _finalize_and_charge(state: EmulatorState, invoice: dict[str, Any], at: int) -> None:
    if invoice["status"] != "draft":
        return
    sub_id = invoicing.sub_id_of(invoice)
    sub = state.store.get("subscription", sub_id) if sub_id else None
    if sub is not None:
        refresh_usage(state, invoice, sub)
    invoicing.finalize_and_charge(state, invoice, at, automatic=True)


def refresh_usage(state: EmulatorState, invoice: dict[str, Any], sub: dict[str, Any]) -> None:
    """Re-price metered lines with usage that arrived during the grace period."""
    windows = state.store.aux(invoice["id"]).get("usage", {})
    for line in invoice["lines"]["data"]:
        window = windows.get(line["id"])
        if window is None:
            continue  # not a metered line (an invoice item, a licensed item)
        price = state.store.get("price", line["pricing"]["price_details"]["price"])
        if price is None:
            continue
        qty = invoicing.usage_quantity(state, price, sub["customer"], window[0], window[1])
        item_id = line["parent"]["subscription_item_details"]["subscription_item"]
        fresh = invoice_shapes.make_line(
            state,
            invoice["id"],
            sub["id"],
            item_id,
            price,
            qty,
            line["period"]["start"],
            line["period"]["end"],
        )
        line.update(
            amount=fresh["amount"],
            subtotal=fresh["amount"],
            quantity=qty,
            quantity_decimal=str(qty),
            description=fresh["description"],
        )
    invoicing.set_lines(invoice, invoice["lines"]["data"])


def _retry(state: EmulatorState, invoice: dict[str, Any], at: int) -> None:
    invoice["next_payment_attempt"] = None
    invoicing.attempt_payment(state, invoice, at, automatic=True)
