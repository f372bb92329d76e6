"""The usage writer: group commit, idempotency keys billed once per 24 h, failures and draining."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from sqlalchemy import func, select

from novo_gateway.kit.clock import FrozenClock
from novo_gateway.kit.db import SessionFactory, session_scope
from novo_gateway.metering.models import UsageEvent, UsageIdempotencyKey
from novo_gateway.metering.writer import NewUsageEvent, UsageWriteError, UsageWriter
from tests.factories import create_api_key, create_user


@pytest.fixture
async def event(sessions: SessionFactory, clock: FrozenClock) -> NewUsageEvent:
    """A billable event of a fresh account."""
    async with session_scope(sessions) as session:
        user = await create_user(session)
        key, _ = await create_api_key(session, user)
    return NewUsageEvent(
        user_id=user.id,
        api_key_id=key.id,
        endpoint="/api/v1/insights",
        method="GET",
        status=200,
        latency_ms=3,
        units=1,
        billable=True,
        created_at=clock.now(),
    )


async def ledger(sessions: SessionFactory) -> list[UsageEvent]:
    async with session_scope(sessions) as session:
        return list((await session.scalars(select(UsageEvent).order_by(UsageEvent.id))).all())


async def test_recorded_event_is_committed_when_record_returns(
    writer: UsageWriter, sessions: SessionFactory, event: NewUsageEvent
) -> None:
    assert await writer.record(event) is True
    (row,) = await ledger(sessions)
    assert (row.endpoint, row.method, row.status, row.units, row.billable) == (
        "/api/v1/insights",
        "GET",
        200,
        1,
        True,
    )
    assert row.created_at == event.created_at


async def test_concurrent_events_are_all_written_in_fewer_commits(
    writer: UsageWriter, sessions: SessionFactory, event: NewUsageEvent
) -> None:
    results = await asyncio.gather(*(writer.record(event) for _ in range(200)))
    assert all(results)
    assert len(await ledger(sessions)) == 200
    assert writer.committed_batches < 200


async def test_same_idempotency_key_is_billed_once(
    writer: UsageWriter, sessions: SessionFactory, event: NewUsageEvent
) -> None:
    retry = replace(event, idempotency_key="order-42")
    assert await writer.record(retry) is True
    assert await writer.record(retry) is False
    rows = await ledger(sessions)
    assert [r.billable for r in rows] == [True, False]
    assert {r.idempotency_key for r in rows} == {"order-42"}


async def test_concurrent_retries_with_one_idempotency_key_bill_exactly_once(
    sessions: SessionFactory, clock: FrozenClock, event: NewUsageEvent
) -> None:
    # Two writers (as in two processes) racing on the same key, several batches each.
    first, second = UsageWriter(sessions, clock), UsageWriter(sessions, clock)
    await first.start()
    await second.start()
    retry = replace(event, idempotency_key="order-42")
    try:
        results = await asyncio.gather(
            *((first if i % 2 else second).record(retry) for i in range(40))
        )
    finally:
        await first.stop()
        await second.stop()
    assert sum(results) == 1
    assert sum(r.billable for r in await ledger(sessions)) == 1


async def test_idempotency_key_bills_again_after_24_hours(
    writer: UsageWriter, sessions: SessionFactory, clock: FrozenClock, event: NewUsageEvent
) -> None:
    assert await writer.record(replace(event, idempotency_key="k")) is True
    clock.advance(23 * 3600)
    assert await writer.record(replace(event, idempotency_key="k", created_at=clock.now())) is False
    clock.advance(3600)
    assert await writer.record(replace(event, idempotency_key="k", created_at=clock.now())) is True


async def test_idempotency_keys_are_per_account(
    writer: UsageWriter, sessions: SessionFactory, event: NewUsageEvent
) -> None:
    async with session_scope(sessions) as session:
        other = await create_user(session, email="grace@example.com")
        other_key, _ = await create_api_key(session, other)
    mine = replace(event, idempotency_key="k")
    theirs = replace(mine, user_id=other.id, api_key_id=other_key.id)
    assert await writer.record(mine) is True
    assert await writer.record(theirs) is True


async def test_unbillable_call_does_not_use_up_its_idempotency_key(
    writer: UsageWriter, event: NewUsageEvent
) -> None:
    failed = replace(event, status=500, billable=False, idempotency_key="k")
    assert await writer.record(failed) is False
    assert await writer.record(replace(event, idempotency_key="k")) is True


async def test_failed_batch_writes_nothing_and_the_writer_carries_on(
    writer: UsageWriter, sessions: SessionFactory, event: NewUsageEvent
) -> None:
    good = replace(event, idempotency_key="k")
    orphan = replace(good, user_id=event.user_id + 1000)  # no such account: the insert fails
    with pytest.raises(UsageWriteError):
        await writer.record(orphan)
    assert await ledger(sessions) == []
    async with session_scope(sessions) as session:
        assert await session.scalar(select(func.count()).select_from(UsageIdempotencyKey)) == 0
    # The same key, on a call that can be recorded, bills: the failed batch claimed nothing.
    assert await writer.record(good) is True
    assert len(await ledger(sessions)) == 1


async def test_a_refused_event_fails_alone_and_its_batch_mates_are_recorded(
    writer: UsageWriter, sessions: SessionFactory, event: NewUsageEvent
) -> None:
    good = replace(event, idempotency_key="k")
    orphan = replace(event, user_id=event.user_id + 1000)  # no such account: refused
    results = await asyncio.gather(
        writer.record(good), writer.record(orphan), writer.record(event), return_exceptions=True
    )
    assert results[0] is True and results[2] is True
    assert isinstance(results[1], UsageWriteError)
    assert len(await ledger(sessions)) == 2
    async with session_scope(sessions) as session:
        assert await session.scalar(select(func.count()).select_from(UsageIdempotencyKey)) == 1


async def test_stop_writes_everything_still_queued(
    sessions: SessionFactory, clock: FrozenClock, event: NewUsageEvent
) -> None:
    usage = UsageWriter(sessions, clock)
    await usage.start()
    waiting = [asyncio.create_task(usage.record(event)) for _ in range(50)]
    await asyncio.sleep(0)  # let every request queue its event
    await usage.stop()
    assert all(task.done() and task.result() for task in waiting)
    assert len(await ledger(sessions)) == 50


async def test_record_after_stop_is_refused(writer: UsageWriter, event: NewUsageEvent) -> None:
    await writer.stop()
    with pytest.raises(UsageWriteError):
        await writer.record(event)
