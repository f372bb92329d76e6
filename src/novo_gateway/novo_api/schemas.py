"""Request and response bodies of the built-in Novo API (field names as in the original: camelCase).

Requests are strict: unknown fields, wrong types, empty or oversized values and unknown enum values
are refused with 400 naming the field, before any handler runs.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError


class _Schema(BaseModel):
    """Responses: camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True)


class _Request(_Schema):
    """Requests: camelCase only, and no field the API does not know."""

    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=False, extra="forbid", str_strip_whitespace=True
    )


class Meta(_Schema):
    """Ends every Novo response: which request this was and how many units it is billed."""

    request_id: str
    billed_units: int = Field(ge=0)


# --- health ---------------------------------------------------------------------------------


class ApiHealth(_Schema):
    status: Literal["ok"] = "ok"
    timestamp: datetime
    meta: Meta


# --- insights -------------------------------------------------------------------------------

InsightCategory = Literal["engagement", "audience", "channel", "timing", "content", "conversion"]
Impact = Literal["high", "medium", "low"]


class Insight(_Schema):
    id: str
    category: InsightCategory
    title: str
    description: str
    impact: Impact
    confidence: float = Field(ge=0, le=1)


class InsightsResponse(_Schema):
    insights: list[Insight]
    generated_at: datetime
    meta: Meta


# --- audience -------------------------------------------------------------------------------

AudienceMetric = Literal[
    "engagement", "reach", "conversion", "retention", "churnRisk", "lifetimeValue"
]
DEFAULT_AUDIENCE_METRICS: tuple[AudienceMetric, ...] = ("engagement", "reach", "conversion")

Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
]


def _invalid(message: str) -> PydanticCustomError:
    """A validation error whose message is shown to the client as written."""
    return PydanticCustomError("invalid", message)


def _unique(values: list[Any]) -> list[Any]:
    if len(set(values)) != len(values):
        raise _invalid("values must not repeat")
    return values


class AudienceAnalyzeRequest(_Request):
    audience_id: Identifier
    metrics: Annotated[
        list[AudienceMetric],
        Field(min_length=1, max_length=6, json_schema_extra={"uniqueItems": True}),
        AfterValidator(_unique),
    ] = Field(default_factory=lambda: list(DEFAULT_AUDIENCE_METRICS))


class AudienceSegment(_Schema):
    id: str
    name: str
    size: int = Field(ge=0)
    share: float = Field(ge=0, le=1)
    metrics: dict[str, float]


class AudienceAnalysis(_Schema):
    audience_id: str
    total_size: int = Field(ge=0)
    segments: list[AudienceSegment]
    analyzed_at: datetime
    meta: Meta


# --- campaign -------------------------------------------------------------------------------

CampaignType = Literal["email", "sms", "push", "social", "display"]


class CampaignGenerateRequest(_Request):
    name: Annotated[str, StringConstraints(min_length=1, max_length=120)]
    type: CampaignType
    target_audience: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class CampaignContent(_Schema):
    subject: str
    body: str
    call_to_action: str


class Campaign(_Schema):
    id: str
    name: str
    type: CampaignType
    target_audience: str
    status: Literal["draft"] = "draft"
    content: CampaignContent
    suggested_send_time: datetime
    estimated_reach: int = Field(ge=0)
    created_at: datetime


class CampaignResponse(_Schema):
    campaign: Campaign
    meta: Meta


# --- notifications --------------------------------------------------------------------------

Channel = Literal["email", "sms", "push"]
MAX_RECIPIENTS = 100

Recipient = Annotated[str, StringConstraints(min_length=1, max_length=320)]


