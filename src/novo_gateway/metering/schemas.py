"""Response bodies of the usage views, with the original's field names.

`/billing/usage` is camelCase (`currentPeriod`, `totalCalls`, ...); the rows of `dailyBreakdown`
and of `/billing/usage/endpoints` are snake_case (`call_count`, `avg_response_time`), as the
original sent them. Amounts of money are strings (`"$0.0010"`), computed in `Decimal`.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from novo_gateway.metering import pricing
from novo_gateway.metering.service import EndpointStats, Period, UsageSummary


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True)


class CurrentPeriod(_Camel):
    start: datetime
    end: datetime
    total_calls: int = Field(
        description="Units that count toward the bill this period (a plain call is one unit)."
    )
    billable_calls: int = Field(description="Units beyond the free tier: what is charged.")
    failed_calls: int = Field(description="Calls recorded but not billed (errors, retries).")
    free_tier_calls: int
    free_tier_remaining: int
    estimated_cost: str = Field(examples=["$0.5000"])
    cost_per_call: str = Field(examples=["$0.001"])


class DailyUsage(BaseModel):
    date: date
    call_count: int = Field(description="Calls recorded that day (UTC), billed or not.")
    billable_units: int


class UsageResponse(_Camel):
    current_period: CurrentPeriod
    stripe: dict[str, Any] | None = None
    daily_breakdown: list[DailyUsage] = Field(description="The last 30 UTC days, oldest first.")
    subscription_status: str

    @classmethod
    def of(cls, usage: UsageSummary) -> UsageResponse:
        return cls(
            current_period=CurrentPeriod(
                start=usage.period.start,
                end=usage.period.end,
                total_calls=usage.billable_units,
                billable_calls=usage.units_beyond_free_tier,
                failed_calls=usage.unbilled_calls,
                free_tier_calls=usage.free_tier_units,
                free_tier_remaining=usage.free_tier_remaining,
                estimated_cost=pricing.format_cost(usage.estimated_cost),
                cost_per_call=pricing.format_unit_price(usage.cost_per_unit),
            ),
            daily_breakdown=[
                DailyUsage(date=d.day, call_count=d.calls, billable_units=d.billable_units)
                for d in usage.days
            ],
            subscription_status=usage.subscription_status,
        )


class EndpointsPeriod(BaseModel):
    start: datetime
    end: datetime
    days: int


class EndpointUsage(BaseModel):
    endpoint: str
    method: str
    call_count: int
    billable_calls: int = Field(description="Units billed for this endpoint.")
    avg_response_time: float = Field(description="Mean latency to first byte, milliseconds.")
    p95_response_time: int = Field(description="95th percentile latency, milliseconds.")


class EndpointUsageResponse(BaseModel):
    period: EndpointsPeriod
    endpoints: list[EndpointUsage]

    @classmethod
    def of(cls, period: Period, days: int, stats: list[EndpointStats]) -> EndpointUsageResponse:
        return cls(
            period=EndpointsPeriod(start=period.start, end=period.end, days=days),
            endpoints=[
                EndpointUsage(
                    endpoint=s.endpoint,
                    method=s.method,
                    call_count=s.calls,
                    billable_calls=s.billable_units,
                    avg_response_time=s.avg_latency_ms,
                    p95_response_time=s.p95_latency_ms,
                )
                for s in stats
            ],
        )
