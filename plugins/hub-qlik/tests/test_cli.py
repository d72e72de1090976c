"""`hub providers`, `hub fields qlik` and `hub guide qlik` with only this plugin loaded."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import hub_qlik
from hub_core import Hub
from hub_core.cli import State, main


@pytest.fixture
def hub_cli():
    hub = Hub(plugins=[hub_qlik], load_entrypoints=False)

    def run(*args: str):
        return CliRunner().invoke(main, list(args), obj=State(hub=hub))

    return run


def test_providers_lists_only_qlik(hub_cli):
    result = hub_cli("providers")

    assert result.exit_code == 0
    assert result.output.split() == ["qlik", "Qlik", "Cloud"]


def test_fields_lists_the_link_form(hub_cli):
    result = hub_cli("fields", "qlik")

    assert result.exit_code == 0, result.output
    for text in ("Tenant Name", "Region", "API Key", "Ireland (eu)", "Australia (ap)", "us-gov"):
        assert text in result.output


def test_fields_as_json_schema(hub_cli):
    result = hub_cli("fields", "qlik", "--json-schema")

    schema = json.loads(result.output)
    assert schema["required"] == ["tenant", "api_key"]
    assert schema["properties"]["api_key"]["writeOnly"] is True


def test_guide_shows_every_section(hub_cli, provider):
    result = hub_cli("guide", "qlik")

    assert result.exit_code == 0, result.output
    for section in provider.guide.sections:
        assert section.title in result.output
    assert "Manage API keys" in result.output
