"""The verification flow: check a Qlik Cloud API key against its tenant, sans I/O.

The flow yields `httpx.Request`s and is sent the responses (see `hub_core.Flow`). It reads and
checks every field before its first request, asks the tenant who the key's user is, and then,
on a best-effort basis, the tenant's name and the key's expiry.
"""

from __future__ import annotations

import json
import math
from collections.abc import Generator, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, NoReturn

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

from .apikey import ApiKey, looks_like_key, read_key
from .tenant import Tenant, resolve_tenant

__all__ = ["verify"]

Get = Generator[httpx.Request, httpx.Response, httpx.Response]
Lookup = Generator[httpx.Request, httpx.Response, dict[str, Any] | None]

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_HOPS = 5
_MAX_KEY_PAGES = 5
_SHOWN = 200
_MIN_REDACTED = 8
_MIN_PIECE = 16  # a run this long copied from the key counts as the key
_SCAN = 2000  # how much of a server's string is read before it is clipped for display
_MASK = "[redacted]"


def verify(credentials: Mapping[str, str]) -> Flow:
    """Return the flow that checks the Qlik Cloud *credentials* (tenant, region, api_key)."""
    raw_key = credentials.get("api_key") or ""
    secrets = _secret_parts(raw_key)
    try:
        return (yield from _verify(credentials, secrets))
    except HubError as exc:
        # Our messages never quote the key; this also covers text a server echoed back.
        exc.redacted(secrets)
        raise


def _secret_parts(raw_key: str) -> tuple[str, ...]:
    parts = {raw_key, raw_key.strip(), *raw_key.replace(" ", ".").split(".")}
    return tuple(sorted((p for p in parts if len(p) >= _MIN_REDACTED), key=len, reverse=True))


def _redact(text: str, secrets: tuple[str, ...]) -> str:
    """Mask each secret in *text*, and any piece of one long enough to be key material."""
    for secret in secrets:
        text = text.replace(secret, _MASK)
    out: list[str] = []
    i = 0
    while i < len(text):
        end = i + _MIN_PIECE
        if end <= len(text) and any(text[i:end] in secret for secret in secrets):
            while end < len(text) and any(text[i : end + 1] in secret for secret in secrets):
                end += 1
            out.append(_MASK)
            i = end
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _read_fields(credentials: Mapping[str, str]) -> tuple[Tenant, ApiKey]:
    errors: dict[str, str] = {}
    tenant_value = credentials.get("tenant") or ""
    raw_key = (credentials.get("api_key") or "").strip()
    tenant: Tenant | None = None
    key: ApiKey | None = None
    if looks_like_key(tenant_value) or (len(raw_key) >= _MIN_REDACTED and raw_key in tenant_value):
        errors["tenant"] = (
            "Tenant Name looks like an API key. Put the key in API Key, and here the name of "
            "your tenant: the first part of its address, such as my-company in "
            "https://my-company.eu.qlikcloud.com."
        )
    else:
        try:
            tenant = resolve_tenant(tenant_value, credentials.get("region"))
        except FieldError as exc:
            errors.update(exc.errors)
    try:
        key = read_key(raw_key)
    except FieldError as exc:
        errors.update(exc.errors)
    if errors or tenant is None or key is None:
        raise FieldError.many(errors)
    return tenant, key


