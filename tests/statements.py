"""Statements sent by the test's own code, never by the app's background workers.

A listener on the whole engine sees every task's statements: the key cache's revalidation, the
access policy's passes and the jobs runner poll the same engine, and caught that way they made
tests flaky. `own_statements` keeps only the statements of the task that entered it (and of the
tasks it starts inside the block, which inherit its context): a context variable marks them, and
SQLAlchemy runs the listener in the context of the task that awaits the statement.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

_OWNER: ContextVar[object | None] = ContextVar("novo_test_statements_owner", default=None)


@contextmanager
def own_statements(engine: AsyncEngine, on_statement: Callable[[str], None]) -> Iterator[None]:
    """Call `on_statement(sql)` before each statement this task sends through `engine`."""
    owner = object()
    token = _OWNER.set(owner)

    def listener(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if _OWNER.get() is owner:
            on_statement(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", listener)
    try:
        yield
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", listener)
        _OWNER.reset(token)
