"""`POST /billing/portal`: a Stripe portal link that only ever returns to an allowed origin."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from novo_gateway.billing.portal import checked_return_url
from novo_gateway.billing.stripe_client import StripeBilling
from novo_gateway.kit.clock import FrozenClock
from novo_gateway.kit.config import Settings
from novo_gateway.kit.errors import BadRequest
from tests.billing.conftest import Emulator, remove_card
from tests.billing.webhook_helpers import (
    Account,
    create_metered_price,
    make_account,
    subscribed_account,
)
from tests.conftest import AppClient


@pytest.fixture
def start(
    make_stripe_settings: Callable[..., Settings],
    start_app: Callable[..., Any],
    clock: FrozenClock,
    stripe_billing: StripeBilling,
) -> Callable[..., Any]:
    async def run(**overrides: Any) -> tuple[AppClient, Account]:
        product = await create_metered_price(stripe_billing, "novo_api_calls")
        app: AppClient = await start_app(
            make_stripe_settings(stripe_price_id=product.price_id, **overrides), clock
        )
        return app, await subscribed_account(app, stripe_billing, product.price_id)

    return run


async def portal(app: AppClient, account: Account, body: Any) -> Any:
    return await app.post("/billing/portal", headers=account.auth, json=body)


@pytest.mark.parametrize(
    "return_url",
    [
        "http://localhost:3000",
        "http://localhost:3000/dashboard?tab=billing#top",
        "http://127.0.0.1:3000/",
        "HTTP://LOCALHOST:3000/",
    ],
)
async def test_a_portal_link_is_given_for_a_local_return_url_by_default(
    start: Callable[..., Any], emulator: Emulator, return_url: str
) -> None:
    app, ada = await start()

    response = await portal(app, ada, {"returnUrl": return_url})

    assert response.status_code == 200
    assert response.json()["url"].startswith(emulator.url)


async def test_a_portal_session_carries_our_configuration_not_stripes_default(
    start: Callable[..., Any], emulator: Emulator, stripe_billing: StripeBilling
) -> None:
    emulator.http.post("/_emulator/portal/default").raise_for_status()  # the Dashboard's
    app, ada = await start()
    [ours] = [
        c.id
        for c in (
            await stripe_billing.call(
                stripe_billing.sdk.v1.billing_portal.configurations.list_async
            )
        ).data
        if c.to_dict()["metadata"].get("novo_gateway") == "billing"
    ]

    response = await portal(app, ada, {"returnUrl": "http://localhost:3000/"})

    assert response.status_code == 200
    [sent] = emulator.requests("POST", "/v1/billing_portal/sessions")
    assert sent["params"]["configuration"] == ours


async def test_the_configured_portal_configuration_id_is_used(
    start: Callable[..., Any], emulator: Emulator, stripe_billing: StripeBilling
) -> None:
    other = await stripe_billing.create_portal_configuration(
        {"features": {"invoice_history": {"enabled": True}}}
    )
    app, ada = await start(stripe_portal_configuration_id=other)

    response = await portal(app, ada, {"returnUrl": "http://localhost:3000/"})

    assert response.status_code == 200
    [sent] = emulator.requests("POST", "/v1/billing_portal/sessions")
    assert sent["params"]["configuration"] == other


async def test_without_a_return_url_the_portal_returns_to_the_first_allowed_origin(
    start: Callable[..., Any],
) -> None:
    app, ada = await start()

    response = await app.post("/billing/portal", headers=ada.auth)

    assert response.status_code == 200


@pytest.mark.parametrize(
    "return_url",
    [
        "https://evil.example/",
        "javascript:alert(document.cookie)",
        "data:text/html,<script>alert(1)</script>",
        "http://localhost:3000@evil.example/",
        "http://user:pw@localhost:3000/",
        "//evil.example/",
        "/relative/path",
        "http://localhost:3001/",
        "https://localhost:3000/",
        "http://localhost:3000\\@evil.example/",
        "http://evil.example/?next=http://localhost:3000",
        " http://localhost:3000/",
        "http://localhost:3000/\nSet-Cookie: x",
        "http://localhost.evil.example:3000/",
        "http://localhost:99999/",
        "",
        "http://localhost:3000/" + "a" * 2100,
    ],
)
async def test_a_return_url_off_the_allowed_origins_is_a_400(
    start: Callable[..., Any], return_url: str
) -> None:
    app, ada = await start()

    response = await portal(app, ada, {"returnUrl": return_url})

    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "Bad Request"
    assert "returnUrl" in body["message"]


@pytest.mark.parametrize("body", [{"returnUrl": 42}, {"returnUrl": None, "x": 1}, ["http://a"]])
async def test_a_malformed_portal_body_is_a_400(start: Callable[..., Any], body: Any) -> None:
    app, ada = await start()

    response = await portal(app, ada, body)

    assert response.status_code == 400


async def test_public_url_sets_the_allowed_origin(start: Callable[..., Any]) -> None:
    app, ada = await start(public_url="https://api.novo.example/gateway")

    allowed = await portal(app, ada, {"returnUrl": "https://api.novo.example/account"})
    local = await portal(app, ada, {"returnUrl": "http://localhost:3000/"})

    assert (allowed.status_code, local.status_code) == (200, 400)


async def test_portal_return_origins_lists_the_allowed_origins(start: Callable[..., Any]) -> None:
    app, ada = await start(
        portal_return_origins="https://app.novo.example, https://admin.novo.example:8443"
    )

    first = await portal(app, ada, {"returnUrl": "https://app.novo.example/billing"})
    second = await portal(app, ada, {"returnUrl": "https://admin.novo.example:8443/"})
    other_port = await portal(app, ada, {"returnUrl": "https://admin.novo.example/"})

    assert (first.status_code, second.status_code, other_port.status_code) == (200, 200, 400)
    assert "https://app.novo.example" in other_port.json()["allowedOrigins"]


async def test_the_portal_before_provisioning_is_a_409_pending(start: Callable[..., Any]) -> None:
    app, _ = await start()
    pending = await make_account(app, "new@example.com", customer_id=None, status="pending")

    response = await portal(app, pending, {"returnUrl": "http://localhost:3000/"})

    assert response.status_code == 409
    assert response.json()["status"] == "pending"


async def test_the_original_clients_credentials_in_the_body_are_accepted(
    start: Callable[..., Any],
) -> None:
    from tests.factories import PASSWORD

    app, _ = await start()
    response = await app.post(
        "/billing/portal",
        json={
            "email": "ada@example.com",
            "password": PASSWORD,
            "returnUrl": "http://localhost:3000",
        },
    )

    assert response.status_code == 200


@pytest.mark.parametrize(
    ("port", "scheme_default"), [(80, "http://localhost/"), (8080, "http://localhost:8080/")]
)
def test_the_local_default_origin_on_port_80_has_no_port(port: int, scheme_default: str) -> None:
    settings = Settings(_env_file=None, port=port)  # type: ignore[call-arg]
    assert checked_return_url(None, settings) == scheme_default
    assert checked_return_url(scheme_default + "dashboard", settings) == (
        scheme_default + "dashboard"
    )
    with pytest.raises(BadRequest):
        checked_return_url("http://localhost:9999/", settings)


async def test_the_subscription_says_whether_a_payment_method_is_on_file(
    start: Callable[..., Any], stripe_billing: StripeBilling
) -> None:
    app, ada = await start()
    assert ada.customer_id is not None

    with_card = (await app.get("/billing/subscription", headers=ada.auth)).json()
    await remove_card(stripe_billing, ada.customer_id)
    without = (await app.get("/billing/subscription", headers=ada.auth)).json()

    assert with_card["paymentMethodOnFile"] is True
    assert without["paymentMethodOnFile"] is False
    assert without["status"] == "active" and without["apiAccess"] is True


async def test_the_subscription_still_answers_when_stripe_is_down(
    start: Callable[..., Any], emulator: Emulator
) -> None:
    app, ada = await start()
    emulator.fault("500", f"/v1/customers/{ada.customer_id}", method="GET", count=5)

    response = await app.get("/billing/subscription", headers=ada.auth)

    assert response.status_code == 200
    assert response.json()["paymentMethodOnFile"] is None


async def test_payment_method_link_goes_straight_to_adding_a_card(
    start: Callable[..., Any], emulator: Emulator
) -> None:
    app, ada = await start()

    response = await app.post(
        "/billing/payment-method", headers=ada.auth, json={"returnUrl": "http://localhost:3000/"}
    )

    assert response.status_code == 200
    assert response.json()["url"].startswith(f"{emulator.url}/emulator/p/session/")
    [sent] = emulator.requests("POST", "/v1/billing_portal/sessions")
    flow = sent["params"]["flow_data"]
    assert flow["type"] == "payment_method_update"
    assert flow["after_completion"] == {
        "type": "redirect",
        "redirect": {"return_url": "http://localhost:3000/"},
    }


async def test_payment_method_link_refuses_a_foreign_return_url(
    start: Callable[..., Any],
) -> None:
    app, ada = await start()

    response = await app.post(
        "/billing/payment-method", headers=ada.auth, json={"returnUrl": "https://evil.example/"}
    )

    assert response.status_code == 400
    assert response.json()["error"] == "Bad Request"
