"""What hub logs about a broken plugin quotes the plugin's text inertly, as every output does."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from hub_core import Account, Field, Guide, Hub, Provider, hookimpl

HOSTILE = "boom\x1b]0;owned\x07\x1b[2J\u202eevil\x00\ud800"
ACME = Provider(
    id="acme",
    name="Acme",
    fields=[Field("api_key", "API Key", kind="secret")],
    guide=Guide(),
    hosts=["api.acme.test"],
)


def _printable(text: str) -> bool:
    return all(char.isprintable() for char in text)


def test_a_broken_plugins_warning_is_inert(caplog: pytest.LogCaptureFixture) -> None:
    @hookimpl
    def hub_providers() -> list[Provider]:
        raise ValueError(HOSTILE)

    with caplog.at_level(logging.WARNING, logger="hub_core.plugins"):
        hub = Hub(plugins=[SimpleNamespace(hub_providers=hub_providers)], load_entrypoints=False)
    (report,) = hub.plugins()
    assert report.error is not None
    assert HOSTILE in report.error  # the report stays faithful
    (record,) = caplog.records
    message = record.getMessage()
    assert "hub_providers() failed" in message
    assert "\\x1b]0;owned\\x07" in message  # shown, not obeyed
    assert _printable(message)


def test_a_broken_displays_warning_is_inert(caplog: pytest.LogCaptureFixture) -> None:
    @hookimpl
    def hub_providers() -> list[Provider]:
        return [ACME]

    @hookimpl
    def hub_account_display(provider: Provider, account: Account) -> object:
        return HOSTILE  # not an AccountDisplay

    plugin = SimpleNamespace(hub_providers=hub_providers, hub_account_display=hub_account_display)
    hub = Hub(plugins=[plugin], load_entrypoints=False)
    account = Account(id="a1", provider_id="acme", identity="team:1", label="Team", status="active")
    with caplog.at_level(logging.WARNING, logger="hub_core.plugins"):
        display = hub.display(account)
    assert display.title == "Team"  # the default display
    (record,) = caplog.records
    assert "from hub_account_display" in record.getMessage()
    assert _printable(record.getMessage())


class Unprintable(Exception):
    """A plugin's exception whose message itself fails to render."""

    def __str__(self) -> str:
        raise RuntimeError("no message for you")


def test_a_plugin_exception_that_cannot_be_printed_is_still_reported() -> None:
    @hookimpl
    def hub_providers() -> list[Provider]:
        raise Unprintable

    hub = Hub(plugins=[SimpleNamespace(hub_providers=hub_providers)], load_entrypoints=False)
    (report,) = hub.plugins()
    assert report.error == "hub_providers() failed: Unprintable: (its message cannot be read)"


def test_a_flow_exception_that_cannot_be_printed_is_a_plugin_error() -> None:
    import httpx

    from hub_core import PluginError
    from hub_core.policy import Policy

    @hookimpl
    def hub_providers() -> list[Provider]:
        return [ACME]

    @hookimpl
    def hub_validate_credentials(provider: Provider, credentials: object) -> object:
        def flow() -> object:
            yield httpx.Request("GET", "https://api.acme.test/me")
            raise Unprintable

        return flow()

    plugin = SimpleNamespace(
        hub_providers=hub_providers, hub_validate_credentials=hub_validate_credentials
    )
    hub = Hub(
        plugins=[plugin],
        load_entrypoints=False,
        transport=httpx.MockTransport(lambda request: httpx.Response(200)),
        policy=Policy(retries=0),
    )
    with pytest.raises(PluginError, match=r"Unprintable: \(its message cannot be read\)"):
        hub.verify("acme", {"api_key": "acme-key-0123456789"})
