"""Discovery through real entry points: each test installs throwaway distributions on sys.path."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hub_core import Hub, PluginError, UnknownProvider

PROVIDER_MODULE = """
from hub_core import Field, Guide, Provider, hookimpl

@hookimpl
def hub_providers():
    return [Provider(id={id!r}, name={name!r}, fields=[Field("api_key", "Key", kind="secret")],
                     guide=Guide(), hosts=["api.{id}.test"])]
"""

Install = Callable[..., str]


@pytest.fixture
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Install]:
    """Install a distribution holding one plugin module; return the entry-point name."""
    modules: list[str] = []
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("HUB_PLUGINS", raising=False)
    monkeypatch.delenv("HUB_DISABLE_PLUGINS", raising=False)

    def _install(
        name: str,
        source: str,
        *,
        dist: str | None = None,
        version: str = "1.0",
        module: str | None = None,
    ) -> str:
        module = module or f"hubtest_{name}_{len(modules)}"
        dist = dist or f"hubtest-{name}"
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
        info = tmp_path / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[hub]\n{name} = {module}\n")
        modules.append(module)
        return name

    yield _install
    for module in modules:
        sys.modules.pop(module, None)


def broken_dist(
    tmp_path: Path, name: str, entry_points: str, metadata: bytes | None = None
) -> None:
    """A distribution beside `install`'s (the same path), with files as given."""
    info = tmp_path / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    default = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode()
    (info / "METADATA").write_bytes(metadata or default)
    (info / "entry_points.txt").write_text(entry_points)


def provider_source(provider_id: str, name: str = "Test") -> str:
    return PROVIDER_MODULE.format(id=provider_id, name=name)


def test_entry_point_plugins_are_discovered_with_distribution_and_version(install: Install) -> None:
    install("alpha", provider_source("alpha"), dist="hub-alpha", version="2.3.1")
    hub = Hub(enable={"alpha"})
    assert [p.id for p in hub.providers()] == ["alpha"]
    [report] = hub.plugins()
    assert (report.name, report.distribution, report.version) == ("alpha", "hub-alpha", "2.3.1")
    assert report.providers == ("alpha",)
    assert report.error is None


def test_distribution_metadata_is_read_once_and_only_when_a_report_shows_it(
    install: Install, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `hub providers` never shows distributions, and parsing every plugin's metadata at
    # start-up is what the discovery benchmark would catch.
    import importlib.metadata

    reads: list[str] = []
    metadata = importlib.metadata.Distribution.metadata

    def counted(self: importlib.metadata.Distribution) -> Any:
        parsed = metadata.fget(self)  # type: ignore[attr-defined]
        reads.append(parsed["Name"])
        return parsed

    monkeypatch.setattr(importlib.metadata.Distribution, "metadata", property(counted))
    install("alpha", provider_source("alpha"), dist="hub-alpha", version="2.0")
    hub = Hub(enable={"alpha"})
    assert [p.id for p in hub.providers()] == ["alpha"]
    assert hub.provider("alpha").name == "Test"
    assert "hub-alpha" not in reads
    assert [(r.distribution, r.version) for r in hub.plugins()] == [("hub-alpha", "2.0")]
    assert hub.plugins() == hub.plugins()
    assert reads.count("hub-alpha") == 1


def test_a_plugin_that_fails_to_import_is_reported_and_the_others_work(install: Install) -> None:
    install("alpha", provider_source("alpha"))
    install("broken", "import this_module_does_not_exist\n")
    hub = Hub(enable={"alpha", "broken"})
    assert [p.id for p in hub.providers()] == ["alpha"]
    reports = {r.name: r for r in hub.plugins()}
    assert reports["broken"].error is not None
    assert "could not be imported" in reports["broken"].error
    assert "this_module_does_not_exist" in reports["broken"].error
    assert reports["alpha"].error is None


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("@hookimpl\ndef hub_providers():\n    raise KeyError('boom')\n", "KeyError"),
        ("@hookimpl\ndef hub_providers():\n    return ['not a provider']\n", "expected Provider"),
        ("@hookimpl\ndef hub_providers():\n    return None\n", "expected a list of Provider"),
        ("@hookimpl\ndef hub_provider():\n    return []\n", "did you mean 'hub_providers'"),
        ("@hookimpl\ndef hub_providers(config):\n    return []\n", "hook contract"),
        (
            "@hookimpl(wrapper=True)\ndef hub_account_display(provider, account):\n"
            "    return (yield)\n",
            "hub_account_display is a wrapper (wrapper=True) in hubtest-bad 1.0; hub hooks take",
        ),
        (
            "@hookimpl(hookwrapper=True)\ndef hub_validate_credentials(provider, credentials):\n"
            "    yield\n",
            "hub_validate_credentials is a wrapper (hookwrapper=True) in hubtest-bad 1.0",
        ),
    ],
)
def test_a_plugin_that_breaks_the_contract_is_isolated(
    install: Install, source: str, expected: str
) -> None:
    install("alpha", provider_source("alpha"))
    install("bad", "from hub_core import hookimpl\n" + source)
    hub = Hub(enable={"alpha", "bad"})
    assert [p.id for p in hub.providers()] == ["alpha"]
    bad = next(r for r in hub.plugins() if r.name == "bad")
    assert bad.error is not None
    assert expected in bad.error
    assert hub.verify  # the hub itself is usable


