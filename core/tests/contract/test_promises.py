"""More of the protocol's promises, held on every backend: damaged rows, keyset listing, runs,
leases under contention, owners, link attempts, the outbox and key rotation."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet

from hub_core.errors import AccountNotFound, InvalidCredentials, RateLimited
from hub_core.model import Status, Verified
from hub_core.store_protocol import AccountStore
from hub_core.store_types import LINK_ATTEMPTS

from .conftest import Backend
from .test_accounts import link
from .test_leases import NOW, fill


def test_a_damaged_row_is_listed_damaged_and_hides_no_other(
    backend: Backend, store: AccountStore
) -> None:
    broken, fine = link(store, "org:1"), link(store, "org:2")
    backend.damage(broken, "config", "not json")
    listed = {a.id: a for a in store.accounts()}
    assert listed[broken].status is Status.DAMAGED
    assert f"hub unlink {broken}" in (listed[broken].last_error or "")
    assert listed[fine].status is Status.ACTIVE
    assert [a.id for a in store.accounts(status="damaged")] == [broken]
    [held] = [i for i in store.lease(10, now=NOW).accounts if i.account.id == broken]
    assert held.values is None
    store.delete(broken)  # a damaged account can still be unlinked


def test_an_unreadable_key_is_a_store_error_not_a_crash(
    backend: Backend, store: AccountStore
) -> None:
    account_id = link(store, "org:1")
    backend.damage(account_id, "secrets", b"garbage")
    with pytest.raises(Exception, match="cannot be read") as caught:
        store.credentials(account_id)
    assert "garbage" not in str(caught.value)
    [held] = store.lease(1, now=NOW).accounts
    assert held.error is not None
    assert held.values is None


def test_keyset_listing_pages_without_repeats_or_gaps(store: AccountStore) -> None:
    ids = {link(store, f"org:{n:02}", provider=("acme", "beta")[n % 2]) for n in range(23)}
    assert {a.id for a in store.iter_accounts(batch=4)} == ids
    seen, after = [], None
    while True:
        page = store.page_after(after, limit=5)
        seen += [a.id for a in page.accounts]
        if page.after is None:
            break
        after = page.after
    assert seen == [a.id for a in store.accounts()]
    beta = [a.id for a in store.iter_accounts(provider="beta", batch=3)]
    assert beta == [a.id for a in store.accounts() if a.provider_id == "beta"]
    assert len(beta) == 11
    with pytest.raises(ValueError, match="unknown status"):
        store.iter_accounts(status="nope")


def test_owners_scope_listing_get_and_links(store: AccountStore) -> None:
    mine = link(store, "org:1", owner="tenant-a", owner_name="Tenant A")
    theirs = link(store, "org:1", owner="tenant-b")
    assert [a.id for a in store.accounts(owner="tenant-a")] == [mine]
    assert store.page(owner="tenant-b").total == 1
    assert store.get(mine, owner="tenant-a").owner_name == "Tenant A"
    with pytest.raises(AccountNotFound):
        store.get(theirs, owner="tenant-a")
    relink = store.create_link(None, account_id=mine)
    assert (relink.owner, relink.provider_id) == ("tenant-a", "acme")
    with pytest.raises(AccountNotFound):
        store.create_link("acme", account_id=theirs, owner="tenant-a")


def test_a_link_locks_after_its_failed_attempts(store: AccountStore) -> None:
    made = store.create_link("acme")
    for _ in range(LINK_ATTEMPTS - 1):
        assert store.link_failed(made.id).state() == "open"
    assert store.link_failed(made.id).state() == "locked"
    assert [lk.id for lk in store.links()] == [made.id]  # locked links are still listed
    store.revoke_link(made.id)
    assert store.links() == []
    assert [lk.id for lk in store.links(include_closed=True)] == [made.id]


def test_runs_share_one_start_and_are_forgotten_unless_kept(store: AccountStore) -> None:
    first, started = store.join_run(now=NOW, alive_for=timedelta(seconds=30))
    second, joined = store.join_run(now=NOW + timedelta(seconds=5))
    assert joined == started == NOW
    store.end_run(second)
    store.keep_run(first, now=NOW + timedelta(seconds=20), alive_for=timedelta(seconds=30))
    _, still = store.join_run(now=NOW + timedelta(seconds=45))
    assert still == NOW
    store.end_run(first)
    store.end_run("unknown")  # harmless
    _, later = store.join_run(now=NOW + timedelta(hours=1))
    assert later == NOW + timedelta(hours=1)


def test_the_next_due_account_waits_for_its_lease_and_its_retry_after(
    store: AccountStore,
) -> None:
    ids = fill(store, 2)
    first = store.next_due()
    assert first is not None
    assert first <= NOW
    lease = store.lease(2, now=NOW, lease_for=timedelta(seconds=60))
    assert store.next_due() == lease.until  # held: a worker can lease them once it ends
    store.record_many(
        [(ids[0], RateLimited("slow down", retry_after=30))], lease=lease.token, now=NOW
    )
    due = store.next_due()  # the first: after its Retry-After (jittered up to a quarter more)
    assert due is not None
    assert NOW + timedelta(seconds=30) <= due <= NOW + timedelta(seconds=37.5)


def test_due_counts_and_leases_held_by_others(store: AccountStore) -> None:
    assert store.next_due() is None
    ids = fill(store, 4)
    assert store.due_count() == 4
    assert store.due_count(checked_before=NOW - timedelta(days=3)) == 0
    start = NOW - timedelta(hours=1)
    assert store.due_count(checked_before=start) == 4
    due = store.next_due()
    assert due is not None
    assert due <= NOW
    theirs = store.lease(2, checked_before=start, now=NOW, lease_for=timedelta(seconds=60))
    mine = store.lease(2, checked_before=start, now=NOW, lease_for=timedelta(seconds=90))
    assert store.held_elsewhere([mine.token], checked_before=start, now=NOW) == theirs.until
    assert store.held_elsewhere([mine.token, theirs.token], checked_before=start, now=NOW) is None
    ok = [(i.account.id, Verified(identity=i.account.identity, label="x")) for i in mine.accounts]
    store.record_many(ok, lease=mine.token, now=NOW + timedelta(seconds=1))
    assert store.due_count(checked_before=start) == 2
    assert len(ids) == 4


def test_concurrent_checkers_lease_each_account_once(backend: Backend) -> None:
    with backend.open() as first:
        fill(first, 60)
    leased: list[str] = []
    barrier = threading.Barrier(4)

    def checker() -> None:
        with backend.open() as own:
            barrier.wait()
            for _ in range(60):  # bounded: a store that leases twice must fail, not hang
                batch = own.lease(7, now=NOW).accounts
                if not batch:
                    return
                leased.extend(item.account.id for item in batch)

    threads = [threading.Thread(target=checker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(leased) == len(set(leased)) == 60


def test_a_refused_verdict_still_ends_its_lease(store: AccountStore) -> None:
    [account_id] = fill(store, 1)
    lease = store.lease(1, now=NOW)
    [refused] = store.record_many(
        [(account_id, Verified(identity="org:other", label="?"))], lease=lease.token, now=NOW
    )
    assert isinstance(refused, Exception)
    assert store.release(lease.token) == 0  # already ended
    [error] = store.record_many([(account_id, InvalidCredentials("x"))], lease=lease.token, now=NOW)
    assert isinstance(error, Exception)


def test_the_outbox_leases_to_one_sender_at_a_time(store: AccountStore) -> None:
    store.outbox_add([("e1", "t", '{"a": 1}')], now=10.0)
    [claimed] = store.outbox_claim(now=10.0, limit=5, lease=30.0)
    assert (claimed.body, claimed.attempts) == ('{"a": 1}', 0)
    assert store.outbox_next_due() == 40.0  # its lease's end
    [again] = store.outbox_claim(now=41.0, limit=5, lease=30.0)  # the sender died: retaken
    store.outbox_settle(retry=[(again.seq, 100.0, "HTTP 503")], now=41.0)
    [pending] = store.outbox_entries()
    assert (pending.attempts, pending.last_error, pending.next_attempt_at) == (1, "HTTP 503", 100.0)
    assert store.outbox_claim(now=99.0, limit=5, lease=30.0) == []
    with pytest.raises(KeyError):
        store.outbox_entries(state="nope")


@pytest.mark.parametrize("late", ["retry", "failed"])
def test_a_late_sender_never_unsettles_a_delivered_event(store: AccountStore, late: str) -> None:
    # A sender slower than its lease: another took the row and delivered it first. Its own
    # failure, settled after, must not make the delivered event pending or failed again.
    store.outbox_add([("e1", "t", '{"a": 1}')], now=10.0)
    [slow] = store.outbox_claim(now=10.0, limit=5, lease=30.0)
    [fast] = store.outbox_claim(now=41.0, limit=5, lease=30.0)
    store.outbox_settle(delivered=[fast.seq], now=42.0)
    if late == "retry":
        store.outbox_settle(retry=[(slow.seq, 100.0, "timed out")], now=43.0)
    else:
        store.outbox_settle(failed=[(slow.seq, "timed out")], now=43.0)
    assert store.outbox_entries() == []
    assert store.outbox_entries(state="failed") == []
    [delivered] = store.outbox_entries(state="delivered")
    assert (delivered.attempts, delivered.last_error) == (1, None)
    assert store.outbox_next_due() is None


def test_rotation_moves_every_account_to_the_first_key(backend: Backend) -> None:
    from hub_core.keyring import KeyRing

    old = backend.key
    with backend.open() as store:
        ids = [link(store, f"org:{n}", f"key-{n}") for n in range(7)]
    new = Fernet.generate_key().decode()
    backend.key = f"{new},{old}"
    with backend.open() as store:
        status = store.key_status()
        assert [(k.accounts, k.position) for k in status.keys] == [(0, 1), (7, 2)]
        done: list[tuple[int, int]] = []
        report = store.rotate_keys(batch_size=3, progress=lambda n, total: done.append((n, total)))
        assert (report.rotated, report.unreadable) == (7, [])
        assert done[-1] == (7, 7)
        assert store.rotate_keys().rotated == 0
    backend.key = new
    with backend.open() as store:
        assert [store.credentials(i)["api_key"] for i in ids] == [f"key-{n}" for n in range(7)]
        assert store.key_status().to_rotate == 0
    assert KeyRing(new, source="x").primary_id == status.encrypts


def test_a_rotation_keeps_the_version_a_check_in_flight_holds(backend: Backend) -> None:
    from hub_core.errors import InvalidCredentials
    from hub_core.store_types import KeyReplaced

    old = backend.key
    with backend.open() as store:
        kept, relinked = link(store, "org:kept", "key-kept"), link(store, "org:new", "key-new")
    backend.key = f"{Fernet.generate_key().decode()},{old}"
    with backend.open() as store:
        lease = store.lease(10)
        versions = {item.account.id: item.version for item in lease.accounts}
        assert versions[kept] == store.checkout(kept)[1]
        with backend.open() as rotating:  # `hub keys rotate` on another host, meanwhile
            assert rotating.rotate_keys().rotated == 2
            link(rotating, "org:new", "key-newer")  # and a relink of the other account
        assert store.checkout(kept)[1] == versions[kept]
        outcomes = store.record_many(
            [(kept, InvalidCredentials("revoked")), (relinked, InvalidCredentials("revoked"))],
            versions=versions,
            lease=lease.token,
        )
        assert [type(outcome).__name__ for outcome in outcomes] == ["Account", "KeyReplaced"]
        assert isinstance(outcomes[1], KeyReplaced)
        assert store.get(kept).status.value == "invalid"
        assert store.get(relinked).status.value == "active"
