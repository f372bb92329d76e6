"""What the billing endpoints do: invoices, the portal, the subscription and changes to it.

Stripe is read live for invoices and the portal; the subscription is the account's copy (kept in
step by webhooks) and, after a change made here, Stripe's answer is copied onto it at once.
Stripe being unreachable is a 503, a refusal by Stripe a 502; never a 500.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from novo_gateway.accounts.models import SUBSCRIPTION_ENDED, SubscriptionStatus, User
from novo_gateway.billing import portal
from novo_gateway.billing.access import Standing, grace_ends, refusal
from novo_gateway.billing.reporter import UsageNotReported, UsageReporter
from novo_gateway.billing.stripe_client import StripeBilling, StripeFailure, StripeRejected
from novo_gateway.billing.stripe_types import InvoiceInfo, SubscriptionInfo, UpcomingInvoice
from novo_gateway.billing.subscription_state import apply_subscription
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import after_commit
from novo_gateway.kit.errors import BadGateway, Conflict, GatewayError, ServiceUnavailable

log = logging.getLogger("novo_gateway.billing.service")

T = TypeVar("T")

STRIPE_DOWN = (
    "Stripe, our billing provider, cannot be reached right now. Please try again in a minute."
)
STRIPE_REFUSED = "Stripe refused the billing request. Please try again later or contact support."
NOT_CONFIGURED = "Billing is not configured on this gateway."
SETTING_UP = "Your billing account is still being set up. Please try again in a minute."
NO_SUBSCRIPTION = "You have no subscription. Start one with POST /billing/subscribe."
USAGE_NOT_BILLED = (
    "Your usage so far could not be handed to Stripe for the final invoice yet, so nothing was "
    "canceled. Please try again in a minute."
)
# How long an immediate cancel waits for Stripe's meter totals to hold the usage it just sent.
FINAL_USAGE_WAIT_SECONDS = 20.0

# Called with an account id after a change of its subscription commits (the access cache's
# `forget`: the gateway layer above passes it in).
AccessChanged = Callable[[int], None]

Outcome = Literal[
    "canceled", "cancel_scheduled", "already_canceled", "resumed", "subscribed", "active"
]


def stripe_error(exc: StripeFailure | StripeRejected) -> GatewayError:
    """Our answer to a failed Stripe call: 503 when unreachable, 502 when it refused."""
    if isinstance(exc, StripeFailure):
        log.warning("Stripe unreachable: %s", exc)
        retry = str(max(1, round(exc.retry_after or 30)))
        return ServiceUnavailable(STRIPE_DOWN, headers={"Retry-After": retry})
    log.warning("Stripe refused a billing request (%s): %s", exc.code, exc)
    return BadGateway(STRIPE_REFUSED)


async def guarded(call: Awaitable[T]) -> T:
    """Await a Stripe call, turning its failures into our errors."""
    try:
        return await call
    except (StripeFailure, StripeRejected) as exc:
        raise stripe_error(exc) from None


def require_stripe(stripe: StripeBilling | None) -> StripeBilling:
    if stripe is None:
        raise ServiceUnavailable(NOT_CONFIGURED)
    return stripe


def customer_of(user: User) -> str:
    """The account's Stripe customer id; 409 while provisioning has not created it yet."""
    if not user.stripe_customer_id:
        raise Conflict(SETTING_UP, status=SubscriptionStatus.PENDING)
    return user.stripe_customer_id


# --- Invoices and the portal ------------------------------------------------------------------


async def invoices(
    stripe: StripeBilling | None, user: User
) -> tuple[list[InvoiceInfo], UpcomingInvoice | None]:
    """The account's invoices (newest first) and Stripe's preview of the next one."""
    customer = customer_of(user)
    client = require_stripe(stripe)
    listed = await guarded(client.list_invoices(customer))
    upcoming = None
    if user.subscription_id and user.subscription_status not in SUBSCRIPTION_ENDED:
        upcoming = await guarded(client.upcoming_invoice(customer, user.subscription_id))
    return listed, upcoming


async def portal_url(
    stripe: StripeBilling | None, settings: Settings, user: User, return_url: str | None
) -> str:
    """A billing portal session for the account, returning to an allowed URL."""
    back = portal.checked_return_url(return_url, settings)
    customer = customer_of(user)
    return await guarded(require_stripe(stripe).portal_url(customer, back))


async def payment_method_url(
    stripe: StripeBilling | None, settings: Settings, user: User, return_url: str | None
) -> str:
    """A portal link that goes straight to adding a payment method, then back to an allowed
    URL: a customer without one cannot pay for usage past the free tier."""
    back = portal.checked_return_url(return_url, settings)
    customer = customer_of(user)
    return await guarded(require_stripe(stripe).payment_method_url(customer, back))


async def payment_method_on_file(stripe: StripeBilling | None, user: User) -> bool | None:
    """Whether Stripe holds a payment method to charge the account's invoices; None when that
    cannot be known now (Stripe not configured, unreachable, or no customer yet)."""
    if stripe is None or not user.stripe_customer_id:
        return None
    try:
        return await stripe.has_payment_method(user.stripe_customer_id, user.subscription_id)
    except (StripeFailure, StripeRejected) as exc:
        log.warning("payment method of customer %s unknown: %s", user.stripe_customer_id, exc)
        return None


# --- The subscription -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SubscriptionView:
    """The account's subscription as the endpoints show it."""

    user: User
    api_access: bool
    grace_ends_at: datetime | None
    payment_method_on_file: bool | None = None


