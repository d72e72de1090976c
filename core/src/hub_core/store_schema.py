"""The SQLite schema of the account store: its migrations, and the connection basics they need.

`MIGRATIONS` is forward-only: migration N brings ``PRAGMA user_version`` from N-1 to N, and a
migration that has shipped is never edited (add a new one). `migrate` applies the missing ones,
each in one ``BEGIN IMMEDIATE`` `transaction`; `enable_wal` and `user_version` are the other
two things opening a database needs before `hub_core.store.SqliteStore` reads a row.

SQLite only: another backend (PostgreSQL) keeps its own schema in its own module.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import StoreError
from .store_types import SchemaStatus

__all__ = [
    "BUSY_TIMEOUT",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "enable_wal",
    "migrate",
    "migration_sql",
    "schema_status",
    "transaction",
    "user_version",
]

#: How long a connection waits for another process's write lock, in seconds.
BUSY_TIMEOUT = 10.0

# Forward-only schema migrations: migration N brings `PRAGMA user_version` from N-1 to N. Each
# runs as one transaction, statement by statement (sqlite3's executescript() would commit
# half-way). A migration that has shipped is never edited: add a new one instead.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
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
    ),
    (
        "ALTER TABLE accounts ADD COLUMN details TEXT NOT NULL DEFAULT '{}'",
        "CREATE INDEX accounts_provider ON accounts (provider_id)",
    ),
    # The listing order, so a page of the Accounts page does not sort the whole table.
    ("CREATE INDEX accounts_listing ON accounts (provider_id, label, id)",),
    # One-time auth links (`Store.create_link`): a row makes a signed link revocable and
    # single-use. *account_id* is set for a relink link; *used_account_id* once it is used.
    (
        """
        CREATE TABLE links (
            id              TEXT PRIMARY KEY,
            provider_id     TEXT NOT NULL,
            account_id      TEXT,
            note            TEXT,
            created_at      TEXT NOT NULL,
            expires_at      TEXT NOT NULL,
            used_at         TEXT,
            used_account_id TEXT,
            revoked_at      TEXT,
            failed_attempts INTEGER NOT NULL DEFAULT 0
        )
        """,
        "CREATE INDEX links_created ON links (created_at)",
    ),
    # Owners (`Store.save(owner=...)`): a host application's id for whom an account was
    # linked. One identity linked by two owners is two accounts, so the uniqueness becomes
    # (owner, provider, identity); '' is "no owner" (NULLs would never conflict). SQLite
    # cannot change a table's constraint in place: the table is rebuilt, rowids kept (an
    # account whose id was damaged is found by its rowid). Links and host sessions gain the
    # owner they link for, and a session's return address and state.
    (
        """
        CREATE TABLE accounts_v5 (
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
            details     TEXT NOT NULL DEFAULT '{}',
            owner       TEXT NOT NULL DEFAULT '',
            owner_name  TEXT,
            UNIQUE (owner, provider_id, identity)
        )
        """,
        """
        INSERT INTO accounts_v5 (rowid, id, provider_id, identity, label, verdict, config,
                                 secrets, linked_at, checked_at, expires_at, last_error, details)
        SELECT rowid, id, provider_id, identity, label, verdict, config, secrets, linked_at,
               checked_at, expires_at, last_error, details
        FROM accounts
        """,
        "DROP TABLE accounts",
        "ALTER TABLE accounts_v5 RENAME TO accounts",
        "CREATE INDEX accounts_provider ON accounts (provider_id)",
        "CREATE INDEX accounts_listing ON accounts (provider_id, label, id)",
        "CREATE INDEX accounts_owner ON accounts (owner, provider_id, label, id)",
        """
        CREATE TABLE links_v5 (
            id              TEXT PRIMARY KEY,
            kind            TEXT NOT NULL DEFAULT 'link',
            provider_id     TEXT,
            account_id      TEXT,
            note            TEXT,
            created_at      TEXT NOT NULL,
            expires_at      TEXT NOT NULL,
            used_at         TEXT,
            used_account_id TEXT,
            revoked_at      TEXT,
            failed_attempts INTEGER NOT NULL DEFAULT 0,
            owner           TEXT NOT NULL DEFAULT '',
            owner_name      TEXT,
            return_url      TEXT,
            state           TEXT
        )
        """,
        """
        INSERT INTO links_v5 (id, provider_id, account_id, note, created_at, expires_at,
                              used_at, used_account_id, revoked_at, failed_attempts)
        SELECT id, provider_id, account_id, note, created_at, expires_at, used_at,
               used_account_id, revoked_at, failed_attempts
        FROM links
        """,
        "DROP TABLE links",
        "ALTER TABLE links_v5 RENAME TO links",
        "CREATE INDEX links_created ON links (created_at)",
    ),
    # The webhook outbox (`hub_core.webhooks`): each event bound for HUB_WEBHOOK_URL, written
    # after the change it tells of, until a sender delivers it. *body* is the exact JSON sent
    # (retries send the same bytes); times are Unix seconds. *lease_until* keeps two senders
    # (a `hub check` and a `hub serve`) from sending one row at once; *failed_at* is set when
    # its retries are exhausted, and the row stays until `hub webhooks retry` or removal.
    (
        """
        CREATE TABLE webhook_outbox (
            seq             INTEGER PRIMARY KEY AUTOINCREMENT,
            event_id        TEXT NOT NULL UNIQUE,
            event_type      TEXT NOT NULL,
            body            TEXT NOT NULL,
            created_at      REAL NOT NULL,
            next_attempt_at REAL NOT NULL,
            attempts        INTEGER NOT NULL DEFAULT 0,
            last_error      TEXT,
            lease_until     REAL,
            delivered_at    REAL,
            failed_at       REAL
        )
        """,
        "CREATE INDEX webhook_outbox_due"
        " ON webhook_outbox (delivered_at, failed_at, next_attempt_at)",
    ),
    # Leases (`Store.lease`): many checkers share the accounts, each checked once. A lease is
    # a random token and an expiry written in one short transaction before any request is
    # sent; a verdict is recorded only under its token, so a checker whose lease expired
    # (killed, stalled) writes nothing. *next_check_at* is when `hub worker` checks it again
    # (NULL: due now); *retry_at* when a provider that answered 429 may be asked again (no
    # checker leases it before); *attempts* counts consecutive checks that reached no verdict.
    (
        "ALTER TABLE accounts ADD COLUMN next_check_at TEXT",
        "ALTER TABLE accounts ADD COLUMN retry_at TEXT",
        "ALTER TABLE accounts ADD COLUMN lease_token TEXT",
        "ALTER TABLE accounts ADD COLUMN lease_until TEXT",
        "ALTER TABLE accounts ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0",
        "CREATE INDEX accounts_checked ON accounts (checked_at)",
        "CREATE INDEX accounts_due ON accounts (next_check_at)",
        # The `hub check --all` runs under way: one started meanwhile joins the earliest.
        """
        CREATE TABLE check_runs (
            token       TEXT PRIMARY KEY,
            started_at  TEXT NOT NULL,
            alive_until TEXT NOT NULL
        )
        """,
    ),
    # *expiring_at*: the moment the account turns ``expiring`` (`hub_core.status.expiring_from`),
    # stored so that `Store.page` decides the status in SQL. Existing rows never recorded when
    # their keys were created: they get the 7-day rule. Written by hub, expires_at has a fixed
    # width and the seconds are shifted apart from the microseconds (SQLite reads only
    # milliseconds and would round them); other spellings go through SQLite's own parsing.
    (
        "ALTER TABLE accounts ADD COLUMN expiring_at TEXT",
        """
        UPDATE accounts SET expiring_at = CASE
            WHEN expires_at GLOB '????-??-??T??:??:??.??????+00:00'
            THEN strftime('%Y-%m-%dT%H:%M:%S', substr(expires_at, 1, 19), '-7 days')
                 || substr(expires_at, 20)
            ELSE strftime('%Y-%m-%dT%H:%M:%f', expires_at, '-7 days') || '000+00:00'
        END
        WHERE typeof(expires_at) = 'text'
        """,
    ),
    # The key ring (`hub_core.keyring`): each row records the id of the key its secrets are
    # encrypted with, so decryption picks its key, `hub keys rotate` finds the rows still on
    # an old key through the index, and a key dropped too early is seen before use. One key
    # check per key id. Rows from before get their id when the store is next opened, from the
    # key that decrypts the old single check (`SqliteStore._ensure_key_checks`), in one transaction.
    (
        "ALTER TABLE accounts ADD COLUMN key_id TEXT",
        "CREATE INDEX accounts_key_id ON accounts (key_id)",
        "CREATE TABLE key_checks (key_id TEXT PRIMARY KEY, token TEXT NOT NULL)",
    ),
    # Per-provider budgets and pauses (`hub_core.budgets`), shared by every checker: a token
    # bucket (*rate* checks per second up to *burst*; NULL rate: no budget) drawn once per
    # lease, and the provider's recent 429s (*limited_count* since *limited_since*) with the
    # pause they started (*paused_until*).
    (
        """
        CREATE TABLE provider_limits (
            provider_id   TEXT PRIMARY KEY,
            rate          REAL,
            burst         INTEGER,
            tokens        REAL,
            refilled_at   TEXT,
            limited_count INTEGER NOT NULL DEFAULT 0,
            limited_since TEXT,
            paused_until  TEXT
        )
        """,
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


def user_version(conn: sqlite3.Connection) -> int:
    """The schema version of the database (``PRAGMA user_version``; 0 for a new one)."""
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    return version


def migrate(conn: sqlite3.Connection, version: int) -> None:
    """Bring a database at schema *version* to `SCHEMA_VERSION`, one migration per transaction.

    Safe with several processes opening one database: each migration re-reads the version
    under the write lock and is skipped when another process applied it meanwhile.
    """
    for target, steps in enumerate(MIGRATIONS, start=1):
        if version >= target:
            continue
        with transaction(conn):
            # Another process may have migrated while this one waited for the lock.
            if user_version(conn) >= target:
                continue
            for sql in steps:
                conn.execute(sql)
            conn.execute(f"PRAGMA user_version = {target}")


def schema_status(path: str | os.PathLike[str]) -> SchemaStatus:
    """Where the schema of the SQLite file at *path* stands against this hub's.

    Reads ``PRAGMA user_version`` on a read-only connection: needs no key, creates nothing
    (a missing file is ``exists=False``, version 0). Raise `StoreError` when it is not a
    database SQLite can read.
    """
    path = Path(path)
    if not path.exists():
        return SchemaStatus("sqlite", str(path), 0, SCHEMA_VERSION, exists=False)
    try:
        with contextlib.closing(
            sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=BUSY_TIMEOUT)
        ) as conn:
            version = user_version(conn)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read the account database {path}: {exc}") from None
    return SchemaStatus("sqlite", str(path), version, SCHEMA_VERSION)


def migration_sql(version: int) -> str:
    """A script for the ``sqlite3`` shell that brings a database at schema *version* to
    `SCHEMA_VERSION`: what `migrate` runs, one ``BEGIN IMMEDIATE`` transaction per migration."""
    lines = [
        f"-- hub-core: the account schema from version {version} to {SCHEMA_VERSION} (SQLite).",
        "-- Run it with: sqlite3 -bail hub.db < upgrade.sql (while no hub uses the file).",
    ]
    if version >= SCHEMA_VERSION:
        lines.append(f"-- Already at schema {version}: nothing to run.")
    for target in range(max(version, 0) + 1, SCHEMA_VERSION + 1):
        lines += [
            "",
            f"-- Migration {target}",
            "BEGIN IMMEDIATE;",
            # As written, not dedented: SQLite keeps a table's statement as its text.
            *(sql.strip() + ";" for sql in MIGRATIONS[target - 1]),
            f"PRAGMA user_version = {target};",
            "COMMIT;",
        ]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One ``BEGIN IMMEDIATE`` transaction on *conn*: committed at the end, rolled back on error."""
    # IMMEDIATE takes the write lock up front (waiting up to the busy timeout), so a read made
    # inside the transaction is still true when the write lands.
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def enable_wal(conn: sqlite3.Connection) -> None:
    """Put the database in WAL mode (a reader never blocks a writer), waiting out a busy lock."""
    # Switching the journal mode needs an exclusive lock and, unlike BEGIN IMMEDIATE, fails
    # at once instead of calling the busy handler: wait here for another process creating the
    # same database, up to the same timeout.
    deadline = time.monotonic() + BUSY_TIMEOUT
    while conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        try:
            conn.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as exc:
            busy = exc.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
            if not busy or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
        else:
            return
