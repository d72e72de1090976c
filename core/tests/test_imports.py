"""`import hub_core` and `hub --help` stay cheap: heavy modules load only when used."""

from __future__ import annotations

import builtins
import contextlib
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from hub_core import Hub, Verified

HEAVY = [
    "sqlite3",
    "cryptography",
    "starlette",
    "uvicorn",
    "jinja2",
    "aiohttp",
    "hub_core.cli",
    "hub_core.store",
    "hub_core.web",
]


def modules_after(code: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys; print('\\n'.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(done.stdout.split())


def test_import_hub_core_loads_no_heavy_module() -> None:
    loaded = modules_after("import hub_core")
    assert not loaded & set(HEAVY)
    assert "httpx" not in loaded


def test_the_cli_help_does_not_import_httpx() -> None:
    loaded = modules_after("from hub_core.cli import main")
    assert "httpx" not in loaded
    assert not loaded & {"sqlite3", "cryptography", "aiohttp"}


def test_using_hub_loads_httpx_but_not_aiohttp_until_async_io_runs() -> None:
    loaded = modules_after("from hub_core import Hub; Hub(load_entrypoints=False)")
    assert "httpx" in loaded
    assert "aiohttp" not in loaded


def test_a_hub_that_checks_nothing_loads_neither_the_driver_nor_the_transports() -> None:
    # `hub providers` and `hub accounts` build a Hub and never check a key (bench: cold start).
    loaded = modules_after("from hub_core import Hub; Hub(load_entrypoints=False).providers()")
    assert not loaded & {"hub_core.flows", "hub_core.transports", "httpcore"}


@pytest.mark.parametrize("name", ["Accounts", "AccountStore", "Hub", "PluginReport", "Store"])
def test_lazy_names_resolve(name: str) -> None:
    from importlib import import_module

    import hub_core

    home = import_module(f"hub_core.{hub_core._LAZY[name]}")
    assert getattr(hub_core, name) is getattr(home, name)
    # `Store` is the SQLite store under the name callers have always used.
    assert getattr(hub_core, name).__name__ == {"Store": "SqliteStore"}.get(name, name)


def test_unknown_attributes_raise_attribute_error() -> None:
    import hub_core

    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        hub_core.Nope  # noqa: B018


@contextlib.contextmanager
def from_imports() -> Iterator[list[str]]:
    """The ``from … import`` statements hub's own code runs while the block runs.

    Those cost about 2 µs each time they run, the module loaded or not (a plain ``import
    asyncio`` of a loaded module, a tenth of that, is not counted).
    """
    run: list[str] = []
    real = builtins.__import__

    def counting(name: str, globals: Any = None, *args: Any, **kwargs: Any) -> Any:
        fromlist = args[1] if len(args) > 1 else kwargs.get("fromlist")
        module = (globals or {}).get("__name__", "")
        if fromlist and module.startswith(("hub_core", "hub_elastic", "hub_qlik")):
            run.append(f"{module}: from {name} import {', '.join(fromlist)}")
        return real(name, globals, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(builtins, "__import__", counting)
        yield run


@pytest.mark.anyio
async def test_a_check_runs_no_import_statement_once_its_modules_are_loaded(
    acme_plugin: Any,
) -> None:
    # Thousands of checks at once paid them several times each (bench: 2% of check_many).
    def accept(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"id": 7, "name": "Seven"})

    hub = Hub([acme_plugin()], load_entrypoints=False, transport=httpx.MockTransport(accept))
    items = [("acme", {"api_key": f"key-{n:012d}"}) for n in range(20)]
    await hub.check_many(items[:2])  # loads what a check needs
    with from_imports() as run:
        results = await hub.check_many(items)
    assert all(isinstance(result, Verified) for result in results)
    assert len(run) < len(items), run  # once per batch at most, never once per check


@pytest.mark.parametrize("name", ["hub_elastic", "hub_qlik"])
def test_the_bundled_plugins_build_a_flow_without_an_import_statement(name: str) -> None:
    from importlib import import_module

    plugin = import_module(name)
    hub = Hub([plugin], load_entrypoints=False)
    (provider,) = hub.providers()
    values = {field.name: "x" for field in provider.fields}
    plugin.hub_validate_credentials(provider, values)  # loads the flow module
    with from_imports() as run:
        flow = plugin.hub_validate_credentials(provider, values)
    assert flow is not None
    assert run == []
