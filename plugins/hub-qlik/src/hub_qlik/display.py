"""How a linked Qlik Cloud account is shown."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hub_core import Account, AccountDisplay, FieldError

from .tenant import Tenant, find_region, resolve_tenant, tenant_host

__all__ = ["account_display"]


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _tenant(details: Mapping[str, Any], config: Mapping[str, str]) -> Tenant | None:
    # Re-read the host rather than trust stored text: it becomes a link.
    host = _text(details.get("tenant_host"))
    attempts: list[tuple[str | None, str | None]] = [(host, None)] if host else []
    attempts.append((config.get("tenant"), config.get("region")))
    for tenant, region in attempts:
        try:
            return resolve_tenant(tenant, region)
        except FieldError:
            continue
    return None


def account_display(account: Account) -> AccountDisplay:
    """Show a Qlik Cloud *account*: its user, tenant host, region, roles and key expiry.

    The subtitle and link are the host the person typed; when the tenant's permanent host
    differs from it (the typed one is an alias, which can be renamed), a row shows it.
    """
    details = account.details
    tenant = _tenant(details, account.config)
    name, email = _text(details.get("user_name")), _text(details.get("email"))
    title = f"{name} ({email})" if name and email else name or email or account.label
    rows: list[tuple[str, str]] = []
    region = find_region(_text(details.get("region")) or "") or (tenant and tenant.region)
    if region:
        rows.append(("Region", region.label))
    if tenant_name := _text(details.get("tenant_name")):
        rows.append(("Tenant name", tenant_name))
    # Re-read like the tenant host: stored text is not trusted to be a host.
    permanent = tenant_host(details.get("permanent_host"))
    if permanent and (tenant is None or permanent != tenant.host):
        rows.append(("Permanent host", permanent))
    roles = details.get("roles")
    if isinstance(roles, list):
        rows.append(("Roles", ", ".join(str(role) for role in roles) or "none"))
    expiry = account.expires_at
    rows.append(("Key expiry", f"{expiry:%Y-%m-%d %H:%M} UTC" if expiry else "not known"))
    if user_status := _text(details.get("user_status")):
        rows.append(("User status", user_status))
    return AccountDisplay(
        title=title,
        subtitle=tenant.host if tenant else None,
        rows=rows,
        url=f"https://{tenant.host}" if tenant else None,
    )
