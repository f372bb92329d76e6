"""The usage plot's geometry: one point per day so far, the running total, round axis steps."""

from __future__ import annotations

from datetime import date

import pytest

from novo_gateway.dashboard.chart import compact, nice_step, usage_chart

FIRST, LAST = date(2026, 3, 1), date(2026, 3, 31)


def test_each_day_so_far_is_a_point_on_the_running_total() -> None:
    chart = usage_chart(
        [(date(2026, 3, 1), 5), (date(2026, 3, 2), 0), (date(2026, 3, 3), 7)],
        first_day=FIRST,
        last_day=LAST,
        free_tier=1000,
    )

    assert [(p.units, p.total) for p in chart.points] == [(5, 5), (0, 5), (7, 12)]
    assert chart.total == 12
    assert chart.period_days == 31
    assert [p.x for p in chart.points] == sorted(p.x for p in chart.points)
    assert all(chart.left < p.x < chart.right for p in chart.points)


def test_higher_totals_are_drawn_higher_and_the_free_tier_line_sits_at_its_value() -> None:
    chart = usage_chart(
        [(date(2026, 3, 1), 400), (date(2026, 3, 2), 700)],
        first_day=FIRST,
        last_day=LAST,
        free_tier=1000,
    )

    first, second = chart.points
    assert second.y < first.y  # SVG y grows downwards
    assert chart.free_tier_y is not None
    assert second.y < chart.free_tier_y < first.y  # 1,100 is past the line, 400 below it
    assert chart.top <= min(t.position for t in chart.y_ticks)


def test_without_a_free_tier_there_is_no_line() -> None:
    chart = usage_chart([(FIRST, 3)], first_day=FIRST, last_day=LAST, free_tier=0)

    assert chart.free_tier_y is None


def test_a_period_without_usage_has_an_empty_plot() -> None:
    chart = usage_chart([], first_day=FIRST, last_day=LAST, free_tier=1000)

    assert chart.points == [] and chart.line == "" and chart.area == ""


@pytest.mark.parametrize(
    ("top", "step"), [(11, 5), (1100, 500), (1650, 500), (2200, 1000), (0.5, 1)]
)
def test_axis_steps_are_round_numbers_reaching_the_top(top: float, step: int) -> None:
    assert nice_step(top) == step
    assert nice_step(top) * 4 >= top


@pytest.mark.parametrize(
    ("value", "text"), [(0, "0"), (950, "950"), (1000, "1k"), (1500, "1.5k"), (2_000_000, "2M")]
)
def test_axis_labels_are_short(value: int, text: str) -> None:
    assert compact(value) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "none"), (45, "45 s"), (720, "12 min"), (11100, "3 h 5 min"), (187200, "2 d 4 h")],
)
def test_durations_read_naturally(seconds: int | None, text: str) -> None:
    from datetime import timedelta

    from novo_gateway.dashboard.templating import environment

    value = None if seconds is None else timedelta(seconds=seconds)
    assert environment().filters["duration"](value) == text
