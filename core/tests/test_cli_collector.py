"""`hub check --all` and `hub worker` keep Python's garbage collector out of their runs, in
their own process only (`collect_less`)."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from hub_core.cli import main
from hub_core.cli.accounts import RUN_GC_THRESHOLD
from hub_core.model import Credentials, Verified
from hub_core.store import Store

pytestmark = pytest.mark.usefixtures("hermetic_store_env")

# A command as the console script runs it (argv[0] "hub"), over a run that checks nothing
# (no request leaves), saying at exit what the collector was set to.
PROGRAM = textwrap.dedent(
    """
    import atexit, gc, json, sys

    from hub_core.accounts import Accounts, CheckRun

    async def run(self, **options):
        return CheckRun()

    Accounts.check_all = Accounts.work = run
    atexit.register(lambda: print(json.dumps(
        {"young": gc.get_threshold()[0], "frozen": gc.get_freeze_count()}
    )))
    sys.argv[0] = "hub"
    from hub_core.cli import main
    main()
    """
)


def linked_one(home: Path) -> None:
    with Store(home / "hub.db") as store:
        creds = Credentials({"api_key": "essu_" + "k" * 40}, secret=["api_key"])
        store.save("elastic", Verified(identity="org:1", label="One"), creds)


@pytest.mark.parametrize("command", [["check", "--all"], ["worker"]])
def test_the_hub_program_freezes_start_up_and_collects_the_young_less_often(
    command: list[str],
) -> None:
    home = Path(os.environ["HUB_HOME"])
    linked_one(home)
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, *command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "HUB_HOME": str(home)},
    )
    assert done.returncode == 0, done.stderr
    said = json.loads(done.stdout.strip().splitlines()[-1])
    assert said["young"] == RUN_GC_THRESHOLD
    assert said["frozen"] > 10_000  # modules, classes, the plugins: start-up, all of it


def test_a_host_running_the_commands_keeps_its_own_collector(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hub_core.accounts import Accounts, CheckRun

    async def check_all(self: Accounts, **options: object) -> CheckRun:
        return CheckRun()

    monkeypatch.setattr(Accounts, "check_all", check_all)
    linked_one(Path(os.environ["HUB_HOME"]))
    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    result = CliRunner().invoke(main, ["check", "--all"], prog_name="host-app")
    assert result.exit_code == 0, result.output
    assert (gc.get_threshold(), gc.get_freeze_count()) == (before, frozen)
