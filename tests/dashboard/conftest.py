"""The Stripe emulator fixtures of the billing tests, for the dashboard's billing section."""

from tests.billing.conftest import (  # noqa: F401 - fixtures
    emulator,
    emulator_server,
    make_stripe_settings,
    stripe_billing,
    stripe_settings,
)
