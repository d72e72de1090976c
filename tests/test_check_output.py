"""What `hub check` tells an operator, from cron, a pipe and a terminal.

Real ``hub`` processes against the loopback fake providers of conftest.py, each bounded in
time.
"""

from __future__ import annotations

import base64
import json
import os
import re
import selectors
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from hub_core.model import Credentials, Verified
from hub_core.store import Store

TIMEOUT = 60


def elastic_key(n: int) -> str:
    return (
        "essu_" + base64.b64encode(f"review-key-{n:05d}:secret-part-1234567890".encode()).decode()
    )


def populate(hub: Any, elastic: Any, keys: Any, hub_home: Path, n: int) -> list[str]:
    """*n* Elastic accounts: one linked by the real command, the others saved into the store
    with keys the fake server knows (``elastic_key(1..n-1)``)."""
    linked = hub.run("link", "elastic", "--json", env={"HUB_FIELD_API_KEY": keys.elastic})
    assert linked.returncode == 0, linked.stderr
    template = json.loads(linked.stdout)
    store = Store(hub_home / "hub.db")
    try:
        for i in range(1, n):
            key = elastic_key(i)
            elastic.keys[key] = {"id": f"rev{i}", "name": f"Review {i}"}
            store.save(
                "elastic",
                Verified(identity=f"org:rev{i}", label=f"Review {i}"),
                Credentials({**template["config"], "api_key": key}, secret=["api_key"]),
            )
        return [account.id for account in store.accounts()]
    finally:
        store.close()


# --- hub check --json into a pipe that closes early ----------------------------------------


def test_check_json_into_a_pipe_closed_early_prints_no_traceback(hub, elastic, keys, hub_home):
    """``hub check --json | head -1``: no BrokenPipeError traceback from the JSON writer
    thread (as `hub accounts --json` prints none); the run ends."""
    populate(hub, elastic, keys, hub_home, 20)
    elastic.held = {elastic_key(19)}  # one verdict comes late, after the reader has gone
    threading.Timer(3.0, elastic.release.set).start()
    process = hub.popen("check", "--json", "--concurrency", "4")
    assert process.stdout is not None
    assert process.stderr is not None
    process.stdin.close()  # type: ignore[union-attr]
    started = time.monotonic()
    first = process.stdout.readline()  # "[": the first verdicts were written
    assert first.strip() == "["
    assert time.monotonic() - started < 3.0, "the first verdicts came only with the last"
    process.stdout.close()  # the reader goes away, as `head -1` does
    try:
        stderr = process.stderr.read()
        process.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("hub check did not end after its reader went away")
    assert "Traceback" not in stderr, stderr
    assert "BrokenPipeError" not in stderr, stderr


# --- the progress line at a terminal ---------------------------------------------------------


def test_budget_wait_message_at_a_terminal_starts_its_own_line(hub, elastic, keys, hub_home):
    """At a terminal, "Waiting for elastic: its check budget ..." starts a line of its own,
    not run together with the progress bar's ("Checking  [##---]  2/8Waiting for ...")."""
    import pexpect

    populate(hub, elastic, keys, hub_home, 8)
    budget = hub.run("limits", "set", "elastic", "20", "--burst", "2")
    assert budget.returncode == 0, budget.stderr
    child = hub.spawn("check", "--concurrency", "2")
    child.expect_exact("Waiting for elastic")
    child.expect(r"Checked 8 accounts")
    child.expect(pexpect.EOF)
    child.close()
    screen = child.logfile_read.getvalue()
    before = screen.split("Waiting for elastic", 1)[0]
    assert before.endswith(("\n", "\r\n")) or re.search(r"\r\x1b\[[0-9;]*K$|\r$", before), repr(
        before[-120:]
    )


# --- the progress line off a terminal --------------------------------------------------------


