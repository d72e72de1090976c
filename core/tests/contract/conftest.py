"""The `backend` fixture the contract suite runs on: one param per `AccountStore` backend.

Every test in ``core/tests/contract/`` is written against the protocol only and runs once per
param. Adding a backend is one entry in `BACKENDS` (a `Backend` subclass that opens stores on
one database of its own); the suite then runs unchanged against it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from hub_core.store_protocol import AccountStore


class Backend:
    """Opens stores of one backend on one fresh database (per test), with one key."""

    name = ""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.key = Fernet.generate_key().decode()
        self.opened: list[AccountStore] = []

    def open(self) -> AccountStore:
        """Another connection to this test's database (as another process would have)."""
        store = self._open()
        self.opened.append(store)
        return store

    def open_other(self) -> AccountStore:
        """A store on another, new database with another key."""
        other = type(self)(self.tmp_path / "other")
        store = other.open()
        self.opened.append(store)
        return store

    def _open(self) -> AccountStore:
        raise NotImplementedError

    def close(self) -> None:
        for store in self.opened:
            store.close()


class SqliteBackend(Backend):
    name = "sqlite"

    def _open(self) -> AccountStore:
        from hub_core.store import SqliteStore

        return SqliteStore(self.tmp_path / "data" / "hub.db", secret_key=self.key)


#: The backends every contract test runs on (the PostgreSQL issue adds its class here).
BACKENDS: list[type[Backend]] = [SqliteBackend]


@pytest.fixture(params=BACKENDS, ids=lambda backend: backend.name)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A fresh database of each backend in turn."""
    made: Backend = request.param(tmp_path)
    yield made
    made.close()


@pytest.fixture
def store(backend: Backend, hermetic_store_env: Any) -> AccountStore:
    """An open store of `backend` (the contract suite's own; the SQLite-only tests keep theirs)."""
    return backend.open()
