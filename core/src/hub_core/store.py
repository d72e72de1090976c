"""The SQLite account store (`SqliteStore`, the default `AccountStore`), its secrets encrypted.

`SqliteStore` implements `hub_core.store_protocol.AccountStore` over stdlib sqlite3: opening a
database (owners and modes, the key ring, migrations), and the statements behind each
protocol method. What it is built from lives beside it, one idea per module: the schema and
its migrations in `hub_core.store_schema`, the rules around the statements that every backend
shares in `hub_core.store_rules`, the row <-> value mapping in `hub_core.store_rows`,
the values it hands out in `hub_core.store_types` (re-exported here), lease values in
`hub_core.leases`, the key ring in `hub_core.keyring`, the status rules in `hub_core.status`.
`Store` is `SqliteStore`, under the name callers have always used.

The database lives in the user data directory (``HUB_HOME`` overrides it), is readable by its
owner only, and runs in WAL mode so a reader never blocks a writer. Every write is one
``BEGIN IMMEDIATE`` transaction: two ``hub`` processes never corrupt or lose an account, and a
process killed mid-write loses nothing that was already saved.

The keys that encrypt secrets are a key ring (`hub_core.keyring`): the ``secret_key``
argument, else ``HUB_SECRET_KEYS`` ("new,old"), else ``HUB_SECRET_KEY``, else the key file
``hub.key`` beside the database (created with a new database). Each row records the id of
the key it is encrypted with, and a key check per key id tells a wrong key apart before
anything is read or written.

This module imports sqlite3 and cryptography; ``import hub_core`` does not import it.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import math
import os
import random
import secrets
import sqlite3
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import platformdirs

from .budgets import (
    LeasePlan,
    Pause,
    ProviderLimit,
    held_back,
    limit_from_row,
    note_rate_limited,
    plan_lease,
)
from .errors import (
    RETRY_AFTER_MAX,
    AccountNotFound,
    AmbiguousAccount,
    HubError,
    IdentityMismatch,
    LinkUsed,
    RateLimited,
    StoreError,
)
from .keyring import (
    KEY_ENV,
    KEYS_ENV,
    BadKey,
    KeyRing,
    KeyStatus,
    RotationReport,
    generate_key,
    secrets_version,
)
from .leases import CHECK_INTERVAL, LEASE_DEFAULT, Lease, LeasedAccount
from .model import Account, Credentials, Status, Verified
from .owners import check_owner, clean_owner_name
from .status import EXPIRING_WINDOW, expiring_from
from .store_held import Held, HeldRows
from .store_held import data_version as _data_version
from .store_rows import Written
from .store_rows import account_from_row as _account
from .store_rows import account_id_of as _account_id
from .store_rows import accounts_from_rows as _accounts
from .store_rows import by_id as _by_id
from .store_rows import iso as _iso
from .store_rows import link_from_row as _link
from .store_rows import outbox_entry_from_row as _outbox_entry
from .store_rows import parse_time as _parse
from .store_rows import read_accounts as _read_accounts
from .store_rows import recorded_account as _recorded_account
from .store_rows import text_or_none as _text_or_none
from .store_rules import (
    UNSTORABLE,
    SharedMethods,
    budget_values,
    check_recordable,
    check_relink,
    decrypt_secrets,
    dropped_keys,
    failed_check,
    key_status,
    lease_ends_anyway,
    leased_accounts,
    limit_or_cleared,
    limit_or_none,
    link_values,
    passing_keys,
    recorded_expiry,
    reencrypted,
    sealed,
    secret_values,
    stored_values,
    unstorable,
    usable_link,
)
from .store_rules import lease_lost as _lease_lost
from .store_schema import BUSY_TIMEOUT as _BUSY_TIMEOUT
from .store_schema import SCHEMA_VERSION as _SCHEMA_VERSION
from .store_schema import enable_wal as _enable_wal
from .store_schema import migrate as _migrate
from .store_schema import transaction as _transaction
from .store_schema import user_version as _user_version
from .store_types import (
    LINK_ATTEMPTS,
    LINK_DEFAULT_EXPIRY,
    LINK_MAX_EXPIRY,
    AccountPage,
    KeyReplaced,
    KeysetPage,
    LeaseLost,
    Link,
    ListingKey,
    OutboxEntry,
)
from .store_types import utc_now as _now

if TYPE_CHECKING:
    from .store_protocol import AccountStore

__all__ = [
    "CHECK_INTERVAL",
    "LEASE_DEFAULT",
    "LINK_ATTEMPTS",
    "LINK_DEFAULT_EXPIRY",
    "LINK_MAX_EXPIRY",
    "AccountPage",
    "KeyReplaced",
    "KeysetPage",
    "Lease",
    "LeaseLost",
    "LeasedAccount",
    "Link",
    "ListingKey",
    "OutboxEntry",
    "SqliteStore",
    "Store",
    "default_path",
    "is_postgres_url",
    "upgrade",
]

_DATABASE_NAME = "hub.db"
_KEY_FILE_NAME = "hub.key"
_KEY_ENV = KEY_ENV
_HOME_ENV = "HUB_HOME"

#: The expiring window when the key's creation time is not known (see `expiring_from`).
_EXPIRING_WINDOW = EXPIRING_WINDOW

# The one key check of a database from before key ids (in `meta`); on opening, it moves to
# `key_checks` under the id of the key that decrypts it.
_KEY_CHECK = "key_check"


def default_path() -> Path:
    """Return where the account database lives by default.

    ``$HUB_HOME/hub.db`` when ``HUB_HOME`` is set, else ``hub.db`` in the platform's user data
    directory for ``hub`` (``~/.local/share/hub`` on Linux).
    """
    home = os.environ.get(_HOME_ENV)
    if home:
        return Path(home).expanduser() / _DATABASE_NAME
    return platformdirs.user_data_path("hub") / _DATABASE_NAME


#: What a verdict's values raise that SQLite cannot store (`hub_core.store_rules.UNSTORABLE`).
_UNSTORABLE: tuple[type[Exception], ...] = (
    *UNSTORABLE,
    sqlite3.DataError,
    sqlite3.InterfaceError,
    sqlite3.IntegrityError,
)


class SqliteStore(SharedMethods):
    """The linked accounts of one SQLite database: the default `AccountStore`.

    *path* defaults to `default_path()`; missing parent directories are created (mode 0700)
    and a new database file gets mode 0600. *secret_key* is a Fernet key (as made by
    ``hub keys new``), several keys (a sequence, or ``"new,old"``: the first encrypts, each
    decrypts the rows on its id), or a `KeyRing`; without it the keys come from
    ``HUB_SECRET_KEYS``, else ``HUB_SECRET_KEY``, else the key file ``hub.key`` beside the
    database, which is created with a new database only. A variable that is set but empty is a
    `StoreError`, not a fall back to the file.

    Raise `StoreError` when the database already has a key but no key is available, when a
    configured key fails its key check or none matches the database, when accounts are on a
    key id no configured key has (a key dropped too early), or when the database was made by
    a newer hub; in each case nothing on disk is created or changed.

    A store holds one SQLite connection: use it from one thread, and close it (or use it as a
    context manager) when done.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        secret_key: KeyRing | str | bytes | Sequence[str | bytes] | None = None,
    ) -> None:
        self._path = Path(path) if path is not None else default_path()
        self._key_path = self._path.parent / _KEY_FILE_NAME
        self._conn: sqlite3.Connection | None = None
        # The rows this connection leased, until their verdicts are recorded (`HeldRows`).
        self._held = HeldRows()
        # Read before anything on disk is touched: a bad key creates nothing.
        ring = self._configured_ring(secret_key)

        try:
            _make_dirs(self._path.parent)
        except OSError as exc:
            raise StoreError(f"cannot create the account database {self._path}: {exc}") from exc
        # Before anything is created or read: a home another user can write to (or a file they
        # own) lets them swap the database or read the key, and so every stored secret.
        self._check_owners()
        #: No write access (a read-only directory, file or file system): accounts can be read,
        #: never changed; see `_connect_raw`.
        self.readonly = self._path.exists() and not (
            os.access(self._path, os.W_OK) and os.access(self._path.parent, os.W_OK)
        )
        if not self.readonly:
            try:
                with contextlib.suppress(FileExistsError):
                    # Created before SQLite sees it, so the file is never readable by others,
                    # not even for a moment; an existing file is left as it is.
                    os.close(os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            except OSError as exc:
                raise StoreError(f"cannot create the account database {self._path}: {exc}") from exc
        self._conn, self._ring = self._connect_and_open(ring)

    # --- opening --------------------------------------------------------------------------------

    def _connect_and_open(self, ring: KeyRing | None) -> tuple[sqlite3.Connection, KeyRing]:
        try:
            conn = self._connect()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the account database {self._path}: {exc}") from exc
        try:
            with self._sqlite_errors():
                return conn, self._open(conn, ring)
        except BaseException:
            conn.close()
            raise

    def _connect(self) -> sqlite3.Connection:
        """A new connection to the database, rows read as `sqlite3.Row`: the store's own, or
        a listing's (`_listing`)."""
        conn = self._connect_raw()
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT * 1000)}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _connect_raw(self) -> sqlite3.Connection:
        if not self.readonly:
            return sqlite3.connect(self._path, timeout=_BUSY_TIMEOUT, isolation_level=None)
        # Read-only: SQLite must not try to create the -shm file of a WAL database in a
        # directory it cannot write. With no -wal file there is nothing uncommitted, and no
        # writer can start without creating one, so the file is read as it is ("immutable").
        # A -wal file left by a writer holds committed data: then SQLite reads it, which needs
        # its -shm file (present while a writer runs).
        uri = self._path.resolve().as_uri() + "?mode=ro"
        if not _sidecar(self._path, "-wal").exists():
            uri += "&immutable=1"
        return sqlite3.connect(uri, uri=True, timeout=_BUSY_TIMEOUT, isolation_level=None)

    def _check_owners(self) -> None:
        """Refuse a home, database or key file another user owns or can write (or read the key).

        As ssh does for ``~/.ssh``: permission bits are only checked on POSIX systems, and the
        message says how to fix each case.
        """
        if os.name != "posix":
            return
        uid = os.geteuid()
        home = self._path.parent
        files = [
            (home, 0o022, "chmod go-w"),
            (self._path, 0o022, "chmod 600"),
            (_sidecar(self._path, "-wal"), 0o022, "chmod 600"),
            (_sidecar(self._path, "-shm"), 0o022, "chmod 600"),
            # The key file must not be readable by others either: it decrypts every secret.
            (self._key_path, 0o077, "chmod 600"),
        ]
        for path, forbidden, chmod in files:
            try:
                info = path.stat()
            except (FileNotFoundError, NotADirectoryError):
                continue  # not there yet: created later, with the right owner and mode
            except OSError as exc:
                raise StoreError(f"cannot use the account store: {path}: {exc}") from exc
            what = "directory" if stat.S_ISDIR(info.st_mode) else "file"
            if info.st_uid != uid:
                raise StoreError(
                    f"refusing to use the account store: the {what} {path} belongs to another "
                    f"user (uid {info.st_uid}; you are uid {uid}), who could read or replace the "
                    f"stored keys. If it is yours, run `chown {uid} {path}`; otherwise set "
                    f"{_HOME_ENV} to a directory of your own"
                )
            if info.st_mode & forbidden:
                others = "read or written" if forbidden & 0o044 else "written"
                raise StoreError(
                    f"refusing to use the account store: the {what} {path} can be {others} by "
                    f"other users (mode {stat.S_IMODE(info.st_mode):04o}), who could read or "
                    f"replace the stored keys. Fix it with `{chmod} {path}`, or set {_HOME_ENV} "
                    "to a directory of your own"
                )

    def _configured_ring(
        self, secret_key: KeyRing | str | bytes | Sequence[str | bytes] | None
    ) -> KeyRing | None:
        """The ring from *secret_key* or the environment; None means "the key file"."""
        # A malformed entry is refused as it is (`BadKey`), database or not: it is no key at
        # all, so "does not match this database" would send a person looking for another.
        if secret_key is not None:
            return KeyRing.coerce(secret_key, source="the secret_key argument")
        return KeyRing.from_environment(self._key_path)

    def _open(self, conn: sqlite3.Connection, ring: KeyRing | None) -> KeyRing:
        # Whether this connection's commits wait for the disk (`_write`); SQLite's default.
        self._synced = True
        conn.execute("PRAGMA foreign_keys = ON")
        # Only reads until every key is known to be right: a missing or wrong key, a key
        # dropped too early, or a newer schema, must leave the database exactly as it was.
        version = _user_version(conn)
        if version > _SCHEMA_VERSION:
            raise StoreError(
                f"the account database {self._path} was made by a newer hub (schema version "
                f"{version}; this hub knows up to {_SCHEMA_VERSION}): upgrade hub-core to use it"
            )
        checks = _key_checks(conn) if version >= 1 else {}
        if checks:
            ring = self._unlock(conn, checks, ring)
            complete = None not in checks and all(key_id in checks for key_id in ring.ids)
            if version == _SCHEMA_VERSION and (complete or self.readonly):
                # Nothing to write: reading must not take the write lock, nor need write access.
                if not self.readonly:
                    _enable_wal(conn)
                    self._restrict_modes()
                return ring
        if self.readonly:
            raise StoreError(
                f"the account database {self._path} needs to be "
                f"{'upgraded' if checks else 'set up'} by this hub, which needs "
                f"write access to it and to {self._path.parent}; you have read access only. "
                "Run hub once with write access to it"
            )
        _enable_wal(conn)
        _migrate(conn, version)
        ring = self._ensure_key_checks(conn, ring)
        self._restrict_modes()
        return ring

    def _unlock(
        self, conn: sqlite3.Connection, checks: Mapping[str | None, str], ring: KeyRing | None
    ) -> KeyRing:
        """Return the ring that passes the database's key checks, or raise without writing.

        Every configured key with a check must pass it, at least one key must be one the
        database knows, and no account may be on a key id the ring lacks.
        """
        if ring is None:
            ring = self._key_file_ring()
            if ring is None:
                raise StoreError(
                    f"no secret key for the account database {self._path}: it was expected in "
                    f"the key file {self._key_path}; restore that file, or set {KEYS_ENV} (or "
                    f"{_KEY_ENV}) to the key the database was created with"
                )
        known = passing_keys(ring, checks, f"this database ({self._path})")
        legacy = checks.get(None)
        legacy_id = None if legacy is None else ring.opens(legacy)
        if (legacy is not None and legacy_id is None) or (legacy is None and not known):
            if len(ring) == 1:
                raise StoreError(
                    f"the secret key from {ring.source} does not match this database "
                    f"({self._path}): it cannot decrypt the secrets stored there. Use the key "
                    f"the database was created with (the key file {self._key_path}, "
                    f"{KEYS_ENV} or {_KEY_ENV})"
                )
            ids = sorted(key_id for key_id in checks if key_id is not None)
            raise StoreError(
                f"none of the keys from {ring.source} matches this database ({self._path}): "
                f"it knows key id{'s' * (len(ids) != 1)} {', '.join(ids) or '(none recorded)'}, "
                f"the configured keys have {', '.join(ring.ids)}. Add the key the database "
                "was created with; nothing was read or changed"
            )
        self._refuse_dropped_keys(conn, ring, legacy_id)
        return ring

    def _refuse_dropped_keys(
        self, conn: sqlite3.Connection, ring: KeyRing, legacy_id: str | None
    ) -> None:
        """Raise when accounts are on a key id no configured key has, naming ids and counts."""
        if not _has_key_ids(conn):
            return  # before key ids: every row is on the key of the single check
        dropped: dict[str, int] = {}
        for key_id in _row_key_ids(conn):
            if key_id is None:
                if legacy_id is None:
                    # Not written by hub (it records an id with every row): unreadable anyway.
                    dropped["(none)"] = _count_on(conn, None)
            elif key_id not in ring:
                dropped[key_id] = _count_on(conn, key_id)
        if dropped:
            raise dropped_keys(str(self._path), ring, dropped)

    def _ensure_key_checks(self, conn: sqlite3.Connection, ring: KeyRing | None) -> KeyRing:
        """Give each configured key its check, and rows from before key ids their key's id."""
        # Under the write lock, so two processes creating one database agree on one key, and
        # the checks are read again as they are now.
        with _transaction(conn):
            checks = _key_checks(conn)
            if checks:
                ring = self._unlock(conn, checks, ring)
            elif ring is None:
                ring = self._key_file_ring() or self._create_key_file()
            legacy = checks.pop(None, None)
            if legacy is not None:
                legacy_id = ring.opens(legacy)  # never None: _unlock passed
                conn.execute("UPDATE accounts SET key_id = ? WHERE key_id IS NULL", (legacy_id,))
                checks[legacy_id] = legacy
                conn.execute(
                    "INSERT OR IGNORE INTO key_checks (key_id, token) VALUES (?, ?)",
                    (legacy_id, legacy),
                )
                conn.execute("DELETE FROM meta WHERE key = ?", (_KEY_CHECK,))
            for key_id in ring.ids:
                if key_id not in checks:
                    conn.execute(
                        "INSERT INTO key_checks (key_id, token) VALUES (?, ?)",
                        (key_id, ring.check_token(key_id)),
                    )
            return ring

    def _key_file_ring(self) -> KeyRing | None:
        try:
            return KeyRing.from_key_file(self._key_path)
        except BadKey as exc:
            raise StoreError(
                f"the key file {self._key_path} does not hold a valid hub key ({exc.where}); "
                f"fix it, remove it to have a new one made for a new database, or set {KEYS_ENV}"
            ) from None

    def _create_key_file(self) -> KeyRing:
        key = generate_key().encode("ascii")
        try:
            fd = os.open(self._key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, key + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            # The key check is about to be committed: if the key file's name were lost in a
            # crash, every stored secret would be lost with it.
            _fsync_dir(self._key_path.parent)
        except OSError as exc:
            raise StoreError(f"cannot create the key file {self._key_path}: {exc}") from exc
        return KeyRing(key, source=f"the key file {self._key_path}")

    def _restrict_modes(self) -> None:
        # SQLite gives the -wal and -shm files the database's mode; tighten any file that an
        # older tool or a hand-made database left readable by others.
        for path in (self._path, _sidecar(self._path, "-wal"), _sidecar(self._path, "-shm")):
            # Best effort: a file that is gone, or not ours to change, is left as it is.
            with contextlib.suppress(OSError):
                if path.stat().st_mode & 0o077:
                    path.chmod(0o600)

    # --- lifecycle ------------------------------------------------------------------------------

    @property
    def waits_on_server(self) -> bool:
        """No: SQLite's calls are this process's own work (`AccountStore.waits_on_server`)."""
        return False

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    def connect_again(self) -> SqliteStore:
        """Another connection to this database, unlocked with this store's key ring.

        A `Store` holds one SQLite connection for the thread that opened it; call this from
        the thread that will use the new store (the web Hub gives its store calls their own
        thread this way). Close it when done.
        """
        other = object.__new__(SqliteStore)
        other._path, other._key_path, other.readonly = self._path, self._key_path, self.readonly
        other._conn, other._held = None, HeldRows()
        other._conn, other._ring = other._connect_and_open(self._ring)
        return other

    def close(self) -> None:
        """Close the database connection; closing twice is harmless."""
        self._held.clear()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Store path={str(self._path)!r}>"

    @staticmethod
    def open(
        url_or_path: str | os.PathLike[str] | None = None,
        *,
        secret_key: KeyRing | str | bytes | Sequence[str | bytes] | None = None,
    ) -> AccountStore:
        """The account store at *url_or_path*, of the backend it names (`open_store`):
        ``Store.open("postgresql://...")`` is PostgreSQL, a path (or None) SQLite."""
        return open_store(url_or_path, secret_key=secret_key)

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"the account store {self._path} is closed")
        return self._conn

    @contextlib.contextmanager
    def _sqlite_errors(self) -> Iterator[None]:
        # SQLite messages name tables and constraints, never the bound values, so they hold no
        # secret and can be shown.
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(f"the account database {self._path} failed: {exc}") from exc

    @contextlib.contextmanager
    def _write(
        self, *, keeps_held: bool = False, durable: bool = True
    ) -> Iterator[sqlite3.Connection]:
        """One write transaction. Unless *keeps_held* (the write touches no leased row but
        its own lease's), the rows held since their lease are forgotten (`HeldRows`).

        Unless *durable*, its commit does not wait for the disk (``synchronous = NORMAL``, in
        WAL mode): what it writes survives a killed process as any commit does, and is lost to
        a power cut only until the next durable commit or checkpoint, the database intact.
        That is for what a lost write costs nothing but work: verdicts, leases and runs (an
        account checked again). Links, keys, budgets and webhooks wait for the disk.
        """
        if not keeps_held:
            self._held.clear()
        if self.readonly:
            raise StoreError(
                f"the account database {self._path} is read-only for you (no write access to "
                f"it or to {self._path.parent}): accounts can be listed, not changed; nothing "
                "was changed"
            )
        with self._sqlite_errors():
            if durable != self._synced:  # outside a transaction, where SQLite allows it
                self._db.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
                self._synced = durable
            with _transaction(self._db) as conn:
                yield conn

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
        """Store a freshly checked key and return its account, marked active.

        Linking an identity that is already stored for this provider updates that account (same
        id, same ``linked_at``; new label, fields, key and check) instead of adding another, also
        when two processes link it at the same time. The secret fields of *credentials* are
        encrypted; the others are stored in clear as the account's ``config``.

        With *account_id* (a relink), only that account is updated: `AccountNotFound` when it
        was unlinked meanwhile (it is not brought back under a new id), `StoreError` when it is
        another provider's or identity's; nothing is stored then.

        The non-secret fields say where the key was checked (a tenant, a region, an
        environment), so they are part of what the account is: when linking (no
        *account_id*) and the stored account of this identity was linked with other
        non-secret values, raise `IdentityMismatch` naming both and change nothing. Otherwise
        one provider's answer (a hostile tenant claiming another tenant's ids) could replace
        another account's key.

        With *link_id*, the save uses up that auth link in the same transaction: `LinkUsed`
        (and nothing stored) when it is used, revoked, expired or locked, or made for another
        provider or account; so two racing submits of one link store one account.

        *owner* (a host application's opaque id, see `Account.owner`) scopes the account:
        one identity linked for two owners is two accounts, and a relink (*account_id*) of
        another owner's account is `AccountNotFound`. Through a link, the link's owner and
        owner name are the account's, whatever is given here. *owner_name* is stored beside
        it (an update keeps the stored one when None is given).
        """
        now = _now(now)
        owner, owner_name = check_owner(owner), clean_owner_name(owner_name)
        config, key_id, token = sealed(self._ring, credentials)
        details = _details_json(verified.details)
        with self._write() as conn:
            if link_id is not None:
                link = self._check_link(conn, link_id, provider_id, account_id, now)
                owner, owner_name = link.owner, link.owner_name
            if account_id is not None:
                replaced = self._replace_key(
                    conn, account_id, provider_id, verified, config, (key_id, token), now, owner
                )
                if link_id is not None:
                    _mark_used(conn, link_id, replaced.id, now)
                return replaced
            # In the write transaction: the account compared is the one the upsert replaces.
            stored = conn.execute(
                "SELECT id, label, config FROM accounts"
                " WHERE owner = ? AND provider_id = ? AND identity = ?",
                (owner or "", provider_id, verified.identity),
            ).fetchone()
            if stored is not None:
                _check_same_place(stored, verified, credentials.public())
            account_id = _new_id()
            while conn.execute("SELECT 1 FROM accounts WHERE id = ?", (account_id,)).fetchone():
                account_id = _new_id()
            # One statement decides between insert and update, so concurrent links of the same
            # identity cannot both insert.
            conn.execute(
                """
                INSERT INTO accounts (id, provider_id, identity, label, verdict, config, secrets,
                                      linked_at, checked_at, expires_at, expiring_at,
                                      last_error, details, owner, owner_name, key_id)
                VALUES (?, ?, ?, ?, 'active', ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?)
                ON CONFLICT (owner, provider_id, identity) DO UPDATE SET
                    label = excluded.label,
                    verdict = 'active',
                    config = excluded.config,
                    secrets = excluded.secrets,
                    key_id = excluded.key_id,
                    checked_at = excluded.checked_at,
                    expires_at = excluded.expires_at,
                    expiring_at = excluded.expiring_at,
                    last_error = NULL,
                    details = excluded.details,
                    owner_name = coalesce(excluded.owner_name, owner_name)
                """,
                (
                    account_id,
                    provider_id,
                    verified.identity,
                    verified.label,
                    config,
                    token,
                    _iso(now),
                    _iso(now),
                    _iso(verified.expires_at),
                    _iso(expiring_from(verified.expires_at, verified.created_at)),
                    details,
                    owner or "",
                    owner_name,
                    key_id,
                ),
            )
            row = conn.execute(
                "SELECT rowid AS row_number, * FROM accounts"
                " WHERE owner = ? AND provider_id = ? AND identity = ?",
                (owner or "", provider_id, verified.identity),
            ).fetchone()
            saved = _account(row, now)
            if link_id is not None:
                _mark_used(conn, link_id, saved.id, now)
        return saved

    # --- auth links -----------------------------------------------------------------------------

    def _add_link(self, link: Link) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO links (id, kind, provider_id, account_id, note, created_at,"
                " expires_at, owner, owner_name, return_url, state)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                link_values(link, _iso),
            )

    def link(self, link_id: str) -> Link:
        """The link with this id (`LinkUsed` with reason ``unknown`` when there is none)."""
        with self._sqlite_errors():
            row = self._db.execute("SELECT * FROM links WHERE id = ?", (link_id,)).fetchone()
        if row is None:
            raise LinkUsed(link_id, "unknown")
        return _link(row)

    def links(self, *, include_closed: bool = False, now: datetime | None = None) -> list[Link]:
        """The links, oldest first: those still open or locked, or every one (*include_closed*)."""
        with self._sqlite_errors():
            rows = self._db.execute("SELECT * FROM links ORDER BY created_at, id").fetchall()
        found = [_link(row) for row in rows]
        if include_closed:
            return found
        return [link for link in found if link.state(now) in ("open", "locked")]

    def revoke_link(self, link_id: str, *, now: datetime | None = None) -> Link:
        """Withdraw a link so it can no longer be used; a used or revoked one is left as it is.

        `LinkUsed` with reason ``unknown`` when there is no such link.
        """
        with self._write() as conn:
            conn.execute(
                "UPDATE links SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL"
                " AND used_at IS NULL",
                (_iso(_now(now)), link_id),
            )
        return self.link(link_id)

    def link_failed(self, link_id: str) -> Link:
        """Count a failed attempt on a link and return it (locked at `LINK_ATTEMPTS`)."""
        with self._write() as conn:
            conn.execute(
                "UPDATE links SET failed_attempts = failed_attempts + 1"
                " WHERE id = ? AND used_at IS NULL",
                (link_id,),
            )
        return self.link(link_id)

    def _check_link(
        self,
        conn: sqlite3.Connection,
        link_id: str,
        provider_id: str,
        account_id: str | None,
        now: datetime,
    ) -> Link:
        # In the save's write transaction: the state read here is the one the save commits on.
        row = conn.execute("SELECT * FROM links WHERE id = ?", (link_id,)).fetchone()
        return usable_link(
            None if row is None else _link(row), link_id, provider_id, account_id, now
        )

    def _replace_key(
        self,
        conn: sqlite3.Connection,
        account_id: str,
        provider_id: str,
        verified: Verified,
        config: str,
        secret: tuple[str, bytes],
        now: datetime,
        owner: str | None,
    ) -> Account:
        key = _by_id(account_id)
        row = conn.execute(
            "SELECT provider_id, identity, owner FROM accounts WHERE (id = ? OR rowid = ?)", key
        )
        check_relink(row.fetchone(), account_id, provider_id, verified.identity, owner)
        conn.execute(
            """
            UPDATE accounts SET label = ?, verdict = 'active', config = ?, secrets = ?,
                key_id = ?, checked_at = ?, expires_at = ?, expiring_at = ?, last_error = NULL,
                details = ?
            WHERE (id = ? OR rowid = ?)
            """,
            (
                verified.label,
                config,
                secret[1],
                secret[0],
                _iso(now),
                _iso(verified.expires_at),
                _iso(expiring_from(verified.expires_at, verified.created_at)),
                _details_json(verified.details),
                *key,
            ),
        )
        return _account(
            conn.execute(
                "SELECT rowid AS row_number, * FROM accounts WHERE (id = ? OR rowid = ?)", key
            ).fetchone(),
            now,
        )

    def record(
        self,
        account_id: str,
        result: Verified | HubError,
        *,
        now: datetime | None = None,
        version: str | None = None,
    ) -> Account:
        """Store the outcome of re-checking an account's key and return the updated account.

        A `Verified` makes the account active again (its label, expiry and details are
        refreshed); it must reach the stored identity, else `StoreError` and nothing changes.
        An error sets the verdict: `InvalidCredentials` gives ``invalid`` (``expired`` when the
        stored expiry has passed), `FieldError` ``invalid``, `PermissionDenied` ``denied``, any
        other `HubError` ``error``, keeping the verdict from before in
        ``details["previous_status"]``; a `StoreError` (the stored key cannot be read) gives
        ``damaged``. The error's message becomes ``last_error``.

        *version* (from `checkout`) is the version of the key that was checked: when the
        account holds another key now, `KeyReplaced` and nothing changes. An outcome that cannot
        be stored (text that is not valid Unicode, say) is recorded as an ``error`` saying so.
        """
        now = _now(now)
        with self._write(durable=False) as conn:
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
        """Store the outcomes of many re-checks in one transaction (as `record` each).

        Return, per outcome, the updated account, or the `StoreError` that left that account
        unchanged (it was unlinked meanwhile: `AccountNotFound`; relinked meanwhile:
        `KeyReplaced`, when *versions* maps its id to the version of the key checked; or the
        key reaches another identity); the others are stored all the same. One transaction
        instead of one per account: `hub check` over thousands of accounts would otherwise
        spend its time committing.

        With *lease* (a `Lease` token), each outcome is stored only if that lease still holds
        the account (else `LeaseLost`, the account unchanged), its lease is cleared and it is
        due again in *next_check_in*; a `RateLimited` outcome then changes no verdict: the
        account is due again after the provider's ``retry_after`` (with jitter).
        """
        now = _now(now)
        versions = versions or {}
        results = list(results)
        out: list[Account | StoreError] = []
        # Under a lease, each verdict writes only its own lease's rows: what other leases of
        # this store hold stays as it was.
        with self._write(keeps_held=lease is not None, durable=False) as conn:
            ids = [account_id for account_id, _ in results]
            duplicated = len(set(ids)) != len(ids)
            # Every id as stored, none listed twice: the verdicts are written together, each
            # to a row no other verdict of this call touches.
            batched = not duplicated and not any(i.startswith("#") for i in ids)
            # The rows this store leased, as the lease wrote them, while nothing else has
            # written them: in a batch, neither read again before the verdicts nor after.
            held: dict[str, Held] = {}
            if lease is not None and batched:
                held = self._held.take(lease, _data_version(conn), ids)
            elif lease is not None:
                self._held.forget(lease)
            # Each other account's row read for the whole batch, in a few statements: one
            # SELECT per verdict cost more than its UPDATE. Only ids as stored are read so (an
            # id of the ``#<rowid>`` form, an account that is gone, one listed twice: `_record`
            # reads it itself, after the verdicts before it were written).
            wanted = sorted({i for i in ids if not i.startswith("#") and i not in held})
            rows: dict[str, sqlite3.Row] = {i: kept.row for i, kept in held.items()}
            for start in range(0, len(wanted), 500):  # below SQLite's parameter limit
                part = wanted[start : start + 500]
                rows.update(
                    (row["id"], row)
                    for row in conn.execute(
                        f"SELECT {self._RECORDED} FROM accounts"  # noqa: S608
                        f" WHERE id IN ({', '.join('?' * len(part))})",
                        part,
                    )
                )
            if batched:
                accounts = {i: kept.account for i, kept in held.items()}
                return self._record_batch(
                    conn, results, rows, accounts, now, versions, lease, next_check_in
                )
            seen: set[str] = set()
            for account_id in ids:
                if account_id in seen:
                    rows.pop(account_id, None)
                seen.add(account_id)
            for account_id, result in results:
                version = versions.get(account_id)
                row = rows.pop(account_id, None)
                if lease is None:
                    out.append(self._record_one(conn, account_id, result, now, version, row=row))
                else:
                    out.append(
                        self._record_leased(
                            conn, account_id, result, now, version, lease, next_check_in, row
                        )
                    )
        return out

    def _record_batch(
        self,
        conn: sqlite3.Connection,
        results: list[tuple[str, Verified | HubError]],
        rows: dict[str, sqlite3.Row],
        held: Mapping[str, Account],
        now: datetime,
        versions: Mapping[str, str],
        lease: str | None,
        next_check_in: timedelta,
    ) -> list[Account | StoreError]:
        """`record_many` of *results* whose rows are *rows* (read in this transaction, or held
        since their lease: one per account, none listed twice): the same outcomes as recording
        each in turn, in a few statements instead of two per verdict. *held* are the accounts
        read from the held rows, which give the recorded accounts without reading them back."""
        out: list[Account | StoreError | None] = [None] * len(results)
        due = None if lease is None else now + next_check_in
        ended = None if lease is None or due is None else (lease, due)
        texts = (_iso(now), None if due is None else _iso(due))
        # Per statement (a passed check's, a failed one's): the verdicts it writes, as their
        # place in *results*, the UPDATE's parameters, the row and what the UPDATE writes.
        planned: dict[str, list[tuple[int, tuple[Any, ...], sqlite3.Row, Written]]] = {}
        for position, (account_id, result) in enumerate(results):
            if not isinstance(result, Verified | HubError):
                raise TypeError(f"expected Verified or HubError, got {type(result).__name__}")
            version = versions.get(account_id)
            row = rows.get(account_id)
            if ended is not None and isinstance(result, RateLimited):
                out[position] = self._record_leased(
                    conn, account_id, result, now, version, ended[0], next_check_in
                )
                continue
            try:
                try:
                    sql, params, row, written = self._verdict(
                        account_id, result, row, now, version, ended, texts
                    )
                except _UNSTORABLE as exc:
                    failed = unstorable(exc)
                    sql, params, row, written = self._verdict(
                        account_id, failed, row, now, version, ended, texts
                    )
            except StoreError as exc:
                out[position] = exc
                if ended is not None and lease_ends_anyway(exc):
                    _end_lease(conn, _by_id(account_id), ended[0], ended[1])
                continue
            planned.setdefault(sql, []).append((position, params, row, written))
        unread: list[tuple[int, sqlite3.Row]] = []  # written; read back below
        for sql, group in planned.items():
            # One statement for the group. Should the database refuse one verdict of it (text
            # it cannot hold), or a verdict find its row no longer under its lease (another
            # lease of this store took it, the first having expired), the group is undone and
            # written one verdict at a time, each row read afresh: only that verdict is
            # recorded as not storable, or lost with its lease.
            conn.execute("SAVEPOINT record_batch")
            try:
                count = conn.executemany(sql, [params for _, params, _, _ in group]).rowcount
            except _UNSTORABLE:
                count = -1
            if count != len(group):
                conn.execute("ROLLBACK TO record_batch")
                conn.execute("RELEASE record_batch")
                for position, _, _, _ in group:
                    account_id, result = results[position]
                    version = versions.get(account_id)
                    outcome = self._record_one(conn, account_id, result, now, version, lease=ended)
                    if ended is not None and lease_ends_anyway(outcome):
                        _end_lease(conn, _by_id(account_id), ended[0], ended[1])
                    out[position] = outcome
                continue
            conn.execute("RELEASE record_batch")
            for position, _, row, written in group:
                kept = held.get(results[position][0])
                recorded = None if kept is None else _recorded_account(kept, written, now)
                if recorded is None:
                    unread.append((position, row))
                else:
                    out[position] = recorded
        # Each other account as written, read back in the same transaction (a few statements).
        numbers = [row["row_number"] for _, row in unread]
        updated: dict[int, Account] = {}
        for start in range(0, len(numbers), 500):  # below SQLite's parameter limit
            part = numbers[start : start + 500]
            found = conn.execute(
                "SELECT rowid AS row_number, * FROM accounts"  # noqa: S608
                f" WHERE rowid IN ({', '.join('?' * len(part))})",
                part,
            ).fetchall()
            for row, account in zip(found, _accounts(found, now), strict=True):
                updated[row["row_number"]] = account
        for position, row in unread:
            out[position] = updated[row["row_number"]]
        recorded_all = [outcome for outcome in out if outcome is not None]
        if len(recorded_all) != len(results):  # each verdict has its outcome, or none is kept
            raise AssertionError("a verdict of the batch has no outcome")
        return recorded_all

    def _record_leased(
        self,
        conn: sqlite3.Connection,
        account_id: str,
        result: Verified | HubError,
        now: datetime,
        version: str | None,
        lease: str,
        next_check_in: timedelta,
        row: sqlite3.Row | None = None,
    ) -> Account | StoreError:
        if not isinstance(result, RateLimited):
            # The verdict and the lease's end in one UPDATE, the lease checked on the row read
            # for the whole batch: one statement per account, not seven (`hub check --all`
            # records thousands a second).
            due = now + next_check_in
            outcome = self._record_one(
                conn, account_id, result, now, version, lease=(lease, due), row=row
            )
            if lease_ends_anyway(outcome):
                _end_lease(conn, _by_id(account_id), lease, due)
            return outcome
        key = _by_id(account_id)
        held = conn.execute(
            "SELECT lease_token, provider_id FROM accounts WHERE (id = ? OR rowid = ?)", key
        ).fetchone()
        if held is None:
            return AccountNotFound(account_id)
        if held["lease_token"] != lease:
            return _lease_lost(account_id)
        # One key's 429 says nothing of its verdict: only when to ask again. Several of one
        # provider's close together pause the provider for every checker.
        due = retry_due(result, now)
        _end_lease(conn, key, lease, due, retry_at=due)
        _note_rate_limited(conn, held["provider_id"], now, result.retry_after)
        row = conn.execute(
            "SELECT rowid AS row_number, * FROM accounts WHERE (id = ? OR rowid = ?)", key
        ).fetchone()
        return _account(row, now)

    def _record_one(
        self,
        conn: sqlite3.Connection,
        account_id: str,
        result: Verified | HubError,
        now: datetime,
        version: str | None,
        *,
        lease: tuple[str, datetime] | None = None,
        row: sqlite3.Row | None = None,
    ) -> Account | StoreError:
        if not isinstance(result, Verified | HubError):
            raise TypeError(f"expected Verified or HubError, got {type(result).__name__}")
        # One outcome that cannot be stored is undone alone, never the verdicts recorded
        # before it in the same transaction: `_record` writes one statement, which SQLite
        # undoes by itself when it fails (a savepoint around it cost two more statements per
        # account).
        try:
            return self._record(conn, account_id, result, now, version, lease=lease, row=row)
        except StoreError as exc:
            return exc
        except _UNSTORABLE as exc:
            # Not this account's verdict, but text or data the database refused (a lone
            # surrogate from a plugin, say): record that it could not be stored.
            failed = unstorable(exc)
            try:
                return self._record(conn, account_id, failed, now, version, lease=lease, row=row)
            except StoreError as again:
                return again

    #: What `_record` reads of an account before it writes its verdict.
    _RECORDED = (
        "rowid AS row_number, id, identity, label, verdict, expires_at, expiring_at, details,"
        " secrets, lease_token"
    )

    def _record(
        self,
        conn: sqlite3.Connection,
        account_id: str,
        result: Verified | HubError,
        now: datetime,
        version: str | None = None,
        *,
        lease: tuple[str, datetime] | None = None,
        row: sqlite3.Row | None = None,
    ) -> Account:
        """Write one verdict; with *lease* (its token, and when the account is due again),
        only while that lease holds the account, ending it in the same UPDATE. *row* is the
        account's row (its `_RECORDED` columns) when it was read already, in this transaction."""
        if row is None:
            row = conn.execute(
                f"SELECT {self._RECORDED} FROM accounts WHERE (id = ? OR rowid = ?)",  # noqa: S608
                _by_id(account_id),
            ).fetchone()
        texts = (_iso(now), None if lease is None else _iso(lease[1]))
        sql, params, row, _ = self._verdict(account_id, result, row, now, version, lease, texts)
        conn.execute(sql, params)
        # By the rowid just read, in the same transaction: an UPDATE that finds its row by
        # ``(id = ? OR rowid = ?)`` and RETURNING it cost twice this UPDATE and SELECT (bench:
        # 123 against 61 µs per verdict).
        updated = conn.execute(
            "SELECT rowid AS row_number, * FROM accounts WHERE rowid = ?", (row["row_number"],)
        ).fetchone()
        return _account(updated, now)

    def _verdict(
        self,
        account_id: str,
        result: Verified | HubError,
        row: sqlite3.Row | None,
        now: datetime,
        version: str | None,
        lease: tuple[str, datetime] | None,
        texts: tuple[str | None, str | None],
    ) -> tuple[str, tuple[Any, ...], sqlite3.Row, Written]:
        """The UPDATE (its SQL and parameters) that writes *result* on the account of *row*
        (`_record`), that row and what the UPDATE writes; the `StoreError` when it may not be
        written. *texts* are *now* and the lease's due time as stored."""
        row = check_recordable(row, account_id, lease, version)
        # The end of the lease, set with the verdict: cleared, and when the account is due;
        # only while the lease holds the row (a held row may have been leased again since).
        ended, guard = "", ""
        end: tuple[str | None, ...] = ()
        held: tuple[str, ...] = ()
        if lease is not None:
            ended = ", lease_token = NULL, lease_until = NULL, next_check_at = ?, retry_at = NULL"
            guard, end, held = " AND lease_token = ?", (texts[1],), (lease[0],)
        checked_at = texts[0]
        assert checked_at is not None
        if isinstance(result, Verified):
            expires_at = _iso(result.expires_at)
            expiring_at = recorded_expiry(result, row, account_id, _iso)
            details = _details_json(result.details)
            # The label only when it changed: writing it, even unchanged, rewrites its entries
            # in two indexes (the listing's), which cost as much as the rest of the UPDATE.
            relabel: tuple[str, ...] = () if result.label == row["label"] else (result.label,)
            return (
                f"UPDATE accounts SET {'label = ?, ' if relabel else ''}verdict = 'active',"  # noqa: S608
                " checked_at = ?, expires_at = ?, expiring_at = ?, last_error = NULL, details = ?"
                f"{ended} WHERE rowid = ?{guard}",
                (
                    *relabel,
                    checked_at,
                    expires_at,
                    expiring_at,
                    details,
                    *end,
                    row["row_number"],
                    *held,
                ),
                row,
                Written(result.label, "active", checked_at, expires_at, expiring_at, None, details),
            )
        # A hand-edited row must not stop its verdict from being recorded: what cannot be
        # read is treated as absent (`error_outcome`).
        verdict, message, details = failed_check(self._ring, result, row, now)
        return (
            "UPDATE accounts SET verdict = ?, checked_at = ?, last_error = ?,"  # noqa: S608
            f" details = ?{ended} WHERE rowid = ?{guard}",
            (verdict, checked_at, message, details, *end, row["row_number"], *held),
            row,
            Written(
                row["label"],
                verdict,
                checked_at,
                row["expires_at"],
                row["expiring_at"],
                message,
                details,
            ),
        )

    def get(self, id_or_prefix: str, *, owner: str | None = None) -> Account:
        """Return the account with this id, or the only one whose id starts with it.

        Raise `AccountNotFound` when none matches and `AmbiguousAccount` when several do.
        With *owner*, only that owner's accounts match: another owner's is not found.
        """
        prefix = id_or_prefix.strip().lower()
        if not prefix:
            raise AccountNotFound(id_or_prefix)
        key = _by_id(prefix)
        mine = "" if owner is None else " AND owner = :owner"
        params = {
            "id": key[0],
            "rowid": key[1],
            "owner": owner,
            "n": len(prefix),
            "p": prefix,
            "end": prefix + _LAST_CHARACTER,
        }
        with self._sqlite_errors():
            rows = (
                self._db.execute(
                    "SELECT rowid AS row_number, * FROM accounts"  # noqa: S608 (no value in it)
                    f" WHERE (id = :id OR rowid = :rowid){mine}",
                    params,
                ).fetchall()
                or self._db.execute(f"{_PREFIX_SQL}{mine} ORDER BY id", params).fetchall()
            )
        if not rows:
            raise AccountNotFound(id_or_prefix)
        if len(rows) > 1:
            raise AmbiguousAccount(id_or_prefix, [_account_id(row) for row in rows])
        return _account(rows[0], _now(None))

    def accounts(
        self,
        *,
        provider: str | None = None,
        status: Status | str | None = None,
        owner: str | None = None,
        now: datetime | None = None,
    ) -> list[Account]:
        """Return the accounts, ordered by provider and label (`iter_accounts`, as a list).

        *provider* keeps one provider's accounts; *owner* one owner's; *status* keeps those
        with that status as of *now* (default: the current time), so ``expiring`` and
        ``expired`` are found by date. A row hub cannot read (edited by hand, say) is listed
        with status ``damaged`` and the reason in ``last_error``; it never hides the others.
        A long listing is better read with `iter_accounts`, which never holds it whole.
        """
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
        """Yield the accounts of `accounts` (same filters, same order), *batch* rows at a time.

        The order is provider, label, then id. Each batch is one indexed query that starts
        after the last row of the one before (keyset paging: no OFFSET, no sort), so memory
        stays at one batch whatever the store holds. The batches read one snapshot, a read
        transaction on a connection of the listing's own (in WAL mode the store can be
        written meanwhile): no account is listed twice or skipped, whatever changes. An
        unknown *status* is a `ValueError` at the call, before anything is read.
        """
        wanted = _wanted_status(status)
        return self._listing(provider, wanted, owner, max(1, batch), _now(now), None)

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
        """Return the page of `iter_accounts` that starts after *after* (None: the first).

        The page's `KeysetPage.after` is the key of the next page (None on the last). A page
        reads its own rows and one more from the index, wherever it is in the listing, where
        `page` (offset) reads every row before it. A key is the store's own value: a caller
        that hands it to someone else (a link on a web page) signs it first.
        """
        wanted = _wanted_status(status)
        limit = max(1, limit)
        rows = itertools.islice(
            self._keyed(provider, wanted, owner, limit + 1, _now(now), after), limit + 1
        )
        found = list(rows)
        more = len(found) > limit
        return KeysetPage(
            [account for _, account in found[:limit]],
            _listing_key(found[limit - 1][0]) if more else None,
        )

    def _listing(
        self,
        provider: str | None,
        wanted: Status | None,
        owner: str | None,
        batch: int,
        now: datetime,
        after: ListingKey | None,
    ) -> Iterator[Account]:
        # Every batch from one snapshot (a read transaction of a connection of its own, held
        # until the listing ends; in WAL mode writers go on meanwhile): a re-check that
        # records a new label moves its row in the order, and batches read at different
        # moments would list it twice or not at all.
        self._db  # noqa: B018 - a closed store refuses to list
        with self._sqlite_errors():
            snapshot = self._connect()
        try:
            with self._sqlite_errors():
                snapshot.execute("BEGIN")
            for _, account in self._keyed(provider, wanted, owner, batch, now, after, snapshot):
                yield account
        finally:
            snapshot.close()

    def _keyed(
        self,
        provider: str | None,
        wanted: Status | None,
        owner: str | None,
        batch: int,
        now: datetime,
        after: ListingKey | None,
        conn: sqlite3.Connection | None = None,
    ) -> Iterator[tuple[sqlite3.Row, Account]]:
        """The listing as (row, account) pairs, one keyset query per *batch* rows (on the
        store's connection, or on *conn*)."""
        where, params = _filters(provider, owner)
        params.update(now=_iso(now), soon=_iso(now + _EXPIRING_WINDOW), batch=batch)
        if wanted is not None and wanted is not Status.DAMAGED:
            # Decided in SQL, so a filtered listing reads only what it shows. Whether a row
            # is damaged is not (it takes reading every column), so `damaged` is decided
            # below, row by row, and a damaged row is taken out of every other status.
            where.append(f"{_STATUS_SQL} = :status")
            params["status"] = wanted.value
        # With one provider, its equality leads the key: the index is searched from there
        # (a range on all four columns would pick the provider-only index and sort).
        columns = _LISTING_KEY[1:] if provider is not None else _LISTING_KEY
        while True:
            conditions = list(where)
            if after is not None:
                key = after[1:] if provider is not None else after
                condition, values = _after(columns, key)
                conditions.append(condition)
                params.update(values)
            sql = (
                f"SELECT rowid AS row_number, * FROM accounts{_where(conditions)}"  # noqa: S608
                f"{_LISTING_ORDER} LIMIT :batch"
            )
            with self._sqlite_errors():
                rows = (conn or self._db).execute(sql, params).fetchall()
            for row in rows:
                account = _account(row, now)
                if wanted is None or account.status is wanted:
                    yield row, account
            if len(rows) < batch:
                return
            # The last row read, shown or not: the next batch starts after it.
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
        """Return one page of `accounts` (same order and filters) and the number matching.

        The status is decided in SQL from the stored verdict and expiry as of *now*, so a
        page reads only its own rows and those before it (OFFSET: `page_after` reads only
        its own). A row edited by hand outside hub is filtered by its stored verdict and
        shown ``damaged``.
        """
        wanted = _wanted_status(status)
        now = _now(now)
        offset, limit = max(0, offset), max(1, limit)
        where, params = _filters(provider, owner)
        params.update(now=_iso(now), soon=_iso(now + _EXPIRING_WINDOW), limit=limit, offset=offset)
        if wanted is not None:
            where.append(f"{_STATUS_SQL} = :status")
            params["status"] = wanted.value
        clause = _where(where)
        with self._sqlite_errors():
            count = f"SELECT count(*) FROM accounts{clause}"  # noqa: S608 (no value in it)
            total = self._db.execute(count, params).fetchone()[0]
            rows = self._db.execute(
                f"SELECT rowid AS row_number, * FROM accounts{clause}"  # noqa: S608
                f"{_LISTING_ORDER} LIMIT :limit OFFSET :offset",
                params,
            ).fetchall()
        return AccountPage([_account(row, now) for row in rows], total, offset, limit)

    # --- leases (SCALE.md §2) ----------------------------------------------------------------

    def lease(
        self,
        limit: int,
        *,
        checked_before: datetime | None = None,
        lease_for: timedelta = LEASE_DEFAULT,
        now: datetime | None = None,
    ) -> Lease:
        """Lease up to *limit* due accounts nobody holds, their keys decrypted, in one short
        transaction committed before any check runs.

        Due: its ``next_check_at`` has come (or is unset). With *checked_before* (the start of
        a ``hub check --all`` run), instead: not checked since, so each is leased once per
        run, whoever runs it. Either way, not before a provider's ``Retry-After`` has passed.
        Leased accounts are the oldest checked (or longest due) first. Record their
        verdicts with `record_many` (``lease=``), or give them back with `release`.
        """
        now = _now(now)
        token = secrets.token_hex(16)
        until = now + lease_for
        params: dict[str, object] = {
            "now": _iso(now),
            "token": token,
            "until": _iso(until),
            "limit": max(1, limit),
        }
        if checked_before is None:
            order, due = "next_check_at", "(next_check_at IS NULL OR next_check_at <= :now)"
        else:
            order, due = "checked_at", _NOT_CHECKED_SINCE
            params["before"] = _iso(checked_before)
        free = (
            f"{due} AND (lease_until IS NULL OR lease_until < :now)"
            " AND (retry_at IS NULL OR retry_at <= :now)"
        )
        waits: dict[str, Any] = {}
        # A lease writes only the rows it takes, which no other lease holds.
        with self._write(keeps_held=True, durable=False) as conn:
            limits = [limit_from_row(row) for row in conn.execute("SELECT * FROM provider_limits")]
            if not limits:  # no budget, no pause: the one statement
                rows = conn.execute(
                    "UPDATE accounts SET lease_token = :token, lease_until = :until"  # noqa: S608
                    f" WHERE rowid IN (SELECT rowid FROM accounts WHERE {free}"
                    f" ORDER BY {order} LIMIT :limit)"
                    " RETURNING rowid AS row_number, *",
                    params,
                ).fetchall()
            else:
                rows, waits = self._lease_budgeted(
                    conn, plan_lease(limits, limit, now), free, order, params, now
                )
            version = _data_version(conn)
        read = _read_accounts(rows, now)
        accounts = [account for account, _ in read]
        held = {
            account.id: Held(row, account)
            for row, (account, as_written) in zip(rows, read, strict=True)
            if as_written
        }
        self._held.keep(token, version, held)
        return Lease(token, until, leased_accounts(self._ring, rows, accounts), **waits)

    def _lease_budgeted(
        self,
        conn: sqlite3.Connection,
        plan: LeasePlan,
        free: str,
        order: str,
        params: dict[str, object],
        now: datetime,
    ) -> tuple[list[sqlite3.Row], dict[str, Any]]:
        # The providers without a budget in one query, each budgeted one in its own (at most
        # what its bucket grants), merged in the lease's order and cut to the limit; the
        # buckets pay for what was taken, in the same transaction.
        pick = f"SELECT rowid, provider_id, {order} AS due_at FROM accounts WHERE {free}"  # noqa: S608
        others = {f"p{n}": provider_id for n, provider_id in enumerate(sorted(plan.limited))}
        found = conn.execute(
            f"{pick} AND provider_id NOT IN ({', '.join(':' + name for name in others)})"
            f" ORDER BY {order} LIMIT :limit",
            params | others,
        ).fetchall()
        for provider_id, cap in plan.caps.items():
            found += conn.execute(
                f"{pick} AND provider_id = :provider ORDER BY {order} LIMIT :cap",
                params | {"provider": provider_id, "cap": cap},
            ).fetchall()
        # The lease's order, NULLs first as SQLite sorts them.
        found.sort(key=lambda r: (r["due_at"] is not None, r["due_at"] or "", r["rowid"]))
        chosen = found[: int(str(params["limit"]))]
        taken = collections.Counter(str(row["provider_id"]) for row in chosen)
        for provider_id, budget in plan.settle(taken, now).items():
            conn.execute(
                "UPDATE provider_limits SET tokens = ?, refilled_at = ? WHERE provider_id = ?",
                (budget.tokens, _iso(budget.refilled_at), provider_id),
            )
        if not chosen:

            def has_due(provider_id: str) -> bool:
                return bool(
                    conn.execute(
                        f"{pick} AND provider_id = :provider LIMIT 1",
                        params | {"provider": provider_id},
                    ).fetchone()
                )

            return [], held_back(plan, now, has_due)
        rows = conn.execute(
            "UPDATE accounts SET lease_token = ?, lease_until = ?"  # noqa: S608
            f" WHERE rowid IN ({', '.join('?' * len(chosen))})"
            " RETURNING rowid AS row_number, *",
            [params["token"], params["until"], *(row["rowid"] for row in chosen)],
        ).fetchall()
        return rows, {}

    def release(
        self,
        token: str,
        account_ids: Iterable[str] | None = None,
        *,
        next_check_in: timedelta | None = None,
        now: datetime | None = None,
    ) -> int:
        """Give back the accounts of lease *token* (all, or *account_ids*) unchecked: another
        checker may take them at once, or, with *next_check_in*, once that has passed (an
        account that cannot be checked, so a worker does not lease it again and again).
        Return how many were released."""
        # Only this lease's rows change: what other leases of this store hold stays.
        self._held.forget(token)
        due = None if next_check_in is None else _iso(_now(now) + next_check_in)
        with self._write(keeps_held=True, durable=False) as conn:
            if account_ids is None:
                cursor = conn.execute(
                    "UPDATE accounts SET lease_token = NULL, lease_until = NULL,"
                    " next_check_at = coalesce(?, next_check_at) WHERE lease_token = ?",
                    (due, token),
                )
                return cursor.rowcount
            released = 0
            for account_id in account_ids:
                key = _by_id(account_id)
                released += conn.execute(
                    "UPDATE accounts SET lease_token = NULL, lease_until = NULL,"
                    " next_check_at = coalesce(?, next_check_at)"
                    " WHERE (id = ? OR rowid = ?) AND lease_token = ?",
                    (due, *key, token),
                ).rowcount
            return released

    def renew(
        self, tokens: Iterable[str], *, lease_for: timedelta, now: datetime | None = None
    ) -> int:
        """Hold what the leases *tokens* still hold for *lease_for* more (`AccountStore.renew`)."""
        tokens = list(tokens)
        if not tokens:
            return 0
        # Only these leases' own rows change, and not what a verdict reads of them.
        with self._write(keeps_held=True, durable=False) as conn:
            return conn.execute(
                "UPDATE accounts SET lease_until = ?"  # noqa: S608
                f" WHERE lease_token IN ({', '.join('?' * len(tokens))})",
                (_iso(_now(now) + lease_for), *tokens),
            ).rowcount

    def held_elsewhere(
        self,
        mine: Iterable[str] = (),
        *,
        checked_before: datetime,
        now: datetime | None = None,
    ) -> datetime | None:
        """When the first lease of another checker (not one of the tokens *mine*) on an account
        not checked since *checked_before* expires; None when no other checker holds one. A
        ``--all`` run that found nothing more to lease waits for that before it ends."""
        params: dict[str, object] = {"now": _iso(_now(now)), "before": _iso(checked_before)}
        params.update({f"t{n}": token for n, token in enumerate(mine)})
        marks = ", ".join(f":{name}" for name in params if name.startswith("t"))
        theirs = f" AND lease_token NOT IN ({marks})" if marks else ""
        with self._sqlite_errors():
            row = self._db.execute(
                "SELECT min(lease_until) FROM accounts WHERE lease_until >= :now"  # noqa: S608
                f" AND {_NOT_CHECKED_SINCE}{theirs}",
                params,
            ).fetchone()
        return _parse(row[0]) if row and row[0] else None

    def next_due(self) -> datetime | None:
        """When the next account can be leased (`AccountStore.next_due`)."""
        with self._sqlite_errors():
            first = self._db.execute(
                "SELECT next_check_at, lease_until, retry_at FROM accounts"
                " ORDER BY next_check_at LIMIT 1"
            ).fetchone()
            if first is None:
                return None
            at = first[0]
            if first[1] is not None or first[2] is not None:
                # The first due is held (by a lease, a Retry-After): the whole table, which
                # a worker asks only when nothing was free, and then not before that time.
                (at,) = self._db.execute(
                    "SELECT min(max(coalesce(next_check_at, ''), coalesce(lease_until, ''),"
                    " coalesce(retry_at, ''))) FROM accounts"
                ).fetchone()
        return _parse(at) if at else datetime.min.replace(tzinfo=UTC)

    def due_count(self, *, checked_before: datetime | None = None) -> int:
        """How many accounts a run starting at *checked_before* has to check (all but those
        checked since), or, without it, how many exist: the length of a progress bar."""
        sql, params = "SELECT count(*) FROM accounts", {"before": _iso(checked_before)}
        if checked_before is not None:
            sql += f" WHERE {_NOT_CHECKED_SINCE}"
        with self._sqlite_errors():
            count: int = self._db.execute(sql, params).fetchone()[0]
        return count

    def join_run(
        self, *, alive_for: timedelta = LEASE_DEFAULT, now: datetime | None = None
    ) -> tuple[str, datetime]:
        """Start a ``check --all`` run, or join the earliest one under way: its token and the
        time the run began (what `lease` takes as *checked_before*).

        Two runs started a moment apart (or one started while another is under way) share one
        start, so each account is checked once between them. A run is under way while it
        renews itself (`keep_run`) within *alive_for*; a killed one is forgotten after that.
        """
        now = _now(now)
        token = secrets.token_hex(16)
        with self._write(keeps_held=True, durable=False) as conn:
            conn.execute("DELETE FROM check_runs WHERE alive_until < ?", (_iso(now),))
            earliest = conn.execute("SELECT min(started_at) FROM check_runs").fetchone()[0]
            started = _parse(earliest) if earliest else now
            assert started is not None
            conn.execute(
                "INSERT INTO check_runs (token, started_at, alive_until) VALUES (?, ?, ?)",
                (token, _iso(started), _iso(now + alive_for)),
            )
        return token, started

    def keep_run(
        self, token: str, *, alive_for: timedelta = LEASE_DEFAULT, now: datetime | None = None
    ) -> None:
        """Tell other checkers the run *token* is still under way."""
        with self._write(keeps_held=True, durable=False) as conn:
            conn.execute(
                "UPDATE check_runs SET alive_until = ? WHERE token = ?",
                (_iso(_now(now) + alive_for), token),
            )

    def end_run(self, token: str) -> None:
        """The run *token* is over (what it leased is recorded or released)."""
        with self._write(keeps_held=True, durable=False) as conn:
            conn.execute("DELETE FROM check_runs WHERE token = ?", (token,))

    def credentials(self, account_id: str) -> dict[str, str]:
        """Return an account's field values, secrets decrypted: what re-running its check needs.

        Raise `StoreError` when the stored values cannot be read (the key does not decrypt
        with this store's secret key, or the row was edited by hand).
        """
        return self.checkout(account_id)[0]

    def checkout(self, account_id: str) -> tuple[dict[str, str], str]:
        """Return `credentials` and the version of the stored key, read together.

        The version is an opaque token that changes whenever the key is replaced (a save or a
        relink) and stays the same when `rotate_keys` re-encrypts it; giving it to `record` or
        `record_many` drops a verdict on a key the account no longer holds (`KeyReplaced`).
        """
        key = _by_id(account_id)
        with self._sqlite_errors():
            row = self._db.execute(
                "SELECT config, secrets, key_id FROM accounts WHERE (id = ? OR rowid = ?)", key
            ).fetchone()
        if row is None:
            raise AccountNotFound(account_id)
        return self._values_of(row, account_id), _version(row["secrets"])

    def _values_of(self, row: sqlite3.Row, account_id: str) -> dict[str, str]:
        return stored_values(self._ring, row, account_id)

    def delete(self, account_id: str) -> None:
        """Remove an account and its key (`AccountNotFound` if there is none)."""
        key = _by_id(account_id)
        with self._write() as conn:
            if conn.execute("DELETE FROM accounts WHERE (id = ? OR rowid = ?)", key).rowcount == 0:
                raise AccountNotFound(account_id)

    def _secret_values(self, token: object, key_id: object = None) -> list[str]:
        return secret_values(self._ring, token, key_id)

    def _decrypt(self, token: object, account_id: str, key_id: object = None) -> dict[str, str]:
        return decrypt_secrets(self._ring, token, account_id, key_id)

    # --- keys (`hub_core.keyring`, `hub keys`) --------------------------------------------------

    def key_status(self) -> KeyStatus:
        """How many accounts are on each key id: the configured keys in order, then the others.

        A key id the database has a check for but that is no longer configured is listed with
        its accounts (none, once it was dropped at the right time).
        """
        with self._sqlite_errors():
            counts = {
                key_id: int(n)
                for key_id, n in self._db.execute(
                    "SELECT key_id, count(*) FROM accounts GROUP BY key_id"
                )
            }
            checked = {key_id for key_id in _key_checks(self._db) if key_id is not None}
        return key_status(self._ring, counts, checked)

    def rotate_keys(
        self,
        *,
        batch_size: int = 300,
        progress: Callable[[int, int], None] | None = None,
    ) -> RotationReport:
        """Re-encrypt every account not on the first key of the ring with it.

        Rows go in batches of *batch_size*: each batch is read, decrypted with the key its
        rows record and encrypted with the first key outside any lock, then written in one
        short transaction that changes a row's secrets and key id together, and only while
        the row still holds what was read (a relink meanwhile wins). So a run killed at any
        point leaves every row decryptable by the ring, and running it again resumes; two
        runs at once do each row once. *progress* is called after each batch with the rows
        re-encrypted so far and how many were to do. Rows that do not decrypt with their key
        are left as they are and listed in the report.
        """
        ring = self._ring
        target = ring.primary_id
        with self._sqlite_errors():
            total = int(
                self._db.execute(
                    "SELECT count(*) FROM accounts WHERE key_id IS NOT ?", (target,)
                ).fetchone()[0]
            )
            old_ids = [key_id for key_id in _row_key_ids(self._db) if key_id in ring]
        done, unreadable = 0, []
        for old_id in old_ids:
            if old_id == target:
                continue
            after = 0
            while True:
                with self._sqlite_errors():
                    rows = self._db.execute(
                        "SELECT rowid, id, secrets FROM accounts"
                        " WHERE key_id = ? AND rowid > ? ORDER BY rowid LIMIT ?",
                        (old_id, after, batch_size),
                    ).fetchall()
                if not rows:
                    break
                after = rows[-1]["rowid"]
                updates = []
                for row in rows:
                    again = reencrypted(ring, row["secrets"], old_id)
                    if again is None:
                        unreadable.append(_text_or_none(row["id"]) or f"#{row['rowid']}")
                        continue
                    updates.append((again[1], again[0], row["rowid"], old_id, row["secrets"]))
                with self._write() as conn:
                    before = conn.total_changes
                    conn.executemany(
                        "UPDATE accounts SET secrets = ?, key_id = ?"
                        " WHERE rowid = ? AND key_id = ? AND secrets = ?",
                        updates,
                    )
                    done += conn.total_changes - before
                if progress is not None:
                    progress(done, total)
        return RotationReport(target, done, unreadable)

    # --- webhook outbox (`hub_core.webhooks`) ---------------------------------------------------

    def outbox_add(self, rows: Iterable[tuple[str, str, str]], *, now: float) -> int:
        """Add events (``(event_id, event_type, body)``) to the outbox in one transaction.

        Each is due at once. An event id already there is left as it is (adding twice is
        harmless). Return how many rows were added.
        """
        with self._write(keeps_held=True) as conn:
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO webhook_outbox"
                " (event_id, event_type, body, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?)",
                [(event_id, kind, body, now, now) for event_id, kind, body in rows],
            )
            return conn.total_changes - before

    def outbox_claim(self, *, now: float, limit: int, lease: float) -> list[OutboxEntry]:
        """Take up to *limit* due rows for sending: each is leased for *lease* seconds.

        Due: not delivered, not given up on, its next attempt at or before *now*, and not
        leased by another sender (a lease that ran out, as a killed sender leaves it, is free).
        Oldest first.
        """
        with self._write(keeps_held=True) as conn:
            rows = conn.execute(
                "SELECT * FROM webhook_outbox WHERE delivered_at IS NULL AND failed_at IS NULL"
                " AND next_attempt_at <= ? AND (lease_until IS NULL OR lease_until <= ?)"
                " ORDER BY next_attempt_at, seq LIMIT ?",
                (now, now, limit),
            ).fetchall()
            conn.executemany(
                "UPDATE webhook_outbox SET lease_until = ? WHERE seq = ?",
                [(now + lease, row["seq"]) for row in rows],
            )
        return [_outbox_entry(row) for row in rows]

    def outbox_settle(
        self,
        *,
        delivered: Iterable[int] = (),
        retry: Iterable[tuple[int, float, str]] = (),
        failed: Iterable[tuple[int, str]] = (),
        now: float,
    ) -> None:
        """Record the attempts of claimed rows (by ``seq``), in one transaction.

        *delivered*: the receiver took them. *retry*: ``(seq, next_attempt_at, error)``.
        *failed*: ``(seq, error)``, retries exhausted: the row stays, marked failed.
        A row another sender settled first (its lease ran out under this one) keeps that:
        a delivered event never becomes pending or failed again.
        """
        with self._write(keeps_held=True) as conn:
            conn.executemany(
                "UPDATE webhook_outbox SET delivered_at = ?, failed_at = NULL,"
                " attempts = attempts + 1, lease_until = NULL"
                " WHERE seq = ? AND delivered_at IS NULL",
                [(now, seq) for seq in delivered],
            )
            conn.executemany(
                "UPDATE webhook_outbox SET next_attempt_at = ?, last_error = ?,"
                " attempts = attempts + 1, lease_until = NULL"
                " WHERE seq = ? AND delivered_at IS NULL AND failed_at IS NULL",
                [(at, error, seq) for seq, at, error in retry],
            )
            conn.executemany(
                "UPDATE webhook_outbox SET failed_at = ?, last_error = ?,"
                " attempts = attempts + 1, lease_until = NULL"
                " WHERE seq = ? AND delivered_at IS NULL AND failed_at IS NULL",
                [(now, error, seq) for seq, error in failed],
            )

    def outbox_next_due(self) -> float | None:
        """When the next pending row is due (a lease counts as its end), or None: none pending."""
        with self._sqlite_errors():
            row = self._db.execute(
                "SELECT MIN(MAX(next_attempt_at, COALESCE(lease_until, 0))) FROM webhook_outbox"
                " WHERE delivered_at IS NULL AND failed_at IS NULL"
            ).fetchone()
        return None if row[0] is None else float(row[0])

    def outbox_entries(self, *, state: str = "pending", limit: int = 100) -> list[OutboxEntry]:
        """Rows in *state* (``pending``, ``failed`` or ``delivered``), oldest first."""
        query = {
            "pending": "SELECT * FROM webhook_outbox WHERE delivered_at IS NULL"
            " AND failed_at IS NULL ORDER BY seq LIMIT ?",
            "failed": "SELECT * FROM webhook_outbox WHERE failed_at IS NOT NULL"
            " ORDER BY seq LIMIT ?",
            "delivered": "SELECT * FROM webhook_outbox WHERE delivered_at IS NOT NULL"
            " ORDER BY seq LIMIT ?",
        }[state]
        with self._sqlite_errors():
            rows = self._db.execute(query, (limit,)).fetchall()
        return [_outbox_entry(row) for row in rows]

    def outbox_counts(self) -> dict[str, int]:
        """How many rows are ``pending``, ``failed`` and ``delivered``."""
        with self._sqlite_errors():
            row = self._db.execute(
                "SELECT COALESCE(SUM(delivered_at IS NULL AND failed_at IS NULL), 0),"
                " COALESCE(SUM(failed_at IS NOT NULL), 0),"
                " COALESCE(SUM(delivered_at IS NOT NULL), 0) FROM webhook_outbox"
            ).fetchone()
        return {"pending": int(row[0]), "failed": int(row[1]), "delivered": int(row[2])}

    def outbox_prune(self, *, delivered_before: float) -> int:
        """Remove rows delivered before *delivered_before*; return how many."""
        with self._write(keeps_held=True) as conn:
            return conn.execute(
                "DELETE FROM webhook_outbox WHERE delivered_at IS NOT NULL AND delivered_at < ?",
                (delivered_before,),
            ).rowcount

    def outbox_retry_failed(self, *, now: float) -> int:
        """Make every failed row due again with a fresh count of attempts; return how many."""
        with self._write(keeps_held=True) as conn:
            return conn.execute(
                "UPDATE webhook_outbox SET failed_at = NULL, attempts = 0, next_attempt_at = ?,"
                " lease_until = NULL WHERE failed_at IS NOT NULL",
                (now,),
            ).rowcount

    # --- budgets ------------------------------------------------------------------------------

    def limits(self) -> list[ProviderLimit]:
        """Every provider with a check budget or a rate-limit record, by provider id."""
        with self._sqlite_errors():
            rows = self._db.execute("SELECT * FROM provider_limits ORDER BY provider_id")
            return [limit_from_row(row) for row in rows]

    def set_limit(
        self,
        provider_id: str,
        rate: float | None,
        burst: int | None = None,
        *,
        now: datetime | None = None,
    ) -> ProviderLimit:
        """Give *provider_id* a budget of *rate* checks per second, at most *burst* at once.

        The bucket starts full. *rate* None removes the budget (a pause under way stays).
        `ValueError` for a rate or burst no budget has, before anything is written.
        """
        now = _now(now)
        rate, burst = budget_values(rate, burst)
        with self._write(keeps_held=True) as conn:
            conn.execute(
                "INSERT INTO provider_limits (provider_id, rate, burst, tokens, refilled_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (provider_id) DO UPDATE SET"
                " rate = excluded.rate, burst = excluded.burst, tokens = excluded.tokens,"
                " refilled_at = excluded.refilled_at",
                (provider_id, rate, burst, burst, _iso(now) if rate is not None else None),
            )
            # No budget and nothing recorded: the row says nothing any more.
            conn.execute(
                "DELETE FROM provider_limits WHERE provider_id = ? AND rate IS NULL"
                " AND limited_count = 0 AND paused_until IS NULL",
                (provider_id,),
            )
            row = conn.execute(
                "SELECT * FROM provider_limits WHERE provider_id = ?", (provider_id,)
            ).fetchone()
            return limit_or_cleared(provider_id, row)

    def lift_pause(self, provider_id: str) -> ProviderLimit | None:
        """End *provider_id*'s pause after its rate limits now; None when it has no record."""
        with self._write(keeps_held=True) as conn:
            row = conn.execute(
                "UPDATE provider_limits SET paused_until = NULL, limited_count = 0,"
                " limited_since = NULL WHERE provider_id = ? RETURNING *",
                (provider_id,),
            ).fetchone()
            return limit_or_none(row)


