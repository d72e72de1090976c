"""Every distribution in the repository declares hub's license and its project URLs.

Each ``pyproject.toml`` with a ``[project]`` table (core, plugins/*, templates/*, bench/*) is
read with tomllib; nothing is built. hatchling drops a ``license-files`` pattern that matches
nothing without a word, so the LICENSE beside each one is checked here, and so are the paths
in this repository that the URLs name.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
LICENSE = "Apache-2.0"
REPOSITORY = "https://github.com/hub-dev/hub"
#: PEP 639 (``license`` as an SPDX expression, ``license-files``) from this hatchling on.
HATCHLING = (1, 27)
SKIP_DIRS = {"build", "dist", "node_modules", "__pycache__"}


def distributions() -> list[Path]:
    """The directories holding a pyproject.toml with a [project] table, the root excluded."""
    found = []
    for top, dirs, files in os.walk(ROOT):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS)
        here = Path(top)
        if here != ROOT and "pyproject.toml" in files and "project" in load(here):
            found.append(here)
    return found


def load(directory: Path) -> dict[str, Any]:
    return tomllib.loads((directory / "pyproject.toml").read_text(encoding="utf-8"))


DISTRIBUTIONS = distributions()
IDS = [str(path.relative_to(ROOT)) for path in DISTRIBUTIONS]


def test_discovery_finds_every_distribution() -> None:
    assert {"core", "plugins/hub-elastic", "plugins/hub-qlik", "templates/hub-plugin"} <= set(IDS)


@pytest.mark.parametrize("directory", DISTRIBUTIONS, ids=IDS)
def test_the_license_is_declared_as_an_spdx_expression(directory: Path) -> None:
    project = load(directory)["project"]
    assert project.get("license") == LICENSE
    assert "LICENSE" in project.get("license-files", [])
    # PEP 639 deprecates the classifiers; some tools refuse them beside the expression.
    assert not [c for c in project.get("classifiers", []) if c.startswith("License ::")]


@pytest.mark.parametrize("directory", DISTRIBUTIONS, ids=IDS)
def test_the_license_file_beside_it_is_the_repositorys(directory: Path) -> None:
    license_file = directory / "LICENSE"
    assert license_file.is_file(), f"{license_file} is missing: the dists would lack it"
    assert not license_file.is_symlink(), "a symlink breaks sdists on some platforms"
    assert license_file.read_bytes() == (ROOT / "LICENSE").read_bytes()


@pytest.mark.parametrize("directory", DISTRIBUTIONS, ids=IDS)
def test_the_build_backend_understands_pep_639(directory: Path) -> None:
    requires = load(directory)["build-system"]["requires"]
    hatchling = [r for r in requires if re.match(r"hatchling\b", r)]
    assert hatchling, requires
    minimum = re.search(r">=\s*(\d+)\.(\d+)", hatchling[0])
    assert minimum, hatchling[0]
    assert (int(minimum[1]), int(minimum[2])) >= HATCHLING, hatchling[0]


@pytest.mark.parametrize("directory", DISTRIBUTIONS, ids=IDS)
def test_the_project_urls_name_documentation_and_changelog(directory: Path) -> None:
    urls = load(directory)["project"].get("urls", {})
    assert {"Documentation", "Changelog", "Source", "Issues"} <= set(urls), urls
    for url in urls.values():
        assert url.startswith("https://"), url
        # A URL into this repository names a path that exists in it.
        found = re.fullmatch(re.escape(REPOSITORY) + r"/(?:blob|tree|commits)/main/([^#?]+)", url)
        if found:
            assert (ROOT / found[1]).exists(), url
