"""Stripe resources; each module registers its routes."""

from __future__ import annotations

from ..router import Router
from . import (
    customers,
    invoice_items,
    invoices,
    meter_events,
    meters,
    portal,
    prices,
    products,
    subscription_changes,
    subscriptions,
    test_clocks,
    webhook_endpoints,
)


def build_router() -> Router:
    router = Router()
    for module in (
        customers,
        products,
        prices,
        meters,
        meter_events,
        subscription_changes,
        subscriptions,
        invoices,
        invoice_items,
        test_clocks,
        webhook_endpoints,
        portal,
    ):
        module.register(router)
    return router
