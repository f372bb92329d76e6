"""The metered pipeline (pipeline.py) as the app's ASGI middleware: every metered request the
fast path does not answer, through the framework's routing, its handlers or the upstream proxy."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from novo_gateway.gateway.body import read_body, replay
from novo_gateway.gateway.idempotency import Tap
from novo_gateway.gateway.idempotency_store import Answer
from novo_gateway.gateway.pipeline import (
    MeteredCall,
    MeteredPipeline,
    Refused,
    call_of,
    endpoint_of,
    is_metered,
)
from novo_gateway.kit.credentials import without_api_key
from novo_gateway.kit.errors import error_response


class MeteredMiddleware:
    """Wraps the app; handles only `/api/v1` paths and passes everything else straight through.

    A call the fast path admitted, then handed over with its body, comes in already admitted."""

    def __init__(self, app: ASGIApp, *, pipeline: MeteredPipeline) -> None:
        self.app = app
        self.pipeline = pipeline
        self.proxy = pipeline.proxy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_metered(scope):
            await self.app(scope, receive, send)
            return
        # A path nothing may route (a dot segment in any spelling): 400 before routing, unbilled.
        if (bad_path := self.proxy.screen(scope)) is not None:
            await error_response(bad_path)(scope, receive, send)
            return
        call = call_of(scope)
        if call is None:
            try:
                call = await self.pipeline.admit(scope)
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
            claimed = await self.pipeline.begin_idempotent(call, scope, body)
        except Refused as refused:
            await error_response(refused.error)(scope, receive, send)
            return
        if isinstance(claimed, Answer):
            failed = await self.pipeline.replay(call, claimed, scope, send)
            if failed is not None:
                await error_response(failed)(scope, receive, send)
            return
        tap = Tap(self.pipeline.idempotency, claimed)
        try:
            await self._handle(call, scope, replay(messages, receive), send, tap)
        finally:
            await tap.abandon()  # nothing once the answer is stored

    async def _handle(
        self, call: MeteredCall, scope: Scope, receive: Receive, send: Send, tap: Tap | None
    ) -> None:
        """Steps 5 and 6; `tap` keeps the response of a claimed Idempotency-Key."""
        pipeline, state = self.pipeline, scope["state"]
        inner = {**scope, "query_string": without_api_key(scope.get("query_string", b""))}
        response_started = False
        replaced = False

        async def record(status: int) -> bool:
            endpoint, matched, units = endpoint_of(call, inner, scope)
            event = pipeline.event(
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
            return await pipeline.record(event)

        async def metered_send(message: Message) -> None:
            nonlocal response_started, replaced
            if replaced:
                return  # the handler's response was replaced by a 503; drop the rest of it
            if message["type"] == "http.response.start":
                response_started = True
                if not await record(message["status"]):
                    replaced = True
                    await error_response(pipeline.not_recorded(call))(scope, receive, send)
                    return
                headers = pipeline.answer_headers(call, message.get("headers", []))
                message = {**message, "headers": headers}
            if tap is not None:
                await tap.sending(message)
            await send(message)

        try:
            await self._dispatch(call, inner, receive, metered_send)
        except Exception:
            if not response_started:
                # The error renderer outside this middleware answers 500; record that first.
                response_started = True
                await record(500)
            raise

    async def _dispatch(
        self, call: MeteredCall, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """The upstream proxy when one of its routes matches, else the inner app."""
        route = self.proxy.match(scope["path"])
        if route is None:
            await self.app(scope, receive, send)
            return
        call.proxy_route = route
        await self.proxy.forward(route, scope, receive, send, call.identity)
