"""Reading a stored row into an `Account`: the quick reading of a row as hub writes it is the
same account as the close reading, column by column, of any row (hand-edited ones too)."""

from __future__ import annotations

import inspect
import json
import random
import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub_core import store_rows
from hub_core.model import Account, Credentials, Status, Verified, trusted_account
from hub_core.store import Store

pytestmark = pytest.mark.usefixtures("hermetic_store_env")

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def written_rows(path: Path, key: str) -> list[dict[str, Any]]:
    """Rows as hub writes them: every status as of NOW, config, expiry, creation, owners."""
    with Store(path, secret_key=key) as store:
        for number, (expires, created, owner) in enumerate(
            [
                (None, None, None),
                (NOW + timedelta(days=30), None, None),  # active
                (NOW + timedelta(days=2), None, ("o1", "Ada")),  # expiring (7-day window)
                (NOW + timedelta(hours=6), NOW - timedelta(hours=18), None),  # active: 1-day key
                (NOW + timedelta(hours=2), NOW - timedelta(hours=22), ("o2", None)),  # expiring
                (NOW - timedelta(days=1), None, None),  # expired
            ]
        ):
            store.save(
                "acme",
                Verified(
                    identity=f"org:{number}",
                    label=f"Org {number} \u202e\x1b",
                    expires_at=expires,
                    created_at=created,
                    details={"n": number, "nested": {"list": [1, None]}},
                ),
                Credentials({"api_key": f"k{number}", "region": "eu"}, secret=["api_key"]),
                now=NOW - timedelta(days=1),
                owner=owner and owner[0],
                owner_name=owner and owner[1],
            )
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    with conn:
        # The other verdicts, as a check records them (a message for an error).
        conn.execute("UPDATE accounts SET verdict = 'invalid' WHERE identity = 'org:0'")
        for verdict in ("denied", "error", "damaged"):
            conn.execute(
                f"INSERT INTO accounts SELECT {_copy_columns(conn, verdict)}"  # noqa: S608
                " FROM accounts WHERE identity = 'org:1'"
            )
    rows = [dict(row) for row in conn.execute("SELECT rowid AS row_number, * FROM accounts")]
    conn.close()
    return rows


def _copy_columns(conn: sqlite3.Connection, verdict: str) -> str:
    made = {
        "id": f"'{verdict.rjust(16, 'a')}'",
        "identity": f"'org:{verdict}'",
        "verdict": f"'{verdict}'",
        "last_error": "'the provider said no'" if verdict == "error" else "NULL",
    }
    columns = [row[1] for row in conn.execute("PRAGMA table_info(accounts)")]
    return ", ".join(made.get(column, column) for column in columns)


