"""hub_core.display_text: untrusted text becomes one printable, clipped line for a person."""

from __future__ import annotations

import sys
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub_core.display_text import LIMIT, columns, escape, inert, inert_lines, unsafe
from hub_core.responses import clean_text

# One of each class a provider can send that a terminal would act on or hide.
HOSTILE = {
    "csi": "\x1b[2J",
    "osc-title": "\x1b]0;x\x07",
    "osc8-link": "\x1b]8;;https://evil\x1b\\text\x1b]8;;\x1b\\",
    "bel": "\x07",
    "nul": "\x00",
    "del": "\x7f",
    "c1-csi": "\x9b2J",
    "c1-nel": "\x85",
    "rlo": "\u202e",
    "lri": "\u2066",
    "zero-width": "\u200b",
    "bom": "\ufeff",
    "line-separator": "\u2028",
    "surrogate": "\ud800",
    "private-use": "\U000f0000",
    "newlines": "a\r\nb\tc",
}


def test_the_rule_is_python_escapes_for_the_unsafe_and_one_space_for_white_space() -> None:
    assert inert("Acme\x1b[2J\u202eevil\x00") == "Acme\\x1b[2J\\u202eevil\\x00"
    assert inert("  a\r\n\tb\u2028c\x85d\u3000e  ") == "a b c d e"
    assert inert("\ud800\U000e0001") == "\\ud800\\U000e0001"
    assert escape("\x9b") == "\\x9b"


@pytest.mark.parametrize("hostile", list(HOSTILE.values()), ids=list(HOSTILE))
def test_every_class_of_hostile_text_comes_out_printable(hostile: str) -> None:
    shown = inert(f"Org {hostile} name")
    assert shown.isprintable()
    assert shown.startswith("Org ")
    assert shown.endswith(" name")


def test_the_unsafe_test_covers_every_code_point_that_is_not_shown_as_is() -> None:
    # Every code point of a category a terminal may act on or not draw is escaped or folded
    # as white space; nothing else is touched.
    for point in range(sys.maxunicode + 1):
        char = chr(point)
        category = unicodedata.category(char)
        hidden = category in {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"} or (
            category == "Zs" and char != " "
        )
        folded = char.isspace() and char != " "
        assert (unsafe(char) or folded) == hidden, hex(point)
        assert not (unsafe(char) and folded)


def test_long_values_are_clipped_with_an_ellipsis_and_never_inside_an_escape() -> None:
    assert inert("x" * 10_000) == "x" * (LIMIT - 1) + "…"
    assert len(inert("x" * 10_000_000)) == LIMIT
    assert inert("abc", limit=3) == "abc"
    assert inert("abcd", limit=3) == "ab…"
    assert inert("ab\x1bcd", limit=6) == "ab…"
    assert inert("a\x1b", limit=5) == "a\\x1b"


def test_a_value_that_is_not_a_string_is_shown_by_its_str() -> None:
    assert inert(42) == "42"
    assert inert(None) == "None"


@given(st.text(), st.integers(min_value=1, max_value=300))
def test_inert_is_printable_bounded_and_idempotent(text: str, limit: int) -> None:
    shown = inert(text, limit=limit)
    assert shown.isprintable()
    assert len(shown) <= limit
    assert "  " not in shown
    assert shown == shown.strip()
    assert inert(shown, limit=limit) == shown


@given(st.text(alphabet=st.characters(categories=["L", "N", "P", "S"])))
def test_printable_text_within_the_limit_is_left_alone(text: str) -> None:
    if len(text) <= LIMIT:
        assert inert(text) == text


def test_lines_keep_paragraphs_and_share_one_budget() -> None:
    assert inert_lines("one\n\ntwo\x1b\r\n") == ["one", "", "two\\x1b", ""]
    lines = inert_lines("para\n" * 10_000, limit=50)
    assert sum(map(len, lines)) + len(lines) - 1 <= 50
    assert lines[-1].endswith("…")
    assert inert_lines("ab\x1b\nc", limit=7) == ["ab…"]


@given(st.text(), st.integers(min_value=1, max_value=300))
def test_lines_are_printable_and_bounded(text: str, limit: int) -> None:
    lines = inert_lines(text, limit=limit)
    assert all(line.isprintable() for line in lines)
    assert sum(map(len, lines)) + len(lines) - 1 <= limit


@given(st.text())
def test_clean_text_and_inert_agree_on_what_is_unsafe(text: str) -> None:
    # clean_text turns exactly the characters inert escapes into spaces.
    cleaned = clean_text(text, limit=10_000) or ""
    spaced = inert(text, limit=100_000)
    for char in text:
        if unsafe(char):
            assert char not in cleaned
            assert escape(char) in spaced


@given(
    st.text(alphabet=st.sampled_from(["a", " ", "\t", "\u00a0", "\x1b", "é", "\u202e"])),
    st.integers(min_value=1, max_value=12),
)
def test_the_shortcut_for_inert_text_gives_what_the_full_rule_gives(text: str, limit: int) -> None:
    from hub_core import display_text

    window = display_text._window(limit)
    full = display_text._inert(text[:window], limit, more=len(text) > window)
    assert inert(text, limit=limit) == full


@pytest.mark.parametrize(
    ("text", "width"),
    [("acme", 4), ("株式会社テスト", 14), ("Ｏｒｇ", 6), ("e\u0301te\u0301", 3), ("", 0)],
)
def test_columns_counts_what_a_terminal_gives_each_character(text: str, width: int) -> None:
    assert columns(text) == width


def test_a_shown_value_is_padded_by_its_columns() -> None:
    from hub_core.cli import Shown

    assert f"{Shown('株式'):<6}|" == "株式  |"
    assert f"{Shown('株式'):>6}|" == "  株式|"
    assert f"{Shown('ab'):^6}|" == "  ab  |"
    coloured = Shown("株式", "\x1b[31m株式\x1b[0m")
    assert f"{coloured:<6}|" == "\x1b[31m株式\x1b[0m  |"  # colour codes take no column
