"""`POST /webhooks/stripe`: Stripe's deliveries, verified and stored; processed after the answer."""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, Request

from novo_gateway.billing import webhooks
from novo_gateway.billing.schemas import WebhookAck
from novo_gateway.deps import RuntimeDep, Session
from novo_gateway.errors import BadRequest, error_responses

router = APIRouter(tags=["webhooks"])


@router.post("/webhooks/stripe", responses=error_responses(BadRequest))
async def stripe_webhook(
    request: Request, session: Session, runtime: RuntimeDep, background: BackgroundTasks
) -> WebhookAck:
    """Check the `Stripe-Signature` of the raw body and store the event once by its id."""
    received = await webhooks.receive(
        session,
        await request.body(),
        request.headers.get("stripe-signature"),
        secrets=runtime.settings.stripe_webhook_secret,
        now=runtime.clock.now(),
    )
    if received.handled and runtime.webhooks is not None:
        # Runs after the response, so after the session scope has committed the event.
        background.add_task(runtime.webhooks.process, received.event_id)
    return WebhookAck(
        received=True,
        duplicate=received.handled and not received.stored,
        ignored=not received.handled,
    )
