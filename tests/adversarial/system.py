"""Driving the running system from outside: accounts over HTTP, load, the ledger, the promises."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from novo_gateway.accounts.models import User
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import create_engine, create_session_factory
from novo_gateway.metering.models import UsageEvent
from tests.adversarial.harness import PASSWORD, PYTHON
from tests.adversarial.stripe_side import EmulatorProcess

FIGURES_PATH = (
    Path(os.environ.get("NOVO_ADVERSARIAL_FIGURES", Path(__file__).resolve().parents[2] / "build"))
    / "adversarial-figures.json"
)

_emails = itertools.count(1)


def unique_email(tag: str) -> str:
    return f"{tag}-{next(_emails)}-{uuid.uuid4().hex[:8]}@example.com"


@dataclass(frozen=True)
class Account:
    email: str
    user_id: int
    key: str
    key_id: int

    @property
    def auth(self) -> dict[str, str]:
        return {"X-API-Key": self.key}


async def register(
    client: httpx.AsyncClient, tag: str = "user", name: str | None = None
) -> Account:
    """A new account through `POST /auth/register`, as a customer makes one."""
    email = unique_email(tag)
    body: dict[str, Any] = {"email": email, "password": PASSWORD}
    if name is not None:
        body["name"] = name
    response = await client.post("/auth/register", json=body)
    assert response.status_code == 201, response.text
    data = response.json()
    account = Account(email, data["user"]["id"], data["apiKey"]["key"], data["apiKey"]["id"])
    if data["subscription"]["status"] == "pending":  # Stripe was slow: the job finishes it
        await _wait_provisioned(client, account)
    return account


async def _wait_provisioned(client: httpx.AsyncClient, account: Account) -> None:
    """Until the account's Stripe subscription exists (tests then stop the gateway freely)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while True:
        view = await client.get("/billing/subscription", headers=account.auth)
        if view.status_code == 200 and view.json().get("id"):
            return
        assert loop.time() < deadline, f"account {account.user_id} was never provisioned"
        await asyncio.sleep(0.1)


async def login_token(client: httpx.AsyncClient, account: Account) -> str:
    response = await client.post("/auth/login", json={"email": account.email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    token: str = response.json()["session"]["token"]
    return token


async def bounded_gather(jobs: list[Callable[[], Awaitable[Any]]], concurrency: int) -> list[Any]:
    """Run the jobs with at most `concurrency` in flight; results in order."""
    slots = asyncio.Semaphore(concurrency)

    async def one(job: Callable[[], Awaitable[Any]]) -> Any:
        async with slots:
            return await job()

    return await asyncio.gather(*(one(job) for job in jobs))


class Ledger:
    """Read-only access to a gateway's database, as an auditor would have it."""

    def __init__(self, database_url: str = "", database_path: str = "") -> None:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            database_url=database_url,
            database_path=Path(database_path or "unused.db"),
        )
        self.engine = create_engine(settings)
        self.sessions = create_session_factory(self.engine)

    async def close(self) -> None:
        await self.engine.dispose()

    async def billable_units_by_customer(self) -> dict[str, int]:
        """Σ units of billable ledger events, per Stripe customer."""
        async with self.sessions() as session:
            rows = await session.execute(
                select(User.stripe_customer_id, func.sum(UsageEvent.units))
                .join(User, User.id == UsageEvent.user_id)
                .where(UsageEvent.billable.is_(True))
                .group_by(User.stripe_customer_id)
            )
            return {str(customer): int(units) for customer, units in rows.all()}

    async def events(self, user_id: int | None = None) -> tuple[int, int]:
        """(events, billable events) in the ledger, for one account or all."""
        async with self.sessions() as session:
            stmt = select(
                func.count(UsageEvent.id),
                func.coalesce(func.sum(UsageEvent.units).filter(UsageEvent.billable.is_(True)), 0),
            )
            if user_id is not None:
                stmt = stmt.where(UsageEvent.user_id == user_id)
            total, billable = (await session.execute(stmt)).one()
            return int(total), int(billable)

    async def request_ids_twice(self) -> int:
        """Request ids recorded more than once (one call, one ledger event)."""
        async with self.sessions() as session:
            rows = await session.execute(
                select(UsageEvent.request_id)
                .where(UsageEvent.request_id.is_not(None))
                .group_by(UsageEvent.request_id)
                .having(func.count(UsageEvent.id) > 1)
            )
            return len(rows.all())

    async def by_request_id(self) -> dict[str, list[bool]]:
        """The ledger events of each request id: one `billable` flag per event."""
        async with self.sessions() as session:
            rows = await session.execute(
                select(UsageEvent.request_id, UsageEvent.billable).where(
                    UsageEvent.request_id.is_not(None)
                )
            )
            events: dict[str, list[bool]] = {}
            for request_id, billable in rows.all():
                events.setdefault(str(request_id), []).append(bool(billable))
            return events

    async def customer_of(self, user_id: int) -> str | None:
        async with self.sessions() as session:
            user = await session.get(User, user_id)
            return None if user is None else user.stripe_customer_id


def report_usage(env: dict[str, str], max_seconds: float = 60) -> subprocess.CompletedProcess[str]:
    """`novo-gateway report-usage`: drains every pending report (exit 0 when nothing is left)."""
    return subprocess.run(
        [PYTHON, "-m", "novo_gateway.cli", "report-usage", "--max-seconds", str(max_seconds)],
        env=env,
        capture_output=True,
        text=True,
        timeout=max_seconds + 60,
        check=False,
    )


async def assert_billed_exactly(
    ledger: Ledger, emulator: EmulatorProcess, customers: list[str]
) -> int:
    """Σ billable ledger units == Σ Stripe units for each customer, no identifier twice.

    Returns the units compared. Only the given customers are compared: other tests' customers
    share the emulator.
    """
    owed = await ledger.billable_units_by_customer()
    held = emulator.totals()
    mismatched = {
        c: (owed.get(c, 0), held.get(c, 0)) for c in customers if owed.get(c, 0) != held.get(c, 0)
    }
    if mismatched:
        events = [e for e in emulator.state()["meter_events"] if e.get("customer") in mismatched]
        raise AssertionError(
            f"ledger vs Stripe (units owed, units held): {mismatched}; "
            f"Stripe's meter events for them: {events[:10]}"
        )
    twice = [i for i, n in emulator.counted_identifiers().items() if n > 1]
    assert twice == [], f"meter event identifiers counted twice: {twice[:5]}"
    return sum(owed.get(c, 0) for c in customers)


class Figures:
    """What the suite measured, kept in one JSON file for the README's Reliability section."""

    def __init__(self, path: Path = FIGURES_PATH) -> None:
        self.path = path
        self.data: dict[str, dict[str, Any]] = {}

    def add(self, part: str, **values: Any) -> None:
        section = self.data.setdefault(part, {})
        for name, value in values.items():
            if isinstance(value, int | float) and isinstance(section.get(name), int | float):
                section[name] += value
            else:
                section[name] = value

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data, indent=2, sort_keys=True) + "\n")

    def lines(self) -> list[str]:
        return [
            f"{part}: " + ", ".join(f"{k}={v}" for k, v in sorted(values.items()))
            for part, values in sorted(self.data.items())
        ]


