"""The verification flow: one GET of /v1/me, read into hub's verdict.

A flow never does I/O. It yields an `httpx.Request`, the core sends it (HTTPS, to a declared
host, with timeouts, retries and redirects) and sends back the `httpx.Response`. The flow
returns `Verified` or raises an error of `hub_core`; every message is written for the person
who typed the key, and never quotes the key or the provider's text that might echo it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
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

from . import REGIONS

__all__ = ["ME_PATH", "verify"]

ME_PATH = "/v1/me"


def verify(credentials: Mapping[str, str]) -> Flow:
    """Check an Example API key by asking the API whose key it is."""
    key = credentials["api_key"]
    if any(char.isspace() for char in key):
        raise FieldError("api_key", "API Key has a space inside; copy the key again in one piece")
    host = REGIONS[credentials.get("region") or "us"]
    # ProviderUnavailable and RateLimited, thrown in here by the core, simply propagate.
    response = yield httpx.Request(
        "GET",
        f"https://{host}{ME_PATH}",
        headers={"Authorization": f"Bearer {key}", "Accept": "application/json"},
    )
    if response.status_code != 200:
        raise _refused(response)
    return _verified(response, credentials.get("region") or "us")


def _refused(response: httpx.Response) -> HubError:
    status = response.status_code
    if status == 401:
        return InvalidCredentials(
            "Example rejected the API Key: it is mistyped, expired or revoked. Copy it again, "
            "or create a new one under Settings > API keys.",
            field="api_key",
        )
    if status == 403:
        return PermissionDenied(
            "The API Key is valid but may not read the account; create a key with the "
            "Read account permission.",
            field="api_key",
        )
    if status == 429:
        retry_after = _seconds(response.headers.get("retry-after"))
        when = f"in {math.ceil(retry_after)} seconds" if retry_after is not None else "later"
        return RateLimited(
            f"Example is limiting requests; try again {when}.", retry_after=retry_after
        )
    if status >= 500:
        return ProviderUnavailable(
            f"Example could not answer (HTTP {status}); try again later.", reason="server"
        )
    return UnexpectedResponse(
        f"Example answered the check with HTTP {status}, which hub does not expect."
    )


def _verified(response: httpx.Response, region: str) -> Verified:
    try:
        body: Any = response.json()
    except ValueError:
        raise UnexpectedResponse("Example answered with something that is not JSON.") from None
    account = body.get("account") if isinstance(body, dict) else None
    if not isinstance(account, dict) or not isinstance(account.get("id"), str | int):
        raise UnexpectedResponse("Example's answer does not describe an account.")
    account_id = str(account["id"])
    name = account.get("name") if isinstance(account.get("name"), str) else None
    details = {"account_id": account_id, "region": region}
    if isinstance(account.get("plan"), str):
        details["plan"] = account["plan"]
    return Verified(
        identity=f"account:{account_id}",
        label=name or f"Example account {account_id}",
        expires_at=_expiry(body.get("key")),
        details=details,
    )


def _expiry(key: Any) -> datetime | None:
    value = key.get("expires_at") if isinstance(key, dict) else None
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _seconds(value: str | None) -> float | None:
    try:
        seconds = float(value or "")
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
