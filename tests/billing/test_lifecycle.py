"""An account's billing life against the Stripe emulator, on SQLite and PostgreSQL: the calls made
before its subscription existed, an immediate cancel that bills everything first, and access
changes seen at once by the process that made them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from novo_gateway.accounts.models import User
from novo_gateway.billing.models import UsageReport
from novo_gateway.billing.reconcile import Reconciler
from novo_gateway.billing.reporter import UsageReporter
from novo_gateway.billing.stripe_client import StripeBilling
from novo_gateway.keys.models import ApiKey
from novo_gateway.kit.clock import Clock, FrozenClock
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import session_scope
from novo_gateway.metering.queries import usage_summary
from tests.billing.conftest import Emulator, Ledger
from tests.billing.webhook_helpers import (
    SECRET,
    Account,
    StripeProduct,
    create_metered_price,
    deliver,
    event,
    load_user,
    now_ts,
    runtime_of,
    subscribed_account,
    subscription,
)
from tests.conftest import AppClient
from tests.metering.ledger import add_insights_calls

API = "/api/v1/insights"
CANCEL = "/billing/subscription/cancel"


@pytest.fixture
async def product(stripe_billing: StripeBilling) -> StripeProduct:
    return await create_metered_price(stripe_billing, "novo_api_calls")


@pytest.fixture
async def app(
    make_stripe_settings: Callable[..., Settings],
    start_app: Callable[..., Any],
    clock: FrozenClock,
    product: StripeProduct,
) -> AppClient:
    client: AppClient = await start_app(
        make_stripe_settings(stripe_price_id=product.price_id, stripe_webhook_secret=[SECRET]),
        clock,
    )
    # Only the changes a test makes reach the access cache: no background revalidation pass.
    await runtime_of(client).access.stop()
    return client


@pytest.fixture
async def ada(
    app: AppClient, stripe_billing: StripeBilling, product: StripeProduct, clock: FrozenClock
) -> Account:
    account = await subscribed_account(app, stripe_billing, product.price_id)
    clock.set(max(clock.now(), datetime.now(UTC)))  # calls inside the period Stripe started
    return account


async def invoiced_quantities(stripe: StripeBilling, customer: str) -> list[int]:
    """The usage quantity of each of the customer's invoices that bills any (the subscription's
    first invoice, made at its start, bills none), as Stripe lists them."""
    page = await stripe.call(stripe.sdk.v1.invoices.list_async, params={"customer": customer})
    quantities = [sum(int(line.quantity or 0) for line in inv.lines.data) for inv in page.data]
    return [quantity for quantity in quantities if quantity]


async def calls(app: AppClient, account: Account, count: int) -> None:
    for _ in range(count):
        assert (await app.get(API, headers=account.auth)).status_code == 200


# --- An immediate cancel bills everything first ---------------------------------------------------


async def test_an_immediate_cancel_reports_the_unreported_usage_into_the_final_invoice(
    app: AppClient, ada: Account, stripe_billing: StripeBilling
) -> None:
    await calls(app, ada, 30)  # the reporter has not run: all 30 unreported

    response = await app.post(CANCEL, headers=ada.auth, json={"immediately": True})

    assert response.status_code == 200, response.text
    assert ada.customer_id is not None
    assert await invoiced_quantities(stripe_billing, ada.customer_id) == [30]


@pytest.mark.parametrize("after_cancel", [-10, 2], ids=["before-stripes-cancel", "after-it"])
async def test_calls_admitted_while_an_immediate_cancel_is_in_flight_are_invoiced_at_once(
    app: AppClient,
    ada: Account,
    stripe_billing: StripeBilling,
    product: StripeProduct,
    emulator: Emulator,
    clock: FrozenClock,
    after_cancel: int,
) -> None:
    """Calls another process admitted while the cancel went through (its access cache had not
    seen it yet) reach its ledger after the final report, dated before or after the moment
    Stripe canceled. No later invoice would take them and a meter event would be billed nowhere:
    they are charged on a one-off invoice, at the price they had after the period's calls."""
    assert ada.customer_id is not None
    emulator.advance(60)  # a minute into the period, the gateway's clock on Stripe's second:
    clock.set(datetime.fromtimestamp(emulator.now(), UTC))  # the final report is dated in the
    # second Stripe cancels, which its last invoice still counts.
    runtime = runtime_of(app)
    async with session_scope(runtime.sessions) as session:
        key_id = await session.scalar(select(ApiKey.id).where(ApiKey.user_id == ada.user_id))
        assert key_id is not None
        # 1,100 calls: 100 past the free 1,000, so the price shows ($0.001 each).
        await add_insights_calls(
            session, user_id=ada.user_id, key_id=key_id, count=1100, at=clock.now()
        )
    assert (await app.post(CANCEL, headers=ada.auth, json={"immediately": True})).status_code == 200
    late = datetime.fromtimestamp(emulator.now() + after_cancel, UTC)
    async with session_scope(runtime.sessions) as session:
        await add_insights_calls(session, user_id=ada.user_id, key_id=key_id, count=200, at=late)
    reporter = UsageReporter(
        runtime.sessions, stripe_billing, runtime.settings, FrozenClock(late + timedelta(seconds=1))
    )

    run = await reporter.drain(max_seconds=30)

    assert (run.carried, run.sent) == (1, 0)
    assert emulator.total(ada.customer_id, product.meter_id) == 1100  # the meter never got them
    page = await stripe_billing.call(
        stripe_billing.sdk.v1.invoices.list_async, params={"customer": ada.customer_id}
    )
    [one_off] = [i for i in page.data if i.billing_reason == "manual"]
    assert (one_off.status, one_off.total) == ("open", 20)  # 200 calls past the free tier
    [line] = one_off.lines.data
    assert line.metadata["novo_units"] == "200"
    assert await invoiced_quantities(stripe_billing, ada.customer_id) == [1, 1100]
    # Run again (a restart): nothing is charged twice.
    assert (await reporter.drain(max_seconds=30)).carried == 0
    again = await stripe_billing.call(
        stripe_billing.sdk.v1.invoices.list_async, params={"customer": ada.customer_id}
    )
    assert len(again.data) == len(page.data)


