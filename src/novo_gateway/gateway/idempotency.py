"""Idempotency-Key, as the IETF draft "The Idempotency-Key HTTP Header Field" describes it.

A key names one request of one account for 24 hours: it is bound to the request's fingerprint
(SHA-256 of the method, the raw path, the query string without `api_key`, and the body bytes).

- First use: the request is claimed (a row in `idempotent_requests`, see idempotency_store.py),
  runs once, and its answer is stored: status, the headers that describe the body, and the body
  as sent (its `meta` included), up to IDEMPOTENCY_MAX_ANSWER_BYTES.
- A retry with the same fingerprint gets that answer again, with `Idempotent-Replayed: true`,
  fresh rate-limit headers, and no handler, upstream or bill.
- The same key with another fingerprint: 422 (the draft's code; Stripe answers 400).
- A retry while the first is still running waits up to IDEMPOTENCY_WAIT_SECONDS for its answer,
  then gets 409 (the draft's code), never a second run. Across processes sharing the database the
  row is the lock; a claim whose holder stopped renewing it (crashed) expires after
  IDEMPOTENCY_LOCK_SECONDS, and the next retry with the same fingerprint runs it.
- Not stored, so the client may retry: 5xx (the request failed, the upstream may not have done
  the work), 408 and 429 (they say "try again"), and a response that broke off half-way.
- An answer larger than the bound is not stored; the key stays bound to its request, and a retry
  gets 422 saying the request was done (with its status and request id) but cannot be replayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import re
import secrets
import weakref
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from starlette.types import Message, Send

from novo_gateway.gateway.idempotency_store import (
    RUNNING,
    Answer,
    Claim,
    IdempotencyStore,
    Seen,
)
from novo_gateway.kit.clock import Clock
from novo_gateway.kit.db import SessionFactory
from novo_gateway.kit.errors import BadRequest, Conflict, ServiceUnavailable, UnprocessableContent
from novo_gateway.metering.writer import IDEMPOTENCY_WINDOW

log = logging.getLogger("novo_gateway.gateway.idempotency")

MAX_KEY = 255
KEY_PATTERN = re.compile(r"[!-~](?:[ -~]*[!-~])?")
REPLAYED_HEADER = (b"idempotent-replayed", b"true")
# Headers that describe the body, kept with it (content-length is recomputed; the rate-limit
# headers and the request id are the retry's own).
_STORED_HEADERS = frozenset(
    {
        b"cache-control",
        b"content-disposition",
        b"content-encoding",
        b"content-language",
        b"content-location",
        b"content-type",
        b"etag",
        b"expires",
        b"last-modified",
        b"link",
        b"location",
        b"vary",
    }
)
_NOT_STORED_STATUSES = frozenset({408, 429})
_PURGE_EVERY_SECONDS = 3600.0
_FIRST_POLL_SECONDS = 0.01
_MAX_POLL_SECONDS = 0.2

KEY_REUSED = (
    "This Idempotency-Key was used in the last 24 hours for a different request (another "
    "method, path, query or body). Send a new Idempotency-Key for a new request."
)
KEY_UNCHECKED = (
    "Your call's Idempotency-Key could not be checked, so the call did not run. Please retry "
    "shortly with the same key."
)
IN_FLIGHT = (
    "A request with this Idempotency-Key is still being processed. Retry it in a moment to get "
    "its answer."
)


def parse_key(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The request's Idempotency-Key; raises `BadRequest` for a bad or repeated one.

    A key is 1 to 255 printable ASCII characters, not starting or ending with a space (the
    OpenAPI document gives the same rule as a pattern). The draft's form is a structured-field
    string (`"abc"`); a bare token (`abc`, as Stripe takes it) names the same key.
    """
    found: str | None = None
    for name, value in headers:
        if name != b"idempotency-key":
            continue
        if found is not None:
            raise BadRequest("Send one 'Idempotency-Key' header, not several.")
        key = value.decode("latin-1").strip()
        if len(key) > MAX_KEY or not KEY_PATTERN.fullmatch(key):
            raise BadRequest(
                f"Invalid header 'Idempotency-Key': use 1 to {MAX_KEY} printable ASCII characters."
            )
        if len(key) > 2 and key[0] == key[-1] == '"':
            key = key[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        found = key
    return found


def fingerprint(method: str, raw_path: bytes, query: bytes, body: bytes) -> str:
    """SHA-256 of the request's method, raw path, query (without `api_key`) and body."""
    digest = hashlib.sha256()
    for part in (method.encode("latin-1"), raw_path, query, body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


class NotReplayable(UnprocessableContent):
    """The key's request was done, but its answer was too large to keep."""


class Capture:
    """The response of a claimed request as it is sent, up to `limit` bytes of body."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self.status: int | None = None
        self.headers: list[tuple[str, str]] = []
        self._chunks: list[bytes] | None = []
        self.size = 0
        self.endpoint = ""
        self.units = 0
        self.request_id: str | None = None

    def start(self, message: Message) -> None:
        self.status = int(message["status"])
        self.headers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in message.get("headers", [])
            if name.lower() in _STORED_HEADERS
        ]

    def body(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self._chunks is None:
            return
        if self.size > self._limit:
            self._chunks = None  # too large: only its size is kept
            return
        self._chunks.append(chunk)

    def answer(self) -> Answer | None:
        """What a retry gets, or None when this response must not be stored."""
        status = self.status
        if status is None or status >= 500 or status in _NOT_STORED_STATUSES:
            return None
        body = None if self._chunks is None else b"".join(self._chunks)
        return Answer(
            status, self.headers, body, self.size, self.endpoint, self.units, self.request_id
        )


class Tap:
    """A claimed request's response on its way out: kept, and stored before its last byte leaves
    (so a client that has the answer gets it again on a retry), or the key given back."""

    def __init__(self, idempotency: Idempotency, claim: Claim) -> None:
        self._idempotency = idempotency
        self._claim = claim
        self.capture = Capture(idempotency.max_answer_bytes)
        self._settled = False

    def label(self, endpoint: str, units: int, request_id: str | None) -> None:
        """What the ledger calls this call, for the event a replay records."""
        self.capture.endpoint, self.capture.units = endpoint, units
        self.capture.request_id = request_id

    async def sending(self, message: Message) -> None:
        """Called with each message of the response, before it is sent."""
        if message["type"] == "http.response.start":
            self.capture.start(message)
        elif message["type"] == "http.response.body":
            self.capture.body(message.get("body", b""))
            if not message.get("more_body", False):
                await self._settle(stored=True)

    async def abandon(self) -> None:
        """The response did not complete (an error, a 503 instead): give the key back."""
        await self._settle(stored=False)

    async def _settle(self, *, stored: bool) -> None:
        if self._settled:
            return
        self._settled = True
        if stored:
            await self._idempotency.finish(self._claim, self.capture)
        else:
            await self._idempotency.release(self._claim)


class Idempotency:
    """Claims keys, waits for answers being made, stores and replays them."""

    def __init__(
        self,
        sessions: SessionFactory,
        clock: Clock,
        *,
        max_answer_bytes: int,
        wait_seconds: float,
        lock_seconds: float,
    ) -> None:
        self.store = IdempotencyStore(sessions)
        self._clock = clock
        self.max_answer_bytes = max_answer_bytes
        self._wait_seconds = wait_seconds
        self._lock = timedelta(seconds=lock_seconds)
        self._renew_every = lock_seconds / 3
        # Requests of this process waiting for an answer being made here: woken at once.
        # (Weak: an entry lives as long as someone waits on it.)
        self._answered: weakref.WeakValueDictionary[tuple[int, str], asyncio.Event] = (
            weakref.WeakValueDictionary()
        )
        self._renewals: dict[Claim, asyncio.Task[None]] = {}
        self._last_purge = -math.inf

    @property
    def waiting(self) -> int:
        """How many keys requests of this process are waiting on (for metrics and tests)."""
        return len(self._answered)

    async def begin(
        self, user_id: int, key: str, print_: str, started_at: datetime
    ) -> Claim | Answer:
        """Claim the key for this request, or the stored answer to replay.

        `started_at` (the call's arrival, as the ledger dates it) starts the key's 24 hours.
        Raises `UnprocessableContent` (another request's key, or an answer not kept),
        `Conflict` (still running after the wait) or `ServiceUnavailable` (the database is
        unreachable: nothing ran, the client may retry).
        """
        try:
            return await self._begin(user_id, key, print_, started_at)
        except (DBAPIError, SQLAlchemyTimeoutError, OSError) as exc:
            log.warning("could not look up an Idempotency-Key (%s)", type(exc).__name__)
            raise ServiceUnavailable(KEY_UNCHECKED, headers={"Retry-After": "1"}) from exc

    async def _begin(
        self, user_id: int, key: str, print_: str, started_at: datetime
    ) -> Claim | Answer:
        await self._maybe_purge()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait_seconds
        pause = _FIRST_POLL_SECONDS
        window_start = started_at - IDEMPOTENCY_WINDOW
        while True:
            owner = secrets.token_hex(16)
            now = self._clock.now()
            locked_until = now + self._lock
            row_id = await self.store.insert(user_id, key, print_, owner, started_at, locked_until)
            if row_id is not None:
                return self._claimed(Claim(row_id, owner, user_id, key))
            seen = await self.store.get(user_id, key)
            if seen is None:
                continue  # released meanwhile: claim it again
            if seen.created_at <= window_start or (
                seen.state == RUNNING and seen.locked_until <= now
            ):
                # Past its 24 hours, or its holder stopped renewing it (a process died).
                if await self.store.take_over(
                    seen, print_, owner, started_at, locked_until, window_start, now
                ):
                    return self._claimed(Claim(seen.row_id, owner, user_id, key))
            elif seen.fingerprint != print_:
                raise UnprocessableContent(KEY_REUSED)
            elif seen.state != RUNNING:
                return _replayable(seen)
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise Conflict(IN_FLIGHT, headers={"Retry-After": "1"})
            await self._wait(user_id, key, min(remaining, pause))
            pause = min(pause * 2, _MAX_POLL_SECONDS)

    async def finish(self, claim: Claim, capture: Capture) -> None:
        """Store the answer of a claimed request (or give the key back when it failed)."""
        answer = capture.answer()
        if answer is None:
            await self.release(claim)
            return
        self._stop_renewing(claim)
        try:
            if not await self.store.complete(claim, answer):
                log.warning("an Idempotency-Key's claim was taken over before its answer")
        except Exception as exc:
            # The client still gets its answer; a retry after the claim lapses runs it again,
            # and the ledger bills a key once within 24 hours whatever happens here.
            log.error("could not store an idempotent answer (%s)", type(exc).__name__)
        finally:
            self._wake(claim)

    async def release(self, claim: Claim) -> None:
        """Give the key back unanswered, so that a retry runs the request."""
        self._stop_renewing(claim)
        try:
            await self.store.release(claim)
        except Exception as exc:
            log.error("could not release an Idempotency-Key (%s)", type(exc).__name__)
        finally:
            self._wake(claim)

    def _claimed(self, claim: Claim) -> Claim:
        self._renewals[claim] = asyncio.create_task(self._renew(claim))
        return claim

    async def _renew(self, claim: Claim) -> None:
        """Keep a claim alive while its request runs (a crashed process stops renewing it)."""
        while True:
            await asyncio.sleep(self._renew_every)
            try:
                if not await self.store.extend(claim, self._clock.now() + self._lock):
                    return
            except Exception as exc:
                log.warning("could not renew an Idempotency-Key claim (%s)", type(exc).__name__)

    def _stop_renewing(self, claim: Claim) -> None:
        task = self._renewals.pop(claim, None)
        if task is not None:
            task.cancel()

    async def _wait(self, user_id: int, key: str, seconds: float) -> None:
        """Until this process answers the key, or `seconds` pass (another process may)."""
        event = self._answered.get((user_id, key))
        if event is None:
            event = self._answered[(user_id, key)] = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)

    def _wake(self, claim: Claim) -> None:
        event = self._answered.pop((claim.user_id, claim.key), None)
        if event is not None:
            event.set()

    async def _maybe_purge(self) -> None:
        """Delete keys past their window, at most once an hour per process."""
        if self._clock.monotonic() - self._last_purge < _PURGE_EVERY_SECONDS:
            return
        self._last_purge = self._clock.monotonic()
        now = self._clock.now()
        try:
            await self.store.purge(now - IDEMPOTENCY_WINDOW, now)
        except Exception as exc:
            log.warning("could not purge old Idempotency-Keys (%s)", type(exc).__name__)


def _replayable(seen: Seen) -> Answer:
    answer = seen.answer
    if answer is None:  # pragma: no cover - a DONE row always has its status
        raise UnprocessableContent(KEY_REUSED)
    if answer.body is None:
        raise NotReplayable(
            f"This Idempotency-Key's request was already done (status {answer.status}), but its "
            f"answer ({answer.body_bytes} bytes) was too large to keep, so it cannot be sent "
            "again. Send a new Idempotency-Key to run the request again.",
            originalStatus=answer.status,
            originalRequestId=answer.request_id,
        )
    return answer


async def send_answer(send: Send, answer: Answer, headers: Iterable[tuple[bytes, bytes]]) -> None:
    """Send a stored answer again, with `headers` (the retry's own) and the replay mark."""
    body = answer.body or b""
    stored = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers]
    await send(
        {
            "type": "http.response.start",
            "status": answer.status,
            "headers": [
                *stored,
                (b"content-length", str(len(body)).encode()),
                *headers,
                REPLAYED_HEADER,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
