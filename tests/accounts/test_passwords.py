"""Password hashing: argon2id at OWASP parameters, checked off the event loop."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher

from novo_gateway.accounts import passwords


async def test_a_hash_verifies_its_password_only() -> None:
    hashed = await passwords.hash_password("correct horse battery")
    assert hashed.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert await passwords.verify_password(hashed, "correct horse battery")
    assert not await passwords.verify_password(hashed, "correct horse battery!")


async def test_the_same_password_hashes_differently_each_time() -> None:
    first, second = await asyncio.gather(
        passwords.hash_password("same password"), passwords.hash_password("same password")
    )
    assert first != second


async def test_no_account_means_no_match_even_for_the_dummy_password() -> None:
    assert not await passwords.verify_password(None, "anything at all")


async def test_a_corrupt_stored_hash_is_a_mismatch_not_an_error() -> None:
    assert not await passwords.verify_password("not-a-hash", "correct horse battery")
    assert passwords.needs_rehash("not-a-hash")


def test_hashes_with_other_parameters_need_a_rehash() -> None:
    assert passwords.needs_rehash(PasswordHasher().hash("x"))
    current = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1).hash("x")
    assert not passwords.needs_rehash(current)


async def test_hashing_leaves_the_event_loop_free() -> None:
    """While a hash is computed the loop keeps turning (it would stop if it hashed itself)."""
    hashing = asyncio.ensure_future(passwords.hash_password("correct horse battery"))
    turns = 0
    while not hashing.done():
        turns += 1
        await asyncio.sleep(0)
    await hashing
    assert turns > 1


def test_the_unknown_account_hash_costs_what_a_real_one_costs() -> None:
    assert not passwords.needs_rehash(passwords._UNKNOWN_ACCOUNT_HASH)
