"""The contract of every store's accounts: save, get, list, read back, record, delete, keys."""

from __future__ import annotations

import pytest

from hub_core.errors import (
    AccountNotFound,
    AmbiguousAccount,
    FieldError,
    HubError,
    IdentityMismatch,
    InvalidCredentials,
    PermissionDenied,
    ProviderUnavailable,
    StoreError,
)
from hub_core.model import Credentials, Status, Verified
from hub_core.store_protocol import AccountStore
from hub_core.store_types import KeyReplaced

from .test_leases import NOW


def link(
    store: AccountStore, identity: str, key: str = "k", provider: str = "acme", **options: object
) -> str:
    creds = Credentials({"api_key": key, "region": "us"}, secret=["api_key"])
    label = f"Org {identity}"
    saved = store.save(provider, Verified(identity=identity, label=label), creds, **options)  # type: ignore[arg-type]
    return saved.id


def test_saving_an_identity_again_updates_it_per_owner(store: AccountStore) -> None:
    first = link(store, "org:1", "old")
    assert link(store, "org:1", "new") == first
    assert store.credentials(first) == {"api_key": "new", "region": "us"}
    theirs = link(store, "org:1", "other", owner="tenant-b")
    assert theirs != first
    assert {a.id: a.owner for a in store.accounts()} == {first: None, theirs: "tenant-b"}
    with pytest.raises(AccountNotFound):
        store.get(first, owner="tenant-b")
    other_place = Credentials({"api_key": "x", "region": "eu"}, secret=["api_key"])
    with pytest.raises(IdentityMismatch):
        store.save("acme", Verified(identity="org:1", label="Org"), other_place)
    assert store.credentials(first)["api_key"] == "new"


def test_get_finds_an_id_or_a_unique_prefix(store: AccountStore) -> None:
    ids = [link(store, f"org:{n}") for n in range(20)]
    for account_id in ids:
        assert store.get(account_id).id == account_id
        assert store.get(account_id[:12].upper()).id == account_id
    # 20 ids over 16 first characters: two share one (pigeonhole), so it is ambiguous.
    shared = next(c for c in "0123456789abcdef" if sum(i.startswith(c) for i in ids) > 1)
    with pytest.raises(AmbiguousAccount):
        store.get(shared)
    with pytest.raises(AccountNotFound):
        store.get("zz")


def test_listing_is_ordered_by_provider_and_label_and_filters(store: AccountStore) -> None:
    link(store, "org:b", provider="beta")
    link(store, "org:2")
    link(store, "org:1", owner="tenant-a")
    listed = store.accounts()
    assert [(a.provider_id, a.label) for a in listed] == [
        ("acme", "Org org:1"),
        ("acme", "Org org:2"),
        ("beta", "Org org:b"),
    ]
    assert [a.identity for a in store.accounts(provider="beta")] == ["org:b"]
    assert [a.identity for a in store.accounts(owner="tenant-a")] == ["org:1"]
    page = store.page(limit=2)
    assert [a.id for a in page.accounts] == [a.id for a in listed[:2]]
    assert (page.total, page.has_next) == (3, True)
    with pytest.raises(ValueError, match="unknown status"):
        store.accounts(status="nope")


def test_a_listing_reads_one_snapshot_while_another_checker_relabels(
    store: AccountStore,
) -> None:
    ids = [link(store, f"org:{n}") for n in range(6)]
    listed = store.accounts()
    first, last = listed[0], listed[-1]
    listing = store.iter_accounts(batch=2)
    seen = [next(listing).id, next(listing).id]
    other = store.connect_again()  # another process's `hub check`, between two batches
    try:  # the provider renamed them: one moves to the end of the order, one to its start
        other.record(first.id, Verified(identity=first.identity, label="Zeta (renamed)"))
        other.record(last.id, Verified(identity=last.identity, label="Alpha (renamed)"))
    finally:
        other.close()
    seen += [account.id for account in listing]
    assert sorted(seen) == sorted(ids)  # each listed once, as it was when the listing began
    assert seen == [account.id for account in listed]
    assert store.accounts()[0].label == "Alpha (renamed)"


def test_checkout_versions_the_key_and_a_relink_drops_the_old_verdict(
    store: AccountStore,
) -> None:
    account_id = link(store, "org:1", "old")
    values, version = store.checkout(account_id)
    assert values["api_key"] == "old"
    link(store, "org:1", "new")
    with pytest.raises(KeyReplaced):
        store.record(account_id, InvalidCredentials("revoked"), version=version)
    assert store.get(account_id).status is Status.ACTIVE
    [result] = store.record_many(
        [(account_id, InvalidCredentials("x"))], versions={account_id: version}
    )
    assert isinstance(result, KeyReplaced)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (InvalidCredentials("revoked"), Status.INVALID),
        (FieldError("tenant", "bad tenant"), Status.INVALID),
        (PermissionDenied("no scope"), Status.DENIED),
        (ProviderUnavailable("down"), Status.ERROR),
        (StoreError("unreadable"), Status.DAMAGED),
    ],
)
def test_record_sets_the_verdict_of_each_error(
    store: AccountStore, error: HubError, status: Status
) -> None:
    account_id = link(store, "org:1", "the-key")
    recorded = store.record(account_id, error, now=NOW)
    assert recorded.status is status
    assert recorded.checked_at == NOW
    assert recorded.last_error == str(error)
    again = store.record(account_id, Verified(identity="org:1", label="Back"))
    assert (again.status, again.label, again.last_error) == (Status.ACTIVE, "Back", None)


def test_record_refuses_another_identity_and_a_missing_account(store: AccountStore) -> None:
    account_id = link(store, "org:1")
    with pytest.raises(StoreError, match="reaches"):
        store.record(account_id, Verified(identity="org:2", label="Two"))
    assert store.get(account_id).label == "Org org:1"
    store.delete(account_id)
    with pytest.raises(AccountNotFound):
        store.delete(account_id)
    with pytest.raises(AccountNotFound):
        store.record(account_id, InvalidCredentials("x"))
    [gone] = store.record_many([(account_id, InvalidCredentials("x"))])
    assert isinstance(gone, AccountNotFound)
    with pytest.raises(AccountNotFound):
        store.credentials(account_id)


def test_key_status_counts_accounts_on_the_first_key(store: AccountStore) -> None:
    link(store, "org:1")
    link(store, "org:2")
    status = store.key_status()
    assert [(k.id, k.accounts) for k in status.keys] == [(status.encrypts, 2)]
    assert status.to_rotate == 0
    assert store.rotate_keys().rotated == 0


def test_the_outbox_claims_settles_and_counts(store: AccountStore) -> None:
    assert store.outbox_add([("e1", "t", "{}"), ("e2", "t", "{}"), ("e1", "t", "{}")], now=1.0) == 2
    claimed = store.outbox_claim(now=1.0, limit=10, lease=30.0)
    assert [e.event_id for e in claimed] == ["e1", "e2"]
    assert store.outbox_claim(now=2.0, limit=10, lease=30.0) == []  # leased
    store.outbox_settle(delivered=[claimed[0].seq], failed=[(claimed[1].seq, "HTTP 500")], now=3.0)
    assert store.outbox_counts() == {"pending": 0, "failed": 1, "delivered": 1}
    assert store.outbox_retry_failed(now=4.0) == 1
    assert store.outbox_next_due() == 4.0
    assert store.outbox_prune(delivered_before=10.0) == 1
