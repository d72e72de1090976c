"""The key ring (`hub_core.keyring`) and the store on it: key ids per row, rotation, refusals."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from hub_core.errors import InvalidCredentials, StoreError
from hub_core.keyring import BadKey, KeyRing, secrets_version
from hub_core.model import Account, Credentials, Status, Verified
from hub_core.store import Store
from hub_core.store_types import KeyReplaced

pytestmark = pytest.mark.usefixtures("hermetic_store_env")

OLD = Fernet.generate_key().decode()
NEW = Fernet.generate_key().decode()
OTHER = Fernet.generate_key().decode()


def expected_id(key: str) -> str:
    raw = base64.urlsafe_b64decode(key)
    return hmac.new(raw, b"hub key id", hashlib.sha256).hexdigest()[:16]


def save(store: Store, n: int) -> str:
    credentials = Credentials({"api_key": f"secret-{n:05d}-value"}, secret=["api_key"])
    return store.save("acme", Verified(identity=f"org:{n}", label=f"Org {n}"), credentials).id


def readable(store: Store, ids: dict[str, int]) -> None:
    for account_id, n in ids.items():
        assert store.credentials(account_id)["api_key"] == f"secret-{n:05d}-value"


def counts(store: Store) -> dict[str, int]:
    return {key.id: key.accounts for key in store.key_status().keys}


def row_key_ids(db: Path) -> list[str | None]:
    conn = sqlite3.connect(db)
    try:
        return [row[0] for row in conn.execute("SELECT key_id FROM accounts ORDER BY rowid")]
    finally:
        conn.close()


@contextlib.contextmanager
def raw(db: Path) -> Iterator[sqlite3.Connection]:
    """A plain connection to *db*, committed and closed (so no -wal is left behind)."""
    conn = sqlite3.connect(db)
    try:
        with conn:
            yield conn
    finally:
        conn.close()


def files(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def no_key_in(text: str) -> None:
    """No key in *text*: not as given, nor its bytes (whole or either half) in any spelling."""
    for key in (OLD, NEW, OTHER):
        raw = base64.urlsafe_b64decode(key)
        for part in (key, key[:20], key[-24:]):
            assert part not in text
        for half in (raw[:16], raw[16:]):
            assert half.hex() not in text
            assert repr(half)[2:12] not in text
            assert base64.b64encode(half).decode()[:12] not in text


# --- the ring ------------------------------------------------------------------------------------


def test_a_key_id_is_the_hmac_of_the_key_and_the_same_however_it_is_given() -> None:
    ids = {
        KeyRing(OLD, source="s").primary_id,
        KeyRing(OLD.encode(), source="s").primary_id,
        KeyRing(f"  {OLD}\n", source="s").primary_id,
        KeyRing([OLD], source="s").primary_id,
    }
    assert ids == {expected_id(OLD)}
    assert len(expected_id(OLD)) == 16
    assert KeyRing(NEW, source="s").primary_id != expected_id(OLD)


def test_order_matters_the_first_key_encrypts_and_each_decrypts_its_own_rows() -> None:
    old_new = KeyRing(f"{OLD},{NEW}", source="s")
    new_old = KeyRing([NEW, OLD], source="s")
    assert old_new.ids == (expected_id(OLD), expected_id(NEW))
    assert new_old.ids == (expected_id(NEW), expected_id(OLD))
    key_id, token = new_old.encrypt(b"plain")
    assert key_id == expected_id(NEW)
    assert Fernet(NEW).decrypt(token) == b"plain"
    assert old_new.decrypt(token, key_id) == b"plain"
    with pytest.raises(KeyError):
        KeyRing(OLD, source="s").decrypt(token, key_id)


def test_the_repr_shows_key_ids_never_a_key() -> None:
    ring = KeyRing([NEW, OLD], source="HUB_SECRET_KEYS")
    for text in (repr(ring), str(ring)):
        no_key_in(text)
        assert expected_id(NEW) in text
    assert "_Key" not in repr(ring)
    assert "raw" not in repr(ring)


BAD_ENTRIES = {
    "empty": ("", "holds no key|is empty"),
    "blank": ("  ", "is empty"),
    "two commas": (f"{NEW},,{OLD}", "key 2 of S is empty"),
    "trailing comma": (f"{NEW},", "key 2 of S is empty"),
    "leading comma": (f",{NEW}", "key 1 of S is empty"),
    "malformed": ("not-a-key", "the secret key from S is not a valid hub key"),
    "one malformed of two": (f"{NEW},{OLD[:-4]}", "key 2 of S is not a valid hub key"),
    "a key twice": (f"{NEW},{OLD},{NEW}", "key 3 of S is the same key as key 1 of S"),
}


@pytest.mark.parametrize("case", list(BAD_ENTRIES))
def test_bad_keys_and_empty_entries_are_refused_naming_the_entry(case: str) -> None:
    value, message = BAD_ENTRIES[case]
    with pytest.raises(BadKey, match=message) as caught:
        KeyRing(value, source="S")
    no_key_in(str(caught.value))
    assert isinstance(caught.value, StoreError)


def test_the_environment_spellings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert KeyRing.from_environment(tmp_path / "hub.key") is None
    monkeypatch.setenv("HUB_SECRET_KEYS", f"{NEW}, {OLD}")
    ring = KeyRing.from_environment(tmp_path / "hub.key")
    assert ring is not None
    assert ring.ids == (expected_id(NEW), expected_id(OLD))
    assert ring.where(expected_id(OLD)) == "key 2 of HUB_SECRET_KEYS"
    monkeypatch.setenv("HUB_SECRET_KEY", NEW)
    with pytest.raises(BadKey, match="both HUB_SECRET_KEYS and HUB_SECRET_KEY are set"):
        KeyRing.from_environment(tmp_path / "hub.key")
    monkeypatch.delenv("HUB_SECRET_KEYS")
    ring = KeyRing.from_environment(tmp_path / "hub.key")
    assert ring is not None
    assert ring.ids == (expected_id(NEW),)
    monkeypatch.delenv("HUB_SECRET_KEY")
    monkeypatch.setenv("HUB_SECRET_KEYS", " ")
    with pytest.raises(BadKey, match="HUB_SECRET_KEYS is set but empty"):
        KeyRing.from_environment(tmp_path / "hub.key")


def test_a_key_file_may_hold_several_keys_one_per_line(tmp_path: Path) -> None:
    (tmp_path / "hub.key").write_text(f"{NEW}\n{OLD}\n\n")
    ring = KeyRing.from_key_file(tmp_path / "hub.key")
    assert ring is not None
    assert ring.ids == (expected_id(NEW), expected_id(OLD))
    assert KeyRing.from_key_file(tmp_path / "missing.key") is None


# --- the store on the ring -----------------------------------------------------------------------


def test_rotation_old_then_old_new_then_new_old_then_rotate_then_new_only(tmp_path: Path) -> None:
    db = tmp_path / "home" / "hub.db"
    ids: dict[str, int] = {}
    with Store(db, secret_key=OLD) as store:
        ids.update({save(store, n): n for n in range(5)})
        assert counts(store) == {expected_id(OLD): 5}
    assert set(row_key_ids(db)) == {expected_id(OLD)}

    # Step 1, every host: old,new. The new key is known (checked) but encrypts nothing yet.
    with Store(db, secret_key=f"{OLD},{NEW}") as store:
        readable(store, ids)
        ids[save(store, 5)] = 5
        assert counts(store) == {expected_id(OLD): 6, expected_id(NEW): 0}
        assert [key.checked for key in store.key_status().keys] == [True, True]

    # Step 2: new,old. New rows and relinks go on the new key; old rows stay readable.
    with Store(db, secret_key=[NEW, OLD]) as store:
        readable(store, ids)
        ids[save(store, 6)] = 6
        save(store, 0)  # a relink of account 0 re-encrypts it with the new key
        status = store.key_status()
        assert status.encrypts == expected_id(NEW)
        assert counts(store) == {expected_id(NEW): 2, expected_id(OLD): 5}
        assert status.to_rotate == 5

        # Step 3: rotate, in batches smaller than the rows.
        seen: list[tuple[int, int]] = []
        report = store.rotate_keys(batch_size=2, progress=lambda d, t: seen.append((d, t)))
        assert (report.rotated, report.unreadable, report.key_id) == (5, [], expected_id(NEW))
        assert seen == [(2, 5), (4, 5), (5, 5)]
        assert counts(store) == {expected_id(NEW): 7, expected_id(OLD): 0}
        readable(store, ids)
        assert store.rotate_keys().rotated == 0  # nothing left: running it again is harmless
    assert set(row_key_ids(db)) == {expected_id(NEW)}

    # Step 4: drop old.
    with Store(db, secret_key=NEW) as store:
        readable(store, ids)
        status = store.key_status()
        assert [(k.id, k.accounts, k.configured) for k in status.keys] == [
            (expected_id(NEW), 7, "the secret_key argument"),
            (expected_id(OLD), 0, None),
        ]
    with raw(db) as conn:
        stored = b"".join(bytes(row[0]) for row in conn.execute("SELECT secrets FROM accounts"))
    assert b"secret-0" not in stored


def test_decryption_uses_the_key_id_of_the_row(tmp_path: Path) -> None:
    db = tmp_path / "home" / "hub.db"
    with Store(db, secret_key=[NEW, OLD]) as store:
        account = save(store, 1)
    # A row claiming the old key's id is not tried with the new key.
    with raw(db) as conn:
        conn.execute("UPDATE accounts SET key_id = ?", (expected_id(OLD),))
    with Store(db, secret_key=[NEW, OLD]) as store, pytest.raises(StoreError, match="cannot be"):
        store.credentials(account)


def test_a_wrong_key_is_refused_before_anything_is_touched(tmp_path: Path) -> None:
    db = tmp_path / "home" / "hub.db"
    with Store(db, secret_key=[NEW, OLD]) as store:
        save(store, 1)
    before = files(db.parent)
    for wrong in (OTHER, [OTHER], f"{OTHER},{Fernet.generate_key().decode()}"):
        with pytest.raises(StoreError, match="match") as caught:
            Store(db, secret_key=wrong)
        no_key_in(str(caught.value))
        assert files(db.parent) == before


def test_a_key_failing_its_own_check_is_refused_naming_it(tmp_path: Path) -> None:
    db = tmp_path / "home" / "hub.db"
    with Store(db, secret_key=[NEW, OLD]) as store:
        save(store, 1)
    # The check of OLD's id replaced by one another key made: OLD cannot pass it.
    with raw(db) as conn:
        token = Fernet(OTHER).encrypt(b"hub key check v1").decode()
        conn.execute("UPDATE key_checks SET token = ? WHERE key_id = ?", (token, expected_id(OLD)))
    before = files(db.parent)
    with pytest.raises(StoreError) as caught:
        Store(db, secret_key=[NEW, OLD])
    message = str(caught.value)
    assert "key 2 of the secret_key argument fails its key check" in message
    assert expected_id(OLD) in message
    no_key_in(message)
    assert files(db.parent) == before
    Store(db, secret_key=NEW).close()  # the key that passes still opens it


def test_a_key_dropped_with_accounts_on_it_is_refused_naming_the_id_and_count(
    tmp_path: Path,
) -> None:
    db = tmp_path / "home" / "hub.db"
    with Store(db, secret_key=OLD) as store:
        for n in range(3):
            save(store, n)
    with Store(db, secret_key=[NEW, OLD]) as store:
        save(store, 9)
    before = files(db.parent)
    with pytest.raises(StoreError) as caught:
        Store(db, secret_key=NEW)
    message = str(caught.value)
    assert f"3 accounts on key id {expected_id(OLD)}" in message
    assert "dropped a key too early" in message
    assert "hub keys rotate" in message
    no_key_in(message)
    assert files(db.parent) == before


def test_derived_keys_follow_the_first_key(tmp_path: Path) -> None:
    db = tmp_path / "home" / "hub.db"
    with Store(db, secret_key=OLD) as store:
        from_old = store.derive_key("link tokens")
    # As the store derived them before the ring: a link signed then still verifies.
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"hub link tokens")
    assert from_old == hkdf.derive(base64.urlsafe_b64decode(OLD))
    with Store(db, secret_key=[OLD, NEW]) as store:
        assert store.derive_key("link tokens") == from_old
    with Store(db, secret_key=[NEW, OLD]) as store:
        from_new = store.derive_key("link tokens")
        assert from_new != from_old
        assert store.derive_key("link cookies") not in (from_new, from_old)
        with store.connect_again() as again:
            assert again.derive_key("link tokens") == from_new
    with Store(db, secret_key=NEW) as store:
        assert store.derive_key("link tokens") == from_new


def test_a_database_from_before_key_ids_gives_its_rows_the_id_of_its_key(tmp_path: Path) -> None:
    db = tmp_path / "home" / "hub.db"
    with Store(db, secret_key=OLD) as store:
        ids = {save(store, n): n for n in range(3)}
    # As schema 6 left it: no key ids, the one key check in meta.
    with raw(db) as conn:
        token = conn.execute("SELECT token FROM key_checks").fetchone()[0]
        conn.execute("UPDATE accounts SET key_id = NULL")
        conn.execute("DELETE FROM key_checks")
        conn.execute("INSERT INTO meta (key, value) VALUES ('key_check', ?)", (token,))
    with pytest.raises(StoreError, match="does not match"):
        Store(db, secret_key=NEW)
    with Store(db, secret_key=[NEW, OLD]) as store:
        readable(store, ids)
        assert counts(store) == {expected_id(NEW): 0, expected_id(OLD): 3}
    assert set(row_key_ids(db)) == {expected_id(OLD)}
    with raw(db) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'key_check'").fetchone() is None
        checks = {row[0] for row in conn.execute("SELECT key_id FROM key_checks")}
    assert checks == {expected_id(NEW), expected_id(OLD)}


def test_no_key_in_the_store_repr_or_its_errors(tmp_path: Path) -> None:
    db = tmp_path / "home" / "hub.db"
    with Store(db, secret_key=[NEW, OLD]) as store:
        no_key_in(repr(store))
        no_key_in(repr(store.key_ring))
        no_key_in(repr(store.key_status()))
        no_key_in(repr(store.rotate_keys()))


# --- a check in flight while the keys rotate ------------------------------------------------------


def test_reencrypt_keeps_the_version_and_the_secrets() -> None:
    old = KeyRing(OLD, source="s")
    new_old = KeyRing([NEW, OLD], source="s")
    other_new = KeyRing([OTHER, NEW], source="s")
    key_id, stored = old.encrypt(b'{"api_key": "k"}')
    version = secrets_version(stored)
    assert len(version) == 32
    assert all(c in "0123456789abcdef" for c in version)
    new_id, moved = new_old.reencrypt(stored, key_id)
    assert new_id == expected_id(NEW)
    assert moved != stored
    assert secrets_version(moved) == version
    assert new_old.decrypt(moved, new_id) == b'{"api_key": "k"}'
    # Twice (old -> new -> other): still the version the secrets were stored with.
    other_id, again = other_new.reencrypt(moved, new_id)
    assert secrets_version(again) == version
    assert other_new.decrypt(again, other_id) == b'{"api_key": "k"}'
    with pytest.raises(InvalidToken):  # the carried token is on NEW's key, not OLD's
        KeyRing([OLD, NEW], source="s").decrypt(moved.replace(b"hub-v:", b"hub-w:"), new_id)
    # Stored anew (the same plaintext, encrypted again): another version.
    assert secrets_version(new_old.encrypt(b'{"api_key": "k"}')[1]) != version


def test_a_version_tells_nothing_of_the_secrets() -> None:
    ring = KeyRing(NEW, source="s")
    plain = b'{"api_key": "secret-00001-value"}'
    versions = {secrets_version(ring.encrypt(plain)[1]) for _ in range(5)}
    assert len(versions) == 5  # not a function of the secrets: salted with each encryption
    for version in versions:
        assert version not in {
            hashlib.sha256(plain).hexdigest()[:32],
            hashlib.sha256(b"secret-00001-value").hexdigest()[:32],
        }
        assert "secret" not in version


@pytest.mark.parametrize(
    "stored",
    [
        b"hub-v:" + b"z" * 32 + b":gAAAA",  # not hex
        b"hub-v:" + b"a" * 31 + b":gAAAA",  # too short
        b"hub-v:" + b"a" * 32 + b"!gAAAA",  # no colon
        b"hub-v:",
        "hub-v:" + "a" * 32 + ":gAAAA",  # text, as a hand edit leaves it
        b"",
        None,
        42,
    ],
)
def test_stored_secrets_edited_by_hand_have_a_version_and_do_not_decrypt(stored: object) -> None:
    ring = KeyRing(NEW, source="s")
    version = secrets_version(stored)
    assert len(version) == 32
    assert version != "a" * 32
    if isinstance(stored, bytes | str):
        with pytest.raises(InvalidToken):
            ring.decrypt(stored, ring.primary_id)


def checked_then_rotated(tmp_path: Path) -> tuple[Path, str, str]:
    """An account on OLD checked out (its version) before `hub keys rotate` moved it to NEW."""
    db = tmp_path / "home" / "hub.db"
    with Store(db, secret_key=OLD) as store:
        account_id = save(store, 1)
    with Store(db, secret_key=[NEW, OLD]) as store:
        values, version = store.checkout(account_id)
        assert values["api_key"] == "secret-00001-value"
        with Store(db, secret_key=[NEW, OLD]) as rotating:  # `hub keys rotate`, meanwhile
            assert rotating.rotate_keys().rotated == 1
        assert row_key_ids(db) == [expected_id(NEW)]
    return db, account_id, version


def test_a_rotation_between_checkout_and_record_keeps_the_verdict(tmp_path: Path) -> None:
    db, account_id, version = checked_then_rotated(tmp_path)
    with Store(db, secret_key=[NEW, OLD]) as store:
        recorded = store.record(account_id, InvalidCredentials("revoked"), version=version)
        assert recorded.status is Status.INVALID
        [again] = store.record_many(
            [(account_id, Verified(identity="org:1", label="Org 1"))],
            versions={account_id: version},
        )
        assert isinstance(again, Account)
        assert again.status is Status.ACTIVE
        assert store.checkout(account_id) == ({"api_key": "secret-00001-value"}, version)
    # After the old key is dropped, too: the version is the secrets', not the key's.
    with Store(db, secret_key=NEW) as store:
        assert store.checkout(account_id)[1] == version
        assert store.record(account_id, InvalidCredentials("x"), version=version).status is (
            Status.INVALID
        )


def test_a_rotation_under_a_lease_keeps_the_leased_verdict(tmp_path: Path) -> None:
    db = tmp_path / "home" / "hub.db"
    with Store(db, secret_key=OLD) as store:
        account_id = save(store, 1)
    with Store(db, secret_key=[NEW, OLD]) as store:
        lease = store.lease(10)
        [item] = lease.accounts
        with Store(db, secret_key=[NEW, OLD]) as rotating:
            assert rotating.rotate_keys().rotated == 1
        [outcome] = store.record_many(
            [(account_id, InvalidCredentials("revoked"))],
            versions={account_id: item.version},
            lease=lease.token,
        )
        assert isinstance(outcome, Account)
        assert store.get(account_id).status is Status.INVALID


@pytest.mark.parametrize("order", ["relink after the rotation", "relink before the rotation"])
def test_a_relink_between_checkout_and_record_still_drops_the_verdict(
    tmp_path: Path, order: str
) -> None:
    db = tmp_path / "home" / "hub.db"
    with Store(db, secret_key=OLD) as store:
        account_id = save(store, 1)
        save(store, 2)  # another account on OLD: the rotation runs in either order
    with Store(db, secret_key=[OLD, NEW]) as store:
        _, version = store.checkout(account_id)
    with Store(db, secret_key=[NEW, OLD]) as store:
        if order == "relink before the rotation":
            save(store, 1)  # the same identity again: a new key replaces the stored one
            assert store.rotate_keys().rotated == 1
        else:
            assert store.rotate_keys().rotated == 2
            save(store, 1)
        with pytest.raises(KeyReplaced):
            store.record(account_id, InvalidCredentials("revoked"), version=version)
        [outcome] = store.record_many(
            [(account_id, InvalidCredentials("revoked"))], versions={account_id: version}
        )
        assert isinstance(outcome, KeyReplaced)
        assert store.get(account_id).status is Status.ACTIVE
        _, current = store.checkout(account_id)
        assert current != version


def test_rotated_rows_hold_no_secret_in_clear(tmp_path: Path) -> None:
    db, _, version = checked_then_rotated(tmp_path)
    with raw(db) as conn:
        [stored] = [bytes(row[0]) for row in conn.execute("SELECT secrets FROM accounts")]
    assert stored.startswith(b"hub-v:" + version.encode() + b":")
    assert b"secret-00001" not in stored
    no_key_in(stored.decode("ascii"))


# --- many tokens decrypted at once (what a lease does) ----------------------------------------


def _outcome(ring: KeyRing, token: bytes | str, key_id: str | None) -> bytes | type[Exception]:
    try:
        return ring.decrypt(token, key_id)
    except (InvalidToken, KeyError, TypeError, ValueError) as exc:
        return type(exc)


def _signed(key: str, body: bytes) -> bytes:
    """A Fernet token whose ciphertext is *body* as it is (no padding added), HMAC valid."""
    raw = base64.urlsafe_b64decode(key)
    data = b"\x80" + bytes(8) + bytes(16) + body
    return base64.urlsafe_b64encode(data + hmac.digest(raw[:16], data, "sha256"))


def test_decrypt_many_gives_what_decrypt_gives_for_every_token() -> None:
    ring = KeyRing(f"{NEW},{OLD}", source="HUB_SECRET_KEYS")
    new_id, old_id = ring.ids
    old_only = KeyRing(OLD, source="the old key")
    stored: list[tuple[bytes | str, str | None]] = []
    for size in range(70):  # every padding length, several blocks
        stored.append(ring.encrypt(bytes(range(size)))[::-1])
        stored.append((old_only.encrypt(b"x" * size)[1], old_id))
    token = stored[0][0]
    assert isinstance(token, bytes)
    moved = ring.reencrypt(stored[1][0], old_id)
    stored += [
        (moved[1], moved[0]),  # re-encrypted by a rotation: its version carried
        (token.decode(), new_id),  # text, as a hand edit may leave it
        (token, None),  # no key id: each key is tried
        (token, old_id),  # the wrong key id
        (token, "0123456789abcdef"),  # a key id the ring does not have
        (b"not a token", new_id),
        (token[:-4] + b"AAAA", new_id),  # the HMAC broken
        (token[:40] + token[41:], new_id),  # a byte missing
        (b"", new_id),
        (_signed(NEW, bytes(32)), new_id),  # a valid HMAC over a ciphertext that does not unpad
        (_signed(NEW, bytes(15)), new_id),  # not whole AES blocks
    ]
    got = ring.decrypt_many(stored)
    assert [g if isinstance(g, bytes) else type(g) for g in got] == [
        _outcome(ring, t, k) for t, k in stored
    ]
    assert got[0] == b""
    assert got[-1].__class__ is InvalidToken
    # Every byte of a token changed in turn: refused, as Fernet refuses it.
    base = bytearray(base64.urlsafe_b64decode(token))
    flipped = []
    for n in range(len(base)):
        copy = bytearray(base)
        copy[n] ^= 0x01
        flipped.append((base64.urlsafe_b64encode(bytes(copy)), new_id))
    assert all(isinstance(g, InvalidToken) for g in ring.decrypt_many(flipped))
    assert ring.decrypt_many([]) == []
