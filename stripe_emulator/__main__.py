"""``python -m stripe_emulator [--host H] [--port P] [--state-file F] [--rate-limit N] ...``"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from .config import EmulatorConfig
from .server import serve


def parse_args(argv: Sequence[str] | None = None) -> EmulatorConfig:
    defaults = EmulatorConfig()
    parser = argparse.ArgumentParser(
        prog="python -m stripe_emulator", description="A local Stripe-compatible HTTP server."
    )
    parser.add_argument("--host", default=defaults.host)
    parser.add_argument("--port", type=int, default=defaults.port)
    parser.add_argument("--state-file", default=None, help="JSON file to load and save state")
    parser.add_argument(
        "--rate-limit", type=float, default=None, help="operations per second (default: no limit)"
    )
    parser.add_argument("--rate-limit-burst", type=float, default=None)
    parser.add_argument("--webhook-max-attempts", type=int, default=defaults.webhook_max_attempts)
    parser.add_argument(
        "--webhook-retry-base",
        type=float,
        default=defaults.webhook_retry_base,
        help="seconds before the first retry; doubles each retry",
    )
    parser.add_argument("--webhook-retry-max", type=float, default=defaults.webhook_retry_max)
    parser.add_argument("--webhook-timeout", type=float, default=defaults.webhook_timeout)
    parser.add_argument(
        "--webhook-signature-clock",
        choices=("wall", "emulator"),
        default=defaults.webhook_signature_clock,
        help="clock for the t= of Stripe-Signature",
    )
    parser.add_argument(
        "--finalization-grace",
        type=int,
        default=defaults.finalization_grace,
        help="seconds a renewal invoice stays draft after its period ends",
    )
    parser.add_argument(
        "--no-payment-method", choices=("succeed", "fail"), default=defaults.no_payment_method
    )
    parser.add_argument(
        "--dunning-final-status",
        choices=("canceled", "unpaid", "past_due"),
        default=defaults.dunning_final_status,
    )
    parser.add_argument(
        "--clock-start",
        type=float,
        default=None,
        help="unix time the global clock starts at (default: real time)",
    )
    parser.add_argument(
        "--control-token", default=None, help="require X-Emulator-Token on /_emulator endpoints"
    )
    args = parser.parse_args(argv)
    return EmulatorConfig(
        host=args.host,
        port=args.port,
        state_file=args.state_file,
        rate_limit=args.rate_limit,
        rate_limit_burst=args.rate_limit_burst,
        webhook_max_attempts=args.webhook_max_attempts,
        webhook_retry_base=args.webhook_retry_base,
        webhook_retry_max=args.webhook_retry_max,
        webhook_timeout=args.webhook_timeout,
        webhook_signature_clock=args.webhook_signature_clock,
        finalization_grace=args.finalization_grace,
        no_payment_method=args.no_payment_method,
        dunning_final_status=args.dunning_final_status,
        control_token=args.control_token,
        clock_start=args.clock_start,
    )


def main(argv: Sequence[str] | None = None) -> None:
    serve(parse_args(argv))


if __name__ == "__main__":
    main()
