"""API keys: `nk_` + 32 base62 characters (190 bits from `secrets`) + a 6-character checksum.

The checksum (CRC32 of the random part, base62) lets the gateway reject a mistyped key without a
database read and lets secret scanners recognise our keys. Only the SHA-256 hash is stored: a key
has enough entropy that a fast hash is safe, and it keeps verification cheap on the hot path.
"""

from __future__ import annotations

import hashlib
import secrets
import string
import zlib

PREFIX = "nk_"
_ALPHABET = string.digits + string.ascii_letters
_RANDOM_LEN = 32
_CHECKSUM_LEN = 6
KEY_LENGTH = len(PREFIX) + _RANDOM_LEN + _CHECKSUM_LEN
DISPLAY_PREFIX_LEN = len(PREFIX) + 8


def _base62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, rem = divmod(number, 62)
        chars.append(_ALPHABET[rem])
    return "".join(reversed(chars))


def _checksum(random_part: str) -> str:
    return _base62(zlib.crc32(random_part.encode()), _CHECKSUM_LEN)


def generate_key() -> str:
    """A new random API key."""
    random_part = "".join(secrets.choice(_ALPHABET) for _ in range(_RANDOM_LEN))
    return PREFIX + random_part + _checksum(random_part)


def is_well_formed(key: str) -> bool:
    """True when the key has our shape and its checksum matches (no database read)."""
    if len(key) != KEY_LENGTH or not key.startswith(PREFIX):
        return False
    random_part = key[len(PREFIX) : len(PREFIX) + _RANDOM_LEN]
    checksum = key[len(PREFIX) + _RANDOM_LEN :]
    if not all(c in _ALPHABET for c in random_part):
        return False
    return secrets.compare_digest(checksum, _checksum(random_part))


def hash_key(key: str) -> str:
    """The stored form of a key (hex SHA-256)."""
    return hashlib.sha256(key.encode()).hexdigest()


def display_prefix(key: str) -> str:
    """The part of a key shown in listings, enough to recognise it."""
    return key[:DISPLAY_PREFIX_LEN]
