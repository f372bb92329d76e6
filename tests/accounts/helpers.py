"""Helpers for the accounts and keys tests: registering over HTTP and counting SQL statements."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from novo_gateway.runtime import Runtime
from tests.conftest import AppClient
from tests.statements import own_statements

PASSWORD = "correct horse battery staple"


def runtime_of(client: AppClient) -> Runtime:
    runtime: Runtime = client.app.state.runtime
    return runtime


async def register(
    client: AppClient, email: str = "ada@example.com", password: str = PASSWORD, **extra: Any
) -> dict[str, Any]:
    """Register over HTTP and return the 201 body."""
    body = {"email": email, "password": password, "name": "Ada", **extra}
    response = await client.post("/auth/register", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def login(
    client: AppClient, email: str = "ada@example.com", password: str = PASSWORD
) -> dict[str, Any]:
    """Log in over HTTP and return the 200 body."""
    response = await client.post("/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@contextmanager
def count_statements(runtime: Runtime, table: str = "api_keys") -> Iterator[list[str]]:
    """Collect the SQL statements on `table` the test's own code sends while the block runs.

    Only the test's own (`tests/statements.py`): the app's background workers share the engine.
    The key cache's own revalidation passes (they read `changed_at`) are left out too.
    """
    statements: list[str] = []

    def keep(statement: str) -> None:
        if table in statement and "api_keys.changed_at" not in statement:
            statements.append(statement)

    with own_statements(runtime.engine, keep):
        yield statements
