"""The usage views read the daily counter by its key and a range of the `(user_id, created_at)`
index, never a whole table; the reporter's pending events are found by the partial index, and a
claim batch cut inside one customer's events reads only its own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from novo_gateway.accounts.models import User
from novo_gateway.billing.claim import ClaimBatch, Claimer
from novo_gateway.kit.clock import FrozenClock
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import session_scope
from novo_gateway.metering import queries
from novo_gateway.metering.models import UsageEvent
from novo_gateway.metering.store import ledger_store
from tests.conftest import AppClient
from tests.gateway.helpers import Account, make_account, runtime_of
from tests.metering.ledger import add_to_ledger

EVENTS_INDEX = "ix_usage_events_user_created"
PENDING_INDEX = "ix_usage_events_unreported"
USAGE_TABLES = ("usage_events", "usage_daily", "usage_endpoint_daily")
NOW = datetime(2026, 11, 26, 15, 30, tzinfo=UTC)


async def plans(engine: AsyncEngine, seen: list[tuple[str, Any]]) -> list[str]:
    """The plan of each statement, as a big table would get it."""
    postgres = engine.dialect.name == "postgresql"
    found = []
    async with engine.connect() as conn:
        if postgres:
            # An empty table would be scanned whatever the indexes; ask what a big one would do.
            await conn.exec_driver_sql("SET enable_seqscan = off")
        for statement, params in seen:
            explain = "EXPLAIN " if postgres else "EXPLAIN QUERY PLAN "
            rows = (await conn.exec_driver_sql(explain + statement, params)).all()
            found.append("\n".join(str(row[-1]) for row in rows))
    return found


def no_full_scan(plan: str) -> None:
    for table in USAGE_TABLES:
        assert f"Seq Scan on {table}" not in plan, plan
        assert f"SCAN {table}" not in plan.replace(f"SCAN {table} USING", ""), plan


def insights_call(account: Account, at: datetime, report_id: str | None = None) -> UsageEvent:
    """A billed `GET /api/v1/insights` of the account at `at`."""
    return UsageEvent(
        user_id=account.user_id,
        api_key_id=account.key_id,
        endpoint="/api/v1/insights",
        method="GET",
        status=200,
        latency_ms=3,
        units=1,
        billable=True,
        created_at=at,
        report_id=report_id,
    )


def recorder(seen: list[tuple[str, Any]], *tables: str) -> Callable[..., None]:
    """A `before_cursor_execute` listener keeping the statements that name one of `tables`."""

    def capture(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if not tables or any(table in statement for table in tables):
            seen.append((statement, params))

    return capture


@asynccontextmanager
async def own_connection(
    engine: AsyncEngine, seen: list[tuple[str, Any]], *tables: str
) -> AsyncIterator[AsyncConnection]:
    """A connection of the test's own whose statements (only its own) are kept in `seen`.

    The listener is on this connection, not the engine: the app's background workers share the
    engine, and an engine-wide listener caught their queries too (a flaky failure).
    """
    async with engine.connect() as conn:
        capture = recorder(seen, *tables)
        event.listen(conn.sync_connection, "before_cursor_execute", capture)
        try:
            yield conn
        finally:
            event.remove(conn.sync_connection, "before_cursor_execute", capture)


async def captured(
    client: AppClient, read: Callable[[AsyncSession], Awaitable[object]]
) -> list[str]:
    """The plans of the usage statements `read` sends, run on a session of the test's own."""
    engine = runtime_of(client).engine
    seen: list[tuple[str, Any]] = []
    async with (
        own_connection(engine, seen, *USAGE_TABLES) as conn,
        AsyncSession(bind=conn) as session,
    ):
        await read(session)
    return await plans(engine, seen)


def usage_of(client: AppClient, user_id: int) -> Callable[[AsyncSession], Awaitable[object]]:
    """What `GET /billing/usage` reads for the account."""

    async def read(session: AsyncSession) -> object:
        user = await session.get(User, user_id)
        assert user is not None
        runtime = runtime_of(client)
        return await queries.usage_summary(session, user, runtime.settings, now=runtime.clock.now())

    return read


def endpoints_of(client: AppClient, user_id: int) -> Callable[[AsyncSession], Awaitable[object]]:
    """What `GET /billing/usage/endpoints` reads for the account (its default 30 days)."""

    async def read(session: AsyncSession) -> object:
        return await queries.endpoint_usage(
            session, user_id, now=runtime_of(client).clock.now(), days=30
        )

    return read


async def test_a_month_from_midnight_is_read_from_the_counter_only(
    settings: Settings, start_app: Callable[..., Any]
) -> None:
    client: AppClient = await start_app(settings, FrozenClock(NOW))
    account = await make_account(client)
    found = await captured(client, usage_of(client, account.user_id))
    assert len(found) == 2  # period totals, days
    for plan in found:
        assert "usage_daily" in plan, plan
        assert "usage_events" not in plan, plan
        no_full_scan(plan)


