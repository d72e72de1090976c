"""Short-lived keys in the store: the stored moment an account turns ``expiring``, the status
decided in SQL (`Store.page`) and in Python (`Store.accounts`) alike, and the migration."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from core.tests.test_store_owners import build
from hub_core import store_schema
from hub_core.errors import InvalidCredentials, ProviderUnavailable
from hub_core.model import Credentials, Status, Verified
from hub_core.status import expiring_from, status_at
from hub_core.store import Store

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

pytestmark = pytest.mark.usefixtures("hermetic_store_env")

#: Keys of every kind of life, by label: (created relative to T0 or None, lifetime or None).
KEYS: dict[str, tuple[timedelta | None, timedelta | None]] = {
    "6 hours": (timedelta(0), timedelta(hours=6)),
    "1 day": (timedelta(0), timedelta(days=1)),
    "1 day, linked late": (-timedelta(hours=20), timedelta(days=1)),
    "30 days": (-timedelta(days=3), timedelta(days=30)),
    "90 days": (-timedelta(days=60), timedelta(days=90)),
    "unknown creation": (None, timedelta(days=20)),
    "created after expiry": (timedelta(days=3), timedelta(days=2)),
    "never expires": (timedelta(0), None),
}


def creds(api_key: str) -> Credentials:
    return Credentials({"api_key": api_key, "region": "us"}, secret=["api_key"])


def key(n: int, label: str, created: timedelta | None, life: timedelta | None) -> Verified:
    created_at = None if created is None else T0 + created
    expires_at = None if life is None else (created_at or T0) + life
    if label == "created after expiry":
        expires_at, created_at = T0 + timedelta(days=2), T0 + timedelta(days=3)
    return Verified(f"org:{n}", label, expires_at=expires_at, created_at=created_at)


def stored(db: Path, column: str) -> dict[str, str | None]:
    conn = sqlite3.connect(db)
    try:
        return dict(conn.execute(f"SELECT label, {column} FROM accounts").fetchall())  # noqa: S608
    finally:
        conn.close()


def moments() -> list[datetime]:
    """A grid over every key's life, with each key's own boundaries and a microsecond around."""
    grid = {T0 + timedelta(hours=h) for h in range(-24, 24 * 100, 5)}
    for n, (label, (created, life)) in enumerate(KEYS.items()):
        verified = key(n, label, created, life)
        for edge in (verified.expires_at, expiring_from(verified.expires_at, verified.created_at)):
            if edge is not None:
                grid |= {edge - timedelta(microseconds=1), edge, edge + timedelta(microseconds=1)}
    return sorted(grid)


def test_the_moment_an_account_turns_expiring_is_stored_by_the_rule(store: Store) -> None:
    for n, (label, (created, life)) in enumerate(KEYS.items()):
        store.save("acme", key(n, label, created, life), creds(f"k{n}"), now=T0)
    columns = stored(store.path, "expiring_at")
    assert columns["6 hours"] == "2025-03-01T16:48:00.000000+00:00"  # 72 minutes before
    assert columns["1 day"] == "2025-03-02T07:12:00.000000+00:00"  # 4.8 hours before
    assert columns["30 days"] == "2025-03-22T12:00:00.000000+00:00"  # 6 days before
    assert columns["90 days"] == "2025-03-24T12:00:00.000000+00:00"  # 7 days before
    assert columns["unknown creation"] == "2025-03-14T12:00:00.000000+00:00"  # 7 days
    assert columns["created after expiry"] == "2025-02-24T12:00:00.000000+00:00"  # 7 days
    assert columns["never expires"] is None


def test_sql_and_python_decide_the_same_status_over_every_keys_life(store: Store) -> None:
    ids = {}
    for n, (label, (created, life)) in enumerate(KEYS.items()):
        verified = key(n, label, created, life)
        ids[store.save("acme", verified, creds(f"k{n}"), now=T0).id] = verified
    # An account recorded invalid keeps that verdict whatever its dates say.
    refused = store.save("acme", key(99, "refused", timedelta(0), timedelta(days=1)), creds("r"))
    store.record(refused.id, InvalidCredentials("revoked"), now=T0)
    seen: set[tuple[str, Status]] = set()
    for now in moments():
        listed = store.accounts(now=now)
        for account in listed:
            verified = ids.get(account.id)
            if verified is None:
                assert account.status is Status.INVALID
                continue
            turns = expiring_from(verified.expires_at, verified.created_at)
            rule = status_at("active", now, expires_at=verified.expires_at, expiring_at=turns)
            assert account.status is rule, (account.label, now)
            seen.add((account.label, rule))
        for status in Status:
            by_python = [a.id for a in listed if a.status is status]
            page = store.page(status=status, now=now, limit=100)
            assert [a.id for a in page.accounts] == by_python, (status, now)
            assert page.total == len(by_python)
            assert store.accounts(status=status, now=now) == [
                a for a in listed if a.status is status
            ]
    # Every key went through each of its statuses in the grid.
    for label in KEYS:
        wanted = {Status.ACTIVE}
        if label != "never expires":
            wanted |= {Status.EXPIRING, Status.EXPIRED}
        assert {status for shown, status in seen if shown == label} == wanted, label


def test_a_row_without_the_moment_falls_back_to_7_days_in_sql_and_python(store: Store) -> None:
    # Rows written before the column (or by code that does not fill it) keep the old rule.
    account = store.save("acme", key(1, "1 day", timedelta(0), timedelta(days=1)), creds("k"))
    conn = sqlite3.connect(store.path)
    conn.execute("UPDATE accounts SET expiring_at = NULL")
    conn.commit()
    conn.close()
    for now in (T0 - timedelta(days=6, microseconds=1), T0 - timedelta(days=6), T0):
        expected = Status.ACTIVE if now < T0 - timedelta(days=6) else Status.EXPIRING
        assert [a.status for a in store.accounts(now=now)] == [expected]
        assert [a.id for a in store.page(status=expected, now=now).accounts] == [account.id]


def test_a_recheck_a_relink_and_a_link_again_each_store_the_new_keys_moment(store: Store) -> None:
    one_day = key(1, "1 day", timedelta(0), timedelta(days=1))
    account = store.save("acme", one_day, creds("k"), now=T0)
    moment = stored(store.path, "expiring_at")

    # A recheck finds a new 6-hour key record: its moment replaces the stored one.
    fresh = Verified(
        "org:1",
        "1 day",
        expires_at=T0 + timedelta(days=2, hours=6),
        created_at=T0 + timedelta(days=2),
    )
    store.record(account.id, fresh, now=T0 + timedelta(days=2))
    assert stored(store.path, "expiring_at")["1 day"] == "2025-03-03T16:48:00.000000+00:00"

    # The same expiry without its creation time (the key's record could not be read this
    # once) keeps the moment computed when it was known.
    blind = Verified("org:1", "1 day", expires_at=fresh.expires_at)
    store.record(account.id, blind, now=T0 + timedelta(days=2, hours=1))
    assert stored(store.path, "expiring_at")["1 day"] == "2025-03-03T16:48:00.000000+00:00"
    assert store.accounts(now=T0 + timedelta(days=2, hours=1))[0].status is Status.ACTIVE

    # A new expiry without a creation time: the 7-day rule.
    other = Verified("org:1", "1 day", expires_at=T0 + timedelta(days=40))
    store.record(account.id, other, now=T0 + timedelta(days=3))
    assert stored(store.path, "expiring_at")["1 day"] == "2025-04-03T12:00:00.000000+00:00"

    # A failed check leaves expiry and moment alone.
    store.record(account.id, ProviderUnavailable("down"), now=T0 + timedelta(days=3))
    assert stored(store.path, "expiring_at")["1 day"] == "2025-04-03T12:00:00.000000+00:00"

    # Relinking with a new key, and linking the identity again, store that key's moment.
    store.save("acme", one_day, creds("k2"), now=T0, account_id=account.id)
    assert stored(store.path, "expiring_at") == moment
    store.save("acme", other, creds("k3"), now=T0)
    assert stored(store.path, "expiring_at")["1 day"] == "2025-04-03T12:00:00.000000+00:00"
    store.save("acme", one_day, creds("k4"), now=T0)
    assert stored(store.path, "expiring_at") == moment
    # Still one account, and active at the time of linking.
    assert [a.status for a in store.accounts(now=T0)] == [Status.ACTIVE]


# --- the migration ----------------------------------------------------------------------------


def _migration_index() -> int:
    """Where the migration that adds expiring_at sits in `_MIGRATIONS` (0-based)."""
    for index, steps in enumerate(store_schema.MIGRATIONS):
        if any("ADD COLUMN expiring_at" in sql for sql in steps):
            return index
    raise AssertionError("no migration adds expiring_at")


def test_the_migration_gives_existing_rows_the_7_day_rule(db: Path, key: str) -> None:
    fernet = Fernet(key)
    # A database of the schema before the migration, with the rows the shipped-schemas test
    # makes ("Org 0" and "Org 1", expiring 2099-01-01 in a shorter spelling) and these:
    build(db, fernet, _migration_index())
    rows = {
        # As hub has always written times: fixed width, microseconds, +00:00.
        "hub's own": "2025-03-02T12:00:00.999999+00:00",
        "leap day": "2024-03-07T00:00:00.000000+00:00",
        # Other spellings (a row written by hand, or by a test of the previous schema).
        "short": "2025-03-20T12:00:00+00:00",
        "other zone": "2025-03-20T14:00:00.5+02:00",
        "never": None,
        "unreadable": "not a time",
    }
    conn = sqlite3.connect(db)
    for n, (label, expires) in enumerate(rows.items()):
        conn.execute(
            "INSERT INTO accounts (id, provider_id, identity, label, verdict, secrets, linked_at,"
            " expires_at) VALUES (?, 'acme', ?, ?, 'active', ?, '2024-01-02T03:04:05+00:00', ?)",
            (f"{n:016x}", f"org:{n + 10}", label, fernet.encrypt(b'{"api_key": "k"}'), expires),
        )
    conn.commit()
    conn.close()

    with Store(db, secret_key=key) as store:
        moments = stored(db, "expiring_at")
        assert moments == {
            "Org 0": "2098-12-25T00:00:00.000000+00:00",
            "Org 1": "2098-12-25T00:00:00.000000+00:00",
            "hub's own": "2025-02-23T12:00:00.999999+00:00",
            "leap day": "2024-02-29T00:00:00.000000+00:00",
            "short": "2025-03-13T12:00:00.000000+00:00",
            "other zone": "2025-03-13T12:00:00.500000+00:00",
            "never": None,
            "unreadable": None,
        }
        # Statuses by the moments, for the rows whose times sort as text (a time in another
        # zone does not, in SQL, since before this migration: hub never writes one).
        for label in ("hub's own", "leap day", "short"):
            expires = rows[label]
            assert expires is not None
            end = datetime.fromisoformat(expires).astimezone(UTC)
            week = end - timedelta(days=7)
            for now, status in [
                (week - timedelta(microseconds=1), Status.ACTIVE),
                (week, Status.EXPIRING),
                (end, Status.EXPIRED),
            ]:
                shown = {a.label: a.status for a in store.accounts(now=now)}
                assert shown[label] is status, (label, now)
                page = store.page(status=status, now=now, limit=100)
                assert label in [a.label for a in page.accounts], (label, now)
        shown = {a.label: a.status for a in store.accounts(now=T0)}
        assert shown["never"] is Status.ACTIVE
        assert shown["unreadable"] is Status.DAMAGED
