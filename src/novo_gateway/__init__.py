"""Novo Gateway: sell an API by usage, with keys, rate limits, a durable ledger and Stripe."""

__version__ = "0.1.0"
