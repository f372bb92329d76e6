"""The built-in Novo marketing endpoints' behaviour: plausible, deterministic data.

There is no marketing engine behind the gateway's built-in API, so every number is derived from the
inputs (and the day) with a keyed hash: the same question gives the same answer, overlapping
analytics periods agree day by day, and tests can rely on the shapes without mocking randomness.
Everything here is pure and cheap (no I/O): it runs on the metered path.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final

from novo_gateway.novo_api.schemas import (
    AnalyticsPoint,
    AnalyticsResponse,
    AnalyticsTotals,
    ApiHealth,
    AudienceAnalysis,
    AudienceAnalyzeRequest,
    AudienceSegment,
    BulkFailure,
    BulkProcessRequest,
    BulkResult,
    Campaign,
    CampaignContent,
    CampaignGenerateRequest,
    CampaignResponse,
    Insight,
    InsightCategory,
    InsightsResponse,
    Meta,
    Notification,
    NotificationResponse,
    NotificationSendRequest,
    Period,
)


class Seeded:
    """Deterministic numbers from a seed: the same seed and label always give the same value."""

    __slots__ = ("_key",)

    def __init__(self, *parts: str) -> None:
        self._key = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=32).digest()

    def unit(self, label: str) -> float:
        """A number in [0, 1)."""
        digest = hashlib.blake2b(label.encode(), key=self._key, digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64

    def between(self, label: str, low: float, high: float) -> float:
        return low + (high - low) * self.unit(label)

    def integer(self, label: str, low: int, high: int) -> int:
        """An integer in [low, high]."""
        return low + int(self.unit(label) * (high - low + 1))

    def token(self, label: str, length: int = 16) -> str:
        """A hex identifier."""
        return hashlib.blake2b(label.encode(), key=self._key, digest_size=16).hexdigest()[:length]


def health(now: datetime, meta: Meta) -> ApiHealth:
    return ApiHealth(timestamp=now, meta=meta)


# --- insights -------------------------------------------------------------------------------

_INSIGHTS: Final[Sequence[tuple[InsightCategory, str, str]]] = (
    (
        "timing",
        "Tuesday mornings outperform",
        "Emails sent Tuesday between 9 and 11 am get more opens than the weekly average.",
    ),
    (
        "engagement",
        "Short subject lines win",
        "Subject lines under 40 characters are opened more often than longer ones.",
    ),
    (
        "channel",
        "Push beats email for re-engagement",
        "Lapsed users respond to push notifications more than to email reminders.",
    ),
    (
        "audience",
        "New subscribers are most active in week one",
        "Subscribers engage most in their first seven days; send onboarding content early.",
    ),
    (
        "content",
        "Personalised offers convert better",
        "Offers that name a product the customer viewed convert better than generic ones.",
    ),
    (
        "conversion",
        "Cart reminders recover revenue",
        "A reminder within 4 hours of an abandoned cart recovers a share of lost orders.",
    ),
    (
        "timing",
        "Weekend SMS fatigue",
        "SMS sent on Sundays see more opt-outs; move promotions to weekdays.",
    ),
    (
        "channel",
        "Social retargeting is under-used",
        "Audiences who clicked an email but did not buy respond well to social retargeting.",
    ),
)
_INSIGHTS_PER_DAY: Final = 4


def insights(now: datetime, meta: Meta) -> InsightsResponse:
    """Today's insights: a stable selection for the day, each with a confidence."""
    return InsightsResponse(insights=list(_insights_of(now.date())), generated_at=now, meta=meta)


@functools.lru_cache(maxsize=4)
def _insights_of(day: date) -> tuple[Insight, ...]:
    """The day's selection, computed once a day (forty keyed hashes: it is on the metered path)."""
    seeded = Seeded("insights", day.isoformat())
    ranked = sorted(range(len(_INSIGHTS)), key=lambda i: seeded.unit(f"rank{i}"))
    chosen = []
    for i in ranked[:_INSIGHTS_PER_DAY]:
        category, title, description = _INSIGHTS[i]
        confidence = round(seeded.between(f"confidence{i}", 0.55, 0.97), 2)
        impact = "high" if confidence >= 0.85 else "medium" if confidence >= 0.7 else "low"
        chosen.append(
            Insight(
                id=f"ins_{seeded.token(f'id{i}', 12)}",
                category=category,
                title=title,
                description=description,
                impact=impact,
                confidence=confidence,
            )
        )
    return tuple(chosen)


# --- audience -------------------------------------------------------------------------------

_SEGMENTS: Final = ("Loyal customers", "Occasional buyers", "New subscribers", "At risk")
_METRIC_RANGES: Final[dict[str, tuple[float, float, int]]] = {
    # metric: (low, high, decimals)
    "engagement": (0.05, 0.6, 4),
    "reach": (0.2, 0.95, 4),
    "conversion": (0.005, 0.12, 4),
    "retention": (0.3, 0.95, 4),
    "churnRisk": (0.02, 0.4, 4),
    "lifetimeValue": (20.0, 900.0, 2),
}


