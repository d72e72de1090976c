"""`hub providers`, `hub plugins`, `hub fields`, `hub guide` through click's runner."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner, Result

from hub_core import Hub, hookimpl
from hub_core.cli import State, main


class Runner(CliRunner):
    """Invokes `hub` with a given Hub: the Acme plugin and one broken plugin, nothing installed."""

    def __init__(self, hub: Hub) -> None:
        super().__init__()
        self.hub = hub

    def run(self, *args: str) -> Result:
        return self.invoke(main, list(args), obj=State(hub=self.hub))


@pytest.fixture
def runner(acme_plugin: Any) -> Runner:
    class Broken:
        @hookimpl
        def hub_providers(self) -> list[object]:
            raise RuntimeError("cannot start")

    return Runner(Hub(plugins=[acme_plugin(), Broken()], load_entrypoints=False))


def test_providers_lists_ids_and_names(runner: Runner) -> None:
    result = runner.run("providers")
    assert result.exit_code == 0
    assert result.output == "acme  Acme\n"


def test_providers_json_is_data(runner: Runner) -> None:
    result = runner.run("providers", "--json")
    assert json.loads(result.output) == [
        {
            "id": "acme",
            "name": "Acme",
            "fields": ["api_key", "region", "team"],
            "hosts": ["api.acme.test", "*.eu.acme.test"],
            "docs_url": None,
        }
    ]


def test_plugins_shows_broken_plugins_with_their_error(runner: Runner) -> None:
    result = runner.run("plugins")
    assert result.exit_code == 0
    assert "AcmePlugin  AcmePlugin  (acme)" in result.output
    assert "error: hub_providers() failed: RuntimeError: cannot start" in result.output
    data = json.loads(runner.run("plugins", "--json").output)
    assert [p["error"] is None for p in data] == [True, False]


def test_fields_shows_labels_kinds_and_choices(runner: Runner) -> None:
    result = runner.run("fields", "acme")
    assert result.exit_code == 0
    assert "api_key  API Key  (secret, required)" in result.output
    assert "region  Region  (choice, required, default us)" in result.output
    assert "us     United States" in result.output


def test_fields_json_schema_is_valid(runner: Runner) -> None:
    result = runner.run("fields", "acme", "--json-schema")
    schema = json.loads(result.output)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["properties"]["api_key"]["writeOnly"] is True


def test_guide_renders_warning_sections_and_numbered_steps(runner: Runner) -> None:
    result = runner.run("guide", "acme")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0] == "Linking Acme"
    assert "Note: Only admins can create keys." in result.output
    assert "  1. Open Settings" in lines
    assert "Then run `hub link acme` and fill in: API Key, Region, Team." in result.output


@pytest.mark.parametrize("command", ["fields", "guide"])
def test_an_unknown_provider_is_a_usage_error(runner: Runner, command: str) -> None:
    result = runner.run(command, "nope")
    assert result.exit_code == 2
    assert "Error: no provider 'nope'; installed: acme" in result.output


def test_no_provider_installed_says_what_to_do() -> None:
    empty = Runner(Hub(load_entrypoints=False))
    assert "No provider plugin is installed" in empty.run("providers").output
    assert empty.run("plugins").output == "No plugin is installed.\n"


def test_version_option() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.output.startswith("hub, version ")
