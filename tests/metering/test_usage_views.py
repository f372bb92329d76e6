"""The usage views: period totals and cost at the free-tier boundary, days, endpoints, bad input."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from sqlalchemy import update

from novo_gateway.accounts.models import User
from novo_gateway.billing.models import UsageReport
from novo_gateway.billing.operations import list_reports
from novo_gateway.kit.clock import FrozenClock
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import session_scope
from novo_gateway.metering.models import UsageEvent
from tests.conftest import AppClient
from tests.gateway.helpers import Account, ledger, make_account, runtime_of
from tests.metering.ledger import add_to_ledger

NOW = datetime(2026, 11, 26, 15, 30, tzinfo=UTC)
Start = Callable[..., Any]


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(NOW)


async def started(start_app: Start, settings: Settings, clock: FrozenClock) -> AppClient:
    client: AppClient = await start_app(settings, clock=clock)
    return client


async def add_events(
    client: AppClient,
    account: Account,
    count: int,
    *,
    at: datetime = NOW,
    billable: bool = True,
    units: int = 1,
    endpoint: str = "/api/v1/insights",
    method: str = "GET",
    latencies: list[int] | None = None,
) -> None:
    """Ledger rows added by a session (much faster than as many HTTP calls; its flush adds them
    to the daily counter as the usage writer does)."""
    rows = [
        UsageEvent(
            user_id=account.user_id,
            api_key_id=account.key_id,
            endpoint=endpoint,
            method=method,
            status=200 if billable else 500,
            latency_ms=latencies[i] if latencies else 10,
            units=units,
            billable=billable,
            created_at=at,
        )
        for i in range(count)
    ]
    async with session_scope(runtime_of(client).sessions) as session:
        await add_to_ledger(session, rows)


async def usage(client: AppClient, account: Account) -> dict[str, Any]:
    response = await client.get("/billing/usage", headers=account.auth)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize(
    ("units", "beyond", "remaining", "cost"),
    [
        (999, 0, 1, "$0.0000"),
        (1000, 0, 0, "$0.0000"),
        (1001, 1, 0, "$0.0010"),
        (1500, 500, 0, "$0.5000"),
    ],
)
async def test_totals_and_cost_at_the_free_tier_boundary(
    settings: Settings,
    start_app: Start,
    clock: FrozenClock,
    units: int,
    beyond: int,
    remaining: int,
    cost: str,
) -> None:
    client = await started(start_app, settings, clock)
    account = await make_account(client)
    await add_events(client, account, units)
    await add_events(client, account, 7, billable=False)
    period = (await usage(client, account))["currentPeriod"]
    assert period == {
        "start": "2026-11-01T00:00:00Z",
        "end": "2026-12-01T00:00:00Z",
        "totalCalls": units,
        "billableCalls": beyond,
        "failedCalls": 7,
        "freeTierCalls": 1000,
        "freeTierRemaining": remaining,
        "estimatedCost": cost,
        "costPerCall": "$0.001",
        "calls": units + 7,
        "units": units,
        "freeTierUnits": 1000,
        "billableUnits": beyond,
        "estimatedCharge": f"${Decimal(cost[1:]).quantize(Decimal('0.01'), ROUND_HALF_UP)}",
    }


async def test_units_not_calls_are_billed(
    settings: Settings, start_app: Start, clock: FrozenClock
) -> None:
    client = await started(start_app, settings, clock)
    account = await make_account(client)
    await add_events(client, account, 300, units=5)
    period = (await usage(client, account))["currentPeriod"]
    assert (period["totalCalls"], period["billableCalls"]) == (1500, 500)
    assert period["estimatedCost"] == "$0.5000"


async def test_calls_and_units_are_named_apart(
    settings: Settings, start_app: Start, clock: FrozenClock
) -> None:
    """A 5-unit route: `calls` counts the requests, `units` what is charged; the original's
    `totalCalls` keeps its value (units) for the clients that read it."""
    client = await started(start_app, settings, clock)
    account = await make_account(client)
    await add_events(client, account, 300, units=5)
    await add_events(client, account, 2, billable=False)
    period = (await usage(client, account))["currentPeriod"]
    assert (period["calls"], period["failedCalls"]) == (302, 2)
    assert (period["units"], period["totalCalls"]) == (1500, 1500)
    assert (period["billableUnits"], period["billableCalls"]) == (500, 500)
    assert (period["freeTierUnits"], period["freeTierCalls"]) == (1000, 1000)
    assert (period["estimatedCharge"], period["estimatedCost"]) == ("$0.50", "$0.5000")


async def test_estimated_charge_is_the_cost_rounded_half_up_to_cents(
    make_settings: Callable[..., Settings], start_app: Start, clock: FrozenClock
) -> None:
    client = await started(start_app, make_settings(free_tier_calls=0), clock)
    account = await make_account(client)
    await add_events(client, account, 105)
    period = (await usage(client, account))["currentPeriod"]
    assert (period["estimatedCost"], period["estimatedCharge"]) == ("$0.1050", "$0.11")


async def test_zero_free_tier_bills_every_unit(
    make_settings: Callable[..., Settings], start_app: Start, clock: FrozenClock
) -> None:
    client = await started(start_app, make_settings(free_tier_calls=0), clock)
    account = await make_account(client)
    await add_events(client, account, 3)
    period = (await usage(client, account))["currentPeriod"]
    assert (period["billableCalls"], period["freeTierRemaining"]) == (3, 0)
    assert period["estimatedCost"] == "$0.0030"


async def test_cost_is_rounded_half_up_to_four_places(
    make_settings: Callable[..., Settings], start_app: Start, clock: FrozenClock
) -> None:
    settings = make_settings(free_tier_calls=0, cost_per_call="0.00125")
    client = await started(start_app, settings, clock)
    account = await make_account(client)
    await add_events(client, account, 3)
    period = (await usage(client, account))["currentPeriod"]
    assert (period["estimatedCost"], period["costPerCall"]) == ("$0.0038", "$0.00125")


async def test_real_calls_are_counted_beyond_a_small_free_tier(
    make_settings: Callable[..., Settings], start_app: Start, clock: FrozenClock
) -> None:
    client = await started(start_app, make_settings(free_tier_calls=3), clock)
    account = await make_account(client)
    for _ in range(5):
        await client.get("/api/v1/insights", headers=account.auth)
    await client.get("/api/v1/analytics?period=never", headers=account.auth)
    body = await usage(client, account)
    period = body["currentPeriod"]
    assert (period["totalCalls"], period["billableCalls"], period["failedCalls"]) == (5, 2, 1)
    assert period["estimatedCost"] == "$0.0020"
    today = {"date": "2026-11-26", "call_count": 6, "billable_units": 5}
    assert body["dailyBreakdown"][-1] == today
    assert body["stripe"] is None
    assert body["subscriptionStatus"] == "active"


async def test_usage_views_are_not_recorded_in_the_ledger(
    settings: Settings, start_app: Start, clock: FrozenClock
) -> None:
    client = await started(start_app, settings, clock)
    account = await make_account(client)
    await client.get("/billing/usage", headers=account.auth)
    await client.get("/billing/usage/endpoints", headers=account.auth)
    assert await ledger(client) == []


async def test_only_events_of_the_current_calendar_month_count(
    settings: Settings, start_app: Start, clock: FrozenClock
) -> None:
    client = await started(start_app, settings, clock)
    account = await make_account(client)
    await add_events(client, account, 4, at=datetime(2026, 10, 31, 23, 59, 59, tzinfo=UTC))
    await add_events(client, account, 2, at=datetime(2026, 11, 1, tzinfo=UTC))
    assert (await usage(client, account))["currentPeriod"]["totalCalls"] == 2


async def test_subscription_period_replaces_the_calendar_month_once_set(
    settings: Settings, start_app: Start, clock: FrozenClock
) -> None:
    client = await started(start_app, settings, clock)
    account = await make_account(client)
    start, end = datetime(2026, 11, 15, tzinfo=UTC), datetime(2026, 12, 15, tzinfo=UTC)
    async with session_scope(runtime_of(client).sessions) as session:
        await session.execute(
            update(User)
            .where(User.id == account.user_id)
            .values(current_period_start=start, current_period_end=end)
        )
    await add_events(client, account, 4, at=datetime(2026, 11, 14, tzinfo=UTC))
    await add_events(client, account, 2, at=datetime(2026, 11, 15, tzinfo=UTC))
    period = (await usage(client, account))["currentPeriod"]
    assert (period["start"], period["end"]) == ("2026-11-15T00:00:00Z", "2026-12-15T00:00:00Z")
    assert period["totalCalls"] == 2


async def test_daily_breakdown_covers_30_utc_days_oldest_first(
    settings: Settings, start_app: Start, clock: FrozenClock
) -> None:
    client = await started(start_app, settings, clock)
    account = await make_account(client)
    await add_events(client, account, 3, at=NOW - timedelta(days=29))
    await add_events(client, account, 1, at=datetime(2026, 11, 25, 23, 59, tzinfo=UTC))
    await add_events(client, account, 2, at=NOW, billable=False)
    await add_events(client, account, 9, at=NOW - timedelta(days=30))  # too old
    days = (await usage(client, account))["dailyBreakdown"]
    assert len(days) == 30
    assert days[0] == {"date": "2026-10-28", "call_count": 3, "billable_units": 3}
    assert days[-2] == {"date": "2026-11-25", "call_count": 1, "billable_units": 1}
    assert days[-1] == {"date": "2026-11-26", "call_count": 2, "billable_units": 0}
    assert sum(d["call_count"] for d in days) == 6


async def test_usage_is_open_whatever_the_subscription_state(
    settings: Settings, start_app: Start, clock: FrozenClock
) -> None:
    client = await started(start_app, settings, clock)
    account = await make_account(client)
    async with session_scope(runtime_of(client).sessions) as session:
        await session.execute(
            update(User).where(User.id == account.user_id).values(subscription_status="canceled")
        )
    assert (await usage(client, account))["subscriptionStatus"] == "canceled"


async def test_usage_needs_a_key(settings: Settings, start_app: Start, clock: FrozenClock) -> None:
    client = await started(start_app, settings, clock)
    response = await client.get("/billing/usage")
    assert response.status_code == 401
    assert response.json()["error"] == "Unauthorized"


async def test_usage_of_another_account_is_not_shown(
    settings: Settings, start_app: Start, clock: FrozenClock
) -> None:
    client = await started(start_app, settings, clock)
    mine, theirs = await make_account(client), await make_account(client, "grace@example.com")
    await add_events(client, theirs, 5)
    assert (await usage(client, mine))["currentPeriod"]["totalCalls"] == 0


async def test_endpoint_usage_gives_counts_mean_and_p95_latency(
    settings: Settings, start_app: Start, clock: FrozenClock
) -> None:
    client = await started(start_app, settings, clock)
    account = await make_account(client)
    await add_events(client, account, 20, latencies=list(range(1, 21)))
    await add_events(client, account, 2, billable=False, latencies=[100, 300])
    await add_events(client, account, 1, endpoint="/api/v1/bulk/process", method="POST", units=3)
    await add_events(client, account, 4, at=NOW - timedelta(days=8))  # outside 7 days
    response = await client.get("/billing/usage/endpoints?days=7", headers=account.auth)
    assert response.status_code == 200
    body = response.json()
    assert body["period"] == {
        "start": "2026-11-19T15:30:00Z",
        "end": "2026-11-26T15:30:00Z",
        "days": 7,
    }
    assert body["endpoints"] == [
        {
            "endpoint": "/api/v1/insights",
            "method": "GET",
            "call_count": 22,
            "billable_calls": 20,
            "avg_response_time": round((210 + 400) / 22, 2),
            "p95_response_time": 100,
        },
        {
            "endpoint": "/api/v1/bulk/process",
            "method": "POST",
            "call_count": 1,
            "billable_calls": 3,
            "avg_response_time": 10.0,
            "p95_response_time": 10,
        },
    ]


async def test_endpoint_usage_defaults_to_30_days(
    settings: Settings, start_app: Start, clock: FrozenClock
) -> None:
    client = await started(start_app, settings, clock)
    account = await make_account(client)
    await add_events(client, account, 2, at=NOW - timedelta(days=29))
    body = (await client.get("/billing/usage/endpoints", headers=account.auth)).json()
    assert body["period"]["days"] == 30
    assert [e["call_count"] for e in body["endpoints"]] == [2]


@pytest.mark.parametrize("days", ["0", "367", "-1", "abc", "1.5", ""])
async def test_bad_days_is_400_naming_the_field(
    settings: Settings, start_app: Start, clock: FrozenClock, days: str
) -> None:
    client = await started(start_app, settings, clock)
    account = await make_account(client)
    response = await client.get(f"/billing/usage/endpoints?days={days}", headers=account.auth)
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "Bad Request"
    assert "'days'" in body["message"]


async def test_usage_carried_over_from_an_earlier_period_is_shown_apart(
    start_app: Start, settings: Settings, clock: FrozenClock
) -> None:
    """Late calls of October, carried over to the invoice closing November, are shown with their
    own period and price, and not counted in this period's totals."""
    client = await started(start_app, settings, clock)
    account = await make_account(client)
    october = datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)
    async with session_scope(runtime_of(client).sessions) as session:
        session.add_all(
            UsageReport(
                id=f"nvr_cus_x_{n}",
                user_id=account.user_id,
                stripe_customer_id="cus_x",
                period_start=october[0],
                window_start=october[1] - timedelta(hours=1),
                window_end=october[1],
                event_timestamp=october[1] - timedelta(seconds=n),
                units=units,
                event_count=units,
                status=status,
                sent_at=sent_at,
                carried_period_end=october[1],
                carried_invoice_item=f"ii_{n}",
                carried_cents=cents,
            )
            for n, units, cents, status, sent_at in [
                (1, 7, 5, "carried", NOW - timedelta(days=2)),
                (2, 3, 3, "carried", NOW - timedelta(days=1)),
                (3, 4, 4, "carried", datetime(2026, 10, 31, tzinfo=UTC)),  # on October's bill
                (4, 9, None, "sent", NOW),
            ]
        )

    body = await usage(client, account)

    assert body["carriedOver"] == {
        "totalCalls": 10,
        "amount": "$0.0800",
        "periods": [
            {
                "periodStart": "2026-10-01T00:00:00Z",
                "periodEnd": "2026-11-01T00:00:00Z",
                "totalCalls": 10,
                "amount": "$0.0800",
            }
        ],
    }
    assert body["currentPeriod"]["totalCalls"] == 0
    lines = await list_reports(settings, status="carried", limit=10)
    tails = sorted(line.split("\tstatus=")[1] for line in lines)
    assert tails == [
        f"carried\tcarried over to the next invoice: ii_{n} ${cents} for 2026-10-01..2026-11-01"
        for n, cents in [(1, "0.05"), (2, "0.03"), (3, "0.04")]
    ]
