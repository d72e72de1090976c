"""Reading a Cloud API key from what a person pasted, before anything is sent.

The API Key field's ``normalize`` (so the core keeps, checks, stores and masks the bare key,
not the words typed around it) and the flow's first step. No httpx here: the provider
declaration imports this module whenever the plugin loads.
"""

from __future__ import annotations

import re

from hub_core import FieldError

__all__ = ["API_KEY", "normalize_key"]

#: The name of the Cloud API Key field.
API_KEY = "api_key"

_HEADER_NAME = re.compile(r"authorization\s*:\s*", re.IGNORECASE)
_API_KEY_SCHEME = re.compile(r"apikey(?:\s+|$)", re.IGNORECASE)
_OTHER_SCHEME = re.compile(r"(bearer|basic|token)\s", re.IGNORECASE)
# What can travel in a header value with no space inside: visible ASCII.
_KEY_CHARACTERS = re.compile(r"[\x21-\x7e]+")


def normalize_key(value: str) -> str:
    """Return the bare key from what a person pasted, or raise `FieldError` on ``api_key``.

    Accepts the key alone, ``ApiKey <key>`` or a whole ``Authorization: ApiKey <key>`` header
    line, optionally in quotes. The key left over must be one run of visible ASCII characters.
    """
    key = value.strip()
    if not key:
        raise FieldError(API_KEY, "Cloud API Key is required")
    key = _unquote(key)
    header = _HEADER_NAME.match(key)
    if header:
        key = key[header.end() :]
    scheme = _API_KEY_SCHEME.match(key)
    if scheme:
        key = key[scheme.end() :]
    key = _unquote(key)
    if not key:
        raise FieldError(
            API_KEY, "Cloud API Key holds only the 'ApiKey' prefix; paste the key that follows it"
        )
    if _KEY_CHARACTERS.fullmatch(key):
        return key
    if any(char.isspace() for char in key):
        other = _OTHER_SCHEME.match(key)
        if other:
            raise FieldError(
                API_KEY,
                # Typographic quotes: the scheme is then no piece of the typed value, which
                # every message of the check is masked by.
                f"Cloud API Key starts with “{other.group(1)}”, which Elastic Cloud does not use; "
                "paste only the key (Elastic Cloud keys go after “ApiKey”)",
            )
        raise FieldError(
            API_KEY,
            "Cloud API Key has a space or line break inside it, but a key is one unbroken "
            "string; copy it again without the text around it",
        )
    position = next(i for i, char in enumerate(key) if not "\x21" <= char <= "\x7e") + 1
    raise FieldError(
        API_KEY,
        f"Cloud API Key has a character that cannot be part of a key (character {position} "
        "of the key); "
        "keys hold only plain letters, digits and punctuation. Copy it again from the "
        "Cloud console",
    )


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'`":
        return text[1:-1].strip()
    return text
