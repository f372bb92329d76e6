"""Claiming pending usage events into usage reports, a batch at a time, in a few set statements.

A claim run first counts the pending billable events of every provisioned customer (one grouped
SELECT) and packs whole customers into batches of about `batch_size` events; a customer with more
pending events than that gets batches of its own, each cut at `batch_size` events in time order
and starting where the previous cut ended.
Each batch is one transaction of a handful of statements, however many events and reports it
holds:

1. the reporter's lease is renewed in the transaction (a holder that lost it claims nothing; on
   PostgreSQL the lease row's lock also serialises claims, on SQLite this write takes the
   database's write lock, so everything below reads one state);
2. one SELECT groups the batch's events per customer and window (each customer's events found
   through the ledger's (user_id, created_at) index from its oldest pending event on, so a batch
   reads its own events, not every pending one);
3. one INSERT writes the batch's reports;
4. one UPDATE … FROM marks every event of the batch with its report's id (computed in SQL by the
   same grouping: `nvr_<Stripe customer>_<first event id>`), and its row count must equal the
   events the reports count, or the whole batch rolls back.

On PostgreSQL the transaction is REPEATABLE READ, so the SELECT and the UPDATE see the same events
even while the gateway commits new ones.

Windows: all of a customer's events in its current billing period ([current_period_start,
current_period_end)) go into one report, whatever the hour. In the account's first period
(`users.billing_started_at`) that report also takes the calls made before it, while the account
was pending, dated no earlier than the period's start so that Stripe bills them there; the usage
of an account still pending is not claimed at all until its subscription exists. Events outside
it (before the period start: a backlog from an earlier period; at or after its end: a renewal
the webhooks have not told us about yet; or a customer with no period known) keep the hourly
windows, never mixed with the period's events, so no report holds events of two invoices. A
report's timestamp is its latest event (for the period's report, not later than now, so a skewed
clock cannot make Stripe refuse a whole period's usage as "in the future").
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import reduce
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    String,
    Table,
    and_,
    case,
    cast,
    column,
    func,
    literal,
    or_,
    select,
    update,
    values,
)

from novo_gateway.accounts.models import SubscriptionStatus, User
from novo_gateway.billing.lease import Lease
from novo_gateway.billing.models import ReportStatus, UsageReport
from novo_gateway.kit.clock import Clock
from novo_gateway.kit.db import SessionFactory, session_scope
from novo_gateway.kit.models_base import UTCDateTime
from novo_gateway.metering.models import UNREPORTED_BILLABLE, UsageEvent
from novo_gateway.metering.store import LedgerStore, ledger_store

STRIPE_MAX_EVENT_AGE = timedelta(days=35)
PERIOD_WINDOW = "p"
# Customers per batch: two bound parameters each (id, oldest pending event) in one statement.
MAX_CUSTOMERS = 5_000
_REPORTS: Table = UsageReport.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class Pending:
    """A customer's pending billable events, as counted by the plan."""

    user_id: int
    events: int
    since: datetime  # its oldest pending event


@dataclass(frozen=True)
class ClaimBatch:
    """Pending events of these customers, each from its `since`, with ids up to `max_event_id`.

    `limit` cuts a batch of one customer at that many events (earliest first, by created_at and
    id); the claimer starts each further cut of that customer where the previous one ended."""

    customers: tuple[tuple[int, datetime], ...]
    max_event_id: int
    limit: int | None = None


@dataclass(frozen=True)
class BatchClaimed:
    events: int
    reports: int


