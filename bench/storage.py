"""The account store: `hub accounts --json` over 10,000 accounts against plain sqlite3, and
its peak RSS at 10,000 and 100,000 accounts (it streams: the same at both).

The accounts are made through the public Store API (`Store.save` with a `Verified` result and
the credentials hub-elastic's field schema validates), exactly as `hub link` stores them.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from measure import ROOT, Figure, check, child_environ, compare, spawn, which

SECTION = "store"

#: The baseline: read the same rows with sqlite3 and print the same JSON document.
SQLITE_BASELINE = """
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.row_factory = sqlite3.Row
rows = db.execute("SELECT * FROM accounts ORDER BY provider_id, label, id, rowid").fetchall()
def when(value):
    return value.replace("+00:00", "Z") if value else None
print(json.dumps([
    {
        "id": row["id"], "provider": row["provider_id"], "identity": row["identity"],
        "label": row["label"], "status": row["verdict"], "config": json.loads(row["config"]),
        "linked_at": when(row["linked_at"]), "checked_at": when(row["checked_at"]),
        "expires_at": when(row["expires_at"]), "last_error": row["last_error"],
        "owner": row["owner"] or None, "owner_name": row["owner_name"],
    }
    for row in rows
], indent=2, ensure_ascii=False))
"""


def key(number: int) -> str:
    """The same key numbering as bulk_client.py, so a stored account can be checked."""
    return f"essu_bench_{number:06d}"


def populate(home: Path, count: int, *, start: int = 0) -> float:
    """Store accounts *start* to *count* − 1 (Elastic Cloud) in ``home/hub.db``; the seconds."""
    from hub_core import Hub, Verified
    from hub_core.store import Store

    hub = Hub(enable=["elastic"])
    started = time.perf_counter()
    with Store(home / "hub.db") as store:
        for number in range(start, count):
            credentials = hub.validate("elastic", {"api_key": key(number)})
            verified = Verified(
                identity=f"org:{number}",
                label=f"Bench org {number}",
                details={"organization_id": str(number), "organization_name": "Bench"},
            )
            store.save("elastic", verified, credentials)
    return time.perf_counter() - started


def accounts_json(home: Path, count: int, runs: int, warmups: int) -> list[Figure]:
    """`hub accounts --json` against the sqlite3 baseline, both as whole processes."""
    env = child_environ({"HUB_HOME": str(home)})
    hub_label, sqlite_label = "hub accounts --json", "sqlite3 + json.dumps"
    commands = {
        hub_label: [which("hub"), "accounts", "--json"],
        sqlite_label: [sys.executable, "-c", SQLITE_BASELINE, str(home / "hub.db")],
    }
    # The baseline must do the same job: the same accounts, in the same order, as the same JSON.
    outputs = [
        json.loads(check(spawn(argv, env), label).stdout) for label, argv in commands.items()
    ]
    if outputs[0] != outputs[1] or len(outputs[0]) != count:
        raise SystemExit("bench: hub accounts --json and the sqlite3 baseline disagree")
    last = f"Bench org {count - 1}"
    timings = compare(
        commands,
        env,
        runs=runs,
        warmups=warmups,
        expect={hub_label: last, sqlite_label: last},
    )
    return [
        Figure(
            section=SECTION,
            name=f"hub accounts --json, {count:,} accounts",
            value=timings[hub_label].median,
            baseline=timings[sqlite_label].median,
            unit="s",
            baseline_name=sqlite_label,
            check="ratio<=",
            target=3.0,
            details={label: timing.summary() for label, timing in timings.items()},
        )
    ]


#: Runs `hub` as the `hub` script does, saying its own peak RSS (VmHWM: since exec) on stderr
#: as it exits: the rusage of a child spawned with vfork, as posix_spawn does, also counts the
#: parent it was started from, and this parent holds the populated store's objects. The tests
#: use the same script.
PEAK_RSS = ROOT / "core" / "tests" / "peak_rss.py"


def peak_rss(home: Path, count: int) -> float:
    """Peak RSS (MiB) of `hub accounts --json` over the store in *home* (*count* accounts)."""
    env = child_environ({"HUB_HOME": str(home)})
    argv = [sys.executable, str(PEAK_RSS), "accounts", "--json"]
    run = check(spawn(argv, env), "peak RSS")
    if len(json.loads(run.stdout)) != count:
        raise SystemExit(f"bench: hub accounts --json did not print {count} accounts")
    return int(run.stderr.split()[-2]) / 1024


def copy_accounts(home: Path, count: int, *, start: int) -> None:
    """Accounts *start* to *count* − 1, copied in SQL from the last one `populate` stored.

    Only listing reads them, and it decrypts nothing: one stored key serves every copy, and
    90,000 more take a second instead of the minutes of as many `Store.save` transactions.
    """
    import sqlite3

    conn = sqlite3.connect(home / "hub.db")
    columns = [row[1] for row in conn.execute("PRAGMA table_info(accounts)")]
    made = {
        "id": "printf('%016x', x)",
        "identity": "'org:' || x",
        "label": "'Bench org ' || x",
        "details": "json_object('organization_id', CAST(x AS TEXT), 'organization_name', 'Bench')",
    }
    select = ", ".join(made.get(column, column) for column in columns)
    with conn:
        conn.execute(
            "WITH RECURSIVE n(x) AS (SELECT ? UNION ALL SELECT x + 1 FROM n WHERE x < ?)"  # noqa: S608 (no value in it)
            f" INSERT INTO accounts ({', '.join(columns)})"
            f" SELECT {select} FROM n, (SELECT * FROM accounts ORDER BY rowid DESC LIMIT 1)",
            (start, count - 1),
        )
    conn.close()


def accounts_memory(home: Path, stored: int, large: int) -> list[Figure]:
    """Peak RSS of `hub accounts --json` over *stored* accounts, then over *large*."""
    at_small = peak_rss(home, stored)
    copy_accounts(home, large, start=stored)
    at_large = peak_rss(home, large)
    small = stored
    return [
        Figure(
            section=SECTION,
            name=f"hub accounts --json peak RSS, {large:,} accounts",
            value=at_large,
            baseline=at_small,
            unit="MiB",
            baseline_name=f"the same at {small:,}",
            check="ratio<=",
            # Flat: a batch of rows in memory, never the listing.
            target=1.1,
        )
    ]