def test_check_from_cron_writes_no_progress_label_to_stderr(hub, elastic, keys, hub_home):
    """DESIGN.md §6: "progress bar on a terminal". Off one, nothing of it: a cron run of
    ``hub check >> hub.log`` where every key is fine writes nothing to standard error (cron
    mails any output)."""
    populate(hub, elastic, keys, hub_home, 2)
    done = hub.run("check")
    assert done.returncode == 0, done.stderr
    assert "Checked 2 accounts: 2 active." in done.stdout
    assert done.stderr == "", repr(done.stderr)


# --- rate limits: what the summary says ----------------------------------------------------


def test_check_all_summary_says_which_accounts_were_rate_limited_not_checked(
    hub, elastic, keys, hub_home
):
    """A 429 leaves the verdict as it was (documented), and the summary says so: that account
    is not counted as checked, and the rate limit is named (from cron, a run where a key was
    never checked must not read like a clean run)."""
    populate(hub, elastic, keys, hub_home, 3)
    limited = elastic_key(1)
    elastic.limited[limited] = 120
    done = hub.run("check", "--all")
    output = done.stdout + done.stderr
    # Only 2 accounts got a verdict this run; the third got a 429.
    assert "Checked 3 accounts" not in done.stdout, output
    assert re.search(r"rate.limit|429|limiting", output, re.I), output
    assert "Checked 2 accounts: 2 active." in done.stdout, output
    assert "Not checked now: 1 account of elastic, which asked hub to slow down" in output


def checked_count(hub_home: Path) -> int:
    with sqlite3.connect(hub_home / "hub.db") as conn:
        (n,) = conn.execute(
            "SELECT count(*) FROM accounts WHERE next_check_at IS NOT NULL"
        ).fetchone()
    return int(n)


def wait_for(condition: Any, what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def read_available(stream: Any, seconds: float) -> str:
    """What *stream* (a text pipe of a running process) prints within *seconds*, without
    waiting for it to end."""
    fd = stream.fileno()
    os.set_blocking(fd, False)
    selector = selectors.DefaultSelector()
    selector.register(fd, selectors.EVENT_READ)
    chunks: list[bytes] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if selector.select(timeout=left):
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                continue
            if not data:
                break
            chunks.append(data)
    selector.close()
    return b"".join(chunks).decode("utf-8", "replace")


# --- hub worker ----------------------------------------------------------------------------


def test_worker_reports_a_revoked_key_once_it_has_checked_everything_due(
    hub, elastic, keys, hub_home
):
    """With fewer due accounts than --batch (500), `hub worker` tells their verdicts (a key it
    found revoked) once its checks fall quiet, not only when it is stopped."""
    populate(hub, elastic, keys, hub_home, 3)
    elastic.keys.pop(elastic_key(1))  # revoked
    worker = hub.popen("worker", "--every", "1h")
    try:
        wait_for(lambda: checked_count(hub_home) == 3, "every account to be checked")
        assert worker.stderr is not None
        printed = read_available(worker.stderr, 3.0)  # idle now: nothing due for an hour
    finally:
        worker.send_signal(signal.SIGTERM)
        done = hub.finish(worker, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert "invalid" in printed, printed


def test_worker_says_when_a_providers_budget_holds_due_accounts_back(hub, elastic, keys, hub_home):
    """As `hub check` says "Waiting for elastic: ...", a worker whose due accounts wait for
    their provider's budget (or pause) says so, once, not nothing for as long as it waits."""
    populate(hub, elastic, keys, hub_home, 4)
    budget = hub.run("limits", "set", "elastic", "0.05", "--burst", "1")
    assert budget.returncode == 0, budget.stderr
    worker = hub.popen("worker", "--every", "1h")
    try:
        assert worker.stderr is not None
        printed = read_available(worker.stderr, 4.0)
    finally:
        worker.send_signal(signal.SIGTERM)
        done = hub.finish(worker, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert printed.count("Waiting for elastic: its check budget") == 1, printed
