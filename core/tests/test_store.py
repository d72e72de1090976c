"""The account store: schema, encryption at rest, keys, statuses and concurrent writers."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import platformdirs
import pytest
from cryptography.fernet import Fernet

from hub_core import store as store_module
from hub_core import store_schema
from hub_core.errors import (
    AccountNotFound,
    AmbiguousAccount,
    FieldError,
    HubError,
    InvalidCredentials,
    PermissionDenied,
    ProviderUnavailable,
    RateLimited,
    StoreError,
)
from hub_core.model import Account, Credentials, Status, Verified
from hub_core.store import LeaseLost, Store, default_path

CANARY = "hubcanary-7f3a9c-SECRET"
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

# The first schema exactly as it shipped. Databases of this shape exist on people's disks, so
# the store must keep opening them; `test_migration_1_is_never_edited` pins the store to it.
MIGRATION_1 = (
    """
    CREATE TABLE accounts (
        id          TEXT PRIMARY KEY,
        provider_id TEXT NOT NULL,
        identity    TEXT NOT NULL,
        label       TEXT NOT NULL,
        verdict     TEXT NOT NULL,
        config      TEXT NOT NULL DEFAULT '{}',
        secrets     BLOB NOT NULL,
        linked_at   TEXT NOT NULL,
        checked_at  TEXT,
        expires_at  TEXT,
        last_error  TEXT,
        UNIQUE (provider_id, identity)
    )
    """,
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)
KEY_CHECK_PLAINTEXT = b"hub key check v1"

pytestmark = pytest.mark.usefixtures("hermetic_store_env")


def creds(api_key: str = "key-one", region: str = "us") -> Credentials:
    return Credentials({"api_key": api_key, "region": region}, secret=["api_key"])


def verified(
    identity: str = "org:1",
    label: str = "One",
    expires_at: datetime | None = None,
    **details: object,
) -> Verified:
    return Verified(identity=identity, label=label, expires_at=expires_at, details=details)


def snapshot(directory: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every file in *directory* with its bytes, modification time and mode."""
    return {
        path.name: (path.read_bytes(), path.stat().st_mtime_ns, path.stat().st_mode)
        for path in sorted(directory.iterdir())
    }


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@contextlib.contextmanager
def raw(db: Path) -> Iterator[sqlite3.Connection]:
    """A plain SQLite connection to *db*, committed and closed on exit."""
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        with conn:
            yield conn
    finally:
        conn.close()


# --- where the database lives ----------------------------------------------------------------


def test_default_path_is_under_hub_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HUB_HOME", str(tmp_path / "elsewhere"))
    assert default_path() == tmp_path / "elsewhere" / "hub.db"


