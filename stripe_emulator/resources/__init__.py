"""Stripe resources; each module registers its routes."""

from __future__ import annotations

from ..router import Router
from . import customers, meter_events, meters, prices, products


def build_router() -> Router:
    router = Router()
    for module in (customers, products, prices, meters, meter_events):
        module.register(router)
    return router
