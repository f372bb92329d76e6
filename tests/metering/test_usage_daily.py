"""The running counter `usage_daily`: always the exact sums of the committed events per account
and UTC day, whichever way they were written, and what `/billing/usage` reads for whole days."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, replace
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import asyncpg
import pytest
from alembic import command
from sqlalchemy import Select, String, case, column, func, insert, select, table, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from novo_gateway.accounts.models import User
from novo_gateway.keys.models import ApiKey
from novo_gateway.kit.clock import FrozenClock
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import SessionFactory, create_engine, create_session_factory, session_scope
from novo_gateway.kit.models_base import UTCDateTime
from novo_gateway.metering import queries
from novo_gateway.metering.counters import count_batch
from novo_gateway.metering.daily import utc_day
from novo_gateway.metering.models import (
    UsageDaily,
    UsageEvent,
    decode_request_id,
    encode_request_id,
)
from novo_gateway.metering.store import ledger_store
from novo_gateway.metering.writer import NewUsageEvent, UsageWriteError, UsageWriter
from novo_gateway.migrate import alembic_config, upgrade
from tests.conftest import PG_URL, make_test_settings
from tests.factories import create_api_key, create_user
from tests.metering.ledger import add_to_ledger

MIDNIGHT = datetime(2026, 11, 26, tzinfo=UTC)
# The events' table before migration 0004, as far as these tests write it.
NAMES = ("id", "user_id", "api_key_id", "endpoint", "method", "status", "latency_ms", "units")
NAMES += ("billable", "report_id", "idempotency_key", "created_at", "request_id")
OLD_EVENTS = table(
    "usage_events",
    *(column(name) for name in NAMES[:-2]),
    column("created_at", UTCDateTime()),
    column("request_id", String()),
)
# The gateway's own ids, and clients' of every length (15 bytes is the one that needs care).
REQUEST_IDS = [
    "0123456789abcdef0123456789abcdef",
    "00000000000000000000000000000000",
    "0123456789ABCDEF0123456789ABCDEF",
    "fifteen-chars-x",
    "sixteen-chars-xy",
    "r",
    "é-latin-1",
    "x" * 64,
    None,
]
Day = tuple[int, date]
Sums = dict[Day, tuple[int, int, int]]


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(MIDNIGHT + timedelta(hours=12))


async def account(sessions: SessionFactory, email: str) -> tuple[int, int]:
    async with session_scope(sessions) as session:
        user = await create_user(session, email=email)
        key, _ = await create_api_key(session, user)
    return user.id, key.id


def call(
    user: tuple[int, int],
    at: datetime,
    *,
    billable: bool = True,
    units: int = 1,
    key: str | None = None,
) -> NewUsageEvent:
    return NewUsageEvent(
        user_id=user[0],
        api_key_id=user[1],
        endpoint="/api/v1/insights",
        method="GET",
        status=200 if billable else 500,
        latency_ms=4,
        units=units,
        billable=billable,
        created_at=at,
        idempotency_key=key,
    )


async def counter(sessions: SessionFactory) -> Sums:
    async with session_scope(sessions) as session:
        rows = (await session.execute(select(UsageDaily))).scalars().all()
        return {
            (r.user_id, r.day): (r.calls, r.billable_units, r.unbilled_calls)
            for r in rows
            if r.calls
        }


async def from_events(sessions: SessionFactory) -> Sums:
    """The sums the counter must hold, computed from the events themselves."""
    sums: dict[Day, list[int]] = {}
    async with session_scope(sessions) as session:
        for event in (await session.execute(select(UsageEvent))).scalars():
            found = sums.setdefault((event.user_id, utc_day(event.created_at)), [0, 0, 0])
            found[0] += 1
            found[1] += event.units if event.billable else 0
            found[2] += 0 if event.billable else 1
    return {day: (c[0], c[1], c[2]) for day, c in sums.items()}


async def test_counter_is_exact_after_mixed_batches(
    writer: UsageWriter, sessions: SessionFactory
) -> None:
    ada, grace = await account(sessions, "ada@example.com"), await account(sessions, "g@x.org")
    late, early = MIDNIGHT - timedelta(microseconds=1), MIDNIGHT
    paris = timezone(timedelta(hours=2))
    batch = [
        call(ada, late),
        call(ada, early, units=3),
        call(ada, early, billable=False),
        call(grace, late, billable=False),
        call(grace, early),
        # 01:30 in Paris is 23:30 UTC of the day before.
        call(grace, datetime(2026, 11, 26, 1, 30, tzinfo=paris), units=2),
    ]
    # One batch through the driver's insert (nothing to claim)...
    results = await asyncio.gather(*(writer.record(e) for e in batch))
    assert results == [True, True, False, False, True, True]
    # ...and batches through the session, each claiming an Idempotency-Key: retries unbilled.
    retries = [call(ada, early, key="order-1", units=5) for _ in range(3)]
    retries += [call(grace, late, key="order-1")]
    results = await asyncio.gather(*(writer.record(e) for e in retries))
    assert results == [True, False, False, True]
    assert await writer.record(call(ada, early, key="order-1", units=5)) is False

    expected = {
        (ada[0], date(2026, 11, 25)): (1, 1, 0),
        (ada[0], date(2026, 11, 26)): (6, 3 + 5, 4),
        (grace[0], date(2026, 11, 25)): (3, 2 + 1, 1),
        (grace[0], date(2026, 11, 26)): (1, 1, 0),
    }
    assert await counter(sessions) == expected
    assert await from_events(sessions) == expected


async def test_a_batch_whose_counter_fails_leaves_no_events(
    writer: UsageWriter, sessions: SessionFactory, clock: FrozenClock, settings: Settings
) -> None:
    ada = await account(sessions, "ada@example.com")
    assert await writer.record(call(ada, clock.now())) is True
    engine = create_engine(settings)
    async with engine.begin() as conn:
        await conn.execute(text("ALTER TABLE usage_daily RENAME TO usage_daily_away"))
    try:
        for event in (call(ada, clock.now()), call(ada, clock.now(), key="k")):  # both paths
            with pytest.raises(UsageWriteError):
                await writer.record(event)
    finally:
        async with engine.begin() as conn:
            await conn.execute(text("ALTER TABLE usage_daily_away RENAME TO usage_daily"))
        await engine.dispose()
    assert await counter(sessions) == {(ada[0], date(2026, 11, 26)): (1, 1, 0)}
    assert await from_events(sessions) == await counter(sessions)
    # The writer carries on, and the key the failed batch tried to claim is still free.
    assert await writer.record(call(ada, clock.now(), key="k")) is True
    assert await counter(sessions) == {(ada[0], date(2026, 11, 26)): (2, 2, 0)}


async def test_an_event_that_fails_adds_nothing_to_the_counter(
    writer: UsageWriter, sessions: SessionFactory, clock: FrozenClock
) -> None:
    ada = await account(sessions, "ada@example.com")
    orphan = (ada[0] + 1000, ada[1])  # no such account: its event is refused
    for key in (None, "k"):  # the driver's insert and the session's
        results = await asyncio.gather(
            writer.record(call(ada, clock.now(), key=key)),
            writer.record(call(orphan, clock.now())),
            return_exceptions=True,
        )
        assert results[0] is True and isinstance(results[1], UsageWriteError)
    # Only the recorded calls are counted (the refused one is written alone and rolled back).
    assert await counter(sessions) == {(ada[0], date(2026, 11, 26)): (2, 2, 0)}


async def test_two_writers_on_one_account_and_day_keep_one_exact_counter(
    sessions: SessionFactory, clock: FrozenClock
) -> None:
    # As two processes, each with its writer, committing batches that touch the same row.
    ada = await account(sessions, "ada@example.com")
    first, second = UsageWriter(sessions, clock), UsageWriter(sessions, clock)
    await first.start()
    await second.start()
    try:
        await asyncio.gather(
            *((first if i % 2 else second).record(call(ada, clock.now())) for i in range(300))
        )
    finally:
        await first.stop()
        await second.stop()
    assert await counter(sessions) == {(ada[0], date(2026, 11, 26)): (300, 300, 0)}


async def test_events_inserted_by_a_session_are_counted_with_it(
    sessions: SessionFactory, clock: FrozenClock
) -> None:
    """The store's insert through a session (the writer's path for Idempotency-Keys) adds the
    counts in the session's transaction: twice in one, and not at all when it rolls back."""
    ada = await account(sessions, "ada@example.com")

    async def insert(session: AsyncSession, count: int) -> None:
        events = [call(ada, clock.now()) for _ in range(count)]
        store = ledger_store(session.get_bind().dialect.name)
        counts = count_batch(events, [e.billable for e in events])
        await store.insert_events(session, [asdict(e) for e in events], counts)

    async with session_scope(sessions) as session:
        await insert(session, 3)
        await insert(session, 2)  # a second insert in the same transaction
    with pytest.raises(RuntimeError):
        async with session_scope(sessions) as session:
            await insert(session, 7)
            raise RuntimeError("rolled back")
    assert await counter(sessions) == {(ada[0], date(2026, 11, 26)): (5, 5, 0)}