def test_a_broken_plugin_is_unregistered_so_its_other_hooks_never_run(install: Install) -> None:
    install(
        "bad",
        """
        from hub_core import hookimpl
        @hookimpl
        def hub_providers():
            raise RuntimeError("no")
        @hookimpl
        def hub_validate_credentials(provider, credentials):
            raise AssertionError("must not be called")
    """,
    )
    install("alpha", provider_source("alpha"))
    hub = Hub(enable={"alpha", "bad"})
    with pytest.raises(PluginError, match="no installed plugin can check keys of Test"):
        hub.verify("alpha", {"api_key": "k"})


def test_two_plugins_claiming_one_provider_id_name_both_distributions(install: Install) -> None:
    install("one", provider_source("shared", "One"), dist="hub-one")
    install("two", provider_source("shared", "Two"), dist="hub-two")
    install("alpha", provider_source("alpha"))
    hub = Hub(enable={"one", "two", "alpha"})
    assert [p.id for p in hub.providers()] == ["alpha"]
    with pytest.raises(PluginError) as caught:
        hub.provider("shared")
    assert "hub-one 1.0" in str(caught.value)
    assert "hub-two 1.0" in str(caught.value)
    errors = [r.error for r in hub.plugins() if r.name in ("one", "two")]
    assert all(e and "claimed by both hub-one 1.0 and hub-two 1.0" in e for e in errors)


def test_two_distributions_with_one_entry_point_name_are_both_reported(install: Install) -> None:
    install("same", provider_source("first"), dist="hub-first")
    install("same", provider_source("second"), dist="hub-second")
    hub = Hub(enable={"same"})
    assert len(hub.providers()) == 1
    reports = hub.plugins()
    assert len(reports) == 2
    assert sum(r.error is not None and "also used by" in r.error for r in reports) == 1


def test_hub_plugins_variable_loads_only_the_named_plugins(
    install: Install, monkeypatch: pytest.MonkeyPatch
) -> None:
    install("alpha", provider_source("alpha"))
    install("beta", provider_source("beta"))
    monkeypatch.setenv("HUB_PLUGINS", "beta, nothing")
    assert [p.id for p in Hub().providers()] == ["beta"]
    monkeypatch.setenv("HUB_PLUGINS", "")
    assert Hub().providers() == []


def test_hub_disable_plugins_variable_skips_plugins(
    install: Install, monkeypatch: pytest.MonkeyPatch
) -> None:
    install("alpha", provider_source("alpha"))
    install("beta", provider_source("beta"))
    monkeypatch.setenv("HUB_PLUGINS", "alpha,beta")
    monkeypatch.setenv("HUB_DISABLE_PLUGINS", "alpha")
    assert [p.id for p in Hub().providers()] == ["beta"]


def test_entry_points_can_be_switched_off_and_plugins_passed_in_code(install: Install) -> None:
    install("alpha", provider_source("alpha"))
    hub = Hub(load_entrypoints=False)
    assert hub.providers() == []
    assert hub.plugins() == []


def test_a_module_passed_in_code_and_installed_is_registered_once(install: Install) -> None:
    install("alpha", provider_source("alpha"), module="hubtest_shared_module")
    import hubtest_shared_module  # type: ignore[import-not-found]

    hub = Hub(plugins=[hubtest_shared_module], enable={"alpha"})
    assert [p.id for p in hub.providers()] == ["alpha"]
    assert len(hub.plugins()) == 1


def test_two_hubs_in_one_process_are_independent(install: Install) -> None:
    install("alpha", provider_source("alpha"))
    install("beta", provider_source("beta"))
    first, second = Hub(enable={"alpha"}), Hub(enable={"beta"})
    assert [p.id for p in first.providers()] == ["alpha"]
    assert [p.id for p in second.providers()] == ["beta"]


