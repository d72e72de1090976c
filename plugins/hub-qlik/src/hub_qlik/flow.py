"""The verification flow: check a Qlik Cloud API key against its tenant, sans I/O.

The flow yields `httpx.Request`s and is sent the responses (see `hub_core.Flow`). It reads and
checks every field before its first request, asks the tenant who the key's user is, and then,
on a best-effort basis, the tenant's name and hostnames and the key's own record (its expiry).
The core's driver runs it: it follows the tenant's same-host redirects, waits out a 429 and
retries a failing GET, so none of that is written here.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Mapping
from typing import Any, NoReturn
from urllib.parse import quote

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
from hub_core.responses import KEY_PIECE, clean_text, read_json, read_time, redact

from .apikey import ApiKey, looks_like_key, read_key
from .pasted import bare_token
from .tenant import Tenant, resolve_tenant, tenant_host

__all__ = ["verify"]

Lookup = Generator[httpx.Request, httpx.Response, dict[str, Any] | None]

# Qlik's resource ids are hex or UUIDs; a `jti` of any other shape is not put into a URL.
_KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
_MAX_ITEMS = 50  # of a list a tenant answers with (roles, hostnames)


def verify(credentials: Mapping[str, str]) -> Flow:
    """Return the flow that checks the Qlik Cloud *credentials* (tenant, region, api_key)."""
    # The whole key: the core masks every 8-character piece of it, so each part of the JWT
    # is covered without splitting it here. The token alone, as the field's normalize gives
    # it: the "Authorization: Bearer" pasted in front of it is no secret, and masking it would
    # turn Qlik's own words ("Unauthorized") into "[redacted]".
    secrets = (bare_token(credentials.get("api_key") or ""),)
    try:
        return (yield from _verify(credentials, secrets))
    except HubError as exc:
        # Our messages never quote the key, but one may quote a field it was pasted into, or
        # text a server echoed back; the driver masks it too, but a flow may run without one.
        exc.redacted(secrets)
        raise


def _read_fields(credentials: Mapping[str, str]) -> tuple[Tenant, ApiKey]:
    errors: dict[str, str] = {}
    tenant_value = credentials.get("tenant") or ""
    raw_key = (credentials.get("api_key") or "").strip()
    tenant: Tenant | None = None
    key: ApiKey | None = None
    if looks_like_key(tenant_value) or (len(raw_key) >= KEY_PIECE and raw_key in tenant_value):
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
    # Every request goes to this host, built from the checked fields; no answer changes it.
    host = tenant.host
    headers = {"Authorization": f"Bearer {key.token}", "Accept": "application/json"}
    try:
        response = yield request("GET", f"https://{host}/api/v1/users/me", headers=headers)
    except ProviderUnavailable as exc:
        # No name lookup, or a proxy that could not connect, proves nothing about the tenant
        # (there may be no network): it stays unreachable, so `hub check` never calls the
        # key invalid. Only Qlik's own 404 says a tenant does not exist.
        # A proxy that is itself out of reach is named by the message instead of the tenant
        # host, and has nothing to do with what was typed.
        if exc.reason in ("unresolved", "proxy") and host in exc.message:
            raise ProviderUnavailable(
                _unreachable_tenant(tenant, exc), reason=exc.reason, field="tenant"
            ) from exc
        raise
    user, user_id, tenant_id = _read_user(response, tenant, secrets)
    if key.tenant_id is not None and key.tenant_id != tenant_id:
        raise FieldError(
            "tenant",
            f"The API Key was created in another Qlik Cloud tenant (id "
            f"{_shown(key.tenant_id, secrets)}) than the one at {host} (id {tenant_id}). Check "
            "the Tenant Name and Region, or create a key in this tenant.",
        )
    about_tenant = yield from _lookup(f"https://{host}/api/v1/tenants/me", headers)
    if about_tenant is not None:
        _check_tenant_id(about_tenant, tenant_id, key, tenant, secrets)
    record = None
    if key.key_id is not None and _KEY_ID.fullmatch(key.key_id) and not _in_key(key, secrets):
        url = f"https://{host}/api/v1/api-keys/{quote(key.key_id, safe='')}"
        record = yield from _lookup(url, headers)
        if record is not None and record.get("id", key.key_id) != key.key_id:
            record = None  # another key's record says nothing about this one

    details: dict[str, Any] = {
        "user_id": user_id,
        "tenant_id": tenant_id,
        "tenant_host": host,
        "region": tenant.region.value,
    }
    name = clean_text(user.get("name"), secrets=secrets)
    email = clean_text(user.get("email"), secrets=secrets)
    _put(details, "user_name", name)
    _put(details, "email", email)
    _put(details, "user_status", clean_text(user.get("status"), secrets=secrets))
    roles = _roles(user, secrets)
    if roles is not None:
        details["roles"] = roles
    if about_tenant is not None:
        _put(details, "tenant_name", clean_text(about_tenant.get("name"), secrets=secrets))
        hostnames = _texts(about_tenant.get("hostnames"), secrets)
        if hostnames is not None:
            details["hostnames"] = hostnames
        _put(details, "permanent_host", _permanent_host(about_tenant.get("hostnames")))
    expires_at = key.expires_at
    created_at = None
    if key.key_id is not None:
        details["key_id"] = _shown(key.key_id, secrets)
    if record is not None:
        _put(details, "key_status", clean_text(record.get("status"), secrets=secrets))
        _put(details, "key_description", clean_text(record.get("description"), secrets=secrets))
        # Qlik documents the expiry as a date-time string: a number is no date of its.
        expiry = record.get("expiry")
        expires_at = (read_time(expiry) if isinstance(expiry, str) else None) or expires_at
        # The record's `created` (a date-time string too) gives the key's lifetime: a 1-day
        # key is `expiring` in its last 4.8 hours, not from the moment it is linked.
        created = record.get("created")
        created_at = read_time(created) if isinstance(created, str) else None
    if expires_at is not None:
        details["key_expiry"] = expires_at.isoformat()
    return Verified(
        identity=f"tenant:{tenant_id}/user:{user_id}",
        label=f"{name or email or user_id} @ {host}",
        expires_at=expires_at,
        created_at=created_at,
        details=details,
        # Stored instead of what was typed: a pasted tenant URL becomes its two parts.
        config={"tenant": tenant.name, "region": tenant.region.value},
    )


# --- requests ----------------------------------------------------------------------------


def _lookup(url: str, headers: Mapping[str, str]) -> Lookup:
    """GET a JSON object, best effort: any failure gives None, and the detail is left out."""
    try:
        response = yield request("GET", url, headers=headers)
    except HubError:
        # What the driver throws in here (unreachable, rate limited, a redirect elsewhere)
        # only costs this detail: an optional lookup never fails a link.
        return None
    if not 200 <= response.status_code < 300:
        return None
    return _object(response)


def _in_key(key: ApiKey, secrets: tuple[str, ...]) -> bool:
    # The driver refuses a URL holding a piece of the key, which would fail the whole link.
    return key.key_id is not None and redact(key.key_id, secrets) != key.key_id


# --- reading answers ---------------------------------------------------------------------


def _object(response: httpx.Response) -> dict[str, Any] | None:
    """The body as a JSON object, or None: for answers whose details are optional."""
    try:
        return read_json(response, dict)
    except UnexpectedResponse:
        return None


def _read_user(
    response: httpx.Response, tenant: Tenant, secrets: tuple[str, ...]
) -> tuple[dict[str, Any], str, str]:
    """Read the answer to ``users/me``: the user, its id and its tenant's id."""
    if not 200 <= response.status_code < 300:
        _refuse(response, tenant, secrets)
    body = read_json(response, dict, what="the user the API Key belongs to")
    user_id = clean_text(body.get("id"), secrets=secrets)
    tenant_id = clean_text(body.get("tenantId"), secrets=secrets)
    if user_id is None or tenant_id is None:
        raise UnexpectedResponse(
            f"Qlik Cloud at {tenant.host} answered with JSON that does not describe a user (no "
            "id or tenantId), so hub cannot tell whose key this is."
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
        # The pair is wrong, which of the two cannot be told: a prompt or a form asks again
        # for both.
        raise FieldError.many(
            {
                "tenant": _no_tenant(tenant) + said,
                "region": f"Region {tenant.region.value} may not be the tenant's: it is the "
                "part after the tenant name in your tenant's address.",
            }
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


def _check_tenant_id(
    about: Mapping[str, Any],
    tenant_id: str,
    key: ApiKey,
    tenant: Tenant,
    secrets: tuple[str, ...],
) -> None:
    """Refuse a tenant whose ``tenants/me`` names another tenant than ``users/me`` (or the key).

    The identity is built from ``users/me``'s tenantId: a tenant answering with another
    tenant's ids would otherwise reach that tenant's account. An absent or unreadable id
    says nothing (the lookup is optional); a different one is a contradiction.
    """
    said = clean_text(about.get("id"), secrets=secrets)
    if said is None or said == tenant_id:
        return
    if key.tenant_id is not None:
        raise FieldError(
            "tenant",
            f"The API Key was created in Qlik Cloud tenant {_shown(key.tenant_id, secrets)}, "
            f"but the tenant at {tenant.host} says it is tenant {said}. Check the Tenant Name "
            "and Region, or create a key in this tenant.",
        )
    raise UnexpectedResponse(
        f"Qlik Cloud at {tenant.host} contradicts itself: the key's user is in tenant "
        f"{tenant_id}, but the tenant says it is {said}; hub cannot tell whose key this is, "
        "and stored nothing."
    )


def _unreachable_tenant(tenant: Tenant, exc: ProviderUnavailable) -> str:
    return (
        f"{exc.message}. Check the Tenant Name and Region: {tenant.host} is the address of "
        f"tenant {tenant.name} in region {tenant.region.value}. If they are right, check your "
        "connection (and HTTPS_PROXY, if you use a proxy)."
    )


def _no_tenant(tenant: Tenant) -> str:
    return (
        f"There is no Qlik Cloud tenant {tenant.name} in region {tenant.region.value} "
        f"({tenant.host} does not exist). Check the Tenant Name and Region: both are in your "
        "tenant's address, as in https://my-company.eu.qlikcloud.com."
    )


def _qlik_said(response: httpx.Response, secrets: tuple[str, ...]) -> str:
    """Quote a Qlik error body (``errors[].title/code``, ``traceId``), masked and clipped."""
    body = _object(response)
    if body is None:
        return ""
    quoted = []
    errors = body.get("errors")
    for error in errors[:3] if isinstance(errors, list) else ():
        if not isinstance(error, dict):
            continue
        title = clean_text(error.get("title"), secrets=secrets) or clean_text(
            error.get("detail"), secrets=secrets
        )
        code = clean_text(error.get("code"), secrets=secrets)
        if title is None and code is None:
            continue
        piece = f'"{title}"' if title else ""
        if code:
            piece = f"{piece} (code {code})".strip()
        quoted.append(piece)
    trace = clean_text(body.get("traceId"), secrets=secrets)
    if not quoted and trace is None:
        return ""
    text = " Qlik Cloud said: " + ("; ".join(quoted) if quoted else "(no details)")
    if trace is not None:
        text += f" (trace id {trace})"
    return text + "."


def _shown(text: str, secrets: tuple[str, ...]) -> str:
    """A claim of the key, fit to show; a claim is never empty, so neither is this."""
    return clean_text(text, secrets=secrets) or "?"


def _texts(value: Any, secrets: tuple[str, ...]) -> list[str] | None:
    if not isinstance(value, list):
        return None
    texts = (clean_text(item, secrets=secrets) for item in value[:_MAX_ITEMS])
    return [text for text in texts if text is not None]


def _permanent_host(hostnames: Any) -> str | None:
    """The tenant's permanent host: the first of its ``hostnames``, if that is a tenant host.

    Aliases can be renamed; the first hostname cannot. It is shown, never asked: requests go
    only to the host the person's own values name.
    """
    if not isinstance(hostnames, list) or not hostnames:
        return None
    return tenant_host(hostnames[0])


def _roles(user: Mapping[str, Any], secrets: tuple[str, ...]) -> list[str] | None:
    assigned = user.get("assignedRoles")
    if isinstance(assigned, list):
        names = [role.get("name") if isinstance(role, dict) else None for role in assigned]
        return _texts(names, secrets)
    return _texts(user.get("roles"), secrets)


def _put(details: dict[str, Any], name: str, value: str | None) -> None:
    if value is not None:
        details[name] = value
