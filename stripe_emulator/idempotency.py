"""Idempotency keys as Stripe documents them.

The first result for a key is saved (errors too, unless the request failed parameter
validation before the endpoint began executing) and replayed with ``Idempotent-Replayed:
true``; the same key with other parameters gives 400 ``idempotency_error``; a request while
another with the same key is still executing gets 409; keys are pruned after 24 hours on the
emulator's global clock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from .errors import StripeError
from .messages import Response
from .store import Store

KEY_TTL = 24 * 3600
MAX_KEY_LENGTH = 255


def fingerprint(method: str, path: str, params: Mapping[str, Any]) -> str:
    raw = orjson.dumps([method, path, params], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(raw).hexdigest()


@dataclass
class Replay:
    response: Response


class IdempotencyLayer:
    def __init__(self, store: Store, max_keys: int = 100_000) -> None:
        self.store = store
        self.max_keys = max(1, max_keys)

    def begin(self, key: str, fp: str, now: int, request_id: str) -> Replay | None:
        """Register ``key`` as in flight, or return the saved response to replay.

        Raises 409 while another request holds the key, 400 on a parameter mismatch."""
        if len(key) > MAX_KEY_LENGTH:
            raise StripeError(
                400,
                f"Invalid idempotency key: must be at most {MAX_KEY_LENGTH} characters.",
                type="idempotency_error",
                before_execution=True,
            )
        with self.store.lock:
            entry = self.store.idempotency.get(key)
            if entry is not None and entry["created"] + KEY_TTL <= now:
                del self.store.idempotency[key]
                entry = None
            if entry is None:
                self._evict(now)
                self.store.idempotency[key] = {
                    "state": "in_flight",
                    "fingerprint": fp,
                    "created": now,
                    "request_id": request_id,
                }
                return None
            if entry["state"] == "in_flight":
                raise StripeError(
                    409,
                    "There is currently another in-progress request using this Idempotent Key "
                    "(that probably means you submitted twice, and the other request is still "
                    f"going through): {key}. Please try again later.",
                    code="idempotency_key_in_use",
                    headers={"Stripe-Should-Retry": "true"},
                    before_execution=True,
                )
            if entry["fingerprint"] != fp:
                raise StripeError(
                    400,
                    "Keys for idempotent requests can only be used with the same parameters they "
                    f"were first used with. Try using a key other than '{key}' if you meant to "
                    "execute a different request.",
                    type="idempotency_error",
                    before_execution=True,
                )
            headers = dict(entry["headers"])
            headers["Idempotent-Replayed"] = "true"
            headers["Original-Request"] = entry["request_id"]
            return Replay(
                Response(
                    status=entry["status"],
                    body=entry["body"].encode(),
                    content_type=entry["content_type"],
                    headers=headers,
                )
            )

    def _evict(self, now: int) -> None:
        """Drop expired keys from the oldest end, and the oldest beyond ``max_keys``."""
        keys = self.store.idempotency
        while keys:
            oldest = next(iter(keys))
            entry = keys[oldest]
            if entry["created"] + KEY_TTL <= now or len(keys) >= self.max_keys:
                del keys[oldest]
            else:
                break

    def finish(self, key: str, response: Response) -> None:
        with self.store.lock:
            entry = self.store.idempotency.get(key)
            if entry is None:
                return
            entry.update(
                state="done",
                status=response.status,
                body=response.body.decode(),
                content_type=response.content_type,
                headers={k: v for k, v in response.headers.items() if k.lower() != "request-id"},
            )

    def abandon(self, key: str) -> None:
        """Forget an in-flight key whose request never began executing."""
        with self.store.lock:
            entry = self.store.idempotency.get(key)
            if entry is not None and entry["state"] == "in_flight":
                del self.store.idempotency[key]