def analyze_audience(body: AudienceAnalyzeRequest, now: datetime, meta: Meta) -> AudienceAnalysis:
    """Segments of the audience with the requested metrics, stable per audience id."""
    seeded = Seeded("audience", body.audience_id)
    total = seeded.integer("size", 5_000, 500_000)
    weights = [seeded.between(f"weight{name}", 0.5, 3.0) for name in _SEGMENTS]
    sizes = [int(total * w / sum(weights)) for w in weights]
    sizes[0] += total - sum(sizes)
    segments = []
    for name, size in zip(_SEGMENTS, sizes, strict=True):
        values = {}
        for metric in body.metrics:
            low, high, decimals = _METRIC_RANGES[metric]
            values[metric] = round(seeded.between(f"{name}/{metric}", low, high), decimals)
        segments.append(
            AudienceSegment(
                id=f"seg_{seeded.token(name, 12)}",
                name=name,
                size=size,
                share=round(size / total, 4),
                metrics=values,
            )
        )
    return AudienceAnalysis(
        audience_id=body.audience_id,
        total_size=total,
        segments=segments,
        analyzed_at=now,
        meta=meta,
    )


# --- campaign -------------------------------------------------------------------------------

_CALLS_TO_ACTION: Final = {
    "email": "Shop now",
    "sms": "Reply YES to claim",
    "push": "Open the app",
    "social": "Learn more",
    "display": "See the offer",
}


def generate_campaign(body: CampaignGenerateRequest, now: datetime, meta: Meta) -> CampaignResponse:
    """A draft campaign: content written from the inputs and a suggested send time tomorrow."""
    seeded = Seeded("campaign", body.name, body.type, body.target_audience)
    send_day = now.date() + timedelta(days=1)
    send_at = datetime.combine(send_day, time(hour=seeded.integer("hour", 9, 18)), tzinfo=UTC)
    campaign = Campaign(
        id=f"cmp_{Seeded('campaign-id', meta.request_id).token(body.name, 20)}",
        name=body.name,
        type=body.type,
        target_audience=body.target_audience,
        content=CampaignContent(
            subject=f"{body.name}: picked for {body.target_audience}",
            body=(
                f"Hello! We put together {body.name} with {body.target_audience} in mind. "
                "Take a look before it ends."
            ),
            call_to_action=_CALLS_TO_ACTION[body.type],
        ),
        suggested_send_time=send_at,
        estimated_reach=seeded.integer("reach", 1_000, 250_000),
        created_at=now,
    )
    return CampaignResponse(campaign=campaign, meta=meta)


# --- notifications --------------------------------------------------------------------------

# Typical queue-to-handset latency per channel, plus a little per recipient for fan-out.
_DELIVERY_SECONDS: Final = {"email": 30.0, "sms": 5.0, "push": 2.0}
_PER_RECIPIENT_SECONDS: Final = 0.1


def send_notification(
    body: NotificationSendRequest, now: datetime, meta: Meta
) -> NotificationResponse:
    """The notification as queued, with when it should reach its recipients."""
    delay = _DELIVERY_SECONDS[body.channel] + _PER_RECIPIENT_SECONDS * len(body.recipients)
    notification = Notification(
        id=f"ntf_{Seeded('notification-id', meta.request_id).token(body.channel, 20)}",
        channel=body.channel,
        recipients=len(body.recipients),
        queued_at=now,
        estimated_delivery=now + timedelta(seconds=round(delay)),
    )
    return NotificationResponse(notification=notification, meta=meta)


# --- analytics ------------------------------------------------------------------------------

PERIOD_DAYS: Final[dict[str, int]] = {"1d": 1, "7d": 7, "30d": 30, "90d": 90}


def analytics(period: Period, now: datetime, meta: Meta) -> AnalyticsResponse:
    """Daily figures for the period's days (the last being today); each day's figures are fixed."""
    days = PERIOD_DAYS[period]
    today = now.date()
    points = []
    for offset in range(days - 1, -1, -1):
        day = (today - timedelta(days=offset)).isoformat()
        seeded = Seeded("analytics", day)
        impressions = seeded.integer("impressions", 20_000, 80_000)
        clicks = int(impressions * seeded.between("ctr", 0.01, 0.06))
        conversions = int(clicks * seeded.between("cvr", 0.02, 0.12))
        points.append(
            AnalyticsPoint(
                date=day, impressions=impressions, clicks=clicks, conversions=conversions
            )
        )
    impressions = sum(p.impressions for p in points)
    clicks = sum(p.clicks for p in points)
    conversions = sum(p.conversions for p in points)
    revenue = sum(
        p.conversions * Seeded("analytics", p.date).between("aov", 25, 120) for p in points
    )
    totals = AnalyticsTotals(
        impressions=impressions,
        clicks=clicks,
        conversions=conversions,
        revenue=round(revenue, 2),
        click_through_rate=round(clicks / impressions, 4),
        conversion_rate=round(conversions / clicks, 4) if clicks else 0.0,
    )
    return AnalyticsResponse(
        period=period,
        start=now - timedelta(days=days),
        end=now,
        totals=totals,
        daily=points,
        meta=meta,
    )


# --- bulk -----------------------------------------------------------------------------------


def _is_empty(item: Any) -> bool:
    if isinstance(item, str):
        return not item.strip()
    return isinstance(item, dict) and not item


def process_bulk(body: BulkProcessRequest, now: datetime, meta: Meta) -> BulkResult:
    """Processes every item; an empty item (blank text or `{}`) fails, the rest succeed."""
    failures = [
        BulkFailure(index=i, reason="The item is empty.")
        for i, item in enumerate(body.items)
        if _is_empty(item)
    ]
    return BulkResult(
        job_id=f"blk_{Seeded('bulk-id', meta.request_id).token('job', 20)}",
        processed=len(body.items),
        successful=len(body.items) - len(failures),
        failed=len(failures),
        failures=failures,
        completed_at=now,
        meta=meta,
    )
