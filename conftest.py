"""Coverage of the suite when it runs in parallel (noxfile.py's tests session).

``coverage run -m pytest -n auto`` measures pytest-xdist's workers through coverage's
``patch = ["subprocess"]``, each from its first line. Only the process that starts the workers
passes the patch on: the others keep it from the `hub` commands and interpreters their tests
start, since the import tests count what a plain interpreter loads and the process tests time
real commands.
"""

import os

import pytest


def pytest_configure(config: pytest.Config) -> None:
    starts_workers = getattr(config.option, "dist", "no") != "no"
    if hasattr(config, "workerinput") or not starts_workers:
        os.environ.pop("COVERAGE_PROCESS_CONFIG", None)
