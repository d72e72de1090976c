"""Owners: a host's id of whom an account is for scopes it, and every shipped schema upgrades."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from hub_core import AccountNotFound, LinkUsed, store_schema
from hub_core.model import Credentials, Verified
from hub_core.owners import OWNER_LIMIT, check_owner
from hub_core.store import Store

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
KEY_CHECK_PLAINTEXT = b"hub key check v1"

pytestmark = pytest.mark.usefixtures("hermetic_store_env")


def creds(api_key: str = "key-one", region: str = "us") -> Credentials:
    return Credentials({"api_key": api_key, "region": region}, secret=["api_key"])


def verified(identity: str = "org:1", label: str = "One") -> Verified:
    return Verified(identity=identity, label=label)


def test_one_identity_linked_by_two_owners_is_two_accounts(store: Store) -> None:
    mine = store.save("acme", verified(), creds("key-a"), owner="cust-a", owner_name="Ann")
    theirs = store.save("acme", verified(), creds("key-b"), owner="cust-b", owner_name="Bo")
    own = store.save("acme", verified(), creds("key-c"))
    assert len({mine.id, theirs.id, own.id}) == 3
    assert (mine.owner, mine.owner_name) == ("cust-a", "Ann")
    assert (own.owner, own.owner_name) == (None, None)
    # Each owner's key stays its own: linking for B did not replace A's.
    assert store.credentials(mine.id)["api_key"] == "key-a"
    assert store.credentials(theirs.id)["api_key"] == "key-b"
    assert [a.id for a in store.accounts(owner="cust-a")] == [mine.id]
    assert [a.id for a in store.page(owner="cust-b").accounts] == [theirs.id]
    assert store.page(owner="cust-b").total == 1
    # The operator sees everyone's.
    assert {a.id for a in store.accounts()} == {mine.id, theirs.id, own.id}
    assert store.get(mine.id).to_json()["owner"] == "cust-a"


def test_linking_the_same_identity_again_for_one_owner_updates_it(store: Store) -> None:
    first = store.save("acme", verified(), creds("key-a"), owner="cust-a", owner_name="Ann")
    again = store.save("acme", verified(label="One!"), creds("key-z"), owner="cust-a")
    assert again.id == first.id
    assert again.owner_name == "Ann"  # kept when none is given
    renamed = store.save("acme", verified(), creds("key-y"), owner="cust-a", owner_name="Anna")
    assert renamed.owner_name == "Anna"
    assert len(store.accounts()) == 1


def test_another_owners_account_is_not_found(store: Store) -> None:
    theirs = store.save("acme", verified(), creds("key-b"), owner="cust-b")
    for lookup in (theirs.id, theirs.id[:4]):
        with pytest.raises(AccountNotFound):
            store.get(lookup, owner="cust-a")
    assert store.get(theirs.id[:4], owner="cust-b").id == theirs.id
    # A relink for owner A of B's account changes nothing.
    with pytest.raises(AccountNotFound):
        store.save("acme", verified(), creds("key-evil"), account_id=theirs.id, owner="cust-a")
    assert store.credentials(theirs.id)["api_key"] == "key-b"
    # Nor can a link be made for A to relink it.
    with pytest.raises(AccountNotFound):
        store.create_link("acme", account_id=theirs.id, owner="cust-a")


def test_a_link_decides_the_owner_of_what_it_links(store: Store) -> None:
    link = store.create_link("acme", owner="cust-a", owner_name="Ann", now=NOW)
    assert (link.kind, link.owner, link.owner_name) == ("link", "cust-a", "Ann")
    saved = store.save("acme", verified(), creds(), link_id=link.id, owner="cust-b", now=NOW)
    assert (saved.owner, saved.owner_name) == ("cust-a", "Ann")
    assert store.link(link.id).used_account_id == saved.id


def test_a_relink_link_links_for_its_accounts_owner(store: Store) -> None:
    theirs = store.save("acme", verified(), creds("key-b"), owner="cust-b", owner_name="Bo")
    link = store.create_link(None, account_id=theirs.id, kind="session", now=NOW)
    assert (link.provider_id, link.owner, link.owner_name) == ("acme", "cust-b", "Bo")
    relinked = store.save(
        "acme", verified(), creds("key-new"), account_id=theirs.id, link_id=link.id, now=NOW
    )
    assert relinked.id == theirs.id
    assert store.credentials(theirs.id)["api_key"] == "key-new"


def test_a_session_may_leave_the_provider_to_its_visitor(store: Store) -> None:
    session = store.create_link(
        None,
        kind="session",
        owner="cust-a",
        return_url="https://app.example.invalid/done",
        return_state="s-1",
        now=NOW,
    )
    assert store.link(session.id) == session
    assert (session.return_url, session.return_state) == (
        "https://app.example.invalid/done",
        "s-1",
    )
    saved = store.save("other", verified(), creds(), link_id=session.id, now=NOW)
    assert (saved.provider_id, saved.owner) == ("other", "cust-a")
    with pytest.raises(LinkUsed):
        store.save("acme", verified("org:2"), creds(), link_id=session.id, now=NOW)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"provider_id": None}, "one provider"),
        ({"kind": "mail"}, "kind"),
        ({"owner": ""}, "non-empty"),
        ({"owner": "  "}, "non-empty"),
        ({"owner": 7}, "non-empty"),
        ({"owner": "a" * (OWNER_LIMIT + 1)}, "at most"),
        ({"owner": "cust\x1b[2J"}, "control"),
        ({"owner": "cust\u202e"}, "control"),
        ({"owner": "cust", "owner_name": "Ann\nEvil"}, "control"),
        ({"owner": "cust", "owner_name": b"Ann"}, "string"),
    ],
)
def test_a_bad_link_is_refused_and_nothing_is_stored(
    store: Store, options: dict[str, object], message: str
) -> None:
    arguments: dict[str, object] = {"provider_id": "acme", **options}
    with pytest.raises(ValueError, match=message):
        store.create_link(**arguments)  # type: ignore[arg-type]
    assert store.links(include_closed=True) == []


@pytest.mark.parametrize("owner", ["", "x" * (OWNER_LIMIT + 1), "a\tb", "a\u200bb"])
def test_a_bad_owner_stores_no_account(store: Store, owner: str) -> None:
    with pytest.raises(ValueError, match="owner"):
        store.save("acme", verified(), creds(), owner=owner)
    assert store.accounts() == []


def test_check_owner_keeps_a_good_owner_as_given() -> None:
    assert check_owner(None) is None
    assert check_owner("org_42/user:7 é") == "org_42/user:7 é"


# --- every schema that has shipped upgrades ---------------------------------------------------

# Every schema main has shipped (a shipped migration never changes), the current one included.
SHIPPED = range(1, store_schema.SCHEMA_VERSION + 1)


def build(db: Path, fernet: Fernet, version: int) -> None:
    """A database as schema *version* made it: two accounts (one with a broken id), a link."""
    db.parent.mkdir()
    conn = sqlite3.connect(db)
    for steps in store_schema.MIGRATIONS[:version]:
        for sql in steps:
            conn.execute(sql)
    conn.execute(f"PRAGMA user_version = {version}")
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('key_check', ?)",
        (fernet.encrypt(KEY_CHECK_PLAINTEXT).decode(),),
    )
    for n, account_id in enumerate(["0000000a", None]):
        conn.execute(
            "INSERT INTO accounts (id, provider_id, identity, label, verdict, config, secrets,"
            " linked_at, expires_at) VALUES (?, 'acme', ?, ?, 'active', '{\"region\": \"eu\"}',"
            " ?, '2024-01-02T03:04:05+00:00', '2099-01-01T00:00:00+00:00')",
            (account_id, f"org:{n}", f"Org {n}", fernet.encrypt(b'{"api_key": "k%d"}' % n)),
        )
    if version >= 4:
        conn.execute(
            "INSERT INTO links (id, provider_id, account_id, note, created_at, expires_at,"
            " failed_attempts) VALUES ('00ff00ff00ff00ff', 'acme', NULL, 'For Dana',"
            " '2024-01-02T03:04:05+00:00', '2099-01-01T00:00:00+00:00', 3)"
        )
    conn.commit()
    conn.close()


@pytest.mark.parametrize("version", SHIPPED)
def test_every_shipped_schema_upgrades_with_every_account(db: Path, key: str, version: int) -> None:
    fernet = Fernet(key)
    build(db, fernet, version)
    with Store(db, secret_key=key) as store:
        accounts = store.accounts()
        assert [a.label for a in accounts] == ["Org 0", "Org 1"]
        assert [a.owner for a in accounts] == [None, None]
        assert store.credentials("0000000a") == {"region": "eu", "api_key": "k0"}
        # The row whose id is broken is still found by its rowid, as before the rebuild.
        broken = store.get(accounts[1].id)
        assert broken.id == "#2"
        if version >= 4:
            link = store.link("00ff00ff00ff00ff")
            assert (link.kind, link.note, link.failed_attempts) == ("link", "For Dana", 3)
            assert link.owner is None
        # The upgraded table takes part in the new uniqueness: another owner, another account.
        other = store.save("acme", verified("org:0"), creds("k-b", "eu"), owner="cust-b")
        assert other.id != "0000000a"
        assert store.credentials("0000000a")["api_key"] == "k0"
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == store_schema.SCHEMA_VERSION
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
