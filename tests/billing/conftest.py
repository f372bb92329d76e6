"""Billing fixtures: the Stripe emulator over real HTTP, and gateway settings pointing at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from novo_gateway.accounts.models import User
from novo_gateway.billing.models import UsageReport
from novo_gateway.billing.reporter import UsageReporter
from novo_gateway.billing.stripe_client import StripeBilling
from novo_gateway.kit.clock import Clock
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import SessionFactory, create_engine, create_session_factory, session_scope
from novo_gateway.metering.models import UsageEvent
from stripe_emulator import EmulatorServer
from stripe_emulator.errors import StripeError
from stripe_emulator.sdk_params import check_params
from tests.factories import create_api_key, create_user
from tests.metering.ledger import add_insights_calls

EMULATOR_KEY = "sk_test_emulator"


class Emulator:
    """The running emulator and its control endpoints (`/_emulator/...`)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=10)

    def reset(self) -> None:
        self.http.post("/_emulator/reset").raise_for_status()

    def state(self, **params: str) -> dict[str, Any]:
        response = self.http.get("/_emulator/state", params=params)
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def total(self, customer_id: str, meter_id: str) -> int:
        """The units Stripe holds for a customer on a meter."""
        totals = self.state(meter_events="false")["totals"]
        return int(float(totals.get(customer_id, {}).get(meter_id, "0")))

    def identifiers(self) -> list[str]:
        """Identifiers of every meter event Stripe counted."""
        return [
            e["identifier"]
            for e in self.state()["meter_events"]
            if e["error"] is None and not e["canceled"]
        ]

    def fault(
        self, kind: str, path: str, *, method: str = "POST", count: int = 1, **extra: Any
    ) -> None:
        body = {"kind": kind, "path": path, "method": method, "count": count, **extra}
        self.http.post("/_emulator/faults", json=body).raise_for_status()

    def requests(self, method: str | None = None, template: str | None = None) -> list[Any]:
        """The API requests the emulator received since the reset (its request log)."""
        log: list[dict[str, Any]] = self.http.get("/_emulator/requests").json()["requests"]
        return [
            e
            for e in log
            if (method is None or e["method"] == method)
            and (template is None or e["template"] == template)
        ]

    def advance(self, seconds: float) -> None:
        self.http.post("/_emulator/clock/advance", json={"seconds": seconds}).raise_for_status()

    def now(self) -> int:
        return int(self.http.get("/_emulator/clock").json()["now"])


@pytest.fixture(scope="session")
def emulator_server() -> Iterator[EmulatorServer]:
    server = EmulatorServer(port=0).start()
    yield server
    server.stop()


@pytest.fixture
def emulator(emulator_server: EmulatorServer, request: pytest.FixtureRequest) -> Iterator[Emulator]:
    """A freshly reset emulator for this test. Afterwards, the conformance net: every request
    the stripe SDK sent (the gateway's client, or test code through it) is checked against the
    SDK's own parameter types, so a request real Stripe would refuse fails the test even when
    the code that sent it swallowed the error or the emulator let it through."""
    control = Emulator(emulator_server.url)
    control.reset()
    yield control
    try:
        if request.node.get_closest_marker("stripe_refusals_expected") is None:
            refused = nonconforming(control.requests())
            assert not refused, "Stripe would refuse these requests:\n" + "\n".join(refused)
    finally:
        control.http.close()


#: Refusals that say the request itself is wrong (not the state it met).
PARAMETER_CODES = frozenset(
    {
        "parameter_unknown",
        "parameter_missing",
        "parameter_invalid_empty",
        "parameter_invalid_integer",
        "parameter_invalid_string_empty",
        "parameters_exclusive",
        "parameter_unsupported",
    }
)


def nonconforming(log: list[dict[str, Any]]) -> list[str]:
    """The SDK-sent requests of the emulator's log that break Stripe's parameter types."""
    found = []
    for entry in log:
        if "PythonBindings" not in entry["user_agent"]:
            continue  # raw HTTP from test code, not a Stripe client
        where = f"{entry['method']} {entry['path']} {entry['params']}"
        try:
            check_params(
                entry["method"],
                entry["template"],
                entry["params"],
                v2=entry["path"].startswith("/v2/"),
            )
        except StripeError as exc:
            found.append(f"{where}: {exc.message}")
            continue
        if entry["code"] in PARAMETER_CODES:
            found.append(f"{where}: {entry['message']}")
    return found


