"""A key behind an error (in what it was raised from, its notes) or in httpcore's DEBUG trace.

Every test pushes a canary key through one path and looks where the promise says it must
never appear: "A key never appears in argv, logs, exceptions, reprs, --json output or the
database in clear." An exception is what a traceback shows: its message, its args, its notes
and every exception chained to it (`hub_core.testing.exposed_text`, and
`traceback.format_exception`, which a host application's error log prints).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import trustme

from hub_core import FieldError, Hub, HubError, InvalidCredentials, Policy, Verified, hookimpl
from hub_core.hookspecs import Flow
from hub_core.testing import CANARY, assert_no_secret, find_secret
from hub_core.testing.network import (
    ConnectProxy,
    FakeProvider,
    Received,
    Reply,
    apply_environment,
    proxy_environment,
)

from .conftest import AcmePlugin


def shown(error: BaseException) -> str:
    """Everything a person or a log may see of *error*: its traceback, as Python prints it."""
    return "".join(traceback.format_exception(error))


def assert_no_key_in(error: BaseException) -> None:
    assert_no_secret(error, [CANARY])
    leaked = find_secret(shown(error), [CANARY])
    assert leaked is None, f"the key ({leaked!r}) is in the traceback:\n{shown(error)}"


def hub_with(flow: Callable[[Any], Flow] | None = None, plugin: Any = None) -> Hub:
    return Hub(
        plugins=[plugin if plugin is not None else AcmePlugin(flow)],
        load_entrypoints=False,
        policy=Policy(backoff=0, retries=0),
        transport=httpx.MockTransport(lambda request: httpx.Response(200, json={})),
    )


def fails_with(hub: Hub) -> HubError:
    with pytest.raises(HubError) as caught:
        hub.verify("acme", {"api_key": CANARY})
    return caught.value


# --- a plugin's hook that raises before it returns a flow -----------------------------------


class EagerPlugin(AcmePlugin):
    """A plugin whose hook reads the key at once (a plain function, not a generator)."""

    @hookimpl
    def hub_validate_credentials(self, provider: Any, credentials: Any) -> Flow | None:
        key = credentials["api_key"]
        raise ValueError(f"cannot read the key {key!r}")


def test_a_hook_that_raises_quoting_the_key_leaves_it_nowhere_in_the_plugin_error() -> None:
    # The hook's own ValueError stays chained behind the PluginError (plugins.py `_first`),
    # masked as the message is.
    error = fails_with(hub_with(plugin=EagerPlugin()))
    assert type(error).__name__ == "PluginError"
    assert_no_key_in(error)


# --- a hub error the flow raises, chained to one that quotes the key ------------------------


def reading_the_key(chain: str) -> Callable[[Any], Flow]:
    """A flow that reads a number out of the key and says the key is wrong when it is not one.

    ``int()`` quotes what it could not read ("invalid literal for int() with base 10: '...'"),
    and Python chains that error to the flow's own (explicitly with ``from``, or implicitly).
    """

    def flow(credentials: Any) -> Flow:
        key = credentials["api_key"]
        yield httpx.Request("GET", "https://api.acme.test/me", headers={"Authorization": key})
        try:
            int(key)
        except ValueError as exc:
            if chain == "cause":
                raise InvalidCredentials("Acme rejected the key", field="api_key") from exc
            if chain == "context":
                raise InvalidCredentials("Acme rejected the key", field="api_key")  # noqa: B904
            if chain == "field":
                raise FieldError("api_key", "API Key is not an Acme key") from exc
        return Verified("id", "label")

    return flow


@pytest.mark.parametrize("chain", ["cause", "context", "field"])
def test_a_hub_error_from_the_flow_shows_no_key_in_what_it_was_raised_from(
    chain: str,
) -> None:
    # What the flow raised it from (or while handling) is masked as the error itself is.
    error = fails_with(hub_with(reading_the_key(chain)))
    assert isinstance(error, HubError)
    assert_no_key_in(error)


def test_the_notes_of_a_hub_error_from_the_flow_are_masked() -> None:
    def flow(credentials: Any) -> Flow:
        key = credentials["api_key"]
        yield httpx.Request("GET", "https://api.acme.test/me", headers={"Authorization": key})
        error = InvalidCredentials("Acme rejected the key", field="api_key")
        error.add_note(f"sent Authorization: {key}")
        raise error

    error = fails_with(hub_with(flow))
    assert isinstance(error, InvalidCredentials)
    assert_no_key_in(error)


# --- a plugin's bug, wrapped in PluginError: what `_plugin_failure` does not scrub ----------


def broken(kind: str) -> Callable[[Any], Flow]:
    def flow(credentials: Any) -> Flow:
        key = credentials["api_key"]
        yield httpx.Request("GET", "https://api.acme.test/me", headers={"Authorization": key})
        if kind == "note":
            error = ValueError("the answer makes no sense")
            error.add_note(f"while checking {key}")
            raise error
        if kind == "bytes-arg":
            raise ValueError(key.encode())
        if kind == "tuple-arg":
            raise KeyError(("tokens", key))
        if kind == "exception-group":
            raise ExceptionGroup("two lookups failed", [KeyError(key), ValueError(key)])
        if kind == "oserror-filename":
            raise FileNotFoundError(2, "No such file or directory", f"/tmp/cache/{key}")
        if kind == "own-str":

            class LookupFailed(Exception):
                def __str__(self) -> str:
                    return f"no token {key}"

            raise LookupFailed()
        return Verified("id", "label")

    return flow


@pytest.mark.parametrize(
    "kind",
    ["note", "bytes-arg", "tuple-arg", "exception-group", "oserror-filename", "own-str"],
)
def test_a_plugin_bug_quoting_the_key_shows_it_nowhere_in_the_traceback(kind: str) -> None:
    # Notes, bytes or tuples in args, an ExceptionGroup's members, an OSError's filename and
    # an exception's own __str__ (what the traceback prints): masked, or the exception is
    # replaced in the chain by a MaskedError.
    error = fails_with(hub_with(broken(kind)))
    assert type(error).__name__ == "PluginError"
    assert CANARY not in str(error)  # the message itself is masked...
    assert_no_key_in(error)  # ...but not what is chained behind it


# --- DEBUG logs of a real check: httpcore logs every response header -------------------------


@pytest.fixture
def echoing(ca: trustme.CA, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeProvider]:
    """Acme, over the real network, answering 401 with the key it was sent in a header."""

    def handler(request: Received) -> Reply:
        key = request.headers.get("authorization", "").removeprefix("Bearer ")
        return Reply.json(
            {"error": "bad key"},
            status=401,
            headers={"WWW-Authenticate": f'Bearer error="invalid_token", token="{key}"'},
        )

    with (
        FakeProvider(["api.acme.test"], handler, ca=ca) as acme,
        ConnectProxy({"api.acme.test": acme}) as proxy,
        proxy_environment(proxy, ca) as env,
    ):
        apply_environment(monkeypatch, env)
        yield acme


def test_a_key_echoed_in_a_response_header_is_not_in_httpcores_debug_trace(
    echoing: FakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    # The sync check (`Hub.verify`, `hub link`, `hub relink`) goes through httpx/httpcore,
    # whose http11 logger writes `receive_response_headers.complete return_value=(...,
    # [(b'WWW-Authenticate', b'... <key> ...')])` at DEBUG: the event stays, its values go.
    caplog.set_level(logging.DEBUG)
    hub = Hub(plugins=[AcmePlugin()], load_entrypoints=False, policy=Policy(backoff=0))
    with pytest.raises(InvalidCredentials):
        hub.verify("acme", {"api_key": CANARY})
    assert echoing.requests[0].headers["authorization"] == f"Bearer {CANARY}"
    leaked = [r.name for r in caplog.records if CANARY in r.getMessage()]
    assert not leaked, f"the key is in DEBUG records of {sorted(set(leaked))}"
