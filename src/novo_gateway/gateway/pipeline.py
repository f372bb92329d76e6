"""The metered-call pipeline: admission, the usage event and the answer's limit headers.

Every `/api/v1/*` request but the free `GET /api/v1/health` goes through these steps, whichever
entry serves it (the middleware, gateway/middleware.py, or the fast path, gateway/fast_path.py):

1. the per-client-IP limit (before auth, so floods of bad keys are limited too);
2. the API key (kit/credentials.py), checked against the in-process key cache (no database read
   for a known key);
3. the per-account limit, the `Idempotency-Key` header (≤255 characters) and the access check;
4. with an Idempotency-Key, the key claimed for this request's fingerprint, or its stored answer
   replayed, or 422/409 (gateway/idempotency.py);
5. the handler or the upstream proxy, with `scope["state"]["identity"]` set;
6. at `http.response.start`, one ledger event is queued with the status, the latency to first
   byte and the units, and the response waits until it is committed, then leaves with the
   account's rate-limit headers. A failed write turns the response into a 503: unrecorded means
   unbilled.

An admitted call is one `MeteredCall`, kept in the scope under `CALL` (`call_of`) from admission
to the answer. It bills its route's units: a built-in endpoint's from the endpoint table, a
proxied route's from the routes file. A handler outside the table may set its own with
`request.state.billed_units` (the layers below the gateway cannot name the call).

Not recorded: refusals of the gateway itself (401, 429, a bad or misused Idempotency-Key, the
access check, 503 when the limiter's Redis is down). A 429 is therefore never billed and costs
no write, so a client hammering past its limit adds no load to the ledger. Calls that reach a
handler are recorded whatever their status; billable only when status <= BILLABLE_STATUS_MAX
and a route matched (a redirect or 404 of an unknown path is never billed). A replayed answer
is recorded, never billed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from starlette.routing import Match
from starlette.types import Scope, Send

from novo_gateway.gateway.access import AccessPolicy
from novo_gateway.gateway.idempotency import Idempotency, fingerprint, parse_key, send_answer
from novo_gateway.gateway.idempotency_store import Answer, Claim
from novo_gateway.gateway.proxy import UpstreamProxy
from novo_gateway.gateway.routes_table import Route
from novo_gateway.keys.cache import KeyCache, KeyIdentity
from novo_gateway.kit import metrics
from novo_gateway.kit.client_ip import ClientIpResolver
from novo_gateway.kit.clock import Clock
from novo_gateway.kit.config import Settings
from novo_gateway.kit.credentials import KEY_INVALID, KEY_REQUIRED, extract_api_key, without_api_key
from novo_gateway.kit.errors import (
    GatewayError,
    RateLimitExceeded,
    ServiceUnavailable,
    Unauthorized,
)
from novo_gateway.kit.limiter import LimitResult, RateLimiter
from novo_gateway.metering.writer import NewUsageEvent, UsageWriteError, UsageWriter
from novo_gateway.novo_api.endpoints import API_PREFIX, FREE_PATHS, UNITS_PER_CALL, units_of

log = logging.getLogger("novo_gateway.gateway")

CALL: Final = "novo.call"  # scope key: the admitted call (`MeteredCall`)
UNMATCHED_ENDPOINT: Final = f"{API_PREFIX}/(unmatched)"
NOT_RECORDED: Final = "Your call could not be recorded, so it was not billed. Please retry shortly."

_RATE_LIMIT_HEADERS: Final = frozenset(
    name.lower().encode()
    for name in (
        "X-RateLimit-Limit",
        "X-RateLimit-Remaining",
        "X-RateLimit-Reset",
        "RateLimit-Limit",
        "RateLimit-Remaining",
        "RateLimit-Reset",
    )
)


@dataclass(slots=True)
class MeteredCall:
    """A metered call that passed every check: who makes it, its limits, and what serves it."""

    identity: KeyIdentity
    account: LimitResult
    limit_headers: dict[str, str]
    idempotency_key: str | None
    started_at: datetime
    started: float  # clock.monotonic() at arrival
    proxy_route: Route | None = None  # the upstream route serving it, once dispatched


class Refused(Exception):
    """The gateway itself answers (401, 429, 400, 402, 503); nothing is recorded."""

    def __init__(self, error: GatewayError) -> None:
        super().__init__(error.message)
        self.error = error


class MeteredPipeline:
    """The steps of a metered call, shared by the middleware and the fast path."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock,
        keys: KeyCache,
        limiter: RateLimiter,
        access: AccessPolicy,
        idempotency: Idempotency,
        usage: UsageWriter,
        proxy: UpstreamProxy,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.keys = keys
        self.limiter = limiter
        self.access = access
        self.idempotency = idempotency
        self.usage = usage
        self.proxy = proxy
        self.client_ip = ClientIpResolver(settings.trusted_proxies)

    async def admit(self, scope: Scope) -> MeteredCall:
        """Steps 1 to 3: limits, key and access; raises `Refused` with the gateway's answer.

        The admitted call is put in the scope under `CALL`."""
        settings, clock = self.settings, self.clock
        started_at, started = clock.now(), clock.monotonic()

        ip = self.client_ip.resolve(scope)
        shown = await self._limit("ip", ip, settings.global_rate_limit_per_minute, None)

        raw_key = extract_api_key(scope)
        if raw_key is None:
            raise Refused(Unauthorized(KEY_REQUIRED, headers=shown.headers()))
        identity = await self.keys.authenticate(raw_key)
        if identity is None:
            raise Refused(Unauthorized(KEY_INVALID, headers=shown.headers()))

        # From here on the headers show the account's limit (the one the contract documents).
        account = await self._limit(
            "account", str(identity.user_id), settings.rate_limit_per_minute, shown
        )
        limit_headers = account.headers()
        try:
            idempotency_key = parse_key(scope["headers"]) if self._served(scope) else None
        except GatewayError as err:
            raise Refused(_with_headers(err, limit_headers)) from err
        try:
            await self.access.check(identity.user_id)
        except GatewayError as err:
            raise Refused(_with_headers(err, limit_headers)) from err
        scope.setdefault("state", {})["identity"] = identity
        call = MeteredCall(identity, account, limit_headers, idempotency_key, started_at, started)
        scope[CALL] = call
        return call

    def event(
        self,
        call: MeteredCall,
        state: dict[str, Any],
        *,
        method: str,
        status: int,
        endpoint: str,
        matched: bool,
        units: int,
        replayed: bool = False,
    ) -> NewUsageEvent:
        """The ledger event of an admitted call answered with `status` (step 6).

        A replayed answer is recorded but never billed: the call it repeats was.
        """
        return NewUsageEvent(
            user_id=call.identity.user_id,
            api_key_id=call.identity.key_id,
            endpoint=endpoint,
            method=method[:8],
            status=status,
            latency_ms=max(0, round((self.clock.monotonic() - call.started) * 1000)),
            units=_units(state, units),
            billable=not replayed and matched and status <= self.settings.billable_status_max,
            created_at=call.started_at,
            request_id=_request_id(state),
            idempotency_key=call.idempotency_key,
        )

    async def begin_idempotent(
        self, call: MeteredCall, scope: Scope, body: bytes
    ) -> Claim | Answer:
        """Step 4: claim the call's Idempotency-Key, or get the answer to replay; or refuse."""
        assert call.idempotency_key is not None
        query = without_api_key(scope.get("query_string", b""))
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        print_ = fingerprint(scope["method"], raw_path, query, body)
        try:
            return await self.idempotency.begin(
                call.identity.user_id, call.idempotency_key, print_, call.started_at
            )
        except GatewayError as err:
            raise Refused(_with_headers(err, call.limit_headers)) from err

    async def replay(
        self,
        call: MeteredCall,
        answer: Answer,
        scope: Scope,
        send: Send,
        extra: tuple[tuple[bytes, bytes], ...] = (),
    ) -> GatewayError | None:
        """Send a stored answer again (recorded, not billed); the error to send if not recorded."""
        event = self.event(
            call,
            scope["state"],
            method=scope["method"],
            status=answer.status,
            endpoint=answer.endpoint,
            matched=True,
            units=answer.units,
            replayed=True,
        )
        if not await self.record(event):
            return self.not_recorded(call)
        await send_answer(send, answer, [*call.account.raw_headers(), *extra])
        return None

    async def record(self, event: NewUsageEvent) -> bool:
        """Queue the event and wait for its commit; False when it could not be written."""
        try:
            await self.usage.record(event)
        except UsageWriteError:
            return False
        return True

    @staticmethod
    def not_recorded(call: MeteredCall) -> ServiceUnavailable:
        """The 503 that replaces an answer whose event could not be written."""
        return ServiceUnavailable(NOT_RECORDED, headers=call.limit_headers)

    @staticmethod
    def answer_headers(call: MeteredCall, headers: list[Any]) -> list[Any]:
        """A handler's response headers with the account's limit headers in place of its own."""
        kept = [(k, v) for k, v in headers if k not in _RATE_LIMIT_HEADERS]
        return kept + call.account.raw_headers()

    async def _limit(
        self, bucket: str, identity: str, limit: int, shown: LimitResult | None
    ) -> LimitResult:
        """Hit one limit; refuse with 429 (or 503 when the limiter is down and fails closed)."""
        try:
            result = await self.limiter.hit_leased(bucket, identity, limit)
        except ServiceUnavailable as err:
            extra = shown.headers() if shown is not None else {}
            raise Refused(_with_headers(err, extra)) from err
        if not result.allowed:
            metrics.rate_limited(bucket)
            raise Refused(
                RateLimitExceeded(
                    f"You have exceeded {limit} requests per minute. Please slow down.",
                    headers=result.headers(),
                    retryAfter=result.reset_in,
                )
            )
        return result

    def _served(self, scope: Scope) -> bool:
        """Whether an upstream route (any method) or an endpoint serves this method at this path:
        the key of a request the router answers 404 or 405 is not looked at, so a reused one
        cannot turn that answer into a 422."""
        if self.proxy.match(scope["path"]) is not None:
            return True
        router = getattr(scope.get("app"), "router", None)
        if router is None:  # the fast path: it serves only what it matched
            return True
        return any(route.matches(scope)[0] is Match.FULL for route in router.routes)