@pytest.fixture(scope="module")
def rows(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    from cryptography.fernet import Fernet

    path = tmp_path_factory.mktemp("rows") / "hub.db"
    return written_rows(path, Fernet.generate_key().decode())


_CONN = sqlite3.connect(":memory:")
_CONN.row_factory = sqlite3.Row


def as_row(values: dict[str, Any], order: list[str] | None = None) -> sqlite3.Row:
    """A `sqlite3.Row` of these values under these column names (in *order*)."""
    names = order or list(values)
    row: sqlite3.Row = _CONN.execute(
        "SELECT " + ", ".join(f"? AS {name}" for name in names),
        [values[name] for name in names],
    ).fetchone()
    return row


def same(row: sqlite3.Row, now: datetime = NOW) -> Account:
    """The account of *row*, asserting both readings give it, to the time zone of each time."""
    read = store_rows.account_from_row(row, now)
    closely = store_rows._read_closely(row, now)
    assert read == closely
    assert repr(read) == repr(closely)
    return read


def test_the_rows_hub_writes_are_every_status_and_read_quickly(rows: list[dict[str, Any]]) -> None:
    accounts = [same(as_row(values)) for values in rows]
    assert {account.status for account in accounts} == set(Status)
    assert {a.owner for a in accounts} == {None, "o1", "o2"}
    for values in rows:
        # Not handed to the close reading: that is where the listing's time went.
        assert store_rows._as_written(as_row(values), NOW) is not None


def test_any_order_of_the_columns_reads_the_same(rows: list[dict[str, Any]]) -> None:
    # `SELECT *` of a table migrated from an older schema has its columns in another order.
    shuffler = random.Random(7)
    for values in rows * 3:
        order = list(values)
        shuffler.shuffle(order)
        assert same(as_row(values, order)) == same(as_row(values))


TIMES = st.one_of(
    st.datetimes(
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=5)), timezone(-timedelta(hours=23, minutes=59))]
        )
    ).map(lambda t: t.isoformat()),
    st.datetimes().map(datetime.isoformat),  # naive
    st.sampled_from(["", "yesterday", "9999-12-31T23:59:59.999999-23:59", " 2025-01-01"]),
)
JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)
JSON_TEXT = st.one_of(
    JSON.map(json.dumps),
    st.tuples(
        st.sampled_from(["", " ", "\n"]), JSON.map(json.dumps), st.sampled_from(["", " "])
    ).map("".join),
    st.sampled_from(["{", "{}x", "{} {}", "\ufeff{}", '{"a": NaN}', '{"a": "b", "a": 1}']),
)
#: What a hand edit (or another program) can leave in a column.
ANY = st.one_of(
    st.none(),
    st.integers(-(2**63), 2**63 - 1),  # what SQLite stores
    st.floats(),
    st.binary(max_size=4),
    st.text(max_size=6),
    st.sampled_from(["", " ", "ACTIVE", "active ", "Abc", "abc ", "#1"]),
)
BY_COLUMN: dict[str, Any] = {
    "verdict": st.one_of(st.sampled_from([s.value for s in Status]), ANY),
    "linked_at": st.one_of(TIMES, ANY),
    "checked_at": st.one_of(TIMES, ANY),
    "expires_at": st.one_of(TIMES, ANY),
    "expiring_at": st.one_of(TIMES, ANY),
    "config": st.one_of(JSON_TEXT, ANY, st.binary().map(lambda b: b"{}")),
    "details": st.one_of(JSON_TEXT, ANY),
}


@settings(max_examples=600, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_edit_of_any_columns_reads_the_same_both_ways(
    rows: list[dict[str, Any]], data: st.DataObject
) -> None:
    values = dict(data.draw(st.sampled_from(rows)))
    columns = [name for name in values if name != "row_number"]
    for name in data.draw(st.lists(st.sampled_from(columns), min_size=1, max_size=3)):
        values[name] = data.draw(BY_COLUMN.get(name, ANY), label=name)
    same(as_row(values))


def test_a_naive_now_reads_the_same_both_ways(rows: list[dict[str, Any]]) -> None:
    for values in rows:
        same(as_row(values), NOW.replace(tzinfo=None))


def test_a_row_missing_a_column_fails_as_it_did(rows: list[dict[str, Any]]) -> None:
    values = {name: value for name, value in rows[0].items() if name != "owner_name"}
    with pytest.raises(IndexError):
        store_rows.account_from_row(as_row(values), NOW)


# --- trusted_account ---------------------------------------------------------------------------


def test_trusted_account_takes_every_field_and_equals_the_checked_constructor() -> None:
    names = [field.name for field in attrs.fields(Account)]
    assert list(inspect.signature(trusted_account).parameters) == names
    values: dict[str, Any] = {
        "id": "abc",
        "provider_id": "acme",
        "identity": "org:1",
        "label": "Org",
        "status": Status.EXPIRING,
        "config": {"region": "eu"},
        "linked_at": NOW,
        "checked_at": NOW + timedelta(seconds=1),
        "expires_at": NOW + timedelta(days=1),
        "last_error": "boom",
        "details": {"n": 1},
        "owner": "o1",
        "owner_name": "Ada",
    }
    built = trusted_account(**values)
    checked = Account(**values)
    assert built == checked
    assert repr(built) == repr(checked)
    assert hash(built) == hash(checked)
    assert built.to_json() == checked.to_json()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        built.label = "other"  # type: ignore[misc]