# --- helpers ----------------------------------------------------------------------------------


def _end_lease(
    conn: sqlite3.Connection,
    key: tuple[str | None, int | None],
    lease: str,
    due: datetime,
    *,
    retry_at: datetime | None = None,
) -> None:
    """End *lease* on the account without a verdict: due again at *due* (not asked before
    *retry_at*, after a 429)."""
    conn.execute(
        "UPDATE accounts SET lease_token = NULL, lease_until = NULL, next_check_at = ?,"
        " retry_at = ? WHERE (id = ? OR rowid = ?) AND lease_token = ?",
        (_iso(due), _iso(retry_at), *key, lease),
    )


def _has_key_ids(conn: sqlite3.Connection) -> bool:
    # By the table, not the schema version: migrations added beside it renumber versions.
    found = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'key_checks'"
    ).fetchone()
    return found is not None


def _key_checks(conn: sqlite3.Connection) -> dict[str | None, str]:
    """The key checks by key id; None for the single check of a database from before ids."""
    checks: dict[str | None, str] = {}
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (_KEY_CHECK,)).fetchone()
    if row is not None:
        checks[None] = str(row[0])
    if _has_key_ids(conn):
        for key_id, token in conn.execute("SELECT key_id, token FROM key_checks"):
            checks[str(key_id)] = str(token)
    return checks