def _verify(credentials: Mapping[str, str], secrets: tuple[str, ...]) -> Flow:
    tenant, key = _read_fields(credentials)
    host = tenant.host
    headers = {"Authorization": f"Bearer {key.token}", "Accept": "application/json"}
    try:
        response = yield from _get(f"https://{host}/api/v1/users/me", headers, host)
    except ProviderUnavailable as exc:
        if exc.reason == "unresolved":
            raise FieldError("tenant", _no_tenant(tenant)) from exc
        raise
    user, user_id, tenant_id = _read_user(response, tenant, secrets)
    if key.tenant_id is not None and key.tenant_id != tenant_id:
        raise FieldError(
            "tenant",
            f"The API Key was created in another Qlik Cloud tenant (id {_clip(key.tenant_id)}) "
            f"than the one at {host} (id {_clip(tenant_id)}). Check the Tenant Name and Region, "
            "or create a key in this tenant.",
        )
    about_tenant = yield from _lookup(f"https://{host}/api/v1/tenants/me", headers, host)
    key_entry = None
    if key.key_id is not None:
        key_entry = yield from _find_key(host, headers, user_id, key.key_id)

    details: dict[str, Any] = {
        "user_id": user_id,
        "tenant_id": tenant_id,
        "tenant_host": host,
        "region": tenant.region.value,
    }
    name, email = _text(user.get("name"), secrets), _text(user.get("email"), secrets)
    _put(details, "user_name", name)
    _put(details, "email", email)
    _put(details, "user_status", _text(user.get("status"), secrets))
    roles = _roles(user, secrets)
    if roles is not None:
        details["roles"] = roles
    if about_tenant is not None:
        _put(details, "tenant_name", _text(about_tenant.get("name"), secrets))
        hostnames = _texts(about_tenant.get("hostnames"), secrets)
        if hostnames is not None:
            details["hostnames"] = hostnames
    expires_at = key.expires_at
    if key.key_id is not None:
        details["key_id"] = _clip(key.key_id)
    if key_entry is not None:
        _put(details, "key_status", _text(key_entry.get("status"), secrets))
        _put(details, "key_description", _text(key_entry.get("description"), secrets))
        expires_at = _timestamp(key_entry.get("expiry")) or expires_at
    if expires_at is not None:
        details["key_expiry"] = expires_at.astimezone(UTC).isoformat()
    return Verified(
        identity=f"tenant:{tenant_id}/user:{user_id}",
        label=f"{name or email or user_id} @ {host}",
        expires_at=expires_at,
        details=details,
        # Stored instead of what was typed: a pasted tenant URL becomes its two parts.
        config={"tenant": tenant.name, "region": tenant.region.value},
    )


# --- requests ----------------------------------------------------------------------------


def _get(url: httpx.URL | str, headers: Mapping[str, str], host: str) -> Get:
    """GET *url*, following redirects on *host* only (the core's driver follows them too)."""
    target = httpx.URL(url)
    for _ in range(_MAX_HOPS + 1):
        response = yield httpx.Request("GET", target, headers=headers)
        location = response.headers.get("location")
        if response.status_code not in _REDIRECTS or not location:
            return response
        try:
            target = target.join(location)
        except (httpx.InvalidURL, ValueError):
            raise UnexpectedResponse(
                f"Qlik Cloud answered at {host} with a redirect hub cannot read."
            ) from None
        if target.scheme != "https" or target.host != host or target.port not in (None, 443):
            raise UnexpectedResponse(
                f"Qlik Cloud redirected the check from {host} to another address. hub did not "
                "follow it, so your key was not sent there."
            )
    raise UnexpectedResponse(f"Qlik Cloud redirected the check at {host} too many times.")


def _lookup(url: httpx.URL | str, headers: Mapping[str, str], host: str) -> Lookup:
    """GET a JSON object, best effort: any failure gives None, and the detail is left out."""
    try:
        response = yield from _get(url, headers, host)
    except HubError:
        return None
    if not 200 <= response.status_code < 300:
        return None
    body = _json(response)
    return body if isinstance(body, dict) else None


def _find_key(host: str, headers: Mapping[str, str], user_id: str, key_id: str) -> Lookup:
    """Find this key (by its ``jti``) in the user's key list, following a few pages."""
    url = httpx.URL(f"https://{host}/api/v1/api-keys", params={"sub": user_id, "limit": "100"})
    for _ in range(_MAX_KEY_PAGES):
        page = yield from _lookup(url, headers, host)
        if page is None:
            return None
        data = page.get("data")
        for item in data if isinstance(data, list) else ():
            if isinstance(item, dict) and item.get("id") == key_id:
                return item
        links = page.get("links")
        following = links.get("next") if isinstance(links, dict) else None
        href = following.get("href") if isinstance(following, dict) else None
        if not isinstance(href, str) or not href:
            return None
        try:
            url = url.join(href)
        except (httpx.InvalidURL, ValueError):
            return None
        if url.scheme != "https" or url.host != host:
            return None
    return None


# --- reading answers ---------------------------------------------------------------------


def _json(response: httpx.Response) -> Any:
    try:
        return json.loads(response.content)
    except (ValueError, RecursionError):
        return None


def _read_user(
    response: httpx.Response, tenant: Tenant, secrets: tuple[str, ...]
) -> tuple[dict[str, Any], str, str]:
    """Read the answer to ``users/me``: the user, its id and its tenant's id."""
    host = tenant.host
    if not 200 <= response.status_code < 300:
        _refuse(response, tenant, secrets)
    body = _json(response)
    if body is None:
        kind = response.headers.get("content-type", "none").split(";")[0].strip() or "none"
        raise UnexpectedResponse(
            f"Qlik Cloud at {host} answered with something that is not JSON (content type "
            f"{_clip(kind, 60)}), so hub cannot tell whether the key works. Check the Tenant "
            "Name and Region; if they are right, try again later."
        )
    user_id = _text(body.get("id"), secrets) if isinstance(body, dict) else None
    tenant_id = _text(body.get("tenantId"), secrets) if isinstance(body, dict) else None
    if not isinstance(body, dict) or user_id is None or tenant_id is None:
        raise UnexpectedResponse(
            f"Qlik Cloud at {host} answered with JSON that does not describe a user (no id or "
            "tenantId), so hub cannot tell whose key this is."
        )
    return body, user_id, tenant_id


