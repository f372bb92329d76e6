"""Login throttling: too many failed logins for one email lock that email out for a while.

Failures are counted per normalised email, whether or not an account has it (so the answers do
not tell which emails are registered), with the shared rate limiter (bucket "login"): in process
by default, in Redis when REDIS_URL is set, so every instance sees the same count. The identity is
a hash of the email, so the shared store holds no addresses.

The limiter counts in fixed windows of LOGIN_LOCKOUT_SECONDS aligned to the injected clock: once
an email has LOGIN_MAX_FAILURES failures in the current window, every attempt (even with the right
password) gets 429 with `Retry-After` until the window ends. A success clears the count. Over any
span an attacker gets at most about LOGIN_MAX_FAILURES guesses per window per email.
"""

from __future__ import annotations

import hashlib

from novo_gateway.errors import TooManyRequests
from novo_gateway.gateway.ratelimit import RateLimiter

BUCKET = "login"


class LoginThrottle:
    def __init__(self, limiter: RateLimiter, *, max_failures: int, window_seconds: int) -> None:
        self._limiter = limiter
        self._max = max_failures
        self._window = window_seconds

    async def check(self, email: str) -> None:
        """Raise `TooManyRequests` (with Retry-After) while `email` is locked out."""
        state = await self._limiter.peek(BUCKET, _identity(email), self._max, self._window)
        if not state.allowed:
            raise TooManyRequests(
                "Too many failed login attempts for this account. "
                f"Try again in {state.reset_in} seconds.",
                headers={"Retry-After": str(state.reset_in)},
                retryAfter=state.reset_in,
            )

    async def record_failure(self, email: str) -> None:
        """Count one failed login for `email`."""
        await self._limiter.hit(BUCKET, _identity(email), self._max, self._window)

    async def reset(self, email: str) -> None:
        """Forget the failures of `email` (after a successful login)."""
        await self._limiter.clear(BUCKET, _identity(email), self._window)


def _identity(email: str) -> str:
    return hashlib.sha256(email.encode()).hexdigest()[:32]
