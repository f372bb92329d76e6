"""The emulator's global clock: real time plus an offset that control endpoints can move forward.

Customers attached to a Stripe test clock live on that clock's ``frozen_time`` instead; see
``EmulatorState.customer_now``.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime


class Clock:
    def __init__(self, offset: float = 0.0) -> None:
        self._offset = offset
        self._lock = threading.Lock()

    @property
    def offset(self) -> float:
        with self._lock:
            return self._offset

    def now_float(self) -> float:
        with self._lock:
            return time.time() + self._offset

    def now(self) -> int:
        return int(self.now_float())

    def advance(self, seconds: float) -> int:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._offset += seconds
        return self.now()

    def set_offset(self, offset: float) -> None:
        with self._lock:
            self._offset = offset


def rfc3339(ts: float) -> str:
    """Unix seconds -> ``2024-06-01T12:10:00.000Z`` (v2 API timestamps)."""
    dt = datetime.fromtimestamp(ts, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def parse_rfc3339(value: str) -> float:
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        raise ValueError("timestamp needs a time zone")
    return dt.timestamp()