def subscription_view(user: User, *, now: datetime, grace: timedelta) -> SubscriptionView:
    standing = Standing(user.subscription_status, user.past_due_since)
    return SubscriptionView(
        user=user,
        api_access=refusal(standing, now, grace) is None,
        grace_ends_at=grace_ends(standing, grace),
    )


def _changed(session: AsyncSession, user: User, forget: AccessChanged) -> None:
    """The account's access may have changed: this process's access cache forgets it as soon as
    the change commits, so its next call is judged on the new state (others within a second)."""
    user_id = user.id
    after_commit(session, lambda: forget(user_id))


async def subscription_details(
    stripe: StripeBilling | None, user: User, *, now: datetime, grace: timedelta
) -> SubscriptionView:
    """`subscription_view`, plus whether a payment method is on file (read from Stripe)."""
    view = subscription_view(user, now=now, grace=grace)
    if not user.subscription_id:
        return view
    return replace(view, payment_method_on_file=await payment_method_on_file(stripe, user))


async def cancel(
    session: AsyncSession,
    stripe: StripeBilling | None,
    user: User,
    *,
    immediately: bool,
    now: datetime,
    reporter: UsageReporter | None,
    forget: AccessChanged,
) -> Outcome:
    """Cancel at the end of the period, or now with the usage so far invoiced at once.

    Cancelling now first reports every call of the account not yet at Stripe and waits (bounded)
    until Stripe's meter totals hold it, so the final invoice Stripe makes at once bills it; when
    that cannot be done (Stripe down or slow), nothing is cancelled and the answer is a 503.
    """
    customer_of(user)
    if not user.subscription_id:
        raise Conflict(NO_SUBSCRIPTION, status=user.subscription_status)
    if user.subscription_status in SUBSCRIPTION_ENDED:
        return "already_canceled"
    client = require_stripe(stripe)
    if immediately:
        if reporter is not None:
            await _report_usage_first(reporter, user.id)
        info = await _cancel_now(client, user.subscription_id)
    else:
        info = await guarded(client.set_cancel_at_period_end(user.subscription_id, True))
    apply_subscription(user, info, now=now)
    await session.flush()
    _changed(session, user, forget)
    if info.status in SUBSCRIPTION_ENDED:
        return "canceled"
    return "cancel_scheduled" if info.cancel_at_period_end else "active"


async def _report_usage_first(reporter: UsageReporter, user_id: int) -> None:
    """Everything the account used is at Stripe and counted there, or a 503 (cancel not done)."""
    try:
        await reporter.report_customer(user_id)
        counted = await reporter.await_counted(user_id, within=FINAL_USAGE_WAIT_SECONDS)
    except UsageNotReported as exc:
        log.warning("usage of account %s not reported before cancelling: %s", user_id, exc)
        counted = False
    except (StripeFailure, StripeRejected) as exc:
        raise stripe_error(exc) from None
    if not counted:
        raise ServiceUnavailable(USAGE_NOT_BILLED, headers={"Retry-After": "30"})


async def _cancel_now(client: StripeBilling, subscription_id: str) -> SubscriptionInfo:
    try:
        return await client.cancel_subscription_now(subscription_id)
    except StripeRejected:
        # Already canceled at Stripe (our copy had not heard yet): take Stripe's state.
        current = await guarded(client.retrieve_subscription(subscription_id))
        if current.status in SUBSCRIPTION_ENDED:
            return current
        raise BadGateway(STRIPE_REFUSED) from None
    except StripeFailure as exc:
        raise stripe_error(exc) from None


async def resubscribe(
    session: AsyncSession,
    stripe: StripeBilling | None,
    settings: Settings,
    user: User,
    *,
    now: datetime,
    forget: AccessChanged,
) -> Outcome:
    """Undo a cancellation still pending, or start a new subscription after one ended."""
    customer = customer_of(user)
    client = require_stripe(stripe)
    current = await _current(client, user.subscription_id)
    _changed(session, user, forget)
    if current is not None and current.status not in SUBSCRIPTION_ENDED:
        outcome: Outcome = "active"
        if current.cancel_at_period_end:
            current = await guarded(client.set_cancel_at_period_end(current.id, False))
            outcome = "resumed"
        apply_subscription(user, current, now=now)
        await session.flush()
        return outcome
    # Nothing live that we know of. One Stripe has (a retry of a request whose answer was lost,
    # or one made elsewhere) is taken over rather than doubled.
    live = await guarded(client.live_subscriptions(customer))
    if live:
        info, outcome = live[0], "active"
    else:
        if not settings.stripe_price_id:
            raise ServiceUnavailable(NOT_CONFIGURED)
        # A fresh key: the one used at provisioning would replay the old, ended subscription.
        info = await guarded(
            client.create_subscription(
                customer_id=customer,
                price_id=settings.stripe_price_id,
                account_id=user.id,
                idempotency_key=f"resubscribe-{user.id}-{uuid.uuid4().hex}",
            )
        )
        outcome = "subscribed"
    apply_subscription(user, info, now=now)
    await session.flush()
    return outcome


async def _current(client: StripeBilling, subscription_id: str | None) -> SubscriptionInfo | None:
    if not subscription_id:
        return None
    try:
        return await client.retrieve_subscription(subscription_id)
    except StripeRejected:
        return None  # gone at Stripe
    except StripeFailure as exc:
        raise stripe_error(exc) from None
