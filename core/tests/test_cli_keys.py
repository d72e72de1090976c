"""`hub keys` as a person reads it, and a rotation that meets rows other sessions hold."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography.fernet import Fernet

from hub_core.cli import main
from hub_core.model import Credentials, Verified
from hub_core.store import Store

pytestmark = pytest.mark.usefixtures("hermetic_store_env")

OLD = Fernet.generate_key().decode()
NEW = Fernet.generate_key().decode()


def fill(store: object, n: int) -> list[str]:
    ids = []
    for i in range(n):
        credentials = Credentials({"api_key": f"secret-{i:05d}-value"}, secret=["api_key"])
        account = store.save(  # type: ignore[attr-defined]
            "acme", Verified(identity=f"org:{i}", label=f"Org {i}"), credentials
        )
        ids.append(account.id)
    return ids


def home(tmp_path: Path) -> Path:
    return tmp_path / "home"  # HUB_HOME of `hermetic_store_env`


def hub(*args: str, keys: str) -> Result:
    return CliRunner().invoke(main, list(args), env={"HUB_SECRET_KEYS": keys})


def damaged_accounts(tmp_path: Path, n: int) -> list[str]:
    """*n* accounts on OLD whose stored secrets were replaced outside hub (do not decrypt)."""
    db = home(tmp_path) / "hub.db"
    with Store(db, secret_key=OLD) as store:
        ids = fill(store, n)
    stranger = Fernet(Fernet.generate_key())
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        for account_id in ids:
            conn.execute(
                "UPDATE accounts SET secrets = ? WHERE id = ?",
                (stranger.encrypt(b'{"api_key": "x"}'), account_id),
            )
    return ids


# --- hub keys rotate: the message about accounts it could not re-encrypt ---


def test_rotate_message_about_several_unreadable_accounts_is_grammatical(tmp_path: Path) -> None:
    damaged_accounts(tmp_path, 2)
    result = hub("keys", "rotate", keys=f"{NEW},{OLD}")
    assert result.exit_code == 1, result.output
    assert "left as they were" in result.stderr, result.stderr
    assert "they was" not in result.stderr


def test_rotate_names_every_unreadable_account_it_lists(tmp_path: Path) -> None:
    # Each id is clipped on its own: a line clipped as a whole cut the list mid-id.
    ids = damaged_accounts(tmp_path, 15)
    result = hub("keys", "rotate", keys=f"{NEW},{OLD}")
    assert result.exit_code == 1, result.output
    missing = [account_id for account_id in ids if account_id not in result.stderr]
    assert missing == [], result.stderr
    assert "more" not in result.stderr


def test_rotate_names_twenty_unreadable_accounts_and_counts_the_rest(tmp_path: Path) -> None:
    ids = damaged_accounts(tmp_path, 23)
    result = hub("keys", "rotate", keys=f"{NEW},{OLD}")
    assert result.exit_code == 1, result.output
    named = [account_id for account_id in ids if account_id in result.stderr]
    assert len(named) == 20, result.stderr
    assert "23 accounts could not be decrypted" in result.stderr
    assert " and 3 more." in result.stderr


# --- opening with a malformed entry in HUB_SECRET_KEYS ---


@pytest.mark.parametrize(
    ("value", "where"),
    [
        (f"{OLD},{NEW[:-4]}", "key 2 of HUB_SECRET_KEYS"),  # the new key pasted truncated
        (f"{NEW} {OLD}", "HUB_SECRET_KEYS"),  # keys joined by a space, not a comma
    ],
    ids=["truncated-new-key", "space-separated"],
)
def test_a_malformed_entry_is_not_reported_as_a_key_that_does_not_match_the_database(
    tmp_path: Path, value: str, where: str
) -> None:
    with Store(home(tmp_path) / "hub.db", secret_key=OLD) as store:
        fill(store, 1)
    result = hub("keys", "status", keys=value)
    assert result.exit_code == 2
    message = result.stderr
    # A new key cut short, or two keys joined by a space, is no key at all: not one "that
    # does not match this database", nor one "as in the key file it was created with".
    assert f"{where} is not a valid hub key" in message, message
    assert "does not match this database" not in message, message
    assert "key file it was created with" not in message, message


# --- PostgreSQL: hub keys rotate under a row lock ---


def test_postgres_rotation_does_not_skip_a_row_that_was_briefly_locked(postgres_url: str) -> None:
    psycopg = pytest.importorskip("psycopg")
    from hub_core.store_postgres import PostgresStore

    with PostgresStore(postgres_url, secret_key=OLD) as store:
        ids = fill(store, 10)
    with PostgresStore(postgres_url, secret_key=f"{NEW},{OLD}") as store:
        # Another session (a worker recording a verdict, a relink) holds one account's row
        # for a moment while the rotation runs.
        other = psycopg.connect(postgres_url)
        try:
            other.execute("SELECT 1 FROM accounts WHERE id = %s FOR UPDATE", (ids[3],))
            release = threading.Timer(1.0, other.rollback)
            release.start()
            started = time.monotonic()
            report = store.rotate_keys(batch_size=3)
            took = time.monotonic() - started
            release.join()
        finally:
            other.close()
        status = store.key_status()
        # Every account is on the new key: the locked row was waited for, not left behind.
        assert (report.rotated, status.to_rotate) == (10, 0), (
            report,
            status,
            took,
        )