def _row_key_ids(conn: sqlite3.Connection) -> list[str | None]:
    """The distinct key ids of the accounts (None for rows without one), through the index.

    One index step per id, not a scan of the table: opening a store with a million accounts
    on two keys reads a handful of index pages.
    """
    ids: list[str | None] = []
    if conn.execute("SELECT 1 FROM accounts WHERE key_id IS NULL LIMIT 1").fetchone():
        ids.append(None)
    found = conn.execute("SELECT min(key_id) FROM accounts").fetchone()[0]
    while found is not None:
        ids.append(str(found))
        found = conn.execute(
            "SELECT min(key_id) FROM accounts WHERE key_id > ?", (found,)
        ).fetchone()[0]
    return ids


def _count_on(conn: sqlite3.Connection, key_id: str | None) -> int:
    if key_id is None:
        count: int = conn.execute("SELECT count(*) FROM accounts WHERE key_id IS NULL").fetchone()[
            0
        ]
    else:
        count = conn.execute(
            "SELECT count(*) FROM accounts WHERE key_id = ?", (key_id,)
        ).fetchone()[0]
    return count


def _make_dirs(directory: Path) -> None:
    missing = []
    while not directory.exists():
        missing.append(directory)
        if directory.parent == directory:
            break
        directory = directory.parent
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)