def _events_sum(user_id: int, start: datetime, end: datetime) -> Select[tuple[int, int, int]]:
    return select(
        func.count(),
        func.coalesce(func.sum(case((UsageEvent.billable, UsageEvent.units), else_=0)), 0),
        func.coalesce(func.sum(case((UsageEvent.billable, 0), else_=1)), 0),
    ).where(
        UsageEvent.user_id == user_id, UsageEvent.created_at >= start, UsageEvent.created_at < end
    )


async def test_period_totals_equal_the_events_of_any_period(
    sessions: SessionFactory,
) -> None:
    ada = await account(sessions, "ada@example.com")
    other = await account(sessions, "grace@example.com")
    base = MIDNIGHT - timedelta(days=3)
    times = [base + timedelta(minutes=97 * i, microseconds=i) for i in range(150)]
    times += [MIDNIGHT, MIDNIGHT - timedelta(microseconds=1), MIDNIGHT + timedelta(hours=3)]
    async with session_scope(sessions) as session:
        await add_to_ledger(
            session,
            [
                UsageEvent(
                    user_id=user[0],
                    api_key_id=user[1],
                    endpoint="/api/v1/insights",
                    method="GET",
                    status=200 if i % 4 else 500,
                    latency_ms=1,
                    units=1 + i % 3,
                    billable=bool(i % 4),
                    created_at=at,
                )
                for i, at in enumerate(times)
                for user in (ada, other)
                if user is ada or i % 5 == 0
            ],
        )
    periods = [
        (MIDNIGHT - timedelta(days=2), MIDNIGHT + timedelta(days=1)),  # whole days
        (MIDNIGHT - timedelta(days=2, hours=-3), MIDNIGHT + timedelta(days=28)),  # 03:00 start
        (MIDNIGHT - timedelta(hours=3), MIDNIGHT + timedelta(hours=20)),  # 21:00 start
        (MIDNIGHT - timedelta(days=3, hours=-5), MIDNIGHT + timedelta(hours=2, minutes=7)),
        (MIDNIGHT + timedelta(hours=1), MIDNIGHT + timedelta(hours=4)),  # within one day
        (MIDNIGHT + timedelta(hours=2), MIDNIGHT + timedelta(hours=23)),
        (MIDNIGHT - timedelta(hours=1), MIDNIGHT + timedelta(hours=1)),  # across midnight
        (MIDNIGHT - timedelta(microseconds=1), MIDNIGHT),
        (MIDNIGHT, MIDNIGHT),
    ]
    checked = Counter[bool]()
    async with session_scope(sessions) as session:
        for index, (start, end) in enumerate(periods):
            totals = await queries.period_totals(session, ada[0], start, end)
            expected = (await session.execute(_events_sum(ada[0], start, end))).one()
            got = (totals.calls, totals.billable_units, totals.unbilled_calls)
            assert got == tuple(expected), (start, end)
            checked[bool(got[0])] += 1
            # Many accounts at once, each in its own period (the admin page's totals).
            each = {ada[0]: (start, end), other[0]: periods[(index + 3) % len(periods)]}
            billed = {
                user_id: (await queries.period_totals(session, user_id, *period)).billable_units
                for user_id, period in each.items()
            }
            assert await queries.billed_units_by_account(session, each) == {
                user_id: units for user_id, units in billed.items() if units
            }, each
    assert checked[True] >= 6  # most periods hold events


