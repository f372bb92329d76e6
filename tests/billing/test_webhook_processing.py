"""Stored Stripe events are applied exactly once, in any order, and survive a failing handler."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from novo_gateway.billing import events as billing_events
from novo_gateway.billing import webhooks
from novo_gateway.billing.models import UsageReport, WebhookEvent
from novo_gateway.kit.clock import FrozenClock
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import session_scope
from tests.billing.webhook_helpers import (
    SECRET,
    deliver,
    event,
    load_user,
    make_account,
    now_ts,
    runtime_of,
    sign,
    stored_events,
    subscription,
    update_account,
)
from tests.conftest import AppClient

PERIOD = (1_790_000_000, 1_792_600_000)


@pytest.fixture
async def app(
    make_settings: Callable[..., Settings], start_app: Callable[..., Any], clock: FrozenClock
) -> AppClient:
    client: AppClient = await start_app(make_settings(stripe_webhook_secret=[SECRET]), clock)
    return client


def sub_event(
    app: AppClient,
    status: str,
    *,
    event_type: str = "customer.subscription.updated",
    created: int | None = None,
    sub_id: str = "sub_ada",
    customer: str = "cus_test_ada",
    **fields: Any,
) -> dict[str, Any]:
    return event(
        event_type,
        subscription(sub_id, customer, status=status, period=PERIOD, **fields),
        created=now_ts(app) if created is None else created,
    )


async def test_a_subscription_update_is_copied_onto_the_account(app: AppClient) -> None:
    account = await make_account(app, status="pending")

    response = await deliver(app, sub_event(app, "active", cancel_at_period_end=True))

    assert response.status_code == 200
    user = await load_user(app, account.user_id)
    assert user.subscription_id == "sub_ada"
    assert user.subscription_status == "active"
    assert user.cancel_at_period_end is True
    assert user.current_period_start == datetime.fromtimestamp(PERIOD[0], UTC)
    assert user.current_period_end == datetime.fromtimestamp(PERIOD[1], UTC)
    [stored] = await stored_events(app)
    assert (stored.status, stored.attempts, stored.last_error) == ("processed", 1, None)


async def test_a_redelivered_event_is_answered_200_and_not_applied_again(
    app: AppClient,
) -> None:
    account = await make_account(app, status="pending")
    payload = sub_event(app, "past_due")
    await deliver(app, payload)
    # A later change (made by another event) must survive the redelivery of the first.
    await update_account(app, account.user_id, subscription_status="active", past_due_since=None)

    again = await deliver(app, payload)

    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert (await load_user(app, account.user_id)).subscription_status == "active"
    [stored] = await stored_events(app)
    assert stored.attempts == 1


async def test_an_older_update_arriving_after_a_newer_one_is_ignored(app: AppClient) -> None:
    account = await make_account(app, status="pending")
    t = now_ts(app)
    newer = sub_event(app, "past_due", created=t)
    older = sub_event(app, "active", created=t - 60, cancel_at_period_end=True)

    await deliver(app, newer)
    await deliver(app, older)

    user = await load_user(app, account.user_id)
    assert user.subscription_status == "past_due"
    assert user.cancel_at_period_end is False
    assert [e.status for e in await stored_events(app)] == ["processed", "processed"]


async def test_a_newer_update_replaces_the_state(app: AppClient) -> None:
    account = await make_account(app, status="pending")
    t = now_ts(app)

    await deliver(app, sub_event(app, "active", created=t - 60))
    await deliver(app, sub_event(app, "past_due", created=t))

    assert (await load_user(app, account.user_id)).subscription_status == "past_due"


async def test_past_due_since_is_set_when_past_due_and_cleared_when_active(
    app: AppClient, clock: FrozenClock
) -> None:
    account = await make_account(app, status="active", subscription_id="sub_ada")
    became = now_ts(app)
    await deliver(app, sub_event(app, "past_due", created=became))
    clock.advance(3600)
    # A second past_due event (another failed retry) keeps the original start of the grace.
    await deliver(app, sub_event(app, "past_due", created=now_ts(app)))
    assert (await load_user(app, account.user_id)).past_due_since == datetime.fromtimestamp(
        became, UTC
    )

    clock.advance(60)
    await deliver(app, sub_event(app, "active", created=now_ts(app)))

    assert (await load_user(app, account.user_id)).past_due_since is None


async def test_a_deleted_subscription_cancels_the_account(app: AppClient) -> None:
    account = await make_account(app, status="active", subscription_id="sub_ada")

    await deliver(
        app,
        sub_event(app, "canceled", event_type="customer.subscription.deleted"),
    )

    assert (await load_user(app, account.user_id)).subscription_status == "canceled"


async def test_the_old_subscriptions_end_does_not_cancel_its_replacement(
    app: AppClient,
) -> None:
    account = await make_account(app, status="active", subscription_id="sub_new")

    await deliver(
        app,
        sub_event(app, "canceled", event_type="customer.subscription.deleted", sub_id="sub_old"),
    )

    user = await load_user(app, account.user_id)
    assert (user.subscription_id, user.subscription_status) == ("sub_new", "active")


async def test_a_new_subscription_replaces_one_that_ended(app: AppClient) -> None:
    account = await make_account(app, status="canceled", subscription_id="sub_old")

    await deliver(
        app,
        sub_event(app, "active", event_type="customer.subscription.created", sub_id="sub_new"),
    )

    user = await load_user(app, account.user_id)
    assert (user.subscription_id, user.subscription_status) == ("sub_new", "active")


async def test_an_event_for_an_unknown_customer_is_processed_as_a_no_op(
    app: AppClient,
) -> None:
    account = await make_account(app, status="active", subscription_id="sub_ada")

    response = await deliver(app, sub_event(app, "canceled", customer="cus_nobody"))

    assert response.status_code == 200
    [stored] = await stored_events(app)
    assert stored.status == "processed"
    assert (await load_user(app, account.user_id)).subscription_status == "active"


async def test_a_handler_failing_half_way_is_rolled_back_then_applied_once_on_retry(
    app: AppClient, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The failure is injected by wrapping the real handler (no real part fails on demand)."""
    account = await make_account(app, status="active", subscription_id="sub_ada")
    calls: list[str] = []
    real = billing_events.on_subscription

    async def half_way(session: Any, payload: dict[str, Any], ctx: Any) -> str:
        await real(session, payload, ctx)  # the account is updated in the session...
        await session.flush()
        calls.append("failed")
        raise RuntimeError("crashed after writing")  # ...and the transaction must not commit

    monkeypatch.setitem(billing_events.HANDLERS, "customer.subscription.updated", half_way)

    response = await deliver(app, sub_event(app, "past_due"))

    assert response.status_code == 200  # stored before processing: Stripe does not resend
    assert (await load_user(app, account.user_id)).subscription_status == "active"
    [stored] = await stored_events(app)
    assert stored.status == "pending" and stored.attempts == 1
    assert stored.last_error == "RuntimeError: crashed after writing"
    assert calls == ["failed"]

    monkeypatch.setitem(billing_events.HANDLERS, "customer.subscription.updated", real)
    worker = runtime_of(app).webhooks
    assert worker is not None
    assert await worker.run_due() == 0  # not due before its backoff
    clock.advance(webhooks.BACKOFF_MAX_SECONDS * 1.2 + 1)
    assert await worker.run_due() == 1
    assert await worker.run_due() == 0

    user = await load_user(app, account.user_id)
    assert user.subscription_status == "past_due"
    [stored] = await stored_events(app)
    assert (stored.status, stored.attempts, stored.last_error) == ("processed", 2, None)


