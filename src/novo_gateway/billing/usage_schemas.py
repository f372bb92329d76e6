"""Response bodies of the usage views, with the original's field names.

`/billing/usage` is camelCase (`currentPeriod`, `totalCalls`, ...); the rows of `dailyBreakdown`
and of `/billing/usage/endpoints` are snake_case (`call_count`, `avg_response_time`), as the
original sent them. Amounts of money are strings (`"$0.0010"`), computed in `Decimal`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from novo_gateway.billing.queries import CarriedPeriod
from novo_gateway.metering import pricing
from novo_gateway.metering.queries import EndpointStats, TimeRange, UsageSummary


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True)


class CurrentPeriod(_Camel):
    """This period's figures. Calls are requests; units are what is charged (a plain call is one
    unit, some routes bill more). The original's fields (`totalCalls`, `billableCalls`,
    `freeTierCalls`) keep their values, which are units; the unit fields name them plainly."""

    start: datetime
    end: datetime
    total_calls: int = Field(
        description="Kept for existing clients: the same value as `units` (units, not calls)."
    )
    billable_calls: int = Field(
        description="Kept for existing clients: the same value as `billableUnits`."
    )
    failed_calls: int = Field(description="Calls recorded but not billed (errors, retries).")
    free_tier_calls: int = Field(
        description="Kept for existing clients: the same value as `freeTierUnits`."
    )
    free_tier_remaining: int = Field(description="Free units left this period.")
    estimated_cost: str = Field(
        examples=["$0.5000"],
        description="`billableUnits` times `costPerCall`, exact to 4 decimal places.",
    )
    cost_per_call: str = Field(examples=["$0.001"], description="The price of one unit.")
    calls: int = Field(
        default=0, description="Calls (requests) recorded this period, billed or not."
    )
    units: int = Field(
        default=0,
        description="Units that count toward the bill this period: each billed call's units "
        "added up (a plain call is one unit; some routes bill more).",
    )
    free_tier_units: int = Field(default=0, description="Units free each period.")
    billable_units: int = Field(
        default=0, description="Units beyond the free tier: what is charged."
    )
    estimated_charge: str = Field(
        default="$0.00",
        examples=["$0.50"],
        description="`estimatedCost` rounded to whole cents (half up), as Stripe charges it.",
    )

    @property
    def charge_is_exact(self) -> bool:
        """Whether the charge in cents is the exact estimate (no need to show both)."""
        return _amount(self.estimated_charge) == _amount(self.estimated_cost)


class DailyUsage(BaseModel):
    date: date
    call_count: int = Field(description="Calls recorded that day (UTC), billed or not.")
    billable_units: int


class CarriedOverPeriod(_Camel):
    period_start: datetime
    period_end: datetime
    total_calls: int = Field(description="Units of that period carried over.")
    amount: str = Field(examples=["$0.0050"], description="What they cost, at that period's price.")


def _dollars(cents: int) -> str:
    return pricing.format_cost(Decimal(cents) / 100)


def _amount(text: str) -> Decimal:
    """The amount of a money string of these views (`"$0.1030"`)."""
    return Decimal(text.removeprefix("$"))


class CarriedOver(_Camel):
    """Usage of earlier periods that reached Stripe after their invoice was final: charged on
    the invoice that closes this period, at the price it had in its own period."""

    total_calls: int = 0
    amount: str = Field(default="$0.0000", examples=["$0.0050"])
    periods: list[CarriedOverPeriod] = Field(default_factory=list)

    @property
    def charge(self) -> str:
        """The amount as the invoice shows it, in cents (it is whole cents already)."""
        return pricing.format_charge(_amount(self.amount))

    @classmethod
    def of(cls, carried: Sequence[CarriedPeriod]) -> CarriedOver:
        return cls(
            total_calls=sum(c.units for c in carried),
            amount=_dollars(sum(c.cents for c in carried)),
            periods=[
                CarriedOverPeriod(
                    period_start=c.period_start,
                    period_end=c.period_end,
                    total_calls=c.units,
                    amount=_dollars(c.cents),
                )
                for c in carried
            ],
        )


class UsageResponse(_Camel):
    current_period: CurrentPeriod
    stripe: dict[str, Any] | None = None
    daily_breakdown: list[DailyUsage] = Field(description="The last 30 UTC days, oldest first.")
    subscription_status: str
    carried_over: CarriedOver = Field(
        default_factory=CarriedOver,
        description="Late usage of earlier periods charged on this period's invoice.",
    )

    @classmethod
    def of(cls, usage: UsageSummary, carried: Sequence[CarriedPeriod] = ()) -> UsageResponse:
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
                calls=usage.calls,
                units=usage.billable_units,
                free_tier_units=usage.free_tier_units,
                billable_units=usage.units_beyond_free_tier,
                estimated_charge=pricing.format_charge(usage.estimated_cost),
            ),
            daily_breakdown=[
                DailyUsage(date=d.day, call_count=d.calls, billable_units=d.billable_units)
                for d in usage.days
            ],
            subscription_status=usage.subscription_status,
            carried_over=CarriedOver.of(carried),
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
    def of(cls, period: TimeRange, days: int, stats: list[EndpointStats]) -> EndpointUsageResponse:
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
