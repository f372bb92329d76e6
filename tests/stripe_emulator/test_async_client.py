"""The SDK's async client (httpx), as the gateway uses it."""

from __future__ import annotations

import pytest
import stripe

from .helpers import Control


async def test_async_client_records_usage_and_sees_dropped_connections(
    url: str, control: Control
) -> None:
    http = stripe.HTTPXClient(timeout=5)
    client = stripe.StripeClient(
        "sk_test_async",
        base_addresses={"api": url, "meter_events": url},
        max_network_retries=0,
        http_client=http,
    )
    try:
        meter = await client.v1.billing.meters.create_async(
            {
                "display_name": "x",
                "event_name": "api_call",
                "default_aggregation": {"formula": "sum"},
            }
        )
        customer = await client.v1.customers.create_async({"email": "async@example.com"})
        params = {
            "event_name": "api_call",
            "identifier": "async-1",
            "payload": {"stripe_customer_id": customer.id, "value": "3"},
        }
        control.fault(method="POST", path="/v1/billing/meter_events", kind="drop")
        with pytest.raises(stripe.APIConnectionError):
            await client.v1.billing.meter_events.create_async(params)
        with pytest.raises(stripe.InvalidRequestError) as info:
            await client.v1.billing.meter_events.create_async(params)
        assert info.value.headers["Stripe-Should-Retry"] == "false"
        assert control.state()["totals"] == {customer.id: {meter.id: "3"}}
    finally:
        await http.close_async()  # type: ignore[no-untyped-call]
