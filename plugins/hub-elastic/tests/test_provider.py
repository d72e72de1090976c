"""The provider declaration: fields, hosts, guide, and the hooks' answers for other providers."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import hub_elastic
from hub_core import Account, Guide, Provider
from hub_core.fields import json_schema, validate_values

DISTRIBUTION = Path(__file__).resolve().parents[1]


def test_hub_providers_declares_only_elastic() -> None:
    providers = hub_elastic.hub_providers()
    assert [p.id for p in providers] == ["elastic"]
    assert providers[0].name == "Elastic Cloud"
    assert providers[0].version == hub_elastic.__version__


def test_hosts_are_exactly_the_two_api_hosts(provider: Provider) -> None:
    assert provider.hosts == ("api.elastic-cloud.com", "api.us-gov-east-1.aws.elastic-cloud.com")
    assert not provider.allows_host("cloud.elastic.co")
    assert not provider.allows_host("evil.api.elastic-cloud.com")


def test_api_key_is_a_required_secret_labelled_cloud_api_key(provider: Provider) -> None:
    field = provider.field("api_key")
    assert (field.label, field.kind, field.required) == ("Cloud API Key", "secret", True)
    assert provider.secret_fields == ("api_key",)


def test_environment_is_an_optional_choice_defaulting_to_elastic_cloud(provider: Provider) -> None:
    field = provider.field("environment")
    assert field.kind == "choice"
    assert not field.required
    assert field.default == "cloud"
    labels = {choice.value: choice.label for choice in field.choices}
    assert set(labels) == {"cloud", "gov"}
    assert "api.elastic-cloud.com" in labels["cloud"]
    assert "government" in labels["gov"]
    assert "api.us-gov-east-1.aws.elastic-cloud.com" in labels["gov"]


def test_values_default_to_elastic_cloud_and_resolve_choices(provider: Provider) -> None:
    assert validate_values(provider, {"api_key": "essu_x"})["environment"] == "cloud"
    assert validate_values(provider, {"api_key": "k", "environment": "GOV"})["environment"] == "gov"


def test_json_schema_marks_the_key_write_only(provider: Provider) -> None:
    schema = json_schema(provider)
    key = schema["properties"]["api_key"]
    assert key["writeOnly"] is True
    assert key["format"] == "password"
    assert schema["required"] == ["api_key"]
    # The empty value stands for "not chosen": the default (cloud) applies.
    choices = schema["properties"]["environment"]["oneOf"]
    assert [c["const"] for c in choices] == ["cloud", "gov", ""]


def _guide_text(guide: Guide) -> str:
    parts = [guide.warning or ""]
    for section in guide.sections:
        parts += [section.title, section.content]
        for step in section.steps:
            parts += [step.title, step.content]
    return " ".join(parts)


@pytest.mark.parametrize(
    "fact",
    [
        "organization owner",  # who can create keys
        "belongs to the organization",  # not to its creator
        "Organization",  # where: the console's Organization page ...
        "API keys",  # ... and its API keys tab
        "three months",  # default expiry
        "one year",  # longest expiry
        "Never",  # or no expiry
        "role",  # what to choose
        "only once",  # the key is shown once
        "Cloud API Key field",  # where to paste it
    ],
)
def test_guide_covers(provider: Provider, fact: str) -> None:
    assert fact in _guide_text(provider.guide)


def test_guide_claims_no_role_is_refused(provider: Provider) -> None:
    # No source says a key with a narrower role than Organization owner is refused.
    text = _guide_text(provider.guide).lower()
    assert "narrower" not in text
    assert "permission to list the organization" in text
    assert "check the key's roles and permissions" in text


def test_guide_names_both_consoles(provider: Provider) -> None:
    text = _guide_text(provider.guide)
    assert "https://cloud.elastic.co" in text
    assert "https://console.us-gov-east-1.aws.elastic-cloud.com" in text


def test_guide_has_a_warning_and_numbered_steps(provider: Provider) -> None:
    assert provider.guide.warning
    assert provider.guide.sections[0].steps
    assert all(step.content for section in provider.guide.sections for step in section.steps)


def test_hooks_answer_none_for_another_provider(provider: Provider) -> None:
    other = Provider(
        id="acme",
        name="Acme",
        fields=provider.fields,
        guide=provider.guide,
        hosts=["api.acme.example"],
    )
    credentials = validate_values(other, {"api_key": "essu_x"})
    assert hub_elastic.hub_validate_credentials(provider=other, credentials=credentials) is None
    account = Account(id="1", provider_id="acme", identity="org:1", label="Acme", status="active")
    assert hub_elastic.hub_account_display(provider=other, account=account) is None


def test_pyproject_declares_version_entry_point_and_only_imported_dependencies() -> None:
    project = tomllib.loads((DISTRIBUTION / "pyproject.toml").read_text())["project"]
    assert project["name"] == "hub-elastic"
    assert project["version"] == hub_elastic.__version__
    assert project["entry-points"]["hub"] == {"elastic": "hub_elastic"}
    assert sorted(dep.split(">")[0].split("<")[0] for dep in project["dependencies"]) == [
        "httpx",
        "hub-core",
    ]


def test_changelog_names_the_current_version() -> None:
    assert f"## {hub_elastic.__version__}" in (DISTRIBUTION / "CHANGELOG.md").read_text()


def test_importing_the_plugin_does_not_import_httpx() -> None:
    # `hub providers` loads every plugin; only checking a key needs the HTTP stack.
    code = "import sys, hub_elastic; sys.exit('httpx' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