def test_unknown_provider_lists_what_is_installed(install: Install) -> None:
    install("alpha", provider_source("alpha"))
    with pytest.raises(UnknownProvider, match="no provider 'qlik'; installed: alpha"):
        Hub(enable={"alpha"}).provider("qlik")
    with pytest.raises(UnknownProvider, match="no provider plugin is installed"):
        Hub(load_entrypoints=False).provider("qlik")


def test_module_plugins_register_the_same_hooks_as_with_pluggy_itself(tmp_path: Path) -> None:
    import importlib.util

    import pluggy

    from hub_core import hookspecs
    from hub_core.plugins import _PluginManager

    source = tmp_path / "acme_plugin.py"
    source.write_text(
        textwrap.dedent(
            """
            from hub_core import Field, Provider, hookimpl

            PROVIDERS = []

            @hookimpl
            def hub_providers():
                return PROVIDERS

            @hookimpl(specname="hub_account_display")
            def display(provider, account):
                return None

            @staticmethod
            @hookimpl
            def hub_validate_credentials(provider, credentials):
                return None

            def helper():
                return None

            class Thing:
                pass
            """
        )
    )
    spec = importlib.util.spec_from_file_location("acme_plugin", source)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def registered(manager: pluggy.PluginManager) -> list[tuple[str, str]]:
        manager.add_hookspecs(hookspecs)
        manager.register(module, name="acme")
        return sorted(
            (caller.name, impl.function.__name__)
            for caller in manager.get_hookcallers(module) or ()
            for impl in caller.get_hookimpls()
        )

    ours = registered(_PluginManager(hookspecs.PROJECT))
    assert ours == registered(pluggy.PluginManager(hookspecs.PROJECT))
    assert ours == [
        ("hub_account_display", "display"),
        ("hub_providers", "hub_providers"),
        ("hub_validate_credentials", "hub_validate_credentials"),
    ]


def test_a_plugin_whose_second_hub_providers_fails_provides_nothing() -> None:
    # Two implementations of one hook in one plugin (specname): the first one's providers
    # must not outlive the plugin being reported broken by the second.
    from types import ModuleType

    from hub_core import Field, Guide, Provider, hookimpl

    provider = Provider(
        id="alpha", name="Alpha", fields=[Field("k", "K")], guide=Guide(), hosts=["a.test"]
    )
    module = ModuleType("two_lists")

    @hookimpl(tryfirst=True)
    def hub_providers() -> list[Provider]:
        return [provider]

    @hookimpl(specname="hub_providers")
    def more_providers() -> list[Provider]:
        raise RuntimeError("no")

    vars(module).update(hub_providers=hub_providers, more_providers=more_providers)
    hub = Hub(plugins=[module], load_entrypoints=False)
    [report] = hub.plugins()
    assert report.error == "hub_providers() failed: RuntimeError: no"
    assert report.providers == ()
    assert hub.providers() == []


def test_a_distribution_whose_entry_points_cannot_be_read_is_skipped_and_said(
    install: Install, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    install("alpha", provider_source("alpha"))
    broken_dist(tmp_path, "hubtest-bad", "[hub]\nbad hubtest_bad\n")  # a line with no "="
    broken_dist(tmp_path, "other-bad", "[console_scripts]\nx y\n")  # not a hub plugin
    hub = Hub(enable={"alpha"})  # importlib.metadata.entry_points() raised for it
    assert [p.id for p in hub.providers()] == ["alpha"]
    [said] = [r.getMessage() for r in caplog.records if "cannot read the plugins" in r.message]
    assert "hubtest_bad-1.0.dist-info" in said
    assert "reinstall it" in said


def test_a_broken_plugin_whose_metadata_is_not_utf8_is_reported_without_it(
    install: Install, tmp_path: Path
) -> None:
    install("alpha", provider_source("alpha"))
    latin = b"Metadata-Version: 2.1\nName: hubtest-latin\nVersion: 1.0\nAuthor: Jos\xe9\n"
    broken_dist(tmp_path, "hubtest-latin", "[hub]\nlatin = hubtest_no_such_module\n", latin)
    hub = Hub(enable={"alpha", "latin"})
    assert [p.id for p in hub.providers()] == ["alpha"]
    [report] = [r for r in hub.plugins() if r.name == "latin"]
    assert report.error
    assert (report.distribution, report.version) == (None, None)
