"""Accounts (customers of the gateway) and their login sessions."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Final

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from novo_gateway.kit.db import Base
from novo_gateway.kit.models_base import BigId, UTCDateTime, utcnow


class SubscriptionStatus(StrEnum):
    """An account's subscription status: Stripe's, or `pending` before Stripe has one.

    The column keeps whatever Stripe sends, so a status Stripe adds later is stored as it is."""

    PENDING = "pending"  # not provisioned at Stripe yet
    INCOMPLETE = "incomplete"
    INCOMPLETE_EXPIRED = "incomplete_expired"
    TRIALING = "trialing"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    CANCELED = "canceled"
    UNPAID = "unpaid"
    PAUSED = "paused"


# A subscription in one of these states is over for good (Stripe never revives it).
SUBSCRIPTION_ENDED: Final = frozenset(
    {SubscriptionStatus.CANCELED, SubscriptionStatus.INCOMPLETE_EXPIRED}
)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    # Billing state, kept in step with Stripe by provisioning and webhooks.
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    subscription_id: Mapped[str | None] = mapped_column(String(255))
    subscription_status: Mapped[str] = mapped_column(String(32), default=SubscriptionStatus.PENDING)
    current_period_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    current_period_end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_at_period_end: Mapped[bool] = mapped_column(default=False)
    past_due_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When any billing field last changed here (our clock): the access cache of every process
    # re-reads rows changed since its last pass.
    subscription_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    # Stripe's `created` of the event whose subscription state these columns hold; an event
    # older than it is stale and skipped (webhooks arrive in any order).
    subscription_state_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The start of the account's first billing period (set once, by its first subscription).
    # Calls made before it, while the account was `pending` (Stripe slow to provision), belong
    # to that first period: reported into it and shown in its usage.
    billing_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class LoginSession(Base):
    """A short-lived bearer token issued by `POST /auth/login`; only its hash is stored."""

    __tablename__ = "login_sessions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PasswordResetToken(Base):
    """A single-use, short-lived password reset token sent by email; only its hash is stored."""

    __tablename__ = "password_reset_tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
