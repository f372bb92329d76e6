"""Which period `/billing/usage` counts when the stored one has ended (a renewal webhook missed
while the gateway was down), and from when it counts in an account's first period."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from novo_gateway.accounts.models import User
from novo_gateway.kit.clock import FrozenClock
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import session_scope
from novo_gateway.metering.queries import TimeRange, following_period, period_at
from tests.conftest import AppClient
from tests.gateway.helpers import make_account, runtime_of
from tests.metering.test_usage_views import add_events, usage


def at(month: int, day: int, hour: int = 10, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


@pytest.mark.parametrize(
    ("start", "end", "now", "expected"),
    [
        # Monthly, anchored on the 15th: the next period, or the one after a longer outage.
        (at(1, 15), at(2, 15), at(3, 5), TimeRange(at(2, 15), at(3, 15))),
        (at(1, 15), at(2, 15), at(4, 20), TimeRange(at(4, 15), at(5, 15))),
        # Anchored on the 31st: clamped in short months, back to the 31st after them.
        (at(1, 31), at(2, 28), at(3, 1), TimeRange(at(2, 28), at(3, 31))),
        (at(2, 28), at(3, 31), at(4, 2), TimeRange(at(3, 31), at(4, 30))),
        (at(3, 31), at(4, 30), at(5, 30), TimeRange(at(4, 30), at(5, 31))),
        # Anchored on the 30th, through February.
        (at(1, 30), at(2, 28), at(3, 29), TimeRange(at(2, 28), at(3, 30))),
        # The end itself starts the next period.
        (at(1, 15), at(2, 15), at(2, 15), TimeRange(at(2, 15), at(3, 15))),
        # Yearly, from a leap day.
        (at(2, 29, year=2024), at(2, 28, year=2025), at(3, 1, year=2025),
         TimeRange(at(2, 28, year=2025), at(2, 28, year=2026))),
        # Weekly, and a four-week period that is not a calendar month.
        (at(1, 5), at(1, 12), at(1, 27), TimeRange(at(1, 26), at(2, 2))),
        (at(1, 20), at(2, 17), at(3, 20), TimeRange(at(3, 17), at(4, 14))),
    ],
)  # fmt: skip
def test_the_period_after_an_ended_one_follows_stripes_billing_cycle(
    start: datetime, end: datetime, now: datetime, expected: TimeRange
) -> None:
    assert following_period(start, end, now) == expected


async def test_usage_after_a_missed_renewal_counts_the_current_period_not_the_calendar_month(
    settings: Settings, start_app: Callable[..., Any]
) -> None:
    clock = FrozenClock(at(3, 5))
    client: AppClient = await start_app(settings, clock=clock)
    account = await make_account(client)
    async with session_scope(runtime_of(client).sessions) as session:
        await session.execute(
            update(User)
            .where(User.id == account.user_id)
            .values(current_period_start=at(1, 15), current_period_end=at(2, 15))
        )
    await add_events(client, account, 2, at=at(2, 10))  # the period that ended
    await add_events(client, account, 3, at=at(2, 20))  # the renewed period, in February
    await add_events(client, account, 4, at=at(3, 3))  # the renewed period, in March

    period = (await usage(client, account))["currentPeriod"]

    assert (period["start"], period["end"]) == ("2026-02-15T10:00:00Z", "2026-03-15T10:00:00Z")
    assert period["totalCalls"] == 7


def test_a_period_of_no_length_is_not_rolled_forward() -> None:
    assert period_at(at(1, 15), at(1, 15), at(3, 5)) == TimeRange(at(3, 1, 0), at(4, 1, 0))


async def test_a_subscription_cancelled_at_its_end_is_not_rolled_forward(
    settings: Settings, start_app: Callable[..., Any]
) -> None:
    client: AppClient = await start_app(settings, clock=FrozenClock(at(3, 5)))
    account = await make_account(client)
    async with session_scope(runtime_of(client).sessions) as session:
        await session.execute(
            update(User)
            .where(User.id == account.user_id)
            .values(
                current_period_start=at(1, 15),
                current_period_end=at(2, 15),
                cancel_at_period_end=True,
            )
        )

    period = (await usage(client, account))["currentPeriod"]

    assert (period["start"], period["end"]) == ("2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z")


async def test_the_first_period_counts_the_calls_made_while_the_account_was_pending(
    settings: Settings, start_app: Callable[..., Any]
) -> None:
    clock = FrozenClock(at(3, 5))
    client: AppClient = await start_app(settings, clock=clock)
    account = await make_account(client)
    registered = at(3, 5) - timedelta(minutes=1)
    started = at(3, 5) - timedelta(seconds=20)  # Stripe created the subscription 40 s late
    async with session_scope(runtime_of(client).sessions) as session:
        await session.execute(
            update(User)
            .where(User.id == account.user_id)
            .values(
                created_at=registered,
                billing_started_at=started,
                current_period_start=started,
                current_period_end=started + timedelta(days=31),
            )
        )
    await add_events(client, account, 10, at=registered + timedelta(seconds=5))
    await add_events(client, account, 2, at=started + timedelta(seconds=5))

    period = (await usage(client, account))["currentPeriod"]

    assert period["totalCalls"] == 12
    assert period["start"] == "2026-03-05T09:59:00Z"
