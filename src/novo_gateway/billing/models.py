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


# Stripe keeps a meter event's identifier for 24 hours whether it counted the event or not
# (an event it took and then could not count, reported by a meter error event, holds it too).
# So a report an operator puts back in the queue is sent under a new identifier, its id then
# `.r<n>` for the n-th such resend, and an error report names the send it is about.
_RESEND_MARK = ".r"


def meter_identifier(report_id: str, resends: int) -> str:
    """The meter event identifier of a report's current send."""
    return report_id if resends == 0 else f"{report_id}{_RESEND_MARK}{resends}"


def report_send(identifier: str) -> tuple[str, int]:
    """(report id, resends) of a meter event identifier (`meter_identifier` reversed)."""
    report_id, mark, resends = identifier.rpartition(_RESEND_MARK)
    if mark and resends.isdigit() and report_id:
        return report_id, int(resends)
    return identifier, 0


class UsageReport(Base):
    """Billable usage of one customer and reporting window, sent to Stripe as one meter event.

    Its id is the meter event's `identifier` (`meter_identifier`), so a resend after a crash is
    deduplicated by Stripe.
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
    # Times an operator put it back in the queue after Stripe refused it or could not count it.
    resends: Mapped[int] = mapped_column(default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Carried over: the invoice item charging it on the next invoice, its amount in cents, and
    # the end of the period it belongs to (`period_start` is then that period's start).
    carried_invoice_item: Mapped[str | None] = mapped_column(String(255))
    carried_cents: Mapped[int | None] = mapped_column(BigInteger)
    carried_period_end: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def identifier(self) -> str:
        """The identifier of the meter event this report is sent as now."""
        return meter_identifier(self.id, self.resends)


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
