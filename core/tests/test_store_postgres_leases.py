"""The order PostgreSQL leases take accounts in, and what a lease reads to find them.

Each lease looks on from where the store's last lease of the run ended (`LeaseCursors`): these
tests hold it to the order the contract suite expects (due time, then seq, NULL first), to
taking what became free behind that point, and to a cost that does not grow with the verdicts
recorded so far.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hub_core.lease_cursors import LOOK_FROM_START_EVERY
from hub_core.model import Credentials, Verified

psycopg = pytest.importorskip("psycopg")

from core.tests.pg_schemas import edit  # noqa: E402
from hub_core.store_postgres import PostgresStore  # noqa: E402

pytestmark = pytest.mark.usefixtures("hermetic_store_env")

SECOND = timedelta(seconds=1)


def save_many(store: PostgresStore, count: int) -> list[str]:
    creds = Credentials({"api_key": "sekrit-value"}, secret=["api_key"])
    return [
        store.save("acme", Verified(identity=f"org:{n}", label=f"Org {n}"), creds).id
        for n in range(count)
    ]


def leased(store: PostgresStore, limit: int, **options: Any) -> list[str]:
    return [held.account.id for held in store.lease(limit, **options).accounts]


def test_ties_on_the_due_time_go_by_seq_and_each_lease_goes_on_from_the_last(
    pg_store: PostgresStore, postgres_url: str
) -> None:
    ids = save_many(pg_store, 7)
    # The order leases take: the schedule's copy of checked_at.
    edit(
        postgres_url,
        "UPDATE account_schedule SET checked_at = %s",
        datetime(2026, 1, 1, tzinfo=UTC),
    )
    edit(
        postgres_url,
        "UPDATE account_schedule SET checked_at = NULL"
        " WHERE seq = (SELECT seq FROM accounts WHERE id = %s)",
        ids[5],
    )
    start = datetime.now(UTC)
    batches = [leased(pg_store, 2, checked_before=start) for _ in range(5)]
    assert batches == [[ids[5], ids[0]], [ids[1], ids[2]], [ids[3], ids[4]], [ids[6]], []]


def test_the_workers_order_starts_with_accounts_never_scheduled(
    pg_store: PostgresStore, postgres_url: str
) -> None:
    # No due time sorts first; the place a lease ended may itself have no due time.
    ids = save_many(pg_store, 5)
    soon = datetime.now(UTC) + timedelta(days=1)
    edit(
        postgres_url,
        "UPDATE account_schedule SET next_check_at = %s"
        " WHERE seq IN (SELECT seq FROM accounts WHERE id = ANY(%s))",
        soon,
        ids[::2],
    )
    later = datetime.now(UTC) + timedelta(days=30)
    batches = [leased(pg_store, 1, now=later) for _ in range(6)]
    assert batches == [[ids[1]], [ids[3]], [ids[0]], [ids[2]], [ids[4]], []]


def test_what_comes_free_behind_a_lease_is_taken_after_what_is_ahead_and_within_a_minute(
    pg_store: PostgresStore,
) -> None:
    ids = save_many(pg_store, 8)
    other = pg_store.connect_again()
    t0 = datetime.now(UTC) + SECOND
    assert leased(other, 2, checked_before=t0, lease_for=10 * SECOND, now=t0) == ids[0:2]
    assert leased(pg_store, 2, checked_before=t0, now=t0) == ids[2:4]
    # The other checker's lease has expired: its accounts are free again, behind this
    # store's place in the order. The leases take what is ahead first ...
    assert leased(pg_store, 2, checked_before=t0, now=t0 + 20 * SECOND) == ids[4:6]
    # ... and look from the start again once they have looked on for a minute.
    back = t0 + LOOK_FROM_START_EVERY + SECOND
    assert leased(pg_store, 2, checked_before=t0, now=back) == ids[0:2]
    assert leased(pg_store, 2, checked_before=t0, now=back + SECOND) == ids[6:8]
    assert leased(pg_store, 2, checked_before=t0, now=back + 2 * SECOND) == []


def test_accounts_given_back_are_leased_next(pg_store: PostgresStore) -> None:
    ids = save_many(pg_store, 6)
    start = datetime.now(UTC) + SECOND
    first = pg_store.lease(2, checked_before=start)
    assert leased(pg_store, 2, checked_before=start) == ids[2:4]
    assert pg_store.release(first.token) == 2
    assert leased(pg_store, 2, checked_before=start) == ids[0:2]
    assert leased(pg_store, 2, checked_before=start) == ids[4:6]


def save_alternately(store: PostgresStore, count: int) -> list[str]:
    """*count* accounts of "acme" and of "slow", saved in turn; the ids of slow's."""
    creds = Credentials({"api_key": "sekrit-value"}, secret=["api_key"])
    slow = []
    for n in range(count):
        store.save("acme", Verified(identity=f"org:{n}", label="L"), creds)
        slow.append(store.save("slow", Verified(identity=f"org:{n}", label="L"), creds).id)
    return slow


