"""One emulator as served: its state, with the router, the scheduler, the webhook delivery
worker and the request pipeline's parts (faults, rate limit, idempotency, request log) wired
around it. Nothing in the package imports this module but the app, the server and the control
endpoints that drive it."""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import fields, replace

from .billing_cycle import run_due_global
from .clock import Clock
from .config import EmulatorConfig
from .faults import FaultBook
from .idempotency import IdempotencyLayer
from .journal import Journal
from .ratelimit import RateLimiter
from .resources import build_router
from .router import Router
from .state import EmulatorState
from .store import Store
from .webhooks import WebhookDispatcher

PRIVATE_FILE_MODE = 0o600

log = logging.getLogger("stripe_emulator")


class Emulator:
    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self._initial_config = replace(self.config)
        self.clock = Clock()
        if self.config.clock_start is not None:
            self.clock.set_offset(self.config.clock_start - time.time())
        self.store = Store()
        self.faults = FaultBook()
        self.limiter = RateLimiter(self.config.rate_limit, self.config.rate_limit_burst)
        self.idempotency = IdempotencyLayer(self.store, self.config.idempotency_max_keys)
        self.webhooks = WebhookDispatcher(self.store, self.config, self.clock)
        self.state = EmulatorState(self.config, self.store, self.clock, self.webhooks)
        self.journal = Journal()
        self.router: Router = build_router()
        self._stop = threading.Event()
        self._scheduler: threading.Thread | None = None
        if self.config.state_file and os.path.exists(self.config.state_file):
            with open(self.config.state_file, "rb") as fh:
                self.clock.set_offset(self.store.load(fh.read()))
            self.store.idempotency = {
                k: v for k, v in self.store.idempotency.items() if v.get("state") == "done"
            }

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self.webhooks.start()
        if self._scheduler is None:
            self._stop.clear()
            self._scheduler = threading.Thread(
                target=self._schedule, name="emulator-scheduler", daemon=True
            )
            self._scheduler.start()

    def stop(self) -> None:
        self._stop.set()
        if self._scheduler is not None:
            self._scheduler.join(timeout=10)
            self._scheduler = None
        self.webhooks.stop()
        self.save()

    def _schedule(self) -> None:
        """The scheduler: runs the billing cycle's due work on the global clock as real time
        passes, and saves the state file every ``save_interval`` seconds when it changed."""
        last_save = time.monotonic()
        while not self._stop.wait(self.config.scheduler_interval):
            try:
                with self.store.lock:
                    run_due_global(self.state)
            except Exception:  # pragma: no cover - keep the scheduler alive
                log.exception("scheduler tick failed")
            if time.monotonic() - last_save >= self.config.save_interval:
                last_save = time.monotonic()
                self.save(only_if_dirty=True)

    def reset(self) -> None:
        self.webhooks.clear()
        self.journal.clear()
        with self.store.lock:
            self.store.clear()
            self.clock.set_offset(0.0)
            self.faults.clear()
            for f in fields(self.config):
                if f.name not in ("host", "port", "state_file"):
                    setattr(self.config, f.name, getattr(self._initial_config, f.name))
            self.limiter.configure(self.config.rate_limit, self.config.rate_limit_burst)
            self.store.mark_dirty()

    # -- the state file ----------------------------------------------------------------------
    def save(self, *, only_if_dirty: bool = False) -> None:
        path = self.config.state_file
        if not path or (only_if_dirty and not self.store.dirty):
            return
        self.store.dirty = False
        data = self.store.dump(self.clock.offset)
        tmp = f"{path}.tmp"
        # It holds the webhook endpoints' signing secrets: readable by its owner only.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
        os.fchmod(fd, PRIVATE_FILE_MODE)  # a leftover .tmp keeps its mode through O_CREAT
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
