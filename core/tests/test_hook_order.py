"""Hooks are asked in pluggy's own order, the provider's own plugin first (DESIGN.md §4).

Hub calls the firstresult hooks itself, to ask the provider's plugin first and to name the
plugin that answered, so these tests hold it to what pluggy's manager does on the same plugins:
tryfirst implementations, then the others with the most recently registered first, then
trylast.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from types import ModuleType
from typing import Any

import httpx
import pytest

from hub_core import (
    Account,
    AccountDisplay,
    Field,
    Guide,
    Hub,
    PluginError,
    Provider,
    Verified,
    hookimpl,
)
from hub_core.hookspecs import Flow
from hub_core.policy import Policy


def _provider(provider_id: str) -> Provider:
    return Provider(
        id=provider_id,
        name=provider_id.title(),
        fields=[Field("api_key", "API Key", kind="secret")],
        guide=Guide(),
        hosts=[f"api.{provider_id}.test"],
    )


ACME = _provider("acme")
BETA = _provider("beta")
KEY = {"api_key": "k"}

# The markers of the five plugins most tests register; "owner" declares the provider.
MARKS: dict[str, dict[str, bool]] = {
    "owner": {},
    "trylast": {"trylast": True},
    "plain_a": {},
    "plain_b": {},
    "tryfirst": {"tryfirst": True},
}


def account(provider: Provider) -> Account:
    return Account(
        id="a1", provider_id=provider.id, identity="org:7", label="Seven", status="active"
    )


def named_flow(name: str, provider: Provider) -> Flow:
    """A flow whose `Verified.label` says which plugin made it."""
    response = yield httpx.Request("GET", f"https://{provider.hosts[0]}/me")
    return Verified(identity=f"org:{response.json()['id']}", label=name)


def implement(module: ModuleType, function: Callable[..., Any], **marks: bool) -> None:
    """Add *function* to *module* as the hook of its name, with pluggy's markers *marks*."""
    implementation = hookimpl(
        function,
        tryfirst=marks.get("tryfirst", False),
        trylast=marks.get("trylast", False),
        wrapper=marks.get("wrapper", False),
        hookwrapper=marks.get("hookwrapper", False),
    )
    setattr(module, function.__name__, implementation)


class Plugins:
    """Builds plugin modules that record each call of their hooks in `calls`.

    A plugin answers (a display titled with its name, a flow labelled with it) when its name
    is in `answering`; otherwise it returns None, so the next one is asked.
    """

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.answering: set[str] = set()

    def plugin(self, name: str, *, provides: Provider | None = None, **marks: bool) -> ModuleType:
        module = ModuleType(name)

        def hub_account_display(provider: Provider, account: Account) -> AccountDisplay | None:
            self.calls.append(name)
            return AccountDisplay(title=name) if name in self.answering else None

        def hub_validate_credentials(provider: Provider, credentials: Any) -> Flow | None:
            self.calls.append(name)
            return named_flow(name, provider) if name in self.answering else None

        implement(module, hub_account_display, **marks)
        implement(module, hub_validate_credentials, **marks)
        if provides is not None:

            def hub_providers() -> list[Provider]:
                return [provides]

            implement(module, hub_providers)
        return module

    def hub(self, *names: str, owner: str = "owner") -> Hub:
        """A Hub of the plugins *names*, registered in that order, with *MARKS*."""
        modules = [
            self.plugin(name, provides=ACME if name == owner else None, **MARKS.get(name, {}))
            for name in names
        ]
        return Hub(
            plugins=modules,
            load_entrypoints=False,
            policy=Policy(backoff=0),
            transport=httpx.MockTransport(lambda request: httpx.Response(200, json={"id": 7})),
        )


# How each firstresult hook is asked through hub, and through pluggy's own manager; each
# returns the name of the plugin that answered, or None.


def hub_display(hub: Hub, provider: Provider = ACME) -> str | None:
    title = hub.display(account(provider)).title
    return None if title == "Seven" else title  # "Seven": hub's default display


def hub_flow(hub: Hub, provider: Provider = ACME) -> str | None:
    try:
        return hub.verify(provider.id, KEY).label
    except PluginError as exc:
        if "no installed plugin can check keys" not in str(exc):
            raise
        return None


def pluggy_display(hub: Hub, plugins: Plugins) -> str | None:
    display = hub._registry.manager.hook.hub_account_display(provider=ACME, account=account(ACME))
    return None if display is None else str(display.title)


