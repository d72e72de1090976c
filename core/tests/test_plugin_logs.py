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
