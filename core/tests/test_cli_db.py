"""``hub db status`` and ``hub db upgrade [--sql]`` on both backends, and a role kept from DDL."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import sqlite3
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from cryptography.fernet import Fernet

from hub_core.cli import main
from hub_core.errors import StoreError
from hub_core.model import Credentials, Verified
from hub_core.store_schema import MIGRATIONS as SQLITE_MIGRATIONS
from hub_core.store_schema import SCHEMA_VERSION as SQLITE_VERSION
from hub_core.testing.postgres import PostgresCluster

pytestmark = pytest.mark.usefixtures("hermetic_store_env")

_ROLES = itertools.count(1)


def hub(*args: str, **env: str | None) -> Result:
    """``hub *args`` with *env* set (None: unset); everything else as the test left it."""
    base = {"HUB_DATABASE_URL": None, "HUB_SECRET_KEY": None, "HUB_SECRET_KEYS": None}
    return CliRunner().invoke(main, list(args), env={**base, **env})


def save(store: Any, label: str = "Kept") -> str:
    creds = Credentials({"api_key": "sekrit-value"}, secret=["api_key"])
    return str(store.save("acme", Verified(identity="org:1", label=label), creds).id)


def password_of(url: str) -> str:
    password = urllib.parse.urlsplit(url).password
    assert password
    return password


# --- PostgreSQL -------------------------------------------------------------------------------


def pg(url: str, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(sql, params)  # type: ignore[call-overload]
        return list(cursor.fetchall()) if cursor.description else []


def meta(url: str) -> tuple[int, int]:
    [row] = pg(url, "SELECT schema_version, min_reader_version FROM hub_meta")
    return row[0], row[1]


def schema_of(url: str) -> str:
    options = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["options"][0]
    return options.removeprefix("-csearch_path=")


def shape(url: str) -> dict[str, Any]:
    """Everything the schema is made of: columns, indexes, constraints, the hub_meta row."""
    schema = schema_of(url)
    return {
        "columns": pg(
            url,
            "SELECT table_name, column_name, ordinal_position, data_type, is_nullable,"
            " column_default, collation_name, is_identity, identity_generation"
            " FROM information_schema.columns WHERE table_schema = %s ORDER BY 1, 3",
            (schema,),
        ),
        "indexes": pg(
            url,
            "SELECT indexname, replace(indexdef, %s, 'S') FROM pg_indexes"
            " WHERE schemaname = %s ORDER BY 1",
            (schema, schema),
        ),
        "constraints": pg(
            url,
            "SELECT c.relname, con.conname, pg_get_constraintdef(con.oid) FROM pg_constraint con"
            " JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n"
            " ON n.oid = c.relnamespace WHERE n.nspname = %s ORDER BY 1, 2",
            (schema,),
        ),
        "meta": pg(url, "SELECT * FROM hub_meta"),
    }


def psql(server: PostgresCluster, url: str, script: str) -> subprocess.CompletedProcess[str]:
    """Run *script* as a DBA would: psql, stopping at the first error (the password in its
    environment, not its argv)."""
    parts = urllib.parse.urlsplit(url)
    bare = parts._replace(netloc=f"{parts.username}@{parts.hostname}:{parts.port}").geturl()
    return subprocess.run(
        [str(server.bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-", bare],
        input=script,
        capture_output=True,
        text=True,
        env={**os.environ, "PGPASSWORD": parts.password or ""},
        timeout=60,
        check=False,
    )


def behind(url: str, key: str) -> str:
    """A database a hub of schema 1 made (an account in it), before the migrations after: its id."""
    from core.tests.pg_schemas import saved_at

    creds = Credentials({"api_key": "sekrit-value"}, secret=["api_key"])
    (account_id,) = saved_at(url, key, 1, label="Kept", credentials=creds)
    return account_id


def test_the_sql_script_makes_the_schema_the_store_makes(
    postgres_server: PostgresCluster,
) -> None:
    by_store, by_script = postgres_server.create_schema(), postgres_server.create_schema()
    try:
        from core.tests.pg_schemas import MIN_READER
        from hub_core.store_postgres import SCHEMA_VERSION, PostgresStore

        PostgresStore(by_store, secret_key=Fernet.generate_key()).close()
        printed = hub("db", "upgrade", "--sql", HUB_DATABASE_URL=by_script)
        assert printed.exit_code == 0, printed.output
        script = printed.stdout
        assert pg(by_script, "SELECT count(*) FROM pg_tables WHERE schemaname = %s", (
            schema_of(by_script),
        )) == [(0,)]  # fmt: skip
        assert script.count("BEGIN;") == script.count("COMMIT;") == SCHEMA_VERSION
        assert script.count("SELECT pg_advisory_xact_lock(") == SCHEMA_VERSION
        ran = psql(postgres_server, by_script, script)
        assert ran.returncode == 0, ran.stderr
        assert shape(by_script) == shape(by_store)
        assert meta(by_script) == (SCHEMA_VERSION, MIN_READER)
        # The schema a DBA made is one the store opens as it is, with nothing left to do.
        assert "Already at schema" in hub("db", "upgrade", HUB_DATABASE_URL=by_script).stdout
        # Run again, the script stops at its first check and changes nothing.
        again = psql(postgres_server, by_script, script)
        assert again.returncode != 0
        assert "not at version 0" in again.stderr
        assert shape(by_script) == shape(by_store)
    finally:
        postgres_server.drop_schema(by_store)
        postgres_server.drop_schema(by_script)


def test_an_old_schema_is_shown_then_upgraded_once(postgres_url: str) -> None:
    from core.tests.pg_schemas import MIN_READER
    from hub_core.store_postgres import SCHEMA_VERSION, PostgresStore

    key = Fernet.generate_key().decode()
    account_id = behind(postgres_url, key)
    env = {"HUB_DATABASE_URL": postgres_url}
    status = hub("db", "status", **env)
    assert status.exit_code == 0, status.output
    assert "Database: PostgreSQL postgresql://hub:***@127.0.0.1" in status.stdout
    assert f"Schema version: 1 (this hub: {SCHEMA_VERSION}" in status.stdout
    pending = list(range(2, SCHEMA_VERSION + 1))
    assert f"would apply {len(pending)} migrations (2 to {SCHEMA_VERSION})" in status.stdout
    data = json.loads(hub("db", "status", "--json", **env).stdout)
    assert data["schema_version"] == 1
    assert data["min_reader_version"] == 1
    assert data["pending"] == pending
    assert data["usable"] is True
    # --sql prints only what is pending, and changes nothing.
    script = hub("db", "upgrade", "--sql", **env).stdout
    assert script.count("BEGIN;") == len(pending)
    assert "CREATE TABLE provider_limits" in script
    assert "CREATE INDEX accounts_leased" in script
    assert "CREATE TABLE account_schedule" in script
    assert "CREATE TABLE accounts" not in script
    assert meta(postgres_url) == (1, 1)
    done = hub("db", "upgrade", **env)  # no key needed
    assert done.exit_code == 0, done.output
    assert done.stdout.strip() == f"Upgraded the schema from 1 to {SCHEMA_VERSION}."
    assert meta(postgres_url) == (SCHEMA_VERSION, MIN_READER)
    assert hub("db", "upgrade", **env).stdout.strip() == f"Already at schema {SCHEMA_VERSION}."
    assert "Up to date" in hub("db", "status", **env).stdout
    with PostgresStore(postgres_url, secret_key=key) as store:
        assert store.get(account_id).label == "Kept"
        assert store.limits() == []


def test_a_new_database_is_created_without_a_key(postgres_url: str) -> None:
    from hub_core.store_postgres import SCHEMA_VERSION

    env = {"HUB_DATABASE_URL": postgres_url}
    assert "No hub schema yet" in hub("db", "status", **env).stdout
    assert json.loads(hub("db", "status", "--json", **env).stdout)["min_reader_version"] is None
    done = hub("db", "upgrade", **env)
    assert done.exit_code == 0, done.output
    assert done.stdout.strip() == f"Created the schema at version {SCHEMA_VERSION}."
    assert pg(postgres_url, "SELECT count(*) FROM key_checks") == [(0,)]  # no key was recorded


def test_a_newer_schema_is_refused_with_a_clear_message(postgres_url: str) -> None:
    from hub_core.store_postgres import SCHEMA_VERSION

    env = {"HUB_DATABASE_URL": postgres_url}
    assert hub("db", "upgrade", **env).exit_code == 0
    newer = SCHEMA_VERSION + 1
    # Newer, and still usable by this hub (a rolling deploy): nothing to do.
    pg(postgres_url, "UPDATE hub_meta SET schema_version = %s", (newer,))
    assert "still usable by this one" in hub("db", "status", **env).stdout
    done = hub("db", "upgrade", **env)
    assert done.exit_code == 0
    assert "newer than this hub's" in done.stdout
    assert "nothing to run" in hub("db", "upgrade", "--sql", **env).stdout
    # Newer, and past what this hub may use.
    pg(postgres_url, "UPDATE hub_meta SET min_reader_version = %s", (newer,))
    status = hub("db", "status", **env)
    assert status.exit_code == 0
    assert "which this hub cannot use: upgrade hub-core" in status.stdout
    assert json.loads(hub("db", "status", "--json", **env).stdout)["usable"] is False
    for args in (["db", "upgrade"], ["db", "upgrade", "--sql"]):
        refused = hub(*args, **env)
        assert refused.exit_code == 2, refused.output
        assert f"made by a newer hub (schema version {newer}" in refused.stderr
        assert "upgrade hub-core" in refused.stderr
        assert refused.stdout == ""
    assert meta(postgres_url) == (newer, newer)


def test_the_password_is_never_printed(
    postgres_server: PostgresCluster,
    postgres_url: str,
) -> None:
    password = password_of(postgres_url)
    said = []
    for args in (["status"], ["status", "--json"], ["upgrade", "--sql"], ["upgrade"]):
        result = hub("db", *args, HUB_DATABASE_URL=postgres_url)
        assert result.exit_code == 0, result.output
        said.append(result.output)
    assert "postgresql://hub:***@" in said[0]
    # A wrong password, and a server that is not there: the URL still masked.
    wrong = postgres_url.replace(password, "not-the-password-123")
    gone = f"postgresql://hub:{password}@127.0.0.1:1/hub"
    for url, secret in ((wrong, "not-the-password-123"), (gone, password)):
        for args in (["status"], ["upgrade", "--sql"], ["upgrade"]):
            failed = hub("db", *args, HUB_DATABASE_URL=url)
            assert failed.exit_code == 2, failed.output
            assert "postgresql://hub:***@127.0.0.1" in failed.stderr
            assert secret not in failed.output
    assert all(password not in text for text in said)


# --- a role that may not change the schema ----------------------------------------------------


@contextlib.contextmanager
def app_role(server: PostgresCluster, url: str) -> Iterator[str]:
    """A login role with USAGE on the test's schema but no CREATE: its URL."""
    name = f"hub_app_{os.getpid()}_{next(_ROLES)}"
    secret = Fernet.generate_key().decode()[:24]
    schema = schema_of(url)
    pg(url, f"CREATE ROLE {name} LOGIN PASSWORD '{secret}'")
    pg(url, f'GRANT USAGE ON SCHEMA "{schema}" TO {name}')
    role_url = url.replace(f"hub:{server.password}@", f"{name}:{secret}@")
    try:
        yield role_url
    finally:
        pg(url, f'REVOKE ALL ON ALL TABLES IN SCHEMA "{schema}" FROM {name}')
        pg(url, f'REVOKE ALL ON SCHEMA "{schema}" FROM {name}')
        pg(url, f"DROP ROLE {name}")