def pluggy_flow(hub: Hub, plugins: Plugins) -> str | None:
    credentials = hub.validate("acme", KEY)
    flow = hub._registry.manager.hook.hub_validate_credentials(
        provider=ACME, credentials=credentials
    )
    return None if flow is None else plugins.calls[-1]  # a firstresult hook stops at its answer


HOOKS = {
    "hub_account_display": (hub_display, pluggy_display),
    "hub_validate_credentials": (hub_flow, pluggy_flow),
}
AskHub = Callable[..., "str | None"]
AskPluggy = Callable[[Hub, Plugins], "str | None"]


@pytest.fixture(params=sorted(HOOKS))
def hook(request: pytest.FixtureRequest) -> tuple[AskHub, AskPluggy]:
    return HOOKS[request.param]


@pytest.mark.parametrize("order", list(itertools.permutations(MARKS)), ids="-".join)
def test_hub_asks_in_pluggys_order_after_the_owner(
    order: tuple[str, ...], hook: tuple[AskHub, AskPluggy]
) -> None:
    ask_hub, ask_pluggy = hook
    plugins = Plugins()
    hub = plugins.hub(*order)

    assert ask_pluggy(hub, plugins) is None  # nobody answers: pluggy asks every plugin
    pluggys, plugins.calls = plugins.calls, []
    assert sorted(pluggys) == sorted(MARKS)
    assert ask_hub(hub) is None
    assert plugins.calls == ["owner"] + [name for name in pluggys if name != "owner"]

    # The owner says None, the others all answer: the first of pluggy's answers is hub's.
    plugins.answering = set(MARKS) - {"owner"}
    assert ask_hub(hub) == ask_pluggy(hub, plugins)


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (("owner", "trylast", "plain_a", "plain_b", "tryfirst"), "tryfirst"),
        (("owner", "trylast", "plain_a", "plain_b"), "plain_b"),
        (("owner", "trylast"), "trylast"),
        (("tryfirst", "plain_b", "plain_a", "owner", "trylast"), "tryfirst"),
        (("plain_b", "plain_a", "trylast", "owner"), "plain_a"),
    ],
)
def test_the_first_answer_is_the_one_pluggy_would_take(
    names: tuple[str, ...], expected: str, hook: tuple[AskHub, AskPluggy]
) -> None:
    ask_hub, ask_pluggy = hook
    plugins = Plugins()
    plugins.answering = set(names) - {"owner"}
    hub = plugins.hub(*names)
    assert ask_hub(hub) == expected
    assert ask_pluggy(hub, plugins) == expected


def test_the_order_asked_is_tryfirst_then_latest_registered_then_trylast(
    hook: tuple[AskHub, AskPluggy],
) -> None:
    ask_hub, _ = hook
    plugins = Plugins()
    hub = plugins.hub("owner", "trylast", "plain_a", "plain_b", "tryfirst")
    assert ask_hub(hub) is None
    assert plugins.calls == ["owner", "tryfirst", "plain_b", "plain_a", "trylast"]


def test_the_owner_is_asked_first_even_when_marked_trylast(
    hook: tuple[AskHub, AskPluggy],
) -> None:
    ask_hub, ask_pluggy = hook
    plugins = Plugins()
    plugins.answering = {"late_owner", "tryfirst", "plain_a"}
    modules = [
        plugins.plugin("late_owner", provides=ACME, trylast=True),
        plugins.plugin("tryfirst", tryfirst=True),
        plugins.plugin("plain_a"),
    ]
    hub = Hub(
        plugins=modules,
        load_entrypoints=False,
        transport=httpx.MockTransport(lambda request: httpx.Response(200, json={"id": 7})),
    )
    assert ask_hub(hub) == "late_owner"
    assert plugins.calls == ["late_owner"]
    assert ask_pluggy(hub, plugins) == "tryfirst"  # pluggy alone has no owner rule


def test_each_provider_asks_its_own_plugin_first(hook: tuple[AskHub, AskPluggy]) -> None:
    # The order is cached per hook *and* owner: asking for one provider must not fix the
    # order for another.
    ask_hub = hook[0]
    plugins = Plugins()
    plugins.answering = {"acme_owner", "beta_owner"}
    hub = Hub(
        plugins=[
            plugins.plugin("acme_owner", provides=ACME),
            plugins.plugin("beta_owner", provides=BETA),
        ],
        load_entrypoints=False,
        transport=httpx.MockTransport(lambda request: httpx.Response(200, json={"id": 7})),
    )
    assert ask_hub(hub, ACME) == "acme_owner"
    assert ask_hub(hub, BETA) == "beta_owner"
    assert ask_hub(hub, ACME) == "acme_owner"


