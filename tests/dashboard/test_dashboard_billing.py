"""The dashboard's billing section against the Stripe emulator: invoices, cancel, resume, portal."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from novo_gateway.billing.stripe_client import StripeBilling
from novo_gateway.kit.clock import FrozenClock
from novo_gateway.kit.config import Settings
from tests.billing.conftest import Emulator, remove_card
from tests.billing.webhook_helpers import (
    Account,
    StripeProduct,
    create_metered_price,
    load_user,
    subscribed_account,
)
from tests.conftest import AppClient
from tests.dashboard.helpers import dashboard_csrf, sign_in


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
    settings = make_stripe_settings(stripe_price_id=product.price_id, port=3000)
    client: AppClient = await start_app(settings, clock)
    client.base_url = "http://localhost:3000"
    return client


@pytest.fixture
async def ada(app: AppClient, stripe_billing: StripeBilling, product: StripeProduct) -> Account:
    account = await subscribed_account(app, stripe_billing, product.price_id)
    await sign_in(app)
    return account


async def test_invoices_are_listed_with_their_hosted_and_pdf_links(
    app: AppClient, ada: Account, emulator: Emulator
) -> None:
    emulator.advance(2 * 3600)  # past the first invoice's finalization

    page = (await app.get("/dashboard")).text

    assert 'id="invoices-table"' in page
    assert f'class="invoice-link" href="{emulator.url}/emulator/i/' in page
    assert f'class="invoice-pdf" href="{emulator.url}/emulator/i/' in page
    assert 'rel="noopener noreferrer"' in page
    assert 'id="upcoming-amount">$0.00<' in page


async def test_cancel_schedules_the_end_and_offers_to_keep_the_subscription(
    app: AppClient, ada: Account
) -> None:
    response = await app.post(
        "/dashboard/subscription/cancel", data={"csrf": await dashboard_csrf(app)}
    )

    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard?notice=cancel_scheduled#billing"
    assert (await load_user(app, ada.user_id)).cancel_at_period_end is True
    page = (await app.get(response.headers["location"])).text
    assert "will be canceled at the end of the current billing period" in page
    assert 'id="resume-subscription">Keep my subscription<' in page


async def test_keep_my_subscription_undoes_the_cancellation(app: AppClient, ada: Account) -> None:
    await app.post("/dashboard/subscription/cancel", data={"csrf": await dashboard_csrf(app)})

    response = await app.post(
        "/dashboard/subscription/resume", data={"csrf": await dashboard_csrf(app)}
    )

    assert response.headers["location"] == "/dashboard?notice=resumed#billing"
    assert (await load_user(app, ada.user_id)).cancel_at_period_end is False


async def test_the_portal_button_redirects_to_stripes_portal_coming_back_here(
    app: AppClient, ada: Account, emulator: Emulator
) -> None:
    response = await app.post("/dashboard/portal", data={"csrf": await dashboard_csrf(app)})

    assert response.status_code == 303
    assert response.headers["location"].startswith(emulator.url)
    portal = emulator.http.get(response.headers["location"].removeprefix(emulator.url))
    assert "http://localhost:3000/dashboard" in portal.text


async def test_the_csp_lets_forms_reach_the_portal_and_nothing_else(
    app: AppClient, ada: Account, emulator: Emulator
) -> None:
    csp = (await app.get("/dashboard")).headers["content-security-policy"]

    assert f"form-action 'self' {emulator.url}" in csp


async def test_stripe_failing_on_cancel_shows_the_reason_on_the_page(
    app: AppClient, ada: Account, emulator: Emulator
) -> None:
    emulator.fault("500", "/v1/subscriptions/", count=5)

    response = await app.post(
        "/dashboard/subscription/cancel", data={"csrf": await dashboard_csrf(app)}
    )

    assert response.status_code in (502, 503)
    assert 'role="alert"' in response.text
    assert (await load_user(app, ada.user_id)).cancel_at_period_end is False


async def test_without_a_card_a_banner_offers_to_add_one_before_the_free_tier_runs_out(
    app: AppClient, ada: Account, stripe_billing: StripeBilling, emulator: Emulator
) -> None:
    assert ada.customer_id is not None
    await remove_card(stripe_billing, ada.customer_id)

    page = (await app.get("/dashboard")).text

    assert 'id="payment-method-banner"' in page
    assert "Add a payment method before your free units run out." in page
    response = await app.post("/dashboard/payment-method", data={"csrf": await dashboard_csrf(app)})
    assert response.status_code == 303
    assert response.headers["location"].startswith(f"{emulator.url}/emulator/p/session/")
    [sent] = emulator.requests("POST", "/v1/billing_portal/sessions")
    assert sent["params"]["flow_data"]["type"] == "payment_method_update"
    assert sent["params"]["flow_data"]["after_completion"]["redirect"]["return_url"] == (
        "http://localhost:3000/dashboard"
    )


async def test_with_a_card_on_file_there_is_no_banner(app: AppClient, ada: Account) -> None:
    page = (await app.get("/dashboard")).text

    assert 'id="payment-method-banner"' not in page
    assert 'id="open-portal"' in page