def _refuse(response: httpx.Response, tenant: Tenant, secrets: tuple[str, ...]) -> NoReturn:
    """Raise what a non-2xx answer to ``users/me`` means, quoting Qlik's error body."""
    host = tenant.host
    status = response.status_code
    said = _qlik_said(response, secrets)
    if status == 401:
        raise InvalidCredentials(
            f"Qlik Cloud at {host} rejected the API Key.{said} Usually the key is mistyped or "
            'incomplete, has expired or was revoked, or its user lacks the "Manage API keys" '
            "permission (a Tenant Admin grants it); a key made in another tenant is refused "
            "too. Check the key, or create a new one.",
            field="api_key",
        )
    if status == 403:
        raise PermissionDenied(
            f"Qlik Cloud at {host} accepted the API Key but refused to show its user.{said} "
            "Ask a Tenant Admin to check the user's roles and permissions.",
            field="api_key",
        )
    if status == 404:
        raise FieldError("tenant", _no_tenant(tenant) + said)
    if status == 429:
        retry_after = _retry_after(response)
        wait = f"in {math.ceil(retry_after)} seconds" if retry_after is not None else "later"
        raise RateLimited(
            f"Qlik Cloud at {host} is limiting requests; try again {wait}.{said}",
            retry_after=retry_after,
        )
    if status >= 500:
        raise ProviderUnavailable(
            f"Qlik Cloud at {host} could not answer (HTTP {status}).{said} Try again later.",
            reason="server",
        )
    raise UnexpectedResponse(
        f"Qlik Cloud at {host} answered the check with HTTP {status}, which hub does not "
        f"expect.{said}"
    )


def _no_tenant(tenant: Tenant) -> str:
    return (
        f"There is no Qlik Cloud tenant {tenant.name} in region {tenant.region.value} "
        f"({tenant.host} does not exist). Check the Tenant Name and Region: both are in your "
        "tenant's address, as in https://my-company.eu.qlikcloud.com."
    )


def _qlik_said(response: httpx.Response, secrets: tuple[str, ...]) -> str:
    """Quote a Qlik error body (``errors[].title/code``, ``traceId``), redacted and clipped."""
    body = _json(response)
    if not isinstance(body, dict):
        return ""
    quoted = []
    errors = body.get("errors")
    for error in errors[:3] if isinstance(errors, list) else ():
        if not isinstance(error, dict):
            continue
        title = _text(error.get("title"), secrets) or _text(error.get("detail"), secrets)
        code = _text(error.get("code"), secrets)
        if title is None and code is None:
            continue
        piece = f'"{title}"' if title else ""
        if code:
            piece = f"{piece} (code {code})".strip()
        quoted.append(piece)
    trace = _text(body.get("traceId"), secrets)
    if not quoted and trace is None:
        return ""
    text = " Qlik Cloud said: " + ("; ".join(quoted) if quoted else "(no details)")
    if trace is not None:
        text += f" (trace id {trace})"
    return text + "."


def _clip(text: str, limit: int = _SHOWN) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


def _text(value: Any, secrets: tuple[str, ...]) -> str | None:
    """A server's string, fit to show: key redacted (before clipping), one line, clipped."""
    if not isinstance(value, str):
        return None
    text = _redact(" ".join(value[:_SCAN].split()), secrets)
    return _clip(text) if text else None


def _texts(value: Any, secrets: tuple[str, ...]) -> list[str] | None:
    if not isinstance(value, list):
        return None
    texts = (_text(item, secrets) for item in value[:50])
    return [text for text in texts if text is not None]


def _roles(user: Mapping[str, Any], secrets: tuple[str, ...]) -> list[str] | None:
    assigned = user.get("assignedRoles")
    if isinstance(assigned, list):
        names = [role.get("name") if isinstance(role, dict) else None for role in assigned]
        return _texts(names, secrets)
    return _texts(user.get("roles"), secrets)


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _put(details: dict[str, Any], name: str, value: str | None) -> None:
    if value is not None:
        details[name] = value
