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


def test_a_renewed_lease_holds_its_accounts_for_another_term(store: AccountStore) -> None:
    ids = fill(store, 3)
    minute = timedelta(seconds=60)
    first = store.lease(2, now=NOW, lease_for=minute)
    other = store.lease(1, now=NOW, lease_for=minute)
    assert store.renew([first.token], lease_for=minute, now=NOW + timedelta(seconds=50)) == 2
    # Past the first term, only the lease that was not renewed is free.
    [taken] = store.lease(10, now=NOW + timedelta(seconds=70)).accounts
    assert taken.account.id == other.accounts[0].account.id
    assert store.lease(10, now=NOW + timedelta(seconds=109)).accounts == []
    later = store.lease(10, now=NOW + timedelta(seconds=111))
    assert {item.account.id for item in later.accounts} == set(ids) - {taken.account.id}
    # Renewing a lease another checker took since changes nothing of theirs.
    assert store.renew([first.token], lease_for=minute, now=NOW + timedelta(seconds=112)) == 0
    assert store.renew([], lease_for=minute) == 0
    account = later.accounts[0].account
    account_id, ok = account.id, Verified(identity=account.identity, label=account.label)
    [kept] = store.record_many(
        [(account_id, ok)], lease=later.token, now=NOW + timedelta(minutes=2)
    )
    assert not isinstance(kept, Exception)


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


def test_released_accounts_wait_for_next_check_in_when_given(store: AccountStore) -> None:
    ids = fill(store, 3)
    lease = store.lease(3, now=NOW)
    hour = timedelta(hours=1)
    assert store.release(lease.token, [ids[0]], next_check_in=hour, now=NOW) == 1
    assert store.release(lease.token, next_check_in=hour, now=NOW) == 2
    assert store.lease(3, now=NOW + timedelta(seconds=1)).accounts == []
    assert len(store.lease(3, now=NOW + hour + timedelta(seconds=1)).accounts) == 3


def test_one_leased_batch_records_each_outcome_and_ends_each_lease(store: AccountStore) -> None:
    # One record_many under a lease, as `hub check --all` writes 250 verdicts at once: every
    # kind of outcome side by side, each recorded as if it were alone.
    ids = fill(store, 9)
    store.record(ids[3], InvalidCredentials("revoked"), now=NOW - timedelta(days=1))
    lease = store.lease(9, now=NOW, lease_for=timedelta(seconds=60))
    versions = {item.account.id: item.version for item in lease.accounts if item.version}
    assert len(lease.accounts) == 9
    assert len(versions) == 9
    store.save(  # relinked while its check ran: the verdict is about the old key
        "acme",
        Verified(identity="org:k4", label="Org k4"),
        Credentials({"api_key": "k4-new"}, secret=["api_key"]),
        account_id=ids[4],
        now=NOW,
    )
    store.delete(ids[5])  # unlinked while its check ran
    later = NOW + timedelta(seconds=5)
    outcomes = store.record_many(
        [
            (ids[0], Verified(identity="org:k0", label="Org k0")),
            (ids[1], Verified(identity="org:k1", label="Org k1, renamed")),
            (ids[2], InvalidCredentials("revoked at the provider")),
            (ids[3], RateLimited("slow down", retry_after=30)),
            (ids[4], InvalidCredentials("old key revoked")),
            (ids[5], Verified(identity="org:k5", label="Org k5")),
            (ids[6], Verified(identity="org:other", label="Someone else")),
            (ids[7], Verified(identity="org:k7", label="Org \ud800 k7")),  # not storable
            (ids[8], InvalidCredentials("revoked \udfff too")),  # not storable
        ],
        versions=versions,
        lease=lease.token,
        now=later,
    )
    kinds = [type(outcome).__name__ for outcome in outcomes]
    assert (
        kinds
        == ["Account"] * 4 + ["KeyReplaced", "AccountNotFound", "StoreError"] + ["Account"] * 2
    )
    by_id = {account.id: account for account in store.accounts()}
    assert outcomes[0] == by_id[ids[0]]
    assert by_id[ids[0]].checked_at == later
    assert by_id[ids[0]].status is Status.ACTIVE
    assert outcomes[1] == by_id[ids[1]]
    assert by_id[ids[1]].label == "Org k1, renamed"
    assert outcomes[2] == by_id[ids[2]]
    assert by_id[ids[2]].status is Status.INVALID
    # The 429 changed no verdict; the relinked and the refused ones kept theirs.
    assert by_id[ids[3]].status is Status.INVALID
    assert by_id[ids[3]].checked_at == NOW - timedelta(days=1)
    assert by_id[ids[4]].status is Status.ACTIVE
    assert by_id[ids[6]].identity == "org:k6"
    assert by_id[ids[6]].checked_at == NOW - timedelta(days=2)
    for n in (7, 8):  # recorded as not storable, never lost
        assert by_id[ids[n]].status is Status.ERROR
        assert "could not be stored" in (by_id[ids[n]].last_error or "")
        assert outcomes[n] == by_id[ids[n]]
    assert ids[5] not in by_id
    # Every lease ended, the refused verdicts' too (nothing is held, on any account), and the
    # refused one is free at once for a run; the 429 one is due after its Retry-After (30 s,
    # up to 37.5 s jittered), the others a day after their verdict.
    assert store.held_elsewhere([], checked_before=later + timedelta(seconds=1), now=later) is None
    again = store.record_many(
        [(ids[n], InvalidCredentials("late")) for n in (0, 2, 7)], lease=lease.token, now=later
    )
    assert [type(outcome) for outcome in again] == [LeaseLost] * 3
    run = NOW - timedelta(hours=1)
    free = store.lease(20, now=later + timedelta(seconds=1), checked_before=run)
    assert {item.account.id for item in free.accounts} == {ids[6]}
    store.release(free.token)
    assert store.lease(20, now=later + timedelta(seconds=29)).accounts == []
    returned = store.lease(20, now=later + timedelta(seconds=39))
    assert {item.account.id for item in returned.accounts} == {ids[3]}


def test_a_batch_with_nothing_unstorable_records_each_outcome(store: AccountStore) -> None:
    """The batch every run writes: no value the database refuses, so it is written as one
    (one UPDATE on PostgreSQL); each outcome is still the one it would have alone."""
    ids = fill(store, 6)
    lease = store.lease(6, now=NOW)
    assert len(lease.accounts) == 6
    versions = {i.account.id: i.version for i in lease.accounts if i.version is not None}
    passed, failed, moved, limited, relinked, gone = ids
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
