"""Request dependencies of the billing domain: the Stripe client, the usage reporter, the
webhook worker, and the gateway's access cache's `forget` (published by the app, novo_gateway.app).

The first three are None when the process runs without them (no STRIPE_SECRET_KEY: the routes
answer as they always have without Stripe), so each is fetched as it was published, None included.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from novo_gateway.billing.reporter import UsageReporter
from novo_gateway.billing.service import AccessChanged
from novo_gateway.billing.stripe_client import StripeBilling
from novo_gateway.billing.webhooks import WebhookWorker


# `async def` for the reason kit.deps.from_state gives (no thread-pool hand-off).
async def get_stripe(request: Request) -> StripeBilling | None:
    """The Stripe client, or None when no Stripe key is configured."""
    stripe: StripeBilling | None = request.app.state.stripe
    return stripe


async def get_reporter(request: Request) -> UsageReporter | None:
    """The usage reporter (an immediate cancel reports the usage so far), None without Stripe."""
    reporter: UsageReporter | None = request.app.state.reporter
    return reporter


async def get_webhook_worker(request: Request) -> WebhookWorker | None:
    """The worker processing stored Stripe events, when the process has one."""
    worker: WebhookWorker | None = request.app.state.webhooks
    return worker


async def get_forget_access(request: Request) -> AccessChanged:
    """Drops an account's cached access standing in this process (the gateway's access cache)."""
    forget: AccessChanged = request.app.state.forget_access
    return forget


StripeDep = Annotated[StripeBilling | None, Depends(get_stripe)]
ReporterDep = Annotated[UsageReporter | None, Depends(get_reporter)]
WebhookWorkerDep = Annotated[WebhookWorker | None, Depends(get_webhook_worker)]
ForgetAccessDep = Annotated[AccessChanged, Depends(get_forget_access)]
