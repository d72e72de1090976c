"""The verification flow: one GET of /api/v1/organizations, read into hub's verdict.

The flow never does I/O: it yields its request and the core's driver answers it. Everything it
can judge from the input alone (a pasted header prefix, a space inside the key) it judges
before that request, so bad input costs no call to Elastic Cloud.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Set
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from hub_core import (
    FieldError,
    Flow,
    HubError,
    InvalidCredentials,
    PermissionDenied,
    ProviderUnavailable,
    RateLimited,
    UnexpectedResponse,
    Verified,
)

from .provider import API_KEY, DEFAULT_ENVIRONMENT, ENVIRONMENT, ENVIRONMENTS, Environment

__all__ = ["KEY_PREFIX", "ORGANIZATIONS_PATH", "normalize_key", "parse_expiry", "verify"]

ORGANIZATIONS_PATH = "/api/v1/organizations"
#: Cloud API keys usually start with this; a hint for messages, never a rule.
KEY_PREFIX = "essu_"
EXPIRY_HEADER = "x-elastic-api-key-expiration"
RATE_LIMIT_HEADERS = {
    "limit": "x-ratelimit-limit",
    "remaining": "x-ratelimit-remaining",
    "interval": "x-ratelimit-interval",
}

_HEADER_NAME = re.compile(r"authorization\s*:\s*", re.IGNORECASE)
_API_KEY_SCHEME = re.compile(r"apikey(?:\s+|$)", re.IGNORECASE)
_OTHER_SCHEME = re.compile(r"(bearer|basic|token)\s", re.IGNORECASE)
# What can travel in a header value with no space inside: visible ASCII.
_KEY_CHARACTERS = re.compile(r"[\x21-\x7e]+")
_NUMBER = re.compile(r"\d{1,20}(?:\.\d{1,9})?")
# Epoch values at or above this are milliseconds: as seconds they would land after year 5000.
_MILLISECONDS_FROM = 10**11
# A run of this many characters of the key inside provider text counts as the key itself.
_KEY_WINDOW = 8
_QUOTED_LIMIT = 200
_LABEL_LIMIT = 200
_ID_LIMIT = 128


# --- input -------------------------------------------------------------------------------


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
                f"Cloud API Key starts with '{other.group(1)}', which Elastic Cloud does not use; "
                "paste only the key (Elastic Cloud keys go after 'ApiKey')",
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


def _environment(credentials: Mapping[str, str]) -> Environment:
    value = credentials.get(ENVIRONMENT) or DEFAULT_ENVIRONMENT
    environment = ENVIRONMENTS.get(value)
    if environment is None:
        allowed = ", ".join(ENVIRONMENTS)
        raise FieldError(ENVIRONMENT, f"Environment must be one of: {allowed}")
    return environment


# --- reading responses -------------------------------------------------------------------


def parse_expiry(value: str | None) -> datetime | None:
    """Read the key's expiry from ``X-Elastic-Api-Key-Expiration``; None if absent or unreadable.

    Accepts ISO-8601 (a time without an offset is taken as UTC), epoch seconds, epoch
    milliseconds, and the HTTP date format. Returns an aware UTC datetime.
    """
    if value is None:
        return None
    text = value.strip()
    if not text or len(text) > 64:
        return None
    try:
        if _NUMBER.fullmatch(text):
            number = float(text)
            if number >= _MILLISECONDS_FROM:
                number /= 1000
            moment = datetime.fromtimestamp(number, tz=UTC)
        else:
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                moment = parsedate_to_datetime(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)
    except (ValueError, OverflowError, OSError, TypeError):
        return None


def _retry_after(response: httpx.Response) -> float | None:
    value = (response.headers.get("retry-after") or "").strip()
    if not value:
        return None
    if _NUMBER.fullmatch(value):
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (ValueError, TypeError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = max(0.0, (when - datetime.now(UTC)).total_seconds())
    return seconds if math.isfinite(seconds) else None


def _mentions_key(text: str, key: str) -> bool:
    """Whether *text* holds the key, or any long enough piece of it."""
    if len(key) <= _KEY_WINDOW:
        return key in text
    # A shared run of _KEY_WINDOW characters; walk the windows of the shorter of the two.
    short, long = (text, key) if len(text) < len(key) else (key, text)
    return any(short[i : i + _KEY_WINDOW] in long for i in range(len(short) - _KEY_WINDOW + 1))


def _clean(text: str, limit: int) -> str:
    """One line of printable text, at most *limit* characters."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else " " for c in text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _load_json(response: httpx.Response) -> Any:
    """The parsed body; raise ValueError when it is not JSON."""
    try:
        return json.loads(response.content)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _provider_said(response: httpx.Response, key: str) -> str | None:
    """The provider's own error code and message, cleaned for a person, or None.

    Read from ``{"errors": [{"code", "message"}]}``, or else the ``x-cloud-error-codes``
    header. Text that quotes any piece of the key is dropped whole, never trimmed.
    """
    parts: list[str] = []
    try:
        body = _load_json(response)
    except ValueError:
        body = None
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list):
        for error in errors[:3]:
            if not isinstance(error, dict):
                continue
            words = [
                error[name]
                for name in ("code", "message")
                if isinstance(error.get(name), str) and error[name].strip()
            ]
            if words:
                parts.append(": ".join(words))
    if not parts and response.headers.get("x-cloud-error-codes"):
        parts.append(response.headers["x-cloud-error-codes"])
    said = "; ".join(parts)
    if not said or _mentions_key(said, key):
        return None
    return _clean(said, _QUOTED_LIMIT)


def _quote(said: str | None) -> str:
    return f' Elastic Cloud said: "{said}".' if said else ""


# --- the flow ----------------------------------------------------------------------------

