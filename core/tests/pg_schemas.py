"""PostgreSQL databases as hubs of an older schema left them, for the migration tests.

This hub's own `save` and `lease` write the schema it knows (`account_schedule` since schema
5), so a database of an older schema is made with that schema's migrations only and filled
with rows written in SQL, as a hub of that schema wrote them.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator, Sequence

import psycopg
import pytest

from hub_core import Credentials
from hub_core.store_postgres import MIGRATIONS, PostgresStore
from hub_core.store_rules import sealed

#: The min_reader_version a database migrated by this hub carries: that of its newest
#: migration that older hubs cannot live with.
MIN_READER = max(min_reader for min_reader, _ in MIGRATIONS)
#: The credentials of every account made here.
CREDENTIALS = Credentials({"api_key": "sekrit-value", "region": "us"}, secret=["api_key"])


@contextlib.contextmanager
def at_schema(version: int) -> Iterator[None]:
    """A hub that knows the migrations only up to *version* (one that shipped before)."""
    from hub_core import store_postgres

    with pytest.MonkeyPatch.context() as before:
        before.setattr(store_postgres, "MIGRATIONS", store_postgres.MIGRATIONS[:version])
        before.setattr(store_postgres, "SCHEMA_VERSION", version)
        yield


def saved_at(
    url: str,
    key: str,
    version: int,
    identities: Sequence[str] = ("org:1",),
    label: str = "One",
    credentials: Credentials = CREDENTIALS,
) -> list[str]:
    """Accounts of provider ``acme`` in a database at schema *version* (< 5), as a hub of that
    schema saved them (the key checks its store recorded, the rows in SQL): their ids."""
    with at_schema(version), PostgresStore(url, secret_key=key) as store:
        config, key_id, token = sealed(store.key_ring, credentials)
    ids = []
    with psycopg.connect(url) as conn:
        for identity in identities:
            account_id = secrets.token_hex(8)
            conn.execute(
                "INSERT INTO accounts (id, provider_id, identity, label, verdict, config,"
                " secrets, key_id, linked_at, checked_at, details)"
                " VALUES (%s, 'acme', %s, %s, 'active', %s, %s, %s, now(), now(), '{}')",
                (account_id, identity, label, config, token, key_id),
            )
            ids.append(account_id)
    return ids


def edit(url: str, sql: str, *params: object) -> None:
    """A hand edit, committed on a connection of its own."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql, params)
