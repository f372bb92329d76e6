"""The metered request path as pure ASGI: key auth, rate limits, access check, durable usage.

Every `/api/v1/*` request but the free `GET /api/v1/health` goes through these steps:

1. the per-client-IP limit (before auth, so floods of bad keys are limited too);
2. the API key (`Authorization: Bearer`, then `X-API-Key`, then `?api_key=`), checked against the
   in-process key cache (no database read for a known key);
3. the per-account limit, the `Idempotency-Key` header (≤255 characters) and the access check;
4. with an Idempotency-Key, the key claimed for this request's fingerprint, or its stored answer
   replayed, or 422/409 (gateway/idempotency.py);
5. the handler (the inner app) or the upstream proxy, with `scope["state"]["identity"]` set;
6. at `http.response.start`, one ledger event is queued with the status, the latency to first
   byte and the units, and the response waits until it is committed, then leaves with the
   rate-limit headers. A failed write turns the response into a 503: unrecorded means unbilled.

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
from typing import TYPE_CHECKING, Any

from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from novo_gateway.gateway.body import read_body, replay
from novo_gateway.gateway.idempotency import (
    Tap,
    fingerprint,
    parse_key,
    send_answer,
)
from novo_gateway.gateway.idempotency_store import Answer, Claim
from novo_gateway.gateway.routes_table import Route
from novo_gateway.kit import metrics
from novo_gateway.kit.client_ip import ClientIpResolver
from novo_gateway.kit.credentials import KEY_INVALID, KEY_REQUIRED, extract_api_key, without_api_key
from novo_gateway.kit.errors import (
    GatewayError,
    RateLimitExceeded,
    ServiceUnavailable,
    Unauthorized,
    error_response,
)
from novo_gateway.kit.limiter import LimitResult
from novo_gateway.metering.writer import NewUsageEvent, UsageWriteError

if TYPE_CHECKING:
    from novo_gateway.gateway.proxy import UpstreamProxy
    from novo_gateway.keys.cache import KeyIdentity
    from novo_gateway.runtime import Runtime

log = logging.getLogger("novo_gateway.gateway")

API_PREFIX = "/api/v1"
FREE_PATHS = frozenset({f"{API_PREFIX}/health"})
UNMATCHED_ENDPOINT = f"{API_PREFIX}/(unmatched)"
_PROXY_ROUTE = "novo.proxy_route"  # scope key: the upstream route serving this call
LIMIT_HEADERS = "limit_headers"  # state key: the admitted call's rate-limit headers
# Scope key: a call the fast path admitted, then handed over with its body (fast_path.py).
ADMITTED = "novo.admitted"

NOT_RECORDED = "Your call could not be recorded, so it was not billed. Please retry shortly."

_RATE_LIMIT_HEADERS = frozenset(
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
class Admitted:
    """A metered call that passed every check: who makes it, and the limit headers it shows."""

    identity: KeyIdentity
    account: LimitResult
    limit_headers: dict[str, str]
    idempotency_key: str | None
    started_at: datetime
    started: float  # clock.monotonic() at arrival


class MeteredPath:
    """The steps of the metered path, shared by the middleware and the fast path (fast_path.py)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.client_ip = ClientIpResolver(runtime.settings.trusted_proxies)
        self.idempotency = runtime.idempotency

    async def admit(self, scope: Scope) -> Admitted:
        """Steps 1 to 3: limits, key and access; raises `Refused` with the gateway's answer."""
        runtime, settings = self.runtime, self.settings
        clock = runtime.clock
        started_at, started = clock.now(), clock.monotonic()

        ip = self.client_ip.resolve(scope)
        shown = await self._limit("ip", ip, settings.global_rate_limit_per_minute, None)

        raw_key = extract_api_key(scope)
        if raw_key is None:
            raise Refused(Unauthorized(KEY_REQUIRED, headers=shown.headers()))
        identity = await runtime.keys.authenticate(raw_key)
        if identity is None:
            raise Refused(Unauthorized(KEY_INVALID, headers=shown.headers()))

        # From here on the headers show the account's limit (the one the contract documents).
        account = await self._limit(
            "account", str(identity.user_id), settings.rate_limit_per_minute, shown
        )
        limit_headers = account.headers()
        try:
            served = _served(scope, runtime.proxy)
            idempotency_key = parse_key(scope["headers"]) if served else None
        except GatewayError as err:
            raise Refused(_with_headers(err, limit_headers)) from err
        try:
            await runtime.access.check(identity.user_id)
        except GatewayError as err:
            raise Refused(_with_headers(err, limit_headers)) from err
        state: dict[str, Any] = scope.setdefault("state", {})
        state["identity"] = identity
        # For the 500 answered outside this middleware (error_handlers.py) to show them too.
        state[LIMIT_HEADERS] = limit_headers
        return Admitted(identity, account, limit_headers, idempotency_key, started_at, started)

    def event(
        self,
        call: Admitted,
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
            latency_ms=max(0, round((self.runtime.clock.monotonic() - call.started) * 1000)),
            units=_units(state, units),
            billable=not replayed and matched and status <= self.settings.billable_status_max,
            created_at=call.started_at,
            request_id=_request_id(state),
            idempotency_key=call.idempotency_key,
        )

    async def begin_idempotent(self, call: Admitted, scope: Scope, body: bytes) -> Claim | Answer:
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
        call: Admitted,
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
            return ServiceUnavailable(NOT_RECORDED, headers=call.limit_headers)
        await send_answer(send, answer, [*call.account.raw_headers(), *extra])
        return None

    async def record(self, event: NewUsageEvent) -> bool:
        """Queue the event and wait for its commit; False when it could not be written."""
        try:
            await self.runtime.usage.record(event)
        except UsageWriteError:
            return False
        return True

    async def _limit(
        self, bucket: str, identity: str, limit: int, shown: LimitResult | None
    ) -> LimitResult:
        """Hit one limit; refuse with 429 (or 503 when the limiter is down and fails closed)."""
        try:
            result = await self.runtime.limiter.hit_leased(bucket, identity, limit)
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