def grant_rows(url: str, role_url: str) -> None:
    """What docs/store.md tells a DBA to grant the application's role."""
    name = urllib.parse.urlsplit(role_url).username
    schema = schema_of(url)
    pg(url, f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "{schema}" TO {name}')


def test_an_application_role_without_ddl_is_told_to_run_hub_db_upgrade(
    postgres_server: PostgresCluster,
    postgres_url: str,
) -> None:
    from core.tests.pg_schemas import MIN_READER
    from hub_core.store_postgres import SCHEMA_VERSION, PostgresStore

    key = Fernet.generate_key().decode()
    with app_role(postgres_server, postgres_url) as role_url:
        # A new database, and one behind: the application's store says what to run.
        for at in (0, 1):
            if at:
                behind(postgres_url, key)
                # Its tables are the DBA's: without grants on them, the store says which.
                with pytest.raises(StoreError, match="refused this role") as refused:
                    PostgresStore(role_url, secret_key=key)
                assert "permission denied for table hub_meta" in str(refused.value)
                assert "grant it SELECT, INSERT, UPDATE and DELETE" in str(refused.value)
                grant_rows(postgres_url, role_url)
            with pytest.raises(StoreError) as refused:
                PostgresStore(role_url, secret_key=key)
            message = str(refused.value)
            assert f"is at schema version {at} and this hub needs {SCHEMA_VERSION}" in message
            assert "run `hub db upgrade`" in message
            assert "hub db upgrade --sql" in message
            assert "permission denied for schema" in message
            assert password_of(role_url) not in message
        assert meta(postgres_url) == (1, 1)  # the refused migration changed nothing
        # `hub db upgrade` as that role says the same, exit 2; --sql and status work for it.
        denied = hub("db", "upgrade", HUB_DATABASE_URL=role_url)
        assert denied.exit_code == 2
        assert "run `hub db upgrade` as a role that may" in denied.stderr
        status = hub("db", "status", HUB_DATABASE_URL=role_url).stdout
        assert f"would apply {SCHEMA_VERSION - 1} migrations" in status
        script = hub("db", "upgrade", "--sql", HUB_DATABASE_URL=role_url).stdout
        # The DBA runs the script, grants the application its rows, and the application works.
        ran = psql(postgres_server, postgres_url, script)
        assert ran.returncode == 0, ran.stderr
        grant_rows(postgres_url, role_url)  # the new table too
        with PostgresStore(role_url, secret_key=key) as store:
            assert store.get(save(store, label="By the app")).label == "By the app"
            store.set_limit("acme", 2.0)
        assert meta(postgres_url) == (SCHEMA_VERSION, MIN_READER)


# --- SQLite -----------------------------------------------------------------------------------


def sqlite_shape(path: Path) -> tuple[int, list[tuple[Any, ...]]]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        rows = conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name"
        ).fetchall()
    return version, rows


