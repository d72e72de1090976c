"""Reading a Qlik Cloud API key before it is sent, without verifying it.

A Qlik Cloud API key is a JWT (ES384) whose claims name the tenant (``tenantId``), the user
(``sub``) and the key itself (``jti``). Its signature is Qlik's business: hub only reads the
claims to ask for the key's own record (by its ``jti``) and to notice a key from another
tenant. Every message here describes the key without quoting any of it.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import UTC, datetime
from typing import Any, NamedTuple

from hub_core import FieldError

from .pasted import bare_token

__all__ = ["ApiKey", "looks_like_key", "read_key"]

_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
_MIN_LENGTH = 20
_WHERE = "create one in Qlik Cloud under Profile settings > API keys"

# Keys of other services that people paste by mistake: prefix -> what it is.
_FOREIGN = (
    ("essu_", "an Elastic Cloud API key"),
    ("ghp_", "a GitHub token"),
    ("github_pat_", "a GitHub token"),
    ("xox", "a Slack token"),
    ("sk-", "an OpenAI-style secret key"),
    ("AKIA", "an AWS access key id"),
)


class ApiKey(NamedTuple):
    """The key to send, and the claims read from it (None when absent or not a JWT)."""

    token: str
    tenant_id: str | None = None
    subject: str | None = None
    key_id: str | None = None
    expires_at: datetime | None = None

    def __repr__(self) -> str:
        return f"ApiKey(token='***', tenant_id={self.tenant_id!r}, key_id={self.key_id!r})"


def _fail(message: str) -> FieldError:
    return FieldError("api_key", message)


def _decode_segment(segment: str) -> dict[str, Any] | None:
    if not _SEGMENT.fullmatch(segment):
        return None
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _text_claim(claims: dict[str, Any], name: str) -> str | None:
    value = claims.get(name)
    return value if isinstance(value, str) and value else None


def _expiry_claim(claims: dict[str, Any]) -> datetime | None:
    value = claims.get("exp")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def looks_like_key(value: str) -> bool:
    """Whether *value* (typed in another field) looks like an API key rather than a name."""
    text = value.strip()
    if text[:7].lower() == "bearer ":
        return True
    # Only prefixes no tenant name can start with: "sk-shop" is a fine tenant name.
    if any(text.startswith(prefix) for prefix, _what in _FOREIGN if "_" in prefix):
        return True
    return text.startswith("eyJ") and len(text) >= 32


def read_key(value: str) -> ApiKey:
    """Check the API Key field's *value* and read its claims if it is a JWT.

    Accept a key pasted with a leading ``Bearer``, as a whole ``Authorization: Bearer <key>``
    header line (as Qlik's examples show it), or in quotes. Raise `FieldError` on ``api_key``
    when the value cannot be a Qlik Cloud key: another service's key, a broken or cut-off
    token, or spaces and characters no key contains.
    """
    token = bare_token(value)
    if not token:
        raise _fail("API Key is required.")
    for position, char in enumerate(token, start=1):
        if char.isspace() or not char.isascii() or not char.isprintable():
            kind = "a space" if char.isspace() else "a character that no API key contains"
            raise _fail(
                f"API Key contains {kind} (at position {position}); copy the key again in one "
                "piece."
            )
    for prefix, what in _FOREIGN:
        if token.startswith(prefix):
            raise _fail(
                f"API Key looks like {what} (it starts with {prefix}), not a Qlik Cloud API "
                f"key. A Qlik Cloud key is a long token starting with eyJ; {_WHERE}."
            )
    if len(token) < _MIN_LENGTH:
        raise _fail(
            f"API Key is too short to be a Qlik Cloud API key (those are several hundred "
            f"characters long); {_WHERE}."
        )
    if not token.startswith("eyJ"):
        # Not a JWT: nothing to read. Qlik will say whether it takes it.
        return ApiKey(token)
    segments = token.split(".")
    header = _decode_segment(segments[0])
    claims = _decode_segment(segments[1]) if len(segments) == 3 else None
    if header is None or claims is None or not _SEGMENT.fullmatch(segments[2]):
        raise _fail(
            "API Key looks cut off or damaged: a Qlik Cloud key has three parts separated by "
            "dots. Copy the whole key again (it is shown only once, so create a new one if "
            "you no longer have it)."
        )
    return ApiKey(
        token,
        tenant_id=_text_claim(claims, "tenantId"),
        subject=_text_claim(claims, "sub"),
        key_id=_text_claim(claims, "jti"),
        expires_at=_expiry_claim(claims),
    )
