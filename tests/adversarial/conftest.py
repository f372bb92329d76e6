"""The adversarial suite: attacks and faults on the running system, from outside.

It runs only with NOVO_ADVERSARIAL=1 (`make adversarial`), never in `make test`: it starts its own
PostgreSQL cluster and Redis server on free ports, the Stripe emulator as a process, and gateway
processes (`novo-gateway serve`), and it kills and restarts them. Traffic goes to 127.0.0.1 only,
every loop is bounded in count and time, and what it measured is written to
build/adversarial-figures.json (the README's "Reliability" figures come from there).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.adversarial.harness import (
    WEBHOOK_SECRET,
    Gateway,
    PrivatePostgres,
    PrivateRedis,
    gateway_env,
    migrate,
)
from tests.adversarial.stripe_side import EmulatorProcess, setup_stripe
from tests.adversarial.system import Figures

if os.environ.get("NOVO_ADVERSARIAL") != "1":
    collect_ignore_glob = ["test_*.py"]

# Limits high enough that the attacks, not the rate limiter, decide the answers (tests of the
# limits set their own).
GENEROUS_LIMITS = {
    "RATE_LIMIT_PER_MINUTE": "1000000",
    "ACCOUNT_RATE_LIMIT_PER_MINUTE": "1000000",
    "LOGIN_MAX_FAILURES": "1000000",
}


@pytest.fixture(scope="session")
def figures() -> Iterator[Figures]:
    recorded = Figures()
    yield recorded
    recorded.save()
    print("\nAdversarial figures (" + str(recorded.path) + "):")
    for line in recorded.lines():
        print("  " + line)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    server.start()
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def emulator() -> Iterator[EmulatorProcess]:
    process = EmulatorProcess().start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def stripe_env(emulator: EmulatorProcess) -> dict[str, str]:
    """STRIPE_* settings of a gateway on the emulator, after `setup-stripe` (meter, price)."""
    return setup_stripe(emulator)


@pytest.fixture
def stripe_faults(emulator: EmulatorProcess) -> Iterator[EmulatorProcess]:
    """The emulator, with every fault this test armed cleared afterwards."""
    emulator.clear_faults()
    yield emulator
    emulator.clear_faults()


class GatewayFactory:
    """Fresh databases and gateway processes (built, not started) on the suite's services."""

    def __init__(
        self,
        stripe_env: dict[str, str],
        postgres: PrivatePostgres,
        sqlite_template: Path,
        workdir: Path,
    ) -> None:
        self.stripe_env = stripe_env
        self.postgres = postgres
        self.sqlite_template = sqlite_template
        self.workdir = workdir

    def database(self, kind: str) -> dict[str, str]:
        """A fresh migrated database ("postgres" or "sqlite") as gateway settings."""
        name = f"adv_{uuid.uuid4().hex[:12]}"
        if kind == "postgres":
            return {"DATABASE_URL": self.postgres.create_database(name), "DATABASE_PATH": ""}
        path = self.workdir / f"{name}.db"
        shutil.copyfile(self.sqlite_template, path)
        return {"DATABASE_PATH": str(path), "DATABASE_URL": ""}

    def gateway(self, database: dict[str, str], **settings: Any) -> Gateway:
        env = gateway_env(
            **self.stripe_env,
            STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
            USAGE_REPORTING_INTERVAL="3600000",  # tests report when they choose, unless set
            # A gateway's reporter keeps its lease this long after each run: short, so that the
            # operator's report-usage a test runs beside it does not wait for the default 30 s.
            REPORTER_LEASE_SECONDS="2",
            **GENEROUS_LIMITS,
            **database,
        )
        env.update({k.upper(): str(v) for k, v in settings.items()})
        return Gateway(env=env, workdir=self.workdir / "gateways")


@pytest.fixture(scope="session")
def factory(
    stripe_env: dict[str, str],
    postgres: PrivatePostgres,
    tmp_path_factory: pytest.TempPathFactory,
) -> GatewayFactory:
    template = tmp_path_factory.mktemp("adv-template") / "template.db"
    migrate(database_path=str(template))
    return GatewayFactory(stripe_env, postgres, template, tmp_path_factory.mktemp("adv"))


@pytest.fixture
def make_gateway(factory: GatewayFactory) -> Iterator[Callable[..., Gateway]]:
    """Build (not start) gateway processes for this test; all stopped afterwards."""
    built: list[Gateway] = []

    def build(database: dict[str, str], **settings: Any) -> Gateway:
        gateway = factory.gateway(database, **settings)
        built.append(gateway)
        return gateway

    yield build
    for gateway in built:
        gateway.stop()
