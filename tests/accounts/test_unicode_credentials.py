"""Emails and passwords that look alike are alike: RFC 8265 for emails, NFKC for passwords."""

from __future__ import annotations

import unicodedata

import pytest
from argon2 import PasswordHasher

from novo_gateway.accounts.models import User
from novo_gateway.accounts.schemas import normalise_email
from novo_gateway.kit.db import session_scope
from tests.accounts.helpers import PASSWORD, login, register, runtime_of
from tests.conftest import AppClient
from tests.factories import create_user

FULLWIDTH_ADA = "\uff41\uff44\uff41@example.com"  # 'ada' in fullwidth letters
# 'ADA@example.com' with every character fullwidth, the at sign and the dot too.
ALL_FULLWIDTH_ADA = "".join(chr(ord(c) + 0xFEE0) for c in "ADA@example.com")


@pytest.mark.parametrize(
    ("typed", "canonical"),
    [
        (FULLWIDTH_ADA, "ada@example.com"),
        (ALL_FULLWIDTH_ADA, "ada@example.com"),
        ("  Ada@Example.COM ", "ada@example.com"),
        ("Stra\u00dfe@example.com", "strasse@example.com"),  # default case folding: ß is ss
        ("Jos\u0065\u0301@example.com", "jos\u00e9@example.com"),  # NFC
        ("\uff8a\uff9d@example.com", "\u30cf\u30f3@example.com"),  # halfwidth katakana
    ],
)
def test_emails_are_mapped_by_the_username_case_mapped_profile(typed: str, canonical: str) -> None:
    assert normalise_email(typed) == canonical


async def test_a_fullwidth_lookalike_email_is_the_existing_account(client: AppClient) -> None:
    created = await register(client)

    again = await client.post(
        "/auth/register", json={"email": FULLWIDTH_ADA, "password": "another passphrase"}
    )
    body = await login(client, email=ALL_FULLWIDTH_ADA)

    assert again.status_code == 409
    assert body["user"]["id"] == created["user"]["id"]
    assert body["user"]["email"] == "ada@example.com"


async def test_a_password_typed_in_another_normalisation_form_is_accepted(
    client: AppClient,
) -> None:
    composed = unicodedata.normalize("NFC", "caf\u00e9 au lait, s'il vous pla\u00eet")
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    await register(client, password=composed)

    await login(client, password=decomposed)
    await login(client, password=composed)


async def test_a_hash_of_the_raw_password_still_matches_and_is_replaced(
    client: AppClient,
) -> None:
    typed = "\uff50\uff41\uff53\uff53 phrase \ufb01ne"  # fullwidth 'pass' and the 'fi' ligature
    normalised = unicodedata.normalize("NFKC", typed)
    assert normalised == "pass phrase fine"
    runtime = runtime_of(client)
    async with session_scope(runtime.sessions) as session:  # hashed as typed, as before NFKC
        user = await create_user(session, password_hash=PasswordHasher().hash(typed))
    old_hash = user.password_hash

    await login(client, password=typed)

    async with session_scope(runtime.sessions) as session:
        rehashed = (await session.get_one(User, user.id)).password_hash
    assert rehashed != old_hash
    assert PasswordHasher().verify(rehashed, normalised)
    await login(client, password=normalised)


async def test_a_wrong_password_is_still_refused_in_every_form(client: AppClient) -> None:
    await register(client)
    for wrong in (PASSWORD.upper(), "\uff43orrect horse battery staple!", PASSWORD + " "):
        response = await client.post(
            "/auth/login", json={"email": "ada@example.com", "password": wrong}
        )
        assert response.status_code == 401, wrong
