"""The emulator: state, clocks, background workers and the route table, for one server."""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import fields, replace
from typing import Any

from .clock import Clock
from .config import EmulatorConfig
from .errors import StripeError
from .faults import FaultBook
from .idempotency import IdempotencyLayer
from .ids import kind_of
from .journal import Journal
from .ratelimit import RateLimiter
from .router import Router
from .store import Store
from .webhooks import WebhookDispatcher

PRIVATE_FILE_MODE = 0o600

log = logging.getLogger("stripe_emulator")


class Emulator:
    def __init__(self, config: EmulatorConfig | None = None) -> None:
        from .resources import build_router

        self.config = config or EmulatorConfig()
        self._initial_config = replace(self.config)
        self.clock = Clock()
        if self.config.clock_start is not None:
            self.clock.set_offset(self.config.clock_start - time.time())
        self.store = Store()
        self.faults = FaultBook()
        self.limiter = RateLimiter(self.config.rate_limit, self.config.rate_limit_burst)
        self.idempotency = IdempotencyLayer(self.store, self.config.idempotency_max_keys)
        self.webhooks = WebhookDispatcher(self)
        self.journal = Journal()
        self.router: Router = build_router()
        self.base_url = f"http://{self.config.host}:{self.config.port}"
        self._dirty = False
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
        from .billing_cycle import run_due_global

        last_save = time.monotonic()
        while not self._stop.wait(self.config.scheduler_interval):
            try:
                with self.store.lock:
                    run_due_global(self)
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
            self.mark_dirty()

    # -- state -----------------------------------------------------------------------------
    def mark_dirty(self) -> None:
        self._dirty = True

    def save(self, *, only_if_dirty: bool = False) -> None:
        path = self.config.state_file
        if not path or (only_if_dirty and not self._dirty):
            return
        self._dirty = False
        data = self.store.dump(self.clock.offset)
        tmp = f"{path}.tmp"
        # It holds the webhook endpoints' signing secrets: readable by its owner only.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
        os.fchmod(fd, PRIVATE_FILE_MODE)  # a leftover .tmp keeps its mode through O_CREAT
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)

    def note_base_url(self, url: str) -> None:
        self.base_url = url

    def resolve(self, obj_id: str) -> dict[str, Any] | None:
        kind = kind_of(obj_id)
        if kind is None:
            return None
        return self.store.get(kind, obj_id)

    # -- time ------------------------------------------------------------------------------
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

    # -- v2 meter event sessions -----------------------------------------------------------
    def meter_sessions_check(self, token: str) -> None:
        with self.store.lock:
            session = self.store.meter_sessions.get(token)
        if session is None:
            raise StripeError(
                401,
                "Invalid authentication token for the meter event stream. Create a meter event "
                "session with your secret key and use its authentication_token.",
                type="invalid_request_error",
                code="invalid_token",
                before_execution=True,
            )
        if session["expires_at"] <= self.clock.now():
            raise StripeError(
                401,
                "The meter event session has expired. Create a new meter event session.",
                type="temporary_session_expired",
                code="billing_meter_event_session_expired",
                before_execution=True,
            )
