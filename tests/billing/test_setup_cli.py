"""The `setup-stripe` and `run-jobs` commands, run through the CLI against the emulator."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from typer.testing import CliRunner

from novo_gateway.accounts import service
from novo_gateway.accounts.models import User
from novo_gateway.cli import app
from novo_gateway.jobs.models import Job
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import create_engine, create_session_factory, session_scope
from tests.billing.conftest import Emulator

PASSWORD = "correct horse battery staple"


def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment the command reads its settings from (no `.env` in the tests' cwd)."""
    env = {
        "STRIPE_SECRET_KEY": settings.stripe_secret_key,
        "STRIPE_API_BASE": settings.stripe_api_base,
        "STRIPE_MAX_NETWORK_RETRIES": "0",
        "DATABASE_PATH": str(settings.database_path),
        "DATABASE_URL": settings.database_url,
        "PUBLIC_URL": "",
        "LOG_LEVEL": "warning",
    }
    return {**env, **extra}


def run(args: list[str], env: dict[str, str]) -> Any:
    """Invoke the CLI; the logging set-up it makes is undone afterwards (it replaces the root
    logger's handlers, which would otherwise point at the runner's closed stderr)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        return CliRunner().invoke(app, args, env=env)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def test_setup_stripe_prints_the_settings_and_a_second_run_creates_nothing(
    stripe_settings: Settings, emulator: Emulator
) -> None:
    env = cli_env(stripe_settings, PUBLIC_URL="https://gateway.example.com")

    first = run(["setup-stripe"], env)
    assert first.exit_code == 0, first.output
    lines = dict(line.split("=", 1) for line in first.stdout.splitlines() if "=" in line)
    assert lines["STRIPE_PRODUCT_ID"] == "prod_novo_api"
    assert lines["STRIPE_PRICE_ID"].startswith("price_")
    assert lines["STRIPE_WEBHOOK_SECRET"].startswith("whsec_")
    endpoints = emulator.http.get(
        "/v1/webhook_endpoints", headers={"Authorization": "Bearer sk_test_emulator"}
    ).json()["data"]
    assert [e["url"] for e in endpoints] == ["https://gateway.example.com/webhooks/stripe"]
    counts = emulator.state(meter_events="false")["counts"]

    second = run(["setup-stripe"], env)
    assert second.exit_code == 0, second.output
    assert "nothing was created" in second.stderr
    assert f"STRIPE_PRICE_ID={lines['STRIPE_PRICE_ID']}" in second.stdout
    assert "STRIPE_WEBHOOK_SECRET" not in second.stdout
    assert emulator.state(meter_events="false")["counts"] == counts


def test_setup_stripe_takes_the_webhook_url_as_an_option(
    stripe_settings: Settings, emulator: Emulator
) -> None:
    url = "https://hooks.example.com/webhooks/stripe"
    result = run(["setup-stripe", "--webhook-url", url], cli_env(stripe_settings))
    assert result.exit_code == 0, result.output
    auth = {"Authorization": "Bearer sk_test_emulator"}
    endpoints = emulator.http.get("/v1/webhook_endpoints", headers=auth).json()["data"]
    assert [e["url"] for e in endpoints] == [url]
    assert "v1.billing.meter.error_report_triggered" not in endpoints[0]["enabled_events"]
    destinations = emulator.http.get(
        "/v2/core/event_destinations",
        params={"include[0]": "webhook_endpoint.url"},
        headers=auth,
    ).json()["data"]
    assert [(d["webhook_endpoint"]["url"], d["event_payload"]) for d in destinations] == [
        (url, "thin")
    ]
    assert destinations[0]["enabled_events"] == [
        "v1.billing.meter.error_report_triggered",
        "v1.billing.meter.no_meter_found",
    ]
    lines = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    secrets = lines["STRIPE_WEBHOOK_SECRET"].split(",")
    assert len(secrets) == 2 and all(s.startswith("whsec_") for s in secrets)
    assert lines["STRIPE_PORTAL_CONFIGURATION_ID"].startswith("bpc_")


def test_setup_stripe_without_a_secret_key_says_so(stripe_settings: Settings) -> None:
    result = run(["setup-stripe"], cli_env(stripe_settings, STRIPE_SECRET_KEY=""))
    assert result.exit_code == 2
    assert "STRIPE_SECRET_KEY" in result.stderr


def test_setup_stripe_reports_a_stripe_outage_without_a_traceback(
    stripe_settings: Settings, emulator: Emulator
) -> None:
    emulator.fault("500", "/v1/billing/meters", method="GET", count=5)
    result = run(["setup-stripe"], cli_env(stripe_settings))
    assert result.exit_code == 1
    assert "Stripe set-up failed" in result.stderr
    assert "Traceback" not in result.output


async def _register_offline(settings: Settings) -> int:
    engine = create_engine(settings)
    try:
        async with session_scope(create_session_factory(engine)) as session:
            created = await service.register(
                session,
                email="ada@example.com",
                password=PASSWORD,
                name="Ada",
                now=datetime.now(UTC),
            )
            return created.user.id
    finally:
        await engine.dispose()


async def _state(settings: Settings, user_id: int) -> tuple[str, str]:
    engine = create_engine(settings)
    try:
        async with session_scope(create_session_factory(engine)) as session:
            user = await session.get_one(User, user_id)
            job = (await session.scalars(select(Job))).one()
            return user.subscription_status, job.status
    finally:
        await engine.dispose()


def test_run_jobs_once_provisions_accounts_registered_while_stripe_was_away(
    make_stripe_settings: Callable[..., Settings], emulator: Emulator
) -> None:
    settings = make_stripe_settings()
    assert run(["setup-stripe"], cli_env(settings)).exit_code == 0
    user_id = asyncio.run(_register_offline(settings))

    result = run(["run-jobs", "--once"], cli_env(settings))

    assert result.exit_code == 0, result.output
    assert "1 jobs done, 0 failed" in result.stdout
    assert asyncio.run(_state(settings, user_id)) == ("active", "done")


def test_run_jobs_once_exits_1_when_a_job_failed(
    make_stripe_settings: Callable[..., Settings], emulator: Emulator
) -> None:
    settings = make_stripe_settings()
    assert run(["setup-stripe"], cli_env(settings)).exit_code == 0
    user_id = asyncio.run(_register_offline(settings))
    emulator.fault("500", "/v1/customers", count=1)

    result = run(["run-jobs", "--once"], cli_env(settings))

    assert result.exit_code == 1
    assert "0 jobs done, 1 failed" in result.stdout
    assert asyncio.run(_state(settings, user_id)) == ("pending", "pending")
