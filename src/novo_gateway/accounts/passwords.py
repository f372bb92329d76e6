"""Password hashing with argon2id at OWASP's recommended minimum (m=19 MiB, t=2, p=1).

Hashing is CPU- and memory-heavy (~50 ms), so it runs in a worker thread, and at most a few hashes
run at once: a burst of logins queues here instead of taking every thread and tens of MiB each.

Passwords are normalised with NFKC before hashing, as NIST SP 800-63B (5.1.1.2) advises, so a
password typed on a keyboard that sends another Unicode form (`é` as one code point or as `e` and
a combining accent, a fullwidth `A` U+FF21) is the same password. Hashes made before normalisation
hold the password as typed: when the normalised form does not match, the raw form is tried, and
a match there asks the caller to rehash (`Verdict.MATCHED_RAW`).
"""

from __future__ import annotations

import asyncio
import unicodedata
import weakref
from enum import StrEnum

import anyio
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 8
MAX_LENGTH = 1024  # argon2 takes any length; the bound keeps one request's cost fixed

_hasher = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)
_CONCURRENT_HASHES = 2
# Checked when an email has no account, so that costs what a wrong password costs. Same
# parameters as `_hasher`; the password behind it is irrelevant (a match is never accepted).
_UNKNOWN_ACCOUNT_HASH = (
    "$argon2id$v=19$m=19456,t=2,p=1$fbJTkeTArjvvvwhXnEwd7Q"
    "$R3cMmXvtKVDiAje3b4pc8JDqUedF3EAsioq9LlWdV0E"
)
# One limiter per event loop: a limiter's waiters belong to the loop it was first used on.
_slots_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.CapacityLimiter] = (
    weakref.WeakKeyDictionary()
)


class Verdict(StrEnum):
    """The outcome of checking a password against a stored hash."""

    MISMATCH = "mismatch"
    MATCHED = "matched"
    MATCHED_RAW = "matched_raw"  # matched as typed, not normalised: an old hash, rehash it


def normalise_password(password: str) -> str:
    """The form of a password that is hashed: NFKC (NIST SP 800-63B)."""
    return unicodedata.normalize("NFKC", password)


async def hash_password(password: str) -> str:
    """The argon2id hash of the normalised `password` (salted), computed off the event loop."""
    normalised = normalise_password(password)
    return await anyio.to_thread.run_sync(_hasher.hash, normalised, limiter=_hashing_slots())


async def check_password(password_hash: str | None, password: str) -> Verdict:
    """Check `password` in its normalised form, then as typed if that differs (older hashes).

    With no hash, a dummy one is checked, so an unknown account costs what a wrong password does.
    """
    if await _verify_off_loop(password_hash, normalise_password(password)):
        return Verdict.MATCHED if password_hash is not None else Verdict.MISMATCH
    typed_differently = not unicodedata.is_normalized("NFKC", password)
    if typed_differently and await _verify_off_loop(password_hash, password):
        return Verdict.MATCHED_RAW if password_hash is not None else Verdict.MISMATCH
    return Verdict.MISMATCH


async def verify_password(password_hash: str | None, password: str) -> bool:
    """True when `password` matches, in either form (see `check_password`)."""
    return await check_password(password_hash, password) is not Verdict.MISMATCH


async def _verify_off_loop(password_hash: str | None, password: str) -> bool:
    return await anyio.to_thread.run_sync(
        _verify, password_hash, password, limiter=_hashing_slots()
    )


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with other parameters than today's (rehash after login)."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


def _hashing_slots() -> anyio.CapacityLimiter:
    loop = asyncio.get_running_loop()
    slots = _slots_by_loop.get(loop)
    if slots is None:
        slots = _slots_by_loop[loop] = anyio.CapacityLimiter(_CONCURRENT_HASHES)
    return slots


def _verify(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _UNKNOWN_ACCOUNT_HASH, password)
    except (VerificationError, InvalidHashError):
        return False
