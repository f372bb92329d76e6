"""The writer's driver-level insert: the same rows as SQLAlchemy, waits for the lock, rolls back."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.dialects import sqlite

from novo_gateway.kit.clock import FrozenClock
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import SessionFactory, create_engine, create_session_factory, session_scope
from novo_gateway.kit.models_base import UTCDateTime
from novo_gateway.metering.models import UsageEvent
from novo_gateway.metering.store import sqlite as sqlite_store
from novo_gateway.metering.store.sqlite import sqlite_timestamp
from novo_gateway.metering.writer import NewUsageEvent, UsageWriteError, UsageWriter
from tests.factories import create_api_key, create_user


@pytest.fixture
async def event(sessions: SessionFactory, clock: FrozenClock) -> NewUsageEvent:
    async with session_scope(sessions) as session:
        user = await create_user(session)
        key, _ = await create_api_key(session, user)
    return NewUsageEvent(
        user_id=user.id,
        api_key_id=key.id,
        endpoint="/api/v1/insights",
        method="GET",
        status=200,
        latency_ms=2,
        units=1,
        billable=True,
        created_at=clock.now(),
        request_id="r-1",
    )


async def rows(sessions: SessionFactory) -> list[UsageEvent]:
    async with session_scope(sessions) as session:
        return list((await session.scalars(select(UsageEvent).order_by(UsageEvent.id))).all())


@pytest.mark.parametrize(
    "when",
    [
        datetime(2026, 11, 26, 12, 0, tzinfo=UTC),
        datetime(2026, 11, 26, 12, 0, 0, 1, tzinfo=UTC),
        datetime(2026, 3, 29, 1, 30, 59, 999_999, tzinfo=timezone(timedelta(hours=2))),
        datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC),
    ],
)
def test_sqlite_timestamp_is_what_sqlalchemy_binds(when: datetime) -> None:
    dialect = sqlite.dialect()
    bind = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert bind is not None
    assert sqlite_timestamp(when) == bind(when)


def test_sqlite_timestamp_refuses_a_naive_time() -> None:
    with pytest.raises(ValueError, match="naive"):
        sqlite_timestamp(datetime(2026, 11, 26, 12, 0))


async def test_direct_and_session_batches_store_equal_rows(
    writer: UsageWriter, sessions: SessionFactory, event: NewUsageEvent
) -> None:
    # No Idempotency-Key: the driver's insert. With one: the session's (it claims the key).
    await writer.record(event)
    await writer.record(replace(event, idempotency_key="k-1"))
    direct, via_session = await rows(sessions)
    for field in ("user_id", "api_key_id", "endpoint", "method", "status", "latency_ms"):
        assert getattr(direct, field) == getattr(via_session, field)
    assert (direct.units, direct.billable, direct.request_id) == (1, True, "r-1")
    assert direct.created_at == via_session.created_at == event.created_at
    assert (direct.idempotency_key, via_session.idempotency_key) == (None, "k-1")


async def test_a_bad_event_fails_alone_and_the_rest_of_its_batch_commits(
    writer: UsageWriter, sessions: SessionFactory, event: NewUsageEvent
) -> None:
    # A key id that does not exist breaks the foreign key: the batch is refused, then written
    # again in halves, so only that event fails and its batch-mates are recorded.
    bad = replace(event, api_key_id=event.api_key_id + 1000)
    batch = [replace(event, request_id=f"r-{i}") for i in range(7)]
    batch.insert(3, bad)
    results = await asyncio.gather(*(writer.record(e) for e in batch), return_exceptions=True)
    assert [isinstance(r, UsageWriteError) for r in results] == [i == 3 for i in range(8)]
    assert results[:3] + results[4:] == [True] * 7
    assert len(await rows(sessions)) == 7
    assert await writer.record(event) is True
    assert len(await rows(sessions)) == 8


async def test_sqlite_batch_waits_for_another_writer_without_blocking_the_loop(
    make_settings: Callable[..., Settings], clock: FrozenClock, backend: str
) -> None:
    if backend != "sqlite":
        pytest.skip("the write lock is SQLite's")
    settings = make_settings()
    engine = create_engine(settings)
    sessions = create_session_factory(engine)
    async with session_scope(sessions) as session:
        user = await create_user(session)
        key, _ = await create_api_key(session, user)
    writer = UsageWriter(sessions, clock)
    await writer.start()
    other = sqlite3.connect(settings.database_path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process writing
        event = NewUsageEvent(
            user_id=user.id,
            api_key_id=key.id,
            endpoint="/api/v1/insights",
            method="GET",
            status=200,
            latency_ms=1,
            units=1,
            billable=True,
            created_at=clock.now(),
        )
        recording = asyncio.ensure_future(writer.record(event))
        for _ in range(20):  # the loop keeps running while the batch waits for the lock
            await asyncio.sleep(0)
        assert not recording.done()
        other.execute("COMMIT")
        assert await recording is True
        assert len(await rows(sessions)) == 1
    finally:
        other.close()
        await writer.stop()
        await engine.dispose()


async def test_sqlite_checkpoint_empties_the_log_once_it_is_large(
    writer: UsageWriter,
    sessions: SessionFactory,
    event: NewUsageEvent,
    backend: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if backend != "sqlite":
        pytest.skip("checkpoints are SQLite's")
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_WAL_BYTES", 1)
    monkeypatch.setattr(sqlite_store, "_CHECK_WAL_EVERY_COMMITS", 2)
    real = sqlite_store._checkpoint
    log_sizes: list[int] = []

    def checkpoint(path: str) -> None:
        real(path)
        log_sizes.append(Path(f"{path}-wal").stat().st_size)

    monkeypatch.setattr(sqlite_store, "_checkpoint", checkpoint)
    for _ in range(4):
        await writer.record(event)
    await writer.stop()  # waits for a checkpoint still running
    assert log_sizes[:1] == [0]
    assert len(await rows(sessions)) == 4
