"""Reconciliation: per customer and billing period, what the ledger says against what Stripe
metered and what it invoiced.

Periods: the customer's current period, and the periods of its latest subscription invoices at
Stripe (`RECENT_INVOICES`: late usage belongs to recent periods, and each period costs a few
calls to Stripe). For each, from the ledger with the period's exact bounds: the billable
units, the units of reports sent to Stripe's meter, and those carried over to a later invoice.

- While the period's invoice still takes usage (the current period, or a draft in Stripe's
  finalization grace), the sent units are compared with Stripe's meter. Its event summaries only
  take whole minutes, so both sides are counted over the same minute-aligned window around the
  period (the reports Stripe holds there against the reports we sent there): a rollover inside a
  minute puts the next period's first reports in that window on both sides, never a false drift.
  With `fix`, a positive drift is sent as one meter event whose identifier names the customer,
  the period and the expected total, so running the fix twice cannot send it twice. Its timestamp
  is that of the period's latest sent report, not the time of the run: a fix run again later is
  then the very same request (Stripe refuses an idempotency key reused with other parameters).
  Stripe aggregates meter events asynchronously: its summaries are eventually consistent, so a
  report Stripe accepted a moment ago may be missing from them yet. Such a drift is fixed only
  once the period's latest report was sent at least `settle` ago (`SETTLE`, 15 minutes).
- Once the invoice is final, the sent and carried units are compared with what Stripe invoiced
  for the period: its metered lines plus the items that carried units of it over. Units reported
  but not invoiced (a meter event that reached Stripe after the finalization: counted by the
  meter, billed nowhere) are a drift that `fix` carries over as an invoice item on the next
  invoice, priced as in its own period (`billing/carryover.py`). A finalized invoice does not
  change, so this needs no settling.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from novo_gateway.accounts.models import User
from novo_gateway.billing.carryover import CarryOver, takes_usage
from novo_gateway.billing.queries import reported_units
from novo_gateway.billing.stripe_client import DuplicateMeterEvent, StripeBilling
from novo_gateway.billing.stripe_types import CarriedItem, MeterEvent, PeriodInvoice
from novo_gateway.kit.clock import Clock
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import SessionFactory, session_scope
from novo_gateway.metering.queries import calendar_month, counted_from, period_totals


@dataclass(frozen=True)
class Drift:
    user_id: int
    customer_id: str
    period_start: datetime
    period_end: datetime
    ledger_units: int
    reported_units: int  # sent to the meter, timestamped in the period
    stripe_units: Decimal  # Stripe's meter over the period's minute window
    reported_through: datetime | None = None  # the latest sent report's timestamp in the period
    last_sent_at: datetime | None = None  # when the period's latest report was sent
    window_reported_units: int | None = None  # sent, timestamped in the minute window
    carried_units: int = 0  # carried over to a later invoice by the reporter
    invoice: PeriodInvoice | None = None  # the period's invoice at Stripe, once made
    invoiced_units: int | None = None  # its metered lines + carried-over items (once final)

    @property
    def closed(self) -> bool:
        """True once the period's invoice is final (it takes no more usage)."""
        return self.invoiced_units is not None

    @property
    def unreported_units(self) -> int:
        """Billable units not yet acknowledged by Stripe (pending reports, unclaimed events)."""
        return self.ledger_units - self.reported_units - self.carried_units

    @property
    def drift(self) -> Decimal:
        """Open period: units Stripe's meter should hold but does not (negative: it holds more
        than we sent). Closed period: units reported but not invoiced."""
        if self.invoiced_units is not None:
            return Decimal(self.reported_units + self.carried_units - self.invoiced_units)
        window = self.window_reported_units
        return Decimal(self.reported_units if window is None else window) - self.stripe_units


# How long after the latest report of a period Stripe's summaries are trusted to include it.
SETTLE = timedelta(minutes=15)
# Invoices per customer whose periods are checked, newest first.
RECENT_INVOICES = 4


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


