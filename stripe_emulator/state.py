"""What the resources work on: the settings, the global clock, the store and the webhook outbox.

Handlers, the billing cycle, invoicing and the event emitter take an ``EmulatorState``. The
server's wiring (``emulator.py``) builds it and adds what serving needs on top: the router, the
request pipeline's parts, the scheduler and the webhook delivery worker (the outbox).
"""

from __future__ import annotations

from typing import Any, Protocol

from .clock import Clock
from .config import EmulatorConfig
from .ids import kind_of
from .store import Store


class Outbox(Protocol):
    """Where events queue their webhook deliveries (``webhooks.WebhookDispatcher``)."""

    def enqueue(self, event_id: str, target_id: str, url: str, body: bytes) -> None: ...


class EmulatorState:
    def __init__(self, config: EmulatorConfig, store: Store, clock: Clock, outbox: Outbox) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.outbox = outbox
        #: The address clients reach the emulator at (hosted invoice and portal links).
        self.base_url = f"http://{config.host}:{config.port}"

    def note_base_url(self, url: str) -> None:
        self.base_url = url

    def resolve(self, obj_id: str) -> dict[str, Any] | None:
        """The object an id names (for ``expand[]``), or ``None``."""
        kind = kind_of(obj_id)
        if kind is None:
            return None
        return self.store.get(kind, obj_id)

    def now(self) -> int:
        return self.clock.now()

    def customer_now(self, customer_id: str | None) -> int:
        """The time a customer lives on: its test clock's frozen time, else the global clock."""
        if customer_id:
            customer = self.store.get("customer", customer_id)
            clock_id = customer.get("test_clock") if customer else None
            if clock_id:
                clock = self.store.get("test_helpers.test_clock", clock_id)
                if clock is not None:
                    return int(clock["frozen_time"])
        return self.clock.now()
