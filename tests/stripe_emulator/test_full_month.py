"""One customer's whole month, end to end, through the SDK and signed webhooks."""

from __future__ import annotations

import stripe

from .helpers import (
    T0,
    Control,
    WebhookReceiver,
    create_customer,
    create_meter,
    create_metered_price,
    send_usage,
)


def test_a_month_of_1500_calls_is_invoiced_and_paid_for_50_cents(
    client: stripe.StripeClient, receiver: WebhookReceiver, control: Control
) -> None:
    endpoint = client.v1.webhook_endpoints.create(
        {
            "url": receiver.url,
            "enabled_events": [
                "customer.subscription.created",
                "customer.subscription.updated",
                "invoice.created",
                "invoice.finalized",
                "invoice.paid",
                "invoice.upcoming",
            ],
        }
    )
    clock = client.v1.test_helpers.test_clocks.create({"frozen_time": T0})
    meter = create_meter(client)
    price = create_metered_price(client, meter.id)
    customer = create_customer(client, test_clock=clock.id)
    sub = client.v1.subscriptions.create({"customer": customer.id, "items": [{"price": price.id}]})
    period_end = sub["items"].data[0].current_period_end

    for day in range(15):
        client.v1.test_helpers.test_clocks.advance(
            clock.id, {"frozen_time": T0 + (day + 1) * 86400}
        )
        send_usage(client, customer.id, 100, identifier=f"day-{day}")
    assert control.state()["totals"][customer.id][meter.id] == "1500"
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": period_end + 3600})

    invoice = client.v1.invoices.list({"subscription": sub.id, "limit": 1}).data[0]
    assert (invoice.status, invoice.amount_due, invoice.amount_paid) == ("paid", 50, 50)
    assert (invoice.period_start, invoice.period_end) == (T0, period_end)
    assert (invoice.currency, invoice.total, invoice.subtotal) == ("usd", 50, 50)

    control.flush()
    events = [
        stripe.Webhook.construct_event(r.body, r.signature, endpoint.secret)
        for r in receiver.bodies()
    ]
    types = [e.type for e in events]
    for expected in (
        "customer.subscription.created",
        "invoice.upcoming",
        "customer.subscription.updated",
        "invoice.created",
        "invoice.finalized",
        "invoice.paid",
    ):
        assert expected in types
    paid = [e for e in events if e.type == "invoice.paid"][-1]
    assert (paid.data.object.id, paid.data.object.amount_paid) == (invoice.id, 50)
    upcoming = next(e for e in events if e.type == "invoice.upcoming")
    assert upcoming.data.object.amount_due == 50
