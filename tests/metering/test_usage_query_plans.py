"""The usage views read a range of the `(user_id, created_at)` index, never the whole table."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event

from tests.conftest import AppClient
from tests.gateway.helpers import make_account, runtime_of

INDEX = "ix_usage_events_user_created"


async def test_usage_queries_use_the_account_and_time_index(client: AppClient) -> None:
    account = await make_account(client)
    engine = runtime_of(client).engine
    seen: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if "usage_events" in statement:
            seen.append((statement, params))

    event.listen(engine.sync_engine, "before_cursor_execute", capture)
    try:
        assert (await client.get("/billing/usage", headers=account.auth)).status_code == 200
        endpoints = await client.get("/billing/usage/endpoints", headers=account.auth)
        assert endpoints.status_code == 200
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", capture)
    assert len(seen) == 3  # period totals, days, endpoints

    postgres = engine.dialect.name == "postgresql"
    async with engine.connect() as conn:
        if postgres:
            # An empty table would be scanned whatever the indexes; ask what a big one would do.
            await conn.exec_driver_sql("SET enable_seqscan = off")
        for statement, params in seen:
            explain = "EXPLAIN " if postgres else "EXPLAIN QUERY PLAN "
            rows = (await conn.exec_driver_sql(explain + statement, params)).all()
            plan = "\n".join(str(row[-1]) for row in rows)
            assert INDEX in plan, plan
            assert "Seq Scan on usage_events" not in plan
            assert "SCAN usage_events" not in plan
