"""Provisioning: a new account's Stripe customer and subscription (the `provision_customer` job).

Registration writes the account and this job in one transaction; the job runner runs it, at
once when the register route kicks it and later, with backoff, after a failure. A Stripe outage
therefore delays provisioning and never breaks registration.

No retry creates a second customer or subscription:

- the customer id is stored on the account as soon as Stripe answers, and a retry starts from it;
- creates carry idempotency keys derived from the account (`novo-customer-<id>-<created>`,
  `novo-subscription-<id>-<created>`; the creation time, in microseconds, keeps them unique when
  a database is reset or another one shares the Stripe account and ids start again), so a retry
  after a lost answer gets the first result back;
- Stripe may prune idempotency keys after 24 hours, so a retry (attempt 2 and later) first looks
  for what an earlier attempt may have made: the customer by email with our
  `metadata.novo_account_id` (a list, which is consistent, where search may lag by a minute),
  the subscription by customer and price.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update

from novo_gateway.accounts.models import User
from novo_gateway.accounts.service import PROVISION_JOB
from novo_gateway.billing.setup import PRICE_LOOKUP_KEY
from novo_gateway.billing.stripe_client import StripeBilling
from novo_gateway.billing.stripe_types import SubscriptionInfo
from novo_gateway.jobs.worker import JobContext, JobRunner
from novo_gateway.kit.clock import Clock
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import SessionFactory, session_scope

log = logging.getLogger("novo_gateway.billing.provisioning")

__all__ = ["PROVISION_JOB", "PriceNotConfigured", "Provisioner", "await_provisioning"]

# How long registration waits for its subscription before answering `{"status": "pending"}`.
REGISTER_WAIT_SECONDS = 2.0


class PriceNotConfigured(Exception):
    """No price to subscribe accounts to: STRIPE_PRICE_ID is empty and no price has our key."""


@dataclass(frozen=True, slots=True)
class _Account:
    id: int
    email: str
    name: str
    created_at: datetime
    customer_id: str | None
    subscription_id: str | None

    @property
    def key_suffix(self) -> str:
        # To the microsecond: another database on the same Stripe account (staging, a second
        # region) may register an account with the same id within the same second.
        created = int(self.created_at.timestamp()) * 1_000_000 + self.created_at.microsecond
        return f"{self.id}-{created}"


class Provisioner:
    """Creates the Stripe customer and subscription of an account; the job's handler."""

    def __init__(
        self, sessions: SessionFactory, stripe: StripeBilling, settings: Settings, clock: Clock
    ) -> None:
        self._sessions = sessions
        self._stripe = stripe
        self._clock = clock
        self._price_id = settings.stripe_price_id or None

    def register_with(self, runner: JobRunner) -> None:
        runner.register(PROVISION_JOB, self.run)

    async def run(self, job: JobContext) -> None:
        """The `provision_customer` job: payload `{"user_id": <id>}`."""
        await self.provision(int(job.payload["user_id"]), retry=job.attempt > 1)

    async def price_id(self) -> str:
        """STRIPE_PRICE_ID, else the active price holding our lookup key (looked up once)."""
        if self._price_id is None:
            price = await self._stripe.find_price(PRICE_LOOKUP_KEY)
            if price is None or not price.active:
                raise PriceNotConfigured(
                    f"No Stripe price has the lookup key {PRICE_LOOKUP_KEY!r} and STRIPE_PRICE_ID "
                    "is empty: run `novo-gateway setup-stripe`."
                )
            self._price_id = price.id
        return self._price_id

    async def provision(self, user_id: int, *, retry: bool = False) -> None:
        """Give the account a customer and a subscription, reusing what already exists."""
        account = await self._load(user_id)
        if account is None:
            log.info("account %s no longer exists; nothing to provision", user_id)
            return
        if account.subscription_id is not None:
            return
        price_id = await self.price_id()
        customer_id = account.customer_id
        look_for_subscription = retry or customer_id is not None
        if customer_id is None:
            if retry:
                customer_id = await self._stripe.find_customer(
                    email=account.email, account_id=account.id
                )
            if customer_id is None:
                customer_id = await self._stripe.create_customer(
                    email=account.email,
                    name=account.name,
                    account_id=account.id,
                    idempotency_key=f"novo-customer-{account.key_suffix}",
                )
            await self._store_customer(account.id, customer_id)
        subscription = None
        if look_for_subscription:
            subscription = await self._stripe.find_subscription(
                customer_id=customer_id, price_id=price_id
            )
        if subscription is None:
            subscription = await self._stripe.create_subscription(
                customer_id=customer_id,
                price_id=price_id,
                account_id=account.id,
                idempotency_key=f"novo-subscription-{account.key_suffix}",
            )
        await self._store_subscription(account.id, subscription)
        log.info(
            "account %s provisioned: customer %s, subscription %s (%s)",
            account.id,
            customer_id,
            subscription.id,
            subscription.status,
        )

    async def _load(self, user_id: int) -> _Account | None:
        async with session_scope(self._sessions) as session:
            user = await session.get(User, user_id)
            if user is None:
                return None
            return _Account(
                id=user.id,
                email=user.email,
                name=user.name,
                created_at=user.created_at,
                customer_id=user.stripe_customer_id,
                subscription_id=user.subscription_id,
            )

    async def _store_customer(self, user_id: int, customer_id: str) -> None:
        async with session_scope(self._sessions) as session:
            await session.execute(
                update(User)
                .where(User.id == user_id, User.stripe_customer_id.is_(None))
                .values(stripe_customer_id=customer_id, subscription_updated_at=self._clock.now())
            )

    async def _store_subscription(self, user_id: int, sub: SubscriptionInfo) -> None:
        """Record the new subscription, unless a webhook already recorded its state."""
        async with session_scope(self._sessions) as session:
            await session.execute(
                update(User)
                .where(
                    User.id == user_id,
                    User.subscription_id.is_(None),
                    User.subscription_state_at.is_(None),
                )
                .values(
                    subscription_id=sub.id,
                    subscription_status=sub.status,
                    current_period_start=sub.current_period_start,
                    current_period_end=sub.current_period_end,
                    cancel_at_period_end=sub.cancel_at_period_end,
                    # The account's first period: its calls made while it was pending (before
                    # now) are reported into this period and shown in its usage.
                    billing_started_at=sub.current_period_start,
                    subscription_updated_at=self._clock.now(),
                )
            )


async def await_provisioning(
    jobs: JobRunner | None,
    sessions: SessionFactory,
    *,
    user: User,
    job_id: int,
    wait_seconds: float = REGISTER_WAIT_SECONDS,
) -> User:
    """Run an account's provisioning job now, wait up to `wait_seconds`, return the account.

    Call it after the registration's transaction has committed. When Stripe is slow or down the
    job carries on (or retries) in the background and the account still says `pending`; nothing
    here can fail the registration (the account as registered is returned then).
    """
    try:
        if jobs is not None:
            await jobs.run_now(job_id, wait_seconds=wait_seconds)
        async with session_scope(sessions) as session:
            return await session.get_one(User, user.id)
    except Exception:
        log.warning("could not wait for the provisioning of account %s", user.id, exc_info=True)
        return user
