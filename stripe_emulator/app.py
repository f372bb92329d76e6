"""The ASGI application: auth, rate limits, faults, idempotency and routing around handlers.

Raw ASGI (no framework) so that a ``drop`` fault can process a request and then close the
connection without answering, exactly what a client sees when a response is lost.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

import orjson

from . import control, metering, pages
from .config import EmulatorConfig
from .emulator import Emulator
from .errors import StripeError, unsupported_param
from .events import RequestInfo, current_request
from .idempotency import fingerprint
from .ids import request_id as new_request_id
from .messages import ApiRequest, Response, json_response
from .sdk_params import check_params
from .wire import parse_form

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("stripe_emulator")

NO_KEY_MESSAGE = (
    "You did not provide an API key. You need to provide your API key in the Authorization "
    "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See "
    "https://stripe.com/docs/api#authentication for details, or we can help at "
    "https://support.stripe.com/."
)


class ConnectionDropped(Exception):
    """Raised when a ``drop`` fault cannot reach the server's transport to close it."""


class EmulatorApp:
    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = await _read_body(receive)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        path: str = scope["path"]
        base_url = _base_url(scope, headers)
        self.emulator.state.note_base_url(base_url)
        if path.startswith("/_emulator"):
            query = scope.get("query_string", b"").decode("latin-1")
            response = await control.handle(
                self.emulator, scope["method"], path, query, headers, body
            )
        elif path.startswith(pages.PREFIX):
            query = scope.get("query_string", b"").decode("latin-1")
            response = pages.handle(
                self.emulator.state, scope["method"], path, base_url, query, body
            )
        else:
            api_response = await self._api(scope, headers, body, base_url, send)
            if api_response is None:
                return
            response = api_response
        await _send(send, response)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.emulator.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await asyncio.to_thread(self.emulator.stop)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _api(
        self, scope: Scope, headers: dict[str, str], body: bytes, base_url: str, send: Send
    ) -> Response | None:
        emulator = self.emulator
        method: str = scope["method"]
        path: str = scope["path"]
        rid = new_request_id()
        v2 = path.startswith("/v2/")
        extra = {
            "Request-Id": rid,
            "Stripe-Version": headers.get("stripe-version") or emulator.config.api_version,
        }
        key = headers.get("idempotency-key") if method in ("POST", "DELETE") else None
        began = False
        fault = None
        entry = None
        try:
            found = emulator.router.match(method, path)
            if found is None:
                raise StripeError(
                    404,
                    f"Unrecognized request URL ({method}: {path}). Please see "
                    "https://stripe.com/docs or we can help at https://support.stripe.com/.",
                )
            route, path_params = found
            api_key = _authenticate(emulator, route.auth, headers, v2)
            fault = emulator.faults.take(method, path)
            if fault is not None and fault.kind in ("429", "500"):
                return _fault_response(fault.kind, fault.retry_after, rid, v2, extra)
            if not emulator.limiter.allow():
                raise StripeError(
                    429,
                    "Request rate limit exceeded. You can make up to "
                    f"{emulator.limiter.rate:g} requests per second on this emulator. Retry your "
                    "requests after a short wait, with exponential backoff and jitter.",
                    code="rate_limit",
                    before_execution=True,
                )
            params = _params(method, scope, body, v2)
            entry = emulator.journal.record(method, path, route.template, params, headers)
            check_params(method, route.template, params, v2=v2)
            request = ApiRequest(
                method=method,
                path=path,
                params=params,
                headers=headers,
                request_id=rid,
                base_url=base_url,
                path_params=path_params,
                api_key=api_key,
                idempotency_key=key,
                v2=v2,
            )
            if key is not None:
                replay = emulator.idempotency.begin(
                    key, fingerprint(method, path, params), emulator.clock.now(), rid
                )
                if replay is not None:
                    replay.response.headers.update({"Request-Id": rid, "Idempotency-Key": key})
                    return replay.response
                began = True
            if fault is not None and fault.kind == "delay":
                await asyncio.sleep(fault.delay)
            response = _execute(emulator, route.handler, request)
        except StripeError as err:
            if entry is not None:
                entry.refused(err)
            if began and key is not None and err.before_execution:
                emulator.idempotency.abandon(key)
                began = False
            response = _error_response(err, rid, v2)
        except Exception:
            log.exception("error in %s %s", method, path)
            response = _error_response(
                StripeError(500, "An unknown error occurred", type="api_error"), rid, v2
            )
        response.headers = {**extra, **response.headers}
        if key is not None:
            response.headers["Idempotency-Key"] = key
            if began:
                emulator.idempotency.finish(key, response)
        if fault is not None and fault.kind == "drop":
            await _drop(send)
            return None
        return response


