"""``hub db``: the account database's schema: where it stands, and upgrading it.

For operators who forbid application DDL: ``hub db upgrade --sql`` prints the pending
migrations as a script a DBA runs (psql on PostgreSQL), ``hub db upgrade`` applies them as
opening a store does, and ``hub db status`` says what either would do. The database is the
one every command uses: ``HUB_DATABASE_URL`` (a ``postgresql://`` URL, or a SQLite path), else
``hub.db`` at ``HUB_HOME`` or the user data directory. On PostgreSQL none of them reads the
secret key; on SQLite only ``hub db upgrade`` (without ``--sql``) does, as opening does.
Everything but click loads when the command runs.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import click

from hub_core.cli import Shown, echo_json, reports_errors, say, shown

if TYPE_CHECKING:
    from hub_core.store_types import SchemaStatus

__all__ = ["db"]


def _target() -> tuple[bool, str | None]:
    """Whether the CLI's database is PostgreSQL, and its URL or path (None: the default)."""
    from hub_core.store import DATABASE_URL_ENV, is_postgres_url

    target = os.environ.get(DATABASE_URL_ENV) or None
    return (target is not None and is_postgres_url(target)), target


def _status() -> SchemaStatus:
    postgres, target = _target()
    if postgres:
        from hub_core.store import postgres_support

        with postgres_support():
            from hub_core.store_postgres import schema_status
        assert target is not None
        return schema_status(target)
    from hub_core.store import default_path
    from hub_core.store_schema import schema_status as sqlite_status

    return sqlite_status(target or default_path())


@click.group()
def db() -> None:
    """The account database's schema: its version, and upgrading it."""


@db.command()
@click.option("--json", "as_json", is_flag=True, help="Print the schema's state as JSON.")
@reports_errors
def status(as_json: bool) -> None:
    """Show the database, its schema version and this hub's, and what `hub db upgrade` would do.

    Reads the version only: needs no secret key, changes and creates nothing.
    """
    found = _status()
    if as_json:
        echo_json(
            {
                "backend": found.backend,
                "database": found.database,
                "exists": found.exists,
                "schema_version": found.version,
                "hub_schema_version": found.hub_version,
                "min_reader_version": found.min_reader_version,
                "pending": list(found.pending),
                "usable": found.usable,
            }
        )
        return
    name = "PostgreSQL" if found.backend == "postgresql" else "SQLite"
    lines = [
        shown(
            "Database: {name} {where}{missing}",
            name=name,
            where=found.database,
            missing=shown("" if found.exists else " (not created yet)"),
        ),
        shown(
            "Schema version: {version} (this hub: {hub}{readers})",
            version=found.version,
            hub=found.hub_version,
            readers=shown(
                "; usable by hubs of schema version {n} and later", n=found.min_reader_version
            )
            if found.min_reader_version is not None
            else shown(""),
        ),
        _what_upgrade_does(found),
    ]
    say(*lines)


def _what_upgrade_does(found: SchemaStatus) -> Shown:
    if not found.usable:
        return shown(
            "Made by a newer hub, which this hub cannot use: upgrade hub-core. "
            "`hub db upgrade` would change nothing."
        )
    if found.version > found.hub_version:
        return shown(
            "Made by a newer hub, and still usable by this one: `hub db upgrade` has nothing to do."
        )
    if not found.pending:
        return shown("Up to date: `hub db upgrade` has nothing to do.")
    if found.version == 0:
        return shown(
            "No hub schema yet: `hub db upgrade` (or any hub command that opens it) would "
            "create it at schema {hub}.",
            hub=found.hub_version,
        )
    n = len(found.pending)
    return shown(
        "`hub db upgrade` would apply {n} migration{s} ({first}{last}): schema {old} to {new}.",
        n=n,
        s="s" * (n != 1),
        first=found.pending[0],
        last=shown(" to {last}", last=found.pending[-1]) if n > 1 else shown(""),
        old=found.version,
        new=found.hub_version,
    )


@db.command()
@click.option(
    "--sql",
    "as_sql",
    is_flag=True,
    help="Print the pending migrations as a script (psql's, on PostgreSQL); change nothing.",
)
@reports_errors
def upgrade(as_sql: bool) -> None:
    """Apply the pending schema migrations to the account database.

    On PostgreSQL each migration is one transaction under hub's migration lock, as when a store
    opens the database, and no secret key is needed. On SQLite the database is opened as any
    command opens it, which needs its key. With --sql, nothing is changed and no key is read:
    the statements are printed for a DBA to run.
    """
    postgres, target = _target()
    if as_sql:
        if postgres:
            from hub_core.store import postgres_support

            with postgres_support():
                from hub_core.store_postgres import pending_sql
            assert target is not None
            script = pending_sql(target)
        else:
            from hub_core.store_schema import migration_sql

            found = _status()
            if not found.usable:
                _refuse_newer_sqlite(found)
            script = migration_sql(found.version)
        # Hub's own text throughout (its migrations' SQL and version numbers), printed as it
        # is: made inert, the script's line breaks would not survive.
        say(Shown(script.rstrip("\n")))
        return
    if postgres:
        from hub_core.store import postgres_support

        with postgres_support():
            from hub_core.store_postgres import SCHEMA_VERSION as hub_version
            from hub_core.store_postgres import upgrade as upgrade_postgres
        assert target is not None
        before, after = upgrade_postgres(target)
    else:
        from hub_core.cli import no_core_dumps
        from hub_core.store import upgrade as upgrade_sqlite
        from hub_core.store_schema import SCHEMA_VERSION as hub_version

        no_core_dumps()  # opening the database reads its key
        before, after = upgrade_sqlite(target)
    say(_what_upgrade_did(before, after, hub_version))


def _refuse_newer_sqlite(found: SchemaStatus) -> None:
    from hub_core.errors import StoreError

    raise StoreError(
        f"the account database {found.database} was made by a newer hub (schema version "
        f"{found.version}; this hub knows up to {found.hub_version}): upgrade hub-core to use "
        "it; nothing was changed"
    )


def _what_upgrade_did(before: int, after: int, hub_version: int) -> Shown:
    if after > hub_version:
        return shown(
            "The schema is at {n}, newer than this hub's {hub} and usable by it: nothing to do.",
            n=after,
            hub=hub_version,
        )
    if before == after:
        return shown("Already at schema {n}.", n=after)
    if before == 0:
        return shown("Created the schema at version {n}.", n=after)
    return shown("Upgraded the schema from {old} to {new}.", old=before, new=after)


COMMANDS = [db]