_RECIPIENT_FORMATS: dict[str, tuple[re.Pattern[str], str]] = {
    "email": (re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$"), "an email address"),
    "sms": (re.compile(r"^\+[1-9][0-9]{6,14}$"), "a phone number in E.164 form (+15551234567)"),
    "push": (re.compile(r"^[A-Za-z0-9:_.-]{8,320}$"), "a device token"),
}


class NotificationSendRequest(_Request):
    channel: Channel
    recipients: Annotated[list[Recipient], Field(min_length=1, max_length=MAX_RECIPIENTS)]
    message: Annotated[str, StringConstraints(min_length=1, max_length=2000)]

    @field_validator("recipients")
    @classmethod
    def _recipients_fit_channel(cls, recipients: list[str], info: ValidationInfo) -> list[str]:
        channel = info.data.get("channel")
        if channel is None:  # the channel itself is invalid and already reported
            return recipients
        pattern, what = _RECIPIENT_FORMATS[channel]
        for index, recipient in enumerate(recipients):
            if not pattern.match(recipient):
                raise _invalid(f"recipient {index} is not {what}")
        return recipients


class Notification(_Schema):
    id: str
    channel: Channel
    recipients: int = Field(ge=0, description="How many recipients the notification goes to.")
    status: Literal["queued"] = "queued"
    queued_at: datetime
    estimated_delivery: datetime


class NotificationResponse(_Schema):
    notification: Notification
    meta: Meta


# --- analytics ------------------------------------------------------------------------------

Period = Literal["1d", "7d", "30d", "90d"]


class AnalyticsTotals(_Schema):
    impressions: int
    clicks: int
    conversions: int
    revenue: float
    click_through_rate: float
    conversion_rate: float


class AnalyticsPoint(_Schema):
    date: str
    impressions: int
    clicks: int
    conversions: int


class AnalyticsResponse(_Schema):
    period: Period
    start: datetime
    end: datetime
    totals: AnalyticsTotals
    daily: list[AnalyticsPoint]
    meta: Meta


# --- bulk -----------------------------------------------------------------------------------

MAX_BULK_ITEMS = 1000
_MAX_ITEM_TEXT = 1000
_MAX_ITEM_FIELDS = 50


def _check_item(item: Any) -> Any:
    """An item is a string or a flat object of scalars; anything else or oversized is refused."""
    if isinstance(item, str):
        if len(item) > _MAX_ITEM_TEXT:
            raise _invalid(f"a text item must be at most {_MAX_ITEM_TEXT} characters")
        return item
    if isinstance(item, dict):
        if len(item) > _MAX_ITEM_FIELDS:
            raise _invalid(f"an object item must have at most {_MAX_ITEM_FIELDS} fields")
        for key, value in item.items():
            if len(key) > 64:
                raise _invalid("field names must be at most 64 characters")
            if isinstance(value, str) and len(value) > _MAX_ITEM_TEXT:
                raise _invalid(f"text values must be at most {_MAX_ITEM_TEXT} characters")
            if not (value is None or isinstance(value, str | int | float | bool)):
                raise _invalid("object items may only hold strings, numbers, booleans or null")
        return item
    raise _invalid("each item must be a string or an object")


# What `_check_item` accepts, declared so that clients (and fuzzers) see the real rule.
_BULK_ITEM_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "maxLength": _MAX_ITEM_TEXT},
        {
            "type": "object",
            "maxProperties": _MAX_ITEM_FIELDS,
            "propertyNames": {"maxLength": 64},
            "additionalProperties": {
                "anyOf": [
                    {"type": "string", "maxLength": _MAX_ITEM_TEXT},
                    {"type": "number"},
                    {"type": "boolean"},
                    {"type": "null"},
                ]
            },
        },
    ]
}
BulkItem = Annotated[Any, AfterValidator(_check_item), WithJsonSchema(_BULK_ITEM_SCHEMA)]


class BulkProcessRequest(_Request):
    items: Annotated[list[BulkItem], Field(min_length=1, max_length=MAX_BULK_ITEMS)]


class BulkFailure(_Schema):
    index: int
    reason: str


class BulkResult(_Schema):
    job_id: str
    processed: int
    successful: int
    failed: int
    failures: list[BulkFailure]
    completed_at: datetime
    meta: Meta
