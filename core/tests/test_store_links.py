"""The store's one-time auth links: lifetime, states, single use in the save's transaction."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from hub_core import LinkUsed
from hub_core import store as store_module
from hub_core.model import Credentials, Verified
from hub_core.store import LINK_ATTEMPTS, Store

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
KEY_CHECK_PLAINTEXT = b"hub key check v1"


@pytest.fixture(autouse=True)
def _hermetic_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("HUB_SECRET_KEY", raising=False)
    monkeypatch.setenv("HUB_HOME", str(tmp_path / "home"))


@pytest.fixture
def key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "data" / "hub.db"


@pytest.fixture
def store(db: Path, key: str) -> Iterator[Store]:
    with Store(db, secret_key=key) as opened:
        yield opened


def creds(api_key: str = "key-one") -> Credentials:
    return Credentials({"api_key": api_key, "region": "us"}, secret=["api_key"])


def verified(identity: str = "org:1", label: str = "One") -> Verified:
    return Verified(identity=identity, label=label)


def test_a_new_link_is_open_for_seven_days_by_default(store: Store) -> None:
    link = store.create_link("acme", note="Dana at Example", now=NOW)
    assert link.expires_at == NOW + timedelta(days=7)
    assert link.state(NOW) == "open"
    assert store.link(link.id) == link
    assert [found.id for found in store.links(now=NOW)] == [link.id]
    assert link.state(NOW + timedelta(days=7)) == "expired"


@pytest.mark.parametrize("expires_in", [timedelta(days=30, seconds=1), timedelta(0)])
def test_a_link_lives_at_most_thirty_days(store: Store, expires_in: timedelta) -> None:
    with pytest.raises(ValueError, match="link"):
        store.create_link("acme", expires_in=expires_in)
    assert store.links(include_closed=True) == []
    assert store.create_link("acme", expires_in=timedelta(days=30)).state() == "open"


def test_saving_through_a_link_uses_it_once(store: Store) -> None:
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
def test_a_link_that_cannot_be_used_stores_nothing(store: Store, reason: str) -> None:
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


def test_a_relink_link_replaces_only_its_account(store: Store) -> None:
    account = store.save("acme", verified(), creds(), now=NOW)
    link = store.create_link("acme", account_id=account.id[:4])
    assert link.account_id == account.id  # the prefix is resolved to the whole id
    with pytest.raises(LinkUsed, match="another provider or account"):
        store.save("acme", verified(), creds("new"), link_id=link.id)  # not a relink
    store.save("acme", verified(), creds("new"), account_id=account.id, link_id=link.id)
    assert store.credentials(account.id)["api_key"] == "new"
    assert store.link(link.id).used_account_id == account.id


def test_a_relink_link_needs_an_account_of_its_provider(store: Store) -> None:
    account = store.save("acme", verified(), creds(), now=NOW)
    with pytest.raises(store_module.StoreError, match="not beta"):
        store.create_link("beta", account_id=account.id)
    with pytest.raises(store_module.AccountNotFound):
        store.create_link("acme", account_id="ffffffff")
    assert store.links(include_closed=True) == []


def test_revoking_a_used_link_leaves_it_used(store: Store) -> None:
    link = store.create_link("acme")
    store.save("acme", verified(), creds(), link_id=link.id)
    assert store.revoke_link(link.id).state() == "used"
    with pytest.raises(LinkUsed, match="does not exist"):
        store.revoke_link("nope")


def test_two_racing_saves_on_one_link_give_one_account(db: Path, key: str) -> None:
    with Store(db, secret_key=key) as first:
        link = first.create_link("acme")
    results: list[object] = []
    barrier = threading.Barrier(2)

    def save(identity: str) -> None:
        with Store(db, secret_key=key) as own:
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
    with Store(db, secret_key=key) as after:
        assert len(after.accounts()) == 1


def test_derived_keys_are_shared_by_every_opener_and_differ_by_purpose(db: Path, key: str) -> None:
    with Store(db, secret_key=key) as one, Store(db, secret_key=key) as two:
        assert one.derive_key("link tokens") == two.derive_key("link tokens")
        assert len(one.derive_key("link tokens")) == 32
        assert one.derive_key("link tokens") != one.derive_key("link cookies")
        assert one.derive_key("link tokens") != key.encode()[:32]
        again = one.connect_again()
        assert again.derive_key("link tokens") == one.derive_key("link tokens")
        again.close()
    with Store(db.parent.parent / "other" / "hub.db", secret_key=Fernet.generate_key()) as other:
        assert other.derive_key("link tokens") != two.derive_key("link tokens")


def test_a_version_3_database_keeps_its_accounts(db: Path, key: str) -> None:
    fernet = Fernet(key)
    db.parent.mkdir()
    conn = sqlite3.connect(db)
    for steps in store_module._MIGRATIONS[:3]:  # shipped: never edited
        for sql in steps:
            conn.execute(sql)
    conn.execute("PRAGMA user_version = 3")
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('key_check', ?)",
        (fernet.encrypt(KEY_CHECK_PLAINTEXT).decode(),),
    )
    for n in range(3):
        conn.execute(
            "INSERT INTO accounts (id, provider_id, identity, label, verdict, config, secrets,"
            " linked_at) VALUES (?, 'acme', ?, ?, 'active', '{}', ?, ?)",
            (
                f"0000000{n}",
                f"org:{n}",
                f"Org {n}",
                fernet.encrypt(b'{"api_key": "k"}'),
                "2024-01-02T03:04:05.000000+00:00",
            ),
        )
    conn.commit()
    conn.close()
    with Store(db, secret_key=key) as store:
        assert [a.label for a in store.accounts()] == ["Org 0", "Org 1", "Org 2"]
        assert store.credentials("00000001") == {"api_key": "k"}
        link = store.create_link("acme", account_id="00000002")
        assert store.link(link.id).account_id == "00000002"
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 5
    conn.close()