def _fsync_dir(directory: Path) -> None:
    # Directories cannot be opened for fsync on Windows, where NTFS journals names anyway.
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sidecar(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def _new_id() -> str:
    # 64 bits: a million accounts draw a taken id about once in 36 million saves (and `save`
    # draws again). Shorter ids of older databases stay valid.
    return secrets.token_hex(8)


def _version(token: object) -> str:
    # The version of the stored secrets, not of their encryption: a save or a relink makes a
    # new one, a rotation (`KeyRing.reencrypt`) carries it over; it reveals nothing of the key.
    return secrets_version(token)


def _details_json(details: Mapping[str, Any]) -> str:
    try:
        return json.dumps(details)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"the check's details cannot be stored as JSON: {exc}") from None


def _place(config: Mapping[str, Any]) -> dict[str, str]:
    # An empty value and a missing one are the same: a field added by a newer plugin, say.
    return {str(name): str(value) for name, value in config.items() if value}


def _describe_place(place: Mapping[str, str]) -> str:
    if not place:
        return "no other field"
    return ", ".join(f"{name.replace('_', ' ')} {value}" for name, value in sorted(place.items()))


def _check_same_place(stored: sqlite3.Row, verified: Verified, config: Mapping[str, str]) -> None:
    """Refuse to let a key checked elsewhere replace the account stored for its identity."""
    try:
        before = _place(json.loads(stored["config"]))
    except (TypeError, ValueError):
        before = {}  # a damaged row is compared as having no fields: anything else differs
    after = _place(config)
    if before == after:
        return
    raise IdentityMismatch(
        f"this key's answer names the account {verified.label!r} ({verified.identity}), but "
        f"that account ({stored['id']}, {stored['label']!r}) was linked for "
        f"{_describe_place(before)}, and this key was checked for {_describe_place(after)}; "
        "nothing was changed. If both are right (an alias of the same tenant, say), unlink "
        f"account {stored['id']} first"
    )


