"""The Stripe side of the suite: the emulator as its own process, its control endpoints, set-up."""

from __future__ import annotations

import subprocess
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from tests.adversarial.harness import (
    EMULATOR_KEY,
    PYTHON,
    free_port,
    gateway_env,
    wait_until,
)


class EmulatorProcess:
    """`python -m stripe_emulator` on a free port, with its control endpoints."""

    def __init__(self, *options: str) -> None:
        self.options = options  # more command-line options (`--clock-start`, ...)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = Path(tempfile.mkdtemp(prefix="novo-adv-stripe-")) / "emulator.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(base_url=self.url, timeout=30)

    def start(self) -> EmulatorProcess:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    PYTHON,
                    "-m",
                    "stripe_emulator",
                    "--port",
                    str(self.port),
                    "--webhook-max-attempts",
                    "1",
                    *self.options,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(self._up, 30, "the Stripe emulator to answer")
        return self

    def _up(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(self.log.read_text()[-2000:])
        try:
            return self.http.get("/_emulator/health").status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        self.http.close()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    # --- control endpoints -------------------------------------------------------------------

    def state(self, **params: str) -> dict[str, Any]:
        response = self.http.get("/_emulator/state", params=params)
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def totals(self) -> dict[str, int]:
        """Units Stripe holds per customer (all meters; the suite uses one)."""
        totals = self.state(meter_events="false")["totals"]
        return {
            customer: sum(int(float(v)) for v in meters.values())
            for customer, meters in totals.items()
        }

    def counted_identifiers(self) -> Counter[str]:
        """How often each meter event identifier was counted (must be once each)."""
        return Counter(
            e["identifier"]
            for e in self.state()["meter_events"]
            if e["error"] is None and not e["canceled"]
        )

    def fault(
        self, kind: str, path: str, *, method: str = "POST", count: int = 1, **extra: Any
    ) -> None:
        body = {"kind": kind, "path": path, "method": method, "count": count, **extra}
        self.http.post("/_emulator/faults", json=body).raise_for_status()

    def faults(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self.http.get("/_emulator/faults").json()["faults"]
        return data

    def clear_faults(self) -> None:
        self.http.delete("/_emulator/faults").raise_for_status()


def setup_stripe(emulator: EmulatorProcess, **settings: str) -> dict[str, str]:
    """`novo-gateway setup-stripe` against the emulator (with these gateway settings, such as
    the pricing); the NAME=value settings it prints."""
    env = gateway_env(
        STRIPE_SECRET_KEY=EMULATOR_KEY,
        STRIPE_API_BASE=emulator.url,
        DATABASE_PATH="unused.db",
        **settings,
    )
    result = subprocess.run(
        [PYTHON, "-m", "novo_gateway.cli", "setup-stripe"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    settings = dict(
        line.split("=", 1) for line in result.stdout.splitlines() if "=" in line and line[0] != "#"
    )
    assert "STRIPE_PRICE_ID" in settings, result.stdout + result.stderr
    return {
        "STRIPE_SECRET_KEY": EMULATOR_KEY,
        "STRIPE_API_BASE": emulator.url,
        **settings,
    }
