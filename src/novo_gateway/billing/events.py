"""What each Stripe event does to our state. Called by the webhook worker inside one transaction.

A handler either finishes (its writes commit together with the event's `processed` mark) or
raises (everything it wrote is rolled back and the event is retried), so an event is applied
exactly once. Handlers are safe in any order: Stripe does not promise one.

- `customer.subscription.created/updated/deleted`: the subscription's status, period and
  `cancel_at_period_end` are copied onto the account, unless the event is older than the state
  held (`users.subscription_state_at`). Two events of the same second are told apart by asking
  Stripe for the subscription as it is now.
- `invoice.paid`, `invoice.payment_failed`: the subscription they belong to is re-read from
  Stripe, so an account leaves (or enters) `past_due` without waiting for the subscription event.
- `invoice.finalized`: logged (the invoices endpoint reads Stripe directly).
- `v1.billing.meter.error_report_triggered` and `v1.billing.meter.no_meter_found` (v2 thin
  events, sent by Stripe only to an event destination; the delivery carries ids only and the
  event itself is read from `GET /v2/core/events/{id}`): meter events Stripe accepted but could
  not count (the second for events whose name has no active meter). Logged with the error
  codes, counted, and the usage reports Stripe names are dead-lettered with Stripe's message
  (`novo-gateway reports` lists them, `retry-report` sends them again, as a new send).

An event about a customer we do not know is a logged no-op.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from novo_gateway.accounts.models import SUBSCRIPTION_ENDED, User
from novo_gateway.billing.models import ReportStatus, UsageReport, report_send
from novo_gateway.billing.setup import METER_ERROR_EVENT, METER_NOT_FOUND_EVENT
from novo_gateway.billing.stripe_client import StripeBilling, StripeRejected
from novo_gateway.billing.stripe_types import SubscriptionInfo, subscription_info
from novo_gateway.billing.subscription_state import apply_subscription, user_for_customer

log = logging.getLogger("novo_gateway.billing.events")


@dataclass(frozen=True, slots=True)
class EventContext:
    """What a handler may use besides the session: the time and Stripe (None: not configured)."""

    now: datetime
    stripe: StripeBilling | None
    # Accounts whose subscription state the handler changed (their access is re-read at once).
    changed: list[int] = field(default_factory=list)


# A handler returns a short outcome ("applied", "stale", "unknown_customer", ...) for the metrics.
Handler = Callable[[AsyncSession, dict[str, Any], EventContext], Awaitable[str]]


def event_time(event: dict[str, Any]) -> datetime | None:
    """The event's `created`: unix seconds in v1 events, an RFC 3339 string in v2 events."""
    created = event.get("created")
    if isinstance(created, bool):
        return None
    if isinstance(created, int | float):
        return datetime.fromtimestamp(int(created), UTC)
    if isinstance(created, str):
        try:
            parsed = datetime.fromisoformat(created.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _object(event: dict[str, Any]) -> dict[str, Any]:
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        raise ValueError("the event has no data.object")
    return obj


async def _current(ctx: EventContext, subscription_id: str) -> SubscriptionInfo | None:
    """The subscription as Stripe holds it now; None when Stripe is not configured or has none."""
    if ctx.stripe is None:
        return None
    try:
        return await ctx.stripe.retrieve_subscription(subscription_id)
    except StripeRejected as exc:
        log.warning("subscription %s could not be read from Stripe: %s", subscription_id, exc)
        return None


def _belongs(user: User, info: SubscriptionInfo) -> bool:
    """Whether `info` is (or now replaces) the account's subscription."""
    if user.subscription_id is None or user.subscription_id == info.id:
        return True
    if info.status in SUBSCRIPTION_ENDED:
        return False  # an older subscription ending after it was replaced
    if user.subscription_status in SUBSCRIPTION_ENDED:
        return True  # a new subscription after the old one ended
    log.warning(
        "customer %s has another live subscription %s; keeping %s",
        info.customer_id,
        info.id,
        user.subscription_id,
    )
    return False


async def on_subscription(session: AsyncSession, event: dict[str, Any], ctx: EventContext) -> str:
    info = subscription_info(_object(event))
    created = event_time(event)
    user = await user_for_customer(session, info.customer_id, lock=True)
    if user is None:
        log.info("%s for unknown customer %s: ignored", event.get("type"), info.customer_id)
        return "unknown_customer"
    if not _belongs(user, info):
        return "other_subscription"
    held = user.subscription_state_at
    if user.subscription_id == info.id and held is not None and created is not None:
        if created < held:
            log.info("stale %s for %s: ignored", event.get("type"), info.id)
            return "stale"
        if created == held:
            # Same second as the state held: only Stripe knows which came last.
            info = await _current(ctx, info.id) or info
    apply_subscription(user, info, now=ctx.now, state_at=created)
    ctx.changed.append(user.id)
    return "applied"


def _invoice_subscription(invoice: dict[str, Any]) -> str | None:
    parent = invoice.get("parent") or {}
    details = parent.get("subscription_details") or {}
    sub_id = details.get("subscription") or invoice.get("subscription")
    if isinstance(sub_id, dict):
        sub_id = sub_id.get("id")
    return str(sub_id) if sub_id else None


async def on_invoice_payment(
    session: AsyncSession, event: dict[str, Any], ctx: EventContext
) -> str:
    """`invoice.paid` / `invoice.payment_failed`: re-read the subscription the invoice bills."""
    invoice = _object(event)
    customer_id = str(invoice.get("customer") or "")
    user = await user_for_customer(session, customer_id, lock=True)
    if user is None:
        log.info("%s for unknown customer %s: ignored", event.get("type"), customer_id)
        return "unknown_customer"
    log.info(
        "%s: invoice %s of customer %s, %s %s",
        event.get("type"),
        invoice.get("id"),
        customer_id,
        invoice.get("amount_due"),
        invoice.get("currency"),
    )
    sub_id = _invoice_subscription(invoice)
    if sub_id is None or sub_id != user.subscription_id:
        return "recorded"
    info = await _current(ctx, sub_id)
    if info is None:
        return "recorded"
    apply_subscription(user, info, now=ctx.now, state_at=event_time(event))
    ctx.changed.append(user.id)
    return "applied"


async def on_invoice_finalized(
    session: AsyncSession, event: dict[str, Any], ctx: EventContext
) -> str:
    invoice = _object(event)
    log.info(
        "invoice %s (%s) finalized for customer %s: %s %s due",
        invoice.get("id"),
        invoice.get("number"),
        invoice.get("customer"),
        invoice.get("amount_due"),
        invoice.get("currency"),
    )
    return "recorded"


async def on_meter_error_report(
    session: AsyncSession, event: dict[str, Any], ctx: EventContext
) -> str:
    """Meter events Stripe could not count: log, and dead-letter the usage reports it names."""
    meter = (event.get("related_object") or {}).get("id")
    data = event.get("data")
    if not isinstance(data, dict) and ctx.stripe is not None:
        # A thin event: its details are fetched (a Stripe outage retries the event).
        try:
            data = (await ctx.stripe.thin_event(str(event["id"]))).get("data")
        except StripeRejected as exc:
            log.warning("meter error report %s could not be read: %s", event.get("id"), exc)
    data = data if isinstance(data, dict) else {}
    reason = data.get("reason") or {}
    marks: dict[str, str] = {}
    codes = []
    for error_type in reason.get("error_types") or []:
        code = str(error_type.get("code"))
        codes.append(f"{code} x{error_type.get('error_count')}")
        for sample in error_type.get("sample_errors") or []:
            identifier = (sample.get("request") or {}).get("identifier")
            if identifier:
                marks[str(identifier)] = f"Stripe did not count it: {code}: " + str(
                    sample.get("error_message") or ""
                )
    log.warning(
        "Stripe reports meter events it could not count (meter %s): %s; %s",
        meter,
        data.get("developer_message_summary") or "no details",
        ", ".join(codes) or "no error types",
    )
    for identifier, message in marks.items():
        # Stripe did not count it: dead until an operator fixes the cause and retries it. An
        # error about an earlier send of a report put back in the queue since is not this one's.
        report_id, resends = report_send(identifier)
        await session.execute(
            update(UsageReport)
            .where(
                UsageReport.id == report_id,
                UsageReport.resends == resends,
                UsageReport.status != ReportStatus.EXPIRED,
            )
            .values(status=ReportStatus.DEAD, last_error=message[:1000])
        )
    return "recorded"


HANDLERS: dict[str, Handler] = {
    "customer.subscription.created": on_subscription,
    "customer.subscription.updated": on_subscription,
    "customer.subscription.deleted": on_subscription,
    "invoice.paid": on_invoice_payment,
    "invoice.payment_failed": on_invoice_payment,
    "invoice.finalized": on_invoice_finalized,
    METER_ERROR_EVENT: on_meter_error_report,
    METER_NOT_FOUND_EVENT: on_meter_error_report,
}


async def handle(session: AsyncSession, event: dict[str, Any], ctx: EventContext) -> str:
    """Apply one event; its outcome for the metrics ("ignored" for types we do not handle)."""
    handler = HANDLERS.get(str(event.get("type")))
    if handler is None:
        return "ignored"
    return await handler(session, event, ctx)
