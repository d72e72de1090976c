"""The PostgreSQL account store (`PostgresStore`): the `AccountStore` for more than one host.

Selected by a ``postgresql://`` URL (``HUB_DATABASE_URL``, or ``Store.open(url)`` in a host
application); ``hub-core[postgres]`` installs psycopg 3 and psycopg_pool. Only that URL imports
this module, so the SQLite path never pays for psycopg's import.

Its statements are PostgreSQL's own (SCALE.md §1): leases are claimed with ``FOR UPDATE SKIP
LOCKED`` in one short transaction, their expiry judged by the database's clock; a verdict is
written only under its lease's token. Everything that is not SQL (the link, relink and
verdict rules, the key checks, ids, the details JSON, a row read into an `Account`) is
`hub_core.store_rules`'s, `hub_core.store`'s and `hub_core.store_rows`'s, shared with
`SqliteStore`, and the contract suite
(``core/tests/contract/``) holds both to the same promises.

Migrations: the ``hub_meta`` row holds ``schema_version`` and ``min_reader_version``. Each
migration is one transaction under ``pg_advisory_xact_lock`` that reads the version again once
it holds the lock, so hosts starting together migrate once. A hub older than the schema keeps
running while ``min_reader_version`` allows it (a rolling deploy); past that it is refused.

Keys: hub never makes a key for a PostgreSQL database (a key made on one host would lock the
others out): ``HUB_SECRET_KEYS`` / ``HUB_SECRET_KEY`` or the *secret_key* argument, else it
refuses to open, saying how to make one (``hub keys new``). Connections come from a
`psycopg_pool.ConnectionPool` shared by `connect_again`, with ``prepare_threshold=None`` so
that PgBouncer in transaction mode is safe. Error messages never hold a bound value or the
URL's password (the URL is shown with its password masked, repr included).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import json
import os
import secrets
import sqlite3
import textwrap
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Self, TypeVar, cast

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from .budgets import (
    Pause,
    ProviderLimit,
    held_back,
    limit_from_row,
    note_rate_limited,
    plan_lease,
)
from .errors import (
    AccountNotFound,
    AmbiguousAccount,
    ConfigurationError,
    HubError,
    LinkUsed,
    RateLimited,
    StoreError,
)
from .keyring import KEY_ENV, KEYS_ENV, KeyRing, KeyStatus, RotationReport
from .lease_cursors import LeaseCursors
from .leases import CHECK_INTERVAL, LEASE_DEFAULT, Lease
from .model import Account, Credentials, Status, Verified
from .owners import check_owner, clean_owner_name
from .status import EXPIRING_WINDOW, expiring_from
from .store import (
    _LAST_CHARACTER,
    _check_same_place,
    _details_json,
    _new_id,
    _version,
    _wanted_status,
    retry_due,
)
from .store_held import Held, HeldRows
from .store_rows import (
    Written,
    account_from_row,
    account_id_of,
    by_id,
    link_from_row,
    outbox_entry_from_row,
    read_accounts,
    recorded_account,
    text_or_none,
)
from .store_rules import (
    UNSTORABLE,
    SharedMethods,
    budget_values,
    check_recordable,
    check_relink,
    dropped_keys,
    failed_check,
    key_status,
    lease_ends_anyway,
    lease_lost,
    leased_accounts,
    limit_or_cleared,
    limit_or_none,
    link_values,
    passing_keys,
    recorded_expiry,
    reencrypted,
    sealed,
    stored_values,
    unstorable,
    usable_link,
)
from .store_types import (
    AccountPage,
    KeysetPage,
    Link,
    ListingKey,
    OutboxEntry,
    SchemaStatus,
)
from .store_types import utc_now as _now

if TYPE_CHECKING:
    from pathlib import Path

    from .store_protocol import AccountStore

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "PostgresStore",
    "migration_sql",
    "pending_sql",
    "redact_url",
    "schema_status",
    "upgrade",
]

#: Advisory lock keys (the two-integer form, first "hub" in ASCII): one namespace, one key each.
_LOCKS = 0x687562
_MIGRATE_LOCK, _KEYS_LOCK, _RUNS_LOCK, _SAVE_LOCK = 1, 2, 3, 4

#: How many connections one process's stores share (`connect_again` shares the pool).
POOL_SIZE_ENV = "HUB_DATABASE_POOL_SIZE"
_CONNECT_TIMEOUT = 10


def _due_key(column: str) -> str:
    """*column*, a time, in the order of the leases' indexes: a NULL comes first."""
    return f"coalesce({column}, '-infinity'::timestamptz)"


