"""The `backend` fixture the contract suite runs on: one param per `AccountStore` backend.

Every test in ``core/tests/contract/`` is written against the protocol only and runs once per
param. Adding a backend is one entry in `BACKENDS` (a `Backend` subclass that opens stores on
one database of its own); the suite then runs unchanged against it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from hub_core.store_protocol import AccountStore

# The session's PostgreSQL (started on first use only: the SQLite params never start it).
from hub_core.testing.postgres import PostgresCluster


class Backend:
    """Opens stores of one backend on one fresh database (per test), with one key."""

    name = ""

    def __init__(self, tmp_path: Path, request: pytest.FixtureRequest) -> None:
        self.tmp_path = tmp_path
        self.request = request
        self.key = Fernet.generate_key().decode()
        self.opened: list[AccountStore] = []
        self.others: list[Backend] = []

    def open(self) -> AccountStore:
        """Another connection to this test's database (as another process would have)."""
        store = self._open()
        self.opened.append(store)
        return store

    def open_other(self) -> AccountStore:
        """A store on another, new database with another key."""
        other = type(self)(self.tmp_path / "other", self.request)
        store = other.open()
        self.opened.append(store)
        self.others.append(other)
        return store

    def _open(self) -> AccountStore:
        raise NotImplementedError

    def damage(self, account_id: str, column: str, value: object) -> None:
        """Set one column of an account's row behind the store's back (a hand edit)."""
        raise NotImplementedError

    def close(self) -> None:
        for store in self.opened:
            store.close()
        for other in self.others:
            other.close()


class SqliteBackend(Backend):
    name = "sqlite"

    def _open(self) -> AccountStore:
        from hub_core.store import SqliteStore

        return SqliteStore(self.db, secret_key=self.key)

    @property
    def db(self) -> Path:
        return self.tmp_path / "data" / "hub.db"

    def damage(self, account_id: str, column: str, value: object) -> None:
        import sqlite3

        with contextlib.closing(sqlite3.connect(self.db)) as conn, conn:
            sql = f"UPDATE accounts SET {column} = ? WHERE id = ?"  # noqa: S608 (a test's column)
            conn.execute(sql, (value, account_id))


class PostgresBackend(Backend):
    """A schema of its own on the session's PostgreSQL (`hub_core.testing.postgres`)."""

    name = "postgres"

    def __init__(self, tmp_path: Path, request: pytest.FixtureRequest) -> None:
        super().__init__(tmp_path, request)
        self.server: PostgresCluster = request.getfixturevalue("postgres_server")
        self.url = self.server.create_schema()

    def _open(self) -> AccountStore:
        from hub_core.store_postgres import PostgresStore

        return PostgresStore(self.url, secret_key=self.key)

    def damage(self, account_id: str, column: str, value: object) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            sql = f"UPDATE accounts SET {column} = %s WHERE id = %s"  # noqa: S608 (a test's column)
            conn.execute(sql, (value, account_id))  # type: ignore[call-overload]

    def close(self) -> None:
        super().close()
        self.server.drop_schema(self.url)


#: The backends every contract test runs on.
BACKENDS: list[type[Backend]] = [SqliteBackend, PostgresBackend]


@pytest.fixture(params=BACKENDS, ids=lambda backend: backend.name)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A fresh database of each backend in turn."""
    made: Backend = request.param(tmp_path, request)
    yield made
    made.close()


@pytest.fixture
def store(backend: Backend, hermetic_store_env: Any) -> AccountStore:
    """An open store of `backend` (the contract suite's own; the SQLite-only tests keep theirs)."""
    return backend.open()
