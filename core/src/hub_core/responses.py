"""Reading a provider's answer in a flow: JSON bodies, text fit for a person, no key in it.

What a provider returns is untrusted: a body may not be JSON, JSON may be of another shape,
text may hold control characters, be megabytes long or quote the key, and a date may come in
any of several formats or none. A flow reads its answers through these helpers, so each
plugin gets the same care without writing it again::

    from hub_core.responses import clean_text, read_json, read_time

    body = read_json(response, dict, what="the list of organizations")
    name = clean_text(body.get("name"), secrets=[key]) or "Unnamed"
    expires_at = read_time(body.get("expires_at"))

The driver already handles what a flow never sees (429, redirects, retries, the body cap);
these helpers are for the answer the flow does see.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, TypeVar, overload

from .display_text import unsafe
from .errors import KEY_PIECE, MASK, UnexpectedResponse, redact

if TYPE_CHECKING:
    import httpx

__all__ = [
    "KEY_PIECE",
    "MASK",
    "TEXT_LIMIT",
    "clean_text",
    "read_int",
    "read_json",
    "read_number",
    "read_time",
    "redact",
]

#: The longest provider text `clean_text` gives back, in characters.
TEXT_LIMIT = 200
# How much of a provider's string is looked at before it is clipped: a name of a megabyte
# costs no more than one of a kilobyte.
_SCAN = 4 * 1024
# Seconds since the epoch, as ASCII digits only: re's \d would take any script's digits.
_EPOCH = re.compile(r"[0-9]{1,20}(?:\.[0-9]{1,9})?")
# An epoch value at or above this is in milliseconds: as seconds it would fall after year 5000.
_MILLISECONDS_FROM = 10**11
# No date format hub reads is longer; a longer string is not a date, and is not parsed.
_TIME_LIMIT = 64

T = TypeVar("T")

_KINDS = {dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number"}


@overload
def read_json(response: httpx.Response, shape: type[T], *, what: str = ...) -> T: ...
@overload
def read_json(response: httpx.Response, shape: None = None, *, what: str = ...) -> Any: ...
def read_json(response: httpx.Response, shape: type[T] | None = None, *, what: str = "") -> Any:
    """The body of *response* parsed as JSON, checked to be of type *shape* (any when None).

    Raise `UnexpectedResponse` naming the host, the status and *what* the flow expected ("the
    list of organizations") when the body is not JSON (empty, HTML, not UTF-8, nested too
    deeply) or is JSON of another type. ``bool`` never passes for a number.
    """
    expected = f", where hub expected {what}" if what else ""
    try:
        body = json.loads(response.content)
    except (ValueError, RecursionError):
        kind = response.headers.get("content-type", "").split(";")[0].strip()
        typed = f" ({clean_text(kind, limit=60)})" if kind else ""
        raise UnexpectedResponse(
            f"{_where(response)} with something that is not JSON{typed}{expected}; it may be "
            "having problems, try again later"
        ) from None
    if shape is not None and (
        not isinstance(body, shape) or (isinstance(body, bool) and shape is not bool)
    ):
        got = _KINDS.get(type(body), "null" if body is None else type(body).__name__)
        raise UnexpectedResponse(f"{_where(response)} with JSON of another shape ({got}){expected}")
    return body


def _where(response: httpx.Response) -> str:
    try:
        host = response.request.url.host
    except RuntimeError:  # a response built by hand, never sent
        host = "the provider"
    return f"{host} answered HTTP {response.status_code}"


def clean_text(
    value: object, *, secrets: Iterable[str] = (), limit: int = TEXT_LIMIT
) -> str | None:
    """A provider's string made fit to show a person and to store; None when there is none.

    Not a string, or nothing left once cleaned: None. Otherwise every secret and piece of one
    is masked (before clipping, so no half-key survives the cut), control, format and bidi
    characters and lone surrogates become spaces, all white space folds into single spaces,
    and the result is clipped to *limit* characters, ending in "…" when cut.
    """
    if not isinstance(value, str):
        return None
    text = value[:_SCAN]
    if not text.isprintable():
        # display_text holds the one rule of what is unsafe; stored text gets spaces, not escapes.
        text = "".join(" " if unsafe(char) else char for char in text)
    text = " ".join(redact(text, secrets).split())
    if not text:
        return None
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def read_time(value: object) -> datetime | None:
    """A moment a provider gave as text or a number, as an aware UTC datetime; None if unreadable.

    Reads ISO-8601 (``2031-05-04T03:02:01Z``; without an offset, UTC), the HTTP date format
    (``Sun, 04 May 2031 03:02:01 GMT``) and seconds since the epoch, as a number or a string of
    ASCII digits; an epoch value too large for seconds (from 10**11) is taken as milliseconds.
    Negative, infinite or out-of-range values, ``bool``, and any other text give None: a
    provider's odd date is an unknown moment, never a crash.
    """
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return _from_epoch(float(value))
        if not isinstance(value, str):
            return None
        text = value.strip()
        if not text or len(text) > _TIME_LIMIT:
            return None
        if _EPOCH.fullmatch(text):
            return _from_epoch(float(text))
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            moment = parsedate_to_datetime(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)
    # parsedate_to_datetime raises TypeError or IndexError on some malformed dates, and
    # astimezone OverflowError at the edges of the calendar.
    except (ValueError, TypeError, IndexError, OverflowError, OSError):
        return None


def _from_epoch(seconds: float) -> datetime | None:
    if not math.isfinite(seconds) or seconds < 0:
        return None
    if seconds >= _MILLISECONDS_FROM:
        seconds /= 1000
    return datetime.fromtimestamp(seconds, tz=UTC)


# ASCII digits only, an optional sign: int() takes other scripts' digits ("١٢"), and
# str.isdigit() says True for "²", which int() refuses.
_INTEGER = re.compile(r"[+-]?[0-9]{1,30}")
_NUMBER = re.compile(
    r"[+-]?(?:[0-9]{1,30}(?:\.[0-9]{0,30})?|\.[0-9]{1,30})(?:[eE][+-]?[0-9]{1,3})?"
)
# No count a provider gives is larger; a larger one is not a count hub can store or show.
_INT_LIMIT = 2**63 - 1


def read_int(value: object, *, minimum: int | None = None) -> int | None:
    """A whole number a provider gave as a number or text (a header); None if it is not one.

    Takes an ``int`` (never ``bool``), a float with no fraction, or a string of ASCII digits
    with an optional sign and surrounding spaces. Anything else, a value beyond 64 bits, or one
    below *minimum*, gives None: an odd count is an unknown count, never a crash.
    """
    number: int
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            return None
        number = int(value)
    elif isinstance(value, str) and _INTEGER.fullmatch(text := value.strip()):
        number = int(text)
    else:
        return None
    if abs(number) > _INT_LIMIT or (minimum is not None and number < minimum):
        return None
    return number


def read_number(value: object) -> float | None:
    """A number a provider gave as a number or ASCII text, as a finite float; None otherwise."""
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, int | float):
            number = float(value)
        elif isinstance(value, str) and _NUMBER.fullmatch(text := value.strip()):
            number = float(text)
        else:
            return None
    except OverflowError:  # an int too large for a float
        return None
    return number if math.isfinite(number) else None
