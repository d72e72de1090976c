"""hub_core.responses: what a flow reads from a provider, made safe to use and to show."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub_core.errors import KEY_PIECE, MASK, UnexpectedResponse, redact
from hub_core.responses import TEXT_LIMIT, clean_text, read_json, read_time

KEY = "essu_Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA"


def answer(
    content: bytes, status: int = 200, content_type: str = "application/json"
) -> httpx.Response:
    request = httpx.Request("GET", "https://api.acme.test/v1/me")
    return httpx.Response(
        status, content=content, headers={"content-type": content_type}, request=request
    )


def test_read_json_gives_the_body_of_the_expected_shape() -> None:
    assert read_json(answer(b'{"id": 1}'), dict) == {"id": 1}
    assert read_json(answer(b"[1, 2]"), list) == [1, 2]
    assert read_json(answer(b"null")) is None


@pytest.mark.parametrize(
    ("content", "content_type", "said"),
    [
        (b"<html>sign in</html>", "text/html; charset=utf-8", "not JSON (text/html)"),
        (b"", "application/json", "not JSON (application/json)"),
        (b"\xff\xfe{", "application/json", "not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "application/json", "not JSON"),
    ],
)
def test_a_body_that_is_not_json_is_unexpected(
    content: bytes, content_type: str, said: str
) -> None:
    with pytest.raises(UnexpectedResponse, match=r"api\.acme\.test answered HTTP 200") as info:
        read_json(answer(content, content_type=content_type), dict, what="the account")
    assert said in str(info.value)
    assert "where hub expected the account" in str(info.value)


@pytest.mark.parametrize(
    ("content", "shape", "got"),
    [
        (b"[]", dict, "a list"),
        (b'"x"', dict, "a string"),
        (b"true", int, "bool"),
        (b"null", list, "null"),
    ],
)
def test_json_of_another_shape_is_unexpected(content: bytes, shape: type, got: str) -> None:
    with pytest.raises(UnexpectedResponse, match=f"another shape \\({got}\\)"):
        read_json(answer(content), shape)


def test_clean_text_is_one_inert_line() -> None:
    hostile = "Acme\x1b[2J\x1b]0;pwned\x07 \u202eevil\u202c\x00\x85team\r\nline\ud800"
    cleaned = clean_text(hostile)
    assert cleaned is not None
    assert cleaned.isprintable()
    assert cleaned == "Acme [2J ]0;pwned evil team line"


def test_clean_text_clips_and_gives_none_for_nothing() -> None:
    clipped = clean_text("x" * 10_000)
    assert clipped is not None
    assert len(clipped) == TEXT_LIMIT
    assert clipped.endswith("…")
    assert clean_text("  \x1b \t") is None
    assert clean_text(42) is None
    assert clean_text("short", limit=3) == "sh…"


def test_clean_text_masks_the_key_before_clipping() -> None:
    text = "x" * (TEXT_LIMIT - 10) + KEY
    cleaned = clean_text(text, secrets=[KEY])
    assert cleaned is not None
    assert KEY[:KEY_PIECE] not in cleaned
    assert cleaned.endswith(MASK)


@pytest.mark.parametrize(
    "text",
    [
        f"bad key {KEY}",
        f"bad key {KEY[:12]}",  # cut short
        f"bad key {KEY[3:20]}…",  # a piece from the middle
        f"bad key {KEY[:15]}\n{KEY[15:]}",  # split across lines
    ],
)
def test_redact_masks_the_key_whole_or_in_pieces(text: str) -> None:
    masked = redact(text, [KEY])
    assert masked.startswith("bad key ")
    assert MASK in masked
    for start in range(len(KEY) - KEY_PIECE + 1):
        assert KEY[start : start + KEY_PIECE] not in masked


def test_redact_leaves_short_secrets_and_other_text_alone() -> None:
    assert redact("region us, key abc", ["us", "abc"]) == "region us, key abc"
    assert redact("nothing to hide here", [KEY]) == "nothing to hide here"


@given(st.text(max_size=300), st.text(min_size=KEY_PIECE, max_size=60))
def test_no_piece_of_a_secret_survives_redaction(text: str, secret: str) -> None:
    masked = redact(text + secret[2:] + text, [secret])
    pieces = {secret[i : i + KEY_PIECE] for i in range(len(secret) - KEY_PIECE + 1)}
    # What is left between the masks (a piece may end in the mask's own "]" and still be none).
    left = masked.split(MASK)
    assert not any(piece in part for piece in pieces for part in left)


MOMENT = datetime(2031, 5, 4, 3, 2, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2031-05-04T03:02:01Z", MOMENT),
        ("2031-05-04T05:02:01+02:00", MOMENT),
        ("2031-05-04T03:02:01", MOMENT),  # no offset: UTC
        (" 2031-05-04T03:02:01Z ", MOMENT),
        ("2031-05-04", MOMENT.replace(hour=0, minute=0, second=0)),
        ("Sun, 04 May 2031 03:02:01 GMT", MOMENT),
        ("Sun, 04 May 2031 03:02:01 -0000", MOMENT),  # an HTTP date without a zone: UTC
        ("1935630121", MOMENT),
        ("1935630121000", MOMENT),  # milliseconds
        ("1935630121.25", MOMENT + timedelta(microseconds=250_000)),
        (1935630121, MOMENT),
        (1935630121000.0, MOMENT),
    ],
)
def test_read_time_reads_iso_http_dates_and_epochs_as_utc(
    value: object, expected: datetime
) -> None:
    moment = read_time(value)
    assert moment == expected
    assert moment is not None
    assert moment.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        "",
        "never",
        "2031-13-45T99:00:00Z",
        "9" * 20,  # past the end of the calendar, even as milliseconds
        "1e12",
        "-5",
        -5,
        float("inf"),
        float("nan"),
        "0x1F",
        "\u00b2",  # a superscript two: str.isdigit() says yes, float() says no
        "\u0663",  # an Arabic-Indic three: a digit, but not an ASCII one
        "T" * 500,
        ["2031-05-04"],
    ],
)
def test_read_time_gives_none_for_what_is_not_a_moment(value: object) -> None:
    assert read_time(value) is None


@given(st.one_of(st.text(max_size=80), st.integers(), st.floats()))
def test_read_time_never_raises(value: object) -> None:
    moment = read_time(value)
    assert moment is None or moment.tzinfo is UTC