def test_the_flow_and_the_plugin_named_for_it_come_from_the_same_answer() -> None:
    plugins = Plugins()
    plugins.answering = {"plain_a", "plain_b"}
    hub = plugins.hub("owner", "plain_a", "plain_b")
    flow, label = hub._registry.flow(ACME, hub.validate("acme", KEY))
    assert label == "plain_b"
    request = next(flow)
    with pytest.raises(StopIteration) as done:
        flow.send(httpx.Response(200, json={"id": 7}, request=request))
    assert done.value.value.label == "plain_b"


# --- wrappers: refused, never run -------------------------------------------------------------


def _wrapper(plugins: Plugins, hook: str) -> Callable[..., Any]:
    """A generator function with *hook*'s arguments that records that it ran."""

    def hub_providers() -> Any:
        plugins.calls.append("wrapping")
        return (yield)

    def hub_account_display(provider: Provider, account: Account) -> Any:
        plugins.calls.append("wrapping")
        return (yield)

    def hub_validate_credentials(provider: Provider, credentials: Any) -> Any:
        plugins.calls.append("wrapping")
        return (yield)

    functions: dict[str, Callable[..., Any]] = {
        "hub_providers": hub_providers,
        "hub_account_display": hub_account_display,
        "hub_validate_credentials": hub_validate_credentials,
    }
    return functions[hook]


@pytest.mark.parametrize("flag", ["wrapper", "hookwrapper"])
@pytest.mark.parametrize(
    "hook", ["hub_account_display", "hub_validate_credentials", "hub_providers"]
)
def test_a_wrapper_is_refused_and_the_other_plugins_keep_working(flag: str, hook: str) -> None:
    plugins = Plugins()
    plugins.answering = {"owner", "later"}
    wrapping = plugins.plugin("wrapping", provides=BETA)
    implement(wrapping, _wrapper(plugins, hook), **{flag: True})
    hub = Hub(
        plugins=[plugins.plugin("owner", provides=ACME), wrapping, plugins.plugin("later")],
        load_entrypoints=False,
        transport=httpx.MockTransport(lambda request: httpx.Response(200, json={"id": 7})),
    )

    reports = {report.name: report for report in hub.plugins()}
    assert list(reports) == ["owner", "wrapping", "later"]
    assert reports["wrapping"].error == (
        f"{hook} is a wrapper ({flag}=True) in wrapping; hub hooks take plain implementations"
    )
    assert reports["wrapping"].providers == ()
    assert reports["owner"].error is None
    assert reports["later"].error is None
    assert [p.id for p in hub.providers()] == ["acme"]  # not the wrapping plugin's beta

    assert hub_display(hub) == "owner"
    assert hub_flow(hub) == "owner"
    plugins.answering = {"later"}
    assert hub_display(hub) == "later"
    assert hub_flow(hub) == "later"
    plugins.answering = set()  # everyone is asked
    assert hub_display(hub) is None
    assert hub_flow(hub) is None
    assert "wrapping" not in plugins.calls  # neither its wrapper nor its plain hooks


def test_every_wrapper_of_a_plugin_is_named() -> None:
    plugins = Plugins()
    wrapping = plugins.plugin("wrapping")
    implement(wrapping, _wrapper(plugins, "hub_account_display"), wrapper=True)
    implement(wrapping, _wrapper(plugins, "hub_validate_credentials"), hookwrapper=True)
    hub = Hub(plugins=[wrapping], load_entrypoints=False)
    [report] = hub.plugins()
    assert report.error is not None
    assert "hub_account_display (wrapper=True)" in report.error
    assert "hub_validate_credentials (hookwrapper=True)" in report.error
    assert report.error.endswith("are wrappers in wrapping; hub hooks take plain implementations")


@pytest.mark.parametrize("flag", ["wrapper", "hookwrapper"])
def test_a_wrapper_registered_behind_hubs_back_is_never_taken_for_an_answer(flag: str) -> None:
    # `Registry.manager` is pluggy's manager itself: a host app can register on it directly,
    # past hub's checks. Its wrapper's generator must not become the display or the flow.
    plugins = Plugins()
    plugins.answering = {"plain_a"}
    hub = plugins.hub("owner", "plain_a")
    wrapping = ModuleType("wrapping")
    for hook in ("hub_account_display", "hub_validate_credentials"):
        implement(wrapping, _wrapper(plugins, hook), **{flag: True})
    hub._registry.manager.register(wrapping)
    # Called by pluggy, the wrappers would come right after the owner, who says None.
    assert hub_display(hub) == "plain_a"
    assert hub_flow(hub) == "plain_a"
    assert plugins.calls == ["owner", "plain_a"] * 2
