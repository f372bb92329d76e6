"""Who may make metered calls, by subscription status: the rules, apart from any caching.

- `active`, `trialing`: yes.
- `pending` (the account is not provisioned at Stripe yet) and `incomplete` (the first payment
  is still being confirmed): yes. A new account can call at once, as in the original; its usage
  is in the ledger and billing catches up once provisioning has run.
- `past_due`: yes during the grace period (STRIPE_PAST_DUE_GRACE_DAYS, counted from
  `past_due_since`), then no.
- anything else (`canceled`, `unpaid`, `incomplete_expired`, `paused`, unknown): no, 402.

Account and billing endpoints never ask: a refused customer can still see and fix their billing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from novo_gateway.accounts.models import SubscriptionStatus
from novo_gateway.kit.errors import PaymentRequired

ALLOWED: Final = frozenset(
    {
        SubscriptionStatus.ACTIVE,
        SubscriptionStatus.TRIALING,
        SubscriptionStatus.PENDING,
        SubscriptionStatus.INCOMPLETE,
    }
)

_PORTAL_HINT = "Update your payment method in the billing portal (POST /billing/portal)"
_SUBSCRIBE_HINT = "Subscribe again with POST /billing/subscribe"
MESSAGES: Final[dict[str, str]] = {
    SubscriptionStatus.PAST_DUE: (
        f"Your invoice is overdue and the grace period has ended. {_PORTAL_HINT} "
        "to keep calling the API."
    ),
    SubscriptionStatus.UNPAID: f"Your invoice is unpaid. {_PORTAL_HINT} to keep calling the API.",
    SubscriptionStatus.CANCELED: (
        f"Your subscription is canceled. {_SUBSCRIBE_HINT} to keep calling the API."
    ),
    SubscriptionStatus.INCOMPLETE_EXPIRED: (
        "Your subscription was never activated because its first payment "
        f"did not complete. {_SUBSCRIBE_HINT} to call the API."
    ),
    SubscriptionStatus.PAUSED: (
        f"Your subscription is paused. {_PORTAL_HINT} to resume it and call the API."
    ),
}
DEFAULT_MESSAGE: Final = (
    "Your subscription does not allow API calls right now. "
    "See GET /billing/subscription for its status."
)


@dataclass(frozen=True, slots=True)
class Standing:
    """The billing facts of one account that decide whether it may call the API."""

    status: str
    past_due_since: datetime | None


def grace_ends(standing: Standing, grace: timedelta) -> datetime | None:
    """When a past-due account stops being allowed (None: not past due, or start unknown)."""
    if standing.status != SubscriptionStatus.PAST_DUE or standing.past_due_since is None:
        return None
    return standing.past_due_since + grace


def refusal(standing: Standing, now: datetime, grace: timedelta) -> PaymentRequired | None:
    """The 402 to answer, or None when the account may call the metered API."""
    if standing.status in ALLOWED:
        return None
    if standing.status == SubscriptionStatus.PAST_DUE:
        ends = grace_ends(standing, grace)
        # Unknown start: the webhook that sets it is on its way; allow meanwhile.
        if ends is None or now < ends:
            return None
    message = MESSAGES.get(standing.status, DEFAULT_MESSAGE)
    return PaymentRequired(message, status=standing.status)