async def test_daily_breakdown_is_read_from_the_counter(
    writer: UsageWriter, sessions: SessionFactory, clock: FrozenClock
) -> None:
    ada = await account(sessions, "ada@example.com")
    await asyncio.gather(
        writer.record(call(ada, MIDNIGHT - timedelta(hours=1), units=2)),
        writer.record(call(ada, MIDNIGHT, billable=False)),
        writer.record(call(ada, MIDNIGHT + timedelta(hours=5))),
    )
    async with session_scope(sessions) as session:
        days = await queries.daily_usage(session, ada[0], now=clock.now(), days=3)
    assert [(d.day, d.calls, d.billable_units) for d in days] == [
        (date(2026, 11, 24), 0, 0),
        (date(2026, 11, 25), 1, 2),
        (date(2026, 11, 26), 2, 1),
    ]


@pytest.fixture
def empty_database(backend: str, tmp_path: Path) -> Iterator[Settings]:
    """Settings on a database with no schema at all (for migrating it step by step)."""
    if backend == "sqlite":
        yield make_test_settings(database_path=tmp_path / "old.db")
        return
    name = f"novo_migrate_{uuid.uuid4().hex[:10]}"
    admin_url = PG_URL.rsplit("/", 1)[0] + "/postgres"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield make_test_settings(database_url=PG_URL.rsplit("/", 1)[0] + f"/{name}")
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def insert_account(conn: AsyncConnection, i: int) -> tuple[int, int]:
    """An account and its key in a database of an older revision, by Core inserts."""
    user_id = (
        await conn.execute(
            insert(User).returning(User.id),
            {
                "email": f"u{i}@example.com",
                "name": "U",
                "password_hash": "x",
                "subscription_status": "active",
                "created_at": MIDNIGHT,
                "cancel_at_period_end": False,
            },
        )
    ).scalar_one()
    key_id = (
        await conn.execute(
            insert(ApiKey).returning(ApiKey.id),
            {
                "user_id": user_id,
                "name": "k",
                "prefix": "nk_x",
                "key_hash": f"h{i}",
                "is_active": True,
                "created_at": MIDNIGHT,
                "changed_at": MIDNIGHT,
            },
        )
    ).scalar_one()
    return user_id, key_id