class MeteredPathMiddleware:
    """Wraps the app; handles only `/api/v1` paths and passes everything else straight through."""

    def __init__(self, app: ASGIApp, *, metered: MeteredPath) -> None:
        self.app = app
        self.metered = metered
        self.runtime = metered.runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_metered(scope):
            await self.app(scope, receive, send)
            return
        # A path nothing may route (a dot segment in any spelling): 400 before routing, unbilled.
        if (bad_path := self.runtime.proxy.screen(scope)) is not None:
            await error_response(bad_path)(scope, receive, send)
            return
        call: Admitted | None = scope.pop(ADMITTED, None)
        if call is None:
            try:
                call = await self.metered.admit(scope)
            except Refused as refused:
                await error_response(refused.error)(scope, receive, send)
                return
        if call.idempotency_key is None:
            await self._handle(call, scope, receive, send, None)
            return
        messages, body = await read_body(receive)
        if body is None:
            return  # the client went away before sending its body: nothing to run or record
        try:
            claimed = await self.metered.begin_idempotent(call, scope, body)
        except Refused as refused:
            await error_response(refused.error)(scope, receive, send)
            return
        if isinstance(claimed, Answer):
            failed = await self.metered.replay(call, claimed, scope, send)
            if failed is not None:
                await error_response(failed)(scope, receive, send)
            return
        tap = Tap(self.metered.idempotency, claimed)
        try:
            await self._handle(call, scope, replay(messages, receive), send, tap)
        finally:
            await tap.abandon()  # nothing once the answer is stored

    async def _handle(
        self, call: Admitted, scope: Scope, receive: Receive, send: Send, tap: Tap | None
    ) -> None:
        """Steps 5 and 6; `tap` keeps the response of a claimed Idempotency-Key."""
        metered, state = self.metered, scope["state"]
        inner = {**scope, "query_string": without_api_key(scope.get("query_string", b""))}
        response_started = False
        replaced = False
        encoded_headers = call.account.raw_headers()

        async def record(status: int) -> bool:
            endpoint, matched, units = _endpoint(inner, scope)
            event = metered.event(
                call,
                state,
                method=scope["method"],
                status=status,
                endpoint=endpoint,
                matched=matched,
                units=units,
            )
            if tap is not None:
                tap.label(event.endpoint, event.units, event.request_id)
            return await metered.record(event)

        async def metered_send(message: Message) -> None:
            nonlocal response_started, replaced
            if replaced:
                return  # the handler's response was replaced by a 503; drop the rest of it
            if message["type"] == "http.response.start":
                response_started = True
                if not await record(message["status"]):
                    replaced = True
                    err = ServiceUnavailable(NOT_RECORDED, headers=call.limit_headers)
                    await error_response(err)(scope, receive, send)
                    return
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k not in _RATE_LIMIT_HEADERS
                ]
                message = {**message, "headers": headers + encoded_headers}
            if tap is not None:
                await tap.sending(message)
            await send(message)

        try:
            await self._dispatch(inner, receive, metered_send, call.identity)
        except Exception:
            if not response_started:
                # The error renderer outside this middleware answers 500; record that first.
                response_started = True
                await record(500)
            raise

    async def _dispatch(
        self, scope: Scope, receive: Receive, send: Send, identity: KeyIdentity
    ) -> None:
        """The upstream proxy when one of its routes matches, else the inner app."""
        route = self.runtime.proxy.match(scope["path"])
        if route is None:
            await self.app(scope, receive, send)
            return
        scope[_PROXY_ROUTE] = route
        await self.runtime.proxy.forward(route, scope, receive, send, identity)


class Refused(Exception):
    """The gateway itself answers (401, 429, 400, 402, 503); nothing is recorded."""

    def __init__(self, error: GatewayError) -> None:
        super().__init__(error.message)
        self.error = error


def is_metered(scope: Scope) -> bool:
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    if path != API_PREFIX and not path.startswith(API_PREFIX + "/"):
        return False
    return not (path in FREE_PATHS and scope["method"] in ("GET", "HEAD"))


def _served(scope: Scope, proxy: UpstreamProxy) -> bool:
    """Whether an upstream route (any method) or an endpoint serves this method at this path:
    the key of a request the router answers 404 or 405 is not looked at, so a reused one cannot
    turn that answer into a 422."""
    if proxy.match(scope["path"]) is not None:
        return True
    router = getattr(scope.get("app"), "router", None)
    if router is None:  # the fast path: it serves only what it matched
        return True
    return any(route.matches(scope)[0] is Match.FULL for route in router.routes)


def _endpoint(inner: Scope, outer: Scope) -> tuple[str, bool, int]:
    """The call's route template with its full path, whether a route matched, and its units."""
    proxy_route: Route | None = inner.get(_PROXY_ROUTE)
    if proxy_route is not None:
        # One name per route (its prefix), whatever path the client sent under it.
        return proxy_route.label[:200], True, proxy_route.units
    route = inner.get("route")
    path = getattr(route, "path", None)
    if not isinstance(path, str):
        return UNMATCHED_ENDPOINT, False, 1
    # Under a Mount the route's path is relative; the mount's prefix is in the root path.
    mount_prefix = inner.get("root_path", "")[len(outer.get("root_path", "")) :]
    return (mount_prefix + path)[:200], True, 1


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
