"""POST /auth/register: the contract's response, input checks, one transaction, duplicates."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select

from novo_gateway.accounts import service
from novo_gateway.accounts.models import User
from novo_gateway.jobs.models import Job
from novo_gateway.keys import tokens
from novo_gateway.keys.models import ApiKey
from novo_gateway.kit.db import session_scope
from novo_gateway.kit.errors import Conflict
from novo_gateway.runtime import Runtime
from tests.accounts.helpers import PASSWORD, register, runtime_of
from tests.conftest import AppClient
from tests.statements import own_statements

NOTE = "Save this API key securely. It will not be shown again."


async def _counts(runtime: Runtime) -> tuple[int, int, int]:
    async with session_scope(runtime.sessions) as session:
        users = await session.scalar(select(func.count(User.id)))
        keys = await session.scalar(select(func.count(ApiKey.id)))
        jobs = await session.scalar(select(func.count(Job.id)))
    return int(users or 0), int(keys or 0), int(jobs or 0)


async def test_register_returns_user_key_and_pending_subscription(client: AppClient) -> None:
    response = await client.post(
        "/auth/register", json={"email": "ada@example.com", "password": PASSWORD, "name": "Ada"}
    )
    assert response.status_code == 201
    body = response.json()
    assert body["message"] == "User registered successfully"
    assert body["user"] == {"id": body["user"]["id"], "email": "ada@example.com", "name": "Ada"}
    api_key = body["apiKey"]
    assert {"id", "key", "name", "note"} <= api_key.keys()
    assert api_key["name"] == "Default"
    assert api_key["note"] == NOTE
    assert tokens.is_well_formed(api_key["key"])
    assert body["subscription"]["status"] == "pending"  # until Stripe provisioning is done


async def test_register_writes_user_key_and_provisioning_job(client: AppClient) -> None:
    body = await register(client)
    async with session_scope(runtime_of(client).sessions) as session:
        user = await session.get_one(User, body["user"]["id"])
        key = await session.get_one(ApiKey, body["apiKey"]["id"])
        jobs = list((await session.scalars(select(Job))).all())
    assert user.password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert key.user_id == user.id
    assert key.key_hash == tokens.hash_key(body["apiKey"]["key"])
    assert key.prefix == body["apiKey"]["key"][: tokens.DISPLAY_PREFIX_LEN]
    assert [(job.kind, job.payload, job.status) for job in jobs] == [
        ("provision_customer", {"user_id": user.id}, "pending")
    ]


async def test_registered_key_authenticates_at_once(client: AppClient) -> None:
    body = await register(client)
    response = await client.get("/auth/api-keys", headers={"X-API-Key": body["apiKey"]["key"]})
    assert response.status_code == 200


async def test_register_normalises_the_email(client: AppClient) -> None:
    body = await register(client, email="  Ada.Lovelace@Example.COM ")
    assert body["user"]["email"] == "ada.lovelace@example.com"


async def test_register_without_a_name_uses_the_email_local_part(client: AppClient) -> None:
    response = await client.post(
        "/auth/register", json={"email": "grace@example.com", "password": PASSWORD}
    )
    assert response.status_code == 201
    assert response.json()["user"]["name"] == "grace"


async def test_register_trims_the_name(client: AppClient) -> None:
    body = await register(client, name="  Ada Lovelace  ")
    assert body["user"]["name"] == "Ada Lovelace"


GOOD: dict[str, Any] = {"email": "ada@example.com", "password": PASSWORD, "name": "Ada"}


def _without(field: str) -> dict[str, Any]:
    return {k: v for k, v in GOOD.items() if k != field}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_without("email"), "email"),
        (_without("password"), "password"),
        ({**GOOD, "email": None}, "email"),
        ({**GOOD, "email": "not-an-email"}, "email"),
        ({**GOOD, "email": "ada@"}, "email"),
        ({**GOOD, "email": "a" * 300 + "@example.com"}, "email"),
        ({**GOOD, "email": 42}, "email"),
        ({**GOOD, "password": "seven77"}, "password"),
        ({**GOOD, "password": "p" * 1025}, "password"),
        ({**GOOD, "password": 12345678}, "password"),
        ({**GOOD, "password": ["correct horse"]}, "password"),
        ({**GOOD, "name": ""}, "name"),
        ({**GOOD, "name": "   "}, "name"),
        ({**GOOD, "name": "n" * 201}, "name"),
        ({**GOOD, "name": {"first": "Ada"}}, "name"),
        ({**GOOD, "isAdmin": True}, "isAdmin"),
        ({**GOOD, "id": 1}, "id"),
        ({**GOOD, "subscriptionStatus": "active"}, "subscriptionStatus"),
    ],
)
async def test_register_rejects_bad_input_naming_the_field(
    client: AppClient, body: dict[str, Any], field: str
) -> None:
    response = await client.post("/auth/register", json=body)
    assert response.status_code == 400
    error = response.json()
    assert error["error"] == "Bad Request"
    assert f"'{field}'" in error["message"]
    assert await _counts(runtime_of(client)) == (0, 0, 0)


async def test_register_accepts_the_longest_password(client: AppClient) -> None:
    await register(client, password="p" * 1024)


@pytest.mark.parametrize(
    "content", [b'{"email": "ada@example.com", ', b"", b"[1, 2]", b'"ada"', b"null"]
)
async def test_register_rejects_a_body_that_is_not_a_json_object(
    client: AppClient, content: bytes
) -> None:
    response = await client.post(
        "/auth/register", content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"] == "Bad Request"


async def test_register_twice_with_one_email_is_409(client: AppClient) -> None:
    await register(client)
    response = await client.post("/auth/register", json=GOOD)
    assert response.status_code == 409
    assert response.json() == {
        "error": "Conflict",
        "message": "An account with this email already exists. Log in instead.",
    }
    assert await _counts(runtime_of(client)) == (1, 1, 1)


async def test_register_with_a_differently_cased_email_is_409(client: AppClient) -> None:
    await register(client, email="ada@example.com")
    response = await client.post("/auth/register", json={**GOOD, "email": " ADA@Example.com"})
    assert response.status_code == 409


async def test_register_race_on_one_email_ends_in_conflict_not_an_error(client: AppClient) -> None:
    """The second registration passes the existence check before the first commits; the unique
    constraint then refuses its insert, which must come out as a Conflict."""
    runtime = runtime_of(client)
    email = "race@example.com"
    checks: list[str] = []

    checked = asyncio.Event()

    def on_execute(statement: str) -> None:
        if statement.lstrip().startswith("SELECT") and "users.email =" in statement:
            checks.append(statement)
            checked.set()

    async def second_registration() -> None:
        async with session_scope(runtime.sessions) as session:
            await service.register(
                session, email=email, password=PASSWORD, name="B", now=runtime.clock.now()
            )

    async with session_scope(runtime.sessions) as first:
        await service.register(
            first, email=email, password=PASSWORD, name="A", now=runtime.clock.now()
        )
        with own_statements(runtime.engine, on_execute):  # the task below inherits it
            second = asyncio.create_task(second_registration())
            # Until the second request has checked (and seen nothing), or has ended; its insert
            # then waits for the first transaction (SQLite's busy timeout, PostgreSQL's lock).
            await asyncio.wait(
                [asyncio.create_task(checked.wait()), second], return_when=asyncio.FIRST_COMPLETED
            )
            assert checks, "the second registration never checked the email"
            assert not second.done()  # its insert waits for the first transaction
    with pytest.raises(Conflict):
        await second
    assert await _counts(runtime) == (1, 1, 1)


class InjectedFailure(Exception):
    """Raised by the database listener below to fail a registration half-way."""


async def test_registration_is_one_transaction(client: AppClient) -> None:
    """A failure after the user and key are inserted (at the job insert) leaves nothing."""
    runtime = runtime_of(client)

    def fail_job_insert(statement: str) -> None:
        if statement.lstrip().startswith("INSERT INTO jobs"):
            raise InjectedFailure("the job table is unavailable")

    with own_statements(runtime.engine, fail_job_insert), pytest.raises(InjectedFailure):
        await client.post("/auth/register", json=GOOD)
    assert await _counts(runtime) == (0, 0, 0)
    await register(client)  # and the email is still free