# Forward-only migrations: (min_reader_version, statements). Migration N brings the schema to
# version N in one transaction; its min_reader_version is the oldest schema version whose hub
# can still read and write the database after it (N for a change older hubs cannot live with).
# A migration that has shipped is never edited: add a new one. Text compared or sorted is in
# the "C" collation: byte order, the order SQLite gives, whatever the database's locale.
MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            """
            CREATE TABLE hub_meta (
                id                 boolean PRIMARY KEY DEFAULT true CHECK (id),
                schema_version     integer NOT NULL,
                min_reader_version integer NOT NULL
            )
            """,
            """
            CREATE TABLE accounts (
                seq           bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
                id            text COLLATE "C" PRIMARY KEY,
                provider_id   text COLLATE "C" NOT NULL,
                identity      text COLLATE "C" NOT NULL,
                label         text COLLATE "C" NOT NULL,
                verdict       text NOT NULL,
                config        text NOT NULL DEFAULT '{}',
                secrets       bytea NOT NULL,
                key_id        text COLLATE "C",
                linked_at     timestamptz NOT NULL,
                checked_at    timestamptz,
                expires_at    timestamptz,
                expiring_at   timestamptz,
                last_error    text,
                details       text NOT NULL DEFAULT '{}',
                owner         text COLLATE "C" NOT NULL DEFAULT '',
                owner_name    text,
                next_check_at timestamptz,
                retry_at      timestamptz,
                lease_token   text,
                lease_until   timestamptz,
                attempts      integer NOT NULL DEFAULT 0,
                UNIQUE (owner, provider_id, identity)
            )
            """,
            "CREATE INDEX accounts_listing ON accounts (provider_id, label, id, seq)",
            "CREATE INDEX accounts_owner ON accounts (owner, provider_id, label, id, seq)",
            "CREATE INDEX accounts_due ON accounts (next_check_at NULLS FIRST)",
            "CREATE INDEX accounts_checked ON accounts (checked_at NULLS FIRST)",
            "CREATE INDEX accounts_key_id ON accounts (key_id)",
            """
            CREATE TABLE links (
                id              text COLLATE "C" PRIMARY KEY,
                kind            text NOT NULL DEFAULT 'link',
                provider_id     text,
                account_id      text,
                note            text,
                created_at      timestamptz NOT NULL,
                expires_at      timestamptz NOT NULL,
                used_at         timestamptz,
                used_account_id text,
                revoked_at      timestamptz,
                failed_attempts integer NOT NULL DEFAULT 0,
                owner           text NOT NULL DEFAULT '',
                owner_name      text,
                return_url      text,
                state           text
            )
            """,
            "CREATE INDEX links_created ON links (created_at, id)",
            """
            CREATE TABLE webhook_outbox (
                seq             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                event_id        text NOT NULL UNIQUE,
                event_type      text NOT NULL,
                body            text NOT NULL,
                created_at      double precision NOT NULL,
                next_attempt_at double precision NOT NULL,
                attempts        integer NOT NULL DEFAULT 0,
                last_error      text,
                lease_until     double precision,
                delivered_at    double precision,
                failed_at       double precision
            )
            """,
            "CREATE INDEX webhook_outbox_due"
            " ON webhook_outbox (next_attempt_at, seq) WHERE delivered_at IS NULL"
            " AND failed_at IS NULL",
            """
            CREATE TABLE check_runs (
                token       text PRIMARY KEY,
                started_at  timestamptz NOT NULL,
                alive_until timestamptz NOT NULL
            )
            """,
            "CREATE TABLE key_checks (key_id text PRIMARY KEY, token text NOT NULL)",
        ),
    ),
    # Per-provider budgets and pauses (`hub_core.budgets`): a token bucket (*rate* checks per
    # second up to *burst*; NULL rate: no budget) drawn once per lease, and the provider's
    # recent 429s with the pause they started. Only adds a table: older hubs keep running.
    (
        1,
        (
            """
            CREATE TABLE provider_limits (
                provider_id   text COLLATE "C" PRIMARY KEY,
                rate          double precision,
                burst         integer,
                tokens        double precision,
                refilled_at   timestamptz,
                limited_count integer NOT NULL DEFAULT 0,
                limited_since timestamptz,
                paused_until  timestamptz
            )
            """,
        ),
    ),
    # The accounts a lease holds, found by its token: a release, `held_elsewhere` and the
    # batch of verdicts (`_BATCH_UPDATE`, whose plan starts from it) read the whole table
    # without it. Partial: only the rows leased at the moment are in it, so it stays a few
    # batches small. Only adds an index.
    (
        1,
        ("CREATE INDEX accounts_leased ON accounts (lease_token) WHERE lease_token IS NOT NULL",),
    ),
    # The orders leases take accounts in, whole, as indexes: the due time (no time: first, as
    # -infinity), then seq. With the due time alone, a lease's ORDER BY ... seq LIMIT read and
    # sorted every due row; and a NULL cannot stand in the row comparison a lease looks on
    # from (`PostgresStore.lease`). Only replaces two indexes: older hubs keep running.
    (
        1,
        (
            "DROP INDEX accounts_due",
            "DROP INDEX accounts_checked",
            f"CREATE INDEX accounts_due ON accounts ({_due_key('next_check_at')}, seq)",
            f"CREATE INDEX accounts_checked ON accounts ({_due_key('checked_at')}, seq)",
        ),
    ),
    # When each account is due and who holds it, in a narrow table of its own: a lease
    # writes only there (4 index entries, not the 9 of an `accounts` row), and a verdict's
    # `UPDATE` of `accounts` changes no indexed column, so with room left on its page (a
    # fillfactor of 50) it is a HOT update, writing no index entry at all. `checked_at` stays
    # in `accounts` for reading; the copy here is the one the leases order by. Every account
    # gets its row from a trigger, however it is inserted. Older hubs lease by the columns
    # this drops: they may not run beside it.
    (
        5,
        (
            """
            CREATE TABLE account_schedule (
                seq           bigint PRIMARY KEY REFERENCES accounts (seq) ON DELETE CASCADE,
                checked_at    timestamptz,
                next_check_at timestamptz,
                retry_at      timestamptz,
                lease_token   text,
                lease_until   timestamptz
            )
            """,
            """
            INSERT INTO account_schedule
                (seq, checked_at, next_check_at, retry_at, lease_token, lease_until)
            SELECT seq, checked_at, next_check_at, retry_at, lease_token, lease_until
            FROM accounts
            """,
            "CREATE INDEX account_schedule_due"
            f" ON account_schedule ({_due_key('next_check_at')}, seq)",
            "CREATE INDEX account_schedule_checked"
            f" ON account_schedule ({_due_key('checked_at')}, seq)",
            "CREATE INDEX account_schedule_leased ON account_schedule (lease_token)"
            " WHERE lease_token IS NOT NULL",
            """
            CREATE FUNCTION hub_account_scheduled() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                INSERT INTO account_schedule (seq, checked_at) VALUES (NEW.seq, NEW.checked_at);
                RETURN NULL;
            END $$
            """,
            "CREATE TRIGGER accounts_scheduled AFTER INSERT ON accounts"
            " FOR EACH ROW EXECUTE FUNCTION hub_account_scheduled()",
            "DROP INDEX accounts_due",
            "DROP INDEX accounts_checked",
            "DROP INDEX accounts_leased",
            "ALTER TABLE accounts DROP COLUMN next_check_at, DROP COLUMN retry_at,"
            " DROP COLUMN lease_token, DROP COLUMN lease_until",
            "ALTER TABLE accounts SET (fillfactor = 50)",
        ),
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

#: `hub_core.store._STATUS_SQL` in PostgreSQL: the status as of %(now)s (%(soon)s: now plus
#: the 7-day window, for a row whose expiring_at is not known).
_STATUS_SQL = (
    "(CASE WHEN verdict = 'active' AND expires_at IS NOT NULL AND expires_at <= %(now)s"
    " THEN 'expired' WHEN verdict = 'active' AND expires_at IS NOT NULL"
    " AND (expiring_at <= %(now)s OR (expiring_at IS NULL AND expires_at <= %(soon)s))"
    " THEN 'expiring' ELSE verdict END)"
)
_ROW = "seq AS row_number, *"
_BY_ID = "(id = %(id)s OR seq = %(seq)s)"
#: `_BY_ID` of the accounts row ``a`` in a statement that joins its schedule ``s``.
_A_BY_ID = "(a.id = %(id)s OR a.seq = %(seq)s)"
#: An account's row ``a`` and its schedule's ``s``, joined (`account_schedule`).
_SCHEDULED = "accounts AS a JOIN account_schedule AS s ON s.seq = a.seq"
_NOT_CHECKED_SINCE = f"{_due_key('s.checked_at')} < %(before)s"
_DB_NOW = "coalesce(%(now)s::timestamptz, now())"
#: What a verdict sets on its schedule's row under a lease: the lease ended, due at %(due)s.
_ENDED = ", lease_token = NULL, lease_until = NULL, next_check_at = %(due)s, retry_at = NULL"
#: Locks the schedule's row of one account (`_A_BY_ID`). Every write that touches both rows
#: of an account locks its schedule's first, as a batch of verdicts does, so that a relink or
#: an unlink beside a worker's verdicts waits instead of deadlocking.
_LOCK_SCHEDULE = f"SELECT s.seq FROM {_SCHEDULED} WHERE {_A_BY_ID} FOR UPDATE OF s"  # noqa: S608


def redact_url(url: str) -> str:
    """*url* with its password masked (in the address and in a ``password=`` parameter).

    Split as libpq splits it, not as `urllib.parse` would: libpq reads the user and password
    up to the ``@`` before the first ``/``, so a ``?``, ``#`` or ``[`` typed in a password is
    part of it (urllib would end the address there and find no password to mask).
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "(a PostgreSQL URL that cannot be shown)"
    at = rest.split("/", 1)[0].rfind("@")
    user = ""
    if at >= 0:
        name, colon, _password = rest[:at].partition(":")
        user, rest = f"{name}{':***' if colon else ''}@", rest[at + 1 :]
    address, question, query = rest.partition("?")
    if question:
        query = "&".join(
            f"{part.partition('=')[0]}=***"
            if part.partition("=")[0].strip().lower() == "password"
            else part
            for part in query.split("&")
        )
    return f"{scheme}://{user}{address}{question}{query}"


def _passwords(url: str) -> list[str]:
    """The password of *url* as libpq reads it, and as typed (percent-encoded); or none."""
    try:
        password = conninfo_to_dict(url).get("password")
    except psycopg.Error:
        return []
    if not isinstance(password, str) or not password:
        return []
    return sorted({password, urllib.parse.quote(password, safe="")}, key=len, reverse=True)


def _describe(exc: psycopg.Error, url: str, shown: str) -> str:
    """What went wrong, without a bound value or the password."""
    sqlstate = exc.sqlstate
    if sqlstate is not None:
        if sqlstate.startswith("22"):
            # Data exceptions quote the value they refused: name the condition only.
            return f"{type(exc).__name__} (SQLSTATE {sqlstate})"
        text = exc.diag.message_primary or type(exc).__name__
    else:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    text = text.replace(url, shown)
    for password in _passwords(url):
        text = text.replace(password, "***")
    return text


#: How long a worker's store call keeps trying while the database is away (a restart, a crash
#: and its recovery, a failover, a reset link) before it fails with the last error.
RECONNECT_FOR = 60.0
# The session is gone, not the statement refused: a connection exception (class 08), the
# server shutting down, crashed, or not accepting connections yet (57P01-57P03), or the session
# ended by a timeout (idle in a transaction 25P03, idle 57P05: docs/deploying.md sets the first).
_LOST_STATES = ("57P01", "57P02", "57P03", "25P03", "57P05")


def _connection_lost(exc: psycopg.Error) -> bool:
    state = exc.sqlstate
    if state is None:  # libpq's own: the socket closed, a connect failed, the pool timed out
        return isinstance(exc, psycopg.OperationalError)
    return state.startswith("08") or state in _LOST_STATES


class _ConnectionLost(StoreError):
    """The database went away during a call: its session ended, or no connection could be made."""


_P = ParamSpec("_P")
_T = TypeVar("_T")


def _reconnecting(
    method: Callable[Concatenate[PostgresStore, _P], _T],
) -> Callable[Concatenate[PostgresStore, _P], _T]:
    """*method*, called again while the database is away, for up to `RECONNECT_FOR` seconds.

    Only for calls whose second attempt changes nothing the first did, committed or not (its
    reply may be what was lost): reads, a lease (a lost reply strands one batch until that lease
    ends, as a killed worker's would), a release, and verdicts under a lease's token (one that
    committed finds its lease ended: `LeaseLost`, nothing written twice). The pool replaces the
    broken connections; a worker waits here instead of exiting.
    """

    @functools.wraps(method)
    def again(self: PostgresStore, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        deadline = time.monotonic() + RECONNECT_FOR
        pause = 0.05
        while True:
            try:
                return method(self, *args, **kwargs)
            except _ConnectionLost:
                if time.monotonic() + pause > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    return again


def _sqlite_shaped(row: Mapping[str, Any]) -> sqlite3.Row:
    # The shared row readers (`store_rows`, `_check_same_place`) read columns by name only,
    # which a psycopg dict row does the same way.
    return cast("sqlite3.Row", row)


def _account(row: Mapping[str, Any], now: datetime) -> Account:
    return account_from_row(_sqlite_shaped(row), now)


def _as_stored(value: datetime | None) -> datetime | None:
    # psycopg binds and reads a timestamptz as a datetime: stored as it is.
    return value


def _key(account_id: str) -> dict[str, object]:
    found, seq = by_id(account_id)
    return {"id": found, "seq": seq}


@contextlib.contextmanager
def _database_errors(url: str, shown: str) -> Iterator[None]:
    """A psycopg error as a `StoreError` naming the database by *shown*."""
    try:
        yield
    except psycopg.Error as exc:
        # From None: psycopg's own message (its DETAIL) may quote a bound value. A lost
        # connection is its own class: a worker's calls that a repeat cannot double retry it.
        error = _ConnectionLost if _connection_lost(exc) else StoreError
        raise error(f"the account database {shown} failed: {_describe(exc, url, shown)}") from None


def _connect(url: str, shown: str) -> psycopg.Connection[dict[str, Any]]:
    """A connection of its own (not the pool's), for opening and for `hub db`."""
    try:
        return psycopg.connect(url, connect_timeout=_CONNECT_TIMEOUT, **_connect_options())
    except psycopg.OperationalError as exc:
        raise StoreError(
            f"cannot open the account database {shown}: {_describe(exc, url, shown)}"
        ) from None


#: Whether hub_meta is in a schema of the search path (true or false, in SQL).
_HUB_META_PRESENT = (
    "EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n"
    " ON n.oid = c.relnamespace WHERE c.relname = 'hub_meta'"
    " AND n.nspname = ANY(current_schemas(false)))"
)


def _meta(conn: psycopg.Connection[dict[str, Any]]) -> tuple[int, int]:
    """The database's (schema_version, min_reader_version); (0, 0) before any schema."""
    # From pg_class itself, not to_regclass(): the catalog cache of a session that waited
    # for the migration lock may not yet show the table another host just created.
    found = conn.execute(f"SELECT {_HUB_META_PRESENT} AS present").fetchone()
    if not found or not found["present"]:
        return 0, 0
    row = conn.execute("SELECT schema_version, min_reader_version FROM hub_meta").fetchone()
    return (0, 0) if row is None else (row["schema_version"], row["min_reader_version"])


def _refuse_newer(conn: psycopg.Connection[dict[str, Any]], shown: str) -> tuple[int, int]:
    """`_meta`, or `StoreError` when the schema is newer than this hub may use."""
    version, min_reader = _meta(conn)
    if version > SCHEMA_VERSION and min_reader > SCHEMA_VERSION:
        raise StoreError(
            f"the account database {shown} was made by a newer hub (schema version "
            f"{version}, readable by hubs of schema version {min_reader} and later; this hub "
            f"knows up to {SCHEMA_VERSION}): upgrade hub-core to use it; nothing was changed"
        )
    return version, min_reader


def _meta_upsert(target: int, min_reader: int) -> str:
    """The bookkeeping statement of migration *target* (its values written in)."""
    # min_reader_version never goes down: a newer hub's bar stays where it put it.
    # Two integers of hub's own migrations are written in.
    return (
        "INSERT INTO hub_meta (id, schema_version, min_reader_version)"  # noqa: S608
        f" VALUES (true, {int(target)}, {int(min_reader)}) ON CONFLICT (id) DO UPDATE"
        " SET schema_version = EXCLUDED.schema_version, min_reader_version ="
        " greatest(hub_meta.min_reader_version, EXCLUDED.min_reader_version)"
    )


def _migrate(conn: psycopg.Connection[dict[str, Any]], url: str, shown: str) -> list[int]:
    """Apply the missing migrations, each in one transaction under the migration lock; the
    versions this call applied (another host may have applied the others meanwhile)."""
    applied = []
    for target, (min_reader, steps) in enumerate(MIGRATIONS, start=1):
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_LOCKS, _MIGRATE_LOCK))
                # Another host may have migrated while this one waited for the lock.
                version, _ = _refuse_newer(conn, shown)
                if version >= target:
                    continue
                for sql in steps:
                    conn.execute(sql)
                conn.execute(_meta_upsert(target, min_reader))
        except psycopg.errors.InsufficientPrivilege as exc:
            # A role kept from changing the schema (operators who forbid application DDL):
            # say what to run, not only what PostgreSQL refused.
            raise StoreError(
                f"the account database {shown} is at schema version {target - 1} and this hub "
                f"needs {SCHEMA_VERSION}, but its role may not change the schema "
                f"({_describe(exc, url, shown)}): run `hub db upgrade` as a role that may (or "
                "give a DBA the script `hub db upgrade --sql` prints), then start again; the "
                "refused migration changed nothing"
            ) from None
        applied.append(target)
    return applied


def schema_status(url: str) -> SchemaStatus:
    """Where the schema of the database at *url* stands against this hub's (`hub db status`).

    Reads ``hub_meta`` only: needs no secret key and changes nothing. Raise `StoreError` when
    the database cannot be reached.
    """
    shown = redact_url(url)
    with _database_errors(url, shown), _connect(url, shown) as conn:
        version, min_reader = _meta(conn)
    return SchemaStatus(
        backend="postgresql",
        database=shown,
        version=version,
        hub_version=SCHEMA_VERSION,
        min_reader_version=min_reader if version else None,
    )


def upgrade(url: str) -> tuple[int, int]:
    """Apply the pending migrations to the database at *url* as opening a store does (each in
    its transaction under the migration lock); return the schema version before and after.

    Needs no secret key: a migration changes tables, never a secret, and the keys are checked
    (and a new database's key recorded) when a store opens it. Raise `StoreError` when the
    database cannot be reached, is too new for this hub, or the role may not change it.
    """
    shown = redact_url(url)
    with _database_errors(url, shown), _connect(url, shown) as conn:
        version, _ = _refuse_newer(conn, shown)
        applied = _migrate(conn, url, shown) if version < SCHEMA_VERSION else []
        after, _ = _meta(conn)
    return (applied[0] - 1 if applied else after), after


def pending_sql(url: str) -> str:
    """The statements `upgrade` would run on the database at *url*, as a script for psql
    (`migration_sql` from its schema version). Reads the version only; changes nothing."""
    shown = redact_url(url)
    with _database_errors(url, shown), _connect(url, shown) as conn:
        version, _ = _refuse_newer(conn, shown)
        row = conn.execute("SELECT current_schema() AS name").fetchone()
    return migration_sql(version, schema=row["name"] if row else None)


def migration_sql(version: int, *, schema: str | None = None) -> str:
    """A psql script that brings a database at schema *version* to `SCHEMA_VERSION`: per
    migration ``BEGIN``, hub's migration lock, a check of the version, the migration's
    statements, its ``hub_meta`` bookkeeping, ``COMMIT`` (what `upgrade` runs, literally).

    *schema*, the one the application's connection uses, is set first: the role that runs
    the script may have another search path, and would build the tables where hub never
    looks.
    """
    if version >= SCHEMA_VERSION:
        what = f"is at version {version}; this hub knows up to {SCHEMA_VERSION}"
    else:
        what = f"from version {version} to {SCHEMA_VERSION}"
    lines = [
        f"-- hub-core: the account schema {what} (PostgreSQL).",
        "-- Run it as a role that may create tables in the schema hub uses, for example",
        "--   psql -v ON_ERROR_STOP=1 -h HOST -U ROLE -d DATABASE -f upgrade.sql",
        "-- (the password from ~/.pgpass or PGPASSWORD, never on the command line).",
        "-- Each migration is one transaction under hub's migration lock and first checks the",
        "-- version it starts from: on a database another upgrade moved meanwhile it stops,",
        "-- changing nothing.",
    ]
    if schema is not None:
        quoted = '"' + schema.replace('"', '""') + '"'
        lines += [
            "-- The schema the application's connection uses:",
            f"SET search_path = {quoted};",
        ]
    if version >= SCHEMA_VERSION:
        lines.append(f"-- Already at schema {version}: nothing to run.")
    for target in range(max(version, 0) + 1, SCHEMA_VERSION + 1):
        min_reader, steps = MIGRATIONS[target - 1]
        lines += [
            "",
            f"-- Migration {target} (hubs of schema version {min_reader} and later can use it)",
            "BEGIN;",
            f"SELECT pg_advisory_xact_lock({_LOCKS}, {_MIGRATE_LOCK});",
            _version_check(target - 1),
            *(textwrap.dedent(sql).strip() + ";" for sql in steps),
            _meta_upsert(target, min_reader) + ";",
            "COMMIT;",
        ]
    return "\n".join(lines) + "\n"


def _version_check(version: int) -> str:
    """A statement that fails its transaction unless the schema is at *version*."""
    present = _HUB_META_PRESENT
    refuse = (
        f"RAISE EXCEPTION 'hub: the account schema is not at version {int(version)}: "
        "run `hub db status`; nothing was changed';"
    )
    if version == 0:
        return f"DO $$ BEGIN IF {present} THEN {refuse} END IF; END $$;"
    # Nested: PL/pgSQL plans the read of hub_meta only once it is known to be there.
    return (
        f"DO $$ BEGIN IF NOT {present} THEN {refuse} ELSIF (SELECT schema_version FROM "  # noqa: S608
        f"hub_meta) IS DISTINCT FROM {int(version)} THEN {refuse} END IF; END $$;"
    )


#: What a verdict's values raise that PostgreSQL cannot store (`store_rules.UNSTORABLE`).
_UNSTORABLE: tuple[type[Exception], ...] = (*UNSTORABLE, psycopg.DataError, psycopg.IntegrityError)
# A batch of verdicts is also written one at a time after a deadlock: rows held since their
# lease are written in the batch's order, not locked by id first, so two checkers on rows each
# leased after the other's lease expired (a rare race) may wait on each other.
_UNSTORABLE_OR_DEADLOCK: tuple[type[Exception], ...] = (
    *_UNSTORABLE,
    psycopg.errors.DeadlockDetected,
)

# A batch of verdicts in one statement (`PostgresStore._record_batch`): a failed check keeps
# the label and the expiry, a passed one writes them; under a lease, only where it still holds.
# The schedule's rows first, locked and checked (the lease's token; the account's row as
# leased, its `xmin`), ending the lease; then each account whose schedule was written, its
# `xmin` checked again under its lock (a row another transaction wrote meanwhile is left).
# The arrays go in binary (``%b``): in text, psycopg writes each element in Python and escapes
# every quote of it with a regex (details are JSON, full of quotes): a quarter of what a
# worker's store thread did per check. A value the server then refuses (a NUL in
# text) fails the statement, as psycopg's own refusal did: `_record_one` writes each alone.
_BATCH_COLUMNS = (
    "ids",
    "ok",
    "labels",
    "verdicts",
    "expires",
    "expiring",
    "errors",
    "details",
    "row_versions",
)
_BATCH_UPDATE = """
    WITH v AS (
        SELECT * FROM unnest(
            %(ids)b::text[], %(ok)b::boolean[], %(labels)b::text[], %(verdicts)b::text[],
            %(expires)b::timestamptz[], %(expiring)b::timestamptz[], %(errors)b::text[],
            %(details)b::text[], %(row_versions)b::text[]
        ) AS v(id, ok, label, verdict, expires_at, expiring_at, error, details, row_version)
    ), scheduled AS (
        UPDATE account_schedule AS s SET checked_at = %(now)s{ended}
        FROM v JOIN accounts AS a ON a.id = v.id
        WHERE s.seq = a.seq AND (%(token)s::text IS NULL OR s.lease_token = %(token)s)
            AND (v.row_version IS NULL OR a.xmin = v.row_version::xid)
        RETURNING s.seq
    )
    UPDATE accounts AS a SET
        label = CASE WHEN v.ok THEN v.label ELSE a.label END,
        verdict = v.verdict, checked_at = %(now)s,
        expires_at = CASE WHEN v.ok THEN v.expires_at ELSE a.expires_at END,
        expiring_at = CASE WHEN v.ok THEN v.expiring_at ELSE a.expiring_at END,
        last_error = v.error, details = v.details
    FROM v, scheduled
    WHERE a.id = v.id AND a.seq = scheduled.seq
        AND (v.row_version IS NULL OR a.xmin = v.row_version::xid)
    RETURNING {returned}
"""


class _Pool:
    """The connection pool of one URL, shared by a store and its `connect_again` copies."""

    def __init__(self, url: str) -> None:
        raw = os.environ.get(POOL_SIZE_ENV) or "4"
        if not (raw.isascii() and raw.isdigit()):
            raise ConfigurationError(
                POOL_SIZE_ENV,
                f"{POOL_SIZE_ENV}={raw!r}: the connections a store keeps to PostgreSQL are a "
                "whole number (4 when unset)",
            )
        size = int(raw)
        self.pool: ConnectionPool[psycopg.Connection[dict[str, Any]]] = ConnectionPool(
            url,
            min_size=1,
            max_size=max(1, size),
            kwargs=_connect_options(),
            check=ConnectionPool.check_connection,
            open=False,
            name="hub",
        )
        self.users = 1
        self._lock = threading.Lock()

    def share(self) -> _Pool:
        with self._lock:
            self.users += 1
        return self

    def release(self) -> None:
        with self._lock:
            self.users -= 1
            last = self.users == 0
        if last:
            self.pool.close()


def _connect_options() -> dict[str, Any]:
    # No server-side prepared statements: safe behind PgBouncer in transaction mode.
    return {"autocommit": True, "prepare_threshold": None, "row_factory": dict_row}


# `rotate_keys`'s two passes: the first skips the rows other sessions hold, the second waits.
_ROTATION_BATCH = (
    "SELECT seq, id, secrets, key_id FROM accounts"
    " WHERE key_id = ANY(%(old)s::text[]) AND seq > %(after)s"
    " AND seq <> ALL(%(skipped)s::bigint[])"
    " ORDER BY seq LIMIT %(n)s FOR UPDATE"
)
_ROTATION_BATCHES = (_ROTATION_BATCH + " SKIP LOCKED", _ROTATION_BATCH)


class PostgresStore(SharedMethods):
    """The linked accounts of one PostgreSQL database: the `AccountStore` for many hosts.

    *url* is a ``postgresql://`` URL (libpq's, with a password or ``PGPASSWORD`` /
    ``~/.pgpass``). *secret_key* is a key, several (``"new,old"`` or a sequence), or a
    `KeyRing`; without it the keys come from ``HUB_SECRET_KEYS``, else ``HUB_SECRET_KEY``,
    else the store refuses to open: hub never makes a key for a shared database.

    Raise `StoreError` when the database cannot be reached, was made by a hub too new for this
    one, or a key fails its check, is unknown to the database, or was dropped while accounts
    still use it; in each case nothing is changed.
    """

    def __init__(
        self,
        url: str,
        *,
        secret_key: KeyRing | str | bytes | Sequence[str | bytes] | None = None,
    ) -> None:
        self._url = url
        self._shown = redact_url(url)
        self._pool: _Pool | None = None
        # The rows this store leased, until their verdicts are recorded (`HeldRows`).
        self._held = HeldRows()
        self._cursors = LeaseCursors()
        ring = self._configured_ring(secret_key)
        self._ring = self._open(ring)
        pool = _Pool(url)
        try:
            with self._errors():
                pool.pool.open(wait=True, timeout=_CONNECT_TIMEOUT)
        except BaseException:
            pool.release()
            raise
        self._pool = pool

    # --- opening --------------------------------------------------------------------------------

    def _configured_ring(
        self, secret_key: KeyRing | str | bytes | Sequence[str | bytes] | None
    ) -> KeyRing:
        if secret_key is not None:
            return KeyRing.coerce(secret_key, source="the secret_key argument")
        make = (
            "make one with `hub keys new` and set it, the same on every host that opens this "
            "database"
        )
        for name in (KEYS_ENV, KEY_ENV):
            value = os.environ.get(name)
            if value is not None and not value.strip():
                raise StoreError(f"{name} is set but empty: set it to the store's key ({make})")
        # No key file on PostgreSQL: from_environment's file is never read.
        from pathlib import Path

        ring = KeyRing.from_environment(Path(os.devnull))
        if ring is None:
            raise StoreError(
                f"no secret key for the account database {self._shown}: hub never makes a key "
                "for a PostgreSQL database (a key made on one host would lock out the others). "
                f"Set {KEYS_ENV} (or {KEY_ENV}) to the key the database was created with, or, "
                f"for a new database, {make}; nothing was read or changed"
            )
        return ring

    def _open(self, ring: KeyRing) -> KeyRing:
        """Migrate the schema and check the keys, on a connection of its own."""
        with _database_errors(self._url, self._shown), _connect(self._url, self._shown) as conn:
            try:
                version, _ = _refuse_newer(conn, self._shown)
                if version < SCHEMA_VERSION:
                    _migrate(conn, self._url, self._shown)
                return self._unlock(conn, ring)
            except psycopg.errors.InsufficientPrivilege as exc:
                # The schema is there, but this role may not use its rows: say which grants.
                raise StoreError(
                    f"the account database {self._shown} refused this role "
                    f"({_describe(exc, self._url, self._shown)}): grant it SELECT, INSERT, "
                    "UPDATE and DELETE on every table of hub's schema (again after each "
                    "`hub db upgrade`); nothing was changed"
                ) from None

    def _unlock(self, conn: psycopg.Connection[dict[str, Any]], ring: KeyRing) -> KeyRing:
        """Check every key against the database, then record a check for each new one."""
        checks = self._checked(conn, ring)
        if all(key_id in checks for key_id in ring.ids):
            return ring
        with conn.transaction():
            # Two hosts opening a new database with different keys: the first one's key wins.
            conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_LOCKS, _KEYS_LOCK))
            checks = self._checked(conn, ring)
            for key_id in ring.ids:
                if key_id not in checks:
                    conn.execute(
                        "INSERT INTO key_checks (key_id, token) VALUES (%s, %s)",
                        (key_id, ring.check_token(key_id)),
                    )
        return ring

    def _checked(self, conn: psycopg.Connection[dict[str, Any]], ring: KeyRing) -> dict[str, str]:
        """The key checks, once each configured key passed its own and none was dropped."""
        checks = {
            str(row["key_id"]): str(row["token"])
            for row in conn.execute("SELECT key_id, token FROM key_checks")
        }
        known = passing_keys(ring, checks, f"the account database {self._shown}")
        if checks and not known:
            ids = ", ".join(sorted(checks))
            raise StoreError(
                f"none of the keys from {ring.source} matches the account database "
                f"{self._shown}: it knows key id{'s' * (len(checks) != 1)} {ids}, the configured "
                f"keys have {', '.join(ring.ids)}. Use the key the database was created with; "
                "nothing was read or changed"
            )
        dropped = {
            key_id or "(none)": self._count_on(conn, key_id)
            for key_id in self._row_key_ids(conn)
            if key_id not in ring
        }
        if dropped:
            raise dropped_keys(self._shown, ring, dropped)
        return checks

    def _row_key_ids(self, conn: psycopg.Connection[dict[str, Any]]) -> list[str | None]:
        """The distinct key ids of the accounts (None for rows without one): a skip scan of
        the key id index, a handful of index pages however many accounts there are."""
        ids: list[str | None] = []
        if conn.execute("SELECT 1 FROM accounts WHERE key_id IS NULL LIMIT 1").fetchone():
            ids.append(None)
        rows = conn.execute(
            """
            WITH RECURSIVE ids AS (
                (SELECT key_id FROM accounts WHERE key_id IS NOT NULL ORDER BY key_id LIMIT 1)
                UNION ALL
                SELECT (SELECT key_id FROM accounts WHERE key_id > ids.key_id
                        ORDER BY key_id LIMIT 1)
                FROM ids WHERE ids.key_id IS NOT NULL
            )
            SELECT key_id FROM ids WHERE key_id IS NOT NULL
            """
        ).fetchall()
        return ids + [str(row["key_id"]) for row in rows]

    def _count_on(self, conn: psycopg.Connection[dict[str, Any]], key_id: str | None) -> int:
        row = conn.execute(
            "SELECT count(*) AS n FROM accounts WHERE key_id IS NOT DISTINCT FROM %s", (key_id,)
        ).fetchone()
        return int(row["n"]) if row else 0

    # --- lifecycle ------------------------------------------------------------------------------

    @property
    def waits_on_server(self) -> bool:
        """Yes: a call mostly waits for the server (`AccountStore.waits_on_server`)."""
        return True

    @property
    def path(self) -> Path:
        """The database's URL, its password masked (a PostgreSQL store has no file)."""
        from pathlib import Path

        return Path(self._shown)

    @property
    def url(self) -> str:
        """The database's URL, its password masked: what messages show."""
        return self._shown

    def connect_again(self) -> PostgresStore:
        """Another store on this database with the same keys, sharing this one's pool."""
        other = object.__new__(PostgresStore)
        other._url, other._shown, other._ring = self._url, self._shown, self._ring
        other._pool = self._live.share()
        other._held = HeldRows()
        other._cursors = LeaseCursors()
        return other

    def close(self) -> None:
        """Give back this store's share of the pool (the last one closes it); twice is harmless."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.release()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<PostgresStore {self._shown}>"

    @property
    def _live(self) -> _Pool:
        if self._pool is None:
            raise StoreError(f"the account store {self._shown} is closed")
        return self._pool

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        with _database_errors(self._url, self._shown):
            yield

    @contextlib.contextmanager
    def _read(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        with self._errors(), self._live.pool.connection() as conn:
            yield conn

    @contextlib.contextmanager
    def _write(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        with self._errors(), self._live.pool.connection() as conn, conn.transaction():
            yield conn

    def _db_now(self, conn: psycopg.Connection[dict[str, Any]], now: datetime | None) -> datetime:
        """*now*, or the database's clock (the time of this transaction)."""
        if now is not None:
            return _now(now)
        row = conn.execute("SELECT now() AS now").fetchone()
        assert row is not None
        return _now(row["now"])

    # --- accounts -------------------------------------------------------------------------------

    def save(
        self,
        provider_id: str,
        verified: Verified,
        credentials: Credentials,
        *,
        now: datetime | None = None,
        account_id: str | None = None,
        link_id: str | None = None,
        owner: str | None = None,
        owner_name: str | None = None,
    ) -> Account:
        """Store a freshly checked key and return its account, ``active`` (`AccountStore.save`)."""
        now = _now(now)
        owner, owner_name = check_owner(owner), clean_owner_name(owner_name)
        config, key_id, token = sealed(self._ring, credentials)
        details = _details_json(verified.details)
        values = {
            "provider": provider_id,
            "identity": verified.identity,
            "label": verified.label,
            "config": config,
            "secrets": token,
            "key_id": key_id,
            "now": now,
            "expires_at": verified.expires_at,
            "expiring_at": expiring_from(verified.expires_at, verified.created_at),
            "details": details,
        }
        with self._write() as conn:
            if link_id is not None:
                link = self._check_link(conn, link_id, provider_id, account_id, now)
                owner, owner_name = link.owner, link.owner_name
            if account_id is not None:
                replaced = self._replace_key(conn, account_id, verified, values, owner)
                if link_id is not None:
                    self._mark_used(conn, link_id, replaced.id, now)
                return replaced
            values.update(owner=owner or "", owner_name=owner_name)
            # Held to the end of the transaction: two saves of one identity compare and write
            # one after the other, so the same-place check sees what the upsert replaces.
            conn.execute(
                "SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                (_SAVE_LOCK, json.dumps([owner or "", provider_id, verified.identity])),
            )
            stored = conn.execute(
                f"SELECT a.id, a.label, a.config FROM {_SCHEDULED}"  # noqa: S608
                " WHERE a.owner = %(owner)s AND a.provider_id = %(provider)s"
                " AND a.identity = %(identity)s FOR UPDATE OF s",  # `_LOCK_SCHEDULE`'s order
                values,
            ).fetchone()
            if stored is not None:
                _check_same_place(_sqlite_shaped(stored), verified, credentials.public())
            new_id = _new_id()
            while conn.execute("SELECT 1 FROM accounts WHERE id = %s", (new_id,)).fetchone():
                new_id = _new_id()
            values["id"] = new_id
            row = conn.execute(
                f"""
                INSERT INTO accounts (id, provider_id, identity, label, verdict, config, secrets,
                                      key_id, linked_at, checked_at, expires_at, expiring_at,
                                      last_error, details, owner, owner_name)
                VALUES (%(id)s, %(provider)s, %(identity)s, %(label)s, 'active', %(config)s,
                        %(secrets)s, %(key_id)s, %(now)s, %(now)s, %(expires_at)s,
                        %(expiring_at)s, NULL, %(details)s, %(owner)s, %(owner_name)s)
                ON CONFLICT (owner, provider_id, identity) DO UPDATE SET
                    label = EXCLUDED.label, verdict = 'active', config = EXCLUDED.config,
                    secrets = EXCLUDED.secrets, key_id = EXCLUDED.key_id,
                    checked_at = EXCLUDED.checked_at, expires_at = EXCLUDED.expires_at,
                    expiring_at = EXCLUDED.expiring_at, last_error = NULL,
                    details = EXCLUDED.details,
                    owner_name = coalesce(EXCLUDED.owner_name, accounts.owner_name)
                RETURNING {_ROW}
                """,  # noqa: S608
                values,
            ).fetchone()
            assert row is not None
            if stored is not None:  # saved again: checked now (a new row's is the trigger's)
                _schedule_checked(conn, row["row_number"], now)
            saved = _account(row, now)
            if link_id is not None:
                self._mark_used(conn, link_id, saved.id, now)
        return saved

    def _replace_key(
        self,
        conn: psycopg.Connection[dict[str, Any]],
        account_id: str,
        verified: Verified,
        values: dict[str, Any],
        owner: str | None,
    ) -> Account:
        key = _key(account_id)
        conn.execute(_LOCK_SCHEDULE, key)
        found = conn.execute(
            f"SELECT provider_id, identity, owner FROM accounts WHERE {_BY_ID} FOR UPDATE",  # noqa: S608
            key,
        ).fetchone()
        check_relink(found, account_id, values["provider"], verified.identity, owner)
        row = conn.execute(
            f"""
            UPDATE accounts SET label = %(label)s, verdict = 'active', config = %(config)s,
                secrets = %(secrets)s, key_id = %(key_id)s, checked_at = %(now)s,
                expires_at = %(expires_at)s, expiring_at = %(expiring_at)s, last_error = NULL,
                details = %(details)s
            WHERE {_BY_ID} RETURNING {_ROW}
            """,  # noqa: S608
            {**values, **key},
        ).fetchone()
        assert row is not None
        _schedule_checked(conn, row["row_number"], values["now"])
        return _account(row, values["now"])

    def get(self, id_or_prefix: str, *, owner: str | None = None) -> Account:
        """The account with this id, or the only one whose id starts with it."""
        prefix = id_or_prefix.strip().lower()
        if not prefix:
            raise AccountNotFound(id_or_prefix)
        params: dict[str, object] = {
            **_key(prefix),
            "owner": owner,
            "n": len(prefix),
            "p": prefix,
            "end": prefix + _LAST_CHARACTER,
        }
        mine = "" if owner is None else " AND owner = %(owner)s"
        with self._read() as conn:
            rows = (
                conn.execute(f"SELECT {_ROW} FROM accounts WHERE {_BY_ID}{mine}", params).fetchall()  # noqa: S608
                # The range lets the id's index find the candidates; left() keeps it exact.
                or conn.execute(
                    f"SELECT {_ROW} FROM accounts WHERE id >= %(p)s AND id < %(end)s"  # noqa: S608
                    f" AND left(id, %(n)s) = %(p)s{mine} ORDER BY id LIMIT 50",
                    params,
                ).fetchall()
            )
        if not rows:
            raise AccountNotFound(id_or_prefix)
        if len(rows) > 1:
            ids = [account_id_of(_sqlite_shaped(row)) for row in rows]
            raise AmbiguousAccount(id_or_prefix, ids)
        return _account(rows[0], _now(None))

    def accounts(
        self,
        *,
        provider: str | None = None,
        status: Status | str | None = None,
        owner: str | None = None,
        now: datetime | None = None,
    ) -> list[Account]:
        """The accounts ordered by provider, label and id (`iter_accounts`, as a list)."""
        return list(self.iter_accounts(provider=provider, status=status, owner=owner, now=now))

    def iter_accounts(
        self,
        *,
        provider: str | None = None,
        status: Status | str | None = None,
        owner: str | None = None,
        batch: int = 500,
        now: datetime | None = None,
    ) -> Iterator[Account]:
        """`accounts`, *batch* rows per keyset query (`AccountStore.iter_accounts`)."""
        wanted = _wanted_status(status)
        return self._snapshot_listing(provider, wanted, owner, max(1, batch), _now(now))

    def _snapshot_listing(
        self,
        provider: str | None,
        wanted: Status | None,
        owner: str | None,
        batch: int,
        now: datetime,
    ) -> Iterator[Account]:
        # Every batch from one snapshot (a read-only REPEATABLE READ transaction on one pooled
        # connection, held until the listing ends): a re-check that records a new label moves
        # its row in the order, and batches read at different moments would list it twice or
        # not at all.
        with self._read() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            # Open for as long as its reader reads (`hub accounts | less`): the idle timeout
            # docs/deploying.md sets for hub's role, for transactions that hold locks, is not
            # for this one, which holds none. SET LOCAL: it ends with the transaction.
            conn.execute("SET LOCAL idle_in_transaction_session_timeout = 0")
            for _, account in self._keyed(provider, wanted, owner, batch, now, None, conn):
                yield account

    def page_after(
        self,
        after: ListingKey | None = None,
        *,
        provider: str | None = None,
        status: Status | str | None = None,
        owner: str | None = None,
        limit: int = 50,
        now: datetime | None = None,
    ) -> KeysetPage:
        """The page of `iter_accounts` after the key *after* (`AccountStore.page_after`)."""
        wanted = _wanted_status(status)
        limit = max(1, limit)
        found: list[tuple[ListingKey, Account]] = []
        for item in self._keyed(provider, wanted, owner, limit + 1, _now(now), after):
            found.append(item)
            if len(found) > limit:
                break
        more = len(found) > limit
        return KeysetPage(
            [account for _, account in found[:limit]], found[limit - 1][0] if more else None
        )

    def _filters(
        self, provider: str | None, owner: str | None, now: datetime
    ) -> tuple[list[str], dict[str, object]]:
        where: list[str] = []
        params: dict[str, object] = {"now": now, "soon": now + EXPIRING_WINDOW}
        if provider is not None:
            where.append("provider_id = %(provider)s")
            params["provider"] = provider
        if owner is not None:
            where.append("owner = %(owner)s")
            params["owner"] = owner
        return where, params

    def _keyed(
        self,
        provider: str | None,
        wanted: Status | None,
        owner: str | None,
        batch: int,
        now: datetime,
        after: ListingKey | None,
        snapshot: psycopg.Connection[dict[str, Any]] | None = None,
    ) -> Iterator[tuple[ListingKey, Account]]:
        """The listing as (key, account) pairs, one keyset query per *batch* rows, each on
        a pooled connection of its own or all on *snapshot*."""
        where, params = self._filters(provider, owner, now)
        params["batch"] = batch
        if wanted is not None and wanted is not Status.DAMAGED:
            # Decided in SQL; `damaged` takes reading the row, so it is decided row by row.
            where.append(f"{_STATUS_SQL} = %(status)s")
            params["status"] = wanted.value
        # With one provider, its equality leads the index and the key is the rest of it.
        columns = "(label, id, seq)" if provider is not None else "(provider_id, label, id, seq)"
        while True:
            conditions = list(where)
            if after is not None:
                key = after[1:] if provider is not None else after
                marks = ", ".join(f"%(k{n})s" for n in range(len(key)))
                conditions.append(f"{columns} > ({marks})")
                params.update({f"k{n}": value for n, value in enumerate(key)})
            clause = f" WHERE {' AND '.join(conditions)}" if conditions else ""
            sql = (
                f"SELECT {_ROW} FROM accounts{clause}"  # noqa: S608
                " ORDER BY provider_id, label, id, seq LIMIT %(batch)s"
            )
            if snapshot is not None:
                with self._errors():
                    rows = snapshot.execute(sql, params).fetchall()
            else:
                with self._read() as conn:
                    rows = conn.execute(sql, params).fetchall()
            for row in rows:
                account = _account(row, now)
                if wanted is None or account.status is wanted:
                    yield _listing_key(row), account
            if len(rows) < batch:
                return
            after = _listing_key(rows[-1])

    def page(
        self,
        *,
        provider: str | None = None,
        status: Status | str | None = None,
        owner: str | None = None,
        offset: int = 0,
        limit: int = 50,
        now: datetime | None = None,
    ) -> AccountPage:
        """One page of `accounts` and how many match in all (`AccountStore.page`)."""
        wanted = _wanted_status(status)
        now = _now(now)
        offset, limit = max(0, offset), max(1, limit)
        where, params = self._filters(provider, owner, now)
        params.update(limit=limit, offset=offset)
        if wanted is not None:
            where.append(f"{_STATUS_SQL} = %(status)s")
            params["status"] = wanted.value
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        with self._read() as conn:
            total = conn.execute(f"SELECT count(*) AS n FROM accounts{clause}", params).fetchone()  # noqa: S608
            rows = conn.execute(
                f"SELECT {_ROW} FROM accounts{clause} ORDER BY provider_id, label, id, seq"  # noqa: S608
                " LIMIT %(limit)s OFFSET %(offset)s",
                params,
            ).fetchall()
        count = int(total["n"]) if total else 0
        return AccountPage([_account(row, now) for row in rows], count, offset, limit)

    def credentials(self, account_id: str) -> dict[str, str]:
        """The account's field values, secrets decrypted (`AccountStore.credentials`)."""
        return self.checkout(account_id)[0]

    def checkout(self, account_id: str) -> tuple[dict[str, str], str]:
        """`credentials` and the version of the stored key, read together."""
        with self._read() as conn:
            row = conn.execute(
                f"SELECT config, secrets, key_id FROM accounts WHERE {_BY_ID}",  # noqa: S608
                _key(account_id),
            ).fetchone()
        if row is None:
            raise AccountNotFound(account_id)
        return stored_values(self._ring, row, account_id), _version(row["secrets"])

    def delete(self, account_id: str) -> None:
        """Remove the account and its key; `AccountNotFound` when there is none."""
        key = _key(account_id)
        with self._write() as conn:
            conn.execute(_LOCK_SCHEDULE, key)
            done = conn.execute(f"DELETE FROM accounts WHERE {_BY_ID}", key)  # noqa: S608
            if done.rowcount == 0:
                raise AccountNotFound(account_id)

    # --- verdicts -------------------------------------------------------------------------------

    def record(
        self,
        account_id: str,
        result: Verified | HubError,
        *,
        now: datetime | None = None,
        version: str | None = None,
    ) -> Account:
        """Store the outcome of re-checking the account's key (`AccountStore.record`)."""
        now = _now(now)
        with self._write() as conn:
            outcome = self._record_one(conn, account_id, result, now, version)
        if isinstance(outcome, StoreError):
            raise outcome
        return outcome

    def record_many(
        self,
        results: Iterable[tuple[str, Verified | HubError]],
        *,
        now: datetime | None = None,
        versions: Mapping[str, str] | None = None,
        lease: str | None = None,
        next_check_in: timedelta = CHECK_INTERVAL,
    ) -> list[Account | StoreError]:
        """Store many outcomes in one transaction, each under *lease* when given
        (`AccountStore.record_many`); with a lease, times are the database's."""
        if lease is None:
            return self._record_all(results, now, versions or {}, None, next_check_in)
        # Under a lease a second attempt is safe (see `_reconnecting`): read the outcomes once.
        return self._record_leased_all(list(results), now, versions or {}, lease, next_check_in)

    @_reconnecting
    def _record_leased_all(
        self,
        results: list[tuple[str, Verified | HubError]],
        now: datetime | None,
        versions: Mapping[str, str],
        lease: str,
        next_check_in: timedelta,
    ) -> list[Account | StoreError]:
        return self._record_all(results, now, versions, lease, next_check_in)

    def _record_all(
        self,
        results: Iterable[tuple[str, Verified | HubError]],
        now: datetime | None,
        versions: Mapping[str, str],
        lease: str | None,
        next_check_in: timedelta,
    ) -> list[Account | StoreError]:
        results = list(results)
        for _, result in results:
            if not isinstance(result, Verified | HubError):
                raise TypeError(f"expected Verified or HubError, got {type(result).__name__}")
        out: list[Account | StoreError | None] = [None] * len(results)
        limited: list[tuple[str, float | None]] = []  # (provider, Retry-After) per 429
        with self._write() as conn:
            when = self._db_now(conn, now) if lease is not None else _now(now)
            self._record_batch(conn, results, out, when, versions, lease, next_check_in)
            for index, (account_id, result) in enumerate(results):
                if out[index] is not None:
                    continue
                version = versions.get(account_id)
                if lease is None:
                    out[index] = self._record_one(conn, account_id, result, when, version)
                else:
                    out[index] = self._record_leased(
                        conn, account_id, result, when, version, lease, next_check_in, limited
                    )
            # Last, and in the providers' order, as a lease locks their rows: two transactions
            # that lock them in other orders deadlock, and one of them is rolled back.
            for provider_id, retry_after in sorted(limited, key=lambda item: item[0]):
                _note_rate_limited(conn, provider_id, when, retry_after)
        return cast("list[Account | StoreError]", out)

    def _record_batch(
        self,
        conn: psycopg.Connection[dict[str, Any]],
        results: Sequence[tuple[str, Verified | HubError]],
        out: list[Account | StoreError | None],
        now: datetime,
        versions: Mapping[str, str],
        lease: str | None,
        next_check_in: timedelta,
    ) -> None:
        """Write the verdicts of *results* that need no statement of their own in at most two:
        one SELECT locks and reads the rows this store does not hold since their lease
        (`HeldRows`), one UPDATE writes them all (and ends the lease); each outcome goes to its
        place in *out*.

        A round trip per statement is what a verdict cost on PostgreSQL (a savepoint, a
        SELECT, an UPDATE and a release each): with these two per batch, leases and verdicts
        cost a worker little beside its checks. Left to `_record_one`, each in a savepoint of
        its own: a 429 (it ends the lease without a verdict), an account named by ``#number``
        or twice, and, when the UPDATE refuses a value (a NUL from a plugin), the whole batch.
        """
        named = collections.Counter(account_id for account_id, _ in results)
        batch = [
            (index, account_id, result)
            for index, (account_id, result) in enumerate(results)
            if not isinstance(result, RateLimited)
            and not account_id.startswith("#")
            and named[account_id] == 1
        ]
        if len(batch) < 2:
            return
        # Rows as leased carry their version: the UPDATE writes each only while it is still
        # that one. The others are locked and read now.
        ids = [account_id for _, account_id, _ in batch]
        held = {} if lease is None else self._held.take(lease, 0, ids)
        rows: dict[str, Any] = {account_id: kept.row for account_id, kept in held.items()}
        unheld = [account_id for account_id in ids if account_id not in held]
        if unheld:
            rows.update(
                (row["id"], row)
                for row in conn.execute(
                    "SELECT a.id, a.identity, a.label, a.verdict, a.expires_at, a.expiring_at,"  # noqa: S608
                    " a.details, a.secrets, a.key_id, s.lease_token, NULL AS row_version"
                    f" FROM {_SCHEDULED} WHERE a.id = ANY(%(ids)b) ORDER BY a.id FOR UPDATE OF s",
                    {"ids": unheld},
                )
            )
        due = now + next_check_in
        ends = (lease, due) if lease is not None else None
        columns: list[list[object]] = [[] for _ in range(len(_BATCH_COLUMNS))]
        written: dict[str, int] = {}
        wrote: dict[str, Written] = {}  # per held row, what the UPDATE writes on it
        for index, account_id, result in batch:
            try:
                row = check_recordable(
                    rows.get(account_id), account_id, ends, versions.get(account_id)
                )
                if isinstance(result, Verified):
                    expiring_at = recorded_expiry(result, row, account_id, _as_stored)
                    details = _details_json(result.details)
                    values: tuple[object, ...] = (
                        True,
                        result.label,
                        "active",
                        result.expires_at,
                        expiring_at,
                        None,
                        details,
                    )
                    what = Written(
                        result.label, "active", now, result.expires_at, expiring_at, None, details
                    )
                else:
                    verdict, message, details = failed_check(
                        self._ring, result, row, now, row["key_id"]
                    )
                    values = (False, None, verdict, None, None, message, details)
                    what = Written(
                        row["label"], verdict, now, row["expires_at"], row["expiring_at"],
                        message, details,
                    )  # fmt: skip
            except StoreError as exc:
                if account_id in held:
                    continue  # decided by `_record_one` on the row as it is now
                out[index] = exc
                if lease is not None and lease_ends_anyway(exc):
                    self._end_lease(conn, account_id, lease, due)
                continue
            except _UNSTORABLE:
                continue  # `_record_one` records that it could not be stored
            for column, value in zip(
                columns, (account_id, *values, row["row_version"]), strict=True
            ):
                column.append(value)
            written[account_id] = index
            if account_id in held:
                wrote[account_id] = what
        if not written:
            return
        ended = ""
        params: dict[str, object] = dict(zip(_BATCH_COLUMNS, columns, strict=True))
        params.update(now=now, token=lease)
        if lease is not None:
            ended = _ENDED
            params["due"] = due
        # Every row held: the UPDATE gives back the ids it wrote, not the rows.
        returned = "a.id" if len(wrote) == len(written) else "a.seq AS row_number, a.*"
        try:
            with conn.transaction():
                updated = conn.execute(
                    _BATCH_UPDATE.format(ended=ended, returned=returned), params
                ).fetchall()
        except _UNSTORABLE_OR_DEADLOCK:
            return  # `_record_one` writes each on its own
        # A held row that another transaction wrote since its lease was not written: its
        # outcome stays None, for `_record_one` on the row as it is now.
        unread: list[str] = []
        for row in updated:
            account_id = row["id"]
            recorded = None
            if account_id in wrote:
                recorded = recorded_account(held[account_id].account, wrote[account_id], now)
            if recorded is not None:
                out[written[account_id]] = recorded
            elif "seq" in row:
                out[written[account_id]] = _account(row, now)
            else:
                unread.append(account_id)
        if unread:  # read back what the verdict cannot be added to on its own
            for row in conn.execute(
                "SELECT seq AS row_number, * FROM accounts WHERE id = ANY(%(ids)b)",
                {"ids": unread},
            ):
                out[written[row["id"]]] = _account(row, now)

    def _record_leased(
        self,
        conn: psycopg.Connection[dict[str, Any]],
        account_id: str,
        result: Verified | HubError,
        now: datetime,
        version: str | None,
        lease: str,
        next_check_in: timedelta,
        limited: list[tuple[str, float | None]],
    ) -> Account | StoreError:
        if not isinstance(result, RateLimited):
            due = now + next_check_in
            outcome = self._record_one(conn, account_id, result, now, version, lease=(lease, due))
            if lease_ends_anyway(outcome):
                self._end_lease(conn, account_id, lease, due)
            return outcome
        # One key's 429 says nothing of its verdict: only when to ask it again.
        due = retry_due(result, now)
        row = self._end_lease(conn, account_id, lease, due, retry_at=due)
        if row is not None:
            # Several of one provider's close together pause the provider for every checker:
            # counted (*limited*) once the batch's verdicts are written.
            if isinstance(row["provider_id"], str):
                limited.append((row["provider_id"], result.retry_after))
            return _account(row, now)
        exists = conn.execute(f"SELECT 1 FROM accounts WHERE {_BY_ID}", _key(account_id))  # noqa: S608
        return lease_lost(account_id) if exists.fetchone() else AccountNotFound(account_id)

    def _end_lease(
        self,
        conn: psycopg.Connection[dict[str, Any]],
        account_id: str,
        lease: str,
        due: datetime,
        *,
        retry_at: datetime | None = None,
    ) -> dict[str, Any] | None:
        """End *lease* on the account without a verdict: due again at *due*; the account's row."""
        return conn.execute(
            "WITH ended AS (UPDATE account_schedule AS s SET lease_token = NULL,"  # noqa: S608
            " lease_until = NULL, next_check_at = %(due)s, retry_at = %(retry)s"
            f" FROM accounts AS a WHERE s.seq = a.seq AND {_A_BY_ID}"
            " AND s.lease_token = %(token)s RETURNING s.seq)"
            " SELECT a.seq AS row_number, a.* FROM accounts AS a JOIN ended ON ended.seq = a.seq",
            {"due": due, "retry": retry_at, "token": lease, **_key(account_id)},
        ).fetchone()

    def _record_one(
        self,
        conn: psycopg.Connection[dict[str, Any]],
        account_id: str,
        result: Verified | HubError,
        now: datetime,
        version: str | None,
        *,
        lease: tuple[str, datetime] | None = None,
    ) -> Account | StoreError:
        if not isinstance(result, Verified | HubError):
            raise TypeError(f"expected Verified or HubError, got {type(result).__name__}")
        # A savepoint per account: one outcome that cannot be stored is undone alone.
        try:
            with conn.transaction():
                return self._record(conn, account_id, result, now, version, lease)
        except StoreError as exc:
            return exc
        except _UNSTORABLE as exc:
            # Not this account's verdict, but text the database refused (a NUL, a lone
            # surrogate from a plugin): record that it could not be stored.
            failed = unstorable(exc)
            try:
                with conn.transaction():
                    return self._record(conn, account_id, failed, now, version, lease)
            except StoreError as again:
                return again

    def _record(
        self,
        conn: psycopg.Connection[dict[str, Any]],
        account_id: str,
        result: Verified | HubError,
        now: datetime,
        version: str | None,
        lease: tuple[str, datetime] | None,
    ) -> Account:
        """Write one verdict; with *lease*, only while it holds the account, ending it."""
        key = _key(account_id)
        row = conn.execute(
            "SELECT a.seq, a.identity, a.verdict, a.expires_at, a.expiring_at, a.details,"  # noqa: S608
            f" a.secrets, a.key_id, s.lease_token FROM {_SCHEDULED} WHERE {_A_BY_ID}"
            " FOR UPDATE OF s",  # the account's row is locked by its UPDATE, after
            key,
        ).fetchone()
        row = check_recordable(row, account_id, lease, version)
        params: dict[str, object] = {**key, "now": now}
        _schedule_checked(conn, row["seq"], now, due=None if lease is None else lease[1])
        if isinstance(result, Verified):
            expiring_at = recorded_expiry(result, row, account_id, _as_stored)
            params.update(
                label=result.label,
                expires_at=result.expires_at,
                expiring_at=expiring_at,
                details=_details_json(result.details),
            )
            sql = (
                "UPDATE accounts SET label = %(label)s, verdict = 'active', checked_at = %(now)s,"
                " expires_at = %(expires_at)s, expiring_at = %(expiring_at)s,"
                " last_error = NULL, details = %(details)s"
            )
        else:
            verdict, message, details = failed_check(self._ring, result, row, now, row["key_id"])
            params.update(verdict=verdict, error=message, details=details)
            sql = (
                "UPDATE accounts SET verdict = %(verdict)s, checked_at = %(now)s,"
                " last_error = %(error)s, details = %(details)s"
            )
        updated = conn.execute(f"{sql} WHERE {_BY_ID} RETURNING {_ROW}", params).fetchone()
        assert updated is not None
        return _account(updated, now)

    # --- leases (SCALE.md §2) -------------------------------------------------------------------

    @_reconnecting
    def lease(
        self,
        limit: int,
        *,
        checked_before: datetime | None = None,
        lease_for: timedelta = LEASE_DEFAULT,
        now: datetime | None = None,
    ) -> Lease:
        """Lease up to *limit* due accounts nobody holds (`AccountStore.lease`): claimed with
        ``FOR UPDATE SKIP LOCKED`` and committed before any check runs.

        The rows are taken in the order of an index (the due time, then ``seq``), each of the
        lease's queries looking on from where this store's last one ended (`LeaseCursors`).
        """
        token = secrets.token_hex(16)
        if checked_before is None:
            column, due = "next_check_at", f"{_due_key('s.next_check_at')} <= %(now)s"
        else:
            column, due = "checked_at", _NOT_CHECKED_SINCE
        order = f"{_due_key('s.' + column)}, s.seq"
        free = (
            f"{due} AND (s.lease_until IS NULL OR s.lease_until < %(now)s)"
            " AND (s.retry_at IS NULL OR s.retry_at <= %(now)s)"
        )
        held: dict[str, Any] = {}
        with self._write() as conn:
            now = self._db_now(conn, now)
            until = now + lease_for
            params: dict[str, Any] = {
                "now": now,
                "before": checked_before,
                "token": token,
                "until": until,
                "limit": max(1, limit),
                "limited": [],
            }
            # The buckets locked for the lease's transaction: two workers never spend one
            # provider's tokens twice (a store with no row pays one short read).
            limits = [
                limit_from_row(row)
                # In the providers' order, as verdicts lock them (`_record_all`).
                for row in conn.execute(
                    "SELECT * FROM provider_limits ORDER BY provider_id FOR UPDATE"
                )
            ]
            plan = plan_lease(limits, limit, now) if limits else None
            # Each row found read whole, with its version (`xmin`): its verdict is written on
            # the row as leased only while no other transaction has written it since
            # (`HeldRows`). Only the schedule's row is locked and written by the lease.
            picked = (
                f"SELECT s.{column} AS due_at, a.xmin::text AS row_version, a.seq AS row_number,"  # noqa: S608
                f" a.* FROM {_SCHEDULED} WHERE {free}"
            )
            # The providers without a budget in one query, each budgeted one in its own (at
            # most what its bucket grants), merged in the lease's order and cut to the limit.
            queries: list[tuple[str, dict[str, Any]]] = [
                ("a.provider_id <> ALL(%(limited)s::text[])", {"cap": params["limit"]})
            ]
            if plan is not None:
                params["limited"] = sorted(plan.limited)
                queries += [
                    ("a.provider_id = %(provider)s", {"provider": p, "cap": cap})
                    for p, cap in plan.caps.items()
                ]
            # A row comparison the index answers as a range: the rows after a cursor.
            on = f" AND ({order}) > ({_due_key('%(after)s::timestamptz')}, %(after_seq)s)"
            found: list[dict[str, Any]] = []
            since: dict[str | None, datetime] = {}
            for condition, extra in queries:
                group = extra.get("provider")
                cursor = self._cursors.start((column, checked_before, group), now)
                for after in ([] if cursor is None else [cursor]) + [None]:
                    where = {"after": after and after.due, "after_seq": after and after.seq}
                    batch = conn.execute(
                        f"{picked} AND {condition}{on if after else ''} ORDER BY {order}"
                        " LIMIT %(cap)s FOR UPDATE OF s SKIP LOCKED",
                        params | extra | where,
                    ).fetchall()
                    if batch:
                        break
                since[group] = after.since if after else now
                found += batch
            epoch = datetime.min.replace(tzinfo=UTC)
            found.sort(key=lambda row: (row["due_at"] or epoch, row["seq"]))
            chosen = found[: params["limit"]]
            self._advance_cursors(column, checked_before, since, found, chosen, params["limited"])
            if plan is not None:
                taken = collections.Counter(str(row["provider_id"]) for row in chosen)
                for provider_id, budget in plan.settle(taken, now).items():
                    conn.execute(
                        "UPDATE provider_limits SET tokens = %s, refilled_at = %s"
                        " WHERE provider_id = %s",
                        (budget.tokens, budget.refilled_at, provider_id),
                    )
                if not chosen:

                    def has_due(provider_id: str) -> bool:
                        return bool(
                            conn.execute(
                                f"{picked} AND a.provider_id = %(provider)s LIMIT 1",
                                params | {"provider": provider_id},
                            ).fetchone()
                        )

                    held = held_back(plan, now, has_due)
            if chosen:
                conn.execute(
                    "UPDATE account_schedule SET lease_token = %(token)s, lease_until = %(until)s"
                    " WHERE seq = ANY(%(seqs)b)",
                    params | {"seqs": [row["seq"] for row in chosen]},
                )
        rows = chosen
        for row in rows:
            row["lease_token"] = token  # what the verdict's `check_recordable` compares
        read = read_accounts(cast("list[sqlite3.Row]", rows), now)
        accounts = [account for account, _ in read]
        # The rows as hub writes them: their verdicts give their accounts without reading
        # them back (`recorded_account`); any other row is read again with its verdict.
        self._held.keep(
            token,
            0,
            {
                a.id: Held(row, a)
                for row, (a, as_written) in zip(rows, read, strict=True)
                if as_written
            },
        )
        return Lease(token, until, leased_accounts(self._ring, rows, accounts), **held)

    def _advance_cursors(
        self,
        column: str,
        checked_before: datetime | None,
        since: dict[str | None, datetime],
        found: list[dict[str, Any]],
        chosen: list[dict[str, Any]],
        limited: list[str],
    ) -> None:
        """Move each of a lease's queries (the unbudgeted providers: None; each budgeted one)
        on to the last row it gave the lease, having last looked from the start at *since*."""

        def query(row: dict[str, Any]) -> str | None:
            provider_id = str(row["provider_id"])
            return provider_id if provider_id in limited else None

        last = {query(row): (row["due_at"], row["seq"]) for row in chosen}
        seen = {query(row) for row in found}
        for group, started in since.items():
            if group in last or group not in seen:
                self._cursors.ended((column, checked_before, group), last.get(group), since=started)
            # Rows found but all cut from the lease: the query stays where it was, to take them.

    @_reconnecting
    def release(
        self,
        token: str,
        account_ids: Iterable[str] | None = None,
        *,
        next_check_in: timedelta | None = None,
        now: datetime | None = None,
    ) -> int:
        """Give back the accounts of lease *token* unchecked (`AccountStore.release`)."""
        self._held.forget(token)
        self._cursors.clear()
        with self._write() as conn:
            due = None
            if next_check_in is not None:
                due = self._db_now(conn, now) + next_check_in
            if account_ids is None:
                return conn.execute(
                    "UPDATE account_schedule SET lease_token = NULL, lease_until = NULL,"
                    " next_check_at = coalesce(%(due)s::timestamptz, next_check_at)"
                    " WHERE lease_token = %(token)s",
                    {"due": due, "token": token},
                ).rowcount
            keys = [by_id(account_id) for account_id in account_ids]
            return conn.execute(
                "UPDATE account_schedule AS s SET lease_token = NULL, lease_until = NULL,"
                " next_check_at = coalesce(%(due)s::timestamptz, s.next_check_at)"
                " FROM accounts AS a WHERE s.seq = a.seq"
                " AND (a.id = ANY(%(ids)s::text[]) OR a.seq = ANY(%(seqs)s::bigint[]))"
                " AND s.lease_token = %(token)s",
                {
                    "due": due,
                    "ids": [found for found, _ in keys if found is not None],
                    "seqs": [seq for _, seq in keys if seq is not None],
                    "token": token,
                },
            ).rowcount

    @_reconnecting
    def renew(
        self, tokens: Iterable[str], *, lease_for: timedelta, now: datetime | None = None
    ) -> int:
        """Hold what the leases *tokens* still hold for *lease_for* more (`AccountStore.renew`)."""
        tokens = list(tokens)
        if not tokens:
            return 0
        with self._write() as conn:
            return conn.execute(
                f"UPDATE account_schedule SET lease_until = {_DB_NOW} + %(lease_for)s"  # noqa: S608
                " WHERE lease_token = ANY(%(tokens)s::text[])",
                {"now": now and _now(now), "lease_for": lease_for, "tokens": tokens},
            ).rowcount

    @_reconnecting
    def held_elsewhere(
        self,
        mine: Iterable[str] = (),
        *,
        checked_before: datetime,
        now: datetime | None = None,
    ) -> datetime | None:
        """When the first live lease of another checker expires (`AccountStore.held_elsewhere`)."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT min(s.lease_until) AS until FROM account_schedule AS s"  # noqa: S608
                f" WHERE s.lease_until >= {_DB_NOW} AND {_NOT_CHECKED_SINCE}"
                " AND s.lease_token IS NOT NULL AND s.lease_token <> ALL(%(mine)s::text[])",
                # IS NOT NULL: the partial index of the leased rows answers it
                {"now": now and _now(now), "before": checked_before, "mine": list(mine)},
            ).fetchone()
        return _now(row["until"]) if row and row["until"] else None

    @_reconnecting
    def next_due(self) -> datetime | None:
        """When the next account can be leased (`AccountStore.next_due`)."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT next_check_at AS at, lease_until, retry_at FROM account_schedule"  # noqa: S608
                f" ORDER BY {_due_key('next_check_at')} LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            if row["lease_until"] is not None or row["retry_at"] is not None:
                # The first due is held (by a lease, a Retry-After): the whole table, which
                # a worker asks only when nothing was free, and then not before that time.
                row = conn.execute(
                    "SELECT nullif(min(greatest("  # noqa: S608
                    f"{_due_key('next_check_at')}, {_due_key('lease_until')},"
                    f" {_due_key('retry_at')})), '-infinity') AS at FROM account_schedule"
                ).fetchone()
        at = row["at"] if row else None
        return _now(at) if at is not None else datetime.min.replace(tzinfo=UTC)

    @_reconnecting
    def due_count(self, *, checked_before: datetime | None = None) -> int:
        """Accounts not checked since *checked_before*, or all accounts without it."""
        sql = "SELECT count(*) AS n FROM accounts"
        if checked_before is not None:
            sql = f"SELECT count(*) AS n FROM account_schedule AS s WHERE {_NOT_CHECKED_SINCE}"  # noqa: S608
        with self._read() as conn:
            row = conn.execute(sql, {"before": checked_before}).fetchone()
        return int(row["n"]) if row else 0

    @_reconnecting
    def join_run(
        self, *, alive_for: timedelta = LEASE_DEFAULT, now: datetime | None = None
    ) -> tuple[str, datetime]:
        """Start a ``check --all`` run or join the earliest under way (`AccountStore.join_run`)."""
        token = secrets.token_hex(16)
        with self._write() as conn:
            # Runs starting together on several hosts: one after the other, sharing one start.
            conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_LOCKS, _RUNS_LOCK))
            now = self._db_now(conn, now)
            conn.execute("DELETE FROM check_runs WHERE alive_until < %s", (now,))
            earliest = conn.execute("SELECT min(started_at) AS t FROM check_runs").fetchone()
            started = _now(earliest["t"]) if earliest and earliest["t"] else now
            conn.execute(
                "INSERT INTO check_runs (token, started_at, alive_until) VALUES (%s, %s, %s)",
                (token, started, now + alive_for),
            )
        return token, started

    @_reconnecting
    def keep_run(
        self, token: str, *, alive_for: timedelta = LEASE_DEFAULT, now: datetime | None = None
    ) -> None:
        """Renew the run *token* for another *alive_for*."""
        with self._write() as conn:
            conn.execute(
                f"UPDATE check_runs SET alive_until = {_DB_NOW} + %(alive)s"  # noqa: S608
                " WHERE token = %(token)s",
                {"now": now and _now(now), "alive": alive_for, "token": token},
            )

    @_reconnecting
    def end_run(self, token: str) -> None:
        """The run *token* is over; ending an unknown or ended run is harmless."""
        with self._write() as conn:
            conn.execute("DELETE FROM check_runs WHERE token = %s", (token,))

    # --- auth links -----------------------------------------------------------------------------

    def _add_link(self, link: Link) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO links (id, kind, provider_id, account_id, note, created_at,"
                " expires_at, owner, owner_name, return_url, state)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                link_values(link, _as_stored),
            )

    def link(self, link_id: str) -> Link:
        """The link with this id, in any state; `LinkUsed` (reason ``unknown``) when none."""
        with self._read() as conn:
            row = conn.execute("SELECT * FROM links WHERE id = %s", (link_id,)).fetchone()
        if row is None:
            raise LinkUsed(link_id, "unknown")
        return link_from_row(_sqlite_shaped(row))

    def links(self, *, include_closed: bool = False, now: datetime | None = None) -> list[Link]:
        """Links oldest first: the ``open`` and ``locked`` ones, or all (*include_closed*)."""
        with self._read() as conn:
            rows = conn.execute("SELECT * FROM links ORDER BY created_at, id").fetchall()
        found = [link_from_row(_sqlite_shaped(row)) for row in rows]
        if include_closed:
            return found
        return [link for link in found if link.state(now) in ("open", "locked")]

    def revoke_link(self, link_id: str, *, now: datetime | None = None) -> Link:
        """Withdraw a link (a used or revoked one is left as it is); `LinkUsed` when unknown."""
        with self._write() as conn:
            conn.execute(
                "UPDATE links SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL"
                " AND used_at IS NULL",
                (_now(now), link_id),
            )
        return self.link(link_id)

    def link_failed(self, link_id: str) -> Link:
        """Count a failed attempt on an unused link; at `LINK_ATTEMPTS` it is ``locked``."""
        with self._write() as conn:
            conn.execute(
                "UPDATE links SET failed_attempts = failed_attempts + 1"
                " WHERE id = %s AND used_at IS NULL",
                (link_id,),
            )
        return self.link(link_id)

    def _check_link(
        self,
        conn: psycopg.Connection[dict[str, Any]],
        link_id: str,
        provider_id: str,
        account_id: str | None,
        now: datetime,
    ) -> Link:
        # Locked to the end of the save: a second save of this link waits, then sees it used.
        row = conn.execute("SELECT * FROM links WHERE id = %s FOR UPDATE", (link_id,)).fetchone()
        link = None if row is None else link_from_row(_sqlite_shaped(row))
        return usable_link(link, link_id, provider_id, account_id, now)

    def _mark_used(
        self, conn: psycopg.Connection[dict[str, Any]], link_id: str, account_id: str, now: datetime
    ) -> None:
        conn.execute(
            "UPDATE links SET used_at = %s, used_account_id = %s WHERE id = %s",
            (now, account_id, link_id),
        )

    # --- keys -----------------------------------------------------------------------------------

    def key_status(self) -> KeyStatus:
        """Accounts per key id: the configured keys in order, then any others the database has."""
        with self._read() as conn:
            counts = {
                row["key_id"]: int(row["n"])
                for row in conn.execute("SELECT key_id, count(*) AS n FROM accounts GROUP BY 1")
            }
            checked = {str(row["key_id"]) for row in conn.execute("SELECT key_id FROM key_checks")}
        return key_status(self._ring, counts, checked)

    def rotate_keys(
        self,
        *,
        batch_size: int = 300,
        progress: Callable[[int, int], None] | None = None,
    ) -> RotationReport:
        """Re-encrypt every account not on the ring's first key with it, in short batches.

        Each batch is one short transaction over rows locked ``FOR UPDATE SKIP LOCKED``: hosts
        rotating at once take different rows, a relink waits for the batch (or the batch skips
        its row), and a run killed at any point leaves each row whole, on its old key or the new.
        A row skipped so (a worker was recording its verdict) is taken in a second pass that
        waits for its lock, so the run ends with no readable account on an old key.
        """
        ring = self._ring
        target = ring.primary_id
        others = [key_id for key_id in ring.ids if key_id != target]
        with self._read() as conn:
            row = conn.execute(
                "SELECT count(*) AS n FROM accounts WHERE key_id IS DISTINCT FROM %s", (target,)
            ).fetchone()
        total = int(row["n"]) if row else 0
        done, unreadable, skipped = 0, list[str](), list[int]()
        # The first pass skips locked rows, the second waits for them (a row rotated by
        # another host meanwhile no longer matches once its lock is free).
        for query in _ROTATION_BATCHES if others else ():
            after = 0
            while True:
                with self._write() as conn:
                    rows = conn.execute(
                        query,
                        {
                            "old": others,
                            "after": after,
                            "skipped": skipped,
                            "n": max(1, batch_size),
                        },
                    ).fetchall()
                    if not rows:
                        break
                    after = rows[-1]["seq"]
                    updates = []
                    for found in rows:
                        again = reencrypted(ring, found["secrets"], found["key_id"])
                        if again is None:
                            unreadable.append(text_or_none(found["id"]) or f"#{found['seq']}")
                            skipped.append(found["seq"])
                            continue
                        updates.append((again[1], again[0], found["seq"]))
                    with conn.cursor() as cursor:
                        cursor.executemany(
                            "UPDATE accounts SET secrets = %s, key_id = %s WHERE seq = %s",
                            updates,
                        )
                    done += len(updates)
                if progress is not None:
                    progress(done, total)
        return RotationReport(target, done, unreadable)

    # --- budgets (`hub_core.budgets`) ----------------------------------------------------------

    def limits(self) -> list[ProviderLimit]:
        """Every provider with a check budget or a rate-limit record, by provider id."""
        with self._read() as conn:
            rows = conn.execute("SELECT * FROM provider_limits ORDER BY provider_id").fetchall()
        return [limit_from_row(row) for row in rows]

    def set_limit(
        self,
        provider_id: str,
        rate: float | None,
        burst: int | None = None,
        *,
        now: datetime | None = None,
    ) -> ProviderLimit:
        """Give *provider_id* a budget of *rate* checks per second, at most *burst* at once
        (`AccountStore.set_limit`); *rate* None removes it."""
        rate, burst = budget_values(rate, burst)
        self._cursors.clear()  # the provider's rows change query: each looks from the start
        with self._write() as conn:
            at = self._db_now(conn, now)
            row = conn.execute(
                "INSERT INTO provider_limits (provider_id, rate, burst, tokens, refilled_at)"
                " VALUES (%(p)s, %(rate)s::double precision, %(burst)s::integer,"
                " %(burst)s::double precision, %(at)s::timestamptz)"
                " ON CONFLICT (provider_id) DO UPDATE SET rate = excluded.rate,"
                " burst = excluded.burst, tokens = excluded.tokens,"
                " refilled_at = excluded.refilled_at RETURNING *",
                {
                    "p": provider_id,
                    "rate": rate,
                    "burst": burst,
                    "at": at if rate is not None else None,
                },
            ).fetchone()
            # No budget and nothing recorded: the row says nothing any more.
            gone = conn.execute(
                "DELETE FROM provider_limits WHERE provider_id = %s AND rate IS NULL"
                " AND limited_count = 0 AND paused_until IS NULL RETURNING provider_id",
                (provider_id,),
            ).fetchone()
        return limit_or_cleared(provider_id, None if gone else row)

    def lift_pause(self, provider_id: str) -> ProviderLimit | None:
        """End *provider_id*'s pause after its rate limits now; None when it has no record."""
        with self._write() as conn:
            row = conn.execute(
                "UPDATE provider_limits SET paused_until = NULL, limited_count = 0,"
                " limited_since = NULL WHERE provider_id = %s RETURNING *",
                (provider_id,),
            ).fetchone()
        return limit_or_none(row)

    # --- webhook outbox (`hub_core.webhooks`) ---------------------------------------------------

    def outbox_add(self, rows: Iterable[tuple[str, str, str]], *, now: float) -> int:
        """Add ``(event_id, event_type, body)`` rows, due at once, in one transaction."""
        added = 0
        with self._write() as conn:
            for event_id, kind, body in rows:
                added += conn.execute(
                    "INSERT INTO webhook_outbox (event_id, event_type, body, created_at,"
                    " next_attempt_at) VALUES (%s, %s, %s, %s, %s)"
                    " ON CONFLICT (event_id) DO NOTHING",
                    (event_id, kind, body, now, now),
                ).rowcount
        return added

    def outbox_claim(self, *, now: float, limit: int, lease: float) -> list[OutboxEntry]:
        """Lease up to *limit* due rows (oldest first) for *lease* seconds to one sender."""
        with self._write() as conn:
            rows = conn.execute(
                """
                WITH picked AS (
                    SELECT seq FROM webhook_outbox
                    WHERE delivered_at IS NULL AND failed_at IS NULL
                      AND next_attempt_at <= %(now)s
                      AND (lease_until IS NULL OR lease_until <= %(now)s)
                    ORDER BY next_attempt_at, seq LIMIT %(limit)s
                    FOR UPDATE SKIP LOCKED
                )
                UPDATE webhook_outbox SET lease_until = %(until)s
                FROM picked WHERE webhook_outbox.seq = picked.seq
                RETURNING webhook_outbox.*
                """,
                {"now": now, "limit": limit, "until": now + lease},
            ).fetchall()
        rows.sort(key=lambda row: (row["next_attempt_at"], row["seq"]))
        return [_outbox_entry(row) for row in rows]

    def outbox_settle(
        self,
        *,
        delivered: Iterable[int] = (),
        retry: Iterable[tuple[int, float, str]] = (),
        failed: Iterable[tuple[int, str]] = (),
        now: float,
    ) -> None:
        """Record attempts on claimed rows by ``seq``, in one transaction (`AccountStore`)."""
        with self._write() as conn, conn.cursor() as cursor:
            cursor.executemany(
                "UPDATE webhook_outbox SET delivered_at = %s, failed_at = NULL,"
                " attempts = attempts + 1, lease_until = NULL"
                " WHERE seq = %s AND delivered_at IS NULL",
                [(now, seq) for seq in delivered],
            )
            cursor.executemany(
                "UPDATE webhook_outbox SET next_attempt_at = %s, last_error = %s,"
                " attempts = attempts + 1, lease_until = NULL"
                " WHERE seq = %s AND delivered_at IS NULL AND failed_at IS NULL",
                [(at, error, seq) for seq, at, error in retry],
            )
            cursor.executemany(
                "UPDATE webhook_outbox SET failed_at = %s, last_error = %s,"
                " attempts = attempts + 1, lease_until = NULL"
                " WHERE seq = %s AND delivered_at IS NULL AND failed_at IS NULL",
                [(now, error, seq) for seq, error in failed],
            )

    def outbox_next_due(self) -> float | None:
        """When the next pending row is due (its lease's end counts); None when none is."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT min(greatest(next_attempt_at, coalesce(lease_until, 0))) AS due"
                " FROM webhook_outbox WHERE delivered_at IS NULL AND failed_at IS NULL"
            ).fetchone()
        return None if row is None or row["due"] is None else float(row["due"])

    def outbox_entries(self, *, state: str = "pending", limit: int = 100) -> list[OutboxEntry]:
        """Rows ``pending``, ``failed`` or ``delivered``, oldest first (else `KeyError`)."""
        where = {
            "pending": "delivered_at IS NULL AND failed_at IS NULL",
            "failed": "failed_at IS NOT NULL",
            "delivered": "delivered_at IS NOT NULL",
        }[state]
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT * FROM webhook_outbox WHERE {where} ORDER BY seq LIMIT %s",  # noqa: S608
                (limit,),
            ).fetchall()
        return [_outbox_entry(row) for row in rows]

    def outbox_counts(self) -> dict[str, int]:
        """How many rows are ``pending``, ``failed`` and ``delivered``."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE delivered_at IS NULL AND failed_at IS NULL) AS p,"
                " count(*) FILTER (WHERE failed_at IS NOT NULL) AS f,"
                " count(*) FILTER (WHERE delivered_at IS NOT NULL) AS d FROM webhook_outbox"
            ).fetchone()
        assert row is not None
        return {"pending": int(row["p"]), "failed": int(row["f"]), "delivered": int(row["d"])}

    def outbox_prune(self, *, delivered_before: float) -> int:
        """Remove rows delivered before *delivered_before*; return how many."""
        with self._write() as conn:
            return conn.execute(
                "DELETE FROM webhook_outbox WHERE delivered_at IS NOT NULL AND delivered_at < %s",
                (delivered_before,),
            ).rowcount

    def outbox_retry_failed(self, *, now: float) -> int:
        """Make every failed row due at *now* with its attempts reset; return how many."""
        with self._write() as conn:
            return conn.execute(
                "UPDATE webhook_outbox SET failed_at = NULL, attempts = 0,"
                " next_attempt_at = %s, lease_until = NULL WHERE failed_at IS NOT NULL",
                (now,),
            ).rowcount


