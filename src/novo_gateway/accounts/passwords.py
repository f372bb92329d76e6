"""Password hashing with argon2id at OWASP's recommended minimum (m=19 MiB, t=2, p=1).

Hashing is CPU- and memory-heavy (~50 ms), so it runs in a worker thread, and at most a few hashes
run at once: a burst of logins queues here instead of taking every thread and tens of MiB each.
"""

from __future__ import annotations

from functools import cache

import anyio
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 8
MAX_LENGTH = 1024  # argon2 takes any length; the bound keeps one request's cost fixed

_hasher = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)
_hashing_slots = anyio.CapacityLimiter(2)


async def hash_password(password: str) -> str:
    """The argon2id hash of `password` (salted), computed off the event loop."""
    return await anyio.to_thread.run_sync(_hasher.hash, password, limiter=_hashing_slots)


async def verify_password(password_hash: str | None, password: str) -> bool:
    """True when `password` matches; with no hash, checks a dummy one so timing is the same."""
    matched = await anyio.to_thread.run_sync(
        _verify, password_hash, password, limiter=_hashing_slots
    )
    return matched and password_hash is not None


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with other parameters than today's (rehash after login)."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


def _verify(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return False


@cache
def _dummy_hash() -> str:
    return _hasher.hash("not a real password: used so unknown emails cost the same time")
