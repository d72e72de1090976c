"""The third-party path, proved: a plugin made from the template, installed like any other.

The template is copied and renamed as docs/plugins.md tells authors to (``example`` -> a new
provider), installed with hub-core from this checkout into a fresh virtual environment, and
found by the real ``hub`` command through its entry point. Its own tests, the conformance check
among them, then run in that environment under hub-core's pytest plugin.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "templates" / "hub-plugin"
CORE = ROOT / "core"
#: Installing fetches the build backend (hatchling) and the dependencies: allow for a registry.
INSTALL_TIMEOUT = 300
TIMEOUT = 120

pytestmark = pytest.mark.slow


def clean_environ(**extra: str) -> dict[str, str]:
    """This process's environment without what would steer the child: venvs, plugin filters."""
    drop = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "HUB_PLUGINS", "HUB_DISABLE_PLUGINS")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("PYTEST_")}
    return {**env, **extra}


def run(*args: str | Path, timeout: float = TIMEOUT, **kwargs: Any) -> str:
    kwargs.setdefault("env", clean_environ())
    done = subprocess.run(
        [str(arg) for arg in args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kwargs,
    )
    assert done.returncode == 0, (
        f"{' '.join(map(str, args))} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    )
    return str(done.stdout)


def make_plugin(where: Path, name: str, title: str) -> Path:
    """Copy the template and rename it, as docs/plugins.md shows: example -> *name*."""
    plugin = where / f"hub-{name}"
    shutil.copytree(
        TEMPLATE,
        plugin,
        # What a checkout holds, not what local runs leave behind.
        ignore=shutil.ignore_patterns(
            "__pycache__", ".*_cache", ".venv", "*.egg-info", "build", "dist"
        ),
    )
    (plugin / "src" / "hub_example").rename(plugin / "src" / f"hub_{name}")
    for path in plugin.rglob("*"):
        if path.is_file() and path.name != "LICENSE":
            text = path.read_text()
            path.write_text(text.replace("Example", title).replace("example", name))
    leftover = [
        str(path.relative_to(plugin))
        for path in plugin.rglob("*")
        if "example" in path.name.lower()
        or (path.is_file() and path.name != "LICENSE" and "example" in path.read_text().lower())
    ]
    assert not leftover, f"the documented rename leaves 'example' in {leftover}"
    return plugin


def make_venv(where: Path, *requirements: str) -> Path:
    """A fresh virtual environment holding *requirements*; uv when installed, else venv+pip."""
    venv = where / "venv"
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    uv = shutil.which("uv")
    if uv:
        run(uv, "venv", "--quiet", "--python", sys.executable, venv)
        run(
            uv,
            "pip",
            "install",
            "--quiet",
            "--python",
            python,
            *requirements,
            timeout=INSTALL_TIMEOUT,
        )
    else:
        run(sys.executable, "-m", "venv", venv)
        run(python, "-m", "pip", "install", "--quiet", *requirements, timeout=INSTALL_TIMEOUT)
    return venv


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """hub-core (this checkout) and hub-acme (the renamed template) in a fresh venv."""
    where = tmp_path_factory.mktemp("template")
    plugin = make_plugin(where, "acme", "Acme")
    venv = make_venv(
        where,
        f"hub-core[testing] @ {CORE.as_uri()}",
        f"hub-acme[test] @ {plugin.as_uri()}",
    )
    return venv, plugin


def hub(venv: Path, *args: str) -> Any:
    script = venv / ("Scripts/hub.exe" if os.name == "nt" else "bin/hub")
    home = venv.parent / "home"
    return json.loads(run(script, *args, "--json", env=clean_environ(HUB_HOME=str(home))))


def test_hub_providers_lists_the_new_provider(installed: tuple[Path, Path]) -> None:
    venv, _ = installed
    providers = {provider["id"]: provider for provider in hub(venv, "providers")}
    assert set(providers) == {"acme"}  # only what this venv holds: no first-party plugin
    assert providers["acme"]["name"] == "Acme"
    assert providers["acme"]["hosts"] == ["api.acme.com", "api.eu.acme.com"]
    assert providers["acme"]["fields"] == ["api_key", "region"]


def test_hub_plugins_lists_the_distribution_with_its_version(installed: tuple[Path, Path]) -> None:
    venv, _ = installed
    plugins = hub(venv, "plugins")
    assert plugins == [
        {
            "name": "acme",
            "distribution": "hub-acme",
            "version": "0.1.0",
            "providers": ["acme"],
            "error": None,
        }
    ]


def test_the_plugins_own_tests_pass_with_the_conformance_check(
    installed: tuple[Path, Path],
) -> None:
    venv, plugin = installed
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    out = run(python, "-m", "pytest", "-p", "no:cacheprovider", "-v", cwd=plugin)
    assert "test_the_plugin_keeps_the_hub_contract PASSED" in out
    assert " failed" not in out
    # The option checks the installed plugin by its entry-point name, with no test file at all.
    out = run(
        python,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "--hub-conformance=acme",
        "-k",
        "hub-conformance",
        cwd=plugin,
    )
    assert "1 passed" in out
