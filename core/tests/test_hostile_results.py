"""What a flow returns leaves the driver masked and storable, whatever the plugin copied into it.

The plugins here are naive on purpose: they copy what the provider answered, the key it echoed
back included, into their `Verified`. The core must mask the key in the label and details,
refuse it in the identity and config, make every string storable and refuse details that are
not JSON, on the blocking path (`Hub.verify`), the async one (`check_many`) and into the store.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub_core import (
    Accounts,
    Credentials,
    Field,
    Guide,
    Hub,
    InvalidCredentials,
    PermissionDenied,
    PluginError,
    Provider,
    ProviderUnavailable,
    Section,
    Store,
    UnexpectedResponse,
    Verified,
    hookimpl,
)
from hub_core.errors import KEY_PIECE, MASK
from hub_core.hookspecs import Flow
from hub_core.policy import Policy
from hub_core.responses import read_json
from hub_core.testing import CANARY, Routes, find_secret, respond
from hub_core.testing.conformance import check_plugin

pytestmark = pytest.mark.anyio

ECHO = Provider(
    id="echo",
    name="Echo",
    fields=[Field("api_key", "API Key", kind="secret"), Field("team", "Team", required=False)],
    guide=Guide(sections=[Section("Create a key", "Under Settings > Keys.")]),
    hosts=["api.echo.invalid"],
)
URL = "https://api.echo.invalid/me"

# How a provider may echo the key back: each must end masked wherever a plugin copies it.
ECHOES: dict[str, Callable[[str], str]] = {
    "as typed": lambda key: key,
    "reversed": lambda key: key[::-1],
    "hex": lambda key: key.encode().hex(),
    "HEX": lambda key: key.encode().hex().upper(),
    "base64": lambda key: base64.b64encode(f"user:{key}".encode()).decode(),
    "base64url": lambda key: base64.urlsafe_b64encode(f"u:{key}".encode()).decode().rstrip("="),
    "split": lambda key: "\n".join(key[i : i + 5] for i in range(0, len(key), 5)),
    "cut short": lambda key: key[4:20],
}

Build = Callable[[dict[str, Any], Credentials], Verified]


class EchoPlugin:
    """An in-code plugin whose flow reads `/me` and builds its `Verified` with *build*."""

    def __init__(self, build: Build) -> None:
        self.build = build

    @hookimpl
    def hub_providers(self) -> list[Provider]:
        return [ECHO]

    @hookimpl
    def hub_validate_credentials(self, provider: Provider, credentials: Credentials) -> Flow:
        return self.flow(credentials)

    def flow(self, credentials: Credentials) -> Flow:
        response = yield httpx.Request(
            "GET", URL, headers={"Authorization": f"Bearer {credentials['api_key']}"}
        )
        return self.build(response.json(), credentials)


def answering(body: dict[str, Any]) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        # json.dumps escapes a lone surrogate ("\\ud800"), as a provider's JSON may.
        content = json.dumps(body).encode()
        return httpx.Response(200, content=content, headers={"content-type": "application/json"})

    return handler


def hub_for(build: Build, body: dict[str, Any]) -> Hub:
    return Hub(
        plugins=[EchoPlugin(build)],
        load_entrypoints=False,
        transport=httpx.MockTransport(answering(body)),
        policy=Policy(retries=0, backoff=0.0),
    )


def copies_everywhere_but_the_identity(body: dict[str, Any], credentials: Credentials) -> Verified:
    echoed = body["name"]
    return Verified(
        identity="team:42",
        label=f"Team {echoed}",
        details={
            "name": echoed,
            echoed: "the echo as a key",
            "nested": [{"deeper": [echoed, 7, 1.5, None, True]}],
            "tuple": (echoed,),
        },
        config={"team": "sales"},
    )


def exposed(verified: Verified) -> str:
    return "\n".join([verified.identity, verified.label, json.dumps(verified.details)])


@pytest.mark.parametrize("echo", ECHOES, ids=list(ECHOES))
def test_an_echoed_key_copied_into_label_and_details_is_masked(echo: str) -> None:
    with hub_for(copies_everywhere_but_the_identity, {"name": ECHOES[echo](CANARY)}) as hub:
        verified = hub.verify("echo", {"api_key": CANARY})
    assert find_secret(exposed(verified), [CANARY]) is None
    assert MASK in verified.label
    assert MASK in verified.details["name"]
    assert verified.details["nested"] == [
        {"deeper": [verified.details["name"], 7, 1.5, None, True]}
    ]
    assert verified.identity == "team:42"
    assert verified.config == {"team": "sales"}


def halves_and_one_echo(body: dict[str, Any], credentials: Credentials) -> Verified:
    half = KEY_PIECE // 2
    return Verified(
        identity="team:42",
        label="Team",
        details={
            # Only joined do these make a piece of the key: each alone is ordinary text.
            "a": CANARY[:half],
            "b": CANARY[half : 2 * half],
            "clean": [f"value {n}" for n in range(20)],
            "deep": {"echo": body["name"]},
        },
    )


def test_details_are_masked_string_by_string_however_they_are_checked() -> None:
    # The driver asks the redactor once for all of a result's strings, then string by string
    # only when that finds key material: what comes out is what masking each string gives.
    with hub_for(halves_and_one_echo, {"name": f"key {CANARY}"}) as hub:
        verified = hub.verify("echo", {"api_key": CANARY})
    half = KEY_PIECE // 2
    assert verified.details["a"] == CANARY[:half]
    assert verified.details["b"] == CANARY[half : 2 * half]
    assert verified.details["clean"] == [f"value {n}" for n in range(20)]
    assert verified.details["deep"] == {"echo": f"key {MASK}"}


async def test_check_many_masks_every_accounts_results_with_its_own_key() -> None:
    keys = [f"{CANARY}{n:04d}" for n in range(30)]

    def echo_of_whoever_asks(request: httpx.Request) -> httpx.Response:
        key = request.headers["authorization"].removeprefix("Bearer ")
        return httpx.Response(200, json={"name": base64.b64encode(key.encode()).decode()})

    hub = Hub(
        plugins=[EchoPlugin(copies_everywhere_but_the_identity)],
        load_entrypoints=False,
        transport=httpx.MockTransport(echo_of_whoever_asks),
        policy=Policy(retries=0, backoff=0.0),
    )
    results = await hub.check_many([("echo", {"api_key": key}) for key in keys], concurrency=5)
    assert all(isinstance(result, Verified) for result in results)
    for key, result in zip(keys, results, strict=True):
        assert isinstance(result, Verified)
        assert find_secret(exposed(result), [key]) is None


def identity_from_the_echo(body: dict[str, Any], credentials: Credentials) -> Verified:
    return Verified(identity=f"user:{body['name']}", label="Someone")


def config_from_the_echo(body: dict[str, Any], credentials: Credentials) -> Verified:
    return Verified(identity="team:42", label="Team", config={"team": body["name"]})


@pytest.mark.parametrize("echo", ["as typed", "hex", "base64", "reversed"])
@pytest.mark.parametrize(
    ("build", "where"),
    [(identity_from_the_echo, "identity"), (config_from_the_echo, "settings")],
    ids=["identity", "config"],
)
def test_an_echoed_key_in_the_identity_or_config_refuses_the_result(
    echo: str, build: Build, where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HUB_HOME", str(tmp_path))
    hub = hub_for(build, {"name": ECHOES[echo](CANARY)})
    store = Store()
    with pytest.raises(
        UnexpectedResponse, match=rf"repeats the key inside the .*{where}"
    ) as caught:
        Accounts(hub, store).link("echo", {"api_key": CANARY})
    assert "nothing was stored" in str(caught.value)
    assert find_secret(repr(caught.value), [CANARY]) is None
    assert store.accounts() == []


async def test_check_many_refuses_an_identity_holding_the_key() -> None:
    hub = hub_for(identity_from_the_echo, {"name": CANARY[::-1]})
    [result] = await hub.check_many([("echo", {"api_key": CANARY})])
    assert isinstance(result, UnexpectedResponse)
    assert find_secret(str(result), [CANARY]) is None


SURROGATES = "bad \ud800 name \udfff"


def surrogates_everywhere(body: dict[str, Any], credentials: Credentials) -> Verified:
    name = body["name"]
    return Verified(
        identity=f"user:{name}",
        label=name,
        details={name: name, "list": [name, {name: [name]}]},
        config={"team": name},
    )


def test_lone_surrogates_in_every_field_end_storable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What json.loads gives for the escapes "\ud800" and "\udfff" in a provider's body.
    body = json.loads('{"name": "bad \\ud800 name \\udfff"}')
    assert body["name"] == SURROGATES
    monkeypatch.setenv("HUB_HOME", str(tmp_path))
    hub = hub_for(surrogates_everywhere, body)
    account = Accounts(hub, Store()).link("echo", {"api_key": CANARY})
    clean = "bad \ufffd name \ufffd"
    assert account.label == clean
    assert account.identity == f"user:{clean}"
    assert account.config["team"] == clean
    assert account.details == {clean: clean, "list": [clean, {clean: [clean]}]}
    reread = Store().get(account.id)  # a second process's view of the database
    assert (reread.label, reread.identity, reread.details) == (
        account.label,
        account.identity,
        account.details,
    )
    json.dumps(reread.to_json(), ensure_ascii=False).encode("utf-8")


async def test_lone_surrogates_end_storable_in_check_many_too() -> None:
    hub = hub_for(surrogates_everywhere, {"name": SURROGATES})
    [result] = await hub.check_many([("echo", {"api_key": CANARY})])
    assert isinstance(result, Verified)
    json.dumps([exposed(result), result.config]).encode("utf-8")


def test_an_error_quoting_a_surrogate_becomes_a_storable_last_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(body: dict[str, Any], credentials: Credentials) -> Verified:
        raise UnexpectedResponse(f"Echo said {body['name']!s} about {credentials['api_key']}")

    monkeypatch.setenv("HUB_HOME", str(tmp_path))
    store = Store()
    account = Accounts(hub_for(surrogates_everywhere, {"name": "Team"}), store).link(
        "echo", {"api_key": CANARY}
    )
    hub = hub_for(refuse, {"name": SURROGATES})
    with pytest.raises(UnexpectedResponse) as caught:
        hub.verify("echo", {"api_key": CANARY})
    error = caught.value
    assert "\ufffd" in str(error)
    assert CANARY not in str(error)
    recorded = store.record(account.id, error)
    assert recorded.last_error == str(error)
    assert Store().get(account.id).last_error == str(error)


class NotJson:
    """A value a naive plugin might put into details."""


@pytest.mark.parametrize(
    ("details", "named"),
    [
        ({"seen": NotJson()}, "a NotJson at details['seen']"),
        ({"deep": [{"set": {1, 2}}]}, "a set at details['deep'][0]['set']"),
        ({(1, 2): "tuple key"}, "a tuple as a key at details"),
        ({"big": 10**5000}, "an int at details['big']"),
    ],
)
def test_details_that_are_not_json_are_the_plugins_bug_not_a_crash_in_the_store(
    details: dict[Any, Any], named: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def build(body: dict[str, Any], credentials: Credentials) -> Verified:
        return Verified(identity="team:42", label="Team", details=details)

    monkeypatch.setenv("HUB_HOME", str(tmp_path))
    store = Store()
    with pytest.raises(PluginError, match=r"the plugin .* not JSON-serialisable") as caught:
        Accounts(hub_for(build, {}), store).link("echo", {"api_key": CANARY})
    assert named in str(caught.value)
    assert store.accounts() == []


def test_details_nested_too_deeply_are_refused() -> None:
    deep: list[Any] = []
    for _ in range(200):
        deep = [deep]

    def build(body: dict[str, Any], credentials: Credentials) -> Verified:
        return Verified(identity="team:42", label="Team", details={"deep": deep})

    with pytest.raises(PluginError, match="nested more than 32 deep"):
        hub_for(build, {}).verify("echo", {"api_key": CANARY})


def test_non_finite_numbers_in_details_become_null() -> None:
    def build(body: dict[str, Any], credentials: Credentials) -> Verified:
        return Verified("team:42", "Team", details={"a": float("inf"), "b": float("nan"), 1: 2})

    verified = hub_for(build, {}).verify("echo", {"api_key": CANARY})
    assert verified.details == {"a": None, "b": None, "1": 2}
    json.dumps(verified.details, allow_nan=False)


# --- the conformance check -----------------------------------------------------------------


class QuotingPlugin:
    """A plugin whose error quotes the key in an encoded form: conformance must fail it."""

    def __init__(self, encode: Callable[[str], str]) -> None:
        self.encode = encode

    @hookimpl
    def hub_providers(self) -> list[Provider]:
        return [ECHO]

    @hookimpl
    def hub_validate_credentials(self, provider: Provider, credentials: Credentials) -> Flow | None:
        return self.flow(credentials) if provider.id == ECHO.id else None

    def flow(self, credentials: Credentials) -> Flow:
        key = credentials["api_key"]
        response = yield httpx.Request("GET", URL, headers={"Authorization": f"Bearer {key}"})
        status = response.status_code
        if status == 401:
            raise InvalidCredentials(f"Echo refused token {self.encode(key)}", field="api_key")
        if status == 403:
            raise PermissionDenied("The key may not read the team", field="api_key")
        if status >= 500:
            raise ProviderUnavailable(f"Echo failed (HTTP {status})")
        body = read_json(response, dict, what="the team")
        if status != 200 or not isinstance(body.get("name"), str):
            raise UnexpectedResponse(f"Echo answered HTTP {status}")
        return Verified(identity="team:42", label="Team")


def happy() -> Routes:
    return Routes({"GET /me": respond(json={"name": "Team"})})


@pytest.mark.parametrize("echo", ["base64", "base64url", "hex", "HEX", "reversed", "split"])
def test_conformance_fails_a_plugin_quoting_an_encoded_key(echo: str) -> None:
    report = check_plugin(QuotingPlugin(ECHOES[echo]), happy=happy())
    assert not report.ok
    failures = [f.message for f in report.findings if f.outcome == "fail"]
    assert any("shows a secret" in message for message in failures), failures


def test_conformance_passes_the_same_plugin_quoting_nothing() -> None:
    report = check_plugin(QuotingPlugin(lambda key: "(hidden)"), happy=happy())
    assert report.ok, [f.message for f in report.findings if f.outcome == "fail"]


@pytest.mark.parametrize("echo", ["hex", "base64", "reversed"])
def test_conformance_fails_a_plugin_copying_an_encoded_key_into_its_label(echo: str) -> None:
    def build(body: dict[str, Any], credentials: Credentials) -> Verified:
        return Verified("team:42", f"Team {ECHOES[echo](credentials['api_key'])}")

    report = check_plugin(EchoPlugin(build), happy=happy())
    failures = [f.message for f in report.findings if f.outcome == "fail"]
    assert any("the Verified result shows a secret" in message for message in failures)


def test_a_result_with_nothing_to_clean_is_kept_as_the_plugin_built_it() -> None:
    built: list[Verified] = []

    def build(body: dict[str, Any], credentials: Credentials) -> Verified:
        built.append(
            Verified(
                identity="team:42",
                label="Team",
                details={"plan": "pro", "seats": [1, 2.5, None, True], "nested": {"deep": "x"}},
                config={"team": "sales"},
            )
        )
        return built[-1]

    verified = hub_for(build, {}).verify("echo", {"api_key": CANARY})
    assert verified is built[0]


@pytest.mark.parametrize(
    ("details", "cleaned"),
    [
        ({"t": ("a", 1)}, {"t": ["a", 1]}),
        ({2: "two", None: "none", False: "no"}, {"2": "two", "null": "none", "false": "no"}),
        ({"n": float("nan"), "i": [float("inf")]}, {"n": None, "i": [None]}),
        ({"s": "\ud800 lone"}, {"s": "\ufffd lone"}),
        ({"\ud800": 1}, {"\ufffd": 1}),
    ],
)
def test_details_that_json_or_a_store_cannot_hold_as_they_are_are_converted(
    details: dict[Any, Any], cleaned: dict[str, Any]
) -> None:
    def build(body: dict[str, Any], credentials: Credentials) -> Verified:
        return Verified(identity="team:42", label="Team", details=details)

    verified = hub_for(build, {}).verify("echo", {"api_key": CANARY})
    assert verified.details == cleaned
    assert json.loads(json.dumps(verified.details, allow_nan=False)) == cleaned


def test_a_label_or_config_that_a_store_cannot_hold_is_made_storable() -> None:
    def build(body: dict[str, Any], credentials: Credentials) -> Verified:
        return Verified(identity="team:\ud800", label="Team \udfff", config={"team": "s\ud800"})

    verified = hub_for(build, {}).verify("echo", {"api_key": CANARY})
    assert (verified.identity, verified.label) == ("team:\ufffd", "Team \ufffd")
    assert verified.config == {"team": "s\ufffd"}
