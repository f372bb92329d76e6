"""Request and response bodies of the accounts domain (camelCase on the wire, as the original).

Request bodies forbid unknown fields, so `{"isAdmin": true}` or `{"subscriptionStatus": ...}` is
a 400 naming the field rather than something silently dropped or, worse, honoured.
"""

from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import Annotated, Any

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    model_serializer,
)
from pydantic_core import PydanticCustomError

from novo_gateway.accounts.models import User
from novo_gateway.accounts.passwords import MAX_LENGTH, MIN_LENGTH
from novo_gateway.keys.schemas import (
    NO_CONTROL_CHARACTERS,
    ApiKeyCreated,
    ApiKeyInfo,
    CamelModel,
)

NAME_MAX_LENGTH = 200
EMAIL_MAX_LENGTH = 320


def normalise_email(value: str) -> str:
    """The address as accounts are keyed: width-mapped, checked for shape, case-folded, NFC.

    The mapping is RFC 8265's UsernameCaseMapped profile (3.3.2): fullwidth and halfwidth code
    points become their ordinary forms (fullwidth `ada` is `ada`), then Unicode default case
    folding (`ß` is `ss`), then NFC; so two addresses that look alike to a person name one
    account. The shape is checked by email-validator (no DNS lookup) after the width mapping.
    """
    try:
        checked = validate_email(_width_mapped(value).strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        reason = str(exc).rstrip(".")
        raise PydanticCustomError(
            "email", "not a valid email address ({reason})", {"reason": reason}
        ) from None
    canonical = unicodedata.normalize("NFC", checked.normalized.casefold())
    if len(canonical) > EMAIL_MAX_LENGTH:
        raise PydanticCustomError("email", "not a valid email address (too long)")
    return canonical


def _width_mapped(value: str) -> str:
    """RFC 8264's width mapping rule: `<wide>` and `<narrow>` code points to their decomposition."""
    if value.isascii():
        return value
    return "".join(
        unicodedata.normalize("NFKC", char)
        if unicodedata.decomposition(char).startswith(("<wide>", "<narrow>"))
        else char
        for char in value
    )


Email = Annotated[
    str,
    Field(max_length=EMAIL_MAX_LENGTH, json_schema_extra={"format": "email"}),
    AfterValidator(normalise_email),
]
NewPassword = Annotated[str, Field(min_length=MIN_LENGTH, max_length=MAX_LENGTH, repr=False)]
Password = Annotated[str, Field(min_length=1, max_length=MAX_LENGTH, repr=False)]
Name = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        min_length=1,
        max_length=NAME_MAX_LENGTH,
        pattern=NO_CONTROL_CHARACTERS,
    ),
]


class RegisterRequest(CamelModel):
    """`POST /auth/register`. `name` may be left out: the email's local part is used then."""

    model_config = ConfigDict(extra="forbid", validate_by_name=False)

    email: Email
    password: NewPassword
    name: Name | None = None

    def display_name(self) -> str:
        return self.name or self.email.split("@", 1)[0][:NAME_MAX_LENGTH]


class LoginRequest(CamelModel):
    """`POST /auth/login`."""

    model_config = ConfigDict(extra="forbid", validate_by_name=False)

    email: Email
    password: Password


class UserSummary(CamelModel):
    id: int
    email: str
    name: str

    @classmethod
    def of(cls, user: User) -> UserSummary:
        return cls(id=user.id, email=user.email, name=user.name)


class SubscriptionSummary(CamelModel):
    """The account's subscription as billing last recorded it: `{id, status, currentPeriodStart,
    currentPeriodEnd}`, or `{"status": "pending"}` until Stripe provisioning has finished."""

    id: str | None = None
    status: str
    current_period_start: datetime | None = None
    current_period_end: datetime | None = None

    @model_serializer(mode="wrap")
    def _drop_unknown(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        return {k: v for k, v in data.items() if v is not None} if isinstance(data, dict) else data

    @classmethod
    def of(cls, user: User) -> SubscriptionSummary:
        if user.subscription_id is None:
            return cls(status=user.subscription_status)
        return cls(
            id=user.subscription_id,
            status=user.subscription_status,
            current_period_start=user.current_period_start,
            current_period_end=user.current_period_end,
        )


class RegisterResponse(CamelModel):
    message: str
    user: UserSummary
    api_key: ApiKeyCreated
    subscription: SubscriptionSummary


class LoginUser(UserSummary):
    subscription_status: str

    @classmethod
    def of(cls, user: User) -> LoginUser:
        return cls(
            id=user.id,
            email=user.email,
            name=user.name,
            subscription_status=user.subscription_status,
        )


class SessionInfo(CamelModel):
    """A login session token: send it as `Authorization: Bearer ns_...` until `expiresAt`."""

    token: str
    expires_at: datetime


class LoginResponse(CamelModel):
    message: str
    user: LoginUser
    api_keys: list[ApiKeyInfo]
    session: SessionInfo


class ChangePasswordRequest(CamelModel):
    """`POST /auth/password`: the current password and the new one."""

    model_config = ConfigDict(extra="forbid", validate_by_name=False)

    current_password: Password
    new_password: NewPassword


class PasswordResetRequest(CamelModel):
    """`POST /auth/password-reset`: where to send a reset link."""

    model_config = ConfigDict(extra="forbid", validate_by_name=False)

    email: Email


class PasswordResetConfirm(CamelModel):
    """`POST /auth/password-reset/confirm`: the emailed token and the new password."""

    model_config = ConfigDict(extra="forbid", validate_by_name=False)

    token: Annotated[str, Field(min_length=1, max_length=200, repr=False)]
    new_password: NewPassword


class SessionsRevoked(CamelModel):
    """How many login sessions (API tokens and dashboard sign-ins) were revoked."""

    message: str
    revoked_sessions: int
