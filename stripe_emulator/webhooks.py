"""Webhook signing and the background delivery worker.

Each delivery POSTs the event's JSON with ``Stripe-Signature: t=<unix>,v1=<hex>``, the
HMAC-SHA256 of ``"<t>.<body>"`` keyed with the endpoint secret (``t`` is real wall-clock time,
not the emulator clock, so receivers' tolerance checks pass after clock advances). A delivery
that fails (non-2xx, timeout, refused connection) is retried after ``webhook_retry_base``
seconds, doubling each time up to ``webhook_retry_max``, for ``webhook_max_attempts`` attempts.
"""

from __future__ import annotations

import heapq
import hmac
import itertools
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from hashlib import sha256

import httpx

from .clock import Clock
from .config import EmulatorConfig
from .store import Store

log = logging.getLogger("stripe_emulator.webhooks")
USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"


def sign(body: bytes, secret: str, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


@dataclass(order=True)
class _Job:
    due: float
    seq: int
    delivery: int = field(compare=False)
    target: str = field(compare=False)
    url: str = field(compare=False)
    body: bytes = field(compare=False)
    attempt: int = field(compare=False, default=1)


class WebhookDispatcher:
    """The webhook outbox: deliveries queued by events, sent by a worker thread with retries."""

    def __init__(self, store: Store, config: EmulatorConfig, clock: Clock) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self._heap: list[_Job] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._busy = 0
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._client: httpx.Client | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping = False
        self._client = httpx.Client(timeout=self.config.webhook_timeout)
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="webhook-send")
        self._thread = threading.Thread(target=self._run, name="webhook-dispatch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def clear(self) -> None:
        with self._cond:
            self._heap.clear()

    def pending(self) -> int:
        with self._cond:
            return len(self._heap) + self._busy

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until no delivery is queued or running (retries included)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._heap or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    # -- queueing --------------------------------------------------------------------------
    def enqueue(self, event_id: str, target_id: str, url: str, body: bytes) -> None:
        """Queue the first attempt (called with the store lock held)."""
        store = self.store
        delivery = {
            "event": event_id,
            "endpoint": target_id,
            "url": url,
            "status": "pending",
            "attempts": [],
        }
        store.deliveries.append(delivery)
        job = _Job(
            time.monotonic(), next(self._seq), len(store.deliveries) - 1, target_id, url, body
        )
        with self._cond:
            heapq.heappush(self._heap, job)
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and (
                    not self._heap or self._heap[0].due > time.monotonic()
                ):
                    wait = self._heap[0].due - time.monotonic() if self._heap else None
                    self._cond.wait(timeout=wait)
                if self._stopping:
                    return
                job = heapq.heappop(self._heap)
                self._busy += 1
            pool = self._pool
            if pool is None:
                return
            pool.submit(self._attempt, job)

    def _attempt(self, job: _Job) -> None:
        try:
            self._send(job)
        except Exception:  # pragma: no cover - a bug, not a delivery failure
            log.exception("webhook delivery crashed")
        finally:
            with self._cond:
                self._busy -= 1
                self._cond.notify_all()

    def _send(self, job: _Job) -> None:
        store, config = self.store, self.config
        with store.lock:
            secret = store.aux(job.target).get("secret")
            deliveries = store.deliveries
            delivery = deliveries[job.delivery] if job.delivery < len(deliveries) else None
        if secret is None or delivery is None or delivery["endpoint"] != job.target:
            return
        wall = config.webhook_signature_clock == "wall"
        timestamp = int(time.time()) if wall else self.clock.now()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
            "Stripe-Signature": sign(job.body, secret, timestamp),
        }
        status: int | None = None
        error: str | None = None
        client = self._client
        if client is None:
            return
        try:
            status = client.post(job.url, content=job.body, headers=headers).status_code
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        ok = status is not None and 200 <= status < 300
        retry = not ok and job.attempt < config.webhook_max_attempts
        with store.lock:
            delivery["attempts"].append(
                {"attempt": job.attempt, "at": timestamp, "status": status, "error": error}
            )
            delivery["status"] = "succeeded" if ok else ("pending" if retry else "failed")
            event = store.events.get(delivery["event"])
            if ok and event is not None:
                event["pending_webhooks"] = max(0, event["pending_webhooks"] - 1)
            store.mark_dirty()
        if retry:
            delay = min(
                config.webhook_retry_base * 2 ** (job.attempt - 1), config.webhook_retry_max
            )
            nxt = _Job(
                time.monotonic() + delay,
                next(self._seq),
                job.delivery,
                job.target,
                job.url,
                job.body,
                job.attempt + 1,
            )
            with self._cond:
                heapq.heappush(self._heap, nxt)
                self._cond.notify_all()