#: Accounts whose id starts with :p. The range lets SQLite search the id's index instead of
#: reading every id; substr() keeps the match exact. :end is :p followed by the highest
#: character, above every id that starts with :p.
#: Accounts not checked since :before. A ``checked_at`` edited by hand into something that is
#: not a time sorts above every time: such a row counts as not checked, so it is reported.
_NOT_CHECKED_SINCE = "(checked_at IS NULL OR checked_at < :before OR checked_at >= '9999')"

_PREFIX_SQL = (
    "SELECT rowid AS row_number, * FROM accounts"
    " WHERE id >= :p AND id < :end AND substr(id, 1, :n) = :p"
)
_LAST_CHARACTER = "\U0010ffff"

#: `_status` in SQL, with :now and :soon (now + the 7-day window, for a row whose
#: expiring_at is not known); stored times have a fixed width, so they sort as text.
_STATUS_SQL = (
    "(CASE WHEN verdict = 'active' AND expires_at IS NOT NULL AND expires_at <= :now"
    " THEN 'expired' WHEN verdict = 'active' AND expires_at IS NOT NULL"
    " AND (expiring_at <= :now OR (expiring_at IS NULL AND expires_at <= :soon))"
    " THEN 'expiring' ELSE verdict END)"
)


def _wanted_status(status: Status | str | None) -> Status | None:
    if status is None:
        return None
    try:
        return Status(status)
    except ValueError:
        known = ", ".join(member.value for member in Status)
        raise ValueError(f"unknown status {status!r}; one of: {known}") from None


