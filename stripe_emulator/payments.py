"""Test payment methods (``pm_card_visa`` and friends) and the outcome of charging them.

Cards that Stripe declines when they are attached (``pm_card_visa_chargeDeclined`` ...) fail
with a 402 ``card_declined`` at attach time, as in Stripe test mode. ``pm_card_chargeCustomerFail``
attaches fine and every later charge is declined. A customer without a default payment method
pays or fails according to ``EmulatorConfig.no_payment_method``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import card_declined
from .ids import new_id, random_token
from .state import EmulatorState


@dataclass(frozen=True)
class TestCard:
    brand: str
    last4: str
    attach_decline: str | None = None
    charge_decline: str | None = None
    funding: str = "credit"


DECLINE_MESSAGES = {
    "generic_decline": "Your card was declined.",
    "insufficient_funds": "Your card has insufficient funds.",
    "expired_card": "Your card has expired.",
    "incorrect_cvc": "Your card's security code is incorrect.",
    "processing_error": "An error occurred while processing your card. Try again in a little bit.",
    "lost_card": "Your card was declined.",
    "stolen_card": "Your card was declined.",
    "no_payment_method": "The customer has no default payment method.",
}

TEST_CARDS: dict[str, TestCard] = {
    "pm_card_visa": TestCard("visa", "4242"),
    "pm_card_visa_debit": TestCard("visa", "5556", funding="debit"),
    "pm_card_mastercard": TestCard("mastercard", "4444"),
    "pm_card_mastercard_debit": TestCard("mastercard", "8210", funding="debit"),
    "pm_card_amex": TestCard("amex", "8431"),
    "pm_card_discover": TestCard("discover", "1117"),
    "pm_card_us": TestCard("visa", "4242"),
    "pm_card_chargeCustomerFail": TestCard("visa", "0341", charge_decline="generic_decline"),
    "pm_card_visa_chargeDeclined": TestCard("visa", "0002", attach_decline="generic_decline"),
    "pm_card_chargeDeclined": TestCard("visa", "0002", attach_decline="generic_decline"),
    "pm_card_visa_chargeDeclinedInsufficientFunds": TestCard(
        "visa", "9995", attach_decline="insufficient_funds"
    ),
    "pm_card_chargeDeclinedInsufficientFunds": TestCard(
        "visa", "9995", attach_decline="insufficient_funds"
    ),
    "pm_card_chargeDeclinedExpiredCard": TestCard("visa", "0069", attach_decline="expired_card"),
    "pm_card_chargeDeclinedProcessingError": TestCard(
        "visa", "0119", attach_decline="processing_error"
    ),
}


def is_test_token(value: str) -> bool:
    return value in TEST_CARDS


def create_from_token(state: EmulatorState, token: str, customer_id: str | None) -> dict[str, Any]:
    """A new ``pm_...`` from a test token, attached to ``customer_id`` (402 if it declines)."""
    card = TEST_CARDS[token]
    if customer_id is not None and card.attach_decline:
        raise card_declined(card.attach_decline, DECLINE_MESSAGES[card.attach_decline])
    now = state.customer_now(customer_id)
    pm: dict[str, Any] = {
        "id": new_id("pm"),
        "object": "payment_method",
        "allow_redisplay": "unspecified",
        "billing_details": {
            "address": {
                k: None for k in ("city", "country", "line1", "line2", "postal_code", "state")
            },
            "email": None,
            "name": None,
            "phone": None,
            "tax_id": None,
        },
        "card": {
            "brand": card.brand,
            "checks": {
                "address_line1_check": None,
                "address_postal_code_check": None,
                "cvc_check": "pass",
            },
            "country": "US",
            "display_brand": card.brand,
            "exp_month": 12,
            "exp_year": 2034,
            "fingerprint": random_token(16),
            "funding": card.funding,
            "generated_from": None,
            "last4": card.last4,
            "networks": {"available": [card.brand], "preferred": None},
            "regulated_status": "unregulated",
            "three_d_secure_usage": {"supported": True},
            "wallet": None,
        },
        "created": now,
        "customer": customer_id,
        "livemode": False,
        "metadata": {},
        "type": "card",
    }
    state.store.put("payment_method", pm)
    state.store.aux(pm["id"]).update(token=token, charge_decline=card.charge_decline)
    return pm


def default_payment_method(
    state: EmulatorState, customer: dict[str, Any], override: str | None = None
) -> str | None:
    return override or (customer.get("invoice_settings") or {}).get("default_payment_method")


def charge_outcome(state: EmulatorState, customer: dict[str, Any], pm_id: str | None) -> str | None:
    """``None`` when the charge succeeds, else the decline code."""
    if pm_id is None:
        return None if state.config.no_payment_method == "succeed" else "no_payment_method"
    info = state.store.internal.get(pm_id, {})
    decline = info.get("charge_decline")
    return str(decline) if decline else None
