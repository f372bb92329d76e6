"""The `novo-gateway` command: thin Typer commands that call services."""

from __future__ import annotations

import logging
from typing import Annotated

import typer
import uvicorn

from novo_gateway.config import Settings
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
    uvicorn.run(
        "novo_gateway.app:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers or settings.workers,
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
    )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