def _mark_used(conn: sqlite3.Connection, link_id: str, account_id: str, now: datetime) -> None:
    conn.execute(
        "UPDATE links SET used_at = ?, used_account_id = ? WHERE id = ?",
        (_iso(now), account_id, link_id),
    )


def _filters(provider: str | None, owner: str | None) -> tuple[list[str], dict[str, object]]:
    """The conditions (on named parameters) keeping one provider's and one owner's accounts."""
    where: list[str] = []
    params: dict[str, object] = {}
    if provider is not None:
        where.append("provider_id = :provider")
        params["provider"] = provider
    if owner is not None:
        where.append("owner = :owner")
        params["owner"] = owner
    return where, params


def _where(conditions: list[str]) -> str:
    return f" WHERE {' AND '.join(conditions)}" if conditions else ""


#: The listing's order, served by the index accounts_listing (provider_id, label, id) or, for
#: one owner, accounts_owner: an index ends in the rowid, which breaks the ties a hand edit
#: can make (two rows whose id was set to NULL).
_LISTING_KEY = ("provider_id", "label", "id", "rowid")
_LISTING_ORDER = f" ORDER BY {', '.join(_LISTING_KEY)}"


def _listing_key(row: sqlite3.Row) -> ListingKey:
    # The stored values as they are (a hand edit may have made one bytes or NULL): they
    # compare in SQL exactly as the ORDER BY sorted them.
    return (row["provider_id"], row["label"], row["id"], row["row_number"])


