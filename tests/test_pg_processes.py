"""Real ``hub worker`` and ``hub check --all`` processes sharing one PostgreSQL (issue 20).

Each test starts real ``hub`` processes on one schema of a real PostgreSQL
(``HUB_DATABASE_URL``) against the fake Elastic server on 127.0.0.1, and breaks something:
a kill -9, a SIGTERM, a server restart or crash, a stalled or reset link between one worker
and the database, one key's 429, a key rotation killed half-way. Each account's key is counted
at the fake server; each recorded verdict is counted by a trigger the test adds to the database
(an UPDATE of ``checked_at``), so "checked once" and "recorded once" are observed, not assumed.
Every wait is bounded; nothing leaves the loopback interface.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import json
import re
import secrets
import signal
import time
import urllib.parse
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from faults import FaultProxy

from hub_core.keyring import KeyRing
from hub_core.testing.postgres import PostgresCluster, find_bindir, unavailable

pytestmark = pytest.mark.slow

TIMEOUT = 90
# How long a granted request may take to reach the fake server on a loaded machine.
LATENCY = 1.0

# The verdicts recorded, one row per UPDATE of checked_at that committed (a rolled-back
# transaction takes its rows with it), and the key changes of a rotation likewise.
_COUNTERS = """
CREATE TABLE verdict_log (account_id text NOT NULL, at timestamptz DEFAULT clock_timestamp());
CREATE FUNCTION log_verdict() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO verdict_log (account_id) VALUES (NEW.id); RETURN NEW; END $$;
CREATE TRIGGER count_verdicts AFTER UPDATE OF checked_at ON accounts FOR EACH ROW
WHEN (NEW.checked_at IS DISTINCT FROM OLD.checked_at) EXECUTE FUNCTION log_verdict();
CREATE TABLE rotation_log (account_id text NOT NULL, key_id text);
CREATE FUNCTION log_rotation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO rotation_log VALUES (NEW.id, NEW.key_id); RETURN NEW; END $$;
CREATE TRIGGER count_rotations AFTER UPDATE OF key_id ON accounts FOR EACH ROW
WHEN (NEW.key_id IS DISTINCT FROM OLD.key_id) EXECUTE FUNCTION log_rotation();
"""


def elastic_key(n: int) -> str:
    return "essu_" + base64.b64encode(f"pg-key-{n:05d}:secret-part-1234567890".encode()).decode()


def sql(url: str, query: str, params: Any = ()) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        cursor = conn.execute(query, params)
        return cursor.fetchall() if cursor.description else []


def populate(hub: Any, elastic: Any, keys: Any, n: int) -> list[str]:
    """*n* Elastic accounts on the hub's PostgreSQL, each with a key the fake server knows: one
    linked by the real command, the others copies of its row with their own identity and key,
    encrypted with the hub's key ring (one statement: ``save`` one by one takes seconds)."""
    linked = hub.run("link", "elastic", "--json", env={"HUB_FIELD_API_KEY": keys.elastic})
    assert linked.returncode == 0, linked.stderr
    template = json.loads(linked.stdout)["id"]
    url = hub.env["HUB_DATABASE_URL"]
    ring = KeyRing.coerce(hub.env["HUB_SECRET_KEYS"], source="the test")
    rows = []
    for i in range(1, n):
        key = elastic_key(i)
        elastic.keys[key] = {"id": f"pg{i}", "name": f"PG {i}"}
        key_id, token = ring.encrypt(json.dumps({"api_key": key}).encode())
        rows.append((secrets.token_hex(8), f"org:pg{i}", f"PG {i}", token, key_id, template))
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        with conn.transaction(), conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO accounts (id, provider_id, identity, label, verdict, config,"
                " secrets, key_id, linked_at, checked_at, expires_at, expiring_at, details)"
                " SELECT %s, provider_id, %s, %s, verdict, config, %s, %s, linked_at,"
                " checked_at, expires_at, expiring_at, details FROM accounts WHERE id = %s",
                rows,
            )
        conn.execute(_COUNTERS)
        ids = [row[0] for row in conn.execute("SELECT id FROM accounts")]
    assert len(ids) == n
    return ids


