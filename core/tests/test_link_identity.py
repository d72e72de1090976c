"""Linking: an answer never replaces an account checked elsewhere, and the hooks of the check.

The non-secret fields (tenant, region, environment) say where a key was checked, so a
provider's answer naming a stored identity updates that account only when they agree.
`Hub.verify(on_request=)` fires when the first request is about to leave, never before a
value the plugin refuses. `Field.fills` lets one value supply others (`Provider.supplied`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet

from hub_core import (
    Accounts,
    Credentials,
    Field,
    FieldError,
    Guide,
    Hub,
    IdentityMismatch,
    PluginError,
    Provider,
    Store,
    Verified,
)
from hub_core.hookspecs import Flow

pytestmark = pytest.mark.anyio


def same_org_flow(credentials: Any) -> Flow:
    """Every key reaches org:1, whatever region it is checked in (a hostile provider)."""
    yield httpx.Request("GET", "https://api.acme.test/me")
    team = credentials.get("team", "")
    config = {"team": team.removesuffix("team")}
    return Verified("org:1", f"Org @ {credentials['region']}", config=config)


@pytest.fixture
def accounts(tmp_path: Path, acme_plugin: Any) -> Accounts:
    hub = Hub(
        plugins=[acme_plugin(same_org_flow)],
        load_entrypoints=False,
        transport=httpx.MockTransport(lambda r: httpx.Response(200)),
    )
    return Accounts(hub, Store(tmp_path / "hub.db", secret_key=Fernet.generate_key()))


# --- an answer naming a stored identity, checked elsewhere -----------------------------------


@pytest.mark.parametrize("asynchronous", [False, True])
@pytest.mark.parametrize(
    "other",
    [
        {"region": "eu"},  # another region
        {"team": "ops"},  # another value of an optional field
        {"region": "eu", "team": "ops"},
    ],
)
async def test_another_place_cannot_replace_the_account(
    accounts: Accounts, other: dict[str, str], asynchronous: bool
) -> None:
    first = accounts.link("acme", {"api_key": "key-first", "region": "us"})
    before = accounts.store.get(first.id)
    values = {"api_key": "key-second", "region": "us", **other}

    if asynchronous:
        with pytest.raises(IdentityMismatch) as caught:
            await accounts.alink("acme", values)
    else:
        with pytest.raises(IdentityMismatch) as caught:
            accounts.link("acme", values)

    message = str(caught.value)
    assert "region us" in message  # what the account was linked for
    for name, value in other.items():
        assert f"{name} {value}" in message  # and what this key was checked for
    assert first.id in message
    assert "nothing was changed" in message
    assert "key-second" not in message
    assert accounts.store.get(first.id) == before
    assert accounts.store.credentials(first.id) == {"api_key": "key-first", "region": "us"}
    assert len(accounts.store.accounts()) == 1


def test_the_same_place_updates_the_account(accounts: Accounts) -> None:
    first = accounts.link("acme", {"api_key": "key-first", "region": "eu", "team": "sales"})
    # Typed differently, normalised by the flow to the same values: the same place.
    again = accounts.link("acme", {"api_key": "key-second", "region": "eu", "team": "salesteam"})
    assert again.id == first.id
    assert accounts.store.credentials(first.id)["api_key"] == "key-second"


def test_an_empty_field_and_a_missing_one_are_the_same_place(tmp_path: Path) -> None:
    store = Store(tmp_path / "hub.db", secret_key=Fernet.generate_key())
    found = Verified("org:1", "Org")
    first = store.save("acme", found, Credentials({"k": "secret-1"}, secret=["k"]))
    # A field a newer plugin added, left empty, does not make it another place.
    again = store.save("acme", found, Credentials({"k": "secret-2", "team": ""}, secret=["k"]))
    assert again.id == first.id
    with pytest.raises(IdentityMismatch, match="no other field"):
        store.save("acme", found, Credentials({"k": "secret-3", "team": "x"}, secret=["k"]))
    assert store.credentials(first.id) == {"k": "secret-2", "team": ""}


# --- on_request: said when the first request leaves, not before ------------------------------


def _hub(acme_plugin: Any, flow: Any, seen: list[httpx.Request]) -> Hub:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    return Hub(
        plugins=[acme_plugin(flow)],
        load_entrypoints=False,
        transport=httpx.MockTransport(handler),
    )


def two_requests(credentials: Any) -> Flow:
    yield httpx.Request("GET", "https://api.acme.test/me")
    yield httpx.Request("GET", "https://api.acme.test/more")
    return Verified("org:1", "Org")


def refuses_first(credentials: Any) -> Flow:
    raise FieldError("api_key", "this is not a key")
    yield  # pragma: no cover


def forbidden_request(credentials: Any) -> Flow:
    yield httpx.Request("GET", "https://elsewhere.invalid/me")
    return Verified("org:1", "Org")  # pragma: no cover


async def test_on_request_fires_once_just_before_the_first_request(acme_plugin: Any) -> None:
    seen: list[httpx.Request] = []
    calls: list[int] = []
    hub = _hub(acme_plugin, two_requests, seen)

    hub.verify("acme", {"api_key": "k"}, on_request=lambda: calls.append(len(seen)))
    assert calls == [0]  # before the first request, and only once
    assert len(seen) == 2

    await hub.averify("acme", {"api_key": "k"}, on_request=lambda: calls.append(len(seen)))
    assert calls == [0, 2]


@pytest.mark.parametrize(
    ("flow", "error"), [(refuses_first, FieldError), (forbidden_request, PluginError)]
)
def test_on_request_is_not_called_when_nothing_is_sent(
    acme_plugin: Any, flow: Any, error: type[Exception]
) -> None:
    seen: list[httpx.Request] = []
    calls: list[str] = []
    with pytest.raises(error):
        _hub(acme_plugin, flow, seen).verify(
            "acme", {"api_key": "k"}, on_request=lambda: calls.append("called")
        )
    assert calls == []
    assert seen == []


def test_a_failing_on_request_sends_nothing_and_closes_the_flow(acme_plugin: Any) -> None:
    closed: list[bool] = []

    def flow(credentials: Any) -> Flow:
        try:
            yield httpx.Request("GET", "https://api.acme.test/me")
        finally:
            closed.append(True)
        return Verified("org:1", "Org")  # pragma: no cover

    seen: list[httpx.Request] = []

    def fail() -> None:
        raise RuntimeError("the host's progress display broke")

    with pytest.raises(RuntimeError):
        _hub(acme_plugin, flow, seen).verify("acme", {"api_key": "k"}, on_request=fail)
    assert seen == []
    assert closed == [True]


# --- Field.fills and Provider.supplied --------------------------------------------------------


def _provider(fills: Any) -> Provider:
    return Provider(
        id="acme",
        name="Acme",
        fields=[
            Field("address", "Address", fills=fills),
            Field("region", "Region", kind="choice", choices=["us", "eu"], required=False),
            Field("team", "Team", required=False, pattern="[a-z]+"),
            Field("api_key", "API Key", kind="secret"),
        ],
        guide=Guide(),
        hosts=["api.acme.test"],
    )


def test_supplied_keeps_only_valid_values_of_other_non_secret_fields() -> None:
    provider = _provider(
        lambda value: {
            "region": " eu ",  # normalised
            "team": "NOT-VALID",  # does not match the pattern
            "api_key": value,  # a secret is never supplied
            "address": "other",  # nor the field itself
            "nosuch": "x",
            3: "x",
        }
    )
    assert provider.supplied("address", "anything") == {"region": "eu"}
    assert provider.supplied("address", "  ") == {}
    assert provider.supplied("region", "eu") == {}  # no fills


@pytest.mark.parametrize(
    "fills",
    [
        lambda value: {"region": "mars"},  # not one of the choices
        lambda value: {"region": 3},
        lambda value: 1 / 0,  # a plugin's bug gives nothing
        lambda value: None,
    ],
)
def test_supplied_gives_nothing_for_what_cannot_be_used(fills: Any) -> None:
    assert _provider(fills).supplied("address", "x") == {}


@pytest.mark.parametrize("raised", [SystemExit(0), KeyboardInterrupt(), GeneratorExit()])
def test_a_fills_that_raises_a_base_exception_gives_nothing_and_stops_nothing(
    raised: BaseException,
) -> None:
    # A plugin's own KeyboardInterrupt is its failure (docs/cli.md): only a real Ctrl-C stops.
    def fills(value: str) -> dict[str, str]:
        raise raised

    assert _provider(fills).supplied("address", "x") == {}


def test_fills_is_for_non_secret_fields_and_must_be_callable() -> None:
    with pytest.raises(ValueError, match="cannot fill"):
        Field("api_key", "API Key", kind="secret", fills=lambda value: {})
    with pytest.raises(TypeError, match="function"):
        Field("tenant", "Tenant", fills="region")  # type: ignore[arg-type]