def _execute(emulator: Emulator, handler: Any, request: ApiRequest) -> Response:
    token = current_request.set(RequestInfo(request.request_id, request.idempotency_key))
    try:
        with emulator.store.lock:
            result = handler(emulator.state, request)
            emulator.store.mark_dirty()
    except StripeError as err:
        if err.code == "parameter_unknown":
            # The SDK's types (checked before the handler) know this parameter: Stripe accepts
            # it, the emulator does not model it.
            raise unsupported_param(err.param or "") from None
        raise
    finally:
        current_request.reset(token)
    if isinstance(result, Response):
        return result
    return json_response(result)


def _authenticate(emulator: Emulator, auth: str, headers: dict[str, str], v2: bool) -> str | None:
    if auth == "none":
        return None
    raw = headers.get("authorization", "")
    token = ""
    scheme, _, value = raw.partition(" ")
    if scheme.lower() == "bearer":
        token = value.strip()
    elif scheme.lower() == "basic":
        try:
            token = base64.b64decode(value.strip()).decode().split(":", 1)[0]
        except (ValueError, UnicodeDecodeError):
            token = ""
    if not token:
        raise StripeError(401, NO_KEY_MESSAGE, before_execution=True)
    if auth == "session":
        metering.check_session(emulator.state, token)
        return token
    if not token.startswith(("sk_test_", "rk_test_")):
        shown = token[:8] + "*" * max(0, len(token) - 12) + token[-4:] if len(token) > 12 else token
        raise StripeError(401, f"Invalid API Key provided: {shown}", before_execution=True)
    return token


def _params(method: str, scope: Scope, body: bytes, v2: bool) -> dict[str, Any]:
    query = scope.get("query_string", b"").decode("latin-1")
    pairs = parse_qsl(query, keep_blank_values=True)
    params = parse_form(pairs)
    if method != "POST":
        return params
    if v2:
        if not body.strip():
            return params
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise StripeError(
                400, "Invalid JSON body.", code="invalid_request", before_execution=True
            ) from exc
        if not isinstance(data, dict):
            raise StripeError(400, "Invalid JSON body.", before_execution=True)
        return {**params, **data}
    form = parse_form(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    return {**params, **form}


def _error_response(err: StripeError, rid: str, v2: bool) -> Response:
    body = err.body_v2() if v2 else err.body_v1(rid)
    return json_response(body, status=err.status, headers=err.headers)


def _fault_response(
    kind: str, retry_after: int, rid: str, v2: bool, extra: dict[str, str]
) -> Response:
    if kind == "429":
        err = StripeError(
            429,
            "Request rate limit exceeded (injected fault). Retry your requests after a short "
            "wait, with exponential backoff and jitter.",
            code="rate_limit",
            headers={"Retry-After": str(retry_after)},
        )
    else:
        err = StripeError(500, "An unknown error occurred (injected fault).", type="api_error")
    response = _error_response(err, rid, v2)
    response.headers = {**extra, **response.headers}
    return response


async def _drop(send: Send) -> None:
    """Close the client connection without a response (uvicorn's transport, else raise)."""
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise ConnectionDropped("injected fault: connection dropped")
    transport.abort()
    for _ in range(50):
        if getattr(cycle, "disconnected", True):
            return
        await asyncio.sleep(0)


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _send(send: Send, response: Response) -> None:
    headers = [(b"content-type", response.content_type.encode())]
    headers.append((b"content-length", str(len(response.body)).encode()))
    headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.items()]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})


def _base_url(scope: Scope, headers: dict[str, str]) -> str:
    host = headers.get("host")
    if not host:
        server = scope.get("server") or ("127.0.0.1", 80)
        host = f"{server[0]}:{server[1]}"
    return f"{scope.get('scheme', 'http')}://{host}"


def create_app(emulator: Emulator | None = None, **config: Any) -> EmulatorApp:
    """An ASGI app for a new (or the given) emulator; ``config`` fields as ``EmulatorConfig``."""
    return EmulatorApp(emulator or Emulator(EmulatorConfig(**config)))