async def test_a_redelivery_retries_a_failed_event_at_once(
    app: AppClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first attempt fails through an injected error (a wrapped real handler)."""
    account = await make_account(app, status="active", subscription_id="sub_ada")
    real = billing_events.on_subscription

    async def failing(session: Any, payload: dict[str, Any], ctx: Any) -> str:
        raise ConnectionError("database went away")

    payload = sub_event(app, "unpaid")
    monkeypatch.setitem(billing_events.HANDLERS, "customer.subscription.updated", failing)
    await deliver(app, payload)
    monkeypatch.setitem(billing_events.HANDLERS, "customer.subscription.updated", real)

    again = await deliver(app, payload)

    assert again.status_code == 200
    assert (await load_user(app, account.user_id)).subscription_status == "unpaid"
    [stored] = await stored_events(app)
    assert (stored.status, stored.attempts) == ("processed", 2)


async def test_an_event_failing_every_time_is_given_up_after_the_last_attempt(
    app: AppClient, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Failures injected by replacing the handler (a permanent bug has no real stand-in)."""

    async def failing(session: Any, payload: dict[str, Any], ctx: Any) -> str:
        raise ValueError("bad payload")

    monkeypatch.setitem(billing_events.HANDLERS, "customer.subscription.updated", failing)
    await make_account(app)
    await deliver(app, sub_event(app, "active"))
    worker = runtime_of(app).webhooks
    assert worker is not None

    for _ in range(webhooks.MAX_ATTEMPTS):
        clock.advance(webhooks.BACKOFF_MAX_SECONDS * 1.2 + 1)
        await worker.run_due()

    [stored] = await stored_events(app)
    assert (stored.status, stored.attempts) == ("failed", webhooks.MAX_ATTEMPTS)


async def test_an_event_not_tried_after_receipt_is_processed_by_the_worker(
    app: AppClient, clock: FrozenClock
) -> None:
    """As after a crash between the commit and the first attempt."""
    account = await make_account(app, status="pending")
    runtime = runtime_of(app)
    payload = sub_event(app, "active")
    body = json.dumps(payload).encode()
    async with session_scope(runtime.sessions) as session:
        await webhooks.receive(
            session,
            body,
            sign(body, SECRET, now_ts(app)),
            secrets=[SECRET],
            now=runtime.clock.now(),
        )
    assert runtime.webhooks is not None
    assert await runtime.webhooks.run_due() == 0
    clock.advance(webhooks.FIRST_ATTEMPT_SECONDS)

    assert await runtime.webhooks.run_due() == 1
    assert (await load_user(app, account.user_id)).subscription_status == "active"


async def test_invoice_events_are_stored_and_processed(app: AppClient) -> None:
    await make_account(app, status="active", subscription_id="sub_ada")
    invoice = {
        "id": "in_1",
        "object": "invoice",
        "customer": "cus_test_ada",
        "number": "ADA-0001",
        "amount_due": 1234,
        "currency": "usd",
        "parent": {"subscription_details": {"subscription": "sub_ada"}},
    }
    for kind in ("invoice.finalized", "invoice.paid", "invoice.payment_failed"):
        response = await deliver(app, event(kind, invoice, created=now_ts(app)))
        assert response.status_code == 200

    assert [e.status for e in await stored_events(app)] == ["processed"] * 3


async def test_a_meter_error_report_marks_the_usage_reports_it_names(app: AppClient) -> None:
    account = await make_account(app)
    runtime = runtime_of(app)
    now = runtime.clock.now()
    async with session_scope(runtime.sessions) as session:
        session.add(
            UsageReport(
                id="nvr_1_1",
                user_id=account.user_id,
                stripe_customer_id="cus_test_ada",
                period_start=now,
                window_start=now,
                window_end=now,
                event_timestamp=now,
                units=5,
                event_count=5,
                status="sent",
            )
        )
    thin = {
        "id": "evt_test_thin_1",
        "object": "v2.core.event",
        "type": "v1.billing.meter.error_report_triggered",
        "created": now.isoformat().replace("+00:00", "Z"),
        "livemode": False,
        "related_object": {"id": "mtr_1", "type": "billing.meter", "url": "/v1/billing/meters"},
        "data": {
            "developer_message_summary": "There is 1 invalid event",
            "reason": {
                "error_count": 1,
                "error_types": [
                    {
                        "code": "meter_event_customer_not_found",
                        "error_count": 1,
                        "sample_errors": [
                            {
                                "error_message": "No customer cus_test_ada was found.",
                                "request": {"identifier": "nvr_1_1"},
                            }
                        ],
                    }
                ],
            },
        },
    }

    response = await deliver(app, thin)

    assert response.status_code == 200
    async with session_scope(runtime.sessions) as session:
        report = await session.get_one(UsageReport, "nvr_1_1")
    assert report.status == "dead"
    assert report.last_error is not None
    assert "meter_event_customer_not_found" in report.last_error
    [stored] = await stored_events(app)
    assert stored.status == "processed"
    assert stored.object_created == int(now.timestamp())


async def test_processed_events_are_pruned_after_the_retention(
    app: AppClient, clock: FrozenClock
) -> None:
    await make_account(app)
    await deliver(app, sub_event(app, "active"))
    worker = runtime_of(app).webhooks
    assert worker is not None

    assert await worker.prune() == 0
    clock.advance(webhooks.RETENTION.total_seconds() + 1)
    assert await worker.prune() == 1
    async with session_scope(runtime_of(app).sessions) as session:
        assert (await session.scalars(select(WebhookEvent))).all() == []


def test_backoff_grows_and_is_capped() -> None:
    delays = [webhooks.backoff_seconds(n) for n in range(1, 20)]

    assert delays[0] <= webhooks.BACKOFF_BASE_SECONDS * 1.2
    assert max(delays) <= webhooks.BACKOFF_MAX_SECONDS * 1.2
    assert webhooks.backoff_seconds(1, retry_after=90) >= 90
    assert timedelta(seconds=delays[5]) > timedelta(seconds=delays[0])


async def test_a_new_subscriptions_events_are_not_judged_by_the_old_ones_times(
    app: AppClient,
) -> None:
    t = now_ts(app)
    account = await make_account(
        app,
        status="canceled",
        subscription_id="sub_old",
        subscription_state_at=datetime.fromtimestamp(t + 100, UTC),
    )
    created = sub_event(app, "active", event_type="customer.subscription.created", sub_id="sub_new")
    await deliver(app, created)

    await deliver(app, sub_event(app, "past_due", created=t + 10, sub_id="sub_new"))

    user = await load_user(app, account.user_id)
    assert (user.subscription_id, user.subscription_status) == ("sub_new", "past_due")
