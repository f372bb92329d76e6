"""The offline demo: with no STRIPE_SECRET_KEY, `serve` runs the Stripe emulator beside the gateway.

`offline_stripe()` starts `python -m stripe_emulator` as a subprocess (or reuses an emulator that
already answers on STRIPE_EMULATOR_PORT), runs the Stripe set-up against it with the gateway's
own webhook URL, and exports the settings the gateway's workers need (STRIPE_SECRET_KEY,
STRIPE_API_BASE, STRIPE_PRICE_ID, STRIPE_PRODUCT_ID, STRIPE_WEBHOOK_SECRET) as environment
variables, which uvicorn's worker processes inherit. The emulator keeps its state in a file next
to the SQLite database, so accounts and their Stripe customers survive a restart together.
It is stopped when `serve` exits, also on SIGTERM.

While it runs, `serve` writes the emulator's address, key and set-up ids to `stripe-emulator.env`
in the same directory (mode 0600), and removes it on exit: the operator commands that talk to
Stripe (`setup-stripe`, `report-usage`, `reconcile`) read it when STRIPE_SECRET_KEY is not set,
so they reach the emulator that `make run` started (`offline_settings`).

The gateway never imports the emulator: it only runs it as a program.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO
from urllib.parse import urlsplit

import httpx

from novo_gateway.billing.setup import WEBHOOK_PATH, SetupResult, setup_stripe
from novo_gateway.billing.stripe_client import StripeBilling
from novo_gateway.kit.clock import Clock
from novo_gateway.kit.config import Settings

log = logging.getLogger("novo_gateway.offline_demo")

EMULATOR_KEY = "sk_test_emulator"
EMULATOR_HOST = "127.0.0.1"
HEALTH_PATH = "/_emulator/health"
START_TIMEOUT_SECONDS = 20.0
STOP_TIMEOUT_SECONDS = 10.0


class DemoError(Exception):
    """The offline demo cannot start; the message says why and what to do."""


@dataclass
class EmulatorProcess:
    """A running emulator: ours (`process` set, stopped by us) or one we found running."""

    url: str
    process: subprocess.Popen[bytes] | None
    log_path: Path | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def stop(self) -> None:
        """Stop the emulator if we started it (SIGTERM, then SIGKILL after a while)."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.info("Stripe emulator (pid %s) stopped", process.pid)


def _is_emulator(url: str) -> bool:
    try:
        response = httpx.get(url + HEALTH_PATH, timeout=1.0)
        return response.status_code == 200 and response.json().get("ok") is True
    except (httpx.HTTPError, ValueError, AttributeError):
        return False


def _port_in_use(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1.0):
        return True
    return False


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the emulator gets SIGTERM if `serve` dies without cleaning up (e.g. SIGKILL)."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _tail(path: Path | None, lines: int = 15) -> str:
    if path is None or not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def start_emulator(port: int, state_dir: Path) -> EmulatorProcess:
    """Start `python -m stripe_emulator` on `port`, or reuse an emulator already answering there."""
    url = f"http://{EMULATOR_HOST}:{port}"
    if _is_emulator(url):
        log.info("reusing the Stripe emulator already running at %s", url)
        return EmulatorProcess(url=url, process=None)
    if _port_in_use(EMULATOR_HOST, port):
        raise DemoError(
            f"Port {port} is in use by another program, not the Stripe emulator. Set "
            "STRIPE_EMULATOR_PORT to a free port, or STRIPE_SECRET_KEY to use Stripe itself."
        )
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir / "stripe-emulator.log"
    command = [
        sys.executable,
        "-m",
        "stripe_emulator",
        "--host",
        EMULATOR_HOST,
        "--port",
        str(port),
        "--state-file",
        str(state_dir / "stripe-emulator.json"),
    ]
    output: IO[bytes]
    with log_path.open("ab") as output:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            # Its own process group: a Ctrl-C in the terminal stops the gateway first, and we
            # stop the emulator after it (the gateway may still talk to Stripe while stopping).
            start_new_session=True,
            preexec_fn=_die_with_parent,  # runs before exec; `serve` has no threads yet
        )
    emulator = EmulatorProcess(url=url, process=process, log_path=log_path)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not _is_emulator(url):
        if process.poll() is not None or time.monotonic() > deadline:
            emulator.stop()
            raise DemoError(
                f"The Stripe emulator did not start on port {port}; its log ({log_path}):\n"
                + _tail(log_path)
            )
        time.sleep(0.1)
    return emulator


def _state_dir(settings: Settings) -> Path:
    return settings.database_path.parent if settings.is_sqlite else Path("./data")


