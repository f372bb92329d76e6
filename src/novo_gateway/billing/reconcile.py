"""Reconciliation: what the ledger says was reported, against what Stripe's meter holds.

Per customer and billing period: the units of reports marked sent (whose timestamps fall in the
period) are what Stripe should hold; Stripe's meter event summaries say what it does hold. With
`fix`, a positive drift is sent as one meter event whose identifier names the customer, the period
and the expected total, so running the fix twice cannot send it twice. Its timestamp is that of the
period's latest sent report, not the time of the run: a fix run again later is then the very same
request (Stripe refuses an idempotency key reused with other parameters).

Stripe aggregates meter events asynchronously: its summaries are eventually consistent, so a report
Stripe accepted a moment ago may be missing from them yet. A drift is therefore fixed only once the
period's latest report was sent at least `settle` ago (`SETTLE`, 15 minutes, by default); before,
the fix would bill those units a second time once Stripe caught up.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select

from novo_gateway.accounts.models import User
from novo_gateway.billing.models import UsageReport
from novo_gateway.billing.stripe_client import DuplicateMeterEvent, StripeBilling
from novo_gateway.billing.stripe_types import MeterEvent
from novo_gateway.clock import Clock
from novo_gateway.config import Settings
from novo_gateway.db import SessionFactory, session_scope
from novo_gateway.metering.service import billed_units_by_account, calendar_month


@dataclass(frozen=True)
class Drift:
    user_id: int
    customer_id: str
    period_start: datetime
    period_end: datetime
    ledger_units: int
    reported_units: int
    stripe_units: Decimal
    reported_through: datetime | None = None  # the latest sent report's timestamp in the period
    last_sent_at: datetime | None = None  # when the period's latest report was sent

    @property
    def unreported_units(self) -> int:
        """Billable units not yet acknowledged by Stripe (pending reports, unclaimed events)."""
        return self.ledger_units - self.reported_units

    @property
    def drift(self) -> Decimal:
        """Units Stripe should hold but does not (negative: Stripe holds more than we sent)."""
        return self.reported_units - self.stripe_units


# How long after the latest report of a period Stripe's summaries are trusted to include it.
SETTLE = timedelta(minutes=15)


def _minute_floor(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def _minute_ceil(at: datetime) -> datetime:
    floor = _minute_floor(at)
    return floor if floor == at else floor + timedelta(minutes=1)


def _period(user: User, now: datetime) -> tuple[datetime, datetime]:
    """The customer's current billing period, or the calendar month before Stripe has said."""
    if user.current_period_start is None or user.current_period_end is None:
        month = calendar_month(now)
        return month.start, month.end
    return user.current_period_start, user.current_period_end


class Reconciler:
    def __init__(
        self,
        sessions: SessionFactory,
        stripe: StripeBilling,
        settings: Settings,
        clock: Clock,
        *,
        settle: timedelta = SETTLE,
    ) -> None:
        self._sessions = sessions
        self._stripe = stripe
        self._settings = settings
        self._clock = clock
        self._settle = settle

    async def check(self, *, user_id: int | None = None) -> list[Drift]:
        """The drift of every provisioned customer (or one) in their current period."""
        meter_id = await self._stripe.meter_id(self._settings.stripe_meter_event_name)
        async with session_scope(self._sessions) as session:
            query = select(User).where(User.stripe_customer_id.is_not(None)).order_by(User.id)
            if user_id is not None:
                query = query.where(User.id == user_id)
            users = list((await session.scalars(query)).all())
            now = self._clock.now()
            periods = {user.id: _period(user, now) for user in users}
            # Whole days from the daily counter, partial days from the events (as /billing/usage).
            billed = await billed_units_by_account(session, periods)
            pending: list[Drift] = []
            for user in users:
                start, end = periods[user.id]
                reported, through, last_sent = (
                    await session.execute(
                        select(
                            func.coalesce(func.sum(UsageReport.units), 0),
                            func.max(UsageReport.event_timestamp),
                            func.max(UsageReport.sent_at),
                        ).where(
                            UsageReport.user_id == user.id,
                            UsageReport.status == "sent",
                            UsageReport.event_timestamp >= start,
                            UsageReport.event_timestamp < end,
                        )
                    )
                ).one()
                pending.append(
                    Drift(
                        user.id,
                        str(user.stripe_customer_id),
                        start,
                        end,
                        billed.get(user.id, 0),
                        int(reported or 0),
                        Decimal(0),  # Stripe is asked below, outside the database session
                        through,
                        last_sent,
                    )
                )
        drifts = []
        for drift in pending:
            held = await self._stripe.meter_total(
                meter_id=meter_id,
                customer_id=drift.customer_id,
                start=_minute_floor(drift.period_start),
                end=_minute_ceil(drift.period_end),
            )
            drifts.append(replace(drift, stripe_units=held))
        return drifts

    def settles_at(self, drift: Drift) -> datetime | None:
        """When Stripe's summaries can be trusted to hold the drift's reports (None: now)."""
        if drift.last_sent_at is None:
            return None
        at = drift.last_sent_at + self._settle
        return at if self._clock.now() < at else None

    async def fix(self, drift: Drift) -> bool:
        """Send a positive, settled drift to Stripe; True when something was sent."""
        if drift.drift <= 0 or drift.reported_through is None:
            return False  # nothing sent is missing (a positive drift always has a sent report)
        if self.settles_at(drift) is not None:
            return False  # Stripe may not have counted the latest reports yet
        identifier = (
            f"nvfix_{drift.user_id}_{int(drift.period_start.astimezone(UTC).timestamp())}"
            f"_{drift.reported_units}"
        )
        try:
            await self._stripe.meter_event(
                event_name=self._settings.stripe_meter_event_name,
                event=MeterEvent(
                    identifier, drift.customer_id, int(drift.drift), drift.reported_through
                ),
            )
        except DuplicateMeterEvent:
            return False
        return True
