r"""Untrusted text made inert before a person sees it: the one rule every output uses.

Names, roles, statuses and error messages come from providers and plugins, and a careless or
compromised one can put anything in them: terminal escape sequences (CSI that clears the
screen, OSC that retitles the window or hides a link), BEL, NUL, C1 controls, bidi overrides
that reorder what follows, zero-width characters, a megabyte of text. The CLI (and the web
pages, before they HTML-escape) shows such a string only through `inert`:

- white space (what ``str.split()`` splits on: tab, CR, LF, form feed, the C0 separators
  U+001C–U+001F, NEL U+0085, U+2028, U+2029 and every Unicode space) folds into one space,
  and none is kept at either end: a value is one line;
- every other character ``str.isprintable()`` rejects is shown as a Python-style escape, so
  a person debugging sees what was sent while the terminal only gets printable text:
  C0 controls, DEL and C1 controls (``\x1b``, ``\x7f``, ``\x9b``), format characters such as
  bidi embeddings, overrides and isolates and zero-width characters (``\u202e``, ``\u200b``),
  lone surrogates (``\ud800``), private-use and unassigned code points (``\U000f0000``);
- the result is at most *limit* characters, ending in "…" when cut, never inside an escape.

The result is always printable (``str.isprintable()``) and ``inert(inert(x)) == inert(x)``.
`hub_core.responses.clean_text`, for flow authors, uses the same test of what is unsafe but
turns such characters into spaces, since what it cleans is stored.
"""

from __future__ import annotations

import unicodedata

__all__ = ["LIMIT", "LONG_LIMIT", "columns", "escape", "inert", "inert_lines", "unsafe"]

#: The longest value `inert` gives back by default, in characters: a name, a status, a row.
LIMIT = 200
#: A budget for prose a plugin writes (guide text, help, an error message).
LONG_LIMIT = 2000


def columns(text: str) -> int:
    """How many terminal columns *text* takes: two for a wide East Asian character (CJK, a
    fullwidth form), none for a combining mark, one for the rest."""
    if text.isascii():
        return len(text)
    return sum(
        0 if unicodedata.combining(char) else 2 if unicodedata.east_asian_width(char) in "WF" else 1
        for char in text
    )


def unsafe(char: str) -> bool:
    """Whether *char* must not reach a person as it is: not printable and not white space."""
    return not char.isprintable() and not char.isspace()


def escape(char: str) -> str:
    r"""The visible form of one unsafe character: ``\x1b``, ``\u202e``, ``\U000e0001``."""
    point = ord(char)
    if point < 0x100:
        return f"\\x{point:02x}"
    if point < 0x10000:
        return f"\\u{point:04x}"
    return f"\\U{point:08x}"


def inert(value: object, *, limit: int = LIMIT) -> str:
    """*value* as one printable line of at most *limit* characters (see the module's rule).

    A value that is not a string is shown by its ``str()``. Only the first few times *limit*
    characters are read, so a megabyte costs no more than a kilobyte.
    """
    text = value if isinstance(value, str) else str(value)
    if (  # already inert, as most values are: printable, one space at a time, none at the ends
        0 < len(text) <= limit
        and text.isprintable()
        and text[0] != " "
        and text[-1] != " "
        and "  " not in text
    ):
        return text
    window = _window(limit)
    return _inert(text[:window], limit, more=len(text) > window)


def inert_lines(value: object, *, limit: int = LONG_LIMIT) -> list[str]:
    """*value*'s lines (split at LF), each made `inert`; *limit* bounds them all together.

    For prose where a line break starts a paragraph: guide text, help. The lines and the
    breaks between them hold at most *limit* characters; the last ends in "…" when cut.
    """
    text = value if isinstance(value, str) else str(value)
    window = _window(limit)
    parts = text[:window].split("\n")
    lines: list[str] = []
    left = limit
    for number, part in enumerate(parts):
        if left < 1:  # no room for this line: the one before says that more was there
            lines[-1] = _inert(parts[number - 1], max(len(lines[-1]), 1), more=True)
            break
        last = number == len(parts) - 1
        lines.append(_inert(part, left, more=last and len(text) > window))
        left -= len(lines[-1]) + 1
    return lines


def _window(limit: int) -> int:
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    # Folding only shrinks text and an escape is at most ten characters, so this many input
    # characters fill *limit* unless nearly all of them are white space.
    return max(4 * limit, 4096)


def _inert(text: str, limit: int, more: bool) -> str:
    folded = " ".join(text.split())
    if folded.isprintable():
        return _clip(folded, limit, more)
    return _clip([char if char.isprintable() else escape(char) for char in folded], limit, more)


def _clip(pieces: str | list[str], limit: int, more: bool) -> str:
    """*pieces* joined, cut whole to *limit* characters with "…" when longer or *more*."""
    if isinstance(pieces, str):  # the common case: printable text, one character per piece
        if len(pieces) <= limit and not more:
            return pieces
        return pieces[: limit - 1].rstrip() + "…"
    if sum(map(len, pieces)) <= limit and not more:
        return "".join(pieces)
    kept: list[str] = []
    size = 0
    for piece in pieces:
        if size + len(piece) > limit - 1:
            break
        kept.append(piece)
        size += len(piece)
    return "".join(kept).rstrip() + "…"
