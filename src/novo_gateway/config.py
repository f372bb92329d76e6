"""Settings: one class, read from the environment (and `.env`), validated at start-up.

The variable names of the original product are kept (PORT, DATABASE_PATH, RATE_LIMIT_PER_MINUTE,
USAGE_REPORTING_INTERVAL in milliseconds, COST_PER_CALL, FREE_TIER_CALLS, STRIPE_*).
"""

from __future__ import annotations

import ipaddress
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    """Every setting of the gateway; see `.env.example` for the documented defaults."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    # Serving
    host: str = "127.0.0.1"
    port: int = Field(default=3000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
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
    # Prometheus scrapes of /metrics must send `Authorization: Bearer <token>` when this is set
    # (empty: /metrics is open, so restrict it at the network); at least 24 characters.
    metrics_token: str = Field(default="", repr=False)

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

    @field_validator("admin_token", "metrics_token")
    @classmethod
    def _long_enough(cls, value: str) -> str:
        if value and len(value) < 24:
            raise ValueError("must be empty or at least 24 characters (a random secret)")
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
    def is_sqlite(self) -> bool:
        return self.sqlalchemy_url.startswith("sqlite")
