"""The verification flow: one GET of /api/v1/organizations, read into hub's verdict.

The flow never does I/O: it yields its request and the core's driver answers it. Everything it
can judge from the input alone (a pasted header prefix, a space inside the key) it judges
before that request, so bad input costs no call to Elastic Cloud.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import Any

import httpx

from hub_core import (
    FieldError,
    Flow,
    HubError,
    InvalidCredentials,
    PermissionDenied,
    ProviderUnavailable,
    UnexpectedResponse,
    Verified,
)
from hub_core.requests import request
from hub_core.responses import MASK, clean_text, read_int, read_json, read_time, redact

from .key import API_KEY, normalize_key
from .provider import DEFAULT_ENVIRONMENT, ENVIRONMENT, ENVIRONMENTS, Environment

__all__ = ["KEY_PREFIX", "ORGANIZATIONS_PATH", "normalize_key", "verify"]

ORGANIZATIONS_PATH = "/api/v1/organizations"
#: Cloud API keys usually start with this; a hint for messages, never a rule.
KEY_PREFIX = "essu_"
EXPIRY_HEADER = "x-elastic-api-key-expiration"
RATE_LIMIT_HEADERS = {
    "limit": "x-ratelimit-limit",
    "remaining": "x-ratelimit-remaining",
    "interval": "x-ratelimit-interval",
}

_ID_LIMIT = 128
_EXPECTED = "an object with an 'organizations' list, each with an 'id' and a 'name'"


# --- input ---------------------------------------------------------------------------


def _environment(credentials: Mapping[str, str]) -> Environment:
    value = credentials.get(ENVIRONMENT) or DEFAULT_ENVIRONMENT
    environment = ENVIRONMENTS.get(value)
    if environment is None:
        allowed = ", ".join(ENVIRONMENTS)
        raise FieldError(ENVIRONMENT, f"Environment must be one of: {allowed}")
    return environment


# --- reading responses -------------------------------------------------------------------

# One rule for Elastic Cloud's text, wherever hub shows or stores it (a quoted error, a header
# kept in the details, an organization's name): it is cleaned and kept with every piece of the
# key masked, never dropped for having echoed the key. The mask makes it safe to show, and the
# words around an echoed key ("... has expired", an error code) are often what the person needs.
# Text that is nothing but the mask says nothing, and is not quoted.


def _provider_said(body: Any, response: httpx.Response, key: str) -> str | None:
    """Elastic Cloud's own error codes and messages, fit to quote, or None.

    Read from ``{"errors": [{"code", "message"}]}`` (the first three), or else the
    ``x-cloud-error-codes`` header.
    """
    parts: list[str] = []
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list):
        for error in errors[:3]:
            if not isinstance(error, dict):
                continue
            words = [
                word
                for name in ("code", "message")
                if isinstance(word := error.get(name), str) and word.strip()
            ]
            if words:
                parts.append(": ".join(words))
    if not parts:
        parts.append(response.headers.get("x-cloud-error-codes", ""))
    said = clean_text("; ".join(parts), secrets=[key])
    if said is None or not any(char.isalnum() for char in said.replace(MASK, "")):
        return None
    return said


def _body(response: httpx.Response) -> Any:
    """The JSON of an error answer, or None: an error need not come with a readable body."""
    try:
        return read_json(response)
    except UnexpectedResponse:
        return None


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
    response = yield request(
        "GET",
        _ORGANIZATIONS_URLS[environment.value],
        headers={"Authorization": f"ApiKey {key}", "Accept": "application/json"},
    )
    if response.status_code == 200:
        return _verified(response, key, environment)
    raise _failure(response, key, environment)


def _failure(response: httpx.Response, key: str, environment: Environment) -> HubError:
    # No 429 and no redirect reaches here: the core's driver waits out the one (then raises
    # RateLimited at the yield) and follows or refuses the other. A 502/503/504 arrives once
    # the driver's retries are spent.
    status = response.status_code
    said = _quote(_provider_said(_body(response), response, key))
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
        # Elastic documents no 403 for this endpoint, nor which roles may list organizations:
        # say what happened, not which role would fix it.
        return PermissionDenied(
            "Elastic Cloud refused the Cloud API Key permission to list the organization. "
            "Check the key's roles and permissions under Organization → API keys in the Cloud "
            f"console.{said}",
            field=API_KEY,
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
        f"Elastic Cloud accepted the Cloud API Key, but {problem}; hub expected {_EXPECTED}."
        f"{_quote(said)}"
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
    if redact(org_id, [key]) != org_id:
        # A name can be shown with the key masked; an identity cannot be masked and stay one.
        raise UnexpectedResponse(
            "Elastic Cloud's answer repeats the Cloud API Key in an organization's id, so hub "
            "will not store it; check that the environment points at Elastic Cloud."
        )
    name = clean_text(item.get("name"), secrets=[key])
    return {"id": org_id, "name": name or f"Organization {org_id}"}


def _count(value: str) -> int | str:
    """A header's count as an int; any other text as it is, never a crash (``'²'``)."""
    number = read_int(value, minimum=0)
    return value if number is None else number


def _rate_limit(response: httpx.Response, key: str, present: Set[str]) -> dict[str, int | str]:
    found: dict[str, int | str] = {}
    for name, header in RATE_LIMIT_HEADERS.items():
        value = clean_text(response.headers[header], secrets=[key]) if header in present else None
        if value is not None:
            found[name] = _count(value)
    return found


def _verified(response: httpx.Response, key: str, environment: Environment) -> Verified:
    body = read_json(response, dict, what=_EXPECTED)
    if not isinstance(body.get("organizations"), list):
        raise _unexpected(
            "its answer has no 'organizations' list", _provider_said(body, response, key)
        )
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
    # Kept as sent, beside the date read from it, so real traffic can pin down its format.
    sent = clean_text(expiry, secrets=[key])
    if sent is not None:
        details["key_expiration_header"] = sent
    return Verified(
        identity=f"org:{first['id']}",
        label=first["name"],
        expires_at=read_time(expiry),
        details=details,
    )
