"""Fault injection for the next N requests matching a method and a path prefix.

Kinds: ``429`` (rate limited, with ``Retry-After``), ``500`` (API error, not executed),
``delay`` (hold the request ``delay`` seconds with its idempotency key in flight, then process
it: a client with a shorter timeout gives up while the work still happens) and ``drop``
(process the request fully, then close the connection without answering).
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any, Literal

FaultKind = Literal["429", "500", "delay", "drop"]
KINDS: tuple[str, ...] = ("429", "500", "delay", "drop")


@dataclass
class Fault:
    id: int
    kind: FaultKind
    method: str | None
    path: str
    count: int
    delay: float = 0.0
    retry_after: int = 1
    matched: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and path.startswith(self.path)


class FaultBook:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._next_id = 1

    def add(
        self,
        kind: FaultKind,
        *,
        path: str = "/",
        method: str | None = None,
        count: int = 1,
        delay: float = 0.0,
        retry_after: int = 1,
    ) -> Fault:
        with self._lock:
            fault = Fault(
                self._next_id,
                kind,
                method.upper() if method else None,
                path,
                count,
                delay,
                retry_after,
            )
            self._next_id += 1
            self._faults.append(fault)
            return fault

    def take(self, method: str, path: str) -> Fault | None:
        """The first armed fault matching the request, consuming one of its uses."""
        with self._lock:
            for fault in self._faults:
                if fault.count > 0 and fault.matches(method, path):
                    fault.count -= 1
                    fault.matched += 1
                    return fault
            return None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(f) for f in self._faults]