def _schedule_checked(
    conn: psycopg.Connection[dict[str, Any]],
    seq: int,
    now: datetime,
    *,
    due: datetime | None = None,
) -> None:
    """The schedule of account *seq* follows its ``checked_at`` (the order leases take); with
    *due*, a verdict under a lease: the lease ended, the account due again then."""
    ended = "" if due is None else _ENDED
    conn.execute(
        f"UPDATE account_schedule SET checked_at = %(now)s{ended} WHERE seq = %(seq)s",  # noqa: S608
        {"now": now, "due": due, "seq": seq},
    )


def _listing_key(row: Mapping[str, Any]) -> ListingKey:
    return (row["provider_id"], row["label"], row["id"], int(row["row_number"]))


def _outbox_entry(row: Mapping[str, Any]) -> OutboxEntry:
    return outbox_entry_from_row(_sqlite_shaped(row))


if TYPE_CHECKING:
    # mypy --strict proves here that the PostgreSQL store keeps every promise of the protocol.
    _: type[AccountStore] = PostgresStore


def _note_rate_limited(
    conn: psycopg.Connection[dict[str, Any]],
    provider_id: str,
    now: datetime,
    retry_after: float | None,
) -> None:
    # The provider's count of recent 429s, and the pause the PAUSE_AFTER-th starts, in the
    # verdict's transaction; the row locked, so two workers' 429s both count.
    conn.execute(
        "INSERT INTO provider_limits (provider_id) VALUES (%s) ON CONFLICT DO NOTHING",
        (provider_id,),
    )
    row = conn.execute(
        "SELECT * FROM provider_limits WHERE provider_id = %s FOR UPDATE", (provider_id,)
    ).fetchone()
    try:
        before = Pause() if row is None else limit_from_row(row).pause
    except StoreError:  # a row edited by hand: counting starts again, the verdict is kept
        before = Pause()
    pause = note_rate_limited(before, now, retry_after)
    conn.execute(
        "UPDATE provider_limits SET limited_count = %s, limited_since = %s, paused_until = %s"
        " WHERE provider_id = %s",
        (pause.count, pause.since, pause.until, provider_id),
    )
