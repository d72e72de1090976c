"""Leases (SCALE.md §2): checkers share a store's accounts and each account is checked once."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet

from hub_core import Accounts, Hub, Policy, Store, Verified
from hub_core.errors import InvalidCredentials, RateLimited
from hub_core.hookspecs import Flow
from hub_core.model import Credentials, Status

from .contract.test_leases import NOW, fill

pytestmark = pytest.mark.anyio


def keyed_flow(credentials: Any) -> Flow:
    """One GET per check; the provider's answer decides (401: rejected, 429: slow down)."""
    key = credentials["api_key"]
    response = yield httpx.Request(
        "GET", "https://api.acme.test/me", headers={"Authorization": f"Bearer {key}"}
    )
    if response.status_code == 401:
        raise InvalidCredentials("Acme rejected the key", field="api_key")
    if response.status_code == 429:
        raise RateLimited("Acme asked to slow down", retry_after=30)
    return Verified(identity=f"org:{key}", label=f"Org {key}")


class Provider:
    """Counts the checks each key got; a key in *limited* is answered 429, in *revoked* 401."""

    def __init__(self) -> None:
        self.seen: collections.Counter[str] = collections.Counter()
        self.limited: set[str] = set()
        self.revoked: set[str] = set()
        self.lock = threading.Lock()
        #: When each request came (monotonic seconds).
        self.times: list[float] = []
        #: Seconds each answer takes (a slow provider).
        self.delay = 0.0

    def __call__(self, request: httpx.Request) -> Any:
        key = request.headers["authorization"].removeprefix("Bearer ")
        with self.lock:
            self.seen[key] += 1
            self.times.append(time.monotonic())
        if key in self.limited:
            response = httpx.Response(429, headers={"Retry-After": "30"})
        elif key in self.revoked:
            response = httpx.Response(401)
        else:
            response = httpx.Response(200, json={})
        if not self.delay:
            return response

        async def later() -> httpx.Response:  # the async client awaits a slow answer
            await asyncio.sleep(self.delay)
            return response

        return later()


@pytest.fixture
def provider() -> Provider:
    return Provider()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "hub.db"


@pytest.fixture
def secret() -> bytes:
    return Fernet.generate_key()


@pytest.fixture
def make(db: Path, secret: bytes, provider: Provider, acme_plugin: Any) -> Iterator[Any]:
    """Accounts over their own connection to one database, as another checker would have."""
    opened: list[tuple[Hub, Store]] = []

    def build() -> Accounts:
        hub = Hub(
            plugins=[acme_plugin(keyed_flow)],
            load_entrypoints=False,
            transport=httpx.MockTransport(provider),
            policy=Policy(backoff=0, retries=0),
        )
        store = Store(db, secret_key=secret)
        opened.append((hub, store))
        return Accounts(hub, store)

    yield build
    for hub, store in opened:
        hub.close()
        store.close()


# --- check_all: every account once, shared ---------------------------------------------------


async def test_check_all_checks_every_account_once_in_batches(
    make: Any, provider: Provider
) -> None:
    accounts = make()
    fill(accounts.store, 25)
    seen: list[str] = []
    run = await accounts.check_all(batch=4, on_result=lambda a: seen.append(a.id))
    assert run.total == 25
    assert run.statuses == {Status.ACTIVE: 25}
    assert sorted(provider.seen.values()) == [1] * 25
    assert len(seen) == len(set(seen)) == 25
    # A second run checks them all again: each was checked before it began.
    await accounts.check_all(batch=10)
    assert sorted(provider.seen.values()) == [2] * 25


