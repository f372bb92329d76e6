"""Object ids with Stripe's prefixes (``cus_``, ``price_``, ...), random base62 bodies."""

from __future__ import annotations

import os
import string

_ALPHABET = string.ascii_letters + string.digits


def random_token(length: int = 24) -> str:
    """``length`` random base62 characters (from ``os.urandom``)."""
    return "".join(_ALPHABET[b % 62] for b in os.urandom(length))


def new_id(prefix: str, length: int = 24) -> str:
    """``new_id("cus")`` -> ``cus_`` followed by ``length`` base62 characters."""
    return f"{prefix}_{random_token(length)}"


def request_id() -> str:
    return new_id("req", 14)


# Which collection an id belongs to, by prefix (used for expansion and lookups).
PREFIX_KINDS: dict[str, str] = {
    "cus": "customer",
    "prod": "product",
    "price": "price",
    "sub": "subscription",
    "si": "subscription_item",
    "in": "invoice",
    "ii": "invoiceitem",
    "mtr": "billing.meter",
    "bpc": "billing_portal.configuration",
    "bps": "billing_portal.session",
    "we": "webhook_endpoint",
    "evt": "event",
    "clock": "test_helpers.test_clock",
    "pm": "payment_method",
}


def kind_of(obj_id: str) -> str | None:
    prefix, _, _ = obj_id.partition("_")
    return PREFIX_KINDS.get(prefix)
