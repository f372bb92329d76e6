"""The account's copy of its Stripe subscription, written by webhooks and the billing endpoints.

Every write sets `subscription_updated_at` (our clock), which is how the access cache of every
process notices the change within a second.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from novo_gateway.accounts.models import SubscriptionStatus, User
from novo_gateway.billing.stripe_types import SubscriptionInfo
from novo_gateway.kit.db import lock_rows


def apply_subscription(
    user: User, info: SubscriptionInfo, *, now: datetime, state_at: datetime | None = None
) -> None:
    """Copy a subscription's state onto the account.

    `state_at` is Stripe's time of that state (the event's `created`), kept so that an older
    event arriving later is recognised as stale. `past_due_since` is set when the subscription
    becomes past due (Stripe's time, never later than ours) and cleared when it is not.
    """
    if info.status == SubscriptionStatus.PAST_DUE:
        if user.subscription_status != SubscriptionStatus.PAST_DUE or user.past_due_since is None:
            user.past_due_since = min(state_at, now) if state_at is not None else now
    else:
        user.past_due_since = None
    if user.subscription_id is None and user.billing_started_at is None:
        # The account's first subscription (a webhook may tell of it before provisioning does):
        # the calls it made while pending belong to this first period.
        user.billing_started_at = info.current_period_start
    if user.subscription_id != info.id:
        user.subscription_state_at = None  # another subscription: its own order of events
    user.subscription_id = info.id
    user.subscription_status = info.status
    user.current_period_start = info.current_period_start
    user.current_period_end = info.current_period_end
    user.cancel_at_period_end = info.cancel_at_period_end
    if state_at is not None:
        held = user.subscription_state_at
        user.subscription_state_at = state_at if held is None else max(held, state_at)
    user.subscription_updated_at = now


async def user_for_customer(
    session: AsyncSession, customer_id: str, *, lock: bool = False
) -> User | None:
    """The account of a Stripe customer (its row locked until the commit when asked)."""
    if lock:
        await lock_rows(session, User, User.stripe_customer_id == customer_id)
    found: User | None = await session.scalar(
        select(User).where(User.stripe_customer_id == customer_id)
    )
    return found