def _after(
    columns: Sequence[str], key: Sequence[object], start: int = 0
) -> tuple[str, dict[str, object]]:
    """The condition "*columns* sort after *key*" (ascending, NULL first), and its values.

    A row value (``(a, b) > (?, ?)``) when no part of the key is NULL: SQLite searches the
    index with it. A NULL (an id edited to NULL) is neither greater than nor equal to
    anything in SQL, so from the first NULL on the condition is spelled out with IS NULL.
    """
    names = [f"k{start + i}" for i in range(len(key))]
    if None not in key:
        marks = ", ".join(f":{name}" for name in names)
        return f"({', '.join(columns)}) > ({marks})", dict(zip(names, key, strict=True))
    first = list(key).index(None)
    values = dict(zip(names[:first], key[:first], strict=True))
    tail = f"{columns[first]} IS NOT NULL"
    if first + 1 < len(key):
        rest, rest_values = _after(columns[first + 1 :], key[first + 1 :], start + first + 1)
        tail = f"({tail} OR ({rest}))"
        values.update(rest_values)
    if first == 0:
        return tail, values
    head = ", ".join(columns[:first])
    marks = ", ".join(f":{name}" for name in names[:first])
    return f"(({head}) > ({marks}) OR (({head}) = ({marks}) AND {tail}))", values


