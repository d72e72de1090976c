"""The ``hub`` process while it holds secrets: no core dumps, and what it says before a request.

Real processes: ``hub`` started from a shell whose core-dump limit is raised (as ``ulimit -c
unlimited`` would), its limits read from ``/proc/<pid>/limits`` while the fake provider holds
its request, so the key is in the process's memory at that moment.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

HUB = Path(sys.executable).parent / "hub"

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc/<pid>/limits"
)


def _allow_core_dumps() -> None:
    # What `ulimit -c unlimited` does in the shell the person started hub from.
    _soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    if os.geteuid() == 0:
        hard = resource.RLIM_INFINITY
    resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))


@pytest.fixture
def dumps_allowed() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    if hard == 0 and os.geteuid() != 0:
        pytest.skip("core dumps cannot be allowed here: the hard limit is 0")


def core_limits(pid: int) -> tuple[str, str]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max core file size"):
            soft, hard = line.split()[4:6]
            return soft, hard
    raise AssertionError("no core file size limit listed")


def start(hub, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(HUB), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        env=hub.environ(env),
        preexec_fn=_allow_core_dumps,
    )


def limits_while_held(hub, elastic, process: subprocess.Popen[str]) -> tuple[str, str]:
    """The process's core-dump limits, read while its request is held by the fake."""
    seen = len(elastic.requests)
    deadline = time.monotonic() + 20
    try:
        while len(elastic.requests) == seen:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the request never arrived"
            time.sleep(0.02)
        return core_limits(process.pid)
    finally:
        elastic.release.set()
        done = hub.finish(process)
        elastic.release.clear()
        assert done.returncode == 0, done.stdout + done.stderr


def test_the_shell_really_allows_core_dumps(hub, dumps_allowed) -> None:
    # Without this, the tests below could pass for want of a limit to lower.
    shell = subprocess.run(
        ["sh", "-c", "ulimit -c"], preexec_fn=_allow_core_dumps, capture_output=True, text=True
    )
    assert shell.stdout.strip() != "0"


def test_link_check_and_relink_run_without_core_dumps(hub, elastic, keys, dumps_allowed) -> None:
    env = {"HUB_FIELD_API_KEY": keys.elastic}
    elastic.held = {keys.elastic}

    assert limits_while_held(hub, elastic, start(hub, "link", "elastic", env=env)) == ("0", "0")
    (account,) = hub.json("accounts", "--json")
    assert limits_while_held(hub, elastic, start(hub, "check")) == ("0", "0")
    relink = start(hub, "relink", account["id"], env=env)
    assert limits_while_held(hub, elastic, relink) == ("0", "0")


REPORT_LIMITS = """
import resource, sys
from hub_core.cli import main
try:
    main(sys.argv[1:], prog_name="hub")  # as the console script names it
except SystemExit as exit:
    assert not exit.code, exit.code
print("core limits", *resource.getrlimit(resource.RLIMIT_CORE))
"""


def limits_in_process(hub, *args: str, program: bool = True) -> tuple[str, str]:
    """The core limits after ``hub *args`` ran in a Python that reports them (as *program*)."""
    code = REPORT_LIMITS if program else REPORT_LIMITS.replace(', prog_name="hub"', "")
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=hub.environ(),
        preexec_fn=_allow_core_dumps,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    soft, hard = done.stdout.splitlines()[-1].split()[2:]
    return soft, hard


def test_every_command_that_opens_the_store_runs_without_core_dumps(
    hub, elastic, keys, dumps_allowed
) -> None:
    linked = hub.run("link", "elastic", "--json", env={"HUB_FIELD_API_KEY": keys.elastic})
    assert linked.returncode == 0, linked.stderr
    account = linked.stdout.split('"id": "')[1].split('"')[0]
    # Too quick to catch from outside: the command runs in a Python that reports its limits.
    for args in (["accounts"], ["accounts", "show", account], ["unlink", account, "--yes"]):
        assert limits_in_process(hub, *args) == ("0", "0"), args


def test_a_host_running_a_command_in_its_process_keeps_its_hard_limit(hub, dumps_allowed) -> None:
    # The soft limit stops dumps; the hard one is the host's and could not be raised back.
    soft, hard = limits_in_process(hub, "accounts", program=False)
    assert soft == "0"
    assert hard != "0"


# --- "Checking the key with ..." --------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        {"HUB_FIELD_API_KEY": "not a key"},  # refused by the plugin before any request
        {"HUB_FIELD_API_KEY": "x" * 9000},  # refused by the core (too long)
    ],
)
def test_checking_is_not_said_when_no_request_leaves(hub, qlik, keys, values) -> None:
    done = hub.run("link", "qlik", "--set", "tenant=acme", "--set", "region=eu", env=values)
    assert done.returncode == 2, done.stderr
    assert "Checking the key" not in done.stderr
    assert qlik.requests == []


def test_checking_is_said_when_the_request_leaves(hub, qlik, keys) -> None:
    done = hub.run(
        "link", "qlik", "--set", f"tenant={keys.qlik_host}", env={"HUB_FIELD_API_KEY": keys.qlik}
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("Checking the key with Qlik Cloud...") == 1


def test_relink_says_checking_only_when_the_request_leaves(hub, qlik, keys) -> None:
    linked = hub.run(
        "link",
        "qlik",
        "--set",
        f"tenant={keys.qlik_host}",
        "--json",
        env={"HUB_FIELD_API_KEY": keys.qlik},
    )
    assert linked.returncode == 0, linked.stderr
    account = json.loads(linked.stdout)["id"]
    requests = len(qlik.requests)
    refused = hub.run("relink", account, env={"HUB_FIELD_API_KEY": "not a key"})
    assert refused.returncode == 2, refused.stderr
    assert "Checking the key" not in refused.stderr
    assert len(qlik.requests) == requests
    done = hub.run("relink", account, env={"HUB_FIELD_API_KEY": keys.qlik})
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("Checking the key with Qlik Cloud...") == 1
