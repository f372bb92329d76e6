"""`POST /webhooks/stripe`: Stripe's deliveries, verified and stored; processed after the answer."""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, Request

from novo_gateway.billing import webhooks
from novo_gateway.billing.deps import WebhookWorkerDep
from novo_gateway.billing.schemas import WebhookAck
from novo_gateway.kit.deps import ClockDep, Session, SettingsDep
from novo_gateway.kit.errors import BadRequest, PayloadTooLarge, RequestTimeout, error_responses
from novo_gateway.kit.http_middleware import read_body

router = APIRouter(tags=["webhooks"])

# Stripe's events are small (an invoice's lines past the first ten are not embedded), and Stripe
# sends each delivery in one piece from its own network: a body larger or slower than this is
# not Stripe's. The deadline is also never longer than BODY_TIMEOUT_SECONDS.
WEBHOOK_MAX_BYTES = 512 * 1024
WEBHOOK_BODY_SECONDS = 10.0


@router.post(
    "/webhooks/stripe", responses=error_responses(BadRequest, RequestTimeout, PayloadTooLarge)
)
async def stripe_webhook(
    request: Request,
    session: Session,
    settings: SettingsDep,
    clock: ClockDep,
    worker: WebhookWorkerDep,
    background: BackgroundTasks,
) -> WebhookAck:
    """Check the `Stripe-Signature` of the raw body and store the event once by its id."""
    payload = await read_body(
        request,
        max_bytes=min(WEBHOOK_MAX_BYTES, settings.max_body_bytes),
        seconds=min(WEBHOOK_BODY_SECONDS, settings.body_timeout_seconds),
    )
    received = await webhooks.receive(
        session,
        payload,
        request.headers.get("stripe-signature"),
        secrets=settings.stripe_webhook_secret,
        now=clock.now(),
    )
    if received.handled and worker is not None:
        # Runs after the response, so after the session scope has committed the event.
        background.add_task(worker.process, received.event_id)
    return WebhookAck(
        received=True,
        duplicate=received.handled and not received.stored,
        ignored=not received.handled,
    )