def checks_per_key(elastic: Any, since: int = 0) -> collections.Counter[str]:
    return collections.Counter(
        r.headers.get("authorization", "").removeprefix("ApiKey ") for r in elastic.requests[since:]
    )


def verdicts(url: str) -> collections.Counter[str]:
    return collections.Counter(row[0] for row in sql(url, "SELECT account_id FROM verdict_log"))


def held_leases(url: str) -> int:
    count: int = sql(url, "SELECT count(*) FROM account_schedule WHERE lease_token IS NOT NULL")[0][
        0
    ]
    return count


def wait_for(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def checked(output: str) -> int:
    """Accounts a run or a worker says it checked (a worker prints one summary per batch)."""
    return sum(int(n) for n in re.findall(r"Checked (\d+) account", output))


def once_each(url: str, ids: list[str]) -> None:
    recorded = verdicts(url)
    twice = {account: n for account, n in recorded.items() if n > 1}
    assert not twice, f"recorded more than once: {twice}"
    assert sorted(recorded) == sorted(ids), f"{len(set(ids) - set(recorded))} never recorded"


@contextlib.contextmanager
def workers_mid_statement(url: str, waiting: int) -> Iterator[Any]:
    """Hold the accounts table until *waiting* sessions wait for it: a fault then comes while
    their statements are in flight, not between them (where the pool's check would hide it)."""
    import psycopg

    conn = psycopg.connect(url)
    try:
        conn.execute("LOCK TABLE accounts IN EXCLUSIVE MODE")  # reads go on; writes wait
        wait_for(
            lambda: (
                sql(
                    url,
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND datname = current_database()",
                )[0][0]
                >= waiting
            ),
            f"{waiting} sessions waiting for the accounts",
        )
        yield conn
    finally:
        with contextlib.suppress(psycopg.Error):
            conn.rollback()
        conn.close()


def stop_worker(hub: Any, worker: Any) -> Any:
    worker.send_signal(signal.SIGTERM)
    done = hub.finish(worker, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "Stopped." in done.stderr
    return done


@pytest.fixture
def workers() -> Iterator[list[Any]]:
    """Processes a test started: any still running at its end is killed."""
    started: list[Any] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.communicate()


def start(hub: Any, workers: list[Any], *args: str, env: Any = None) -> Any:
    process = hub.popen(*args, env=env)
    workers.append(process)
    return process


# --- 1. many processes, each due account checked once ----------------------------------------


def test_three_processes_on_one_database_check_each_account_once(pg_hub, elastic, keys, workers):
    n = 2000
    url = pg_hub.env["HUB_DATABASE_URL"]
    ids = populate(pg_hub, elastic, keys, n)
    before = len(elastic.requests)
    runs = [start(pg_hub, workers, "check", "--all", "--concurrency", "10") for _ in range(2)]
    worker = start(pg_hub, workers, "worker", "--every", "1h", "--batch", "100")
    done = [pg_hub.finish(run, timeout=TIMEOUT) for run in runs]
    for run in done:
        assert run.returncode == 0, run.stderr
    wait_for(lambda: len(verdicts(url)) == n, "every account's verdict")
    stopped = stop_worker(pg_hub, worker)
    # Each key reached the server once between the three (the template also at link time).
    per_key = checks_per_key(elastic, before)
    assert len(elastic.requests) - before == n
    assert set(per_key.values()) == {1}
    once_each(url, ids)
    counts = [checked(run.stdout) for run in done] + [checked(stopped.stderr)]
    assert sum(counts) == n
    assert min(counts) > 0, counts  # all three took part
    assert held_leases(url) == 0


# --- 2. kill -9 of a worker holding leases --------------------------------------------------


def test_a_killed_workers_accounts_are_taken_over_when_its_lease_ends(
    pg_hub, elastic, keys, workers
):
    url = pg_hub.env["HUB_DATABASE_URL"]
    ids = populate(pg_hub, elastic, keys, 400)
    elastic.held = set(elastic.keys)  # every check waits at the server until released
    before = len(elastic.requests)
    options = ("worker", "--every", "1h", "--concurrency", "4", "--batch", "100", "--lease", "6s")
    doomed = start(pg_hub, workers, *options)
    wait_for(lambda: len(elastic.requests) - before >= 4, "the first worker's checks in flight")
    (lease_until,) = sql(
        url, "SELECT DISTINCT lease_until FROM account_schedule WHERE lease_token IS NOT NULL"
    )[0]
    its_accounts = {
        row[0]
        for row in sql(
            url,
            "SELECT a.id FROM accounts AS a JOIN account_schedule AS s ON s.seq = a.seq"
            " WHERE s.lease_token IS NOT NULL",
        )
    }
    assert len(its_accounts) == 100
    survivor = start(pg_hub, workers, *options)
    # 4 checks each, all held: both workers hold a lease of 100 with checks in flight.
    wait_for(lambda: len(elastic.requests) - before >= 8, "both workers' checks in flight")
    assert held_leases(url) == 200
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=TIMEOUT)
    elastic.release.set()
    wait_for(lambda: len(verdicts(url)) == 400, "every account's verdict")
    # The killed one's accounts were checked again once its lease had ended (by the
    # database's clock), not before: the survivor waited for it.
    taken_over = sql(
        url,
        "SELECT account_id, at FROM verdict_log WHERE account_id = ANY(%s)",
        (list(its_accounts),),
    )
    assert len(taken_over) == 100
    assert min(at for _, at in taken_over) >= lease_until
    done = stop_worker(pg_hub, survivor)
    assert checked(done.stderr) == 400
    once_each(url, ids)
    assert held_leases(url) == 0


# --- 3. PostgreSQL restarted and crashed mid-run ----------------------------------------------


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[PostgresCluster]:
    """A cluster of this module's own, to restart and crash without disturbing other tests;
    its commits are synchronous, as a deployment's are (a crash loses none it reported)."""
    bindir = find_bindir()
    if bindir is None:
        unavailable("no PostgreSQL binaries (initdb, pg_ctl): install Debian's postgresql")
    cluster = PostgresCluster(bindir, settings={"synchronous_commit": "on"})
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.mark.parametrize("fault", ["restart", "crash"])
def test_workers_reconnect_after_postgresql_restarts_or_crashes(
    fault, own_postgres, hub_on_postgres, elastic, keys, workers
):
    n = 600
    url = own_postgres.create_schema()
    hub = hub_on_postgres(url)
    ids = populate(hub, elastic, keys, n)
    options = ("worker", "--every", "1h", "--concurrency", "10", "--batch", "100", "--lease", "4s")
    running = [start(hub, workers, *options) for _ in range(2)]
    wait_for(lambda: len(verdicts(url)) >= n // 4, "a quarter of the verdicts")
    with workers_mid_statement(url, waiting=2):
        if fault == "restart":
            own_postgres.restart()
        else:
            own_postgres.crash()
    if fault == "crash":
        time.sleep(1.0)  # down for a while: connections are refused meanwhile
        own_postgres.start_again()
    wait_for(lambda: len(verdicts(url)) == n, "every account's verdict after the fault")
    for process in running:
        assert process.poll() is None, hub.finish(process).stderr  # still working
    outputs = [stop_worker(hub, process) for process in running]
    once_each(url, ids)
    assert held_leases(url) == 0
    # The keys in flight when the connections dropped may have reached the server twice.
    assert checks_per_key(elastic).keys() >= {elastic_key(i) for i in range(1, n)}
    assert all("Traceback" not in done.stderr for done in outputs)


# --- 4. a stalled and a reset link between one worker and PostgreSQL ------------------------


@pytest.fixture
def link_to_postgres(postgres_server: PostgresCluster) -> Iterator[FaultProxy]:
    """A `FaultProxy` in front of the session's PostgreSQL."""
    with FaultProxy(("127.0.0.1", postgres_server.port)) as proxy:
        yield proxy


def through(proxy: FaultProxy, url: str) -> dict[str, str]:
    """The environment of a hub that reaches the database of *url* through *proxy*."""
    port = urllib.parse.urlsplit(url).port
    return {"HUB_DATABASE_URL": url.replace(f"@127.0.0.1:{port}/", f"@127.0.0.1:{proxy.port}/")}


def test_a_worker_stalled_past_its_lease_is_taken_over_and_its_late_write_changes_nothing(
    pg_hub, elastic, keys, workers, link_to_postgres
):
    url = pg_hub.env["HUB_DATABASE_URL"]
    ids = populate(pg_hub, elastic, keys, 200)
    elastic.held = set(elastic.keys)
    before = len(elastic.requests)
    stalled = start(
        pg_hub, workers, "worker", "--every", "1h", "--concurrency", "4", "--batch", "200",
        "--lease", "3s", env=through(link_to_postgres, url),
    )  # fmt: skip
    wait_for(lambda: len(elastic.requests) - before >= 4, "the stalled worker's checks in flight")
    assert held_leases(url) == 200  # every account, leased through the proxy
    link_to_postgres.stall()  # the link goes silent: the worker's next statement waits
    taker = start(pg_hub, workers, "worker", "--every", "1h", "--batch", "100")
    elastic.release.set()  # its checks finish; their verdicts wait on the silent link
    # Its lease ends by the database's clock; the other worker takes and records every account.
    wait_for(lambda: len(verdicts(url)) == 200, "the other worker's verdicts")
    assert stalled.poll() is None
    link_to_postgres.resume()  # the late write arrives: under a lease that is not its own
    late = stop_worker(pg_hub, stalled)
    assert checked(late.stderr) == 0  # none of its verdicts was recorded
    done = stop_worker(pg_hub, taker)
    assert checked(done.stderr) == 200
    once_each(url, ids)
    assert held_leases(url) == 0


def test_a_worker_whose_connections_are_reset_reconnects_and_loses_nothing(
    pg_hub, elastic, keys, workers, link_to_postgres
):
    n = 300
    url = pg_hub.env["HUB_DATABASE_URL"]
    ids = populate(pg_hub, elastic, keys, n)
    worker = start(
        pg_hub, workers, "worker", "--every", "1h", "--concurrency", "4", "--batch", "20",
        "--lease", "3s", env=through(link_to_postgres, url),
    )  # fmt: skip
    resets = 0
    for quarter in (1, 2, 3):  # reset every open connection three times during the run
        wait_for(lambda q=quarter: len(verdicts(url)) >= q * n // 4, "the worker's verdicts")
        with workers_mid_statement(url, waiting=1):
            resets += link_to_postgres.reset()
    assert resets >= 3
    wait_for(lambda: len(verdicts(url)) == n, "every account's verdict after the resets")
    assert worker.poll() is None  # it reconnected instead of exiting
    assert link_to_postgres.accepted > 3
    done = stop_worker(pg_hub, worker)
    assert "Traceback" not in done.stderr
    once_each(url, ids)
    assert held_leases(url) == 0


# --- 5. SIGTERM ------------------------------------------------------------------------------


def test_sigterm_releases_a_workers_unstarted_leases_for_another_at_once(
    pg_hub, elastic, keys, workers
):
    url = pg_hub.env["HUB_DATABASE_URL"]
    ids = populate(pg_hub, elastic, keys, 200)
    elastic.held = set(elastic.keys)
    before = len(elastic.requests)
    # Leases of 5 minutes: the other worker can only have them at once if they are released.
    options = ("worker", "--every", "1h", "--concurrency", "4", "--batch", "100", "--lease", "5m")
    stopping = start(pg_hub, workers, *options)
    wait_for(lambda: len(elastic.requests) - before >= 4, "the first worker's checks in flight")
    other = start(pg_hub, workers, *options)
    wait_for(lambda: len(elastic.requests) - before >= 8, "the other worker's checks in flight")
    assert held_leases(url) == 200
    stopped = stop_worker(pg_hub, stopping)
    assert checked(stopped.stderr) == 0
    assert held_leases(url) == 100  # only the other worker's own batch
    elastic.release.set()
    # Its own batch, then the released one, well within the 5-minute lease.
    wait_for(lambda: len(verdicts(url)) == 200, "every account's verdict", timeout=60)
    done = stop_worker(pg_hub, other)
    assert checked(done.stderr) == 200
    once_each(url, ids)
    assert held_leases(url) == 0


# --- 6. one key's 429 --------------------------------------------------------------------------


def test_a_429_for_one_key_reschedules_only_that_account_and_keeps_its_verdict(
    pg_hub, elastic, keys
):
    url = pg_hub.env["HUB_DATABASE_URL"]
    populate(pg_hub, elastic, keys, 20)
    limited = elastic_key(7)
    (account,) = sql(url, "SELECT id FROM accounts WHERE identity = 'org:pg7'")[0]
    name = elastic.keys.pop(limited)
    first = pg_hub.run("check", "--all")
    assert first.returncode == 1, first.stderr  # that key rejected: invalid
    row = "SELECT verdict, checked_at, last_error FROM accounts WHERE id = %s"
    invalid = sql(url, row, (account,))[0]
    assert invalid[0] == "invalid"
    # The key is valid again, but its user is rate limited for two minutes.
    elastic.keys[limited] = name
    elastic.limited[limited] = 120
    before, asked = len(elastic.requests), datetime.now(UTC)
    second = pg_hub.run("check", "--all")
    assert second.returncode == 1, second.stderr  # still invalid: a 429 says nothing of it
    assert checks_per_key(elastic, before)[limited] == 1
    assert sql(url, row, (account,))[0] == invalid  # verdict, time and error unchanged
    (retry_at,) = sql(
        url,
        "SELECT s.retry_at FROM accounts AS a JOIN account_schedule AS s ON s.seq = a.seq"
        " WHERE a.id = %s",
        (account,),
    )[0]
    assert asked + timedelta(seconds=119) <= retry_at <= datetime.now(UTC) + timedelta(seconds=151)
    recorded = verdicts(url)
    assert recorded[account] == 1  # the first run's only
    assert set(recorded.values()) == {1, 2}
    assert list(recorded.values()).count(2) == 19
    # A third run checks every other account and leaves it alone until its Retry-After.
    before = len(elastic.requests)
    third = pg_hub.run("check", "--all")
    assert third.returncode == 0, third.stderr  # the invalid one is not checked: all active
    assert checked(third.stdout) == 19
    per_key = checks_per_key(elastic, before)
    assert limited not in per_key
    assert len(per_key) == 19
    assert set(per_key.values()) == {1}
    assert verdicts(url)[account] == 1


# --- 7. key rotation, killed and shared ------------------------------------------------------


def test_a_rotation_killed_half_way_then_shared_by_two_processes_ends_on_the_new_key(
    pg_hub, elastic, keys, workers
):
    from cryptography.fernet import Fernet

    n = 600
    url = pg_hub.env["HUB_DATABASE_URL"]
    old, new = pg_hub.env["HUB_SECRET_KEYS"], Fernet.generate_key().decode()
    ids = populate(pg_hub, elastic, keys, n)
    # Each re-encrypted row costs 3 ms more, so a rotation lasts long enough to be killed in.
    sql(
        url,
        "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$"
        " BEGIN PERFORM pg_sleep(0.003); RETURN NEW; END $$;"
        " CREATE TRIGGER slow_rotation BEFORE UPDATE OF key_id ON accounts FOR EACH ROW"
        " EXECUTE FUNCTION slow()",
    )
    rotated = "SELECT count(*) FROM rotation_log"
    # 1. Every host learns the new key, still encrypting with the old one.
    assert pg_hub.run("keys", "status", env={"HUB_SECRET_KEYS": f"{old},{new}"}).returncode == 0
    # 2. The new key first, then a rotation, killed half-way.
    new_first = {"HUB_SECRET_KEYS": f"{new},{old}"}
    killed = start(pg_hub, workers, "keys", "rotate", "--batch-size", "50", env=new_first)
    wait_for(lambda: sql(url, rotated)[0][0] >= 150, "a few batches re-encrypted")
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=TIMEOUT)
    part = sql(url, rotated)[0][0]
    assert 150 <= part < n
    status = json.loads(pg_hub.run("keys", "status", "--json", env=new_first).stdout)
    assert status["to_rotate"] == n - part
    # 3. Two rotations at once finish it, sharing the rows.
    both = [
        start(pg_hub, workers, "keys", "rotate", "--batch-size", "20", env=new_first)
        for _ in range(2)
    ]
    done = [pg_hub.finish(run, timeout=TIMEOUT) for run in both]
    shares = []
    for run in done:
        assert run.returncode == 0, run.stderr
        shares.append(int(re.search(r"Re-encrypted (\d+) account", run.stdout).group(1)))
    assert sum(shares) == n - part
    assert min(shares) > 0, shares  # both took part
    # Each account re-encrypted once in all, and none left on the old key.
    per_account = collections.Counter(
        row[0] for row in sql(url, "SELECT account_id FROM rotation_log")
    )
    assert sorted(per_account) == sorted(ids)
    assert set(per_account.values()) == {1}
    # 4. The old key dropped: every account decrypts with the new one alone.
    new_only = {"HUB_SECRET_KEYS": new}
    final = pg_hub.run("keys", "status", env=new_only)
    assert final.returncode == 0, final.stderr
    assert "Every account is on the key that encrypts." in final.stdout
    before = len(elastic.requests)
    checked_all = pg_hub.run("check", "--all", env=new_only, timeout=TIMEOUT)
    assert checked_all.returncode == 0, checked_all.stderr
    assert checked(checked_all.stdout) == n
    assert set(checks_per_key(elastic, before).values()) == {1}
    assert len(checks_per_key(elastic, before)) == n


# --- 8. budgets and pauses shared by every checker (`hub limits`) ------------------------------


def test_a_shared_budget_holds_two_checkers_together_to_its_rate(pg_hub, elastic, keys, workers):
    n, rate, burst = 100, 20, 5
    url = pg_hub.env["HUB_DATABASE_URL"]
    ids = populate(pg_hub, elastic, keys, n)
    assert pg_hub.run("limits", "set", "elastic", str(rate), "--burst", str(burst)).returncode == 0
    # The bucket starts full: let it be, then two checkers draw from it together.
    before = len(elastic.arrivals)
    runs = [start(pg_hub, workers, "check", "--all", "--concurrency", "10") for _ in range(2)]
    done = [pg_hub.finish(run, timeout=TIMEOUT) for run in runs]
    for run in done:
        assert run.returncode == 0, run.stderr
    once_each(url, ids)
    arrivals = elastic.arrivals[before:]
    assert len(arrivals) == n
    # Counted at the server. The bucket grants at lease time and a request leaves a little after
    # its grant (up to LATENCY on a loaded machine), so every arrival but the first burst's was
    # granted at most `rate` a second since the first grant: the run lasts at least
    # (n - burst) / rate less that latency. Two checkers that each drew on a bucket of their
    # own would finish in about half of it.
    elapsed = arrivals[-1] - arrivals[0]
    assert elapsed >= (n - burst) / rate - LATENCY, (n, elapsed)
    assert any("Waiting for elastic" in run.stderr for run in done)


def test_a_provider_limiting_every_key_is_paused_for_every_checker(pg_hub, elastic, keys):
    url = pg_hub.env["HUB_DATABASE_URL"]
    populate(pg_hub, elastic, keys, 30)
    row = "SELECT id, verdict, checked_at FROM accounts ORDER BY id"
    before_rows = sql(url, row)
    for key in list(elastic.keys):
        elastic.limited[key] = 300  # a limit on the whole API: every key gets a 429
    first = pg_hub.run("check", "--all")
    assert first.returncode == 0, first.stderr
    assert sql(url, row) == before_rows  # no verdict changed, nothing marked checked
    shown = json.loads(pg_hub.run("limits", "--json").stdout)
    assert [(p["provider"], p["paused_until"] is not None) for p in shown] == [("elastic", True)]
    # Accounts that fall due meanwhile wait for the pause, in every checker: not one request.
    sql(url, "UPDATE account_schedule SET retry_at = NULL")
    asked = len(elastic.requests)
    second = pg_hub.run("check", "--all")
    assert second.returncode == 0, second.stderr
    assert len(elastic.requests) == asked
    assert "Not checked now: the accounts of elastic, paused after rate limits" in second.stdout
    # Ended by hand (the limit was lifted): the next run checks them all.
    elastic.limited.clear()
    assert pg_hub.run("limits", "resume", "elastic").returncode == 0
    third = pg_hub.run("check", "--all")
    assert third.returncode == 0, third.stderr
    assert checked(third.stdout) == 30
