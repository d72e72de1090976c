"""Keyset listing: `Store.iter_accounts`, `Store.page_after` and a streamed `hub accounts`."""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet

from hub_core import Hub
from hub_core import store as store_module
from hub_core.cli import State, main
from hub_core.cli import accounts as accounts_cli
from hub_core.model import Account, Credentials, Status, Verified
from hub_core.store import Store

pytestmark = pytest.mark.usefixtures("hermetic_store_env")

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
KEY = Fernet.generate_key().decode()

PROVIDERS = ("acme", "beta", "zeta")
OWNERS = ("", "o1", "o2")
#: Few labels for many rows: most rows tie on (provider, label) and are ordered by id.
LABELS = ("Alpha", "Beta", "Beta", "Gamma")
#: (verdict, expires_at): one of each status as of NOW.
VERDICTS = (
    ("active", None),
    ("active", (NOW + timedelta(days=2)).isoformat()),  # expiring
    ("active", (NOW - timedelta(days=1)).isoformat()),  # expired
    ("invalid", None),
    ("denied", None),
    ("error", None),
    ("damaged", None),
)
#: Rows edited by hand (SQLite lets these through): each must be listed once, as damaged.
DAMAGE = (
    "UPDATE accounts SET id = NULL WHERE identity = 'org:3'",
    "UPDATE accounts SET id = NULL WHERE identity = 'org:4'",  # two NULL ids: a tie on id
    "UPDATE accounts SET id = NULL, label = X'ff' WHERE identity = 'org:5'",
    "UPDATE accounts SET label = X'ff' WHERE identity = 'org:6'",
    "UPDATE accounts SET label = '' WHERE identity = 'org:7'",
    "UPDATE accounts SET provider_id = X'ff' WHERE identity = 'org:8'",
    "UPDATE accounts SET verdict = 'revoked' WHERE identity = 'org:9'",
    "UPDATE accounts SET identity = X'ff00' WHERE identity = 'org:10'",
    "UPDATE accounts SET linked_at = 'yesterday' WHERE identity = 'org:11'",
)


def fill(path: Path, count: int, *, damage: bool = False) -> None:
    """*count* accounts: one stored by `Store.save`, copied by SQL across providers, owners,
    labels and statuses (listing reads no secret, so one encrypted value serves every row)."""
    with Store(path, secret_key=KEY) as store:
        template = store.save(
            "acme",
            Verified(identity="org:template", label="Template"),
            Credentials({"api_key": "key-template"}, secret=["api_key"]),
        ).id
    conn = sqlite3.connect(path)
    columns = [row[1] for row in conn.execute("PRAGMA table_info(accounts)")]
    made = {
        "id": "printf('%016x', x * 2654435761 % 4294967296)",
        "identity": "'org:' || x",
        "provider_id": _pick("x", PROVIDERS),
        "owner": _pick("x / 3", OWNERS),
        "label": _pick("x / 2", LABELS),
        "verdict": _pick("x / 5", [v for v, _ in VERDICTS]),
        "expires_at": _pick("x / 5", [e for _, e in VERDICTS]),
    }
    select = ", ".join(made.get(column, column) for column in columns)
    with conn:
        conn.execute(
            f"WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < ?)"  # noqa: S608
            f" INSERT INTO accounts ({', '.join(columns)})"
            f" SELECT {select} FROM n, accounts WHERE accounts.id = ?",
            (count - 1, template),
        )
        if damage:
            for statement in DAMAGE:
                conn.execute(statement)
    conn.close()


def _pick(index: str, values: Any) -> str:
    cases = " ".join(
        f"WHEN {i} THEN {'NULL' if v is None else repr(v)}" for i, v in enumerate(values)
    )
    return f"(CASE ({index}) % {len(values)} {cases} END)"


def _rank(value: object) -> tuple[int, object]:
    # SQLite's order for a column of the BINARY collation: NULL, numbers, text (by its
    # UTF-8 bytes), blobs; written out here so the test does not trust an ORDER BY.
    if value is None:
        return (0, 0)
    if isinstance(value, int | float):
        return (1, value)
    if isinstance(value, str):
        return (2, value.encode("utf-8", "surrogatepass"))
    assert isinstance(value, bytes)
    return (3, value)


def reference(path: Path) -> list[tuple[sqlite3.Row, Account]]:
    """Every row, read whole and sorted in Python by (provider, label, id, rowid)."""
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    rows = conn.execute("SELECT rowid AS row_number, * FROM accounts").fetchall()
    conn.close()
    rows.sort(key=lambda r: [_rank(r[c]) for c in ("provider_id", "label", "id", "row_number")])
    return [(row, store_module._account(row, NOW)) for row in rows]