OFFLINE_FILE = "stripe-emulator.env"
# What the operator commands need to reach the offline emulator: setting → its env name.
OFFLINE_SETTINGS = {
    field: field.upper()
    for field in (
        "stripe_secret_key",
        "stripe_api_base",
        "stripe_price_id",
        "stripe_product_id",
        "stripe_portal_configuration_id",
    )
}
NOT_RUNNING = (
    "STRIPE_SECRET_KEY is not set and the offline Stripe emulator is not running: start "
    "`make run` (or `novo-gateway serve`) in another terminal, or set STRIPE_SECRET_KEY."
)


def offline_file(settings: Settings) -> Path:
    return _state_dir(settings) / OFFLINE_FILE


def _write_offline_file(path: Path, env: dict[str, str]) -> None:
    """The emulator's settings for the CLI, readable by this user only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(f"{k}={env[k]}\n" for k in OFFLINE_SETTINGS.values() if k in env)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def offline_settings(settings: Settings) -> Settings:
    """`settings` pointed at the emulator `serve` is running (no STRIPE_SECRET_KEY given);
    DemoError (saying what to run) when none runs."""
    path = offline_file(settings)
    try:
        lines = path.read_text().splitlines()
    except OSError:
        raise DemoError(NOT_RUNNING) from None
    values = dict(line.split("=", 1) for line in lines if "=" in line)
    url = values.get("STRIPE_API_BASE", "")
    if not values.get("STRIPE_SECRET_KEY") or not url or not _is_emulator(url):
        raise DemoError(NOT_RUNNING)
    update = {"stripe_secret_key": values["STRIPE_SECRET_KEY"], "stripe_api_base": url}
    for field, name in OFFLINE_SETTINGS.items():
        if field not in update and values.get(name) and not getattr(settings, field):
            update[field] = values[name]  # what the settings give wins
    return settings.model_copy(update=update)


def webhook_url(host: str, port: int) -> str:
    """Where the emulator sends webhooks: the gateway on this machine."""
    reachable = EMULATOR_HOST if host in {"0.0.0.0", "::", "", "localhost"} else host  # noqa: S104
    if ":" in reachable:
        reachable = f"[{reachable}]"
    return f"http://{reachable}:{port}{WEBHOOK_PATH}"


def _is_local_gateway(url: str) -> bool:
    parsed = urlsplit(url)
    return parsed.hostname in {"127.0.0.1", "localhost", "::1"} and parsed.path == WEBHOOK_PATH


async def _set_up(settings: Settings, url: str) -> SetupResult:
    stripe = StripeBilling(settings, Clock())
    try:
        # Stripe shows an endpoint's signing secret only when it is created; the demo makes a
        # fresh endpoint each start so the gateway knows its secret, and drops those of earlier
        # runs on this machine (perhaps on another port) so nothing retries into the void.
        for old in await stripe.webhook_endpoints():
            if old.url == url or _is_local_gateway(old.url):
                await stripe.delete_webhook_endpoint(old.id)
        for destination in await stripe.event_destinations():
            if destination.url and (destination.url == url or _is_local_gateway(destination.url)):
                await stripe.delete_event_destination(destination.id)
        return await setup_stripe(stripe, settings, webhook_url=url)
    finally:
        await stripe.close()


def _exit_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


@contextlib.contextmanager
def offline_stripe(settings: Settings, *, host: str, port: int) -> Iterator[dict[str, str]]:
    """Run the emulator and set Stripe up on it for the duration of the block.

    Yields the environment variables it exported. SIGTERM ends the block (uvicorn re-raises
    the signal after its graceful shutdown), so the emulator is stopped either way.
    """
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    emulator = start_emulator(settings.stripe_emulator_port, _state_dir(settings))
    try:
        env = {"STRIPE_SECRET_KEY": EMULATOR_KEY, "STRIPE_API_BASE": emulator.url}
        local = settings.model_copy(
            update={"stripe_secret_key": EMULATOR_KEY, "stripe_api_base": emulator.url}
        )
        result = asyncio.run(_set_up(local, webhook_url(host, port)))
        env["STRIPE_PRICE_ID"] = result.price_id
        env["STRIPE_PRODUCT_ID"] = result.product_id
        env["STRIPE_PORTAL_CONFIGURATION_ID"] = result.portal_configuration_id
        if result.webhook_secrets:
            env["STRIPE_WEBHOOK_SECRET"] = ",".join(result.webhook_secrets)
        os.environ.update(env)
        _write_offline_file(offline_file(settings), env)
        pid = f" (pid {emulator.pid})" if emulator.pid else " (already running)"
        log.info(
            "offline demo: Stripe emulator at %s%s, price %s", emulator.url, pid, result.price_id
        )
        yield env
    finally:
        with contextlib.suppress(OSError):
            offline_file(settings).unlink()
        emulator.stop()
        signal.signal(signal.SIGTERM, previous)
