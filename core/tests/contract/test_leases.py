"""The contract of every store's leases (SCALE.md §2): exclusive, expiring, fencing verdicts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hub_core.errors import AccountNotFound, InvalidCredentials, RateLimited
from hub_core.model import Credentials, Status, Verified
from hub_core.store_protocol import AccountStore
from hub_core.store_types import LeaseLost

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def fill(store: AccountStore, n: int) -> list[str]:
    """*n* accounts with keys k0…k(n-1), linked (and last checked) long ago."""
    ids = []
    for i in range(n):
        account = store.save(
            "acme",
            Verified(identity=f"org:k{i}", label=f"Org k{i}"),
            Credentials({"api_key": f"k{i}"}, secret=["api_key"]),
            now=NOW - timedelta(days=2),
        )
        ids.append(account.id)
    return ids


def test_a_lease_holds_its_accounts_until_it_expires(store: AccountStore) -> None:
    ids = fill(store, 5)
    first = store.lease(3, now=NOW, lease_for=timedelta(seconds=60))
    assert len(first.accounts) == 3
    assert all(item.values is not None for item in first.accounts)
    second = store.lease(10, now=NOW, lease_for=timedelta(seconds=60))
    assert {i.account.id for i in first.accounts} | {i.account.id for i in second.accounts} == set(
        ids
    )
    assert not {i.account.id for i in first.accounts} & {i.account.id for i in second.accounts}
    assert store.lease(10, now=NOW + timedelta(seconds=59)).accounts == []
    # Expired: whoever asks next has them (the first checker was killed, say).
    taken = store.lease(10, now=NOW + timedelta(seconds=61))
    assert len(taken.accounts) == 5
    assert "token" not in repr(taken)
    assert taken.token not in repr(taken)


def test_a_verdict_is_recorded_only_under_the_lease_that_holds_it(store: AccountStore) -> None:
    [account_id] = fill(store, 1)
    old = store.lease(1, now=NOW, lease_for=timedelta(seconds=10))
    new = store.lease(1, now=NOW + timedelta(seconds=11))
    ok = Verified(identity="org:k0", label="Org k0")
    [late] = store.record_many([(account_id, ok)], lease=old.token, now=NOW + timedelta(seconds=12))
    assert isinstance(late, LeaseLost)
    assert store.get(account_id).checked_at == NOW - timedelta(days=2)  # the late write: nothing
    [kept] = store.record_many([(account_id, ok)], lease=new.token, now=NOW + timedelta(seconds=13))
    assert not isinstance(kept, Exception)
    assert kept.checked_at == NOW + timedelta(seconds=13)
    # Recorded: the lease is gone and the account is due again in a day.
    assert store.lease(1, now=NOW + timedelta(seconds=14)).accounts == []
    assert len(store.lease(1, now=NOW + timedelta(days=1, seconds=14)).accounts) == 1


def test_a_rate_limited_account_keeps_its_verdict_and_waits(store: AccountStore) -> None:
    [account_id] = fill(store, 1)
    store.record(account_id, InvalidCredentials("revoked"), now=NOW - timedelta(days=1))
    lease = store.lease(1, now=NOW)
    limited = RateLimited("slow down", retry_after=30)
    [same] = store.record_many([(account_id, limited)], lease=lease.token, now=NOW)
    assert not isinstance(same, Exception)
    assert same.status is Status.INVALID
    assert same.last_error == "revoked"
    assert same.checked_at == NOW - timedelta(days=1)
    # Not before its Retry-After (30 s, jittered up to 37.5 s), for a run or a worker.
    start = NOW - timedelta(hours=1)
    assert store.lease(1, now=NOW + timedelta(seconds=29), checked_before=start).accounts == []
    assert store.lease(1, now=NOW + timedelta(seconds=29)).accounts == []
    assert len(store.lease(1, now=NOW + timedelta(seconds=38)).accounts) == 1


def test_release_gives_accounts_back_at_once(store: AccountStore) -> None:
    ids = fill(store, 3)
    lease = store.lease(3, now=NOW)
    assert store.release(lease.token, [ids[0]]) == 1
    assert [i.account.id for i in store.lease(3, now=NOW).accounts] == [ids[0]]
    assert store.release(lease.token) == 2
    assert store.release(lease.token) == 0


def test_a_batch_of_verdicts_records_each_as_it_would_alone(store: AccountStore) -> None:
    """A lease's verdicts written together: each outcome is the one it would have alone, and
    one that cannot be stored, is refused or is a 429 costs the others nothing."""
    ids = fill(store, 8)
    lease = store.lease(8, now=NOW)
    assert len(lease.accounts) == 8
    versions = {i.account.id: i.version for i in lease.accounts if i.version is not None}
    passed, failed, moved, limited, relinked, gone, unstorable, beside = ids
    store.delete(gone)
    versions[relinked] = "not-its-version"
    later = NOW + timedelta(seconds=5)
    outcomes = store.record_many(
        [
            (passed, Verified(identity="org:k0", label="Renamed")),
            (failed, InvalidCredentials("the key was revoked")),
            (moved, Verified(identity="org:elsewhere", label="?")),
            (limited, RateLimited("slow down", retry_after=60)),
            (relinked, Verified(identity="org:k4", label="Org k4")),
            (gone, Verified(identity="org:k5", label="Org k5")),
        ],
        lease=lease.token,
        versions=versions,
        now=later,
    )
    ok, bad, *refused = outcomes
    assert not isinstance(ok, Exception)
    assert (ok.label, ok.status, ok.checked_at) == ("Renamed", Status.ACTIVE, later)
    assert not isinstance(bad, Exception)
    assert (bad.label, bad.status, bad.checked_at) == ("Org k1", Status.INVALID, later)
    assert "revoked" in (bad.last_error or "")
    assert store.get(passed) == ok
    assert store.get(failed) == bad
    assert isinstance(refused[0], Exception)  # another identity
    assert not isinstance(refused[1], Exception)  # the 429: rescheduled, verdict as it was
    assert refused[1].checked_at == NOW - timedelta(days=2)
    assert isinstance(refused[2], Exception)  # another key meanwhile
    assert isinstance(refused[3], AccountNotFound)
    for account_id in (moved, limited, relinked):
        assert store.get(account_id).checked_at == NOW - timedelta(days=2)
    # A label the database refuses: that account still gets a verdict, saying so, and the
    # verdict written with it is kept.
    odd, fine = store.record_many(
        [
            (unstorable, Verified(identity="org:k6", label="bad \ud800 label")),
            (beside, Verified(identity="org:k7", label="Fine")),
        ],
        lease=lease.token,
        now=later,
    )
    assert not isinstance(odd, Exception)
    assert (odd.label, odd.checked_at) == ("Org k6", later)
    assert odd.status is not Status.ACTIVE
    assert not isinstance(fine, Exception)
    assert (fine.label, fine.status) == ("Fine", Status.ACTIVE)
    # Every lease ended: nothing is leased again before the 429's retry (60 s, jittered up to
    # a quarter more), then only that one.
    assert store.lease(10, now=later + timedelta(seconds=59)).accounts == []
    [retried] = store.lease(10, now=later + timedelta(seconds=76)).accounts
    assert retried.account.id == limited