def expected(
    path: Path, provider: str | None, owner: str | None, status: Status | None
) -> list[Account]:
    return [
        account
        for row, account in reference(path)
        if (provider is None or row["provider_id"] == provider)
        and (owner is None or row["owner"] == owner)
        and (status is None or account.status is status)
    ]


@pytest.fixture
def listed(tmp_path: Path) -> Iterator[tuple[Path, Store]]:
    path = tmp_path / "hub.db"
    fill(path, 130, damage=True)
    with Store(path, secret_key=KEY) as store:
        yield path, store


def test_the_filler_makes_every_status_ties_and_damage(listed: tuple[Path, Store]) -> None:
    path, _ = listed
    accounts = [account for _, account in reference(path)]
    assert {account.status for account in accounts} == set(Status)
    assert sum(account.status is Status.DAMAGED for account in accounts) > len(DAMAGE)
    pairs = [(a.provider_id, a.label) for a in accounts]
    assert len(set(pairs)) < len(pairs) / 4  # many rows share a provider and a label


@pytest.mark.parametrize("batch", [1, 2, 7, 500])
def test_the_keyset_listing_is_the_documented_order_for_every_filter(
    listed: tuple[Path, Store], batch: int
) -> None:
    path, store = listed
    for provider, owner, status in itertools.product(
        (None, *PROVIDERS), (None, *OWNERS), (None, *Status)
    ):
        want = expected(path, provider, owner, status)
        found = list(
            store.iter_accounts(provider=provider, owner=owner, status=status, batch=batch, now=NOW)
        )
        assert found == want, (provider, owner, status)
        filters = {"provider": provider, "owner": owner, "status": status, "now": NOW}
        if batch == 500:
            assert store.accounts(**filters) == want
        paged: list[Account] = []
        after = None
        for _ in range(len(want) + 1):
            page = store.page_after(after, limit=batch, **filters)
            paged += page.accounts
            after = page.after
            if after is None:
                break
        assert paged == want, (provider, owner, status)
    # Every row once, the damaged ones included.
    every = list(store.iter_accounts(batch=3, now=NOW))
    assert len(every) == len(reference(path))
    assert len({a.id for a in every}) == len(every)


def test_an_unknown_status_is_refused_at_the_call(listed: tuple[Path, Store]) -> None:
    _, store = listed
    with pytest.raises(ValueError, match="unknown status"):
        store.iter_accounts(status="revoked")


