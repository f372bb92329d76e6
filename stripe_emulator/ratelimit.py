"""A token bucket in operations per second, like Stripe's per-account rate limiter."""

from __future__ import annotations

import threading
import time


class RateLimiter:
    def __init__(self, rate: float | None, burst: float | None = None) -> None:
        self._lock = threading.Lock()
        self.configure(rate, burst)

    def configure(self, rate: float | None, burst: float | None = None) -> None:
        with self._lock:
            self.rate = rate if rate and rate > 0 else None
            self.burst = burst if burst and burst > 0 else (self.rate or 0.0)
            self._tokens = self.burst
            self._stamp = time.monotonic()

    def allow(self) -> bool:
        with self._lock:
            if self.rate is None:
                return True
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False
