"""The account store: `hub accounts --json` over 10,000 accounts against plain sqlite3.

The accounts are made through the public Store API (`Store.save` with a `Verified` result and
the credentials hub-elastic's field schema validates), exactly as `hub link` stores them.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from measure import Figure, check, child_environ, compare, spawn, which

SECTION = "store"

#: The baseline: read the same rows with sqlite3 and print the same JSON document.
SQLITE_BASELINE = """
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.row_factory = sqlite3.Row
rows = db.execute("SELECT * FROM accounts ORDER BY provider_id, label, id").fetchall()
def when(value):
    return value.replace("+00:00", "Z") if value else None
print(json.dumps([
    {
        "id": row["id"], "provider": row["provider_id"], "identity": row["identity"],
        "label": row["label"], "status": row["verdict"], "config": json.loads(row["config"]),
        "linked_at": when(row["linked_at"]), "checked_at": when(row["checked_at"]),
        "expires_at": when(row["expires_at"]), "last_error": row["last_error"],
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
