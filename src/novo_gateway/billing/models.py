"""Billing state: usage reports sent to Stripe, the reporter's lease, and received webhooks."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from novo_gateway.kit.db import Base
from novo_gateway.kit.models_base import UTCDateTime, utcnow


class ReportStatus(StrEnum):
    """Where a usage report stands."""

    PENDING = "pending"  # not yet acknowledged by Stripe
    SENT = "sent"  # a meter event Stripe holds, invoiced with its own period
    CARRIED = "carried"  # its period's invoice was final: charged on the next one as an item
    DEAD = "dead"  # Stripe refused it; retried only on request
    EXPIRED = "expired"  # older than Stripe accepts; flagged, never sent


class WebhookStatus(StrEnum):
    """Where a received Stripe event stands."""

    PENDING = "pending"  # to be processed (again, after a failed attempt)
    PROCESSED = "processed"  # applied; pruned after a while
    FAILED = "failed"  # gave up after MAX_ATTEMPTS; retried only on request


class UsageReport(Base):
    """Billable usage of one customer and reporting window, sent to Stripe as one meter event.

    Its id is the meter event's `identifier`, so a resend after a crash is deduplicated by Stripe.
    """

    __tablename__ = "usage_reports"
    __table_args__ = (
        Index("ix_usage_reports_due", "status", "next_attempt_at"),
        Index("ix_usage_reports_user_period", "user_id", "period_start"),
    )

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    stripe_customer_id: Mapped[str] = mapped_column(String(255))
    period_start: Mapped[datetime] = mapped_column(UTCDateTime)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime)
    window_end: Mapped[datetime] = mapped_column(UTCDateTime)
    event_timestamp: Mapped[datetime] = mapped_column(UTCDateTime)
    units: Mapped[int]
    event_count: Mapped[int]
    # A `ReportStatus`: pending → sent, or carried (too late for its period's invoice); or
    # dead (Stripe refused it; retried only on request) or expired (never sent).
    status: Mapped[str] = mapped_column(String(16), default=ReportStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    first_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Carried over: the invoice item charging it on the next invoice, its amount in cents, and
    # the end of the period it belongs to (`period_start` is then that period's start).
    carried_invoice_item: Mapped[str | None] = mapped_column(String(255))
    carried_cents: Mapped[int | None] = mapped_column(BigInteger)
    carried_period_end: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WorkerLease(Base):
    """A named lease: the one process holding it (until `expires_at`) does that work."""

    __tablename__ = "worker_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class WebhookEvent(Base):
    """A Stripe event, stored once by its id and processed by a worker."""

    __tablename__ = "webhook_events"
    __table_args__ = (Index("ix_webhook_events_due", "status", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    object_created: Mapped[int | None]
    status: Mapped[str] = mapped_column(String(16), default=WebhookStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
