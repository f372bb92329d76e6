"""The `novo-gateway` command: thin Typer commands that call services."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import Annotated

import typer
import uvicorn

from novo_gateway.billing import demo
from novo_gateway.billing import operations as billing_ops
from novo_gateway.billing import setup as stripe_setup
from novo_gateway.billing.reconcile import SETTLE
from novo_gateway.billing.setup import SetupError, webhook_url_for
from novo_gateway.billing.stripe_client import StripeFailure, StripeRejected
from novo_gateway.config import Settings
from novo_gateway.jobs import handlers as job_handlers
from novo_gateway.logs import configure_logging
from novo_gateway.migrate import upgrade

app = typer.Typer(help="Novo Gateway: sell an API by usage.", no_args_is_help=True)
log = logging.getLogger("novo_gateway.cli")


def _settings() -> Settings:
    try:
        return Settings()
    except Exception as exc:  # pydantic's ValidationError names the variable; show only that
        typer.echo(f"Invalid configuration:\n{exc}", err=True)
        raise typer.Exit(code=2) from None


@app.command()
def migrate() -> None:
    """Apply the database migrations (SQLite file or DATABASE_URL)."""
    settings = _settings()
    configure_logging(settings.log_level)
    upgrade(settings)
    typer.echo("Database is up to date.")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (default: HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: PORT, 3000)")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default: WORKERS)")] = None,
) -> None:
    """Start the gateway in the foreground (migrates a SQLite database first)."""
    settings = _settings()
    configure_logging(settings.log_level)
    if settings.is_sqlite:
        upgrade(settings)
    bind_host, bind_port = host or settings.host, port or settings.port
    with contextlib.ExitStack() as stack:
        if not settings.stripe_secret_key:  # the offline demo: the Stripe emulator beside us
            try:
                stack.enter_context(demo.offline_stripe(settings, host=bind_host, port=bind_port))
            except (demo.DemoError, StripeFailure, StripeRejected, SetupError) as exc:
                typer.echo(f"The offline Stripe emulator could not start: {exc}", err=True)
                raise typer.Exit(code=1) from None
        uvicorn.run(
            "novo_gateway.app:create_served_app",
            factory=True,
            host=bind_host,
            port=bind_port,
            workers=workers or settings.workers,
            log_config=None,
            access_log=False,
            proxy_headers=False,
            server_header=False,
        )


# --- Usage reporting and reconciliation ------------------------------------------------------


def _stripe_settings() -> Settings:
    settings = _settings()
    configure_logging(settings.log_level)
    if not settings.stripe_secret_key:  # the offline demo's emulator, if `make run` runs it
        try:
            settings = demo.offline_settings(settings)
        except demo.DemoError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(code=2) from None
        typer.echo(f"Using the offline Stripe emulator at {settings.stripe_api_base}.", err=True)
    return settings


@app.command("report-usage")
def report_usage(
    max_seconds: Annotated[float, typer.Option(help="Give up after this long")] = 300.0,
) -> None:
    """Report every pending billable call to Stripe now; exit 0 when nothing is left."""
    settings = _stripe_settings()
    run, left, dead = asyncio.run(billing_ops.report_all(settings, max_seconds=max_seconds))
    typer.echo(
        f"Claimed {run.claimed_events} events into {run.reports_created} reports; "
        f"sent {run.sent}, retried {run.retried}, dead-lettered {run.dead}, "
        f"expired {run.expired}."
    )
    if dead:
        typer.echo(f"{dead} reports are dead-lettered: see `novo-gateway reports --status dead`.")
    if left:
        typer.echo(f"{left} reports or events are still pending.", err=True)
        raise typer.Exit(code=1)


@app.command()
def reports(
    status: Annotated[str, typer.Option(help="pending, sent, dead or expired")] = "dead",
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
) -> None:
    """List usage reports, dead-lettered ones by default, with Stripe's message."""
    settings = _settings()
    for line in asyncio.run(billing_ops.list_reports(settings, status=status, limit=limit)):
        typer.echo(line)


@app.command("retry-report")
def retry_report(
    report_id: Annotated[str, typer.Argument(help="A report id, or 'all' for every dead one")],
) -> None:
    """Send a dead-lettered report again on the next reporter run."""
    settings = _settings()
    count = asyncio.run(billing_ops.retry_dead(settings, report_id))
    typer.echo(f"{count} reports queued for another attempt.")


@app.command()
def reconcile(
    fix: Annotated[bool, typer.Option(help="Send positive drift to Stripe")] = False,
    settle_minutes: Annotated[
        float,
        typer.Option(
            min=0,
            help="Fix a drift only this long after the period's latest report was sent: "
            "Stripe's meter totals are eventually consistent",
        ),
    ] = SETTLE.total_seconds() / 60,
) -> None:
    """Compare each customer's reported units with Stripe's meter, for the current period.

    Exits 1 when a customer drifts (with --fix: when a drift was left because its latest
    reports are too recent to judge)."""
    settings = _stripe_settings()
    settle = timedelta(minutes=settle_minutes)
    lines, drifting = asyncio.run(billing_ops.reconcile(settings, fix=fix, settle=settle))
    for line in lines:
        typer.echo(line)
    if drifting:
        raise typer.Exit(code=1)


# --- Stripe set-up and the job runner ----------------------------------------------------------


@app.command("setup-stripe")
def setup_stripe(
    webhook_url: Annotated[
        str | None,
        typer.Option(help="Webhook endpoint URL (default: PUBLIC_URL + /webhooks/stripe)"),
    ] = None,
) -> None:
    """Create or find the Stripe meter, product, price, portal and webhook; print the settings."""
    settings = _stripe_settings()
    try:
        result = asyncio.run(
            stripe_setup.run_setup(settings, webhook_url=webhook_url_for(settings, webhook_url))
        )
    except (SetupError, StripeFailure, StripeRejected) as exc:
        typer.echo(f"Stripe set-up failed: {exc}", err=True)
        raise typer.Exit(code=1) from None
    for change in result.changed:
        typer.echo(f"created {change}", err=True)
    if not result.changed:
        typer.echo("Stripe is already set up; nothing was created.", err=True)
    for note in result.notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo("# Add these lines to .env:", err=True)
    for line in result.env_lines():
        typer.echo(line)


@app.command("run-jobs")
def run_jobs(
    once: Annotated[bool, typer.Option("--once", help="Run the jobs due now, then exit")] = False,
) -> None:
    """Run queued jobs (Stripe provisioning, ...); `serve` does this too."""
    settings = _settings()
    configure_logging(settings.log_level)
    summary = asyncio.run(job_handlers.run_jobs(settings, once=once))
    if once:
        typer.echo(f"{summary.succeeded} jobs done, {summary.failed} failed (retried later).")
        if summary.failed:
            raise typer.Exit(code=1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