async def test_stripe_refusing_the_usage_leaves_the_subscription_uncanceled_with_a_503(
    app: AppClient, ada: Account, stripe_billing: StripeBilling, emulator: Emulator
) -> None:
    await calls(app, ada, 5)
    emulator.fault("500", "/v1/billing/meter_events", count=50)

    refused = await app.post(CANCEL, headers=ada.auth, json={"immediately": True})

    assert refused.status_code == 503
    assert set(refused.json()) >= {"error", "message"}
    user = await load_user(app, ada.user_id)
    assert user.subscription_id is not None and user.subscription_status == "active"
    at_stripe = await stripe_billing.retrieve_subscription(user.subscription_id)
    assert at_stripe.status == "active"  # nothing canceled, nothing lost
    emulator.http.delete("/_emulator/faults").raise_for_status()

    again = await app.post(CANCEL, headers=ada.auth, json={"immediately": True})

    assert again.status_code == 200
    assert ada.customer_id is not None
    assert await invoiced_quantities(stripe_billing, ada.customer_id) == [5]


# --- Access changes are seen at once by the process that made them --------------------------------


async def test_cancel_and_subscribing_again_change_access_in_this_process_at_once(
    app: AppClient, ada: Account
) -> None:
    await calls(app, ada, 1)  # the account's standing is cached now

    assert (await app.post(CANCEL, headers=ada.auth, json={"immediately": True})).is_success
    assert (await app.get(API, headers=ada.auth)).status_code == 402

    assert (await app.post("/billing/subscribe", headers=ada.auth)).is_success
    assert (await app.get(API, headers=ada.auth)).status_code == 200


async def test_a_webhook_changes_access_in_the_process_that_applied_it_at_once(
    app: AppClient, ada: Account
) -> None:
    await calls(app, ada, 1)
    user = await load_user(app, ada.user_id)
    assert user.subscription_id is not None and ada.customer_id is not None
    ended = event(
        "customer.subscription.deleted",
        subscription(user.subscription_id, ada.customer_id, status="canceled"),
        created=now_ts(app),
    )

    assert (await deliver(app, ended)).status_code == 200

    assert (await app.get(API, headers=ada.auth)).status_code == 402


# --- Calls made while the account was pending belong to its first period --------------------------


