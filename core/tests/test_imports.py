"""`import hub_core` and `hub --help` stay cheap: heavy modules load only when used."""

from __future__ import annotations

import subprocess
import sys

import pytest

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
