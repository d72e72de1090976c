"""Hub as a host app uses it: async checks, bulk checks, display, lifecycle."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from hub_core import (
    Account,
    AccountDisplay,
    Hub,
    HubError,
    InvalidCredentials,
    Policy,
    Provider,
    UnknownProvider,
    Verified,
    hookimpl,
)

pytestmark = pytest.mark.anyio


async def test_check_many_returns_one_result_per_item_in_order(
    make_hub: Callable[..., Hub],
) -> None:
    hub = make_hub()
    items = [
        ("acme", {"api_key": "good"}),
        ("acme", {"api_key": "bad-key"}),
        ("nope", {"api_key": "good"}),
        ("acme", {"api_key": ""}),
        ("acme", {"api_key": "good"}),
    ]
    seen: list[int] = []
    results = await hub.check_many(items, concurrency=2, on_result=lambda i, r: seen.append(i))
    assert [type(r).__name__ for r in results] == [
        "Verified",
        "InvalidCredentials",
        "UnknownProvider",
        "FieldError",
        "Verified",
    ]
    assert sorted(seen) == [0, 1, 2, 3, 4]


async def test_check_many_never_runs_more_than_the_concurrency_limit(acme_plugin: Any) -> None:
    in_flight = peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return httpx.Response(200, json={"id": 1, "name": "x"})

    hub = Hub(
        plugins=[acme_plugin()], load_entrypoints=False, transport=httpx.MockTransport(handler)
    )
    results = await hub.check_many([("acme", {"api_key": "good"})] * 40, concurrency=5)
    assert len(results) == 40
    assert all(isinstance(r, Verified) for r in results)
    assert peak == 5


async def test_check_many_accepts_a_lazy_iterable_and_an_empty_one(
    make_hub: Callable[..., Hub],
) -> None:
    hub = make_hub()
    assert await hub.check_many(iter([])) == []
    results = await hub.check_many(("acme", {"api_key": "good"}) for _ in range(3))
    assert len(results) == 3


async def test_check_many_refuses_a_concurrency_below_one(make_hub: Callable[..., Hub]) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        await make_hub().check_many([], concurrency=0)


async def test_averify_inside_async_with_reuses_one_client(make_hub: Callable[..., Hub]) -> None:
    hub = make_hub()
    async with hub:
        first = await hub.averify("acme", {"api_key": "good"})
        second = await hub.averify("acme", {"api_key": "good"})
    assert first == second
    with pytest.raises(InvalidCredentials):
        await hub.averify("acme", {"api_key": "bad-key"})


def test_verify_inside_with_reuses_one_client(make_hub: Callable[..., Hub]) -> None:
    with make_hub() as hub:
        assert hub.verify("acme", {"api_key": "good"}).identity == "org:7"
        assert hub._client is not None
    assert hub._client is None


def test_validate_and_json_schema_need_no_request(
    make_hub: Callable[..., Hub], recorder: Any
) -> None:
    hub = make_hub()
    assert hub.validate("acme", {"api_key": " k "})["api_key"] == "k"
    assert hub.json_schema("acme")["title"] == "Acme"
    assert recorder.requests == []
    with pytest.raises(UnknownProvider):
        hub.json_schema("nope")


ACCOUNT = Account(
    id="a1",
    provider_id="acme",
    identity="org:7",
    label="Seven",
    status="active",
    config={"region": "us"},
)


def test_display_falls_back_to_a_default(make_hub: Callable[..., Hub]) -> None:
    display = make_hub().display(ACCOUNT)
    assert display.title == "Seven"
    assert display.subtitle == "Acme · org:7"
    assert ("Region", "us") in display.rows
    assert ("Expires", "never / unknown") in display.rows


def test_display_uses_the_plugin_and_survives_a_broken_one(acme_plugin: Any) -> None:
    AcmePlugin = acme_plugin

    class Shows(AcmePlugin):  # type: ignore[misc,valid-type]
        @hookimpl
        def hub_account_display(self, provider: Provider, account: Account) -> AccountDisplay:
            return AccountDisplay(title=f"{account.label}!", rows=[("Org", account.identity)])

    class Breaks(AcmePlugin):  # type: ignore[misc,valid-type]
        @hookimpl
        def hub_account_display(self, provider: Provider, account: Account) -> AccountDisplay:
            raise RuntimeError("display bug")

    shown = Hub(plugins=[Shows()], load_entrypoints=False).display(ACCOUNT)
    assert shown == AccountDisplay(title="Seven!", rows=[("Org", "org:7")])
    assert Hub(plugins=[Breaks()], load_entrypoints=False).display(ACCOUNT).title == "Seven"
    orphan = Account(id="a2", provider_id="gone", identity="x", label="Orphan", status="error")
    assert Hub(load_entrypoints=False).display(orphan).subtitle == "gone · x"


def test_hub_repr_lists_providers(make_hub: Callable[..., Hub]) -> None:
    assert repr(make_hub()) == "<Hub providers=['acme']>"


def test_every_hub_error_has_a_code() -> None:
    codes = {cls.code for cls in HubError.__subclasses__()}
    assert "error" not in codes
    assert len(codes) == len(HubError.__subclasses__())


def test_a_hub_checks_with_the_policy_it_is_given() -> None:
    assert Hub(load_entrypoints=False).policy == Policy()
    policy = Policy(timeout=5, flow_timeout=12.0, retries=0)
    assert Hub(load_entrypoints=False, policy=policy).policy is policy
    assert policy.timeout == httpx.Timeout(5)
