"""Request and response bodies of the billing endpoints (camelCase on the wire, as the original)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, StrictBool
from pydantic.alias_generators import to_camel

from novo_gateway.accounts.models import SubscriptionStatus, User
from novo_gateway.billing.service import NO_SUBSCRIPTION, SETTING_UP, SubscriptionView
from novo_gateway.billing.stripe_types import InvoiceInfo, UpcomingInvoice


class CamelModel(BaseModel):
    """A body whose fields are camelCase on the wire."""

    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True)


class WebhookAck(CamelModel):
    """The answer to Stripe: any 2xx stops its retries."""

    received: bool
    duplicate: bool = False
    ignored: bool = False


# --- Invoices -----------------------------------------------------------------------------------

# Currencies Stripe counts in whole units (no minor unit).
ZERO_DECIMAL = frozenset(
    {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga"}
    | {"pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"}
)

# An amount in currency units, sent as a JSON number with two decimals.
Money = Annotated[Decimal, PlainSerializer(lambda d: float(d), return_type=float, when_used="json")]


def to_units(minor: int, currency: str) -> Decimal:
    """Stripe's amount in the currency's smallest unit → currency units, two decimals."""
    divisor = 1 if currency.lower() in ZERO_DECIMAL else 100
    return (Decimal(minor) / divisor).quantize(Decimal("0.01"))


class Invoice(CamelModel):
    id: str | None
    number: str | None
    status: str | None
    amount: Money = Field(description="The invoice total, in currency units.")
    amount_due: Money
    amount_paid: Money
    currency: str = Field(description="ISO currency code, upper-case.")
    created: datetime | None
    period_start: datetime | None
    period_end: datetime | None
    pdf_url: str | None
    hosted_url: str | None

    @classmethod
    def of(cls, info: InvoiceInfo) -> Invoice:
        currency = info.currency
        return cls(
            id=info.id,
            number=info.number,
            status=info.status,
            amount=to_units(info.total, currency),
            amount_due=to_units(info.amount_due, currency),
            amount_paid=to_units(info.amount_paid, currency),
            currency=currency.upper(),
            created=info.created,
            period_start=info.period_start,
            period_end=info.period_end,
            pdf_url=info.pdf_url,
            hosted_url=info.hosted_url,
        )


class InvoiceLine(CamelModel):
    description: str | None
    amount: Money
    quantity: int | None
    period_start: datetime | None
    period_end: datetime | None


class Upcoming(CamelModel):
    """Stripe's preview of the next invoice (usage so far in the current period)."""

    amount_due: Money
    total: Money
    currency: str
    period_start: datetime | None
    period_end: datetime | None
    next_payment_attempt: datetime | None
    lines: list[InvoiceLine]

    @classmethod
    def of(cls, info: UpcomingInvoice) -> Upcoming:
        currency = info.currency
        return cls(
            amount_due=to_units(info.amount_due, currency),
            total=to_units(info.total, currency),
            currency=currency.upper(),
            period_start=info.period_start,
            period_end=info.period_end,
            next_payment_attempt=info.next_payment_attempt,
            lines=[
                InvoiceLine(
                    description=line.description,
                    amount=to_units(line.amount, currency),
                    quantity=line.quantity,
                    period_start=line.period_start,
                    period_end=line.period_end,
                )
                for line in info.lines
            ],
        )


class InvoiceList(CamelModel):
    invoices: list[Invoice]
    upcoming: Upcoming | None

    @classmethod
    def of(cls, invoices: list[InvoiceInfo], upcoming: UpcomingInvoice | None) -> InvoiceList:
        return cls(
            invoices=[Invoice.of(inv) for inv in invoices],
            upcoming=Upcoming.of(upcoming) if upcoming is not None else None,
        )


# --- Requests -----------------------------------------------------------------------------------


class AccountBody(CamelModel):
    """A request body; the original's clients may also send their credentials in it (read by
    the auth dependency, never kept)."""

    model_config = ConfigDict(extra="forbid", validate_by_name=False)

    email: str | None = Field(default=None, exclude=True)
    password: str | None = Field(default=None, exclude=True, repr=False)


class PortalRequest(AccountBody):
    return_url: str | None = Field(
        default=None,
        max_length=2048,
        description="Where the portal sends the customer back; an allowed origin only.",
    )


class PortalSession(CamelModel):
    url: str


class CancelRequest(AccountBody):
    immediately: StrictBool = Field(
        default=False,
        description="Cancel now and invoice the usage so far, instead of at the period end.",
    )


# --- The subscription ---------------------------------------------------------------------------


class Subscription(CamelModel):
    id: str
    status: str
    current_period_start: datetime | None
    current_period_end: datetime | None
    cancel_at_period_end: bool
    past_due_since: datetime | None
    grace_ends_at: datetime | None = Field(
        description="When a past-due account stops being allowed to call the API."
    )
    api_access: bool = Field(description="Whether the account may call the metered API now.")
    payment_method_on_file: bool | None = Field(
        default=None,
        description="Whether Stripe holds a payment method to charge invoices past the free "
        "tier (null when it cannot be known now). Add one with POST /billing/payment-method.",
    )

    @classmethod
    def of(cls, view: SubscriptionView) -> Subscription:
        user = view.user
        return cls(
            id=user.subscription_id or "",
            status=user.subscription_status,
            current_period_start=user.current_period_start,
            current_period_end=user.current_period_end,
            cancel_at_period_end=user.cancel_at_period_end,
            past_due_since=user.past_due_since,
            grace_ends_at=view.grace_ends_at,
            api_access=view.api_access,
            payment_method_on_file=view.payment_method_on_file,
        )


class NoSubscription(CamelModel):
    """`status` is "pending" while the account is being provisioned, else "none"."""

    status: str
    message: str
    api_access: bool

    @classmethod
    def of(cls, view: SubscriptionView) -> NoSubscription:
        pending = view.user.subscription_status == SubscriptionStatus.PENDING
        return cls(
            status="pending" if pending else "none",
            message=SETTING_UP if pending else NO_SUBSCRIPTION,
            api_access=view.api_access,
        )


class SubscriptionChange(CamelModel):
    message: str
    status: str
    id: str | None
    cancel_at_period_end: bool
    current_period_end: datetime | None

    @classmethod
    def of(cls, user: User, message: str) -> SubscriptionChange:
        return cls(
            message=message,
            status=user.subscription_status,
            id=user.subscription_id,
            cancel_at_period_end=user.cancel_at_period_end,
            current_period_end=user.current_period_end,
        )
