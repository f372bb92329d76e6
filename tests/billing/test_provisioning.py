"""Provisioning at registration: one Stripe customer and subscription each, outages retried."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from novo_gateway.accounts.models import User
from novo_gateway.billing.provisioning import Provisioner
from novo_gateway.billing.setup import run_setup
from novo_gateway.billing.stripe_client import StripeBilling
from novo_gateway.jobs.models import Job
from novo_gateway.kit.clock import FrozenClock
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import session_scope
from novo_gateway.runtime import Runtime
from tests.billing.conftest import Emulator
from tests.conftest import AppClient

PASSWORD = "correct horse battery staple"
AN_HOUR = 3600.0


@pytest.fixture
async def price_id(stripe_settings: Settings) -> str:
    """Stripe set up as `setup-stripe` does it (no webhook endpoint: nothing listens here)."""
    result = await run_setup(stripe_settings)
    return result.price_id


@pytest.fixture
async def gateway(
    stripe_settings: Settings, price_id: str, start_app: Callable[..., Any], clock: FrozenClock
) -> AppClient:
    """The gateway talking to the emulator, on a frozen clock (retries wait for `advance`)."""
    app: AppClient = await start_app(stripe_settings, clock)
    return app


def runtime_of(client: AppClient) -> Runtime:
    runtime: Runtime = client.app.state.runtime
    return runtime


async def register(client: AppClient, email: str = "ada@example.com") -> dict[str, Any]:
    response = await client.post(
        "/auth/register", json={"email": email, "password": PASSWORD, "name": "Ada"}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def user_and_job(runtime: Runtime, user_id: int) -> tuple[User, Job]:
    async with session_scope(runtime.sessions) as session:
        user = await session.get_one(User, user_id)
        job = (await session.scalars(select(Job).where(Job.kind == "provision_customer"))).one()
    return user, job


async def retry_until_done(runtime: Runtime, clock: FrozenClock, user_id: int) -> Job:
    """Move the clock past each backoff and run the due jobs until provisioning is done."""
    for _ in range(20):
        _, job = await user_and_job(runtime, user_id)
        if job.status == "done":
            return job
        clock.advance(AN_HOUR)
        assert runtime.jobs is not None
        await runtime.jobs.run_once()
    raise AssertionError("provisioning never finished")


def customers(emulator: Emulator) -> list[dict[str, Any]]:
    listed = emulator.http.get(
        "/v1/customers",
        params={"limit": 100},
        headers={"Authorization": "Bearer sk_test_emulator"},
    )
    listed.raise_for_status()
    data: list[dict[str, Any]] = listed.json()["data"]
    return data


def count(emulator: Emulator, kind: str) -> int:
    return int(emulator.state(meter_events="false")["counts"].get(kind, 0))


async def test_registration_answers_with_the_active_subscription(
    gateway: AppClient, emulator: Emulator, price_id: str
) -> None:
    body = await register(gateway)

    subscription = body["subscription"]
    assert subscription["id"].startswith("sub_")
    assert subscription["status"] == "active"
    assert subscription["currentPeriodStart"] < subscription["currentPeriodEnd"]
    user, job = await user_and_job(runtime_of(gateway), body["user"]["id"])
    assert (job.status, job.attempts, job.last_error) == ("done", 1, None)
    assert user.subscription_id == subscription["id"]
    assert user.subscription_status == "active"
    assert user.current_period_start is not None and user.current_period_end is not None
    assert user.subscription_updated_at is not None
    [customer] = customers(emulator)
    assert customer["id"] == user.stripe_customer_id
    assert customer["email"] == "ada@example.com"
    assert customer["metadata"] == {"novo_account_id": str(user.id)}
    assert count(emulator, "subscription") == 1


async def test_stripe_outage_leaves_registration_pending_then_one_customer(
    gateway: AppClient, emulator: Emulator, clock: FrozenClock
) -> None:
    emulator.fault("500", "/v1/customers", count=3)

    body = await register(gateway)

    assert body["subscription"] == {"status": "pending"}
    user, job = await user_and_job(runtime_of(gateway), body["user"]["id"])
    assert (user.subscription_status, user.stripe_customer_id) == ("pending", None)
    assert (job.status, job.attempts) == ("pending", 1)
    assert job.last_error is not None and job.last_error.startswith("StripeFailure")
    assert job.run_after > clock.now()

    job = await retry_until_done(runtime_of(gateway), clock, body["user"]["id"])

    assert job.attempts == 4
    user, _ = await user_and_job(runtime_of(gateway), body["user"]["id"])
    assert user.subscription_status == "active"
    assert [c["id"] for c in customers(emulator)] == [user.stripe_customer_id]
    assert count(emulator, "subscription") == 1


@pytest.mark.parametrize("path", ["/v1/customers", "/v1/subscriptions"])
async def test_answer_lost_after_stripe_created_the_object_creates_no_second_one(
    gateway: AppClient, emulator: Emulator, clock: FrozenClock, path: str
) -> None:
    """The `drop` fault: Stripe does the work, then the connection closes without an answer."""
    emulator.fault("drop", path, count=1)

    body = await register(gateway)

    assert body["subscription"] == {"status": "pending"}
    await retry_until_done(runtime_of(gateway), clock, body["user"]["id"])
    user, _ = await user_and_job(runtime_of(gateway), body["user"]["id"])
    assert user.subscription_status == "active"
    assert len(customers(emulator)) == 1
    assert count(emulator, "subscription") == 1


async def test_retry_after_the_idempotency_key_expired_finds_the_customer_by_metadata(
    stripe_settings: Settings,
    stripe_billing: StripeBilling,
    price_id: str,
    emulator: Emulator,
    clock: FrozenClock,
    start_app: Callable[..., Any],
) -> None:
    """An earlier attempt made the customer, then its idempotency key was pruned (24 h)."""
    app: AppClient = await start_app(stripe_settings.model_copy(update={"stripe_secret_key": ""}))
    body = await register(app)  # no Stripe key: stays pending, nothing sent
    user_id = body["user"]["id"]
    earlier = await stripe_billing.create_customer(
        email="ada@example.com", name="Ada", account_id=user_id, idempotency_key="pruned-long-ago"
    )
    runtime = runtime_of(app)

    provisioner = Provisioner(runtime.sessions, stripe_billing, stripe_settings, clock)
    await provisioner.provision(user_id, retry=True)

    user, _ = await user_and_job(runtime, user_id)
    assert user.stripe_customer_id == earlier
    assert user.subscription_status == "active"
    assert len(customers(emulator)) == 1


async def test_another_customer_with_the_same_email_is_not_taken_for_ours(
    stripe_settings: Settings,
    stripe_billing: StripeBilling,
    price_id: str,
    emulator: Emulator,
    clock: FrozenClock,
    start_app: Callable[..., Any],
) -> None:
    app: AppClient = await start_app(stripe_settings.model_copy(update={"stripe_secret_key": ""}))
    body = await register(app)
    stranger = await stripe_billing.create_customer(
        email="ada@example.com", name="Ada", account_id=999, idempotency_key="someone-else"
    )
    runtime = runtime_of(app)

    await Provisioner(runtime.sessions, stripe_billing, stripe_settings, clock).provision(
        body["user"]["id"], retry=True
    )

    user, _ = await user_and_job(runtime, body["user"]["id"])
    assert user.stripe_customer_id not in (None, stranger)
    assert len(customers(emulator)) == 2


async def test_provisioning_an_account_twice_changes_nothing_at_stripe(
    gateway: AppClient, stripe_billing: StripeBilling, stripe_settings: Settings, emulator: Emulator
) -> None:
    body = await register(gateway)
    runtime = runtime_of(gateway)
    before = emulator.state(meter_events="false")["counts"]

    provisioner = Provisioner(runtime.sessions, stripe_billing, stripe_settings, runtime.clock)
    await provisioner.provision(body["user"]["id"], retry=True)

    assert emulator.state(meter_events="false")["counts"] == before


async def test_provisioning_a_deleted_account_does_nothing(
    gateway: AppClient, stripe_billing: StripeBilling, stripe_settings: Settings, emulator: Emulator
) -> None:
    runtime = runtime_of(gateway)
    provisioner = Provisioner(runtime.sessions, stripe_billing, stripe_settings, runtime.clock)
    await provisioner.provision(424242)
    assert customers(emulator) == []


async def test_without_a_price_the_job_fails_and_says_to_run_setup(
    stripe_settings: Settings, emulator: Emulator, start_app: Callable[..., Any]
) -> None:
    app: AppClient = await start_app(stripe_settings, FrozenClock())
    body = await register(app)

    assert body["subscription"] == {"status": "pending"}
    _, job = await user_and_job(runtime_of(app), body["user"]["id"])
    assert job.status == "pending"
    assert job.last_error is not None and "setup-stripe" in job.last_error
    assert customers(emulator) == []


async def test_configured_price_id_is_used_without_a_lookup(
    make_stripe_settings: Callable[..., Settings],
    price_id: str,
    emulator: Emulator,
    start_app: Callable[..., Any],
) -> None:
    app: AppClient = await start_app(make_stripe_settings(stripe_price_id=price_id))
    body = await register(app)
    assert body["subscription"]["status"] == "active"
    subscriptions = emulator.http.get(
        "/v1/subscriptions", headers={"Authorization": "Bearer sk_test_emulator"}
    ).json()["data"]
    assert [s["items"]["data"][0]["price"]["id"] for s in subscriptions] == [price_id]


async def test_without_stripe_registration_is_pending_and_the_job_waits(
    client: AppClient,
) -> None:
    body = await register(client)
    assert body["subscription"] == {"status": "pending"}
    _, job = await user_and_job(runtime_of(client), body["user"]["id"])
    assert (job.status, job.attempts) == ("pending", 0)
