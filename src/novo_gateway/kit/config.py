"""Settings: one class, read from the environment (and `.env`), validated at start-up.

The variable names of the original product are kept (PORT, DATABASE_PATH, RATE_LIMIT_PER_MINUTE,
USAGE_REPORTING_INTERVAL in milliseconds, COST_PER_CALL, FREE_TIER_CALLS, STRIPE_*).
"""

from __future__ import annotations

import ipaddress
import re
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# The databases the gateway runs on: PostgreSQL (asyncpg), or SQLite (aiosqlite).
DATABASE_SCHEMES: Final = (
    "postgres://",
    "postgresql://",
    "postgresql+asyncpg://",
    "sqlite+aiosqlite://",
)
# Settings whose values are never printed, not even in an error about them (URLs can hold
# passwords).
SECRET_SETTINGS: Final = frozenset(
    {
        "admin_token",
        "metrics_token",
        "stripe_secret_key",
        "stripe_webhook_secret",
        "database_url",
        "redis_url",
    }
)


class Settings(BaseSettings):
    """Every setting of the gateway; see `.env.example` for the documented defaults."""

    # hide_input_in_errors: a ValidationError's text never holds a value (secrets included);
    # `error_lines` shows the values of settings that are not secret.
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,
    )

    # Serving
    host: str = "127.0.0.1"
    port: int = Field(default=3000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    # Slow and greedy clients (connection_guard.py), per worker process.
    header_timeout_seconds: float = Field(default=10.0, gt=0, le=3600)
    body_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    max_connections: int = Field(default=1000, ge=1)
    max_connections_per_ip: int = Field(default=256, ge=1)
    public_url: str = ""

    # Storage
    database_path: Path = Path("./data/billing.db")
    database_url: str = ""
    redis_url: str = ""

    # Rate limits and access
    rate_limit_per_minute: int = Field(default=100, ge=1)
    global_rate_limit_multiplier: int = Field(default=10, ge=1)
    account_rate_limit_per_minute: int = Field(default=120, ge=1)
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    rate_limit_fail_open: bool = False
    # Prefix of the rate-limit keys in Redis (one per deployment sharing a Redis).
    rate_limit_key_prefix: str = Field(default="novo", min_length=1, max_length=64)
    login_max_failures: int = Field(default=5, ge=1)
    login_lockout_seconds: int = Field(default=300, ge=1)
    session_ttl_seconds: int = Field(default=3600, ge=60)
    key_revalidate_ms: int = Field(default=500, ge=50, le=1000)

    # Metering and pricing
    billable_status_max: int = Field(default=399, ge=100, le=599)
    usage_reporting_interval: int = Field(default=60_000, ge=100)
    reporter_lease_seconds: float = Field(default=30.0, ge=1)
    reporter_max_backoff_seconds: float = Field(default=600.0, gt=0)
    cost_per_call: Decimal = Field(default=Decimal("0.001"), ge=0)
    free_tier_calls: int = Field(default=1000, ge=0)
    # Bounds on an account's usage reads (metering/reads.py).
    usage_read_timeout_seconds: float = Field(default=10.0, gt=0, le=600)
    usage_reads_per_account: int = Field(default=2, ge=1)

    # Idempotency-Key (gateway/idempotency.py): the largest answer kept for replay; how long a
    # retry waits for its request still running (then 409); how long a claim outlives a holder
    # that stopped renewing it (a crashed process), after which a retry runs the request.
    idempotency_max_answer_bytes: int = Field(default=65_536, ge=0, le=16_777_216)
    idempotency_wait_seconds: float = Field(default=10.0, ge=0, le=300)
    idempotency_lock_seconds: float = Field(default=60.0, ge=3, le=3600)

    # Upstream
    upstream_url: str = ""
    routes_file: Path | None = None
    upstream_timeout_seconds: float = Field(default=30.0, gt=0)

    # Stripe
    stripe_secret_key: str = ""
    stripe_webhook_secret: Annotated[list[str], NoDecode] = Field(default_factory=list)
    stripe_price_id: str = ""
    stripe_product_id: str = ""
    # The billing portal configuration `setup-stripe` made (empty: found by its metadata).
    stripe_portal_configuration_id: str = ""
    stripe_api_base: str = ""
    stripe_rate_limit_per_second: float = Field(default=20.0, gt=0)
    stripe_timeout_seconds: float = Field(default=20.0, gt=0)
    stripe_max_network_retries: int = Field(default=2, ge=0, le=10)
    stripe_past_due_grace_days: int = Field(default=3, ge=0)
    stripe_meter_event_name: str = Field(default="novo_api_calls", min_length=1, max_length=100)
    stripe_meter_api: Literal["v1", "v2"] = "v1"
    stripe_emulator_port: int = Field(default=12111, ge=1, le=65535)
    # Origins a billing portal session may return to (empty: PUBLIC_URL, else localhost:PORT).
    portal_return_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # Dashboards. The operator dashboard (/admin) is open only to holders of this token
    # (empty: /admin does not exist); at least 24 characters.
    admin_token: str = Field(default="", repr=False)
    # The host (name[:port]) that alone serves /dashboard, /admin and /docs, so that no
    # proxied answer shares their origin (empty: every host serves everything); host_split.py.
    dashboard_host: str = ""
    # Prometheus scrapes of /metrics must send `Authorization: Bearer <token>` when this is set
    # (empty: /metrics is open, so restrict it at the network); at least 24 characters.
    metrics_token: str = Field(default="", repr=False)

    # Password reset by email: on when SMTP_HOST is set (then SMTP_FROM and PUBLIC_URL, where the
    # emailed links point, are required). SMTP_SECURITY: "starttls" (587), "tls" (465) or "none".
    smtp_host: str = ""
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str = ""
    smtp_password: str = Field(default="", repr=False)
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_from: str = ""
    smtp_timeout_seconds: float = Field(default=10.0, gt=0)
    password_reset_ttl_seconds: int = Field(default=1800, ge=60, le=86_400)

    @field_validator(
        "trusted_proxies", "stripe_webhook_secret", "portal_return_origins", mode="before"
    )
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("routes_file", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("dashboard_host")
    @classmethod
    def _host_name(cls, value: str) -> str:
        host = value.strip().lower().rstrip(".")
        if host and not re.fullmatch(r"([a-z0-9.-]+|\[[0-9a-f:.]+\])(:[0-9]{1,5})?", host):
            raise ValueError("must be a host name with an optional :port (no scheme or path)")
        return host

    @field_validator("admin_token", "metrics_token")
    @classmethod
    def _long_enough(cls, value: str) -> str:
        if value and len(value) < 24:
            raise ValueError("must be empty or at least 24 characters (a random secret)")
        return value

    @field_validator("smtp_from")
    @classmethod
    def _needed_with_smtp(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("smtp_host"):
            if not value:
                raise ValueError("must be set when SMTP_HOST is set (the sender of reset emails)")
            if not info.data.get("public_url"):
                raise ValueError(
                    "needs PUBLIC_URL when SMTP_HOST is set (reset links point there, never to "
                    "a Host header)"
                )
        return value

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        if value and not value.startswith(DATABASE_SCHEMES):
            raise ValueError(
                "must be a postgresql:// URL (or empty for the SQLite file at DATABASE_PATH)"
            )
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _ip_or_cidr(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or CIDR") from None
        return value

    @cached_property
    def global_rate_limit_per_minute(self) -> int:
        """The per-client-IP limit: ten times the per-account limit by default."""
        return self.rate_limit_per_minute * self.global_rate_limit_multiplier

    @cached_property
    def sqlalchemy_url(self) -> str:
        """The async database URL: DATABASE_URL when set, else the SQLite file at DATABASE_PATH."""
        url = self.database_url
        if not url:
            return f"sqlite+aiosqlite:///{self.database_path}"
        for prefix in ("postgres://", "postgresql://"):
            if url.startswith(prefix):
                return "postgresql+asyncpg://" + url.removeprefix(prefix)
        return url

    @property
    def password_reset_enabled(self) -> bool:
        """True when the gateway can email password reset links (SMTP_HOST is set)."""
        return bool(self.smtp_host)

    @property
    def is_sqlite(self) -> bool:
        return self.sqlalchemy_url.startswith("sqlite")


def error_lines(exc: ValidationError) -> list[str]:
    """One line per bad setting, naming its variable; the value only when it is not a secret."""
    lines = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else ""
        message = error["msg"].removeprefix("Value error, ")
        shown = ""
        if name and name not in SECRET_SETTINGS and isinstance(error.get("input"), str | int):
            value = str(error["input"])
            shown = f" (got {value[:60]!r}{'...' if len(value) > 60 else ''})"
        lines.append(f"{name.upper() or 'Settings'}: {message}{shown}.")
    return lines
