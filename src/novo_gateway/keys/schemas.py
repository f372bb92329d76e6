"""Request and response bodies of the keys domain (camelCase on the wire, as the original)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator
from pydantic.alias_generators import to_camel

from novo_gateway.keys.models import ApiKey

KEY_NOTE = "Save this API key securely. It will not be shown again."

# Names are stored as text and shown on pages: no control characters (PostgreSQL refuses NUL in
# text, and CR/LF would forge lines wherever a name is printed).
NO_CONTROL_CHARACTERS = r"^[^\x00-\x1f\x7f]*$"
KeyName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=100, pattern=NO_CONTROL_CHARACTERS),
]


class CamelModel(BaseModel):
    """A body whose fields are camelCase on the wire."""

    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True)


class CreateKeyRequest(CamelModel):
    """`POST /auth/api-keys`. `keyName` is the original's name for `name`; both optional."""

    model_config = ConfigDict(extra="forbid", validate_by_name=False)

    name: KeyName | None = None
    key_name: KeyName | None = None
    expires_at: AwareDatetime | None = Field(
        default=None, description="When the key stops working (ISO 8601 with a time zone)."
    )
    expires_in_days: int | None = Field(default=None, ge=1, le=3650, strict=True)
    # The original's clients also send their credentials here; the auth dependency reads them.
    email: str | None = Field(default=None, exclude=True)
    password: str | None = Field(default=None, exclude=True, repr=False)

    @model_validator(mode="after")
    def _one_expiry(self) -> Self:
        if self.expires_at is not None and self.expires_in_days is not None:
            raise ValueError("give either expiresAt or expiresInDays, not both")
        return self

    def key_label(self, default: str) -> str:
        """The name asked for (`name`, else `keyName`), or `default` when both are blank."""
        return self.name or self.key_name or default

    def expiry(self, now: datetime) -> datetime | None:
        """When the key should stop working, from `expiresAt` or `expiresInDays`."""
        if self.expires_in_days is not None:
            return now + timedelta(days=self.expires_in_days)
        return self.expires_at


class ApiKeyCreated(CamelModel):
    id: int
    key: str
    name: str
    note: str = KEY_NOTE
    created_at: datetime
    expires_at: datetime | None

    @classmethod
    def of(cls, row: ApiKey, raw_key: str) -> ApiKeyCreated:
        return cls(
            id=row.id,
            key=raw_key,
            name=row.name,
            created_at=row.created_at,
            expires_at=row.expires_at,
        )


class ApiKeyCreatedResponse(CamelModel):
    message: str
    api_key: ApiKeyCreated


class ApiKeyInfo(CamelModel):
    """A key as listed: never the key itself, only its prefix."""

    id: int
    prefix: str
    name: str
    is_active: bool
    last_used: datetime | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(
        cls, row: ApiKey, *, now: datetime, pending_last_use: datetime | None = None
    ) -> ApiKeyInfo:
        """The listing of a row; `pending_last_use` is a newer use not yet written."""
        last_used = row.last_used_at
        if pending_last_use is not None and (last_used is None or pending_last_use > last_used):
            last_used = pending_last_use
        expired = row.expires_at is not None and row.expires_at <= now
        return cls(
            id=row.id,
            prefix=row.prefix,
            name=row.name,
            is_active=row.is_active and not expired,
            last_used=last_used,
            created_at=row.created_at,
            expires_at=row.expires_at,
            revoked_at=row.revoked_at,
        )


class ApiKeyList(CamelModel):
    api_keys: list[ApiKeyInfo]


class MessageResponse(CamelModel):
    message: str