def test_two_checkers_started_together_check_each_account_once(
    make: Any, provider: Provider
) -> None:
    fill(make().store, 300)
    runs: list[Any] = []
    checkers = [make(), make()]

    def checker(accounts: Accounts) -> None:
        # Each thread its own connection (SQLite's rule), as two processes would have.
        with accounts.store.connect_again() as store:
            mine = Accounts(accounts.hub, store)
            runs.append(asyncio.run(mine.check_all(batch=20, concurrency=5)))

    threads = [threading.Thread(target=checker, args=(c,)) for c in checkers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(provider.seen.values()) == [1] * 300
    assert sum(run.total for run in runs) == 300
    assert all(run.total > 0 for run in runs)  # the work was shared


async def test_check_all_takes_over_a_dead_checkers_lease(make: Any, provider: Provider) -> None:
    accounts = make()
    ids = fill(accounts.store, 6)
    dead = make().store.lease(2, lease_for=timedelta(seconds=0.5))  # then killed: never records
    run = await accounts.check_all(batch=10)
    assert run.total == 6
    assert sorted(provider.seen.values()) == [1] * 6
    stored = {account.id: account for account in accounts.store.accounts()}
    for item in dead.accounts:
        assert stored[item.account.id].checked_at > NOW  # checked after the lease expired
    assert set(stored) == set(ids)


async def test_a_batch_whose_checks_outlast_its_lease_keeps_it_and_checks_each_key_once(
    make: Any, provider: Provider
) -> None:
    accounts = make()
    fill(accounts.store, 8)
    provider.delay = 0.25  # one at a time: the batch takes twice its lease
    run = await accounts.check_all(concurrency=1, batch=8, lease_for=timedelta(seconds=1))
    assert run.total == 8
    # Renewed as it went: neither this run's next lease nor another checker took them again.
    assert sorted(provider.seen.values()) == [1] * 8


async def test_check_all_reports_a_damaged_account_once_and_lets_it_go(
    make: Any, provider: Provider, db: Path
) -> None:
    accounts = make()
    ids = fill(accounts.store, 3)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE accounts SET config = 'not json' WHERE id = ?", (ids[1],))
    seen: list[Any] = []
    run = await accounts.check_all(batch=1, on_result=seen.append)
    assert [a.id for a in seen].count(ids[1]) == 1
    assert run.statuses == {Status.ACTIVE: 2, Status.DAMAGED: 1}
    assert accounts.store.lease(10).accounts != []  # released at the end of the run


async def test_a_revoked_key_is_flagged(make: Any, provider: Provider) -> None:
    accounts = make()
    fill(accounts.store, 3)
    provider.revoked.add("k1")
    run = await accounts.check_all()
    assert [a.label for a in run.flagged] == ["Org k1"]
    assert run.statuses == {Status.ACTIVE: 2, Status.INVALID: 1}


async def test_one_keys_429_reschedules_only_that_account(make: Any, provider: Provider) -> None:
    accounts = make()
    ids = fill(accounts.store, 4)
    provider.limited.add("k2")
    run = await accounts.check_all()
    assert run.total == 4
    stored = {a.id: a for a in accounts.store.accounts()}
    assert stored[ids[2]].status is Status.ACTIVE  # as it was
    assert stored[ids[2]].checked_at == NOW - timedelta(days=2)
    assert all(stored[i].checked_at > NOW for i in ids if i != ids[2])
    assert provider.seen["k2"] == 1  # not asked again within the run


def _moved(store: Store, account_id: str) -> None:
    """The account stored as another identity than the one its key now reaches."""
    with contextlib.closing(sqlite3.connect(store.path)) as conn, conn:
        conn.execute("UPDATE accounts SET identity = 'org:elsewhere' WHERE id = ?", (account_id,))


async def test_a_key_that_reaches_another_identity_now_is_recorded_invalid_once(
    make: Any, provider: Provider
) -> None:
    accounts = make()
    ids = fill(accounts.store, 3)
    _moved(accounts.store, ids[1])
    # The refused verdict ends its lease; the key's failure is recorded all the same, so the
    # run does not lease the account again and again (it is not checked since it began).
    run = await asyncio.wait_for(accounts.check_all(), timeout=30)
    assert (run.total, run.statuses) == (3, {Status.ACTIVE: 2, Status.INVALID: 1})
    assert sorted(provider.seen.values()) == [1, 1, 1]
    stored = accounts.store.get(ids[1])
    assert stored.status is Status.INVALID
    assert "org:elsewhere" in str(stored.last_error)


# --- the worker ------------------------------------------------------------------------------


def stop_after(count: int, stop: asyncio.Event) -> Callable[[Any], None]:
    """An ``on_result`` that sets *stop* a moment after the *count*-th account reported (the
    worker would otherwise wait for accounts to fall due again)."""
    reported = 0

    def checked(account: Any) -> None:
        nonlocal reported
        reported += 1
        if reported == count:
            asyncio.get_running_loop().call_later(0.2, stop.set)

    return checked


async def test_the_worker_checks_what_is_due_then_waits_and_stops(
    make: Any, provider: Provider
) -> None:
    accounts = make()
    fill(accounts.store, 5)
    stop = asyncio.Event()
    run = await asyncio.wait_for(
        accounts.work(
            every=timedelta(hours=1), stop=stop, idle=0.05, on_result=stop_after(5, stop)
        ),
        timeout=30,
    )
    assert run.total == 5
    assert sorted(provider.seen.values()) == [1] * 5  # due again only in an hour
    due = accounts.store.next_due()
    assert due is not None
    assert due > datetime.now(UTC) + timedelta(minutes=59)


async def test_the_worker_says_which_providers_budget_holds_due_accounts_back(
    make: Any, provider: Provider
) -> None:
    accounts = make()
    fill(accounts.store, 3)
    accounts.store.set_limit("acme", 0.05, burst=1)  # one check now, the next in 20 s
    stop = asyncio.Event()
    waits: list[tuple[tuple[str, ...], timedelta]] = []

    def told(providers: tuple[str, ...], wait: timedelta) -> None:
        waits.append((providers, wait))
        stop.set()

    await asyncio.wait_for(
        accounts.work(every=timedelta(hours=1), stop=stop, idle=0.05, on_wait=told), timeout=30
    )
    assert sum(provider.seen.values()) == 1  # the budget's one check
    ((providers, wait),) = waits[:1]
    assert providers == ("acme",)
    assert timedelta(0) < wait <= timedelta(seconds=20)


async def test_a_worker_waits_while_another_checker_holds_the_due_accounts(
    make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = make()
    fill(other.store, 3)
    assert len(other.store.lease(10, lease_for=timedelta(minutes=5)).accounts) == 3
    worker = make()
    leases: list[Any] = []
    lease = worker.store.lease

    def counted(*args: Any, **kwargs: Any) -> Any:
        leases.append(lease(*args, **kwargs))
        return leases[-1]

    monkeypatch.setattr(worker.store, "lease", counted)
    stop = asyncio.Event()
    running = asyncio.ensure_future(worker.work(stop=stop, idle=30.0))
    await asyncio.sleep(1.0)
    stop.set()
    await asyncio.wait_for(running, timeout=30)
    # Nothing it may lease for minutes: it sleeps (at most *idle*), it does not ask again.
    assert len(leases) == 1
    assert leases[0].accounts == []


async def test_the_worker_checks_its_leases_as_one_stream(
    make: Any, provider: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As `check_all`: one stream of checks over one pool across the leases (the next batch
    # leased while the last checks of this one are in flight), not one batch after another.
    from hub_core.hub import Hub

    accounts = make()
    fill(accounts.store, 10)
    provider.delay = 0.01
    streams: list[int] = []  # per stream of checks, how many keys it checked
    original = Hub._check_each

    async def counted(self: Hub, *args: Any, **kwargs: Any) -> None:
        before = sum(provider.seen.values())
        try:
            await original(self, *args, **kwargs)
        finally:
            streams.append(sum(provider.seen.values()) - before)

    def checked(account: Any) -> None:
        if sum(provider.seen.values()) == 10:
            asyncio.get_running_loop().call_later(0.2, stop.set)

    monkeypatch.setattr(Hub, "_check_each", counted)
    stop = asyncio.Event()
    run = await asyncio.wait_for(
        accounts.work(stop=stop, batch=3, concurrency=2, idle=0.05, on_result=checked),
        timeout=30,
    )
    assert run.total == 10
    assert sorted(provider.seen.values()) == [1] * 10
    # Four leases (3 + 3 + 3 + 1), one stream; the later ones found nothing due.
    assert [n for n in streams if n] == [10]


async def test_the_worker_releases_only_a_lease_that_holds_an_account_it_cannot_check(
    make: Any, provider: Provider, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each verdict ends its account's lease; a release reads the whole table on SQLite (no
    # index of lease tokens), so the worker sends one only for the lease keeping a damaged
    # account, which is then due again in `every` rather than leased over and over.
    import sqlite3

    accounts = make()
    ids = fill(accounts.store, 6)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE accounts SET config = 'not json' WHERE id = ?", (ids[4],))
    released: list[tuple[str, timedelta | None]] = []
    original = type(accounts.store).release

    def release(self: Any, token: str, *args: Any, **kwargs: Any) -> int:
        count: int = original(self, token, *args, **kwargs)
        released.append((token, kwargs.get("next_check_in")))
        return count

    monkeypatch.setattr(type(accounts.store), "release", release)
    stop = asyncio.Event()
    every = timedelta(hours=1)
    run = await asyncio.wait_for(
        accounts.work(every=every, stop=stop, batch=3, idle=0.05, on_result=stop_after(6, stop)),
        timeout=30,
    )
    assert run.statuses == {Status.ACTIVE: 5, Status.DAMAGED: 1}
    assert sorted(provider.seen.values()) == [1] * 5
    assert [due for _, due in released] == [every]  # one lease of two, and only once
    due = accounts.store.next_due()
    assert due is not None
    assert due > datetime.now(UTC) + timedelta(minutes=59)  # the damaged one too


async def test_a_stopped_worker_releases_what_it_had_not_started(
    make: Any, provider: Provider
) -> None:
    accounts = make()
    fill(accounts.store, 40)
    stop = asyncio.Event()
    provider.delay = 0.05
    worker = asyncio.ensure_future(accounts.work(stop=stop, concurrency=1, batch=40))
    while not provider.seen:
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(worker, timeout=30)
    checked = sum(provider.seen.values())
    assert checked < 40
    # What it had not started is free for another worker at once, not after the lease.
    other = make().store.lease(100)
    assert len(other.accounts) == 40 - len(
        [a for a in accounts.store.accounts() if a.checked_at and a.checked_at > NOW]
    )


async def test_a_run_started_while_another_is_under_way_joins_it(
    make: Any, provider: Provider
) -> None:
    first, second = make(), make()
    fill(first.store, 60)
    provider.delay = 0.01
    early = asyncio.ensure_future(first.check_all(batch=5, concurrency=2))
    while sum(1 for a in first.store.accounts() if a.checked_at and a.checked_at > NOW) < 5:
        await asyncio.sleep(0.01)  # the first run has recorded verdicts already
    late = await second.check_all(batch=5, concurrency=2)
    done = await early
    assert sorted(provider.seen.values()) == [1] * 60  # none checked again by the late run
    assert done.total + late.total == 60
    assert late.total > 0
    # Both over: the next run starts afresh and checks everything again.
    provider.delay = 0
    again = await make().check_all()
    assert again.total == 60


def test_a_killed_runs_start_is_forgotten_after_it_stops_renewing(make: Any) -> None:
    store = make().store
    _, began = store.join_run(alive_for=timedelta(seconds=5), now=NOW)
    _, joined = store.join_run(now=NOW + timedelta(seconds=4))
    assert joined == began == NOW
    later = NOW + timedelta(minutes=10)
    _, fresh = store.join_run(now=later)
    assert fresh == later


# --- one stream across leases, bounded memory (issue 19, performance) ---------------------


async def test_check_all_leases_the_next_batch_while_the_last_checks_finish(
    make: Any, provider: Provider, monkeypatch: pytest.MonkeyPatch, db: Path
) -> None:
    import sqlite3

    accounts = make()
    fill(accounts.store, 12)
    provider.delay = 0.02
    held: list[int] = []
    lease = Store.lease

    def watched(self: Store, *args: Any, **kwargs: Any) -> Any:
        # Leases that still hold accounts when the next one is taken (its checks in flight).
        # On the run's store thread, over its own connection: this one is the test's.
        with contextlib.closing(sqlite3.connect(db)) as conn:
            row = conn.execute(
                "SELECT count(DISTINCT lease_token) FROM accounts WHERE lease_token IS NOT NULL"
            ).fetchone()
        held.append(row[0])
        return lease(self, *args, **kwargs)

    monkeypatch.setattr(Store, "lease", watched)
    run = await accounts.check_all(batch=4, concurrency=3)
    assert run.total == 12
    assert sorted(provider.seen.values()) == [1] * 12
    # Batch 2 and 3 were leased while the previous one's checks were still running (the
    # stream never drains between leases), and never more than one lease besides the new one.
    assert max(held) == 1
    assert held.count(1) >= 2
    assert all(row["lease_token"] is None for row in _rows(accounts.store))


def _rows(store: Store) -> list[Any]:
    with store._write() as conn:
        return list(conn.execute("SELECT lease_token FROM accounts").fetchall())


async def test_a_verdict_refused_under_a_lease_still_ends_the_lease(
    make: Any, provider: Provider
) -> None:
    accounts = make()
    [account_id] = fill(accounts.store, 1)
    lease = accounts.store.lease(10)
    [item] = lease.accounts
    # Relinked while its old key was checked: the verdict is dropped, the lease ends anyway,
    # so no checker waits for it to expire.
    accounts.store.save(
        "acme",
        Verified(identity="org:k0", label="Org k0"),
        Credentials({"api_key": "k0-new"}, secret=["api_key"]),
    )
    [outcome] = accounts.store.record_many(
        [(account_id, Verified(identity="org:k0", label="old"))],
        versions={account_id: item.version},
        lease=lease.token,
    )
    assert type(outcome).__name__ == "KeyReplaced"
    assert [row["lease_token"] for row in _rows(accounts.store)] == [None]


async def test_check_all_keeps_a_bounded_list_of_accounts_not_active(
    make: Any, provider: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hub_core import accounts as accounts_module

    monkeypatch.setattr(accounts_module, "FLAGGED_KEPT", 3)
    accounts = make()
    fill(accounts.store, 8)
    provider.revoked = {f"k{i}" for i in range(7)}
    run = await accounts.check_all(batch=3)
    assert run.total == 8
    assert run.statuses[Status.INVALID] == 7
    assert len(run.flagged) == 3
    assert run.more_flagged == 4


# --- budgets and pauses (`hub limits`) --------------------------------------------------------


async def test_check_all_keeps_to_the_providers_budget(make: Any, provider: Provider) -> None:
    accounts = make()
    fill(accounts.store, 12)
    accounts.store.set_limit("acme", 50, burst=4)
    waits: list[tuple[tuple[str, ...], timedelta]] = []
    run = await accounts.check_all(
        batch=10, concurrency=4, on_wait=lambda who, wait: waits.append((who, wait))
    )
    assert run.total == 12
    assert sorted(provider.seen.values()) == [1] * 12
    assert waits
    assert {who for who, _ in waits} == {("acme",)}
    # At most the burst at once, then the rate: 12 checks need at least (12 - 4) / 50 s.
    elapsed = provider.times[-1] - provider.times[0]
    assert len(provider.times) <= 4 + 50 * elapsed + 1


async def test_a_provider_rate_limiting_many_keys_is_left_for_later(
    make: Any, provider: Provider
) -> None:
    from hub_core.budgets import PAUSE_AFTER

    accounts = make()
    ids = fill(accounts.store, 8)
    provider.limited = {f"k{i}" for i in range(8)}  # a limit on the whole provider
    before = {account_id: accounts.store.get(account_id).status for account_id in ids}
    run = await accounts.check_all(batch=PAUSE_AFTER, concurrency=1)
    assert run.paused == ("acme",)
    assert run.paused_until is not None
    assert sum(provider.seen.values()) < 8  # the rest were not asked at all
    assert {i: accounts.store.get(i).status for i in ids} == before  # no verdict changed
    [limit] = accounts.store.limits()
    assert limit.pause.until == run.paused_until


# --- store calls off the event loop (issue 20, performance) -------------------------------


def _slowed(monkeypatch: pytest.MonkeyPatch, name: str, seconds: Any) -> list[tuple[float, float]]:
    """Make every ``Store.<name>`` call sleep *seconds()* first; gives (start, end) of each."""
    original = getattr(Store, name)
    spans: list[tuple[float, float]] = []

    def slow(self: Store, *args: Any, **kwargs: Any) -> Any:
        start = time.monotonic()
        time.sleep(seconds())  # as a database that takes its time: the GIL is let go
        try:
            return original(self, *args, **kwargs)
        finally:
            spans.append((start, time.monotonic()))

    monkeypatch.setattr(Store, name, slow)
    # As a database server would: SQLite's own calls stay on the loop (`waits_on_server`).
    monkeypatch.setattr(Store, "waits_on_server", True)
    return spans


def _during(times: list[float], spans: list[tuple[float, float]]) -> int:
    return sum(1 for t in times for start, end in spans if start + 0.02 < t < end - 0.02)


@pytest.mark.parametrize(
    ("how", "call"), [("check_all", "lease"), ("check_all", "record_many"), ("work", "record_many")]
)
async def test_checks_keep_running_while_the_store_answers(
    make: Any, provider: Provider, monkeypatch: pytest.MonkeyPatch, how: str, call: str
) -> None:
    # A slow database (lease or record) holds up its own thread, not the event loop: requests
    # keep leaving while it answers. On the loop, no request could leave during a store call.
    from hub_core import accounts as accounts_module

    monkeypatch.setattr(accounts_module, "BATCH_SIZE", 5)
    accounts = make()
    fill(accounts.store, 80)
    provider.delay = 0.05  # the last quarter of a lease outlasts the next lease's fetch
    spans = _slowed(monkeypatch, call, lambda: 0.15)
    if how == "check_all":
        running = accounts.check_all(batch=40, concurrency=3)
    else:
        stop = asyncio.Event()

        def checked(account: Any) -> None:
            if sum(provider.seen.values()) == 80:
                asyncio.get_running_loop().call_later(0.2, stop.set)

        running = accounts.work(stop=stop, batch=40, concurrency=3, idle=0.05, on_result=checked)
    run = await asyncio.wait_for(running, timeout=60)
    assert run.total == 80
    assert sorted(provider.seen.values()) == [1] * 80
    assert spans
    assert _during(provider.times, spans) >= 3


async def test_store_calls_run_in_order_and_each_verdict_is_reported_once_recorded(
    make: Any, provider: Provider, monkeypatch: pytest.MonkeyPatch, db: Path
) -> None:
    # Records of random length: were two store calls ever run at once, or their outcomes
    # handled out of turn, a later write would overtake an earlier one.
    import random
    import sqlite3

    from hub_core import accounts as accounts_module

    monkeypatch.setattr(accounts_module, "BATCH_SIZE", 3)
    monkeypatch.setattr(Store, "waits_on_server", True)
    accounts = make()
    fill(accounts.store, 48)
    provider.delay = 0.005
    order: list[tuple[str, Any]] = []
    running = threading.Lock()
    lease, record_many = Store.lease, Store.record_many

    def leased(self: Store, *args: Any, **kwargs: Any) -> Any:
        assert running.acquire(blocking=False), "two store calls at once"
        try:
            got = lease(self, *args, **kwargs)
            order.append(("lease", {item.account.id for item in got.accounts}))
            return got
        finally:
            running.release()

    def recorded(self: Store, results: Any, **kwargs: Any) -> Any:
        assert running.acquire(blocking=False), "two store calls at once"
        try:
            results = list(results)
            time.sleep(random.uniform(0, 0.03))
            outcomes = record_many(self, results, **kwargs)
            order.append(("record", [account_id for account_id, _ in results]))
            return outcomes
        finally:
            running.release()

    monkeypatch.setattr(Store, "lease", leased)
    monkeypatch.setattr(Store, "record_many", recorded)
    told: list[str] = []

    def on_result(account: Any) -> None:
        # Recorded before it is told: the test's own connection already sees the verdict.
        with contextlib.closing(sqlite3.connect(db)) as conn:
            [(checked_at,)] = conn.execute(
                "SELECT checked_at FROM accounts WHERE id = ?", (account.id,)
            ).fetchall()
        assert checked_at is not None
        assert checked_at > NOW.isoformat()
        told.append(account.id)

    run = await asyncio.wait_for(
        accounts.check_all(batch=8, concurrency=4, on_result=on_result), timeout=60
    )
    assert run.total == 48
    written = [i for kind, ids in order if kind == "record" for i in ids]
    assert told == written  # told in the order written, each once
    assert sorted(written) == sorted(a.id for a in accounts.store.accounts())
    # Each verdict is written after its lease and before the lease after the next one: a
    # lease is fetched ahead only once the one before it has every verdict written.
    leases = [ids for kind, ids in order if kind == "lease"]
    seen_leases = 0
    for kind, ids in order:
        if kind == "lease":
            seen_leases += 1
            continue
        for account_id in ids:
            mine = next(n for n, held in enumerate(leases) if account_id in held)
            assert mine < seen_leases <= mine + 2


@pytest.mark.parametrize("server", [False, True], ids=["in-process", "server"])
@pytest.mark.parametrize("how", ["check_all", "work"])
async def test_a_run_calls_its_store_from_a_thread_only_when_the_store_waits_on_a_server(
    make: Any, provider: Provider, monkeypatch: pytest.MonkeyPatch, how: str, server: bool
) -> None:
    # SQLite's calls are this process's own work: another thread would only add GIL
    # hand-offs. A server's calls are mostly waiting, which the loop should not do.
    monkeypatch.setattr(Store, "waits_on_server", server)
    threads: set[int] = set()
    lease, record_many = Store.lease, Store.record_many

    def leased(self: Store, *args: Any, **kwargs: Any) -> Any:
        threads.add(threading.get_ident())
        return lease(self, *args, **kwargs)

    def recorded(self: Store, *args: Any, **kwargs: Any) -> Any:
        threads.add(threading.get_ident())
        return record_many(self, *args, **kwargs)

    monkeypatch.setattr(Store, "lease", leased)
    monkeypatch.setattr(Store, "record_many", recorded)
    accounts = make()
    fill(accounts.store, 12)
    if how == "check_all":
        run = await asyncio.wait_for(accounts.check_all(batch=5, concurrency=2), timeout=30)
    else:
        stop = asyncio.Event()

        def checked(account: Any) -> None:
            if sum(provider.seen.values()) == 12:
                stop.set()

        run = await asyncio.wait_for(
            accounts.work(stop=stop, batch=5, concurrency=2, idle=0.05, on_result=checked),
            timeout=30,
        )
    assert run.total == 12
    assert threads
    loop_thread = threading.get_ident()
    assert (loop_thread not in threads) if server else (threads == {loop_thread})