def call_of(scope: Scope) -> MeteredCall | None:
    """The admitted call of this request, if the pipeline admitted one."""
    call: MeteredCall | None = scope.get(CALL)
    return call


def limit_headers_of(scope: Scope) -> dict[str, str]:
    """The limit headers of the request's admitted call, for an answer given outside it."""
    call = call_of(scope)
    return call.limit_headers if call is not None else {}


def is_metered(scope: Scope) -> bool:
    """Whether the pipeline meters this request (under the prefix, and not a free path)."""
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    if path != API_PREFIX and not path.startswith(API_PREFIX + "/"):
        return False
    return not (path in FREE_PATHS and scope["method"] in ("GET", "HEAD"))


def endpoint_of(call: MeteredCall, inner: Scope, outer: Scope) -> tuple[str, bool, int]:
    """The call's route template with its full path, whether a route matched, and its units."""
    proxy_route = call.proxy_route
    if proxy_route is not None:
        # One name per route (its prefix), whatever path the client sent under it.
        return proxy_route.label[:200], True, proxy_route.units
    route = inner.get("route")
    path = getattr(route, "path", None)
    if not isinstance(path, str):
        return UNMATCHED_ENDPOINT, False, UNITS_PER_CALL
    # Under a Mount the route's path is relative; the mount's prefix is in the root path.
    mount_prefix = inner.get("root_path", "")[len(outer.get("root_path", "")) :]
    template = mount_prefix + path
    return template[:200], True, units_of(outer["method"], template)


def _units(state: dict[str, Any], default: int) -> int:
    """Units billed for the call: what the handler set in `state["billed_units"]`, else default."""
    units = state.get("billed_units", default)
    if isinstance(units, bool) or not isinstance(units, int) or units < 0:
        log.warning("ignoring invalid billed_units %r; billing %d", units, default)
        return default
    return units


def _request_id(state: dict[str, Any]) -> str | None:
    request_id = state.get("request_id")
    return str(request_id)[:64] if request_id else None


def _with_headers(err: GatewayError, headers: dict[str, str]) -> GatewayError:
    err.headers = {**headers, **err.headers}
    return err