async def test_migration_backfills_the_counter_and_keeps_every_event(
    empty_database: Settings,
) -> None:
    await asyncio.to_thread(upgrade, empty_database, "0003_subscription_state")
    engine = create_engine(empty_database)
    sessions = create_session_factory(engine)
    try:
        async with engine.begin() as conn:
            users = [await insert_account(conn, i) for i in range(2)]
            # Core inserts on a connection: no session, so nothing touches the counter yet.
            await conn.execute(
                insert(OLD_EVENTS),
                [
                    {
                        "user_id": users[i % 2][0],
                        "api_key_id": users[i % 2][1],
                        "endpoint": "/api/v1/insights",
                        "method": "GET",
                        "status": 200 if i % 3 else 500,
                        "latency_ms": i,
                        "units": 1 + i % 2,
                        "billable": bool(i % 3),
                        "created_at": MIDNIGHT + timedelta(hours=5 * i - 30, microseconds=i),
                        "request_id": REQUEST_IDS[i % len(REQUEST_IDS)],
                        "report_id": "nvr_cus_1_1" if i % 7 == 0 else None,
                    }
                    for i in range(40)
                ],
            )
        async with engine.connect() as conn:
            old = await conn.execute(select(OLD_EVENTS).order_by(OLD_EVENTS.c.id))
            before_rows = [tuple(row._mapping[name] for name in NAMES) for row in old]
        assert {row[-1] for row in before_rows} == set(REQUEST_IDS)
        await asyncio.to_thread(upgrade, empty_database)
        async with session_scope(sessions) as session:
            after = (await session.execute(select(UsageEvent).order_by(UsageEvent.id))).all()
            assert [_row(r[0]) for r in after] == before_rows
        expected = await from_events(sessions)
        assert len(expected) >= 8
        assert await counter(sessions) == expected
        # New events after the migration: ids go on from the old ones, counted as they land.
        writer = UsageWriter(sessions, FrozenClock(MIDNIGHT))
        await writer.start()
        try:
            await writer.record(call(users[0], MIDNIGHT))
        finally:
            await writer.stop()
        async with session_scope(sessions) as session:
            ids = (await session.execute(select(UsageEvent.id).order_by(UsageEvent.id))).all()
        assert ids[-1][0] > int(str(before_rows[-1][0]))
        assert await counter(sessions) == await from_events(sessions)
        # And back: the events as they were (the new one too, with no request id).
        await engine.dispose()
        await asyncio.to_thread(downgrade, empty_database, "0003_subscription_state")
        async with engine.connect() as conn:
            old = await conn.execute(select(OLD_EVENTS).order_by(OLD_EVENTS.c.id))
            back = [tuple(row._mapping[name] for name in NAMES) for row in old]
        assert back[:-1] == before_rows
    finally:
        await engine.dispose()


def downgrade(settings: Settings, revision: str) -> None:
    command.downgrade(alembic_config(settings), revision)


def _row(event: UsageEvent) -> tuple[object, ...]:
    return tuple(getattr(event, name) for name in NAMES)


async def test_a_retry_of_one_event_in_the_same_batch_is_counted_unbilled(
    writer: UsageWriter, sessions: SessionFactory, clock: FrozenClock
) -> None:
    ada = await account(sessions, "ada@example.com")
    retry = call(ada, clock.now(), key="same")
    results = await asyncio.gather(*(writer.record(replace(retry)) for _ in range(5)))
    assert sorted(results) == [False, False, False, False, True]
    assert await counter(sessions) == {(ada[0], date(2026, 11, 26)): (5, 1, 4)}


@pytest.mark.parametrize("request_id", [r for r in REQUEST_IDS if r is not None])
def test_request_ids_are_read_back_as_given(request_id: str) -> None:
    stored = encode_request_id(request_id)
    assert decode_request_id(stored) == request_id
    assert len(stored) == (16 if request_id in REQUEST_IDS[:2] else len(stored))
