"""The Qlik Cloud provider as hub sees it: its link form and its end-user guide."""

from __future__ import annotations

from hub_core import Choice, Field, FieldError, Guide, Provider, Section, Step

from .pasted import bare_token
from .tenant import REGIONS, parse_tenant

__all__ = ["GUIDE", "PROVIDER_ID", "make_provider"]

PROVIDER_ID = "qlik"

_EXAMPLE = "https://acme-analytics.eu.qlikcloud.com/hub"


def _region_of_address(value: str) -> dict[str, str]:
    """The Region a pasted tenant address names, so it is not asked again; else nothing."""
    try:
        _name, region = parse_tenant(value)
    except FieldError:
        return {}  # the flow says what is wrong with it
    return {"region": region.value} if region is not None else {}


FIELDS = (
    Field(
        "tenant",
        "Tenant Name",
        help=(
            "The first part of your tenant's address: acme-analytics in "
            f"{_EXAMPLE}. You can also paste the whole address."
        ),
        placeholder="my-company",
        # No pattern: people paste whole addresses here, which the flow reads and checks.
        max_length=2048,
        fills=_region_of_address,
    ),
    Field(
        "region",
        "Region",
        kind="choice",
        # Optional only because a pasted address names the region; the flow asks for it
        # when neither this field nor the address gives one.
        required=False,
        choices=[Choice(region.value, region.label) for region in REGIONS],
        help=(
            "The part after the tenant name in your tenant's address: eu in "
            f"{_EXAMPLE}. Leave it empty if you paste the whole address in Tenant Name."
        ),
    ),
    Field(
        "api_key",
        "API Key",
        kind="secret",
        help="A Qlik Cloud API key: a long token starting with eyJ, shown once when created.",
        placeholder="eyJhbGciOiJFUzM4NCIs…",
        max_length=8192,
        # A pasted "Authorization: Bearer <key>" line is kept, checked and masked as the key
        # alone. Only the text around it goes: the flow judges the key, with the other fields,
        # so every field at fault is reported at once.
        normalize=bare_token,
    ),
)

GUIDE = Guide(
    warning=(
        "An API key can do everything its user can do in Qlik Cloud, so keep it to yourself. "
        "Users can create keys only after a Tenant Admin allows it."
    ),
    sections=[
        Section(
            "Let users create API keys",
            "A Tenant Admin does this once for the tenant. Skip it if you already see API keys "
            "in your profile settings.",
            steps=[
                Step(
                    "Open the permissions",
                    "Sign in as a Tenant Admin, go to the Administration activity center, choose "
                    "Manage users and open the Permissions tab.",
                ),
                Step(
                    "Edit the defaults for users",
                    "Click User Default. In the dialog, expand Features and actions, then "
                    "Developer.",
                ),
                Step(
                    "Allow Manage API keys",
                    "Set Manage API keys to Allowed and click Confirm.",
                ),
            ],
        ),
        Section(
            "Create an API key",
            "The key acts as the user who creates it, so create it with the account you want "
            "to link.",
            steps=[
                Step(
                    "Open your API keys",
                    "Open your profile menu, then Profile settings, then API keys. Tenant Admins "
                    "also find API keys in the Administration activity center.",
                ),
                Step(
                    "Generate the key",
                    "Click Generate new key. Describe what the key is for (for example hub) and "
                    "choose when it expires; hub shows that date and marks the account as "
                    "expiring in the last fifth of the key's life (a 1-day key in its last "
                    "4.8 hours), at most its last week.",
                ),
                Step(
                    "Copy it right away",
                    "Qlik Cloud shows the key only once. Paste it into API Key now; if you lose "
                    "it, delete the key and generate another.",
                ),
            ],
        ),
        Section(
            "Where the tenant name and region come from",
            "Both are in your tenant's address, which has the form "
            "https://<tenant>.<region>.qlikcloud.com.",
            steps=[
                Step(
                    "Read the address bar",
                    f"If you open Qlik Cloud at {_EXAMPLE}, the tenant name is acme-analytics "
                    "and the region is eu.",
                ),
                Step(
                    "Or paste the whole address",
                    "Paste the address into Tenant Name and leave Region empty: hub takes both "
                    "from it.",
                ),
                Step(
                    "Qlik Cloud Government",
                    "If the address ends in .us.qlikcloudgov.com, choose the region "
                    "Qlik Cloud Government (us-gov).",
                ),
            ],
        ),
        Section(
            "If the check fails",
            "A rejected key is mistyped or incomplete, expired or revoked, or its user lost the "
            "Manage API keys permission; a key from another tenant is rejected too. A tenant "
            "that is not found usually means a typo in Tenant Name or the wrong Region.",
        ),
    ],
)


def make_provider(version: str | None = None) -> Provider:
    """Return the Qlik Cloud `Provider`."""
    return Provider(
        id=PROVIDER_ID,
        name="Qlik Cloud",
        fields=FIELDS,
        guide=GUIDE,
        # Government tenants live outside qlikcloud.com and are reached only when picked.
        hosts=("*.qlikcloud.com", "*.us.qlikcloudgov.com"),
        docs_url="https://qlik.dev/apis/rest/api-keys/",
        version=version,
    )
