"""PostgreSQL as docs/deploying.md sets it up for hub's role: what the store must survive."""

from __future__ import annotations

import time
import urllib.parse

import pytest
from cryptography.fernet import Fernet

from hub_core.model import Credentials, Verified

pytest.importorskip("psycopg")

from hub_core.store_postgres import PostgresStore

pytestmark = pytest.mark.usefixtures("hermetic_store_env")


def with_server_setting(url: str, setting: str) -> str:
    """*url* (a `postgres_url`, its schema in ``options``) whose sessions also have *setting*,
    as ``ALTER ROLE hub SET ...`` gives every session of hub's role."""
    parts = urllib.parse.urlsplit(url)
    options = urllib.parse.parse_qs(parts.query)["options"][0] + f" -c {setting}"
    query = urllib.parse.urlencode({"options": options}, quote_via=urllib.parse.quote)
    return urllib.parse.urlunsplit(parts._replace(query=query))


def test_a_listing_read_at_a_readers_pace_outlives_the_recommended_idle_timeout(
    postgres_url: str,
) -> None:
    # docs/deploying.md sets idle_in_transaction_session_timeout = '1min' for hub's role. The
    # listing (`iter_accounts`, what `hub accounts` and `--json` print from) holds one
    # REPEATABLE READ transaction open between its batches for as long as its reader takes
    # (`hub accounts | less`): it must not end in "terminating connection due to
    # idle-in-transaction timeout". Here the doc's minute is half a second, a batch two.
    url = with_server_setting(postgres_url, "idle_in_transaction_session_timeout=500")
    with PostgresStore(url, secret_key=Fernet.generate_key().decode()) as store:
        for n in range(6):
            credentials = Credentials({"api_key": f"sekrit-{n}"}, secret=["api_key"])
            store.save("acme", Verified(identity=f"org:{n}", label=f"Org {n}"), credentials)
        listed = []
        for account in store.iter_accounts(batch=2):
            listed.append(account.label)
            if len(listed) == 1:
                time.sleep(1.5)  # the person reading the pager's first screen
    assert listed == [f"Org {n}" for n in range(6)]


def test_the_upgrade_script_builds_the_tables_in_the_applications_schema(
    postgres_url: str,
) -> None:
    # A DBA runs `hub db upgrade --sql` as another role, whose search path is its own: the
    # script sets the one the application's connection uses, or the tables land elsewhere.
    from hub_core.store_postgres import pending_sql

    schema = urllib.parse.parse_qs(urllib.parse.urlsplit(postgres_url).query)["options"][0]
    schema = schema.removeprefix("-csearch_path=")
    script = pending_sql(postgres_url)
    assert f'SET search_path = "{schema}";' in script.splitlines()
    first_migration = script.index("BEGIN;")
    assert script.index("SET search_path") < first_migration
