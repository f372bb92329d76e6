"""The `novo-gateway` command: thin Typer commands that call services."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import sys
import time
from datetime import timedelta
from typing import Annotated, NoReturn

import typer
import uvicorn
from sqlalchemy.exc import SQLAlchemyError

from novo_gateway import __version__, background_jobs, offline_demo, startup_checks
from novo_gateway.billing import operations as billing_ops
from novo_gateway.billing import setup as stripe_setup
from novo_gateway.billing.models import ReportStatus
from novo_gateway.billing.reconcile import SETTLE
from novo_gateway.billing.setup import SetupError, webhook_url_for
from novo_gateway.billing.stripe_client import StripeFailure, StripeRejected
from novo_gateway.connection_guard import guarded_protocol
from novo_gateway.kit import metrics
from novo_gateway.kit.config import Settings
from novo_gateway.kit.logs import configure_logging
from novo_gateway.migrate import database_revision, head_revision, schema_state

app = typer.Typer(
    help="Novo Gateway: sell an API by usage.",
    no_args_is_help=True,
    rich_markup_mode="markdown",  # paragraphs reflow to the terminal's width
)
log = logging.getLogger("novo_gateway.cli")


class _Progress:
    """A running count on stderr while a long command works: one line rewritten in place on a
    terminal, else (a log, a pipe) a line a second at most."""

    def __init__(self, command: str) -> None:
        self._prefix = f"{command}: "
        self._tty = sys.stderr.isatty()
        self._last = -math.inf
        self._shown = False

    def __call__(self, text: str) -> None:
        if self._tty:
            sys.stderr.write(f"\r\033[K{self._prefix}{text}")
            sys.stderr.flush()
            self._shown = True
        elif time.monotonic() - self._last >= 1.0:
            self._last = time.monotonic()
            typer.echo(self._prefix + text, err=True)

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *_: object) -> None:
        if self._shown:  # end the rewritten line before the command's own output
            sys.stderr.write("\n")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"novo-gateway {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit"
        ),
    ] = False,
) -> None:
    """Novo Gateway: sell an API by usage."""


def _settings() -> Settings:
    try:
        return startup_checks.load_settings()
    except startup_checks.ConfigError as exc:
        _refuse(exc)


def _refuse(exc: startup_checks.ConfigError) -> NoReturn:
    """Print each problem on one line (no traceback) and exit 2."""
    for line in exc.lines:
        typer.echo(line, err=True)
    raise typer.Exit(code=2)


@app.command()
def migrate() -> None:
    """Apply the database migrations (SQLite file or DATABASE_URL)."""
    settings = _settings()
    configure_logging(settings.log_level)
    try:
        applied = startup_checks.migrate(settings)
    except startup_checks.ConfigError as exc:
        _refuse(exc)
    for revision in applied:
        typer.echo(f"applied {revision}")
    typer.echo(
        f"Database is at {head_revision()}: {len(applied)} migrations applied."
        if applied
        else f"Database is up to date (at {head_revision()}); nothing to apply."
    )


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (default: HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: PORT, 3000)")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default: WORKERS)")] = None,
) -> None:
    """Start the gateway in the foreground (migrates a SQLite database first)."""
    settings = _settings()
    configure_logging(settings.log_level)
    try:  # before anything starts (the Stripe emulator, the workers)
        startup_checks.check_upstreams(settings)
        if settings.is_sqlite:
            startup_checks.migrate(settings)
    except startup_checks.ConfigError as exc:
        _refuse(exc)
    if not settings.is_sqlite:
        _require_schema_at_head(settings)
    bind_host, bind_port = host or settings.host, port or settings.port
    worker_count = workers or settings.workers
    with contextlib.ExitStack() as stack:
        if worker_count > 1:  # one /metrics view over every worker
            stack.enter_context(metrics.multiprocess_directory())
        if not settings.stripe_secret_key:  # the offline demo: the Stripe emulator beside us
            try:
                stack.enter_context(
                    offline_demo.offline_stripe(settings, host=bind_host, port=bind_port)
                )
            except (offline_demo.DemoError, StripeFailure, StripeRejected, SetupError) as exc:
                typer.echo(f"The offline Stripe emulator could not start: {exc}", err=True)
                raise typer.Exit(code=1) from None
        uvicorn.run(
            "novo_gateway.app:create_served_app",
            factory=True,
            host=bind_host,
            port=bind_port,
            workers=worker_count,
            log_config=None,
            access_log=False,
            proxy_headers=False,
            server_header=False,
            # uvicorn's own protocol, with read deadlines and a per-IP cap (connection_guard.py).
            http=guarded_protocol(settings),
            limit_concurrency=settings.max_connections,
        )


def _require_schema_at_head(settings: Settings) -> None:
    """Stop before serving a database whose schema is not the one the code needs."""
    try:
        at = database_revision(settings)
    except (OSError, SQLAlchemyError) as exc:
        reason = type(exc).__name__
        typer.echo(f"DATABASE_URL: the database cannot be reached ({reason}).", err=True)
        raise typer.Exit(code=2) from None
    if schema_state(at) == "behind":
        state = "was never migrated" if at is None else f"is at revision {at}"
        typer.echo(
            f"The database {state}; this version needs {head_revision()}: "
            "run `novo-gateway migrate` first.",
            err=True,
        )
        raise typer.Exit(code=2)


# --- Usage reporting and reconciliation ------------------------------------------------------


def _stripe_settings() -> Settings:
    settings = _settings()
    configure_logging(settings.log_level)
    if not settings.stripe_secret_key:  # the offline demo's emulator, if `make run` runs it
        try:
            settings = offline_demo.offline_settings(settings)
        except offline_demo.DemoError as exc:
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
    with _Progress("report-usage") as progress:
        run, left, dead = asyncio.run(
            billing_ops.report_all(settings, max_seconds=max_seconds, progress=progress)
        )
    typer.echo(
        f"Claimed {run.claimed_events} events into {run.reports_created} reports; "
        f"sent {run.sent}, carried over {run.carried}, retried {run.retried}, "
        f"dead-lettered {run.dead}, "
        f"expired {run.expired}."
    )
    if dead:
        typer.echo(f"{dead} reports are dead-lettered: see `novo-gateway reports --status dead`.")
    if left:
        typer.echo(f"{left} reports or events are still pending.", err=True)
        raise typer.Exit(code=1)


@app.command()
def reports(
    status: Annotated[ReportStatus, typer.Option(help="Which reports to list")] = ReportStatus.DEAD,
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
    if count == 0 and report_id != "all":
        typer.echo(
            f"No dead-lettered report {report_id!r}: see `novo-gateway reports --status dead`.",
            err=True,
        )
        raise typer.Exit(code=2)
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
    """Compare each customer's ledger with Stripe's meter and invoices, period by period.

    --fix sends units Stripe's meter lost (open periods) and carries units reported but not
    invoiced (final invoices) over to the next invoice.

    Exits 1 when a customer drifts (with --fix: when a drift was left because its latest
    reports are too recent to judge)."""
    settings = _stripe_settings()
    settle = timedelta(minutes=settle_minutes)
    with _Progress("reconcile") as progress:
        lines, drifting = asyncio.run(
            billing_ops.reconcile(settings, fix=fix, settle=settle, progress=progress)
        )
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
    with _Progress("run-jobs") as progress:
        summary = asyncio.run(
            background_jobs.run_jobs(
                settings,
                once=once,
                progress=lambda s: progress(f"{s.succeeded} jobs done, {s.failed} failed"),
            )
        )
    if once:
        typer.echo(f"{summary.succeeded} jobs done, {summary.failed} failed (retried later).")
        if summary.failed:
            raise typer.Exit(code=1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
