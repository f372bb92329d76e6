"""A log of the API requests the emulator received, for conformance checks in tests.

Each entry keeps the method, path, route template, the parameters as parsed, the client's
``User-Agent`` and, when the request was refused, Stripe's error. ``GET /_emulator/requests``
returns it; a reset empties it. At most ``limit`` entries are kept (the oldest dropped).
"""

from __future__ import annotations

import copy
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from .errors import StripeError


@dataclass
class Entry:
    method: str
    path: str
    template: str
    params: dict[str, Any]
    user_agent: str
    status: int | None = None
    code: str | None = None
    message: str | None = None

    def refused(self, err: StripeError) -> None:
        self.status, self.code, self.message = err.status, err.code, err.message


class Journal:
    def __init__(self, limit: int = 20_000) -> None:
        self._entries: deque[Entry] = deque(maxlen=limit)
        self._lock = threading.Lock()

    def record(
        self,
        method: str,
        path: str,
        template: str,
        params: Mapping[str, Any],
        headers: Mapping[str, str],
    ) -> Entry:
        entry = Entry(
            method, path, template, copy.deepcopy(dict(params)), headers.get("user-agent", "")
        )
        with self._lock:
            self._entries.append(entry)
        return entry

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(e) for e in self._entries]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