async def audit_calls(ledger: Ledger, sent: list[tuple[str, Answer]]) -> dict[str, int]:
    """Each call against the ledger, by the request id it sent (X-Request-Id).

    A 2xx the client saw has exactly one billable event; a refusal (4xx, 503) has none; a call
    whose answer was lost (the process died) has at most one. Returns counts for the figures.
    """
    events = await ledger.by_request_id()
    lost: list[str] = []
    doubled: list[str] = []
    billed_refused: list[str] = []
    unanswered_billed = 0
    for request_id, answer in sent:
        flags = events.get(request_id, [])
        if len(flags) > 1:
            doubled.append(request_id)
        if 200 <= answer.status < 300 and flags != [True]:
            lost.append(request_id)
        elif answer.status >= 400 and any(flags):
            billed_refused.append(request_id)
        elif answer.status == 0 and any(flags):
            unanswered_billed += 1
    assert doubled == [], f"{len(doubled)} calls recorded twice, e.g. {doubled[:3]}"
    assert lost == [], f"{len(lost)} answered calls not billed exactly once, e.g. {lost[:3]}"
    assert billed_refused == [], f"{len(billed_refused)} refused calls billed"
    return {
        "calls": len(sent),
        "answered_2xx": sum(1 for _, a in sent if 200 <= a.status < 300),
        "refused": sum(1 for _, a in sent if a.status >= 400),
        "unanswered": sum(1 for _, a in sent if a.status == 0),
        "unanswered_but_billed": unanswered_billed,
    }


def statuses(responses: list[httpx.Response | BaseException]) -> Counter[int | str]:
    """Status codes of the responses, and exception names for requests that got none."""
    counts: Counter[int | str] = Counter()
    for response in responses:
        if isinstance(response, httpx.Response):
            counts[response.status_code] += 1
        else:
            counts[type(response).__name__] += 1
    return counts


@dataclass(frozen=True)
class Answer:
    """One answer of `blast`: the status (0 when the connection failed) and the body."""

    status: int
    body: bytes = b""
    error: str = ""

    def json(self) -> Any:
        return json.loads(self.body)


def request_bytes(
    method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> bytes:
    """An HTTP/1.1 keep-alive request, as bytes."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def blast(
    port: int,
    requests: list[bytes],
    *,
    connections: int = 32,
    deadline: float = 120.0,
    on_progress: Callable[[int], Awaitable[None]] | None = None,
) -> list[Answer]:
    """Send every request over `connections` keep-alive connections; one answer each, in order.

    A light client (plain asyncio streams, no parsing beyond the status and Content-Length), so
    the load generator does not take the CPU the gateways need. A request whose connection
    breaks after it was sent (the gateway was killed) gets `Answer(0, error=...)`; nothing is
    retried. A connection that cannot be opened (the gateway is restarting) is retried until it
    opens. Stops at `deadline` seconds, leaving the rest unanswered (status 0).
    """
    answers: list[Answer | None] = [None] * len(requests)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(len(requests)):
        queue.put_nowait(index)
    loop = asyncio.get_running_loop()
    ends_at = loop.time() + deadline
    done = 0

    async def worker() -> None:
        nonlocal done
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        while not queue.empty() and loop.time() < ends_at:
            index = queue.get_nowait()
            while writer is None and loop.time() < ends_at:
                try:  # a gateway being restarted: wait for it rather than fail the request
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    await asyncio.sleep(0.1)
            try:
                assert reader is not None and writer is not None
                writer.write(requests[index])
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
                status = int(head[9:12])
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                body = await reader.readexactly(length) if length else b""
                answers[index] = Answer(status, body)
            except (
                OSError,
                AssertionError,
                asyncio.IncompleteReadError,
                TimeoutError,
                ValueError,
            ) as exc:
                answers[index] = Answer(0, error=type(exc).__name__)
                if writer is not None:
                    writer.close()
                reader = writer = None
                await asyncio.sleep(0.05)
            done += 1
            if on_progress is not None:
                await on_progress(done)
        if writer is not None:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return [a or Answer(0, error="not sent") for a in answers]
