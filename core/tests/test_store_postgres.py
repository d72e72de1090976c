"""What only the PostgreSQL store does: its migrations, its keys, its URL (SCALE.md §1, §3).

The promises every store keeps are in the contract suite (``core/tests/contract/``), which
runs against PostgreSQL too; these are the PostgreSQL store's own.
"""

from __future__ import annotations

import re
import threading
import time
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.fernet import Fernet

from hub_core.errors import ConfigurationError, InvalidCredentials, RateLimited, StoreError
from hub_core.model import Account, Credentials, Verified
from hub_core.store_types import KeyReplaced, LeaseLost

psycopg = pytest.importorskip("psycopg")

from core.tests.pg_schemas import MIN_READER, edit, saved_at  # noqa: E402
from hub_core.store_postgres import (  # noqa: E402
    SCHEMA_VERSION,
    PostgresStore,
    _describe,
    redact_url,
)

pytestmark = pytest.mark.usefixtures("hermetic_store_env")


def save(store: PostgresStore, identity: str = "org:1", provider: str = "acme") -> str:
    creds = Credentials({"api_key": "sekrit-value", "region": "us"}, secret=["api_key"])
    return store.save(provider, Verified(identity=identity, label="One"), creds).id


def meta(url: str) -> tuple[int, int]:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT schema_version, min_reader_version FROM hub_meta").fetchone()
    return row[0], row[1]


def test_hub_never_makes_a_key_for_postgresql(postgres_url: str) -> None:
    with pytest.raises(StoreError, match="never makes a key") as caught:
        PostgresStore(postgres_url)
    assert "hub keys new" in str(caught.value)
    with psycopg.connect(postgres_url) as conn:  # refused before anything was created
        assert conn.execute("SELECT to_regclass('hub_meta')").fetchone() == (None,)


