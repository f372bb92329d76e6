"""Throttles that hold under concurrency: an attempt is counted BEFORE the secret is checked.

Guesses at one account's password (or at the admin token) are counted with the shared rate
limiter's atomic increment: in process by default (a dictionary update with no `await` between
read and write), in Redis when REDIS_URL is set (`INCRBY`), so every instance sees one count.

The count is taken first, the slow check (an argon2 hash, ~50 ms) comes after. With the check
first and the count after it, N guesses sent at once all read "no failures yet" and all got their
hash checked (300 parallel guesses: 299 x 401 and no 429). Reserved first, the attempts beyond the
limit are refused with 429 before any hash, whatever their number or timing, and so is the right
secret once the limit is reached, until the window ends. A success forgets the count (failures are
consecutive ones, as NIST SP 800-63B counts them).

Windows are fixed, LOGIN_LOCKOUT_SECONDS long, aligned to the injected clock: an identity gets at
most LOGIN_MAX_FAILURES failed attempts per window. Identities are hashed, so the shared store
holds no email or client address.
"""

from __future__ import annotations

import hashlib
from typing import Final

from novo_gateway.kit.errors import Throttled
from novo_gateway.kit.limiter import RateLimiter

LOGIN_BUCKET: Final = "login"
ADMIN_TOKEN_BUCKET: Final = "admin-token"  # noqa: S105 - a bucket name, not a secret
RESET_BUCKET: Final = "password-reset"


class AttemptThrottle:
    """At most `max_failures` attempts per identity and window, each reserved before checking."""

    def __init__(
        self,
        limiter: RateLimiter,
        *,
        bucket: str,
        max_failures: int,
        window_seconds: int,
        refusal: str,
    ) -> None:
        self._limiter = limiter
        self._bucket = bucket
        self._max = max_failures
        self._window = window_seconds
        self._refusal = refusal

    async def reserve(self, identity: str) -> None:
        """Count one attempt for `identity`; `Throttled` (Retry-After) once over the limit.

        Call it before checking the secret: the attempt stays counted as a failure unless
        `succeeded` is called after a successful check.
        """
        result = await self._limiter.hit(self._bucket, _hashed(identity), self._max, self._window)
        if not result.allowed:
            raise Throttled(
                f"{self._refusal} Try again in {result.reset_in} seconds.",
                headers={"Retry-After": str(result.reset_in)},
                retryAfter=result.reset_in,
            )

    async def succeeded(self, identity: str) -> None:
        """Forget the attempts of `identity` (its secret was just checked and was right)."""
        await self._limiter.clear(self._bucket, _hashed(identity), self._window)


class LoginThrottle(AttemptThrottle):
    """Failed logins per normalised email, known or not (the answers do not tell which)."""

    def __init__(self, limiter: RateLimiter, *, max_failures: int, window_seconds: int) -> None:
        super().__init__(
            limiter,
            bucket=LOGIN_BUCKET,
            max_failures=max_failures,
            window_seconds=window_seconds,
            refusal="Too many failed login attempts for this account.",
        )


class AdminTokenThrottle(AttemptThrottle):
    """Admin-token guesses per client address, in every form (Bearer or the sign-in form)."""

    def __init__(self, limiter: RateLimiter, *, max_failures: int, window_seconds: int) -> None:
        super().__init__(
            limiter,
            bucket=ADMIN_TOKEN_BUCKET,
            max_failures=max_failures,
            window_seconds=window_seconds,
            refusal="Too many wrong admin tokens from this address.",
        )


class PasswordResetThrottle(AttemptThrottle):
    """Reset emails per address (known or not), so nobody can flood an inbox with them."""

    def __init__(self, limiter: RateLimiter, *, max_failures: int, window_seconds: int) -> None:
        super().__init__(
            limiter,
            bucket=RESET_BUCKET,
            max_failures=max_failures,
            window_seconds=window_seconds,
            refusal="Too many password reset requests for this email.",
        )


def _hashed(identity: str) -> str:
    return hashlib.sha256(identity.encode()).hexdigest()[:32]
