"""The budget rules every backend applies: token buckets and provider pauses."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub_core.budgets import (
    PAUSE_AFTER,
    PAUSE_MAX,
    PAUSE_MIN,
    PAUSE_WINDOW,
    Budget,
    Pause,
    check_rate,
    draw,
    note_rate_limited,
)

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def bucket(rate: float = 10.0, burst: int = 20, tokens: float = 20.0) -> Budget:
    return Budget(rate=rate, burst=burst, tokens=tokens, refilled_at=T0)


def test_a_draw_grants_what_the_bucket_holds_and_keeps_the_rest() -> None:
    first = draw(bucket(), 15, T0)
    assert (first.granted, first.budget.tokens, first.wait) == (15, 5.0, None)
    second = draw(first.budget, 15, T0)
    assert (second.granted, second.budget.tokens) == (5, 0.0)


def test_an_empty_bucket_grants_nothing_and_says_when_to_ask_again() -> None:
    empty = draw(bucket(tokens=0.0, rate=4.0), 10, T0)
    assert empty.granted == 0
    assert empty.wait == timedelta(seconds=0.25)
    later = draw(empty.budget, 10, T0 + timedelta(seconds=1))
    assert later.granted == 4


def test_the_bucket_refills_at_the_rate_up_to_the_burst() -> None:
    b = bucket(rate=2.0, burst=5, tokens=0.0)
    assert b.tokens_at(T0 + timedelta(seconds=1)) == 2.0
    assert b.tokens_at(T0 + timedelta(hours=1)) == 5.0
    assert b.tokens_at(T0 - timedelta(seconds=5)) == 0.0  # a clock step back adds nothing


def test_a_fraction_of_a_check_is_never_granted() -> None:
    drawn = draw(bucket(rate=0.5, tokens=0.0), 3, T0 + timedelta(seconds=3))
    assert drawn.granted == 1
    assert drawn.budget.tokens == pytest.approx(0.5)


@given(
    rate=st.floats(min_value=0.01, max_value=1000),
    burst=st.integers(min_value=1, max_value=500),
    steps=st.lists(
        st.tuples(st.floats(min_value=-5, max_value=5), st.integers(min_value=0, max_value=600)),
        max_size=30,
    ),
)
def test_draws_never_exceed_the_burst_plus_the_rate_over_time(
    rate: float, burst: int, steps: list[tuple[float, int]]
) -> None:
    # Leases draw at the time their transaction began, in the order they take the bucket's
    # lock: one that began earlier may draw after one that began later (a negative gap), and
    # the next must not count a refill twice.
    budget = Budget(rate=rate, burst=burst, tokens=float(burst), refilled_at=T0)
    latest, granted = T0, 0
    for gap, wanted in steps:
        at = max(T0, latest + timedelta(seconds=gap))
        latest = max(latest, at)
        drawn = draw(budget, wanted, at)
        assert drawn.budget.refilled_at >= budget.refilled_at
        budget = drawn.budget
        granted += drawn.granted
    elapsed = (latest - T0).total_seconds()
    assert granted <= burst + math.ceil(rate * elapsed) + 1


@pytest.mark.parametrize(
    ("rate", "burst", "expected"),
    [(5, None, (5.0, 5)), (0.2, None, (0.2, 1)), (2.5, 10, (2.5, 10)), (1000, 1, (1000.0, 1))],
)
def test_a_valid_budget(rate: float, burst: int | None, expected: tuple[float, int]) -> None:
    assert check_rate(rate, burst) == expected


@pytest.mark.parametrize(
    ("rate", "burst", "says"),
    [
        (0, None, "more than 0"),
        (-1, None, "more than 0"),
        (float("nan"), None, "number"),
        (float("inf"), None, "number"),
        (True, None, "number"),
        (1e9, None, "at most"),
        (5, 0, "burst"),
        (5, 2.5, "burst"),
        (5, 10**9, "burst"),
    ],
)
def test_a_bad_budget_is_refused(rate: float, burst: int | None, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        check_rate(rate, burst)


def test_the_third_rate_limit_within_the_window_pauses_the_provider() -> None:
    pause = Pause()
    for n in range(PAUSE_AFTER - 1):
        pause = note_rate_limited(pause, T0 + timedelta(seconds=n), retry_after=120)
        assert not pause.active(T0 + timedelta(seconds=n))
    at = T0 + timedelta(seconds=PAUSE_AFTER)
    pause = note_rate_limited(pause, at, retry_after=120)
    assert pause.until == at + timedelta(seconds=120)
    assert pause.active(at + timedelta(seconds=119))
    assert not pause.active(at + timedelta(seconds=120))
    assert pause.count == 0  # a new count starts


def test_rate_limits_spread_out_never_pause() -> None:
    pause = Pause()
    for n in range(10):
        pause = note_rate_limited(pause, T0 + n * (PAUSE_WINDOW + timedelta(seconds=1)), None)
        assert pause.until is None


@pytest.mark.parametrize(
    ("retry_after", "pause"),
    [(None, PAUSE_MIN), (1, PAUSE_MIN), (10**15, PAUSE_MAX), (float("inf"), PAUSE_MIN)],
)
def test_a_pause_lasts_between_its_bounds(retry_after: float | None, pause: timedelta) -> None:
    record = Pause()
    for _ in range(PAUSE_AFTER):
        record = note_rate_limited(record, T0, retry_after)
    assert record.until == T0 + pause


def test_a_pause_only_grows() -> None:
    long = Pause(until=T0 + timedelta(minutes=50))
    for _ in range(PAUSE_AFTER):
        long = note_rate_limited(long, T0, retry_after=5)
    assert long.until == T0 + timedelta(minutes=50)
