"""A local Stripe-compatible HTTP server for tests, benchmarks and offline demos.

Start it with ``python -m stripe_emulator --port 12111`` or in-process::

    from stripe_emulator import run_in_thread
    url, stop = run_in_thread(port=0)

and point ``stripe.StripeClient("sk_test_x", base_addresses={"api": url, "meter_events": url})``
at it. See README.md and FIDELITY.md in this package.
"""

from __future__ import annotations

from .app import EmulatorApp, create_app
from .config import DEFAULT_API_VERSION, EmulatorConfig
from .emulator import Emulator
from .server import EmulatorServer, run_in_thread
from .webhooks import sign as sign_webhook

__all__ = [
    "DEFAULT_API_VERSION",
    "Emulator",
    "EmulatorApp",
    "EmulatorConfig",
    "EmulatorServer",
    "create_app",
    "run_in_thread",
    "sign_webhook",
]