# --- shared with the PostgreSQL store (`hub_core.store_postgres`); the rest is in store_rules --


def retry_due(limited: RateLimited, now: datetime) -> datetime:
    """When a rate-limited account may be asked again: its ``retry_after`` (1 s to a day),
    jittered, so accounts limited together do not return together."""
    wait = float(limited.retry_after or 0)
    wait = min(max(wait, 1.0), RETRY_AFTER_MAX) if math.isfinite(wait) else 1.0
    return now + timedelta(seconds=wait * random.uniform(1.0, 1.25))


def _note_rate_limited(
    conn: sqlite3.Connection, provider_id: object, now: datetime, retry_after: float | None
) -> None:
    # The provider's count of recent 429s, and the pause the PAUSE_AFTER-th starts, in the
    # verdict's transaction (`hub_core.budgets.note_rate_limited`).
    if not isinstance(provider_id, str):
        return
    row = conn.execute(
        "SELECT * FROM provider_limits WHERE provider_id = ?", (provider_id,)
    ).fetchone()
    pause = note_rate_limited(
        Pause() if row is None else limit_from_row(row).pause, now, retry_after
    )
    conn.execute(
        "INSERT INTO provider_limits (provider_id, limited_count, limited_since, paused_until)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (provider_id) DO UPDATE SET"
        " limited_count = excluded.limited_count, limited_since = excluded.limited_since,"
        " paused_until = excluded.paused_until",
        (provider_id, pause.count, _iso(pause.since), _iso(pause.until)),
    )


def open_store(
    url_or_path: str | os.PathLike[str] | None = None,
    *,
    secret_key: KeyRing | str | bytes | Sequence[str | bytes] | None = None,
) -> AccountStore:
    """The account store at *url_or_path*: a ``postgresql://`` URL opens a `PostgresStore`
    (``hub-core[postgres]``), anything else a SQLite file (None: ``HUB_DATABASE_URL``, else
    `default_path()`). psycopg is imported for a PostgreSQL URL only.
    """
    if url_or_path is None:
        url_or_path = os.environ.get(DATABASE_URL_ENV) or None
    if isinstance(url_or_path, str) and is_postgres_url(url_or_path):
        with postgres_support():
            from .store_postgres import PostgresStore
        return PostgresStore(url_or_path, secret_key=secret_key)
    return SqliteStore(url_or_path, secret_key=secret_key)


@contextlib.contextmanager
def postgres_support() -> Iterator[None]:
    """Around an import of `hub_core.store_postgres`: its missing extra is a `StoreError`."""
    try:
        yield
    except ImportError as exc:  # psycopg is an extra: say which, never the URL
        raise StoreError(
            f"a PostgreSQL account database needs hub's PostgreSQL support ({exc.name} is "
            "not installed): pip install 'hub-core[postgres]'"
        ) from None


#: The variable that selects the account database: a ``postgresql://`` URL, or a SQLite path.
DATABASE_URL_ENV = "HUB_DATABASE_URL"
_POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(url_or_path: str) -> bool:
    """Whether *url_or_path* names a PostgreSQL database (``postgresql://``, ``postgres://``)."""
    return url_or_path.startswith(_POSTGRES_SCHEMES)


def upgrade(
    path: str | os.PathLike[str] | None = None,
    *,
    secret_key: KeyRing | str | bytes | Sequence[str | bytes] | None = None,
) -> tuple[int, int]:
    """Bring the SQLite database at *path* (None: `default_path()`) to this hub's schema by
    opening it, as every command does; return its schema version before and after.

    It needs the database's key (*secret_key*, ``HUB_SECRET_KEYS`` / ``HUB_SECRET_KEY`` or the
    key file), which rows from before key ids are given theirs with; a new database is
    created, with its key file, as opening creates one. Raise what `SqliteStore` raises.
    """
    from .store_schema import schema_status

    where = Path(path) if path is not None else default_path()
    before = schema_status(where).version
    SqliteStore(where, secret_key=secret_key).close()
    return before, schema_status(where).version


#: The name every caller uses: ``Store(path, secret_key=...)`` opens a SQLite store.
Store = SqliteStore

if TYPE_CHECKING:
    # mypy --strict proves here that the SQLite store keeps every promise of the protocol.
    _: type[AccountStore] = SqliteStore
