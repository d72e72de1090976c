"""`echo_json`: the one JSON document of every ``--json``, as json.dumps writes it."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub_core.cli import echo_json

#: Every kind of key json.dumps takes (it writes a number, a boolean or None as text).
KEYS = st.one_of(st.text(), st.integers(), st.floats(), st.booleans(), st.none())
#: Text of any kind: controls, bidi overrides, astral characters, lone surrogates.
TEXT = st.text(st.characters(codec=None, exclude_categories=()))
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), TEXT)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(st.one_of(TEXT, KEYS), inner, max_size=4),
    ),
    max_leaves=25,
)


def documented(value: object) -> str:
    """What every ``--json`` printed when echo_json was json.dumps with an indent."""
    return json.dumps(value, indent=2, ensure_ascii=True) + "\n"


@settings(max_examples=300)
@given(VALUES)
def test_a_document_is_the_text_json_dumps_writes(value: Any) -> None:
    out = _printed(lambda: echo_json(value))
    assert out == documented(value)
    assert out.isascii()


@settings(max_examples=150)
@given(st.lists(VALUES, max_size=6), st.integers(1, 8))
def test_an_iterator_is_the_same_list_whatever_it_gathers(items: list[Any], gather: int) -> None:
    assert _printed(lambda: echo_json(iter(items), gather=gather)) == documented(items)


def test_a_value_json_cannot_write_is_json_s_own_error() -> None:
    for value in ({"a": object()}, [1, {2: {3}}], object()):
        with pytest.raises(TypeError) as expected:
            json.dumps(value, indent=2)
        with pytest.raises(TypeError) as raised:
            echo_json(value)
        assert str(raised.value) == str(expected.value)


@pytest.mark.parametrize("gather", [None, 3])
def test_a_stream_is_written_as_its_items_come(gather: int | None) -> None:
    # `hub check --json` writes each verdict as it is recorded (the default): when the next
    # item is asked for, every one before it is printed; gathered, all but fewer than 3.
    out = io.StringIO()
    printed: list[int] = []

    def items() -> Iterator[dict[str, int]]:
        for number in range(7):
            written = out.getvalue()
            printed.append(len(json.loads(written + "]")) if written else 0)
            yield {"n": number}

    with contextlib.redirect_stdout(out):
        if gather is None:
            echo_json(items())
        else:
            echo_json(items(), gather=gather)
    assert out.getvalue() == documented([{"n": n} for n in range(7)])
    assert printed == (list(range(7)) if gather is None else [0, 0, 0, 3, 3, 3, 6])


def _printed(call: Callable[[], None]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        call()
    return out.getvalue()
