"""The usage plot, drawn server-side as inline SVG: no script, no third-party library, no request.

The x axis spans the whole billing period, one slot per UTC day; each day so far has a bar (the
units billed that day) and a point on the running total, which climbs toward the dashed free-tier
line. This module only computes geometry; the template draws it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta

WIDTH = 720
HEIGHT = 300
LEFT, RIGHT, TOP, BOTTOM = 64, 20, 20, 40
Y_TICKS = 4
X_LABEL_EVERY = 7


@dataclass(frozen=True, slots=True)
class DayPoint:
    """One day of the period so far: its units and the running total at its end."""

    day: date
    units: int
    total: int
    x: float
    y: float
    bar_y: float
    bar_height: float


@dataclass(frozen=True, slots=True)
class Tick:
    position: float
    label: str


@dataclass(frozen=True, slots=True)
class UsageChart:
    width: int
    height: int
    left: float
    right: float
    top: float
    bottom: float
    bar_width: float
    points: list[DayPoint]
    line: str  # SVG polyline points of the running total
    area: str  # SVG polygon points under it
    free_tier: int
    free_tier_y: float | None  # None when there is no free tier
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    total: int
    period_days: int


def compact(value: int) -> str:
    """`950`, `1.5k`, `2M`: short axis labels."""
    for size, suffix in ((1_000_000, "M"), (1_000, "k")):
        if value >= size:
            text = f"{value / size:.1f}".removesuffix(".0")
            return f"{text}{suffix}"
    return str(value)


def nice_step(top: float, ticks: int = Y_TICKS) -> int:
    """The smallest round step (1, 2 or 5 times a power of ten) whose `ticks` steps reach `top`."""
    raw = max(top / ticks, 1.0)
    magnitude = 10 ** math.floor(math.log10(raw))
    for multiple in (1, 2, 5, 10):
        if multiple * magnitude >= raw:
            return int(multiple * magnitude)
    raise AssertionError("unreachable")  # pragma: no cover


def usage_chart(
    daily_units: list[tuple[date, int]], *, first_day: date, last_day: date, free_tier: int
) -> UsageChart:
    """The plot of a period from `first_day` to `last_day` (UTC days), with the days so far."""
    period_days = max(1, (last_day - first_day).days + 1)
    plot_width = WIDTH - LEFT - RIGHT
    plot_height = HEIGHT - TOP - BOTTOM
    slot = plot_width / period_days
    total = sum(units for _, units in daily_units)
    step = nice_step(max(total, free_tier, 10) * 1.1)
    y_max = step * Y_TICKS

    def y_of(value: int) -> float:
        return round(TOP + plot_height * (1 - value / y_max), 2)

    points: list[DayPoint] = []
    running = 0
    for day, units in daily_units:
        running += units
        index = (day - first_day).days
        points.append(
            DayPoint(
                day=day,
                units=units,
                total=running,
                x=round(LEFT + slot * (index + 0.5), 2),
                y=y_of(running),
                bar_y=y_of(units),
                bar_height=round(TOP + plot_height - y_of(units), 2),
            )
        )
    line = " ".join(f"{p.x},{p.y}" for p in points)
    base = TOP + plot_height
    area = f"{points[0].x},{base} {line} {points[-1].x},{base}" if points else ""
    x_ticks = [
        Tick(round(LEFT + slot * (i + 0.5), 2), (first_day + timedelta(days=i)).strftime("%b %-d"))
        for i in range(0, period_days, X_LABEL_EVERY)
    ]
    return UsageChart(
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        right=WIDTH - RIGHT,
        top=TOP,
        bottom=base,
        bar_width=round(max(1.0, slot * 0.6), 2),
        points=points,
        line=line,
        area=area,
        free_tier=free_tier,
        free_tier_y=y_of(free_tier) if free_tier > 0 else None,
        y_ticks=[Tick(y_of(step * i), compact(step * i)) for i in range(Y_TICKS + 1)],
        x_ticks=x_ticks,
        total=total,
        period_days=period_days,
    )
