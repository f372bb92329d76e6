"""Login session tokens: `ns_` + 43 URL-safe characters (256 bits from `secrets`).

Only the SHA-256 hash is stored (`login_sessions.token_hash`); the token is shown once, at login.
Password reset tokens are made and stored the same way, with the prefix `npr_`.
"""

from __future__ import annotations

import hashlib
import secrets

PREFIX = "ns_"
RESET_PREFIX = "npr_"


def generate_session_token() -> str:
    """A new random session token."""
    return PREFIX + secrets.token_urlsafe(32)


def generate_reset_token() -> str:
    """A new random password reset token (sent by email, single use)."""
    return RESET_PREFIX + secrets.token_urlsafe(32)


def is_session_token(value: str) -> bool:
    """True when the value has a session token's prefix (API keys start with `nk_`)."""
    return value.startswith(PREFIX)


def hash_session_token(token: str) -> str:
    """The stored form of a session token (hex SHA-256)."""
    return hashlib.sha256(token.encode()).hexdigest()