@dataclass(frozen=True)
class _Customer:
    user_id: int
    customer_id: str
    current: tuple[datetime, datetime]
    # Where the ledger counts its first period from (calls made while it was pending).
    first_period: tuple[datetime, datetime] | None = None
    invoices: tuple[PeriodInvoice, ...] = ()
    items: tuple[CarriedItem, ...] = ()

    def periods(self) -> list[tuple[datetime, datetime, PeriodInvoice | None]]:
        """Its invoices' periods, oldest first, then the current period unless invoiced."""
        found: list[tuple[datetime, datetime, PeriodInvoice | None]] = [
            (i.period_start, i.period_end, i) for i in reversed(self.invoices)
        ]
        starts = {start for start, _, _ in found}
        if self.current[0] not in starts:
            found.append((*self.current, None))
        return found


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
        self._carry = CarryOver(stripe, settings)

    async def check(
        self, *, user_id: int | None = None, progress: Callable[[str], None] | None = None
    ) -> list[Drift]:
        """The drift of every provisioned customer (or one) in each of its periods; `progress`
        hears how far the questions to Stripe have come."""
        tell = progress or (lambda _: None)
        meter_id = await self._stripe.meter_id(self._settings.stripe_meter_event_name)
        now = self._clock.now()
        async with session_scope(self._sessions) as session:
            query = select(User).where(User.stripe_customer_id.is_not(None)).order_by(User.id)
            if user_id is not None:
                query = query.where(User.id == user_id)
            customers = [
                _Customer(
                    user.id,
                    str(user.stripe_customer_id),
                    _period(user, now),
                    first_period=(
                        (user.billing_started_at, counted_from(user, user.billing_started_at))
                        if user.billing_started_at is not None
                        else None
                    ),
                )
                for user in (await session.scalars(query)).all()
            ]
        for index, customer in enumerate(customers):  # Stripe is asked outside the session
            invoices = await self._stripe.period_invoices(
                customer.customer_id, limit=RECENT_INVOICES
            )
            items: list[CarriedItem] = []
            if invoices:
                since = min(i.period_start for i in invoices)
                items = await self._stripe.carried_items(customer.customer_id, since=since)
            customers[index] = replace(customer, invoices=tuple(invoices), items=tuple(items))
            tell(f"invoices of {index + 1}/{len(customers)} customers read")
        pending: list[Drift] = []
        async with session_scope(self._sessions) as session:
            for customer in customers:
                for start, end, invoice in customer.periods():
                    pending.append(await self._ledger_side(session, customer, start, end, invoice))
        drifts = []
        for drift in pending:
            held = await self._stripe.meter_total(
                meter_id=meter_id,
                customer_id=drift.customer_id,
                start=_minute_floor(drift.period_start),
                end=_minute_ceil(drift.period_end),
            )
            drifts.append(replace(drift, stripe_units=held))
            tell(f"meter totals of {len(drifts)}/{len(pending)} periods read")
        return drifts

    async def _ledger_side(
        self,
        session: AsyncSession,
        customer: _Customer,
        start: datetime,
        end: datetime,
        invoice: PeriodInvoice | None,
    ) -> Drift:
        """The period as the ledger has it (Stripe's meter is asked afterwards)."""
        reported = await reported_units(session, customer.user_id, start, end)
        window = await reported_units(
            session, customer.user_id, _minute_floor(start), _minute_ceil(end)
        )
        invoiced = None
        if invoice is not None and not takes_usage(invoice, self._clock.now()):
            invoiced = invoice.metered_units + sum(
                item.units for item in customer.items if item.period_start == start
            )
        counted = start
        if customer.first_period is not None and customer.first_period[0] == start:
            counted = customer.first_period[1]
        totals = await period_totals(session, customer.user_id, counted, end)
        return Drift(
            customer.user_id,
            customer.customer_id,
            start,
            end,
            totals.billable_units,
            reported.sent,
            Decimal(0),
            reported.last_event_at,
            reported.last_sent_at,
            window_reported_units=window.sent,
            carried_units=reported.carried,
            invoice=invoice,
            invoiced_units=invoiced,
        )

    def settles_at(self, drift: Drift) -> datetime | None:
        """When Stripe's summaries can be trusted to hold the drift's reports (None: now)."""
        if drift.closed or drift.last_sent_at is None:
            return None  # a final invoice does not change
        at = drift.last_sent_at + self._settle
        return at if self._clock.now() < at else None

    async def fix(self, drift: Drift) -> bool:
        """Send a positive, settled drift to Stripe; True when something was sent."""
        if drift.drift <= 0:
            return False
        if drift.closed:
            return await self._carry_over(drift)
        if drift.reported_through is None:
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

    async def _carry_over(self, drift: Drift) -> bool:
        """Charge units reported but not invoiced on the next invoice, priced in their period.

        The source names the customer, the period and what was invoiced before: a fix run again
        finds the item it made (and by then the drift is 0)."""
        if drift.invoice is None or drift.invoiced_units is None:
            return False
        source = (
            f"nvfix_{drift.customer_id[:60]}_{int(drift.period_start.timestamp())}"
            f"_{drift.invoiced_units}"
        )
        await self._carry.charge(
            drift.invoice, int(drift.drift), source, drift.invoice.subscription_id
        )
        return True