def test_an_empty_key_variable_is_refused(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HUB_SECRET_KEYS", " ")
    with pytest.raises(StoreError, match=r"HUB_SECRET_KEYS is set but empty.*hub keys new"):
        PostgresStore(postgres_url)


def test_the_key_comes_from_the_environment_and_a_wrong_one_is_refused(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = Fernet.generate_key().decode()
    monkeypatch.setenv("HUB_SECRET_KEY", key)
    with PostgresStore(postgres_url) as store:
        account_id = save(store)
    monkeypatch.setenv("HUB_SECRET_KEY", Fernet.generate_key().decode())
    with pytest.raises(StoreError, match="none of the keys"):
        PostgresStore(postgres_url)
    # A new key first, the old one second: rotation, across hosts.
    monkeypatch.delenv("HUB_SECRET_KEY")
    new = Fernet.generate_key().decode()
    monkeypatch.setenv("HUB_SECRET_KEYS", f"{new},{key}")
    with PostgresStore(postgres_url) as store:
        assert store.key_status().to_rotate == 1
        assert store.rotate_keys().rotated == 1
        assert store.credentials(account_id)["api_key"] == "sekrit-value"
    monkeypatch.setenv("HUB_SECRET_KEYS", new)  # the old key dropped once nothing is on it
    with PostgresStore(postgres_url) as store:
        assert store.key_status().to_rotate == 0


def test_a_key_dropped_too_early_is_refused_naming_its_accounts(
    postgres_url: str,
) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    with PostgresStore(postgres_url, secret_key=old) as store:
        save(store)
    with PostgresStore(postgres_url, secret_key=[new, old]):
        pass
    with pytest.raises(StoreError, match=r"1 account on key id .* dropped a key too early"):
        PostgresStore(postgres_url, secret_key=new)


def test_hosts_starting_together_migrate_once(postgres_url: str) -> None:
    key = Fernet.generate_key().decode()
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        barrier.wait()
        try:
            PostgresStore(postgres_url, secret_key=key).close()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert meta(postgres_url) == (SCHEMA_VERSION, MIN_READER)


def plans(url: str, *statements: str) -> list[str]:
    """The plan of each statement, on a table too small for any plan but an index's."""
    with psycopg.connect(url) as conn:
        conn.execute("SET enable_seqscan = off")
        return ["\n".join(line for (line,) in conn.execute(f"EXPLAIN {sql}")) for sql in statements]


@pytest.mark.parametrize("version", range(1, SCHEMA_VERSION))
def test_each_schema_that_shipped_upgrades_with_every_account_and_lease(
    postgres_url: str, version: int
) -> None:
    key = Fernet.generate_key().decode()
    ids = saved_at(postgres_url, key, version, [f"org:{n}" for n in range(4)])
    soon = datetime.now(UTC) + timedelta(hours=1)
    # What a hub of that schema left: two accounts leased, one due in an hour.
    edit(
        postgres_url,
        "UPDATE accounts SET lease_token = 'old-lease', lease_until = now() + interval '1 hour'"
        " WHERE id = ANY(%s)",
        ids[:2],
    )
    edit(postgres_url, "UPDATE accounts SET next_check_at = %s WHERE id = %s", soon, ids[2])
    with PostgresStore(postgres_url, secret_key=key) as store:
        assert meta(postgres_url) == (SCHEMA_VERSION, MIN_READER)
        assert sorted(account.id for account in store.accounts()) == sorted(ids)
        assert all(store.credentials(i)["api_key"] == "sekrit-value" for i in ids)
        # The lease still holds its accounts; the one due later waits.
        assert [held.account.id for held in store.lease(10).accounts] == [ids[3]]
        assert store.release("old-lease") == 2
        assert sorted(held.account.id for held in store.lease(10).accounts) == sorted(ids[:2])
        # An hour on, every lease above has expired and the one due then is due.
        later = store.lease(10, now=soon + timedelta(seconds=1))
        assert sorted(held.account.id for held in later.accounts) == sorted(ids)
        # And it is the schema a new database gets: a new account is leased as any other.
        new = save(store, "org:new")
        assert [held.account.id for held in store.lease(10).accounts] == [new]


def test_the_leases_read_the_schedule_through_its_indexes(postgres_url: str) -> None:
    key = Fernet.generate_key().decode()
    with PostgresStore(postgres_url, secret_key=key) as store:
        for n in range(3):
            save(store, f"org:{n}")
    run, worker, next_due, held, release = plans(
        postgres_url,
        "SELECT s.seq FROM account_schedule AS s JOIN accounts AS a ON a.seq = s.seq"
        " WHERE coalesce(s.checked_at, '-infinity') < now()"
        " AND (coalesce(s.checked_at, '-infinity'), s.seq) > ('-infinity', 0)"
        " ORDER BY coalesce(s.checked_at, '-infinity'), s.seq LIMIT 10"
        " FOR UPDATE OF s SKIP LOCKED",
        "SELECT seq FROM account_schedule WHERE coalesce(next_check_at, '-infinity') <= now()"
        " ORDER BY coalesce(next_check_at, '-infinity'), seq LIMIT 10",
        "SELECT next_check_at FROM account_schedule"
        " ORDER BY coalesce(next_check_at, '-infinity') LIMIT 1",
        "SELECT min(lease_until) FROM account_schedule WHERE lease_until >= now()"
        " AND lease_token IS NOT NULL AND lease_token <> ALL('{}'::text[])",
        "UPDATE account_schedule SET lease_token = NULL WHERE lease_token = 'a-token'",
    )
    assert "account_schedule_checked" in run
    assert re.search(r"Index Cond: .*ROW\(", run), run  # a range of the index, no filter
    assert "account_schedule_due" in worker
    assert "account_schedule_due" in next_due
    assert "Sort" not in run + worker, (run, worker)
    assert "account_schedule_leased" in held
    assert "account_schedule_leased" in release


def test_a_verdict_rewrites_no_index_entry_of_its_account(
    pg_store: PostgresStore, postgres_url: str
) -> None:
    # The lease writes only the schedule's row; the verdict changes no indexed column of the
    # account's, and its page has room (fillfactor 50): a HOT update, no index entry written.
    ids = [save(pg_store, f"org:{n}") for n in range(20)]
    lease = pg_store.lease(50)
    before = _account_updates(postgres_url)
    outcomes = pg_store.record_many(
        [(i, Verified(identity=f"org:{n}", label="One")) for n, i in enumerate(ids)],
        lease=lease.token,
    )
    assert all(isinstance(outcome, Account) for outcome in outcomes)
    updates, hot = _account_updates(postgres_url, more_than=before[0] + 19)
    assert (updates - before[0], hot - before[1]) == (20, 20)


@pytest.mark.parametrize("change", ["relink", "unlink"])
def test_a_relink_or_unlink_beside_a_batch_of_verdicts_waits_for_it(
    pg_store: PostgresStore, postgres_url: str, change: str
) -> None:
    # A batch of verdicts locks an account's schedule, then its row. A relink or an unlink
    # touching both locks them in that order too: it waits for the batch, and neither is
    # aborted as a deadlock (as when it locked the account's row first).
    account_id = save(pg_store)
    creds = Credentials({"api_key": "sekrit-value", "region": "us"}, secret=["api_key"])
    done: list[object] = []

    def write() -> None:
        try:
            with pg_store.connect_again() as other:
                if change == "relink":
                    verified = Verified(identity="org:1", label="Relinked")
                    done.append(other.save("acme", verified, creds, account_id=account_id))
                else:
                    done.append(other.delete(account_id))
        except BaseException as exc:  # pragma: no cover - reported below
            done.append(exc)

    with psycopg.connect(postgres_url) as batch:  # a batch of verdicts, as it locks
        seq = batch.execute("SELECT seq FROM accounts WHERE id = %s", (account_id,)).fetchone()
        batch.execute("SELECT 1 FROM account_schedule WHERE seq = %s FOR UPDATE", seq)
        writer = threading.Thread(target=write)
        writer.start()
        time.sleep(0.5)  # the writer is waiting for the schedule's row
        assert done == []
        batch.execute("SET LOCAL deadlock_timeout = '100ms'")
        batch.execute("UPDATE accounts SET verdict = verdict WHERE seq = %s", seq)
    writer.join(timeout=10)
    assert len(done) == 1, done
    assert not isinstance(done[0], BaseException), done
    if change == "relink":
        assert pg_store.get(account_id).label == "Relinked"
    else:
        assert [a.id for a in pg_store.accounts()] == []


def _account_updates(url: str, more_than: int = -1) -> tuple[int, int]:
    """The updates of ``accounts`` and how many were HOT, once more than *more_than* are
    counted (a backend reports its counts within a second of going idle)."""
    deadline = time.monotonic() + 10
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            row = conn.execute(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables"
                " WHERE relid = 'accounts'::regclass"
            ).fetchone()
            if row[0] > more_than or time.monotonic() > deadline:
                return int(row[0]), int(row[1])
            conn.execute("SELECT pg_stat_clear_snapshot()")
            time.sleep(0.1)


def test_a_newer_schema_is_used_while_it_allows_and_refused_after(postgres_url: str) -> None:
    key = Fernet.generate_key().decode()
    with PostgresStore(postgres_url, secret_key=key) as store:
        account_id = save(store)
    with psycopg.connect(postgres_url) as conn:
        conn.execute("UPDATE hub_meta SET schema_version = %s", (SCHEMA_VERSION + 1,))
    # A rolling deploy: the newer hub migrated, this one still reads and writes.
    with PostgresStore(postgres_url, secret_key=key) as store:
        assert store.get(account_id).label == "One"
    with psycopg.connect(postgres_url) as conn:
        conn.execute("UPDATE hub_meta SET min_reader_version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match=r"made by a newer hub.*upgrade hub-core"):
        PostgresStore(postgres_url, secret_key=key)
    assert meta(postgres_url) == (SCHEMA_VERSION + 1, SCHEMA_VERSION + 1)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://hub:s3cret-pw@db.invalid:5432/hub",
        "postgresql://hub@db.invalid/hub?password=s3cret-pw&sslmode=require",
        "postgresql://hub:s3cret-pw?#[@db.invalid/hub",  # libpq reads up to the '@'
        "postgresql://hub@db.invalid?password=s3cret-pw",  # no path before the query
    ],
)
def test_the_password_is_never_shown(url: str) -> None:
    shown = redact_url(url)
    assert "s3cret-pw" not in shown
    assert "db.invalid" in shown
    with pytest.raises(StoreError) as caught:
        PostgresStore(url.replace("db.invalid", "127.0.0.1:1"), secret_key=Fernet.generate_key())
    assert "s3cret-pw" not in str(caught.value)
    assert "cannot open the account database postgresql://hub" in str(caught.value)


def test_repr_and_errors_hold_neither_password_nor_values(postgres_url: str) -> None:
    key = Fernet.generate_key().decode()
    password = postgres_url.split(":")[2].split("@")[0]
    with PostgresStore(postgres_url, secret_key=key) as store:
        assert password not in repr(store)
        assert password not in str(store.path)
        save(store)
    with pytest.raises(StoreError, match="is closed"):
        store.accounts()
    # A value PostgreSQL refuses, quoted in its own message: never in ours.
    with psycopg.connect(postgres_url) as conn, pytest.raises(psycopg.DataError) as caught:
        conn.execute("SELECT %s::int", ("sekrit-value",))
    assert "sekrit-value" in str(caught.value)
    described = _describe(caught.value, postgres_url, redact_url(postgres_url))
    assert "sekrit-value" not in described
    assert "SQLSTATE 22P02" in described


def test_a_store_shares_its_pool_with_connect_again(postgres_url: str) -> None:
    key = Fernet.generate_key().decode()
    store = PostgresStore(postgres_url, secret_key=key)
    other = store.connect_again()
    store.close()
    assert other.accounts() == []  # the pool lives while one of them does
    other.close()
    other.close()


def _kill_the_next_update(url: str, times: int = 1) -> None:
    """The next *times* UPDATEs of an account's schedule (a lease's, a verdict's first) end
    their own session mid-transaction, as a server restart or a reset link ends a worker's (a
    sequence: its count survives the rollback the termination causes)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f"CREATE SEQUENCE kills; CREATE FUNCTION kill_session() RETURNS trigger"
            f" LANGUAGE plpgsql AS $$ BEGIN IF nextval('kills') <= {times} THEN"
            " PERFORM pg_terminate_backend(pg_backend_pid()); END IF; RETURN NEW; END $$;"
            " CREATE TRIGGER kill_session BEFORE UPDATE ON account_schedule FOR EACH ROW"
            " EXECUTE FUNCTION kill_session()"
        )


def test_verdicts_under_a_lease_are_written_again_on_a_new_connection(postgres_url: str) -> None:
    key = Fernet.generate_key().decode()
    with PostgresStore(postgres_url, secret_key=key) as store:
        account_id = save(store)
        lease = store.lease(10)
        _kill_the_next_update(postgres_url)
        verified = Verified(identity="org:1", label="Again")
        (outcome,) = store.record_many([(account_id, verified)], lease=lease.token)
        assert not isinstance(outcome, StoreError)
        assert outcome.label == "Again"
        assert store.get(account_id).label == "Again"
        # Once written, its lease is over: a repeat (a reply lost after the commit) is fenced.
        (again,) = store.record_many([(account_id, verified)], lease=lease.token)
        assert isinstance(again, StoreError)
        assert "lease" in str(again)


def test_a_write_without_a_lease_is_not_repeated_when_its_connection_drops(
    postgres_url: str,
) -> None:
    key = Fernet.generate_key().decode()
    with PostgresStore(postgres_url, secret_key=key) as store:
        account_id = save(store)
        _kill_the_next_update(postgres_url)
        # Committed or not cannot be told: it fails, saying so, rather than writing twice.
        with pytest.raises(StoreError, match="failed"):
            store.record(account_id, Verified(identity="org:1", label="Once"))
        assert store.get(account_id).label == "One"
        # The pool replaced the broken connection: the next call works.
        assert store.record(account_id, Verified(identity="org:1", label="Now")).label == "Now"


def test_a_nul_the_database_refuses_in_a_batch_costs_only_its_own_verdict(
    postgres_url: str,
) -> None:
    # The batch's arrays go to PostgreSQL in binary, where the server (not psycopg) refuses a
    # NUL in text: the batch's statement fails inside its savepoint and each verdict is then
    # written alone, so only that one is recorded as not storable.
    key = Fernet.generate_key().decode()
    with PostgresStore(postgres_url, secret_key=key) as store:
        ids = [save(store, f"org:{n}") for n in range(3)]
        lease = store.lease(3)
        outcomes = store.record_many(
            [
                (ids[0], Verified(identity="org:0", label="Zero")),
                (ids[1], Verified(identity="org:1", label="O\x00ne")),
                (ids[2], Verified(identity="org:2", label="Two")),
            ],
            lease=lease.token,
        )
        assert [getattr(outcome, "label", None) for outcome in outcomes] == ["Zero", "One", "Two"]
        assert [store.get(i) for i in ids] == outcomes
        assert "could not be stored" in (store.get(ids[1]).last_error or "")
        assert [store.get(i).last_error for i in (ids[0], ids[2])] == [None, None]
        assert store.release(lease.token) == 0  # every lease ended with its verdict


def _statements(monkeypatch: pytest.MonkeyPatch, call: Callable[[], Any]) -> tuple[Any, list[str]]:
    """What *call* returns, and the statements it ran on any connection."""
    ran: list[str] = []
    execute = psycopg.Connection.execute

    def traced(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        ran.append(str(query))
        return execute(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Connection, "execute", traced)
    try:
        return call(), ran
    finally:
        monkeypatch.setattr(psycopg.Connection, "execute", execute)


def test_verdicts_under_this_stores_lease_lock_and_read_no_row(
    pg_store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The rows as leased, each with its version: one statement writes the verdicts, with no
    # SELECT ... FOR UPDATE before it nor the rows read back after it (it returns their ids),
    # and gives the accounts reading them would.
    ids = [save(pg_store, f"org:{n}") for n in range(3)]
    lease = pg_store.lease(10)
    results = [
        Verified(identity="org:0", label="Zero"),
        InvalidCredentials("the key was revoked"),
        Verified(identity="org:2", label="Two"),
    ]
    outcomes, ran = _statements(
        monkeypatch,
        lambda: pg_store.record_many(list(zip(ids, results, strict=True)), lease=lease.token),
    )
    assert not [sql for sql in ran if "FOR UPDATE" in sql]
    assert [sql.split("RETURNING")[-1].strip() for sql in ran if "UPDATE accounts" in sql] == [
        "a.id"
    ]
    assert not [sql for sql in ran if "FROM accounts" in sql or "seq AS row_number" in sql]
    assert [getattr(outcome, "label", None) for outcome in outcomes] == ["Zero", "One", "Two"]
    assert outcomes == [pg_store.get(account_id) for account_id in ids]
    assert pg_store.release(lease.token) == 0  # every lease ended with its verdict


def test_a_row_not_quite_as_hub_writes_it_is_read_back_with_its_verdict(
    pg_store: PostgresStore, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A hand edit hub still reads (spaces around the config's JSON): the lease does not hold
    # that row, so the batch's UPDATE gives the rows back and that account is read from its.
    ids = [save(pg_store, f"org:{n}") for n in range(3)]
    edit(postgres_url, "UPDATE accounts SET config = ' ' || config || ' ' WHERE id = %s", ids[1])
    lease = pg_store.lease(10)
    results = [Verified(identity=f"org:{n}", label=f"Org {n}") for n in range(3)]
    outcomes, ran = _statements(
        monkeypatch,
        lambda: pg_store.record_many(list(zip(ids, results, strict=True)), lease=lease.token),
    )
    assert [sql.split("RETURNING")[-1].strip() for sql in ran if "UPDATE accounts" in sql] == [
        "a.seq AS row_number, a.*"
    ]
    assert outcomes == [pg_store.get(account_id) for account_id in ids]
    assert [getattr(outcome, "label", None) for outcome in outcomes] == ["Org 0", "Org 1", "Org 2"]


def test_a_relink_since_the_lease_is_seen_by_the_verdict_of_the_old_key(
    pg_store: PostgresStore, postgres_url: str
) -> None:
    # The row as leased holds the old key: written on it, the verdict about that key would
    # land on the new one. Its version changed with the relink, so it is read again.
    ids = [save(pg_store, f"org:{n}") for n in range(2)]
    lease = pg_store.lease(10)
    versions = {item.account.id: item.version for item in lease.accounts if item.version}
    other = pg_store.connect_again()  # the web Hub's, say: it holds none of this lease's rows
    creds = Credentials({"api_key": "the-new-key", "region": "us"}, secret=["api_key"])
    other.save("acme", Verified(identity="org:0", label="Relinked"), creds)
    other.close()
    outcomes = pg_store.record_many(
        [(i, InvalidCredentials("revoked")) for i in ids], lease=lease.token, versions=versions
    )
    assert isinstance(outcomes[0], KeyReplaced)
    assert isinstance(outcomes[1], Account)
    relinked = pg_store.get(ids[0])
    assert (relinked.label, relinked.status.value) == ("Relinked", "active")
    assert pg_store.credentials(ids[0])["api_key"] == "the-new-key"


def test_a_verdict_the_row_as_leased_would_refuse_is_decided_on_the_row_as_it_is(
    pg_store: PostgresStore, postgres_url: str
) -> None:
    # Edited by hand since the lease: the key now reaches the identity the row says.
    ids = [save(pg_store, f"org:{n}") for n in range(2)]
    lease = pg_store.lease(10)
    edit(postgres_url, "UPDATE accounts SET identity = 'org:9' WHERE id = %s", ids[0])
    outcomes = pg_store.record_many(
        [
            (ids[0], Verified(identity="org:9", label="Nine")),
            (ids[1], Verified(identity="org:1", label="One")),
        ],
        lease=lease.token,
    )
    assert [getattr(outcome, "label", None) for outcome in outcomes] == ["Nine", "One"]
    assert outcomes == [pg_store.get(account_id) for account_id in ids]


def test_a_verdict_under_an_expired_lease_this_store_leased_again_is_lost(
    pg_store: PostgresStore,
) -> None:
    ids = [save(pg_store, f"org:{n}") for n in range(2)]
    start = datetime.now(UTC)
    first = pg_store.lease(10, now=start, lease_for=timedelta(minutes=1))
    second = pg_store.lease(10, now=start + timedelta(minutes=2))
    assert {item.account.id for item in second.accounts} == set(ids)
    late = pg_store.record_many(
        [(i, Verified(identity="org:0", label="Late")) for i in ids], lease=first.token
    )
    assert all(isinstance(outcome, LeaseLost) for outcome in late)
    assert [pg_store.get(i).label for i in ids] == ["One", "One"]
    fresh = pg_store.record_many(
        [(i, Verified(identity=f"org:{n}", label="Now")) for n, i in enumerate(ids)],
        lease=second.token,
    )
    assert [getattr(outcome, "label", None) for outcome in fresh] == ["Now", "Now"]


def test_a_database_away_for_longer_than_the_wait_is_a_clear_error(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hub_core import store_postgres

    key = Fernet.generate_key().decode()
    with PostgresStore(postgres_url, secret_key=key) as store:
        save(store)
        _kill_the_next_update(postgres_url, times=1000)
        monkeypatch.setattr(store_postgres, "RECONNECT_FOR", 0.5)
        with pytest.raises(StoreError, match="failed: terminating connection") as caught:
            store.lease(10)  # a lease is tried again, for RECONNECT_FOR only
        assert store._url not in str(caught.value)  # the password masked
        with psycopg.connect(postgres_url) as conn:
            assert conn.execute("SELECT nextval('kills')").fetchone()[0] > 2  # tried again


def test_a_lease_whose_session_the_idle_timeout_ended_is_tried_again(postgres_url: str) -> None:
    # docs/deploying.md sets idle_in_transaction_session_timeout for hub's role, so that a
    # worker stalled inside a transaction gives its row locks back: PostgreSQL then ends the
    # session (SQLSTATE 25P03), and the call is tried again on a new one, as after a restart.
    parts = urllib.parse.urlsplit(postgres_url)
    options = urllib.parse.parse_qs(parts.query)["options"][0]
    options += " -cidle_in_transaction_session_timeout=300"
    url = parts._replace(query="options=" + urllib.parse.quote(options)).geturl()
    with PostgresStore(url, secret_key=Fernet.generate_key().decode()) as store:
        account_id = save(store)
        read_clock = store._db_now
        stalls = [1.0]

        def stalled(conn: Any, now: Any) -> Any:
            at = read_clock(conn, now)
            if stalls:
                time.sleep(stalls.pop())  # inside the lease's transaction, past the timeout
            return at

        store._db_now = stalled  # type: ignore[method-assign]
        lease = store.lease(10)
        assert not stalls
        assert [held.account.id for held in lease.accounts] == [account_id]


def waiting_on_locks(url: str, n: int) -> None:
    deadline = time.monotonic() + 10
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            (count,) = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND datname = current_database()"
            ).fetchone()
            if count >= n:
                return
            time.sleep(0.02)
    raise AssertionError(f"fewer than {n} sessions waiting on a lock")


def test_a_lease_beside_verdicts_with_429s_of_several_providers_does_not_deadlock(
    postgres_url: str,
) -> None:
    # Both lock the providers' rows in one order (a lease all of them, verdicts those of their
    # 429s): in other orders, PostgreSQL rolls one of them back (40P01) and the worker stops.
    key = Fernet.generate_key().decode()
    with PostgresStore(postgres_url, secret_key=key) as store:
        # Rows in this physical order: y, x, w (each provider's 429 record, or a budget).
        for provider in ("y", "x", "w"):
            store.set_limit(provider, 1000, burst=1000)
        x_id, w_id, y_id = (save(store, f"org:{p}", provider=p) for p in "xwy")
        lease = store.lease(10)
        assert len(lease.accounts) == 3

        errors: list[BaseException] = []

        def run(what: Any) -> None:
            try:
                what()
            except BaseException as exc:
                errors.append(exc)

        with psycopg.connect(postgres_url) as other:
            # Another worker's transaction noting a 429 of provider w, for a moment.
            other.execute("SELECT * FROM provider_limits WHERE provider_id = 'w' FOR UPDATE")
            limited = RateLimited("slow down", retry_after=5)
            verdicts = threading.Thread(
                target=run,
                args=(
                    lambda: store.record_many(
                        [(x_id, limited), (w_id, limited), (y_id, limited)], lease=lease.token
                    ),
                ),
            )
            verdicts.start()  # holds x, waits for w
            waiting_on_locks(postgres_url, 1)
            leasing = threading.Thread(target=run, args=(lambda: store.lease(10),))
            leasing.start()  # holds y, waits for x
            waiting_on_locks(postgres_url, 2)
            other.commit()
        verdicts.join(20)
        leasing.join(20)
    assert errors == [], [str(e) for e in errors]


@pytest.mark.parametrize("value", ["four", "-1", "2.5"])
def test_a_pool_size_that_is_no_whole_number_is_a_configuration_error(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("HUB_DATABASE_POOL_SIZE", value)
    with pytest.raises(ConfigurationError, match="HUB_DATABASE_POOL_SIZE") as refused:
        PostgresStore(postgres_url, secret_key=Fernet.generate_key().decode())
    assert refused.value.variable == "HUB_DATABASE_POOL_SIZE"