def test_sqlite_status_and_sql_need_no_key_and_create_nothing(tmp_path: Path) -> None:
    db = tmp_path / "data" / "hub.db"
    status = hub("db", "status", HUB_DATABASE_URL=str(db))
    assert status.exit_code == 0, status.output
    assert f"Database: SQLite {db} (not created yet)" in status.stdout
    assert f"create it at schema {SQLITE_VERSION}" in status.stdout
    script = hub("db", "upgrade", "--sql", HUB_DATABASE_URL=str(db)).stdout
    assert not db.parent.exists()
    assert script.count("BEGIN IMMEDIATE;") == SQLITE_VERSION
    # The script makes the schema opening makes.
    by_script, by_store = tmp_path / "script.db", tmp_path / "store.db"
    with contextlib.closing(sqlite3.connect(by_script, isolation_level=None)) as conn:
        conn.executescript(script)
    assert hub("db", "upgrade", HUB_DATABASE_URL=str(by_store)).exit_code == 0
    assert sqlite_shape(by_script) == sqlite_shape(by_store)


def test_an_old_sqlite_schema_is_upgraded_with_its_key(tmp_path: Path, key: str) -> None:
    from hub_core.store import Store

    db = tmp_path / "hub.db"
    with Store(db, secret_key=key) as store:
        account_id = save(store)
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as conn:
        conn.execute("DROP TABLE provider_limits")
        conn.execute(f"PRAGMA user_version = {SQLITE_VERSION - 1}")
    env = {"HUB_DATABASE_URL": str(db)}
    status = hub("db", "status", **env)
    assert f"Schema version: {SQLITE_VERSION - 1} (this hub: {SQLITE_VERSION})" in status.stdout
    assert f"would apply 1 migration ({SQLITE_VERSION})" in status.stdout
    script = hub("db", "upgrade", "--sql", **env).stdout
    assert script.count("BEGIN IMMEDIATE;") == 1
    assert "CREATE TABLE provider_limits" in script
    assert sqlite_shape(db)[0] == SQLITE_VERSION - 1  # --sql changed nothing
    # Upgrading opens the database as every command does: with its key.
    without = hub("db", "upgrade", **env)
    assert without.exit_code == 2
    assert "no secret key" in without.stderr
    done = hub("db", "upgrade", HUB_SECRET_KEY=key, **env)
    assert done.exit_code == 0, done.output
    expected = f"Upgraded the schema from {SQLITE_VERSION - 1} to {SQLITE_VERSION}."
    assert done.stdout.strip() == expected
    again = hub("db", "upgrade", HUB_SECRET_KEY=key, **env)
    assert again.stdout.strip() == f"Already at schema {SQLITE_VERSION}."
    with Store(db, secret_key=key) as store:
        assert store.get(account_id).label == "Kept"


def test_a_newer_sqlite_schema_is_refused(tmp_path: Path, key: str) -> None:
    from hub_core.store import Store

    db = tmp_path / "hub.db"
    Store(db, secret_key=key).close()
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as conn:
        conn.execute(f"PRAGMA user_version = {SQLITE_VERSION + 1}")
    env = {"HUB_DATABASE_URL": str(db), "HUB_SECRET_KEY": key}
    status = hub("db", "status", **env)
    assert "which this hub cannot use: upgrade hub-core" in status.stdout
    for args in (["db", "upgrade"], ["db", "upgrade", "--sql"]):
        refused = hub(*args, **env)
        assert refused.exit_code == 2, refused.output
        assert "made by a newer hub" in refused.stderr
        assert "upgrade hub-core" in refused.stderr
    assert sqlite_shape(db)[0] == SQLITE_VERSION + 1


def test_sqlite_migrations_are_what_the_script_prints() -> None:
    from hub_core.store_schema import migration_sql

    script = migration_sql(0)
    for steps in SQLITE_MIGRATIONS:
        for sql in steps:
            assert " ".join(sql.split()) in " ".join(script.split())
