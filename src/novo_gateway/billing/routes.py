"""Routes of the billing domain: invoices, the portal, the subscription and changes to it.

Never billed and never refused for the subscription's state (a customer who may not call the
API can still see and fix their billing). `/billing/usage*` are the metering domain's.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Body

from novo_gateway.accounts.deps import CurrentAccount
from novo_gateway.billing import service
from novo_gateway.billing.deps import ForgetAccessDep, ReporterDep, StripeDep
from novo_gateway.billing.schemas import (
    CancelRequest,
    InvoiceList,
    NoSubscription,
    PortalRequest,
    PortalSession,
    Subscription,
    SubscriptionChange,
)
from novo_gateway.kit.deps import ClockDep, Session, SettingsDep
from novo_gateway.kit.errors import (
    BadGateway,
    BadRequest,
    Conflict,
    RateLimitExceeded,
    ServiceUnavailable,
    Unauthorized,
    error_responses,
)

router = APIRouter(prefix="/billing", tags=["billing"])

_AUTH_ERRORS = (BadRequest, Unauthorized, RateLimitExceeded)
_STRIPE_ERRORS = (Conflict, BadGateway, ServiceUnavailable)

MESSAGES: dict[service.Outcome, str] = {
    "canceled": "Your subscription has been canceled. The usage so far is invoiced now.",
    "cancel_scheduled": "Your subscription will be canceled at the end of the current billing "
    "period. You can keep using the API until then.",
    "already_canceled": "Your subscription is already canceled.",
    "resumed": "Your subscription will continue; the cancellation has been undone.",
    "subscribed": "You are subscribed again. You can use the API right away.",
    "active": "Your subscription is already active.",
}


@router.get("/invoices", responses=error_responses(*_AUTH_ERRORS, *_STRIPE_ERRORS))
async def list_invoices(user: CurrentAccount, stripe: StripeDep) -> InvoiceList:
    """The account's invoices (amounts in currency units) and the upcoming one, from Stripe."""
    return InvoiceList.of(*await service.invoices(stripe, user))


@router.post("/portal", responses=error_responses(*_AUTH_ERRORS, *_STRIPE_ERRORS))
async def create_portal_session(
    user: CurrentAccount,
    stripe: StripeDep,
    settings: SettingsDep,
    body: Annotated[PortalRequest | None, Body()] = None,
) -> PortalSession:
    """A Stripe billing portal link; `returnUrl` must be on an allowed origin."""
    return_url = body.return_url if body is not None else None
    url = await service.portal_url(stripe, settings, user, return_url)
    return PortalSession(url=url)


@router.post("/payment-method", responses=error_responses(*_AUTH_ERRORS, *_STRIPE_ERRORS))
async def create_payment_method_session(
    user: CurrentAccount,
    stripe: StripeDep,
    settings: SettingsDep,
    body: Annotated[PortalRequest | None, Body()] = None,
) -> PortalSession:
    """A Stripe link where the customer adds a payment method (saved as the default for their
    invoices), coming back to `returnUrl` (an allowed origin)."""
    return_url = body.return_url if body is not None else None
    url = await service.payment_method_url(stripe, settings, user, return_url)
    return PortalSession(url=url)


@router.get("/subscription", responses=error_responses(*_AUTH_ERRORS))
async def get_subscription(
    user: CurrentAccount, stripe: StripeDep, settings: SettingsDep, clock: ClockDep
) -> Subscription | NoSubscription:
    """The account's subscription as last heard from Stripe, whether it may call the API, and
    (read from Stripe) whether a payment method is on file."""
    grace = timedelta(days=settings.stripe_past_due_grace_days)
    view = await service.subscription_details(stripe, user, now=clock.now(), grace=grace)
    return Subscription.of(view) if user.subscription_id else NoSubscription.of(view)


@router.post("/subscription/cancel", responses=error_responses(*_AUTH_ERRORS, *_STRIPE_ERRORS))
async def cancel_subscription(
    user: CurrentAccount,
    session: Session,
    stripe: StripeDep,
    clock: ClockDep,
    reporter: ReporterDep,
    forget: ForgetAccessDep,
    body: Annotated[CancelRequest | None, Body()] = None,
) -> SubscriptionChange:
    """Cancel at the end of the period (default), or now with `{"immediately": true}`."""
    immediately = body.immediately if body is not None else False
    outcome = await service.cancel(
        session,
        stripe,
        user,
        immediately=immediately,
        now=clock.now(),
        reporter=reporter,
        forget=forget,
    )
    return SubscriptionChange.of(user, MESSAGES[outcome])


@router.post("/subscription/resume", responses=error_responses(*_AUTH_ERRORS, *_STRIPE_ERRORS))
@router.post("/subscribe", responses=error_responses(*_AUTH_ERRORS, *_STRIPE_ERRORS))
async def resume_subscription(
    user: CurrentAccount,
    session: Session,
    stripe: StripeDep,
    settings: SettingsDep,
    clock: ClockDep,
    forget: ForgetAccessDep,
) -> SubscriptionChange:
    """Undo a pending cancellation, or subscribe again after the subscription ended."""
    outcome = await service.resubscribe(
        session,
        stripe,
        settings,
        user,
        now=clock.now(),
        forget=forget,
    )
    return SubscriptionChange.of(user, MESSAGES[outcome])