@pytest.fixture
def make_stripe_settings(
    make_settings: Callable[..., Settings], emulator: Emulator
) -> Callable[..., Settings]:
    """Gateway settings on this test's database that talk to the emulator."""

    def build(**overrides: Any) -> Settings:
        base: dict[str, Any] = {
            "stripe_secret_key": EMULATOR_KEY,
            "stripe_api_base": emulator.url,
            "stripe_max_network_retries": 0,
            "stripe_rate_limit_per_second": 1000.0,
            "stripe_timeout_seconds": 5.0,
        }
        return make_settings(**{**base, **overrides})

    return build


@pytest.fixture
def stripe_settings(make_stripe_settings: Callable[..., Settings]) -> Settings:
    return make_stripe_settings()


@pytest.fixture
async def stripe_billing(stripe_settings: Settings) -> Any:
    billing = StripeBilling(stripe_settings, Clock())
    yield billing
    await billing.close()


METER_EVENT = "novo_api_calls"


async def attach_card(stripe: StripeBilling, customer_id: str, card: str = "pm_card_visa") -> str:
    """Give a customer a default payment method, as adding a card in the portal does: without
    one Stripe cannot charge the invoices past the free tier."""
    pm = await stripe.call(
        stripe.sdk.v1.payment_methods.attach_async, card, params={"customer": customer_id}
    )
    await stripe.call(
        stripe.sdk.v1.customers.update_async,
        customer_id,
        params={"invoice_settings": {"default_payment_method": pm.id}},
    )
    return str(pm.id)


class Ledger:
    """Test access to the gateway's database: accounts, ledger events and reports."""

    def __init__(self, settings: Settings) -> None:
        self.engine = create_engine(settings)
        self.sessions: SessionFactory = create_session_factory(self.engine)

    async def customer(self, stripe: StripeBilling, email: str) -> tuple[int, int, str]:
        """An account provisioned at Stripe: (user id, key id, Stripe customer id)."""
        async with session_scope(self.sessions) as session:
            user = await create_user(session, email=email)
            key, _ = await create_api_key(session, user)
            user_id, key_id = user.id, key.id
        customer_id = await stripe.create_customer(
            email=email, name="Test", account_id=user_id, idempotency_key=f"test-cus-{email}"
        )
        await attach_card(stripe, customer_id)
        async with session_scope(self.sessions) as session:
            user = await session.get_one(User, user_id)
            user.stripe_customer_id = customer_id
        return user_id, key_id, customer_id

    async def record(
        self,
        user_id: int,
        key_id: int,
        count: int,
        *,
        at: datetime | None = None,
        status: int = 200,
        units: int = 1,
    ) -> None:
        when = at or datetime.now(UTC)
        async with session_scope(self.sessions) as session:
            await add_insights_calls(
                session,
                user_id=user_id,
                key_id=key_id,
                count=count,
                at=when,
                status=status,
                units=units,
            )

    async def billable_units(self, user_id: int) -> int:
        async with session_scope(self.sessions) as session:
            total = await session.scalar(
                select(func.coalesce(func.sum(UsageEvent.units), 0)).where(
                    UsageEvent.user_id == user_id, UsageEvent.billable.is_(True)
                )
            )
        return int(total or 0)

    async def reports(self) -> list[UsageReport]:
        async with session_scope(self.sessions) as session:
            return list((await session.scalars(select(UsageReport))).all())


async def remove_card(stripe: StripeBilling, customer_id: str) -> None:
    """Detach the customer's default payment method (the customer has none left)."""
    customer = await stripe.call(stripe.sdk.v1.customers.retrieve_async, customer_id)
    card = customer.invoice_settings.default_payment_method
    if card:
        await stripe.call(stripe.sdk.v1.payment_methods.detach_async, card)


@pytest.fixture
async def ledger(stripe_settings: Settings) -> Any:
    ledger = Ledger(stripe_settings)
    yield ledger
    await ledger.engine.dispose()


@pytest.fixture
async def meter_id(stripe_billing: StripeBilling) -> str:
    meter = await stripe_billing.call(
        stripe_billing.sdk.v1.billing.meters.create_async,
        params={
            "display_name": "Novo API calls",
            "event_name": METER_EVENT,
            "default_aggregation": {"formula": "sum"},
            "customer_mapping": {"type": "by_id", "event_payload_key": "stripe_customer_id"},
            "value_settings": {"event_payload_key": "value"},
        },
    )
    return str(meter.id)


@pytest.fixture
def make_reporter(
    ledger: Ledger, stripe_billing: StripeBilling, stripe_settings: Settings
) -> Callable[..., UsageReporter]:
    def build(clock: Clock | None = None, **kwargs: Any) -> UsageReporter:
        return UsageReporter(
            ledger.sessions, stripe_billing, stripe_settings, clock or Clock(), **kwargs
        )

    return build