def plan_batches(
    pending: Sequence[Pending],
    max_event_id: int,
    batch_size: int,
    max_customers: int = MAX_CUSTOMERS,
) -> list[ClaimBatch]:
    """Pack customers into batches of at most `batch_size` events and `max_customers` customers.

    Whole customers go together; a customer with `batch_size` or more events gets batches of its
    own, each cut at `batch_size` events."""
    batches: list[ClaimBatch] = []
    members: list[tuple[int, datetime]] = []
    total = 0

    def close() -> None:
        nonlocal total
        if members:
            batches.append(ClaimBatch(tuple(members), max_event_id))
        members.clear()
        total = 0

    for customer in pending:
        if customer.events >= batch_size:
            close()
            cuts = -(-customer.events // batch_size)
            one = ((customer.user_id, customer.since),)
            batches.extend(ClaimBatch(one, max_event_id, batch_size) for _ in range(cuts))
            continue
        if total + customer.events > batch_size or len(members) == max_customers:
            close()
        members.append((customer.user_id, customer.since))
        total += customer.events
    close()
    return batches


def _pending() -> ColumnElement[bool]:
    """Billable events not in a report yet, of customers whose subscription exists: the usage
    of an account still `pending` waits for its first period (reported now, it would be dated
    before any period and billed on no invoice)."""
    return and_(
        UNREPORTED_BILLABLE,
        User.stripe_customer_id.is_not(None),
        User.subscription_status != SubscriptionStatus.PENDING,
    )


def _window_key(store: LedgerStore) -> ColumnElement[str]:
    """ "p" for the customer's current period, else the UTC hour and the side of the period."""
    hour = store.utc_hour(UsageEvent.created_at)
    start, end = User.current_period_start, User.current_period_end
    # In the account's first period, the calls it made before (while pending) belong to it too.
    first_period = and_(User.billing_started_at.is_not(None), start == User.billing_started_at)
    in_period = and_(
        start.is_not(None),
        or_(UsageEvent.created_at >= start, first_period),
        or_(end.is_(None), UsageEvent.created_at < end),
    )
    before = and_(start.is_not(None), UsageEvent.created_at < start)
    side = case((before, literal("b")), else_=literal("a"))
    return case((in_period, literal(PERIOD_WINDOW)), else_=hour + side)


# A report's id: `nvr_<Stripe customer, first 60 characters>_<its first event's id>`. Stripe
# deduplicates identifiers across the whole Stripe account, so the id names the Stripe customer:
# another database on the same account (staging, a re-created one) reuses account and event ids,
# and its reports would be dropped as duplicates. Built in Python for the report and in SQL to
# mark its events, both from `_report_id_parts`, so the two are the same text.
_REPORT_ID_CUSTOMER_CHARS = 60
_Part = TypeVar("_Part")


def _report_id_parts(customer: _Part, first_event_id: _Part) -> tuple[str | _Part, ...]:
    """The pieces of a report id in order, given its customer part and first event id as text."""
    return ("nvr_", customer, "_", first_event_id)


def _report_id(customer: str, first_event_id: int) -> str:
    parts = _report_id_parts(customer[:_REPORT_ID_CUSTOMER_CHARS], str(first_event_id))
    return "".join(parts)


def _report_id_sql(customer: Any, first_event_id: Any) -> ColumnElement[str]:
    parts = _report_id_parts(
        func.substr(customer, 1, _REPORT_ID_CUSTOMER_CHARS, type_=String),
        cast(first_event_id, String),
    )
    pieces = [literal(p, String) if isinstance(p, str) else p for p in parts]
    return reduce(operator.add, pieces)


def _hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


class Claimer:
    """Claims pending events into reports for the holder of `lease`."""

    def __init__(
        self, sessions: SessionFactory, clock: Clock, lease: Lease, *, batch_size: int
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._lease = lease
        self.batch_size = batch_size
        # Per cut customer, the latest event its claimed cuts held: where its next cut starts.
        self._resume_at: dict[int, datetime] = {}

    async def plan(self, *, user_id: int | None = None) -> list[ClaimBatch]:
        """The batches that claim every event pending now (later events wait for the next run),
        of every customer or of one."""
        self._resume_at = {}
        query = (
            select(
                UsageEvent.user_id,
                func.count(),
                func.min(UsageEvent.created_at),
                func.max(UsageEvent.id),
            )
            .join(User, User.id == UsageEvent.user_id)
            .where(_pending())
            .group_by(UsageEvent.user_id)
            .order_by(UsageEvent.user_id)
        )
        if user_id is not None:
            query = query.where(UsageEvent.user_id == user_id)
        async with session_scope(self._sessions) as session:
            rows = (await session.execute(query)).all()
        if not rows:
            return []
        max_event_id = max(int(r[3]) for r in rows)
        pending = [Pending(int(r[0]), int(r[1]), r[2]) for r in rows]
        return plan_batches(pending, max_event_id, self.batch_size)

    async def claim(self, batch: ClaimBatch) -> BatchClaimed | None:
        """Claim one batch in one transaction; None when the lease is held by someone else."""
        async with session_scope(self._sessions) as session:
            store = ledger_store(session.get_bind().dialect.name)
            await store.one_snapshot(session)  # for the grouping and the marking below
            if not await self._lease.acquire_in(session):
                return None
            batch = self._resumed(batch)
            events = self._batch_events(batch, store)
            groups = (
                await session.execute(
                    select(
                        events.c.user_id,
                        events.c.customer,
                        events.c.period_start,
                        events.c.period_end,
                        events.c.wkey,
                        func.min(events.c.id),
                        func.count(),
                        func.sum(events.c.units),
                        func.min(events.c.created_at),
                        func.max(events.c.created_at),
                    ).group_by(
                        events.c.user_id,
                        events.c.customer,
                        events.c.period_start,
                        events.c.period_end,
                        events.c.wkey,
                    )
                )
            ).all()
            if not groups:
                return BatchClaimed(0, 0)
            now = self._clock.now()
            reports = [self._report(row, now) for row in groups]
            await store.insert_many(session, _REPORTS, reports)
            count = await store.changed_rows(session, await session.execute(self._mark(events)))
            expected = sum(int(r[6]) for r in groups)
            if count != expected:
                raise RuntimeError("usage events changed while being claimed")
        if batch.limit is not None:
            # A cut takes the customer's earliest pending events: every one before the latest
            # it held is claimed now, so the next cut starts there (its equals stay visible).
            self._resume_at[batch.customers[0][0]] = max(row[9] for row in groups)
        return BatchClaimed(expected, len(reports))

    def _resumed(self, batch: ClaimBatch) -> ClaimBatch:
        """A further cut of a customer, starting where its previous cut ended."""
        if batch.limit is None:
            return batch
        [(user_id, _)] = batch.customers
        resume_at = self._resume_at.get(user_id)
        if resume_at is None:
            return batch
        return replace(batch, customers=((user_id, resume_at),))

    @staticmethod
    def _batch_events(batch: ClaimBatch, store: LedgerStore) -> Any:
        """The batch's events: each customer's pending events from its oldest one on.

        Driven by the customers: the ledger's (user_id, created_at) index finds each one's recent
        events, so a batch reads its own events and not every pending event of the ledger. A cut
        of one big customer reads that index in its order, (created_at, id), from where the
        previous cut ended, and stops after `limit` events: each cut reads its own events, not
        every event the customer has had since its oldest pending one."""
        columns = (
            UsageEvent.id,
            UsageEvent.user_id,
            UsageEvent.units,
            UsageEvent.created_at,
            User.stripe_customer_id.label("customer"),
            User.current_period_start.label("period_start"),
            User.current_period_end.label("period_end"),
            _window_key(store).label("wkey"),
        )
        if batch.limit is not None:
            [(user_id, since)] = batch.customers
            return (
                select(*columns)
                .join(User, User.id == UsageEvent.user_id)
                .where(
                    UsageEvent.user_id == user_id,
                    UsageEvent.created_at >= since,
                    _pending(),
                    UsageEvent.id <= batch.max_event_id,
                )
                .order_by(UsageEvent.created_at, UsageEvent.id)
                .limit(batch.limit)
                .subquery("batch")
            )
        customers = (
            values(column("user_id", BigInteger), column("since", UTCDateTime), name="customers")
            .data(list(batch.customers))
            .cte("customers")
        )
        return (
            select(*columns)
            .select_from(customers)
            .join(
                UsageEvent,
                and_(
                    UsageEvent.user_id == customers.c.user_id,
                    UsageEvent.created_at >= customers.c.since,
                ),
            )
            .join(User, User.id == UsageEvent.user_id)
            .where(_pending(), UsageEvent.id <= batch.max_event_id)
            .subquery("batch")
        )

    @staticmethod
    def _mark(events: Any) -> Any:
        """UPDATE … FROM: every event of the batch gets its group's report id."""
        first = func.min(events.c.id).over(partition_by=(events.c.user_id, events.c.wkey))
        report_id = _report_id_sql(events.c.customer, first)
        ids = select(events.c.id, report_id.label("report_id")).subquery("marks")
        return (
            update(UsageEvent)
            .where(UsageEvent.id == ids.c.id, UsageEvent.report_id.is_(None))
            .values(report_id=ids.c.report_id)
            .execution_options(synchronize_session=False)
        )

    def _report(self, row: Any, now: datetime) -> dict[str, Any]:
        user_id, customer, period_start, period_end, window = row[:5]
        first_id, count, units, earliest, latest = row[5:]
        timestamp = latest
        if window == PERIOD_WINDOW:
            # Calls made before the first period (the account was pending) start the window early.
            window_start = (
                _hour(earliest) if earliest < period_start else max(period_start, _hour(earliest))
            )
            window_end = _hour(latest) + timedelta(hours=1)
            if period_end is not None:
                window_end = min(window_end, period_end)
            if period_start <= now < latest:
                timestamp = now  # still inside the period: Stripe takes it, and bills it there
            # Only such calls before the period: dated at its start, so Stripe bills them in it.
            timestamp = max(timestamp, period_start)
            belongs_to = period_start
        else:
            window_start = _hour(earliest)
            window_end = window_start + timedelta(hours=1)
            belongs_to = period_start or window_start
        return {
            "id": _report_id(str(customer), int(first_id)),
            "user_id": int(user_id),
            "stripe_customer_id": str(customer),
            "period_start": belongs_to,
            "window_start": window_start,
            "window_end": window_end,
            "event_timestamp": timestamp,
            "units": int(units),
            "event_count": int(count),
            # Too old for Stripe's meter (35 days) too: the reporter carries it over to the
            # next invoice when its period's invoice is final, and only else expires it.
            "status": ReportStatus.PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "first_attempt_at": None,
            "last_error": None,
            "created_at": now,
        }
