"""Fixtures of the end-to-end tests: the Stripe emulator fixtures, shared with the billing tests."""

from tests.billing.conftest import (
    emulator,
    emulator_server,
    make_stripe_settings,
    stripe_settings,
)

__all__ = ["emulator", "emulator_server", "make_stripe_settings", "stripe_settings"]
