"""Settings of one emulator instance (command-line flags map onto these fields)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

DEFAULT_API_VERSION = "2026-10-28.endive"


@dataclass
class EmulatorConfig:
    host: str = "127.0.0.1"
    port: int = 12111
    #: JSON file the state is loaded from at start and saved to (every ``save_interval`` s
    #: when changed, and at shutdown). ``None`` keeps the state in memory only.
    state_file: str | None = None
    save_interval: float = 2.0
    #: Operations per second across the API (token bucket); ``None`` disables rate limiting.
    rate_limit: float | None = None
    #: Bucket size; defaults to ``rate_limit`` (one second of burst).
    rate_limit_burst: float | None = None
    #: Webhook delivery: attempts in all (first delivery included), first retry delay in
    #: seconds (doubling each time, capped at ``webhook_retry_max``) and the HTTP timeout.
    webhook_max_attempts: int = 5
    webhook_retry_base: float = 1.0
    webhook_retry_max: float = 300.0
    webhook_timeout: float = 10.0
    #: Clock for the signature's ``t=``: real ``wall`` time (default; what receivers' tolerance
    #: checks expect) or the ``emulator``'s global clock (for receivers on a moved clock).
    webhook_signature_clock: Literal["wall", "emulator"] = "wall"
    #: Seconds a renewal invoice stays draft after the period ends before it is finalized and
    #: paid (Stripe's default one hour; late usage with a timestamp inside the period counts).
    finalization_grace: int = 3600
    #: Days between automatic payment retries after a failed renewal payment. After the last
    #: retry fails the subscription becomes ``dunning_final_status``.
    dunning_retry_days: tuple[int, ...] = (3, 5, 7)
    dunning_final_status: Literal["canceled", "unpaid", "past_due"] = "canceled"
    #: What a charge does for a customer without a default payment method: ``fail`` as on
    #: Stripe (``invoice.payment_failed``, the subscription ``past_due``), or ``succeed``.
    no_payment_method: Literal["succeed", "fail"] = "fail"
    #: ``invoice.upcoming`` is sent this many days before a renewal.
    upcoming_days: int = 7
    #: Idempotency results kept at most (oldest evicted first; Stripe keeps keys >= 24 h, this
    #: bounds memory in long benchmarks). Keys older than 24 h are pruned regardless.
    idempotency_max_keys: int = 100_000
    #: Lifetime of a v2 meter event session token, seconds.
    meter_event_session_ttl: int = 900
    #: When set, ``/_emulator`` endpoints require header ``X-Emulator-Token: <value>``.
    control_token: str | None = None
    #: Unix time the global clock starts at (it then runs, and moves only forward); ``None``:
    #: real time. A start in the past lets a test make a subscription whose period ends soon in
    #: real time, then advance the clock to real time and run a gateway on the wall clock.
    clock_start: float | None = None
    #: How often (real seconds) the scheduler closes periods that ended on the global clock.
    scheduler_interval: float = 0.5
    api_version: str = DEFAULT_API_VERSION
    #: Extra account-level defaults shown on invoices.
    account_name: str = "Novo Gateway (emulated)"
    extra: dict[str, str] = field(default_factory=dict)