def test_default_path_without_hub_home_is_the_user_data_dir(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HUB_HOME")
    assert default_path() == platformdirs.user_data_path("hub") / "hub.db"


@pytest.mark.skipif(sys.platform != "linux", reason="XDG_DATA_HOME is how Linux moves it")
def test_store_without_path_opens_the_platform_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("HUB_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    with Store() as store:
        assert store.path == tmp_path / "xdg" / "hub" / "hub.db"
        assert store.path.exists()


def test_store_without_path_opens_hub_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HUB_HOME", str(tmp_path / "home"))
    with Store() as store:
        assert store.path == tmp_path / "home" / "hub.db"
        store.save("acme", verified(), creds())
    assert (tmp_path / "home" / "hub.db").is_file()
    assert (tmp_path / "home" / "hub.key").is_file()


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_new_database_key_file_and_directories_are_private(tmp_path: Path) -> None:
    db = tmp_path / "a" / "b" / "hub.db"
    with Store(db) as store:
        store.save("acme", verified(), creds())
        for name in ("hub.db", "hub.db-wal", "hub.db-shm", "hub.key"):
            assert mode(db.parent / name) == 0o600, name
    assert mode(tmp_path / "a") == 0o700
    assert mode(tmp_path / "a" / "b") == 0o700


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_an_existing_database_readable_by_others_is_made_private(db: Path, key: str) -> None:
    Store(db, secret_key=key).close()
    db.chmod(0o644)
    Store(db, secret_key=key).close()
    assert mode(db) == 0o600


def test_database_is_wal_with_busy_timeout_and_foreign_keys(store: Store) -> None:
    conn = store._db
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 10_000
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA user_version").fetchone()[0] == store_schema.SCHEMA_VERSION


def test_only_what_a_lost_write_costs_nothing_but_a_check_commits_without_waiting_for_the_disk(
    store: Store,
) -> None:
    # synchronous: 2 is FULL (each commit waits for the disk), 1 NORMAL (WAL: intact after a
    # power cut, its last commits perhaps lost). Each call's commit ran with the level left.
    def synchronous(call: Callable[[], object]) -> int:
        call()
        level: int = store._db.execute("PRAGMA synchronous").fetchone()[0]
        return level

    now = datetime.now(UTC)
    account = store.save("acme", verified("org:1"), creds())
    run = ""

    def join() -> None:
        nonlocal run
        run = store.join_run(now=now)[0]

    levels = {
        "lease": synchronous(lambda: store.lease(10, now=now)),
        "record": synchronous(lambda: store.record(account.id, verified("org:1"), now=now)),
        "link": synchronous(lambda: store.save("acme", verified("org:2"), creds("key-2"))),
        "join": synchronous(join),
        "keep": synchronous(lambda: store.keep_run(run, now=now)),
        "limit": synchronous(lambda: store.set_limit("acme", 5.0)),
        "release": synchronous(lambda: store.release("no-such-lease")),
        "unlink": synchronous(lambda: store.delete(account.id)),
        "end": synchronous(lambda: store.end_run(run)),
    }
    assert levels == {
        "lease": 1, "record": 1, "link": 2, "join": 1, "keep": 1, "limit": 2, "release": 1,
        "unlink": 2, "end": 1,
    }  # fmt: skip


# --- the secret key ----------------------------------------------------------------------------


def test_key_file_is_made_for_a_new_database_and_used_again(db: Path) -> None:
    with Store(db) as store:
        account = store.save("acme", verified(), creds(CANARY))
    key_file = db.parent / "hub.key"
    key = key_file.read_text().strip()
    Fernet(key)  # a real Fernet key
    with Store(db) as store:
        assert store.credentials(account.id)["api_key"] == CANARY
    with Store(db, secret_key=key) as store:
        assert store.credentials(account.id)["api_key"] == CANARY
    assert key_file.read_text().strip() == key


def test_key_from_the_environment_makes_no_key_file(
    db: Path, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HUB_SECRET_KEY", key)
    with Store(db) as store:
        account = store.save("acme", verified(), creds(CANARY))
    assert not (db.parent / "hub.key").exists()
    with Store(db, secret_key=key.encode()) as store:
        assert store.credentials(account.id)["api_key"] == CANARY


def test_an_existing_key_file_is_used_for_a_new_database(db: Path, key: str) -> None:
    db.parent.mkdir()
    (db.parent / "hub.key").write_text(key + "\n")
    (db.parent / "hub.key").chmod(0o600)  # readable by others is refused (test_store_hostile)
    with Store(db) as store:
        account = store.save("acme", verified(), creds(CANARY))
    with Store(db, secret_key=key) as store:
        assert store.credentials(account.id)["api_key"] == CANARY


def test_the_argument_wins_over_the_environment(
    db: Path, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    Store(db, secret_key=key).close()
    monkeypatch.setenv("HUB_SECRET_KEY", Fernet.generate_key().decode())
    Store(db, secret_key=key).close()
    with pytest.raises(StoreError, match="from HUB_SECRET_KEY does not match"):
        Store(db)


def test_the_environment_wins_over_the_key_file(
    db: Path, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    Store(db).close()
    monkeypatch.setenv("HUB_SECRET_KEY", key)
    with pytest.raises(StoreError, match="from HUB_SECRET_KEY does not match") as caught:
        Store(db)
    assert key not in str(caught.value)


def test_wrong_key_is_refused_and_nothing_changes(db: Path, key: str) -> None:
    with Store(db, secret_key=key) as store:
        store.save("acme", verified(), creds(CANARY))
    before = snapshot(db.parent)
    other = Fernet.generate_key().decode()
    with pytest.raises(StoreError) as caught:
        Store(db, secret_key=other)
    message = str(caught.value)
    assert "does not match this database" in message
    assert str(db) in message
    assert "HUB_SECRET_KEY" in message
    assert other not in message
    assert key not in message
    assert snapshot(db.parent) == before


def test_malformed_key_is_refused_and_nothing_changes(db: Path, key: str) -> None:
    Store(db, secret_key=key).close()
    before = snapshot(db.parent)
    with pytest.raises(StoreError, match="is not a valid hub key") as caught:
        Store(db, secret_key="not-a-key")
    # No key at all, so not "a key that does not match": that would send a person looking
    # for another key, or for a key file the database was never made with.
    assert "does not match" not in str(caught.value)
    assert snapshot(db.parent) == before


def test_malformed_key_for_a_new_database_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="is not a valid hub key"):
        Store(tmp_path / "data" / "hub.db", secret_key="not-a-key")
    assert not (tmp_path / "data").exists()


def test_missing_key_is_refused_and_nothing_is_created(db: Path) -> None:
    with Store(db) as store:
        store.save("acme", verified(), creds(CANARY))
    key_file = db.parent / "hub.key"
    key_file.rename(db.parent.parent / "saved.key")
    before = snapshot(db.parent)
    with pytest.raises(StoreError) as caught:
        Store(db)
    message = str(caught.value)
    assert "no secret key" in message
    assert str(key_file) in message
    assert "HUB_SECRET_KEY" in message
    assert snapshot(db.parent) == before
    assert not key_file.exists()


def test_a_key_file_holding_garbage_is_reported(db: Path) -> None:
    db.parent.mkdir()
    (db.parent / "hub.key").write_text("garbage\n")
    (db.parent / "hub.key").chmod(0o600)
    with pytest.raises(StoreError, match="does not hold a valid hub key"):
        Store(db)


def test_a_database_that_cannot_be_created_is_a_store_error(tmp_path: Path, key: str) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(StoreError, match="cannot create the account database"):
        Store(tmp_path / "file" / "hub.db", secret_key=key)


def test_a_file_that_is_not_a_database_is_refused_unchanged(db: Path, key: str) -> None:
    db.parent.mkdir()
    db.write_bytes(b"this is not a database\n" * 100)
    before = snapshot(db.parent)
    with pytest.raises(StoreError, match="failed"):
        Store(db, secret_key=key)
    assert snapshot(db.parent) == before


# --- schema versions ---------------------------------------------------------------------------


def test_migration_1_is_never_edited() -> None:
    def words(steps: tuple[str, ...]) -> list[str]:
        return [" ".join(sql.split()) for sql in steps]

    assert words(store_schema.MIGRATIONS[0]) == words(MIGRATION_1)


def build_v1(db: Path, key: str) -> None:
    """A database as the first schema wrote it, with one account and its encrypted key."""
    fernet = Fernet(key)
    db.parent.mkdir(exist_ok=True)
    conn = sqlite3.connect(db)
    for sql in MIGRATION_1:
        conn.execute(sql)
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('key_check', ?)",
        (fernet.encrypt(KEY_CHECK_PLAINTEXT).decode(),),
    )
    conn.execute(
        "INSERT INTO accounts (id, provider_id, identity, label, verdict, config, secrets, "
        "linked_at, checked_at, expires_at, last_error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            "0a1b2c3d",
            "acme",
            "org:1",
            "Old One",
            "denied",
            '{"region": "eu"}',
            fernet.encrypt(b'{"api_key": "old-key-123"}'),
            "2024-01-02T03:04:05.000000+00:00",
            "2024-01-03T00:00:00.000000+00:00",
            None,
            "no role",
        ),
    )
    conn.commit()
    conn.close()


def test_a_database_of_the_first_schema_is_migrated(db: Path, key: str) -> None:
    build_v1(db, key)
    with Store(db, secret_key=key) as store:
        account = store.get("0a1b2c3d")
        assert account.identity == "org:1"
        assert account.label == "Old One"
        assert account.status is Status.DENIED
        assert account.config == {"region": "eu"}
        assert account.details == {}
        assert account.linked_at == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
        assert account.last_error == "no role"
        assert store.credentials("0a1b2c3d") == {"region": "eu", "api_key": "old-key-123"}
        # The migrated row takes part in the new schema: details and upserts work.
        store.record("0a1b2c3d", ProviderUnavailable("down"), now=NOW)
        assert store.get("0a1b2c3d").details == {"previous_status": "denied"}
    with raw(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == store_schema.SCHEMA_VERSION
        indexes = {row["name"] for row in conn.execute("PRAGMA index_list(accounts)")}
        assert "accounts_provider" in indexes


def test_a_failing_migration_changes_nothing(db: Path, key: str) -> None:
    build_v1(db, key)
    with raw(db) as conn:  # a name migration 2 needs is taken, so its second step fails
        conn.execute("CREATE INDEX accounts_provider ON accounts (label)")
    with pytest.raises(StoreError, match="accounts_provider"):
        Store(db, secret_key=key)
    with raw(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        columns = {row["name"] for row in conn.execute("PRAGMA table_info(accounts)")}
    assert "details" not in columns  # the first step was rolled back with the second


def test_a_database_of_a_newer_hub_is_refused_unchanged(db: Path, key: str) -> None:
    Store(db, secret_key=key).close()
    with raw(db) as conn:
        conn.execute("PRAGMA user_version = 99")
    before = snapshot(db.parent)
    with pytest.raises(StoreError, match="made by a newer hub"):
        Store(db, secret_key=key)
    assert snapshot(db.parent) == before


# --- save ----------------------------------------------------------------------------------


def test_save_returns_an_active_account(store: Store) -> None:
    expires = NOW + timedelta(days=30)
    account = store.save("acme", verified(expires_at=expires, plan="pro"), creds(), now=NOW)
    assert len(account.id) == 16
    assert account.id == account.id.lower()
    int(account.id, 16)
    assert account.provider_id == "acme"
    assert account.identity == "org:1"
    assert account.label == "One"
    assert account.status is Status.ACTIVE
    assert account.config == {"region": "us"}
    assert account.linked_at == account.checked_at == NOW
    assert account.expires_at == expires
    assert account.last_error is None
    assert account.details == {"plan": "pro"}
    assert store.accounts(now=NOW) == [account]


def test_saving_the_same_identity_updates_one_account(store: Store) -> None:
    first = store.save("acme", verified(label="Old", plan="free"), creds("key-old"), now=NOW)
    store.record(first.id, InvalidCredentials("revoked"), now=NOW)
    later = NOW + timedelta(hours=1)
    second = store.save("acme", verified(label="New", plan="pro"), creds("key-new"), now=later)
    assert second.id == first.id
    assert second.linked_at == NOW
    assert second.checked_at == later
    assert second.label == "New"
    assert second.status is Status.ACTIVE
    assert second.last_error is None
    assert second.config == {"region": "us"}
    assert second.details == {"plan": "pro"}
    assert store.credentials(first.id) == {"region": "us", "api_key": "key-new"}
    assert len(store.accounts()) == 1


def test_the_same_identity_at_another_provider_is_another_account(store: Store) -> None:
    one = store.save("acme", verified(), creds())
    two = store.save("other", verified(), creds())
    assert one.id != two.id
    assert len(store.accounts()) == 2


def test_a_new_id_that_is_taken_is_drawn_again(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = iter(["abcd0001", "abcd0001", "abcd0001", "abcd0002"])
    monkeypatch.setattr(store_module, "_new_id", lambda: next(ids))
    first = store.save("acme", verified("org:1"), creds())
    second = store.save("acme", verified("org:2"), creds())
    assert (first.id, second.id) == ("abcd0001", "abcd0002")
    assert store.get("abcd0001").identity == "org:1"


def test_details_that_are_not_json_store_nothing(store: Store) -> None:
    with pytest.raises(StoreError, match="details"):
        store.save("acme", verified(when=object()), creds())
    assert store.accounts() == []


def test_times_are_stored_as_utc_text_and_read_back_aware(store: Store, db: Path) -> None:
    local = datetime(2025, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    account = store.save(
        "acme", verified(expires_at=local + timedelta(days=30)), creds(), now=local
    )
    assert account.linked_at == NOW
    assert account.linked_at is not None
    assert account.linked_at.tzinfo == UTC
    with raw(db) as conn:
        row = conn.execute("SELECT linked_at, expires_at FROM accounts").fetchone()
    assert row["linked_at"] == "2025-03-01T12:00:00.000000+00:00"
    assert row["expires_at"] == "2025-03-31T12:00:00.000000+00:00"


def test_naive_times_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        store.save("acme", verified(), creds(), now=datetime(2025, 1, 1))


# --- status --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expires_in", "status"),
    [
        (None, Status.ACTIVE),
        (-timedelta(days=1), Status.EXPIRED),
        (timedelta(0), Status.EXPIRED),
        (timedelta(seconds=1), Status.EXPIRING),
        (timedelta(days=6), Status.EXPIRING),
        (timedelta(days=7), Status.EXPIRING),
        (timedelta(days=7, seconds=1), Status.ACTIVE),
        (timedelta(days=8), Status.ACTIVE),
    ],
)
def test_status_is_derived_from_the_expiry(
    store: Store, expires_in: timedelta | None, status: Status
) -> None:
    expires = None if expires_in is None else NOW + expires_in
    account = store.save("acme", verified(expires_at=expires), creds(), now=NOW)
    assert account.status is status
    assert [a.status for a in store.accounts(now=NOW)] == [status]
    assert store.accounts(status=status, now=NOW) == [account]


def test_status_moves_with_time_without_any_write(store: Store) -> None:
    account = store.save("acme", verified(expires_at=NOW + timedelta(days=10)), creds(), now=NOW)
    statuses = [store.accounts(now=NOW + timedelta(days=days))[0].status for days in (0, 4, 10, 20)]
    assert statuses == [Status.ACTIVE, Status.EXPIRING, Status.EXPIRED, Status.EXPIRED]
    assert store.get(account.id).status is Status.EXPIRED  # real time is long past 2025-03-11


# --- record --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (InvalidCredentials("Acme rejected the key", field="api_key"), Status.INVALID),
        (FieldError("region", "no such tenant"), Status.INVALID),
        (PermissionDenied("the key lacks the admin role"), Status.DENIED),
        (ProviderUnavailable("Acme is down", reason="server"), Status.ERROR),
        (RateLimited("slow down", retry_after=3), Status.ERROR),
        (HubError("something else"), Status.ERROR),
    ],
)
def test_record_an_error_sets_the_verdict(store: Store, error: HubError, status: Status) -> None:
    account = store.save("acme", verified(plan="pro"), creds(), now=NOW)
    later = NOW + timedelta(hours=1)
    updated = store.record(account.id, error, now=later)
    assert updated.status is status
    assert updated.last_error == str(error)
    assert updated.checked_at == later
    assert updated.linked_at == NOW
    assert updated.label == "One"
    expected = {"plan": "pro"}
    if status is Status.ERROR:
        expected["previous_status"] = "active"
    assert updated.details == expected
    assert store.get(account.id) == updated


def test_invalid_credentials_after_the_expiry_is_expired(store: Store) -> None:
    account = store.save("acme", verified(expires_at=NOW + timedelta(days=1)), creds(), now=NOW)
    before = store.record(account.id, InvalidCredentials("no"), now=NOW + timedelta(hours=1))
    assert before.status is Status.INVALID
    after = store.record(account.id, InvalidCredentials("no"), now=NOW + timedelta(days=2))
    assert after.status is Status.EXPIRED
    with raw(store.path) as conn:
        assert conn.execute("SELECT verdict FROM accounts").fetchone()[0] == "expired"


def test_errors_in_a_row_keep_the_last_real_verdict(store: Store) -> None:
    account = store.save("acme", verified(plan="pro"), creds(), now=NOW)
    store.record(account.id, PermissionDenied("no role"), now=NOW)
    store.record(account.id, ProviderUnavailable("down"), now=NOW)
    again = store.record(account.id, RateLimited("slow down"), now=NOW)
    assert again.status is Status.ERROR
    assert again.details == {"plan": "pro", "previous_status": "denied"}
    assert again.last_error == "slow down"
    verdict = store.record(account.id, InvalidCredentials("revoked"), now=NOW)
    assert verdict.details == {"plan": "pro"}


def test_record_a_success_makes_the_account_active_again(store: Store) -> None:
    account = store.save("acme", verified(plan="free"), creds(), now=NOW)
    store.record(account.id, ProviderUnavailable("down"), now=NOW)
    expires = NOW + timedelta(days=90)
    later = NOW + timedelta(days=1)
    updated = store.record(
        account.id, verified(label="Renamed", expires_at=expires, plan="pro"), now=later
    )
    assert updated.status is Status.ACTIVE
    assert updated.label == "Renamed"
    assert updated.expires_at == expires
    assert updated.details == {"plan": "pro"}
    assert updated.last_error is None
    assert updated.checked_at == later
    assert updated.linked_at == NOW


def test_record_a_success_for_another_identity_changes_nothing(store: Store) -> None:
    account = store.save("acme", verified("org:1"), creds(), now=NOW)
    with pytest.raises(StoreError, match=r"'org:2'.*'org:1'") as caught:
        store.record(account.id, verified("org:2", label="Two"), now=NOW + timedelta(days=1))
    assert type(caught.value) is StoreError
    assert store.get(account.id) == account


def test_record_masks_the_stored_key_in_the_message(store: Store) -> None:
    account = store.save("acme", verified(), creds(CANARY), now=NOW)
    updated = store.record(account.id, InvalidCredentials(f"key {CANARY} was revoked"), now=NOW)
    assert updated.last_error == "key [redacted] was revoked"


def test_record_needs_an_existing_account(store: Store) -> None:
    with pytest.raises(AccountNotFound, match="no account 'deadbeef'"):
        store.record("deadbeef", ProviderUnavailable("down"))


def test_record_refuses_anything_but_a_result(store: Store) -> None:
    account = store.save("acme", verified(), creds())
    with pytest.raises(TypeError):
        store.record(account.id, ValueError("boom"))  # type: ignore[arg-type]


# --- get, accounts, credentials, delete ----------------------------------------------------


def test_a_prefix_is_found_on_the_ids_index(store: Store) -> None:
    plan = store._db.execute(
        f"EXPLAIN QUERY PLAN {store_module._PREFIX_SQL}",
        {"p": "ab", "end": "ab" + store_module._LAST_CHARACTER, "n": 2},
    ).fetchall()
    detail = " ".join(row[-1] for row in plan)
    assert "USING INDEX" in detail, detail
    assert "SCAN" not in detail, detail


def test_short_ids_of_older_databases_and_odd_prefixes_are_still_found(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = iter(["0a1b2c3d", "0a1b2c3e5f6a7b8c", "ffffffffffffffff"])
    monkeypatch.setattr(store_module, "_new_id", lambda: next(ids))
    short = store.save("acme", verified("org:1"), creds())
    long = store.save("acme", verified("org:2"), creds())
    top = store.save("acme", verified("org:3"), creds())
    assert store.get("0a1b2c3d") == short  # an exact id wins over the longer one it begins
    assert store.get("0a1b2c3e") == long
    assert store.get("ffff") == top
    with pytest.raises(AmbiguousAccount):
        store.get("0a1b2c3")


def test_get_by_id_or_unique_prefix(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = iter(["abc11111", "abc22222", "f0000000"])
    monkeypatch.setattr(store_module, "_new_id", lambda: next(ids))
    one = store.save("acme", verified("org:1"), creds())
    two = store.save("acme", verified("org:2"), creds())
    three = store.save("acme", verified("org:3"), creds())
    assert store.get("abc11111") == one
    assert store.get("abc2") == two
    assert store.get("ABC2") == two
    assert store.get("f") == three
    with pytest.raises(AmbiguousAccount) as caught:
        store.get("abc")
    assert caught.value.code == "ambiguous_account"
    assert caught.value.matches == ["abc11111", "abc22222"]
    assert "abc11111, abc22222" in str(caught.value)
    for missing in ("abd", "abc111112", "", "%", "_"):
        with pytest.raises(AccountNotFound) as not_found:
            store.get(missing)
        assert not_found.value.code == "account_not_found"


def test_error_classes() -> None:
    assert issubclass(AccountNotFound, StoreError)
    assert issubclass(AmbiguousAccount, StoreError)
    assert issubclass(StoreError, HubError)
    assert StoreError.code == "store_error"
    assert str(AccountNotFound("abc")) == "no account 'abc'"


def test_accounts_are_ordered_and_filtered(store: Store) -> None:
    soon = NOW + timedelta(days=2)
    b = store.save("acme", verified("org:b", "Bravo"), creds(), now=NOW)
    a = store.save("acme", verified("org:a", "Alpha", expires_at=soon), creds(), now=NOW)
    z = store.save("zeta", verified("org:z", "Aardvark"), creds(), now=NOW)
    store.record(b.id, PermissionDenied("no"), now=NOW)
    assert [x.id for x in store.accounts(now=NOW)] == [a.id, b.id, z.id]
    assert [x.id for x in store.accounts(provider="acme", now=NOW)] == [a.id, b.id]
    assert store.accounts(provider="nobody") == []
    assert [x.id for x in store.accounts(status="expiring", now=NOW)] == [a.id]
    assert [x.id for x in store.accounts(status=Status.DENIED, now=NOW)] == [b.id]
    assert [x.id for x in store.accounts(provider="zeta", status="active", now=NOW)] == [z.id]
    assert store.accounts(provider="zeta", status="denied", now=NOW) == []
    with pytest.raises(ValueError, match="unknown status 'bogus'"):
        store.accounts(status="bogus")


def test_credentials_are_the_config_and_the_decrypted_secrets(store: Store) -> None:
    account = store.save("acme", verified(), creds(CANARY, "eu"))
    assert account.config == {"region": "eu"}
    assert store.credentials(account.id) == {"region": "eu", "api_key": CANARY}
    with pytest.raises(AccountNotFound):
        store.credentials("00000000")


def test_secrets_under_another_key_are_a_clear_error(store: Store, db: Path) -> None:
    account = store.save("acme", verified(), creds(CANARY))
    with raw(db) as conn:
        conn.execute(
            "UPDATE accounts SET secrets = ?", (Fernet(Fernet.generate_key()).encrypt(b"{}"),)
        )
    with pytest.raises(StoreError, match="cannot be decrypted") as caught:
        store.credentials(account.id)
    assert caught.value.__cause__ is None
    # A check's outcome is still recorded, so the account shows what went wrong.
    assert store.record(account.id, InvalidCredentials("no"), now=NOW).status is Status.INVALID


def test_delete(store: Store) -> None:
    keep = store.save("acme", verified("org:1"), creds())
    gone = store.save("acme", verified("org:2"), creds())
    store.delete(gone.id)
    assert store.accounts() == [keep]
    with pytest.raises(AccountNotFound):
        store.get(gone.id)
    with pytest.raises(AccountNotFound):
        store.delete(gone.id)


def test_close_is_idempotent_and_a_closed_store_says_so(db: Path, key: str) -> None:
    store = Store(db, secret_key=key)
    with store as entered:
        assert entered is store
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.accounts()
    with pytest.raises(StoreError, match="closed"):
        store.save("acme", verified(), creds())


# --- no secret in clear ------------------------------------------------------------------------


def test_the_canary_key_is_never_in_clear(store: Store, db: Path, key: str) -> None:
    account = store.save("acme", verified(), creds(CANARY), now=NOW)
    store.save("acme", verified("org:2"), creds(CANARY + "-two"), now=NOW)
    store.record(account.id, InvalidCredentials(f"rejected {CANARY}"), now=NOW)
    assert store.credentials(account.id)["api_key"] == CANARY  # it is stored, just not in clear

    texts = [repr(store), str(store), repr(store.accounts()), repr(store.get(account.id))]
    failures: list[Callable[[], object]] = [
        lambda: store.record(account.id, verified("org:9")),
        lambda: store.get("nope"),
        lambda: store.delete("nope"),
        lambda: store.credentials("nope"),
        lambda: Store(db, secret_key=Fernet.generate_key()),
        lambda: Store(db, secret_key=CANARY),
    ]
    for failure in failures:
        with pytest.raises(StoreError) as caught:
            failure()
        texts += [str(caught.value), repr(caught.value)]
    for text in texts:
        assert CANARY not in text
        assert key not in text

    wal = db.with_name("hub.db-wal")
    assert wal.stat().st_size > 0  # the writes above are still in the WAL: search it too
    for path in (db, wal, db.with_name("hub.db-shm")):
        assert CANARY.encode() not in path.read_bytes(), path.name
    store.close()
    assert CANARY.encode() not in db.read_bytes()


# --- concurrent writers ----------------------------------------------------------------------

WORKER = """
import sys
from hub_core.model import Credentials, Verified
from hub_core.store import Store

path, tag, count, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
store = Store(path) if mode != "open-after-go" else None
print("ready", flush=True)
sys.stdin.readline()
store = store or Store(path)
for i in range(count):
    identity = "org:shared" if mode == "same" else f"org:{tag}-{i}"
    # One identity is linked at one place: the same region (another one would be refused).
    region = "us" if mode == "same" else tag
    values = Credentials({"api_key": f"key-{tag}-{i}", "region": region}, secret=["api_key"])
    account = store.save("acme", Verified(identity, f"{tag} {i}"), values)
    print(account.id, flush=True)
store.close()
"""


def start_workers(
    db: Path, mode: str, count: int, tags: tuple[str, ...], key: str | None
) -> list[subprocess.Popen[str]]:
    env = {k: v for k, v in os.environ.items() if k != "HUB_SECRET_KEY"}
    if key is not None:
        env["HUB_SECRET_KEY"] = key
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(db), tag, str(count), mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for tag in tags
    ]
    # Hold every worker at the line until all are ready, so their writes overlap.
    for worker in workers:
        assert worker.stdout is not None
        assert worker.stdout.readline() == "ready\n"
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    return workers


def finish(workers: list[subprocess.Popen[str]]) -> list[list[str]]:
    outputs = []
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        assert err == ""
        outputs.append(out.split())
    return outputs


@pytest.mark.slow
def test_two_processes_linking_one_identity_make_one_account(db: Path, key: str) -> None:
    Store(db, secret_key=key).close()
    outputs = finish(start_workers(db, "same", 50, ("a", "b"), key))
    assert [len(ids) for ids in outputs] == [50, 50]
    assert len({*outputs[0], *outputs[1]}) == 1
    with Store(db, secret_key=key) as store:
        (account,) = store.accounts()
        assert account.identity == "org:shared"
        assert store.credentials(account.id)["api_key"].startswith("key-")
    with raw(db) as conn:
        assert conn.execute("SELECT count(*) FROM accounts").fetchone()[0] == 1


@pytest.mark.slow
def test_two_processes_linking_different_identities_lose_none(db: Path, key: str) -> None:
    Store(db, secret_key=key).close()
    outputs = finish(start_workers(db, "distinct", 50, ("a", "b"), key))
    with Store(db, secret_key=key) as store:
        accounts = store.accounts()
        assert len(accounts) == 100
        assert {a.id for a in accounts} == {*outputs[0], *outputs[1]}
        for account in accounts:
            tag, i = account.label.split()
            assert store.credentials(account.id) == {"region": tag, "api_key": f"key-{tag}-{i}"}


@pytest.mark.slow
def test_processes_creating_one_database_at_once_agree_on_one_key(db: Path) -> None:
    tags = ("a", "b", "c", "d")
    finish(start_workers(db, "open-after-go", 10, tags, key=None))
    with Store(db) as store:  # the one key file that was made opens every account
        accounts = store.accounts()
        assert len(accounts) == 40
        for account in accounts:
            assert store.credentials(account.id)["api_key"].startswith("key-")


@pytest.mark.slow
def test_a_writer_killed_mid_write_loses_nothing_it_saved(db: Path, key: str) -> None:
    Store(db, secret_key=key).close()
    (worker,) = start_workers(db, "distinct", 100_000, ("a",), key)
    assert worker.stdout is not None
    saved = [worker.stdout.readline().strip() for _ in range(30)]
    worker.kill()
    worker.communicate(timeout=30)
    with Store(db, secret_key=key) as store:
        stored = {a.id for a in store.accounts()}
        assert set(saved) <= stored
        for account_id in saved:
            assert store.credentials(account_id)["api_key"].startswith("key-a-")
        assert store._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_record_many_stores_every_outcome_in_one_transaction_and_reports_failures(
    store: Store,
) -> None:
    first = store.save("acme", verified("org:1"), creds())
    second = store.save("acme", verified("org:2"), creds())
    outcomes = store.record_many(
        [
            (first.id, InvalidCredentials("revoked")),
            ("missing1", verified("org:9")),
            (second.id, verified("org:3")),  # the key now reaches another identity
        ]
    )
    assert isinstance(outcomes[0], Account)
    assert outcomes[0].status is Status.INVALID
    assert isinstance(outcomes[1], AccountNotFound)
    assert isinstance(outcomes[2], StoreError)
    assert "reaches 'org:3'" in str(outcomes[2])
    assert store.get(first.id).status is Status.INVALID
    assert store.get(second.id).status is Status.ACTIVE  # unchanged


@pytest.mark.parametrize("leased", [False, True], ids=["unleased", "leased"])
def test_each_account_record_many_gives_is_the_one_stored(store: Store, leased: bool) -> None:
    # What the batch gives back for each verdict (passed, renamed, expiring, failed, a row
    # edited by hand) is the account reading its row gives: `get`, now.
    now = datetime.now(UTC)
    created, expires = now - timedelta(hours=20), now + timedelta(hours=4)
    results: list[Verified | HubError] = [
        Verified(identity="org:1", label="Renamed", expires_at=expires, created_at=created),
        Verified(identity="org:2", label="Two", details={"plan": "gold", "seats": [1, 2]}),
        InvalidCredentials("the key was revoked"),
        ProviderUnavailable("down"),
        Verified(identity="org:5", label="Five"),  # its row edited by hand: read closely
    ]
    ids = [
        store.save(
            "acme",
            verified(f"org:{n}", ("One", "Two", "Three", "Four", "Five")[n - 1]),
            creds(f"key-{n}"),
            now=now - timedelta(days=2),
        ).id
        for n in range(1, 6)
    ]
    store._db.execute("UPDATE accounts SET config = 'not json' WHERE id = ?", (ids[4],))
    lease = store.lease(10, now=now).token if leased else None
    outcomes = store.record_many(list(zip(ids, results, strict=True)), lease=lease, now=now)
    for account_id, outcome in zip(ids, outcomes, strict=True):
        assert isinstance(outcome, Account)
        assert outcome == store.get(account_id)
    first, second, third, fourth, fifth = outcomes
    assert (first.label, first.status, first.expires_at) == ("Renamed", Status.EXPIRING, expires)
    assert second.details == {"plan": "gold", "seats": [1, 2]}
    assert (third.status, fourth.status) == (Status.INVALID, Status.ERROR)
    assert fifth.status is Status.DAMAGED
    assert "config" in (fifth.last_error or "")


def _selects(store: Store, call: Callable[[], object]) -> tuple[object, list[str]]:
    """What *call* returns, and the SELECTs it ran on *store*'s connection."""
    ran: list[str] = []
    store._db.set_trace_callback(ran.append)
    try:
        returned = call()
    finally:
        store._db.set_trace_callback(None)
    return returned, [sql for sql in ran if sql.lstrip().upper().startswith("SELECT")]


def _three_leased(store: Store, now: datetime) -> tuple[list[str], str]:
    ids = [store.save("acme", verified(f"org:{n}"), creds(f"key-{n}")).id for n in (1, 2, 3)]
    return ids, store.lease(10, now=now).token


def test_verdicts_under_this_stores_lease_read_no_row_and_give_what_get_reads(
    store: Store,
) -> None:
    # The rows as leased are the rows as they are: recording reads none of them, before the
    # verdicts or after, and gives the accounts reading them would.
    now = datetime.now(UTC)
    ids, token = _three_leased(store, now)
    other = store.lease(10, now=now)  # nothing left: an empty lease, released below
    store.release(other.token)  # a release of another lease keeps this one's rows
    results: list[Verified | HubError] = [
        Verified(identity="org:1", label="Renamed", expires_at=now + timedelta(days=2)),
        InvalidCredentials("the key was revoked"),
        ProviderUnavailable("down"),
    ]
    outcomes, selects = _selects(
        store, lambda: store.record_many(list(zip(ids, results, strict=True)), lease=token)
    )
    assert selects == []
    assert isinstance(outcomes, list)
    assert [outcome.status for outcome in outcomes] == [
        Status.EXPIRING,
        Status.INVALID,
        Status.ERROR,
    ]
    assert outcomes == [store.get(account_id) for account_id in ids]


def test_a_commit_by_another_connection_since_the_lease_has_the_rows_read_again(
    store: Store,
) -> None:
    # A hand edit (or another checker) since the lease: the rows as leased may be stale.
    now = datetime.now(UTC)
    ids, token = _three_leased(store, now)
    other = sqlite3.connect(store.path)
    with other:
        other.execute("UPDATE accounts SET owner_name = 'Edited' WHERE id = ?", (ids[0],))
    other.close()
    outcomes, selects = _selects(
        store,
        lambda: store.record_many(
            [(i, verified(f"org:{n}")) for n, i in enumerate(ids, 1)], lease=token
        ),
    )
    assert selects
    assert isinstance(outcomes, list)
    assert outcomes[0].owner_name == "Edited"
    assert outcomes == [store.get(account_id) for account_id in ids]


def test_a_write_of_this_store_since_the_lease_has_the_rows_read_again(store: Store) -> None:
    # A relink through the same store (the web Hub's, say) changes what the lease read.
    now = datetime.now(UTC)
    ids, token = _three_leased(store, now)
    store.save("acme", verified("org:1"), creds("key-new"), owner_name="Relinked")
    outcomes = store.record_many(
        [(i, verified(f"org:{n}")) for n, i in enumerate(ids, 1)], lease=token, now=now
    )
    assert isinstance(outcomes[0], Account)
    assert outcomes[0].owner_name == "Relinked"
    assert outcomes == [store.get(account_id) for account_id in ids]


def test_a_verdict_under_an_expired_lease_this_store_leased_again_is_not_recorded(
    store: Store,
) -> None:
    # The first lease expired and the same store leased the accounts again: the first lease's
    # verdicts change nothing, though its rows are still held.
    now = datetime.now(UTC)
    ids = [store.save("acme", verified(f"org:{n}"), creds(f"key-{n}")).id for n in (1, 2)]
    first = store.lease(10, lease_for=timedelta(minutes=1), now=now)
    second = store.lease(10, now=now + timedelta(minutes=2))
    assert {item.account.id for item in second.accounts} == set(ids)
    late = store.record_many(
        [(i, InvalidCredentials("late")) for i in ids], lease=first.token, now=now
    )
    assert all(isinstance(outcome, LeaseLost) for outcome in late)
    assert {store.get(i).status for i in ids} == {Status.ACTIVE}
    outcomes = store.record_many(
        [(i, verified(f"org:{n}")) for n, i in enumerate(ids, 1)], lease=second.token
    )
    assert outcomes == [store.get(account_id) for account_id in ids]
    assert store.lease(10, now=now + timedelta(minutes=3)).accounts == []  # none still leased


def test_a_late_verdict_recorded_one_at_a_time_is_not_recorded_either(store: Store) -> None:
    # A `#<rowid>` id has the batch recorded one verdict at a time: the rows are read afresh
    # there too, so the first lease's verdicts are lost, not reported as written.
    now = datetime.now(UTC)
    ids = [store.save("acme", verified(f"org:{n}"), creds(f"key-{n}")).id for n in (1, 2)]
    first = store.lease(10, lease_for=timedelta(minutes=1), now=now)
    store.lease(10, now=now + timedelta(minutes=2))
    before = [store.get(i) for i in ids]
    rowid = store._db.execute("SELECT rowid FROM accounts WHERE id = ?", (ids[1],)).fetchone()[0]
    late = store.record_many(
        [(ids[0], InvalidCredentials("late")), (f"#{rowid}", InvalidCredentials("late"))],
        lease=first.token,
    )
    assert all(isinstance(outcome, LeaseLost) for outcome in late)
    assert [store.get(i) for i in ids] == before


def test_held_rows_keep_the_last_leases_and_none_past_another_connections_commit() -> None:
    from hub_core.store_held import Held, HeldRows

    held = HeldRows()
    row, account = object(), object()  # what is held is only handed back
    for n in range(HeldRows.LEASES + 1):
        held.keep(f"t{n}", 7, {f"a{n}": Held(row, account)})  # type: ignore[arg-type]
    assert len(held) == HeldRows.LEASES
    assert held.take("t0", 7, ["a0"]) == {}  # the oldest lease, forgotten
    assert held.take("t1", 8, ["a1"]) == {}  # another connection committed since
    assert held.take("t1", 7, ["a1"]) == {}  # and the lease was forgotten with it
    assert held.take("t2", 7, ["a2", "other"]) == {"a2": Held(row, account)}  # type: ignore[arg-type]
    assert held.take("t2", 7, ["a2"]) == {}  # given once
    held.forget("t3")
    assert len(held) == 1
    held.clear()
    assert len(held) == 0


# --- one page of accounts ------------------------------------------------------------------------


def _accounts_in_every_status(store: Store, now: datetime) -> None:
    """Two accounts per status (by verdict and expiry), at two providers; and at each, 1-day
    and 6-hour keys (creation known) in and out of the last fifth of their lives."""
    from hub_core.errors import InvalidCredentials, PermissionDenied, ProviderUnavailable

    soon, later, past = now + timedelta(days=2), now + timedelta(days=30), now - timedelta(days=1)
    n = 0
    for provider in ("acme", "zeta"):
        for expires_at, error in [
            (None, None),
            (later, None),
            (soon, None),  # expiring
            (past, None),  # expired by date, verdict still active
            (None, InvalidCredentials("refused")),
            (None, PermissionDenied("no role")),
            (None, ProviderUnavailable("down")),
        ]:
            n += 1
            account = store.save(
                provider, verified(f"org:{n}", f"Label {n:02}", expires_at), creds(f"k{n}")
            )
            if error is not None:
                store.record(account.id, error, now=now)
        # Short-lived keys whose creation is known: expiring only in their last fifth.
        day, six = timedelta(days=1), timedelta(hours=6)
        for created, life in [
            (now - timedelta(hours=2), day),  # active: 22 hours left of 24
            (now - timedelta(hours=22), day),  # expiring: 2 hours left
            (now - timedelta(hours=1), six),  # active: 5 hours left of 6
            (now - timedelta(hours=5, minutes=30), six),  # expiring: 30 minutes left
        ]:
            n += 1
            short = Verified(
                f"org:{n}", f"Label {n:02}", expires_at=created + life, created_at=created
            )
            store.save(provider, short, creds(f"k{n}"))


@pytest.mark.parametrize("status", [None, *Status])
@pytest.mark.parametrize("provider", [None, "acme", "zeta", "none"])
def test_a_page_decides_status_in_sql_as_listing_does(
    store: Store, status: Status | None, provider: str | None
) -> None:
    now = datetime.now(UTC)
    _accounts_in_every_status(store, now)
    everything = store.accounts(provider=provider, status=status, now=now)
    pages, offset = [], 0
    while True:
        page = store.page(provider=provider, status=status, offset=offset, limit=3, now=now)
        assert page.total == len(everything)
        pages += page.accounts
        offset += 3
        if not page.has_next:
            break
    assert [a.id for a in pages] == [a.id for a in everything]
    assert all(a.status == status for a in pages if status is not None)
    if provider in ("acme", "zeta") and status in (Status.ACTIVE, Status.EXPIRING):
        # Each of the two, at a provider, counts one short-lived key of each length.
        assert len(everything) == {Status.ACTIVE: 4, Status.EXPIRING: 3}[status]


def test_a_page_past_the_end_is_empty_and_counts_all(store: Store) -> None:
    _accounts_in_every_status(store, datetime.now(UTC))
    page = store.page(offset=1000, limit=10)
    assert (page.accounts, page.total, page.has_next) == ([], 22, False)
    with pytest.raises(ValueError, match="unknown status 'bogus'"):
        store.page(status="bogus")


def test_another_connection_reads_and_writes_the_same_accounts_from_another_thread(
    store: Store,
) -> None:
    import threading

    first = store.save("acme", verified("org:1", "One"), creds("k1"))
    seen: list[object] = []

    def elsewhere() -> None:
        with store.connect_again() as other:
            seen.append(other.credentials(first.id)["api_key"])
            seen.append(other.save("acme", verified("org:2", "Two"), creds("k2")).id)

    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join(10)
    assert seen[0] == "k1"
    assert store.get(str(seen[1])).label == "Two"
    with store.connect_again() as again:
        assert "k1" not in repr(again)