async def test_a_period_from_mid_day_reads_that_day_by_the_events_index(
    settings: Settings, start_app: Callable[..., Any]
) -> None:
    client: AppClient = await start_app(settings, FrozenClock(NOW))
    account = await make_account(client)
    async with session_scope(runtime_of(client).sessions) as session:
        await session.execute(
            update(User)
            .where(User.id == account.user_id)
            .values(
                current_period_start=datetime(2026, 11, 20, 18, tzinfo=UTC),
                current_period_end=datetime(2026, 12, 20, 18, tzinfo=UTC),
            )
        )
    found = await captured(client, usage_of(client, account.user_id))
    assert len(found) == 2  # period totals (counted days and partial days together), days
    on_events = [plan for plan in found if "usage_events" in plan]
    assert len(on_events) == 1  # the first and the last day's parts
    for plan in found:
        no_full_scan(plan)
    for plan in on_events:
        assert EVENTS_INDEX in plan, plan


async def test_endpoint_usage_reads_a_range_of_the_events_index(
    settings: Settings, start_app: Callable[..., Any]
) -> None:
    client: AppClient = await start_app(settings, FrozenClock(NOW))
    account = await make_account(client)
    found = await captured(client, endpoints_of(client, account.user_id))
    # The whole days' counter (empty here), then the events of the range.
    assert ["usage_endpoint_daily" in plan for plan in found] == [True, False]
    assert EVENTS_INDEX in found[1], found[1]
    for plan in found:
        no_full_scan(plan)


async def test_endpoint_usage_reads_whole_days_by_the_counter_key_and_two_partial_days(
    settings: Settings, start_app: Callable[..., Any]
) -> None:
    client: AppClient = await start_app(settings, FrozenClock(NOW))
    account = await make_account(client)
    async with session_scope(runtime_of(client).sessions) as session:
        await add_to_ledger(session, [insights_call(account, datetime(2026, 11, 10, tzinfo=UTC))])
    found = await captured(client, endpoints_of(client, account.user_id))
    assert len(found) == 2
    counter, events = found
    assert "usage_endpoint_daily" in counter and "usage_events" not in counter, counter
    assert EVENTS_INDEX in events, events
    for plan in found:
        no_full_scan(plan)


async def test_pending_events_are_found_by_the_partial_index(
    settings: Settings, start_app: Callable[..., Any]
) -> None:
    client: AppClient = await start_app(settings, FrozenClock(NOW))
    account = await make_account(client)
    engine = runtime_of(client).engine
    async with session_scope(runtime_of(client).sessions) as session:
        await add_to_ledger(
            session,
            [
                insights_call(
                    account, NOW, report_id=None if i % 500 == 0 else "nvr_cus_1_1"
                )  # most are reported
                for i in range(3000)
            ],
        )
    async with engine.begin() as conn:
        await conn.exec_driver_sql("ANALYZE")
    # The reporter's claims, in the columns it keeps: pending billable events in id order, and
    # counted per account, then read for a range of accounts.
    pending = (UsageEvent.report_id.is_(None), UsageEvent.billable.is_(True))
    per_account = (
        select(UsageEvent.user_id, func.count(), func.max(UsageEvent.id))
        .where(*pending)
        .group_by(UsageEvent.user_id)
    )
    claims = [
        select(UsageEvent.id, UsageEvent.user_id, UsageEvent.units, UsageEvent.created_at)
        .where(*pending)
        .order_by(UsageEvent.id)
        .limit(20_000),
    ]
    if engine.dialect.name == "postgresql":
        # SQLite's planner prefers the account index for these two (a GROUP BY walks it in
        # order, a range of accounts is a range of it); PostgreSQL's index is by account.
        claims.append(per_account)
        claims.append(
            select(UsageEvent.id, UsageEvent.units, UsageEvent.created_at).where(
                *pending, UsageEvent.user_id.between(1, 10), UsageEvent.id <= 10_000
            )
        )
    seen: list[tuple[str, Any]] = []
    async with own_connection(engine, seen) as conn:
        for claim in claims:
            await conn.execute(claim)
    for plan in await plans(engine, seen):
        assert PENDING_INDEX in plan, plan
        no_full_scan(plan)


async def test_a_cut_of_one_customer_reads_the_events_index_in_order(
    settings: Settings, start_app: Callable[..., Any]
) -> None:
    """A claim batch cut inside a customer's events stops after its own events: on SQLite it
    walks the (user_id, created_at) index in order, without sorting all of the customer's
    events (the claimed ones too: SQLite's pending index is by id, not by customer)."""
    client: AppClient = await start_app(settings, FrozenClock(NOW))
    account = await make_account(client)
    engine = runtime_of(client).engine
    cut = ClaimBatch(((account.user_id, NOW),), max_event_id=10**9, limit=2_000)
    events = Claimer._batch_events(cut, ledger_store(engine.dialect.name))
    seen: list[tuple[str, Any]] = []
    async with own_connection(engine, seen, "usage_events") as conn:
        await conn.execute(select(events))
        await conn.execute(Claimer._mark(events))
        await conn.rollback()
    for plan in await plans(engine, seen):
        no_full_scan(plan)
        if engine.dialect.name == "postgresql":
            # PostgreSQL may also take its partial index of pending events (only those sorted).
            assert EVENTS_INDEX in plan or PENDING_INDEX in plan, plan
            continue
        assert EVENTS_INDEX in plan, plan
        # Reading the cut sorts nothing (a later sort, of the cut's rows only, is the marks').
        reading = plan.split("CO-ROUTINE batch", 1)[1].split("SCAN batch", 1)[0]
        assert "TEMP B-TREE" not in reading, plan
