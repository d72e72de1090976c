"""The provider declaration: id, fields, hosts, guide, and the packaging that registers it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import hub_qlik
from hub_core.fields import json_schema, validate_values

ROOT = Path(__file__).resolve().parents[1]


def test_one_provider_named_qlik_cloud(provider):
    assert len(hub_qlik.hub_providers()) == 1
    assert provider.id == "qlik"
    assert provider.name == "Qlik Cloud"
    assert provider.version == hub_qlik.__version__


def test_fields_are_tenant_region_and_secret_api_key(provider):
    assert [(f.name, f.label, f.kind) for f in provider.fields] == [
        ("tenant", "Tenant Name", "text"),
        ("region", "Region", "choice"),
        ("api_key", "API Key", "secret"),
    ]
    assert provider.secret_fields == ("api_key",)


def test_tenant_field_has_no_pattern_so_addresses_can_be_pasted(provider):
    tenant = provider.field("tenant")
    assert tenant.pattern is None
    assert tenant.required
    assert tenant.max_length >= 200


def test_region_choices_are_the_qlik_regions_with_labels(provider):
    region = provider.field("region")
    assert [c.value for c in region.choices] == [
        "us", "eu", "de", "uk", "fr", "sg", "ap", "jp", "in", "il", "ae", "br", "se", "us-gov",
    ]  # fmt: skip
    labels = {c.value: c.label for c in region.choices}
    # Where each region is, from Qlik's public region list: eu is Ireland, ap is Sydney.
    assert labels == {
        "us": "United States (us)",
        "eu": "Ireland (eu)",
        "de": "Germany (de)",
        "uk": "United Kingdom (uk)",
        "fr": "France (fr)",
        "sg": "Singapore (sg)",
        "ap": "Australia (ap)",
        "jp": "Japan (jp)",
        "in": "India (in)",
        "il": "Israel (il)",
        "ae": "United Arab Emirates (ae)",
        "br": "Brazil (br)",
        "se": "Sweden (se)",
        "us-gov": "Qlik Cloud Government (us-gov)",
    }
    assert all(c.label != c.value for c in region.choices)


def test_region_is_optional_in_the_schema(provider):
    assert not provider.field("region").required
    schema = json_schema(provider)
    assert schema["required"] == ["tenant", "api_key"]
    assert schema["properties"]["api_key"]["writeOnly"] is True
    assert schema["properties"]["api_key"]["format"] == "password"
    assert {"const": "ae", "title": "United Arab Emirates (ae)"} in (
        schema["properties"]["region"]["oneOf"]
    )


def test_core_validation_accepts_a_pasted_address_without_region(provider, api_key):
    credentials = validate_values(
        provider, {"tenant": " https://x.eu.qlikcloud.com/hub ", "api_key": api_key}
    )
    assert credentials["tenant"] == "https://x.eu.qlikcloud.com/hub"
    assert "region" not in credentials


def test_core_validation_resolves_region_case(provider, api_key):
    credentials = validate_values(provider, {"tenant": "x", "region": "US-GOV", "api_key": api_key})
    assert credentials["region"] == "us-gov"


def test_hosts_allow_qlik_tenants_and_government_only(provider):
    assert provider.hosts == ("*.qlikcloud.com", "*.us.qlikcloudgov.com")
    assert provider.allows_host("my-company.eu.qlikcloud.com")
    assert provider.allows_host("my-company.us.qlikcloudgov.com")
    assert not provider.allows_host("my-company.eu.qlikcloudgov.com")
    assert not provider.allows_host("qlikcloud.com.example.net")


def test_guide_covers_permission_key_creation_and_tenant_address(provider):
    guide = provider.guide
    assert guide.warning
    text = " ".join(
        [guide.warning or ""]
        + [s.title + " " + s.content for s in guide.sections]
        + [step.title + " " + step.content for s in guide.sections for step in s.steps]
    )
    for needle in (
        "Tenant Admin",
        "Manage API keys",
        "Administration",
        "Manage users",
        "Permissions",
        "User Default",
        "Features and actions",
        "Developer",
        "Generate new key",
        "expires",
        "only once",
        "https://acme-analytics.eu.qlikcloud.com/hub",
        "acme-analytics",
        "us-gov",
    ):
        assert needle in text, needle
    assert all(section.title for section in guide.sections)


def test_pyproject_declares_the_entry_point_and_only_imported_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "hub-qlik"
    assert project["version"] == hub_qlik.__version__
    assert project["entry-points"]["hub"] == {"qlik": "hub_qlik"}
    names = sorted(dep.split(">")[0].split("<")[0].split("=")[0] for dep in project["dependencies"])
    assert names == ["httpx", "hub-core"]


def test_package_is_typed_and_documented():
    assert (ROOT / "src" / "hub_qlik" / "py.typed").exists()
    readme = (ROOT / "README.md").read_text()
    assert "Region" in readme
    assert "us-gov" in readme
    assert hub_qlik.__version__ in (ROOT / "CHANGELOG.md").read_text()


#: The headings and step titles of the product page Qlik's guide grew from. hub's guide says
#: it in its own words, so none of its titles repeats one (compared in lower case, words only).
SEED_TITLES = (
    "Generate an API key",
    "Grant the Manage API Keys permission",
    "Generate a new API key",
    "Copy API key",
    "Find your Tenant Name and Region",
    "Locate from your browser URL",
    "Linking the Account from the Hub",
    "Navigate to the Hub",
    "Fill out the fields",
)


def test_guide_titles_are_in_hubs_own_words(provider):
    def folded(text: str) -> str:
        return " ".join(re.findall(r"[a-z0-9]+", text.lower()))

    seed = {folded(title) for title in SEED_TITLES}
    titles = [section.title for section in provider.guide.sections]
    titles += [step.title for section in provider.guide.sections for step in section.steps]

    assert [title for title in titles if folded(title) in seed] == []
    assert len(titles) > 3
