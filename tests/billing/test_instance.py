"""A reporter's lease holder is the same for a process and for the one that replaces it, and never
the same for two live processes; and reports of long-gone periods are pruned, the rest kept."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from novo_gateway.billing.instance import instance_name
from novo_gateway.billing.models import UsageReport, WorkerLease
from novo_gateway.billing.reporter import LEASE_NAME, REPORT_RETENTION
from novo_gateway.billing.stripe_client import StripeBilling
from novo_gateway.kit.clock import FrozenClock
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import session_scope
from tests.billing.conftest import Ledger

# A reporter process that takes the lease and dies without a word (as after SIGKILL or a power
# cut): nothing releases the lease, which stays held for its TTL.
_CRASHING_REPORTER = textwrap.dedent(
    """
    import asyncio, os, sys
    from novo_gateway.billing.reporter import UsageReporter
    from novo_gateway.billing.stripe_client import StripeBilling
    from novo_gateway.kit.clock import Clock
    from novo_gateway.kit.config import Settings

    async def main():
        settings = Settings(_env_file=None, database_url=sys.argv[1], database_path=sys.argv[2])
        reporter = UsageReporter(None, StripeBilling(settings, Clock()), settings, Clock())
        print(reporter._lease.holder, flush=True)
        os._exit(0)

    asyncio.run(main())
    """
)


def test_a_name_is_never_shared_by_two_live_holders_and_comes_back_after_one_ends(
    settings: Settings, tmp_path: Path
) -> None:
    first = instance_name(settings, directory=tmp_path)
    second = instance_name(settings, directory=tmp_path)
    assert first.holder != second.holder

    first.close()  # the process ended (the kernel drops its file lock however it ends)
    replacement = instance_name(settings, directory=tmp_path)

    assert replacement.holder == first.holder
    second.close()
    replacement.close()


def test_another_database_gets_other_names(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    def on(path: str) -> Settings:
        return make_settings(database_url="", database_path=tmp_path / path)

    one = instance_name(on("a.db"), directory=tmp_path)
    other = instance_name(on("b.db"), directory=tmp_path)
    assert one.holder.rsplit("/", 1)[0] != other.holder.rsplit("/", 1)[0]
    one.close()
    other.close()


async def test_a_restarted_reporter_takes_over_its_own_dead_lease_at_once(
    stripe_settings: Settings, ledger: Ledger, make_reporter: Callable[..., Any]
) -> None:
    crashed = subprocess.run(
        [
            sys.executable,
            "-c",
            _CRASHING_REPORTER,
            stripe_settings.database_url,
            str(stripe_settings.database_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    dead_holder = crashed.stdout.strip()
    # Its lease, as the dead process left it: held for the whole TTL.
    async with session_scope(ledger.sessions) as session:
        session.add(
            WorkerLease(
                name=LEASE_NAME,
                holder=dead_holder,
                expires_at=datetime.now(UTC) + timedelta(seconds=30),
            )
        )

    restarted = make_reporter()

    assert await restarted.run_once() is not None  # not after 30 s: now
    async with session_scope(ledger.sessions) as session:
        lease = await session.get_one(WorkerLease, LEASE_NAME)
        assert lease.holder == dead_holder
    await restarted.stop()


async def test_sent_reports_of_old_periods_are_pruned_and_every_other_report_kept(
    ledger: Ledger, stripe_billing: StripeBilling, make_reporter: Callable[..., Any]
) -> None:
    now = datetime(2027, 6, 1, tzinfo=UTC)
    user_id, _key, customer = await ledger.customer(stripe_billing, "old@example.com")
    old = now - REPORT_RETENTION - timedelta(days=1)
    recent = now - REPORT_RETENTION + timedelta(days=1)
    rows = {
        "old_sent": (old, "sent"),
        "old_pending": (old, "pending"),
        "old_dead": (old, "dead"),
        "old_expired": (old, "expired"),
        "recent_sent": (recent, "sent"),
    }
    async with session_scope(ledger.sessions) as session:
        session.add_all(
            UsageReport(
                id=report_id,
                user_id=user_id,
                stripe_customer_id=customer,
                period_start=period_start,
                window_start=period_start,
                window_end=period_start + timedelta(hours=1),
                event_timestamp=period_start,
                units=1,
                event_count=1,
                status=status,
                created_at=period_start,
            )
            for report_id, (period_start, status) in rows.items()
        )

    assert await make_reporter(FrozenClock(now)).prune() == 1

    async with session_scope(ledger.sessions) as session:
        kept = set((await session.scalars(select(UsageReport.id))).all())
    assert kept == set(rows) - {"old_sent"}
