"""Helpers for the browser tests: accounts made over HTTP, and usage written to the ledger."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from novo_gateway.accounts.models import User
from novo_gateway.keys.models import ApiKey
from novo_gateway.kit.db import session_scope
from novo_gateway.metering.models import UsageEvent
from tests.browser.conftest import Gateway
from tests.metering.ledger import add_to_ledger

PASSWORD = "a long passphrase for tests"


@dataclass(frozen=True)
class Customer:
    user_id: int
    email: str
    key: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


async def register(gateway: Gateway, email: str, name: str) -> Customer:
    """Register through the API and wait until Stripe has provisioned the subscription."""
    async with gateway.client() as http:
        response = await http.post(
            "/auth/register", json={"email": email, "password": PASSWORD, "name": name}
        )
        assert response.status_code == 201, response.text
        body = response.json()
        customer = Customer(body["user"]["id"], email, body["apiKey"]["key"])
        for _ in range(200):
            sub = (await http.get("/billing/subscription", headers=customer.auth)).json()
            if sub.get("status") == "active":
                return customer
            await asyncio.sleep(0.05)
    raise AssertionError(f"{email} was not provisioned: {sub}")


async def backdate_period(gateway: Gateway, user_id: int, days: int) -> datetime:
    """Move the account's current period to have started `days` days ago (as a renewal would)."""
    start = (datetime.now(UTC) - timedelta(days=days)).replace(hour=6, minute=0, second=0)
    async with session_scope(gateway.sessions) as session:
        user = await session.get_one(User, user_id)
        user.current_period_start = start
        user.current_period_end = start + timedelta(days=30)
        user.subscription_updated_at = datetime.now(UTC)
    return start


async def record_days(
    gateway: Gateway, user_id: int, start: datetime, calls_per_day: list[int]
) -> None:
    """Ledger events for the days after `start`, as the metered path records them."""
    async with session_scope(gateway.sessions) as session:
        key_id = await session.scalar(select(ApiKey.id).where(ApiKey.user_id == user_id))
        assert key_id is not None
        endpoints = ["/api/v1/insights", "/api/v1/analytics", "/api/v1/campaign/generate"]
        rows: list[Any] = []
        for day, calls in enumerate(calls_per_day):
            at = start + timedelta(days=day, hours=2)
            rows += [
                UsageEvent(
                    user_id=user_id,
                    api_key_id=key_id,
                    endpoint=endpoints[i % len(endpoints)],
                    method="POST" if i % len(endpoints) == 2 else "GET",
                    status=200,
                    latency_ms=8 + i % 23,
                    units=1,
                    billable=True,
                    created_at=at + timedelta(seconds=i),
                )
                for i in range(calls)
            ]
        await add_to_ledger(session, rows)
