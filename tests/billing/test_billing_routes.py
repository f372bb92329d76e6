"""The billing endpoints against the Stripe emulator: invoices, subscription, cancel, subscribe."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from novo_gateway.billing.stripe_client import StripeBilling
from novo_gateway.billing.stripe_types import MeterEvent
from novo_gateway.kit.clock import FrozenClock
from novo_gateway.kit.config import Settings
from tests.billing.conftest import Emulator
from tests.billing.webhook_helpers import (
    Account,
    StripeProduct,
    create_metered_price,
    load_user,
    make_account,
    runtime_of,
    subscribed_account,
    update_account,
)
from tests.conftest import AppClient

DAY = 86400
API = "/api/v1/insights"
ERROR_KEYS = {"error", "message"}


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
        make_stripe_settings(stripe_price_id=product.price_id), clock
    )
    return client


@pytest.fixture
async def ada(app: AppClient, stripe_billing: StripeBilling, product: StripeProduct) -> Account:
    return await subscribed_account(app, stripe_billing, product.price_id)


async def use(stripe: StripeBilling, emulator: Emulator, account: Account, calls: int) -> None:
    """Usage reported to Stripe for the account, as the reporter sends it."""
    assert account.customer_id is not None
    await stripe.meter_event(
        event_name="novo_api_calls",
        event=MeterEvent(
            identifier=f"nvr_test_{account.user_id}_{calls}_{emulator.now()}",
            customer_id=account.customer_id,
            value=calls,
            timestamp=datetime.fromtimestamp(emulator.now()).astimezone(),
        ),
    )


def iso(value: str) -> datetime:
    return datetime.fromisoformat(value)


# --- GET /billing/invoices ------------------------------------------------------------------------


async def test_invoices_list_the_months_invoice_in_currency_units(
    app: AppClient, ada: Account, stripe_billing: StripeBilling, emulator: Emulator
) -> None:
    await use(stripe_billing, emulator, ada, 1500)  # 1000 free, 500 at $0.001
    emulator.advance(32 * DAY)  # past the period end and the finalization grace

    response = await app.get("/billing/invoices", headers=ada.auth)

    assert response.status_code == 200
    body = response.json()
    renewal = next(inv for inv in body["invoices"] if inv["amount"] > 0)
    assert {
        "id",
        "number",
        "status",
        "amount",
        "currency",
        "created",
        "periodStart",
        "periodEnd",
        "pdfUrl",
        "hostedUrl",
    } <= set(renewal)
    assert renewal["amount"] == 0.5
    assert '"amount":0.5' in response.text.replace(" ", "")  # a JSON number, not a string
    assert renewal["currency"] == "USD"
    assert renewal["status"] == "paid"
    assert renewal["number"]
    assert renewal["pdfUrl"].startswith(emulator.url)
    assert renewal["hostedUrl"].startswith(emulator.url)
    assert iso(renewal["periodEnd"]) > iso(renewal["periodStart"])
    assert len(body["invoices"]) == 2  # the $0 invoice at subscription, then the month's


async def test_the_upcoming_invoice_shows_the_usage_so_far(
    app: AppClient, ada: Account, stripe_billing: StripeBilling, emulator: Emulator
) -> None:
    await use(stripe_billing, emulator, ada, 1200)

    response = await app.get("/billing/invoices", headers=ada.auth)

    assert response.status_code == 200
    upcoming = response.json()["upcoming"]
    assert upcoming["amountDue"] == 0.2
    assert upcoming["currency"] == "USD"
    assert iso(upcoming["periodEnd"]) > iso(upcoming["periodStart"])
    [line] = upcoming["lines"]
    assert (line["quantity"], line["amount"]) == (1200, 0.2)


async def test_invoices_of_an_account_not_provisioned_yet_is_a_409_pending(
    app: AppClient,
) -> None:
    account = await make_account(app, customer_id=None, status="pending")

    response = await app.get("/billing/invoices", headers=account.auth)

    assert response.status_code == 409
    assert set(response.json()) == ERROR_KEYS | {"status"}
    assert response.json()["status"] == "pending"


async def test_stripe_failing_is_a_503_in_the_error_shape(
    app: AppClient, ada: Account, emulator: Emulator
) -> None:
    emulator.fault("500", "/v1/invoices", method="GET")

    response = await app.get("/billing/invoices", headers=ada.auth)

    assert response.status_code == 503
    assert set(response.json()) == ERROR_KEYS
    assert "Stripe" in response.json()["message"]
    assert "retry-after" in response.headers


async def test_stripe_unreachable_is_a_503(
    make_stripe_settings: Callable[..., Settings],
    start_app: Callable[..., Any],
    clock: FrozenClock,
) -> None:
    app: AppClient = await start_app(
        make_stripe_settings(stripe_api_base="http://127.0.0.1:9", stripe_timeout_seconds=2),
        clock,
    )
    account = await make_account(app, customer_id="cus_x", subscription_id="sub_x")

    invoices = await app.get("/billing/invoices", headers=account.auth)
    cancel = await app.post("/billing/subscription/cancel", headers=account.auth)

    assert (invoices.status_code, cancel.status_code) == (503, 503)
    assert invoices.json()["error"] == "Service Unavailable"


async def test_without_stripe_configured_billing_calls_are_503(
    make_settings: Callable[..., Settings], start_app: Callable[..., Any]
) -> None:
    app: AppClient = await start_app(make_settings())
    account = await make_account(app, customer_id="cus_x", subscription_id="sub_x")

    response = await app.get("/billing/invoices", headers=account.auth)

    assert response.status_code == 503
    assert response.json()["message"] == "Billing is not configured on this gateway."


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/billing/invoices"),
        ("POST", "/billing/portal"),
        ("POST", "/billing/payment-method"),
        ("GET", "/billing/subscription"),
        ("POST", "/billing/subscription/cancel"),
        ("POST", "/billing/subscription/resume"),
        ("POST", "/billing/subscribe"),
    ],
)
async def test_billing_endpoints_need_credentials(app: AppClient, method: str, path: str) -> None:
    response = await app.request(method, path)

    assert response.status_code == 401
    assert set(response.json()) == ERROR_KEYS


# --- GET /billing/subscription --------------------------------------------------------------------


async def test_the_subscription_is_shown_with_its_period(app: AppClient, ada: Account) -> None:
    response = await app.get("/billing/subscription", headers=ada.auth)

    assert response.status_code == 200
    body = response.json()
    user = await load_user(app, ada.user_id)
    assert body["id"] == user.subscription_id
    assert body["status"] == "active"
    assert body["cancelAtPeriodEnd"] is False
    assert iso(body["currentPeriodEnd"]) > iso(body["currentPeriodStart"])
    assert body["apiAccess"] is True


async def test_an_account_being_provisioned_shows_pending(app: AppClient) -> None:
    account = await make_account(app, customer_id=None, status="pending")

    response = await app.get("/billing/subscription", headers=account.auth)

    assert response.status_code == 200
    assert response.json()["status"] == "pending"
    assert response.json()["message"]


async def test_an_account_without_subscription_shows_none(app: AppClient) -> None:
    account = await make_account(app, customer_id="cus_x", status="none")

    response = await app.get("/billing/subscription", headers=account.auth)

    assert response.status_code == 200
    assert response.json()["status"] == "none"
    assert "/billing/subscribe" in response.json()["message"]


async def test_a_past_due_subscription_shows_when_the_grace_ends(
    app: AppClient, clock: FrozenClock
) -> None:
    account = await make_account(
        app, status="past_due", subscription_id="sub_x", past_due_since=clock.now()
    )

    body = (await app.get("/billing/subscription", headers=account.auth)).json()

    assert iso(body["pastDueSince"]) == clock.now()
    assert (iso(body["graceEndsAt"]) - clock.now()).days == 3
    assert body["apiAccess"] is True


# --- POST /billing/subscription/cancel ------------------------------------------------------------


async def test_cancel_by_default_ends_the_subscription_at_the_period_end(
    app: AppClient, ada: Account, stripe_billing: StripeBilling
) -> None:
    response = await app.post("/billing/subscription/cancel", headers=ada.auth)

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "active"
    assert body["cancelAtPeriodEnd"] is True
    assert "end of the current billing period" in body["message"]
    user = await load_user(app, ada.user_id)
    assert user.subscription_id is not None
    at_stripe = await stripe_billing.retrieve_subscription(user.subscription_id)
    assert (at_stripe.status, at_stripe.cancel_at_period_end) == ("active", True)
    assert (await app.get(API, headers=ada.auth)).status_code == 200


async def test_cancel_immediately_ends_it_now_and_invoices_the_usage_so_far(
    app: AppClient, ada: Account, stripe_billing: StripeBilling, emulator: Emulator
) -> None:
    await use(stripe_billing, emulator, ada, 3000)

    response = await app.post(
        "/billing/subscription/cancel", headers=ada.auth, json={"immediately": True}
    )

    assert response.status_code == 200
    assert response.json()["status"] == "canceled"
    user = await load_user(app, ada.user_id)
    assert user.subscription_id is not None and ada.customer_id is not None
    assert (await stripe_billing.retrieve_subscription(user.subscription_id)).status == "canceled"
    amounts = [inv.total for inv in await stripe_billing.list_invoices(ada.customer_id)]
    assert 200 in amounts  # 2000 billable calls at $0.001, invoiced at once
    await runtime_of(app).access.revalidate()
    assert (await app.get(API, headers=ada.auth)).status_code == 402


async def test_cancelling_a_canceled_subscription_says_so(app: AppClient, ada: Account) -> None:
    first = await app.post(
        "/billing/subscription/cancel", headers=ada.auth, json={"immediately": True}
    )
    again = await app.post(
        "/billing/subscription/cancel", headers=ada.auth, json={"immediately": True}
    )

    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json()["message"] == "Your subscription is already canceled."


async def test_cancel_when_stripe_ended_it_already_takes_stripes_state(
    app: AppClient, ada: Account, stripe_billing: StripeBilling
) -> None:
    user = await load_user(app, ada.user_id)
    assert user.subscription_id is not None
    await stripe_billing.cancel_subscription_now(user.subscription_id)  # not heard of yet

    response = await app.post(
        "/billing/subscription/cancel", headers=ada.auth, json={"immediately": True}
    )

    assert response.status_code == 200
    assert response.json()["status"] == "canceled"


@pytest.mark.parametrize(
    "body", [{"immediately": "yes"}, {"immediately": 1}, {"now": True}, [True], "true"]
)
async def test_a_bad_cancel_body_is_a_400(app: AppClient, ada: Account, body: Any) -> None:
    response = await app.post(
        "/billing/subscription/cancel",
        headers={**ada.auth, "Content-Type": "application/json"},
        content=json.dumps(body),
    )

    assert response.status_code == 400
    assert response.json()["error"] == "Bad Request"


async def test_cancel_without_a_subscription_is_a_409(app: AppClient) -> None:
    account = await make_account(app, customer_id="cus_x", status="none")

    response = await app.post("/billing/subscription/cancel", headers=account.auth)

    assert response.status_code == 409
    assert response.json()["status"] == "none"


async def test_cancel_before_provisioning_is_a_409_pending(app: AppClient) -> None:
    account = await make_account(app, customer_id=None, status="pending")

    response = await app.post("/billing/subscription/cancel", headers=account.auth)

    assert response.status_code == 409
    assert response.json()["status"] == "pending"


# --- POST /billing/subscription/resume and /billing/subscribe -------------------------------------


async def test_resume_undoes_a_cancellation_at_the_period_end(
    app: AppClient, ada: Account, stripe_billing: StripeBilling
) -> None:
    await app.post("/billing/subscription/cancel", headers=ada.auth)

    response = await app.post("/billing/subscription/resume", headers=ada.auth)

    assert response.status_code == 200
    assert response.json()["cancelAtPeriodEnd"] is False
    assert "undone" in response.json()["message"]
    user = await load_user(app, ada.user_id)
    assert user.subscription_id is not None
    at_stripe = await stripe_billing.retrieve_subscription(user.subscription_id)
    assert at_stripe.cancel_at_period_end is False


@pytest.mark.parametrize("path", ["/billing/subscription/resume", "/billing/subscribe"])
async def test_subscribing_again_after_the_end_starts_a_new_subscription(
    app: AppClient, ada: Account, stripe_billing: StripeBilling, path: str
) -> None:
    old = (await load_user(app, ada.user_id)).subscription_id
    await app.post("/billing/subscription/cancel", headers=ada.auth, json={"immediately": True})

    response = await app.post(path, headers=ada.auth)

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "active"
    assert body["id"] != old
    assert (await stripe_billing.retrieve_subscription(body["id"])).status == "active"
    await runtime_of(app).access.revalidate()
    assert (await app.get(API, headers=ada.auth)).status_code == 200


async def test_subscribing_twice_does_not_make_a_second_subscription(
    app: AppClient, ada: Account, stripe_billing: StripeBilling
) -> None:
    await app.post("/billing/subscription/cancel", headers=ada.auth, json={"immediately": True})
    first = await app.post("/billing/subscribe", headers=ada.auth)

    second = await app.post("/billing/subscribe", headers=ada.auth)

    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["message"] == "Your subscription is already active."
    assert ada.customer_id is not None
    assert len(await stripe_billing.live_subscriptions(ada.customer_id)) == 1


async def test_subscribing_takes_over_a_live_subscription_stripe_already_has(
    app: AppClient, ada: Account, stripe_billing: StripeBilling
) -> None:
    """As after a subscribe whose answer was lost: the retry finds it instead of doubling it."""
    user = await load_user(app, ada.user_id)
    await update_account(app, ada.user_id, subscription_id=None, subscription_status="none")

    response = await app.post("/billing/subscribe", headers=ada.auth)

    assert response.json()["id"] == user.subscription_id
    assert ada.customer_id is not None
    assert len(await stripe_billing.live_subscriptions(ada.customer_id)) == 1