async def test_usage_of_a_pending_account_is_reported_into_its_first_period(
    ledger: Ledger,
    stripe_billing: StripeBilling,
    stripe_settings: Settings,
    make_reporter: Callable[..., Any],
    emulator: Emulator,
    meter_id: str,
) -> None:
    user_id, key_id, customer = await ledger.customer(stripe_billing, "pending@example.com")
    async with session_scope(ledger.sessions) as session:
        user = await session.get_one(User, user_id)
        user.subscription_status = "pending"  # the customer exists, its subscription not yet
        made_at = user.created_at = datetime.now(UTC) - timedelta(seconds=30)
    await ledger.record(user_id, key_id, 10, at=made_at)
    reporter = make_reporter()

    run = await reporter.run_once()
    assert run is not None and run.claimed_events == 0  # nothing reported before the period

    started = (made_at + timedelta(seconds=6)).replace(microsecond=0)
    async with session_scope(ledger.sessions) as session:
        user = await session.get_one(User, user_id)
        user.subscription_status = "active"
        user.subscription_id = "sub_first"
        user.current_period_start = user.billing_started_at = started
        user.current_period_end = started + timedelta(days=30)
    run = await reporter.run_once()

    assert run is not None and (run.claimed_events, run.sent) == (10, 1)
    async with session_scope(ledger.sessions) as session:
        [report] = (await session.scalars(select(UsageReport))).all()
        assert (report.units, report.period_start) == (10, started)
        assert report.event_timestamp == started  # Stripe bills it in the first period
        summary = usage_summary(
            session, await session.get_one(User, user_id), stripe_settings, now=datetime.now(UTC)
        )
        assert (await summary).billable_units == 10
    assert emulator.total(customer, meter_id) == 10
    # reconcile counts the first period as /billing/usage does: no drift.
    reconciler = Reconciler(
        ledger.sessions, stripe_billing, stripe_settings, Clock(), settle=timedelta(0)
    )
    [drift] = await reconciler.check(user_id=user_id)
    assert (drift.ledger_units, drift.reported_units, drift.drift) == (10, 10, 0)


async def test_usage_before_a_later_period_is_not_moved_into_it(
    ledger: Ledger,
    stripe_billing: StripeBilling,
    make_reporter: Callable[..., Any],
    meter_id: str,
) -> None:
    """Only the first period takes earlier calls: a backlog of an earlier period keeps its hour."""
    user_id, key_id, _customer = await ledger.customer(stripe_billing, "renewed@example.com")
    made_at = datetime.now(UTC) - timedelta(minutes=5)
    await ledger.record(user_id, key_id, 4, at=made_at)
    started = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    async with session_scope(ledger.sessions) as session:
        user = await session.get_one(User, user_id)
        user.subscription_id = "sub_renewed"
        user.billing_started_at = started - timedelta(days=30)
        user.current_period_start = started
        user.current_period_end = started + timedelta(days=30)

    assert (await make_reporter().run_once()) is not None

    async with session_scope(ledger.sessions) as session:
        [report] = (await session.scalars(select(UsageReport))).all()
        assert report.event_timestamp < started  # in the period it was made in


async def test_a_cancel_at_the_period_end_invoices_the_calls_reported_after_the_end(
    app: AppClient, ada: Account, stripe_billing: StripeBilling, emulator: Emulator
) -> None:
    """The last calls of the period reach Stripe after its end, within the finalization grace."""
    assert (await app.post(CANCEL, headers=ada.auth)).status_code == 200
    await calls(app, ada, 12)
    user = await load_user(app, ada.user_id)
    assert user.current_period_end is not None and ada.customer_id is not None
    # The period ends before the reporter's next run: Stripe drafts the final invoice.
    emulator.advance(user.current_period_end.timestamp() - emulator.now() + 60)

    reporter = runtime_of(app).reporter
    assert reporter is not None
    run = await reporter.run_once()
    assert run is not None and run.sent == 1
    emulator.advance(2 * 3600)  # past the grace: Stripe finalizes the invoice

    assert await invoiced_quantities(stripe_billing, ada.customer_id) == [12]
    at_stripe = await stripe_billing.retrieve_subscription(str(user.subscription_id))
    assert at_stripe.status == "canceled"