def test_a_budgeted_provider_keeps_its_place_beside_the_others(pg_store: PostgresStore) -> None:
    # A budgeted provider's rows are leased by a query of their own, which goes on from its
    # own last row: a place shared with the other providers would leave its rows behind.
    budgeted = save_alternately(pg_store, 8)
    t0 = datetime.now(UTC) + SECOND
    pg_store.set_limit("slow", 0.5, burst=1, now=t0)
    batches = [leased(pg_store, 4, checked_before=t0, now=t0 + n * SECOND) for n in range(6)]
    taken = [budgeted.index(i) for batch in batches for i in batch if i in budgeted]
    # One every two seconds, in order, none skipped.
    assert taken == [0, 1, 2], taken


def test_a_provider_whose_budget_is_lifted_is_leased_from_its_first_row(
    pg_store: PostgresStore,
) -> None:
    budgeted = save_alternately(pg_store, 6)
    t0 = datetime.now(UTC) + SECOND
    pg_store.set_limit("slow", 0.001, burst=1, now=t0)
    first = leased(pg_store, 4, checked_before=t0, now=t0)  # slow's first, then acme's
    assert [i for i in first if i in budgeted] == budgeted[:1]
    pg_store.set_limit("slow", None, now=t0)
    # slow's rows now share the others' query, behind where it had gone on to.
    assert leased(pg_store, 2, checked_before=t0, now=t0) == budgeted[1:3]


def _lease_reads(monkeypatch: pytest.MonkeyPatch, call: Callable[[], Any]) -> list[int]:
    """The buffers each lease query of *call* that found rows read: the query run first
    under EXPLAIN ANALYZE, in its own transaction (whose row locks the query then shares)."""
    reads: list[int] = []
    execute = psycopg.Connection.execute

    def measured(self: Any, query: Any, params: Any = None, *args: Any, **kwargs: Any) -> Any:
        if str(query).startswith("SELECT s.") and "SKIP LOCKED" in str(query):
            # A table this small is read whole and sorted; a large one is read in the
            # index's order, as here (the bench's 100,000 accounts are).
            execute(self, "SET LOCAL enable_seqscan = off")
            explain = f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {query}"
            (plan,) = execute(self, explain, params).fetchone().values()
            top = plan[0]["Plan"]
            if top["Actual Rows"]:
                reads.append(top["Shared Hit Blocks"] + top["Shared Read Blocks"])
        return execute(self, query, params, *args, **kwargs)

    monkeypatch.setattr(psycopg.Connection, "execute", measured)
    try:
        call()
    finally:
        monkeypatch.setattr(psycopg.Connection, "execute", execute)
    return reads


def test_a_runs_leases_read_no_more_as_its_verdicts_pile_up(
    pg_store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every verdict leaves a dead entry at the start of the lease's index until vacuum: a
    # lease that looked from the start would step over all of them, a run's leases reading
    # ever more (here the index pages of 1,200 entries; at 40,000 accounts, a lease late in
    # the run read 20,000 buffers against 530 looking on).
    save_many(pg_store, 1200)
    start = datetime.now(UTC)

    def run() -> None:
        while (lease := pg_store.lease(50, checked_before=start)).accounts:
            verdicts = [
                (held.account.id, Verified(identity=held.account.identity, label="L"))
                for held in lease.accounts
            ]
            pg_store.record_many(verdicts, lease=lease.token)

    reads = _lease_reads(monkeypatch, run)
    assert len(reads) == 24
    assert max(reads[len(reads) // 2 :]) <= reads[0], reads  # looking from the start: grows
