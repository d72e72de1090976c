"""The verification flow: one GET of /v1/me, read into hub's verdict.

A flow never does I/O. It yields an `httpx.Request`; the core sends it (HTTPS, to a declared
host, with timeouts), retries what is worth retrying, waits out a 429 and follows same-host
redirects, then sends back the `httpx.Response`. So the flow has no code for any of that: it
judges the answer it gets, and returns `Verified` or raises an error of `hub_core`. It reads
the answer through `hub_core.responses`, so no message or detail shows the key.
"""

from __future__ import annotations

from collections.abc import Mapping

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
from hub_core.responses import clean_text, read_json, read_time

from . import REGIONS

__all__ = ["ME_PATH", "verify"]

ME_PATH = "/v1/me"


def verify(credentials: Mapping[str, str]) -> Flow:
    """Check an Example API key by asking the API whose key it is."""
    key = credentials["api_key"]
    if any(char.isspace() for char in key):
        raise FieldError("api_key", "API Key has a space inside; copy the key again in one piece")
    region = credentials.get("region") or "us"
    # RateLimited and ProviderUnavailable, thrown in here by the core, simply propagate.
    response = yield httpx.Request(
        "GET",
        f"https://{REGIONS[region]}{ME_PATH}",
        headers={"Authorization": f"Bearer {key}", "Accept": "application/json"},
    )
    if response.status_code != 200:
        raise _refused(response.status_code)
    return _verified(response, key, region)


def _refused(status: int) -> HubError:
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
    if status >= 500:  # a 502, 503 or 504 arrives here once the core's retries are spent
        return ProviderUnavailable(
            f"Example could not answer (HTTP {status}); try again later.", reason="server"
        )
    return UnexpectedResponse(
        f"Example answered the check with HTTP {status}, which hub does not expect."
    )


def _verified(response: httpx.Response, key: str, region: str) -> Verified:
    body = read_json(response, dict, what="an object with an 'account'")
    account = body.get("account")
    if not isinstance(account, dict) or not isinstance(account.get("id"), str | int):
        raise UnexpectedResponse("Example's answer does not describe an account.")
    account_id = str(account["id"])
    details = {"account_id": account_id, "region": region}
    # Text from the provider is shown and stored: one clean line, any echo of the key masked.
    plan = clean_text(account.get("plan"), secrets=[key])
    if plan:
        details["plan"] = plan
    about_key = body.get("key")
    return Verified(
        identity=f"account:{account_id}",
        label=clean_text(account.get("name"), secrets=[key]) or f"Example account {account_id}",
        expires_at=read_time(about_key.get("expires_at") if isinstance(about_key, dict) else None),
        details=details,
    )
