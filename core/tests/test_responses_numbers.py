"""`read_int` and `read_number`: a provider's number, from a body or a header, never a crash."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub_core.responses import read_int, read_number


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (7, 7),
        ("7", 7),
        (" 42 ", 42),
        ("+3", 3),
        ("-3", -3),
        (5.0, 5),
        ("²", None),  # "²".isdigit() is True, int("²") fails
        ("١٢", None),  # int() reads Arabic-Indic digits; a header's count is ASCII
        ("1_000", None),  # int() reads underscores too
        ("9" * 5000, None),  # past int()'s digit limit, and 64 bits
        (2**63, None),
        ("1e3", None),
        (5.5, None),
        (math.inf, None),
        (True, None),
        (None, None),
        ("", None),
        ([1], None),
    ],
)
def test_read_int(value: object, expected: int | None) -> None:
    assert read_int(value) == expected


def test_read_int_refuses_values_below_a_minimum() -> None:
    assert read_int("-1", minimum=0) is None
    assert read_int("0", minimum=0) == 0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1.5", 1.5),
        (".5", 0.5),
        ("1e3", 1000.0),
        (3, 3.0),
        (10**400, None),
        ("1e999", None),
        ("nan", None),
        ("inf", None),
        ("²", None),
        (False, None),
    ],
)
def test_read_number(value: object, expected: float | None) -> None:
    assert read_number(value) == expected


@given(st.one_of(st.text(), st.integers(), st.floats(), st.booleans(), st.none()))
def test_any_value_is_a_number_or_none(value: object) -> None:
    whole = read_int(value)
    assert whole is None or (type(whole) is int and abs(whole) < 2**63)
    number = read_number(value)
    assert number is None or (type(number) is float and math.isfinite(number))
