"""Who may call the metered API, by subscription status; billing and account endpoints stay open."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from novo_gateway.kit.clock import FrozenClock
from novo_gateway.kit.config import Settings
from tests.billing.webhook_helpers import (
    SECRET,
    deliver,
    event,
    make_account,
    now_ts,
    runtime_of,
    subscription,
    update_account,
)
from tests.conftest import AppClient

API = "/api/v1/insights"


@pytest.fixture
async def app(
    make_settings: Callable[..., Settings], start_app: Callable[..., Any], clock: FrozenClock
) -> AppClient:
    client: AppClient = await start_app(make_settings(stripe_webhook_secret=[SECRET]), clock)
    return client


@pytest.mark.parametrize("status", ["active", "trialing", "pending", "incomplete"])
async def test_an_account_in_good_standing_may_call(app: AppClient, status: str) -> None:
    account = await make_account(app, status=status)

    response = await app.get(API, headers=account.auth)

    assert response.status_code == 200


@pytest.mark.parametrize("status", ["canceled", "unpaid", "incomplete_expired", "paused"])
async def test_an_account_that_has_not_paid_gets_402_with_its_status(
    app: AppClient, status: str
) -> None:
    account = await make_account(app, status=status)

    response = await app.get(API, headers=account.auth)

    assert response.status_code == 402
    body = response.json()
    assert body["error"] == "Payment Required"
    assert body["status"] == status
    assert "/billing/" in body["message"]


async def test_an_unknown_status_is_refused(app: AppClient) -> None:
    account = await make_account(app, status="something_new")

    response = await app.get(API, headers=account.auth)

    assert response.status_code == 402
    assert response.json()["status"] == "something_new"


async def test_past_due_may_call_during_the_grace_period_then_gets_402(
    app: AppClient, clock: FrozenClock
) -> None:
    account = await make_account(app, status="past_due", past_due_since=clock.now())

    clock.advance(timedelta(days=3).total_seconds() - 1)
    assert (await app.get(API, headers=account.auth)).status_code == 200

    clock.advance(1)
    refused = await app.get(API, headers=account.auth)
    assert refused.status_code == 402
    assert refused.json()["status"] == "past_due"


async def test_the_grace_period_is_a_setting(
    make_settings: Callable[..., Settings], start_app: Callable[..., Any], clock: FrozenClock
) -> None:
    app: AppClient = await start_app(make_settings(stripe_past_due_grace_days=0), clock)
    account = await make_account(app, status="past_due", past_due_since=clock.now())

    assert (await app.get(API, headers=account.auth)).status_code == 402


async def test_past_due_without_a_known_start_is_allowed(app: AppClient) -> None:
    account = await make_account(app, status="past_due", past_due_since=None)

    assert (await app.get(API, headers=account.auth)).status_code == 200


async def test_a_refused_call_is_not_billed_and_leaves_billing_and_account_endpoints_open(
    app: AppClient,
) -> None:
    account = await make_account(app, status="canceled", subscription_id="sub_gone")
    assert (await app.get(API, headers=account.auth)).status_code == 402

    subscription_view = await app.get("/billing/subscription", headers=account.auth)
    keys = await app.get("/auth/api-keys", headers=account.auth)

    assert subscription_view.status_code == 200
    assert subscription_view.json()["status"] == "canceled"
    assert subscription_view.json()["apiAccess"] is False
    assert keys.status_code == 200


async def test_a_status_change_reaches_the_cache_on_revalidation(app: AppClient) -> None:
    account = await make_account(app, status="active")
    assert (await app.get(API, headers=account.auth)).status_code == 200

    await update_account(app, account.user_id, subscription_status="unpaid")
    await runtime_of(app).access.revalidate()

    assert (await app.get(API, headers=account.auth)).status_code == 402


async def test_a_webhook_received_by_one_process_is_seen_by_another(
    make_settings: Callable[..., Settings], start_app: Callable[..., Any], clock: FrozenClock
) -> None:
    settings = make_settings(stripe_webhook_secret=[SECRET])
    first: AppClient = await start_app(settings, clock)
    second: AppClient = await start_app(settings, clock)
    account = await make_account(first, status="active", subscription_id="sub_ada")
    assert (await second.get(API, headers=account.auth)).status_code == 200

    canceled = event(
        "customer.subscription.deleted",
        subscription("sub_ada", "cus_test_ada", status="canceled"),
        created=now_ts(first),
    )
    assert (await deliver(first, canceled)).status_code == 200
    await runtime_of(second).access.revalidate()

    assert (await second.get(API, headers=account.auth)).status_code == 402


async def test_the_background_revalidation_picks_up_a_change_by_itself(
    make_settings: Callable[..., Settings], start_app: Callable[..., Any], clock: FrozenClock
) -> None:
    app: AppClient = await start_app(make_settings(key_revalidate_ms=50), clock)
    account = await make_account(app, status="active")
    assert (await app.get(API, headers=account.auth)).status_code == 200

    await update_account(app, account.user_id, subscription_status="canceled")

    status = 200
    for _ in range(200):  # waits for the background pass, not for a fixed time
        status = (await app.get(API, headers=account.auth)).status_code
        if status == 402:
            break
        await asyncio.sleep(0.05)
    assert status == 402


async def test_an_account_becoming_active_again_may_call_again(app: AppClient) -> None:
    account = await make_account(app, status="canceled", subscription_id="sub_old")
    assert (await app.get(API, headers=account.auth)).status_code == 402

    resubscribed = event(
        "customer.subscription.created",
        subscription("sub_new", "cus_test_ada", status="active"),
        created=now_ts(app),
    )
    await deliver(app, resubscribed)
    await runtime_of(app).access.revalidate()

    assert (await app.get(API, headers=account.auth)).status_code == 200
