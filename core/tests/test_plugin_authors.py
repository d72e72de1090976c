"""What a third-party plugin author meets in the testing kit, the conformance check and the
catalog commands: each test holds hub to what docs/plugins.md and the docstrings promise."""

from __future__ import annotations

import logging
from typing import Any

import attrs
import httpx
import pytest
from click.testing import CliRunner

from hub_core import (
    Field,
    Guide,
    Hub,
    PluginError,
    Provider,
    Section,
    Step,
    Verified,
)
from hub_core.cli import State, main
from hub_core.hookspecs import Flow
from hub_core.testing import (
    CANARY,
    Routes,
    assert_no_secret,
    drive,
    drive_raw,
    find_secret,
    respond,
    sample_credentials,
)
from hub_core.testing.conformance import check_plugin

from .conftest import AcmePlugin, acme_flow

ACME = Provider(
    id="acme",
    name="Acme",
    fields=[Field("api_key", "API Key", kind="secret")],
    guide=Guide(
        sections=[
            Section(
                "Create a key",
                "In the settings.",
                steps=[Step("Open Settings", "Click Keys and create one.")],
            )
        ]
    ),
    hosts=["api.acme.test"],
)
ME = {"id": "42", "name": "Team"}


class Plugin(AcmePlugin):
    """The reference plugin over this file's provider (its guide has a step)."""

    def __init__(self, provider: Provider = ACME, flow: Any = acme_flow) -> None:
        super().__init__(flow, provider)


# --- secrets given as one string --------------------------------------------------------------


def test_assert_no_secret_given_the_key_as_one_string_still_finds_it() -> None:
    # `assert_no_secret(error, KEY)` reads naturally: one string is one secret, not a list of
    # one-letter "secrets" below the redaction minimum that would let the leak pass.
    with pytest.raises((AssertionError, TypeError)):
        assert_no_secret(f"the key {CANARY} was refused", CANARY)


def test_find_secret_given_the_key_as_one_string_finds_it_or_refuses() -> None:
    try:
        found = find_secret(f"the key {CANARY} was refused", CANARY)
    except TypeError:
        return
    assert found is not None


def test_find_secret_honours_the_window_it_is_given() -> None:
    # Docstring: "when any *window* consecutive characters of it do", below KEY_PIECE too.
    assert find_secret("the log says hubca and more", [CANARY], window=5) is not None


# --- drive runs the flow "exactly as Hub.verify does" -----------------------------------------


def key_in_url(credentials: Any) -> Flow:
    yield httpx.Request("GET", f"https://api.acme.test/me?key={credentials['api_key']}")
    return Verified("team:42", "Team")


def test_drive_refuses_the_sample_key_in_a_url_as_production_does() -> None:
    # Hub.verify hands the driver the credentials' secrets, so this request is refused in
    # production; drive's default secrets (the sample key) refuse it in the author's tests.
    credentials = sample_credentials(ACME)
    with pytest.raises(PluginError, match="secret into the address"):
        Hub(plugins=[Plugin(flow=key_in_url)], load_entrypoints=False).verify(
            "acme", {"api_key": CANARY}
        )
    with pytest.raises(PluginError, match="secret into the address"):
        drive(key_in_url(credentials), [respond(json=ME)], provider=ACME)


def not_a_generator(credentials: Any) -> Verified:
    return Verified("team:42", "Team")


@pytest.mark.parametrize("run", [drive, drive_raw])
def test_drive_says_what_is_wrong_with_a_flow_that_is_not_a_generator(run: Any) -> None:
    # As Hub.verify says "... not a flow generator", not "AttributeError: 'Verified' object
    # has no attribute 'close'" blamed on the plugin.
    kwargs = {"provider": ACME} if run is drive else {}
    with pytest.raises(Exception) as caught:  # noqa: PT011 - any type, as long as it says why
        run(not_a_generator(sample_credentials(ACME)), [respond(json=ME)], **kwargs)
    assert "generator" in str(caught.value)
    assert "has no attribute 'close'" not in str(caught.value)


# --- the conformance check blames the right party ----------------------------------------------


def test_conformance_blames_a_happy_responder_that_returns_no_response() -> None:
    # A Routes callable that forgets `return` answers None: the responder failed, as when it
    # raises, not the flow ("AttributeError: 'NoneType' object has no attribute 'read'").
    report = check_plugin(Plugin(), happy=Routes({"GET /me": lambda request: None}))  # type: ignore[dict-item, return-value]
    (happy,) = [f for f in report.findings if f.check == "happy-path"]
    assert happy.outcome == "fail"
    assert "responder" in happy.message, happy.message
    assert "the flow ended in AttributeError" not in happy.message


def test_json_schema_finding_does_not_claim_the_sample_passes_hubs_validation() -> None:
    # CANARY has capitals, so a lowercase key pattern refuses it: the "sample" finding says
    # so, and the "json-schema" finding must not say the same values "pass hub's validation".
    provider = attrs.evolve(
        ACME, fields=[Field("api_key", "API Key", kind="secret", pattern="acme_[a-z0-9]{32}")]
    )
    report = check_plugin(Plugin(provider=provider))
    sample = [f for f in report.findings if f.check == "sample"]
    assert sample
    assert sample[0].outcome == "fail"
    messages = [f.message for f in report.findings if f.check == "json-schema"]
    assert not any("pass hub's validation" in m for m in messages), messages


# --- what the catalog commands tell the author -------------------------------------------------


def run_cli(hub: Hub, *args: str) -> Any:
    return CliRunner().invoke(main, list(args), obj=State(hub=hub))


def test_hub_providers_does_not_say_nothing_is_installed_when_two_plugins_clash(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A third-party plugin choosing the id 'elastic' makes both unusable: logged as every
    # unusable plugin is, and `hub providers` does not say that nothing is installed.
    class Other(Plugin):
        pass

    with caplog.at_level(logging.WARNING):
        hub = Hub(plugins=[Plugin(), Other()], load_entrypoints=False)
    assert any("claimed by both" in r.getMessage() for r in caplog.records)
    result = run_cli(hub, "providers")
    assert "No provider plugin is installed" not in result.output


def test_a_plugin_implementing_no_hub_hook_is_reported() -> None:
    # An entry point naming the wrong module (`acme = "hub_acme.flow"`) is an error, not
    # "acme  hub-acme 0.1.0  (no providers)" in `hub plugins`.
    class Nothing:
        pass

    (report,) = Hub(plugins=[Nothing()], load_entrypoints=False).plugins()
    assert report.error is not None


def test_hub_guide_indents_step_text_under_its_step() -> None:
    # The indent is hub's own text: not a value made inert, whose leading spaces go.
    result = run_cli(Hub(plugins=[Plugin()], load_entrypoints=False), "guide", "acme")
    lines = result.output.splitlines()
    assert "  1. Open Settings" in lines
    assert "     Click Keys and create one." in lines, lines


def test_hub_fields_indents_field_help() -> None:
    provider = attrs.evolve(
        ACME, fields=[Field("api_key", "API Key", kind="secret", help="Under Settings.")]
    )
    result = run_cli(
        Hub(plugins=[Plugin(provider=provider)], load_entrypoints=False), "fields", "acme"
    )
    assert "      Under Settings." in result.output.splitlines(), result.output
