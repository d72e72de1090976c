"""What a person pasted into API Key, reduced to the token it holds.

The API Key field's ``normalize``: the core keeps, checks, stores and masks the token alone,
never the ``Authorization: Bearer`` typed in front of it. Kept apart from `hub_qlik.apikey`
(which decodes the token's claims, with json and base64), as the provider declaration imports
it whenever the plugin loads.
"""

from __future__ import annotations

import re

__all__ = ["bare_token"]

_HEADER_NAME = re.compile(r"authorization\s*:\s*", re.IGNORECASE)


def _unquoted(text: str) -> str:
    """*text* without one pair of quotes around it (a key copied from a script)."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1].strip()
    return text


def bare_token(value: str) -> str:
    """The token in *value*: without quotes, a leading ``Bearer`` or ``Authorization:`` name.

    Accepts a key pasted with a leading ``Bearer``, as a whole ``Authorization: Bearer <key>``
    header line (as Qlik's examples show it), or in quotes; anything else is given back as it
    is (stripped), for `hub_qlik.apikey.read_key` to judge. A bare key is given back unchanged.
    ``""`` when nothing follows the prefix.
    """
    token = _unquoted(value.strip())
    header_name = _HEADER_NAME.match(token)
    if header_name:
        token = _unquoted(token[header_name.end() :])
    if token[:6].lower() == "bearer" and token[6:7] in ("", " ", "\t"):
        token = token[6:].strip()
    return _unquoted(token)
