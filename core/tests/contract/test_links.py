"""The contract of every store's one-time auth links: lifetime, states, single use."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from hub_core import LinkUsed
from hub_core.errors import AccountNotFound, StoreError
from hub_core.model import Credentials, Verified
from hub_core.store_protocol import AccountStore
from hub_core.store_types import LINK_ATTEMPTS

from .conftest import Backend

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

pytestmark = pytest.mark.usefixtures("hermetic_store_env")


def creds(api_key: str = "key-one") -> Credentials:
    return Credentials({"api_key": api_key, "region": "us"}, secret=["api_key"])


def verified(identity: str = "org:1", label: str = "One") -> Verified:
    return Verified(identity=identity, label=label)


def test_a_new_link_is_open_for_seven_days_by_default(store: AccountStore) -> None:
    link = store.create_link("acme", note="Dana at Example", now=NOW)
    assert link.expires_at == NOW + timedelta(days=7)
    assert link.state(NOW) == "open"
    assert store.link(link.id) == link
    assert [found.id for found in store.links(now=NOW)] == [link.id]
    assert link.state(NOW + timedelta(days=7)) == "expired"


@pytest.mark.parametrize("expires_in", [timedelta(days=30, seconds=1), timedelta(0)])
def test_a_link_lives_at_most_thirty_days(store: AccountStore, expires_in: timedelta) -> None:
    with pytest.raises(ValueError, match="link"):
        store.create_link("acme", expires_in=expires_in)
    assert store.links(include_closed=True) == []
    assert store.create_link("acme", expires_in=timedelta(days=30)).state() == "open"


def test_saving_through_a_link_uses_it_once(store: AccountStore) -> None:
    link = store.create_link("acme", now=NOW)
    account = store.save("acme", verified(), creds(), link_id=link.id, now=NOW)
    used = store.link(link.id)
    assert used.state() == "used"
    assert used.used_account_id == account.id
    assert used.used_at == NOW
    with pytest.raises(LinkUsed) as caught:
        store.save("acme", verified("org:2", "Two"), creds("key-two"), link_id=link.id)
    assert caught.value.reason == "used"
    assert caught.value.code == "link_used"
    assert [a.id for a in store.accounts()] == [account.id]  # nothing more stored
    assert store.links(now=NOW) == []
    assert [found.id for found in store.links(include_closed=True)] == [link.id]


@pytest.mark.parametrize("reason", ["revoked", "expired", "locked", "unknown", "scope"])
def test_a_link_that_cannot_be_used_stores_nothing(store: AccountStore, reason: str) -> None:
    link = store.create_link("acme", expires_in=timedelta(hours=1), now=NOW)
    link_id, provider, when = link.id, "acme", NOW + timedelta(minutes=1)
    if reason == "revoked":
        assert store.revoke_link(link.id).state(NOW) == "revoked"
    elif reason == "expired":
        when = NOW + timedelta(hours=1)
    elif reason == "locked":
        for attempt in range(LINK_ATTEMPTS):
            assert store.link(link.id).state(when) == "open", attempt
            assert store.link_failed(link.id).failed_attempts == attempt + 1
        assert store.link(link.id).state(when) == "locked"
    elif reason == "unknown":
        link_id = "0" * 16
    else:
        provider = "beta"
    with pytest.raises(LinkUsed) as caught:
        store.save(provider, verified(), creds(), link_id=link_id, now=when)
    assert caught.value.reason == reason
    assert store.accounts() == []
    assert store.link(link.id).used_at is None


def test_a_relink_link_replaces_only_its_account(store: AccountStore) -> None:
    account = store.save("acme", verified(), creds(), now=NOW)
    link = store.create_link("acme", account_id=account.id[:4])
    assert link.account_id == account.id  # the prefix is resolved to the whole id
    with pytest.raises(LinkUsed, match="another provider or account"):
        store.save("acme", verified(), creds("new"), link_id=link.id)  # not a relink
    store.save("acme", verified(), creds("new"), account_id=account.id, link_id=link.id)
    assert store.credentials(account.id)["api_key"] == "new"
    assert store.link(link.id).used_account_id == account.id


def test_a_relink_link_needs_an_account_of_its_provider(store: AccountStore) -> None:
    account = store.save("acme", verified(), creds(), now=NOW)
    with pytest.raises(StoreError, match="not beta"):
        store.create_link("beta", account_id=account.id)
    with pytest.raises(AccountNotFound):
        store.create_link("acme", account_id="ffffffff")
    assert store.links(include_closed=True) == []


def test_revoking_a_used_link_leaves_it_used(store: AccountStore) -> None:
    link = store.create_link("acme")
    store.save("acme", verified(), creds(), link_id=link.id)
    assert store.revoke_link(link.id).state() == "used"
    with pytest.raises(LinkUsed, match="does not exist"):
        store.revoke_link("nope")


def test_two_racing_saves_on_one_link_give_one_account(backend: Backend) -> None:
    with backend.open() as first:
        link = first.create_link("acme")
    results: list[object] = []
    barrier = threading.Barrier(2)

    def save(identity: str) -> None:
        with backend.open() as own:
            barrier.wait()
            try:
                results.append(own.save("acme", verified(identity), creds(), link_id=link.id))
            except LinkUsed as exc:
                results.append(exc)

    threads = [threading.Thread(target=save, args=(f"org:{n}",)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    refused = [r for r in results if isinstance(r, LinkUsed)]
    assert len(refused) == 1
    assert refused[0].reason == "used"
    with backend.open() as after:
        assert len(after.accounts()) == 1


def test_derived_keys_are_shared_by_every_opener_and_differ_by_purpose(backend: Backend) -> None:
    with backend.open() as one, backend.open() as two:
        assert one.derive_key("link tokens") == two.derive_key("link tokens")
        assert len(one.derive_key("link tokens")) == 32
        assert one.derive_key("link tokens") != one.derive_key("link cookies")
        assert one.derive_key("link tokens") != backend.key.encode()[:32]
        again = one.connect_again()
        assert again.derive_key("link tokens") == one.derive_key("link tokens")
        again.close()
    with backend.open_other() as other:
        assert other.derive_key("link tokens") != two.derive_key("link tokens")