def test_a_listing_is_the_store_as_it_was_when_it_began(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    fill(path, 40)
    with Store(path, secret_key=KEY) as store, Store(path, secret_key=KEY) as writer:
        before = [account.id for account in store.accounts()]
        listing = store.iter_accounts(batch=4)
        seen = [next(listing).id for _ in range(10)]  # into the third batch
        writer.delete(before[20])  # ahead of where the listing is
        writer.delete(before[3])  # behind it
        # One that sorts before where the listing is, one after.
        for label in ("AAA first", "zzz last"):
            writer.save(
                "zeta" if label.startswith("z") else "acme",
                Verified(identity=f"org:{label}", label=label),
                Credentials({"api_key": "k"}, secret=["api_key"]),
            )
        seen += [account.id for account in listing]
        assert len(writer.accounts()) == 40
    assert seen == before


def _plans(store: Store, call: Any) -> list[str]:
    """The query plan of every listing query *call* makes on *store*."""
    statements: list[str] = []
    connect = store._connect

    def traced() -> sqlite3.Connection:  # a listing's own connection, for its snapshot
        conn = connect()
        conn.set_trace_callback(statements.append)
        return conn

    store._db.set_trace_callback(statements.append)
    store._connect = traced  # type: ignore[method-assign]
    try:
        call()
    finally:
        store._db.set_trace_callback(None)
        del store._connect
    plans = []
    for sql in statements:
        if sql.startswith("SELECT rowid AS row_number, * FROM accounts"):
            rows = store._db.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
            plans.append(" | ".join(str(row[3]) for row in rows))
    return plans


@pytest.mark.parametrize("provider", [None, "beta"])
@pytest.mark.parametrize("owner", [None, "o1"])
def test_a_keyset_page_is_read_from_the_index_without_a_sort(
    tmp_path: Path, provider: str | None, owner: str | None
) -> None:
    path = tmp_path / "hub.db"
    fill(path, 300)
    with Store(path, secret_key=KEY) as store:
        first = store.page_after(provider=provider, owner=owner, limit=20)
        assert first.after is not None

        def pages() -> None:
            store.page_after(first.after, provider=provider, owner=owner, limit=20)
            list(store.iter_accounts(provider=provider, owner=owner, batch=10))

        plans = _plans(store, pages)
    assert len(plans) > 2, plans
    index = "accounts_owner" if owner else "accounts_listing"
    for plan in plans:
        assert "TEMP B-TREE" not in plan, plan
        assert f"USING INDEX {index}" in plan, plan
    # A page after a key starts at the key: the index is searched, not scanned from the start.
    keyed = [plans[0], *plans[2:]]  # the page after a key, the listing's later batches
    assert all(plan.startswith("SEARCH accounts USING INDEX") for plan in keyed), plans


# --- hub accounts ---------------------------------------------------------------------------


def run(path: Path, *args: str) -> Any:
    with Store(path, secret_key=KEY) as store:
        state = State(hub=Hub(load_entrypoints=False), store=store, interactive=False)
        return CliRunner().invoke(main, ["accounts", *args], obj=state)


def test_hub_accounts_json_is_the_documented_list(listed: tuple[Path, Store]) -> None:
    path, _ = listed
    result = run(path, "--json")
    assert result.exit_code == 0, result.output
    now = datetime.now(UTC)
    documented = [store_module._account(row, now).to_json() for row, _ in reference(path)]
    assert json.loads(result.stdout) == documented
    filtered = run(path, "--json", "--provider", "beta", "--status", "invalid")
    assert json.loads(filtered.stdout) == [
        a for a in documented if a["provider"] == "beta" and a["status"] == "invalid"
    ]


def test_hub_accounts_json_of_an_empty_store_is_an_empty_list(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    Store(path, secret_key=KEY).close()
    result = run(path, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == []
    assert "No linked account" in run(path).stdout


def _old_table(accounts: list[Account]) -> list[str]:
    """The table as `hub accounts` printed it when it read every row first."""
    header = ["ACCOUNT", "PROVIDER", "STATUS", "EXPIRES", "LINKED", "CHECKED"]
    rows = [header] + [accounts_cli._account_cells(a) for a in accounts]
    plain = [[getattr(cell, "plain", cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in plain) for i in range(len(header))]
    return [
        "  ".join([*(f"{c:<{w}}" for c, w in zip(row[:-1], widths, strict=False)), row[-1]])
        for row in plain
    ]


def test_hub_accounts_prints_the_table_it_printed_before(listed: tuple[Path, Store]) -> None:
    path, store = listed
    result = run(path)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == _old_table(store.accounts())


def test_a_wider_value_past_the_measured_rows_keeps_its_line_whole(
    listed: tuple[Path, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, store = listed
    monkeypatch.setattr(accounts_cli, "_MEASURED_ROWS", 3)
    lines = run(path).stdout.splitlines()
    accounts = store.accounts()
    assert len(lines) == len(accounts) + 1
    assert lines[:4] == _old_table(accounts[:3])
    for line, account in zip(lines[1:], accounts, strict=True):
        assert line.startswith(f"{account.id}  ")
        assert account.status.value in line.split()


# --- memory of a real `hub accounts --json` -----------------------------------------------------


#: Runs `hub` in a process of its own that says its peak RSS as it exits (VmHWM, since exec).
PEAK_RSS = Path(__file__).with_name("peak_rss.py")


def peak_rss_kib(home: Path) -> tuple[int, int]:
    """Peak RSS (KiB) of a real `hub accounts --json` process, and the accounts it printed."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "PYTHON"))},
        "HUB_HOME": str(home),
        "HUB_SECRET_KEY": KEY,
    }
    done = subprocess.run(
        [sys.executable, str(PEAK_RSS), "accounts", "--json"],
        env=env,
        capture_output=True,
        check=True,
    )
    printed = json.loads(done.stdout)
    return int(done.stderr.split()[-2]), len(printed)


def test_hub_accounts_json_memory_is_flat_in_the_number_of_accounts(tmp_path: Path) -> None:
    small, large = tmp_path / "small", tmp_path / "large"
    for home, count in ((small, 100), (large, 10_000)):
        home.mkdir()
        fill(home / "hub.db", count)
    small_rss, small_count = peak_rss_kib(small)
    large_rss, large_count = peak_rss_kib(large)
    assert (small_count, large_count) == (100, 10_000)
    # Read whole, 10,000 accounts took about 37 MiB more (their objects, dicts and text);
    # streamed, a batch of 500 (about 2 MiB). The bound leaves room for a noisy allocator.
    assert large_rss - small_rss < 10 * 1024, (small_rss, large_rss)
