"""hub-example: the Example provider for hub.

Link an Example account by its API key; hub checks the key live against the Example API and
shows the account it belongs to. Installed, this module is the ``example`` entry point in
group ``hub``: it holds the three hook implementations of `hub_core.hookspecs`.

Importing it stays cheap: httpx is imported only when a key is checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from hub_core import (
    Account,
    AccountDisplay,
    Choice,
    Credentials,
    Field,
    Flow,
    Guide,
    Provider,
    Section,
    Step,
    hookimpl,
)

__version__ = "0.1.0"

__all__ = [
    "PROVIDER",
    "REGIONS",
    "__version__",
    "hub_account_display",
    "hub_providers",
    "hub_validate_credentials",
]

PROVIDER_ID = "example"

#: Where each region's API lives: region value -> API host. Every host must be in `hosts`.
REGIONS = {"us": "api.example.com", "eu": "api.eu.example.com"}

#: What the plugin declares: the link form (fields), the end-user guide, and the hosts keys
#: may be sent to. hub validates every field before it calls the flow.
PROVIDER = Provider(
    id=PROVIDER_ID,
    name="Example",
    fields=[
        Field(
            "api_key",
            "API Key",
            kind="secret",
            help="Create it in Example under Settings > API keys.",
            placeholder="exk_…",
        ),
        Field(
            "region",
            "Region",
            kind="choice",
            choices=[Choice("us", "United States"), Choice("eu", "Europe")],
            default="us",
            help="Where your Example account lives: the region in its web address.",
        ),
    ],
    guide=Guide(
        warning="An API key acts as you: keep it to yourself, and revoke it when unused.",
        sections=[
            Section(
                "Create an API key",
                "Any Example user can create keys for their own account.",
                steps=[
                    Step("Open the settings", "Sign in to Example and open Settings > API keys."),
                    Step("Create the key", "Click Create key and give it a name such as hub."),
                    Step("Copy it now", "Example shows the key only once; paste it into API Key."),
                ],
            ),
            Section(
                "Pick the region",
                "Choose Europe if your Example address is on eu.example.com; otherwise keep "
                "United States.",
            ),
        ],
    ),
    hosts=tuple(REGIONS.values()),
    docs_url="https://docs.example.com/api-keys",
    version=__version__,
)


@hookimpl
def hub_providers() -> Sequence[Provider]:
    """Declare the Example provider."""
    return [PROVIDER]


@hookimpl
def hub_validate_credentials(provider: Provider, credentials: Credentials) -> Flow | None:
    """Return the flow that checks an Example API key; None for other plugins' providers."""
    if provider.id != PROVIDER_ID:
        return None
    from .flow import verify  # imports httpx: only when a key is actually checked

    return verify(credentials)


@hookimpl
def hub_account_display(provider: Provider, account: Account) -> AccountDisplay | None:
    """Show a linked Example account; None for other plugins' providers."""
    if provider.id != PROVIDER_ID:
        return None
    details: dict[str, Any] = account.details
    region = account.config.get("region") or details.get("region") or "us"
    rows = [
        ("Region", "Europe" if region == "eu" else "United States"),
        ("Plan", str(details.get("plan") or "unknown")),
        ("Key expires", _when(account.expires_at)),
    ]
    return AccountDisplay(
        title=account.label,
        subtitle=f"Example account {account.identity.removeprefix('account:')}",
        rows=rows,
        url="https://app.eu.example.com" if region == "eu" else "https://app.example.com",
    )


def _when(moment: datetime | None) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if moment else "never / not known"