# Parsed once: building a request from a ready URL costs a third of parsing the string each
# time, which shows when thousands of accounts are checked at once.
_ORGANIZATIONS_URLS = {
    value: httpx.URL(f"https://{environment.api_host}{ORGANIZATIONS_PATH}")
    for value, environment in ENVIRONMENTS.items()
}


def verify(credentials: Mapping[str, str]) -> Flow:
    """Check a Cloud API key by listing the organizations it reaches."""
    key = normalize_key(credentials.get(API_KEY, ""))
    environment = _environment(credentials)
    response = yield httpx.Request(
        "GET",
        _ORGANIZATIONS_URLS[environment.value],
        headers={"Authorization": f"ApiKey {key}", "Accept": "application/json"},
    )
    if response.status_code == 200:
        return _verified(response, key, environment)
    raise _failure(response, key, environment)


def _failure(response: httpx.Response, key: str, environment: Environment) -> HubError:
    status = response.status_code
    said = _quote(_provider_said(response, key))
    if status == 401:
        hints = []
        if not key.startswith(KEY_PREFIX):
            hints.append(
                f" Cloud API keys usually start with {KEY_PREFIX} and this one does not: make "
                "sure it comes from Organization → API keys in the Cloud console, not from "
                "Kibana or Elasticsearch."
            )
        others = [env.label for env in ENVIRONMENTS.values() if env != environment]
        if others:
            hints.append(
                f" If the organization is on {' or '.join(others)}, choose that environment."
            )
        return InvalidCredentials(
            "Elastic Cloud rejected the Cloud API Key: it is wrong, has expired, or was "
            f"deleted.{''.join(hints)}{said}",
            field=API_KEY,
        )
    if status == 403:
        return PermissionDenied(
            "The Cloud API Key is valid, but its role does not let it list the organization. "
            "Give the key the Organization owner role in the Cloud console, or create a new "
            f"key with that role.{said}",
            field=API_KEY,
        )
    if status == 429:
        retry_after = _retry_after(response)
        when = f"in {math.ceil(retry_after)} seconds" if retry_after is not None else "shortly"
        return RateLimited(
            f"Elastic Cloud is limiting requests for now; try again {when}.{said}",
            retry_after=retry_after,
        )
    if 500 <= status <= 599:
        return ProviderUnavailable(
            f"Elastic Cloud ({environment.api_host}) failed on its side with HTTP {status}; "
            f"try again later.{said}",
            reason="server",
        )
    return UnexpectedResponse(
        f"Elastic Cloud answered HTTP {status} where hub expected the list of organizations "
        f"the Cloud API Key reaches.{said}"
    )


def _unexpected(problem: str, said: str | None = None) -> UnexpectedResponse:
    return UnexpectedResponse(
        f"Elastic Cloud accepted the Cloud API Key, but {problem}; hub expected an object with "
        f"an 'organizations' list, each with an 'id' and a 'name'.{_quote(said)}"
    )


def _organization(item: Any, key: str) -> dict[str, str]:
    if not isinstance(item, dict):
        raise _unexpected("an entry of its organizations list is not an object")
    raw_id = item.get("id")
    if isinstance(raw_id, bool) or not isinstance(raw_id, str | int):
        raise _unexpected("an organization in its answer has no id")
    org_id = str(raw_id).strip()
    if not org_id or len(org_id) > _ID_LIMIT or not org_id.isprintable():
        raise _unexpected("an organization in its answer has an id hub cannot use")
    raw_name = item.get("name")
    name = _clean(raw_name, _LABEL_LIMIT) if isinstance(raw_name, str) else ""
    if _mentions_key(org_id, key) or _mentions_key(name, key):
        raise UnexpectedResponse(
            "Elastic Cloud's answer repeats the Cloud API Key inside an organization, so hub "
            "will not store it; check that the environment points at Elastic Cloud."
        )
    return {"id": org_id, "name": name or f"Organization {org_id}"}


def _rate_limit(response: httpx.Response, key: str, present: Set[str]) -> dict[str, int | str]:
    found: dict[str, int | str] = {}
    for name, header in RATE_LIMIT_HEADERS.items():
        value = _clean(response.headers[header], 64) if header in present else ""
        if value and not _mentions_key(value, key):
            found[name] = int(value) if value.isdigit() else value
    return found


def _verified(response: httpx.Response, key: str, environment: Environment) -> Verified:
    try:
        body = _load_json(response)
    except ValueError:
        raise _unexpected("its answer is not JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("organizations"), list):
        raise _unexpected("its answer has no 'organizations' list", _provider_said(response, key))
    organizations = [_organization(item, key) for item in body["organizations"]]
    if not organizations:
        raise UnexpectedResponse(
            "Elastic Cloud accepted the Cloud API Key but listed no organization, where hub "
            "expected the organization the key belongs to. Check in the Cloud console that "
            "the organization and the key still exist."
        )
    first, *others = organizations
    details: dict[str, Any] = {
        "environment": environment.value,
        "api_host": environment.api_host,
        "organization_id": first["id"],
        "organization_name": first["name"],
        "organization_count": len(organizations),
    }
    if others:
        details["other_organizations"] = others
    if body.get("next_page"):
        # Only the first page was read; there are more organizations than counted.
        details["more_organizations"] = True
    # One pass over the raw names: most answers carry none of these headers.
    present = {name.lower().decode("latin-1") for name, _ in response.headers.raw}
    rate_limit = _rate_limit(response, key, present)
    if rate_limit:
        details["rate_limit"] = rate_limit
    expiry = response.headers[EXPIRY_HEADER] if EXPIRY_HEADER in present else None
    return Verified(
        identity=f"org:{first['id']}",
        label=first["name"],
        expires_at=parse_expiry(expiry),
        details=details,
    )
