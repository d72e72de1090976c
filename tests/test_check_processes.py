"""Real ``hub check`` and ``hub worker`` processes sharing one store through leases.

Each account's key is counted at the fake Elastic server; each recorded verdict is counted by
a trigger the test adds to the database (an UPDATE of ``checked_at``), so "checked once" and
"recorded once" are both observed, not assumed.
"""

from __future__ import annotations

import base64
import collections
import json
import re
import signal
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hub_core.model import Credentials, Verified
from hub_core.store import Store

N = 2000
TIMEOUT = 120


def elastic_key(n: int) -> str:
    return "essu_" + base64.b64encode(f"bulk-key-{n:05d}:secret-part-1234567890".encode()).decode()


def populate(hub: Any, elastic: Any, keys: Any, hub_home: Path, n: int) -> list[str]:
    """*n* Elastic accounts: one linked by the real command (its fields are the template),
    the others saved straight into the store, each with a key the fake server knows."""
    linked = hub.run("link", "elastic", "--json", env={"HUB_FIELD_API_KEY": keys.elastic})
    assert linked.returncode == 0, linked.stderr
    template = json.loads(linked.stdout)
    store = Store(hub_home / "hub.db")
    try:
        for i in range(1, n):
            key = elastic_key(i)
            elastic.keys[key] = {"id": f"bulk{i}", "name": f"Bulk {i}"}
            store.save(
                "elastic",
                Verified(identity=f"org:bulk{i}", label=f"Bulk {i}"),
                Credentials({**template["config"], "api_key": key}, secret=["api_key"]),
            )
        with sqlite3.connect(hub_home / "hub.db") as conn:
            conn.executescript(
                """
                CREATE TABLE verdict_log (account_id TEXT NOT NULL);
                CREATE TRIGGER count_verdicts AFTER UPDATE OF checked_at ON accounts
                WHEN new.checked_at IS NOT old.checked_at
                BEGIN INSERT INTO verdict_log VALUES (new.id); END;
                """
            )
        return [account.id for account in store.accounts()]
    finally:
        store.close()


def checks_per_key(elastic: Any) -> collections.Counter[str]:
    return collections.Counter(
        r.headers.get("authorization", "").removeprefix("ApiKey ") for r in elastic.requests
    )


def verdicts(hub_home: Path) -> collections.Counter[str]:
    with sqlite3.connect(hub_home / "hub.db") as conn:
        rows = conn.execute("SELECT account_id FROM verdict_log").fetchall()
    return collections.Counter(row[0] for row in rows)


def held_leases(hub_home: Path) -> int:
    with sqlite3.connect(hub_home / "hub.db") as conn:
        count: int = conn.execute(
            "SELECT count(*) FROM accounts WHERE lease_token IS NOT NULL"
        ).fetchone()[0]
    return count


def wait_for(condition: Any, what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def checked_count(stdout: str) -> int:
    found = re.search(r"Checked (\d+) account", stdout)
    assert found, stdout
    return int(found.group(1))


def test_two_checkers_started_together_check_each_account_once(hub, elastic, keys, hub_home):
    ids = populate(hub, elastic, keys, hub_home, N)
    before = len(elastic.requests)
    runs = [hub.popen("check", "--all", "--concurrency", "10") for _ in range(2)]
    done = [hub.finish(run, timeout=TIMEOUT) for run in runs]
    for run in done:
        assert run.returncode == 0, run.stderr
    per_key = checks_per_key(elastic)
    assert len(elastic.requests) - before == N
    # The linked template key was checked once at link time too; every other key once.
    assert per_key[keys.elastic] == 2
    assert {k: c for k, c in per_key.items() if k != keys.elastic} == {
        elastic_key(i): 1 for i in range(1, N)
    }
    recorded = verdicts(hub_home)
    assert sorted(recorded) == sorted(ids)
    assert set(recorded.values()) == {1}
    counts = [checked_count(run.stdout) for run in done]
    assert sum(counts) == N
    assert min(counts) > 0  # both took part
    assert held_leases(hub_home) == 0


def test_a_killed_checkers_accounts_are_taken_over_when_its_lease_ends(
    hub, elastic, keys, hub_home
):
    ids = populate(hub, elastic, keys, hub_home, 400)
    elastic.held = set(elastic.keys)  # every check waits at the server until released
    started, before = datetime.now(UTC), len(elastic.requests)
    options = ("check", "--all", "--concurrency", "4", "--lease", "3s")
    doomed, survivor = hub.popen(*options), hub.popen(*options)
    # 4 checks each, all held: both checkers hold a lease with checks in flight.
    wait_for(lambda: len(elastic.requests) - before >= 8, "both checkers' checks in flight")
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=TIMEOUT)
    elastic.release.set()
    done = hub.finish(survivor, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert checked_count(done.stdout) == 400
    # Every account's verdict recorded, none twice; the killed one's keys in flight may
    # have reached the server again.
    recorded = verdicts(hub_home)
    assert sorted(recorded) == sorted(ids)
    assert set(recorded.values()) == {1}
    store = Store(hub_home / "hub.db")
    try:
        assert all(a.checked_at and a.checked_at > started for a in store.accounts())
    finally:
        store.close()
    assert held_leases(hub_home) == 0


def test_a_worker_stopped_by_sigterm_releases_what_it_had_not_started(hub, elastic, keys, hub_home):
    populate(hub, elastic, keys, hub_home, 200)
    elastic.held = set(elastic.keys)
    before = len(elastic.requests)
    worker = hub.popen("worker", "--every", "1h", "--concurrency", "4", "--batch", "100")
    wait_for(lambda: len(elastic.requests) - before >= 4, "the worker's checks in flight")
    assert held_leases(hub_home) == 100
    worker.send_signal(signal.SIGTERM)
    elastic.release.set()
    done = hub.finish(worker, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "Stopped." in done.stderr
    # Nothing it held stays held: another worker can take every unchecked account at once.
    assert held_leases(hub_home) == 0
    recorded = verdicts(hub_home)
    assert len(recorded) < 100
    assert set(recorded.values()) <= {1}


def test_a_worker_checks_due_accounts_once_and_waits(hub, elastic, keys, hub_home):
    ids = populate(hub, elastic, keys, hub_home, 50)
    before = len(elastic.requests)
    worker = hub.popen("worker", "--every", "1h")
    wait_for(lambda: len(verdicts(hub_home)) == 50, "every account to be checked")
    time.sleep(1.0)  # due again only in an hour: nothing more is sent meanwhile
    assert len(elastic.requests) - before == 50
    worker.send_signal(signal.SIGTERM)
    done = hub.finish(worker, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "Checked 50 accounts: 50 active." in done.stderr
    assert sorted(verdicts(hub_home)) == sorted(ids)


@pytest.mark.parametrize(("option", "value"), [("--lease", "0s"), ("--lease", "2d")])
def test_a_bad_lease_is_a_usage_error(hub, option, value):
    done = hub.run("check", option, value)
    assert done.returncode == 2
    assert option in done.stderr
