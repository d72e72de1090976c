"""How a linked Elastic Cloud organization is shown in `hub accounts show` and the web Hub."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hub_core import Account, AccountDisplay

from .provider import DEFAULT_ENVIRONMENT, ENVIRONMENT, ENVIRONMENTS

__all__ = ["account_display"]

_NAMES_SHOWN = 5


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _expiry(expires_at: datetime | None, now: datetime) -> str:
    if expires_at is None:
        return "never / unknown"
    shown = f"{expires_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    return f"{shown} (expired)" if expires_at <= now else shown


def _organizations(details: dict[str, Any], name: str) -> str:
    count = details.get("organization_count")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        return "unknown"
    names = [name]
    others = details.get("other_organizations")
    if isinstance(others, list):
        names += [n for o in others if isinstance(o, dict) and (n := _text(o.get("name")))]
    more = "+" if details.get("more_organizations") else ""
    shown = ", ".join(names[:_NAMES_SHOWN])
    if count > _NAMES_SHOWN:
        shown += f" and {count - _NAMES_SHOWN} more"
    return f"{count}{more}: {shown}"


def account_display(account: Account, now: datetime | None = None) -> AccountDisplay:
    """Show a linked organization: its name and id, environment, key expiry and reach."""
    details = account.details
    value = (
        _text(account.config.get(ENVIRONMENT))
        or _text(details.get("environment"))
        or DEFAULT_ENVIRONMENT
    )
    environment = ENVIRONMENTS.get(value)
    org_id = _text(details.get("organization_id")) or account.identity.removeprefix("org:")
    name = _text(details.get("organization_name")) or account.label
    return AccountDisplay(
        title=name,
        subtitle=f"Elastic Cloud organization {org_id}",
        rows=[
            (
                "Environment",
                f"{environment.label} ({environment.api_host})" if environment else value,
            ),
            ("Key expires", _expiry(account.expires_at, now or datetime.now(UTC))),
            ("Organizations reachable", _organizations(details, name)),
        ],
        url=environment.console_url if environment else None,
    )
