"""What hub-elastic declares: the Elastic Cloud provider, its link form and its guide."""

from __future__ import annotations

from dataclasses import dataclass

from hub_core import Choice, Field, Guide, Provider, Section, Step

from .key import API_KEY, normalize_key

__all__ = [
    "DEFAULT_ENVIRONMENT",
    "ENVIRONMENTS",
    "PROVIDER_ID",
    "Environment",
    "build_provider",
]

PROVIDER_ID = "elastic"
PROVIDER_NAME = "Elastic Cloud"
DOCS_URL = "https://www.elastic.co/docs/deploy-manage/api-keys/elastic-cloud-api-keys"

ENVIRONMENT = "environment"


@dataclass(frozen=True)
class Environment:
    """One Elastic Cloud installation a key can belong to: where its API and console live."""

    value: str
    label: str
    api_host: str
    console_url: str | None


ENVIRONMENTS: dict[str, Environment] = {
    env.value: env
    for env in (
        Environment(
            value="cloud",
            label="Elastic Cloud",
            api_host="api.elastic-cloud.com",
            console_url="https://cloud.elastic.co",
        ),
        Environment(
            value="gov",
            label="Elastic Cloud for US government",
            api_host="api.us-gov-east-1.aws.elastic-cloud.com",
            console_url="https://console.us-gov-east-1.aws.elastic-cloud.com",
        ),
    )
}
DEFAULT_ENVIRONMENT = "cloud"

_FIELDS = (
    Field(
        name=API_KEY,
        label="Cloud API Key",
        kind="secret",
        help=(
            "An Elastic Cloud API key, created under Organization → API keys in the Cloud "
            "console. It usually starts with essu_. Not an Elasticsearch or Kibana API key."
        ),
        placeholder="essu_…",
        max_length=512,
        # A pasted "Authorization: ApiKey <key>" line becomes the key: hub keeps, checks,
        # stores and masks the key alone, never the header name typed in front of it.
        normalize=normalize_key,
    ),
    Field(
        name=ENVIRONMENT,
        label="Environment",
        kind="choice",
        required=False,
        help="Where the organization lives. Keep the default unless it is on the US government "
        "region.",
        choices=[
            Choice(env.value, f"{env.label} ({env.api_host})") for env in ENVIRONMENTS.values()
        ],
        default=DEFAULT_ENVIRONMENT,
    ),
)

_GUIDE = Guide(
    warning=(
        "Only an organization owner can create Elastic Cloud API keys. A key belongs to the "
        "organization, not to the person who made it: it keeps working after that person "
        "leaves, until it expires or someone deletes it."
    ),
    sections=[
        Section(
            title="Create a Cloud API key",
            content=(
                "hub needs an Elastic Cloud API key, the kind that talks to the Cloud API. "
                "Keys made inside Kibana or with the Elasticsearch API are a different thing "
                "and will be refused."
            ),
            steps=[
                Step(
                    "Open your organization",
                    "Sign in to the Elastic Cloud console (https://cloud.elastic.co, or "
                    "https://console.us-gov-east-1.aws.elastic-cloud.com for the US government "
                    "region), open the menu behind your avatar at the top right, and pick "
                    "Organization.",
                ),
                Step(
                    "Start a new key",
                    "Switch to the API keys tab and press Create API key.",
                ),
                Step(
                    "Name it and pick an expiry",
                    "Give the key a name you will recognise later, such as 'hub'. Keys expire "
                    "after three months unless you choose otherwise: any date up to one year "
                    "ahead, or Never. hub reads the expiry from Elastic Cloud and warns you "
                    "before it comes.",
                ),
                Step(
                    "Give it a role",
                    "Choose the key's roles. Organization owner gives the key full access to "
                    "the organization; hub itself only asks Elastic Cloud to list the "
                    "organization the key belongs to.",
                ),
                Step(
                    "Copy the key now",
                    "Create the key and copy it straight away: Elastic Cloud shows it only "
                    "once. If you lose it, delete it and create another.",
                ),
            ],
        ),
        Section(
            title="Link it in hub",
            steps=[
                Step(
                    "Paste the key",
                    "Paste it into the Cloud API Key field (or run 'hub link elastic' and "
                    "paste it at the prompt). The key alone is enough; if you copied a whole "
                    "'Authorization: ApiKey …' header, hub keeps just the key.",
                ),
                Step(
                    "Pick the environment",
                    "Leave Environment on Elastic Cloud, unless your organization runs on the "
                    "US government region; then choose that one.",
                ),
                Step(
                    "Connect",
                    "hub asks Elastic Cloud which organization the key reaches and lists it "
                    "under your accounts, with the key's expiry when Elastic Cloud reports one.",
                ),
            ],
        ),
        Section(
            title="When the check fails",
            steps=[
                Step(
                    "Key rejected",
                    "The key is mistyped, expired or deleted, or it is not a Cloud API key. "
                    "Cloud API keys usually start with essu_. Copy it again or create a new one.",
                ),
                Step(
                    "Permission denied",
                    "Elastic Cloud refused the key permission to list the organization. Check "
                    "the key's roles and permissions under Organization → API keys in the "
                    "Cloud console.",
                ),
            ],
        ),
    ],
)


def build_provider(version: str | None = None) -> Provider:
    """Return the Elastic Cloud provider declaration."""
    return Provider(
        id=PROVIDER_ID,
        name=PROVIDER_NAME,
        fields=_FIELDS,
        guide=_GUIDE,
        hosts=tuple(env.api_host for env in ENVIRONMENTS.values()),
        docs_url=DOCS_URL,
        version=version,
    )
