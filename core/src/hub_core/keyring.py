"""The store's key ring: which Fernet keys it holds, their ids, and which one encrypts.

A ring is one or more keys in order. The first encrypts every new or re-encrypted row; each
of them decrypts the rows that record its id. A key's id is the first 16 hex digits of
HMAC-SHA256(key, "hub key id"): stable, the same on every host, and telling nothing of the
key. The keys for other purposes (link tokens, link cookies) are derived from the first key,
so rotating the ring rotates them too.

Where the keys come from, first found wins: the store's ``secret_key`` argument (one key, a
sequence of keys, or ``"new,old"``), ``HUB_SECRET_KEYS`` (``"new,old"``), ``HUB_SECRET_KEY``
(one key), else the key file ``hub.key`` beside the database (one key per line).

A row's stored secrets are a Fernet token, or, once `KeyRing.reencrypt` moved them to
another key, ``hub-v:<version>:<token>``: the new token carries the version the secrets had
(`secrets_version`), so a check in flight while `hub keys rotate` runs keeps its verdict.

This module imports cryptography; ``import hub_core`` does not import it.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import os
from collections.abc import Sequence
from pathlib import Path

import attrs
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import StoreError

__all__ = [
    "KEYS_ENV",
    "KEY_ENV",
    "BadKey",
    "KeyRing",
    "KeyState",
    "KeyStatus",
    "RotationReport",
    "generate_key",
    "secrets_version",
]

KEYS_ENV = "HUB_SECRET_KEYS"
KEY_ENV = "HUB_SECRET_KEY"
_ID_MESSAGE = b"hub key id"
#: Encrypted with each key and stored beside the rows: decrypting it proves a key is the one
#: its id says before any row is read or written.
CHECK_PLAINTEXT = b"hub key check v1"
_VALID = "44 characters of url-safe base64, as made by `hub keys new`"
#: Stored secrets re-encrypted by a rotation: this, their version (32 hex digits), ``:``,
#: then the new token. Not url-safe base64, so never the start of a Fernet token.
_CARRIED = b"hub-v:"
_VERSION_LENGTH = 32
_CARRIED_LENGTH = len(_CARRIED) + _VERSION_LENGTH + 1


def secrets_version(stored: object) -> str:
    """The version of a row's stored secrets: opaque, 32 hex digits, telling nothing of them.

    It changes whenever the secrets are stored anew (a save or a relink encrypts them again,
    and Fernet tokens are salted, so its hash differs) and stays the same when
    `KeyRing.reencrypt` moves them to another key: a verdict on the key checked is still
    about the key stored. *stored* is the column's value as read (a hand edit may have made
    it text or anything else: it then has a version of its own, like any other value).
    """
    if isinstance(stored, bytes):
        return _version_of(stored)
    data = repr(stored).encode("utf-8", "backslashreplace")
    return hashlib.sha256(data).hexdigest()[:_VERSION_LENGTH]


# A check asks twice for the version of one row's secrets, when it is leased and when its
# verdict is recorded (with the row as leased): kept for two runs' worth of leases in flight.
@functools.lru_cache(maxsize=4096)
def _version_of(stored: bytes) -> str:
    carried = _carried(stored)
    if carried is not None:
        return carried[0]
    return hashlib.sha256(stored).hexdigest()[:_VERSION_LENGTH]


def _carried(stored: object) -> tuple[str, bytes] | None:
    """The version and the token of secrets a rotation re-encrypted, or None for others."""
    if not isinstance(stored, bytes) or not stored.startswith(_CARRIED):
        return None
    version = stored[len(_CARRIED) : _CARRIED_LENGTH - 1]
    if stored[_CARRIED_LENGTH - 1 : _CARRIED_LENGTH] != b":" or not all(
        c in b"0123456789abcdef" for c in version
    ):
        return None
    return version.decode("ascii"), stored[_CARRIED_LENGTH:]


def _token(stored: bytes | str) -> bytes | str:
    carried = _carried(stored)
    return stored if carried is None else carried[1]


class BadKey(StoreError):
    """A configured key is empty, malformed or given twice (the message names it, not its value)."""

    code = "bad_key"

    def __init__(self, message: str, where: str) -> None:
        super().__init__(message)
        #: Which key: "HUB_SECRET_KEY", "key 2 of HUB_SECRET_KEYS", ...
        self.where = where


def generate_key() -> str:
    """A new random key (44 characters of url-safe base64), for ``hub keys new``."""
    return Fernet.generate_key().decode("ascii")


def key_id(raw: bytes) -> str:
    """The id of the key whose 32 decoded bytes are *raw*."""
    return hmac.new(raw, _ID_MESSAGE, hashlib.sha256).hexdigest()[:16]


class _Key:
    __slots__ = ("blocks", "fernet", "id", "raw", "signer", "where")

    def __init__(self, raw: bytes, where: str) -> None:
        self.raw = raw
        self.fernet = Fernet(base64.urlsafe_b64encode(raw))
        self.id = key_id(raw)
        self.where = where
        # The AES block decryption of the key's encryption half (a Fernet key is 16 bytes of
        # signing key, then 16 of encryption key): what `_decrypt_verified` chains as CBC.
        self.blocks = Cipher(algorithms.AES(raw[16:]), modes.ECB())  # noqa: S305
        # HMAC-SHA256 keyed with the signing half, copied for each token (cheaper than keying;
        # cryptography's copy costs about half of the standard library's).
        self.signer = crypto_hmac.HMAC(raw[:16], hashes.SHA256())

    def __repr__(self) -> str:
        return f"<key {self.id} from {self.where}>"


def _raw(text: str | bytes) -> bytes | None:
    """The 32 bytes of a Fernet key, or None when *text* is not one."""
    try:
        Fernet(text)  # the same rule as everywhere a Fernet key is read
        return base64.urlsafe_b64decode(text)
    except (ValueError, TypeError):
        return None


class KeyRing:
    """The ordered keys of a store: the first encrypts, each decrypts the rows on its id.

    *keys* is one key, ``"new,old"`` (keys joined by commas), or a sequence of keys (`str` or
    `bytes`); *source* says where they came from, for messages ("HUB_SECRET_KEYS"). An empty
    entry, a malformed key or a key given twice is a `BadKey` naming the entry, never its
    value. The repr shows key ids only.
    """

    __slots__ = ("_by_id", "_keys", "source")

    def __init__(self, keys: str | bytes | Sequence[str | bytes], *, source: str) -> None:
        entries = _split(keys)
        self.source = source
        if not entries:
            raise BadKey(f"{source} holds no key: expected {_VALID}", source)
        found: list[_Key] = []
        for n, entry in enumerate(entries, start=1):
            where = source if len(entries) == 1 else f"key {n} of {source}"
            text = entry.strip()
            if not text:
                raise BadKey(
                    f"{where} is empty (two commas in a row, or one at an end?): expected {_VALID}",
                    where,
                )
            raw = _raw(text)
            if raw is None:
                joined = "; keys are joined with commas" if len(text.split()) > 1 else ""
                raise BadKey(
                    f"the secret key from {where} is not a valid hub key: expected "
                    f"{_VALID}{joined}",
                    where,
                )
            key = _Key(raw, where)
            for other in found:
                if other.id == key.id:
                    raise BadKey(
                        f"{where} is the same key as {other.where}: give each key once", where
                    )
            found.append(key)
        self._keys = tuple(found)
        self._by_id = {key.id: key for key in found}

    @classmethod
    def coerce(cls, keys: KeyRing | str | bytes | Sequence[str | bytes], *, source: str) -> KeyRing:
        """*keys* as a ring: a ring as it is, anything else read as `KeyRing` reads it."""
        return keys if isinstance(keys, KeyRing) else cls(keys, source=source)

    @classmethod
    def from_environment(cls, key_file: Path) -> KeyRing | None:
        """The ring from ``HUB_SECRET_KEYS``, else ``HUB_SECRET_KEY``; None when neither is set.

        Set but empty is a `BadKey` (an unfilled template, a secret that did not arrive), never
        a fall back to *key_file*: that could make a new key no other process has. Both set is
        a `BadKey` too: which one is meant cannot be told.
        """
        many, one = os.environ.get(KEYS_ENV), os.environ.get(KEY_ENV)
        if many is not None and one is not None:
            raise BadKey(
                f"both {KEYS_ENV} and {KEY_ENV} are set: set only {KEYS_ENV} (the keys, the one "
                "that encrypts first, joined by commas)",
                KEYS_ENV,
            )
        for name, value in ((KEYS_ENV, many), (KEY_ENV, one)):
            if value is None:
                continue
            if not value.strip():
                raise BadKey(
                    f"{name} is set but empty: set it to the store's key ({_VALID}), or unset "
                    f"it to use the key file {key_file}",
                    name,
                )
            return cls(value, source=name)
        return None

    @classmethod
    def from_key_file(cls, path: Path) -> KeyRing | None:
        """The ring in the key file *path* (one key per line, blank lines ignored), or None."""
        try:
            text = path.read_text(encoding="ascii", errors="replace")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"cannot read the key file {path}: {exc}") from exc
        lines = [line for line in text.splitlines() if line.strip()]
        return cls(lines, source=f"the key file {path}")

    # --- what it holds ----------------------------------------------------------------------

    @property
    def ids(self) -> tuple[str, ...]:
        """The key ids, in order: the first is the key that encrypts."""
        return tuple(key.id for key in self._keys)

    @property
    def primary_id(self) -> str:
        """The id of the key that encrypts new and re-encrypted rows."""
        return self._keys[0].id

    def where(self, key_id: str) -> str:
        """Which configured key has *key_id* ("key 2 of HUB_SECRET_KEYS")."""
        return self._by_id[key_id].where

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._by_id

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"<KeyRing from {self.source}: key ids {', '.join(self.ids)}>"

    # --- using it ---------------------------------------------------------------------------

    def encrypt(self, data: bytes) -> tuple[str, bytes]:
        """*data* encrypted with the first key, and that key's id (to store beside it)."""
        key = self._keys[0]
        return key.id, key.fernet.encrypt(data)

    def decrypt(self, token: bytes | str, key_id: str | None = None) -> bytes:
        """*token* decrypted with the key *key_id*, or with whichever key can when it is None.

        *token* is what `encrypt` or `reencrypt` made. Raise `KeyError` when no key of the
        ring has *key_id*, `InvalidToken` when the token does not decrypt.
        """
        token = _token(token)
        if key_id is not None:
            return self._by_id[key_id].fernet.decrypt(token)
        for key in self._keys:
            try:
                return key.fernet.decrypt(token)
            except InvalidToken:
                continue
        raise InvalidToken

    def decrypt_many(
        self, stored: Sequence[tuple[bytes | str, str | None]]
    ) -> list[bytes | Exception]:
        """Each of *stored* (a token and its key id, as `decrypt` takes them) decrypted, or
        the exception `decrypt` raises for it: the same outcomes, for less than a Fernet
        decryption each (a lease decrypts hundreds of keys at once).

        Each token's HMAC is verified first, as Fernet does, and only a token that passes is
        decrypted; the tokens of one key are then decrypted in one AES call. Anything else (a
        token on no key id, or that fails any check) is left to `decrypt` itself.
        """
        out: list[bytes | Exception | None] = [None] * len(stored)
        # Per key: the tokens that passed their HMAC, as (place in *stored*, IV, ciphertext).
        verified: dict[str, list[tuple[int, bytes, bytes]]] = {}
        for n, (token, key_id) in enumerate(stored):
            key = self._by_id.get(key_id) if isinstance(key_id, str) else None
            plain = None if key is None else _fernet_parts(key, _token(token))
            if plain is None:
                out[n] = self._decrypt_one(token, key_id)
            else:
                verified.setdefault(key.id, []).append((n, *plain))  # type: ignore[union-attr]
        for key_id, tokens in verified.items():
            key = self._by_id[key_id]
            for (n, _, _), text in zip(tokens, _decrypt_verified(key, tokens), strict=True):
                out[n] = text if text is not None else self._decrypt_one(*stored[n])
        return [text for text in out if text is not None]

    def _decrypt_one(self, token: bytes | str, key_id: str | None) -> bytes | Exception:
        try:
            return self.decrypt(token, key_id)
        except (InvalidToken, KeyError, TypeError, ValueError) as exc:  # what `decrypt` raises
            return exc

    def reencrypt(self, stored: bytes | str, key_id: str | None = None) -> tuple[str, bytes]:
        """Stored secrets *stored* (on the key *key_id*, as `decrypt` takes it) encrypted with
        the first key instead, keeping their `secrets_version`; and the first key's id.

        Raise as `decrypt` does, having changed nothing.
        """
        version = secrets_version(stored)
        new_id, token = self.encrypt(self.decrypt(stored, key_id))
        return new_id, _CARRIED + version.encode("ascii") + b":" + token

    def check_token(self, key_id: str) -> str:
        """A new key check for the key *key_id*, to store with its id."""
        return self._by_id[key_id].fernet.encrypt(CHECK_PLAINTEXT).decode("ascii")

    def passes(self, key_id: str, check: str) -> bool:
        """Whether the key *key_id* decrypts the key check *check*."""
        try:
            return self._by_id[key_id].fernet.decrypt(check) == CHECK_PLAINTEXT
        except InvalidToken:
            return False

    def opens(self, check: str) -> str | None:
        """The id of the key that decrypts *check* (a key check stored without an id), or None."""
        for key in self._keys:
            if self.passes(key.id, check):
                return key.id
        return None

    def derive(self, purpose: str) -> bytes:
        """A 32-byte key for *purpose* derived from the first key (HKDF-SHA256).

        The same on every host with the same first key; another purpose gets an unrelated
        key, and a new first key new ones (rotating the ring rotates link tokens and cookies).
        """
        hkdf = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"hub " + purpose.encode()
        )
        # A Fernet key is its signing key followed by its encryption key: the same material
        # the store derived from before the ring, so links signed then still verify.
        return hkdf.derive(self._keys[0].raw)


#: A Fernet token: version byte, 8 bytes of time, 16 of IV, the ciphertext (whole AES blocks,
#: at least one), 32 of HMAC-SHA256 over all that precedes it.
_FERNET_VERSION = 0x80
_IV_START, _CIPHERTEXT_START, _MAC_LENGTH, _BLOCK = 9, 25, 32, 16
_URLSAFE = bytes.maketrans(b"-_", b"+/")


def _fernet_parts(key: _Key, token: bytes | str) -> tuple[bytes, bytes] | None:
    """The IV and ciphertext of *token* when its HMAC verifies with *key* (what Fernet checks
    before it decrypts anything); None for any token that is not so (`decrypt` says why)."""
    if not isinstance(token, bytes):
        return None
    try:
        # What base64.urlsafe_b64decode (Fernet's decoding) does, without its Python layers.
        data = binascii.a2b_base64(token.translate(_URLSAFE))
    except ValueError:  # binascii.Error
        return None
    size = len(data) - _CIPHERTEXT_START - _MAC_LENGTH
    if size < _BLOCK or size % _BLOCK or data[0] != _FERNET_VERSION:
        return None
    signer = key.signer.copy()
    signer.update(data[:-_MAC_LENGTH])
    if not hmac.compare_digest(signer.finalize(), data[-_MAC_LENGTH:]):
        return None
    return data[_IV_START:_CIPHERTEXT_START], data[_CIPHERTEXT_START:-_MAC_LENGTH]


def _decrypt_verified(key: _Key, tokens: Sequence[tuple[int, bytes, bytes]]) -> list[bytes | None]:
    """The plaintexts of verified tokens (place, IV, ciphertext) of *key*: AES-128-CBC with
    PKCS7 padding, as Fernet decrypts, for all of them in one AES call. None for one whose
    padding is wrong (which its HMAC makes impossible; `decrypt` then says so)."""
    # CBC decryption is P[i] = AES-decrypt(C[i]) XOR C[i-1], C[-1] being the IV: every block
    # of every token decrypted in one call, then XORed with the blocks before them at once.
    ciphertext = b"".join(body for _, _, body in tokens)
    chained = b"".join(iv + body[:-_BLOCK] for _, iv, body in tokens)
    decryptor = key.blocks.decryptor()
    blocks = decryptor.update(ciphertext) + decryptor.finalize()
    plain = (int.from_bytes(blocks, "big") ^ int.from_bytes(chained, "big")).to_bytes(
        len(blocks), "big"
    )
    out: list[bytes | None] = []
    start = 0
    for _, _, body in tokens:
        padded = plain[start : start + len(body)]
        start += len(body)
        pad = padded[-1]
        if not 1 <= pad <= _BLOCK or padded[-pad:] != bytes([pad]) * pad:
            out.append(None)
            continue
        out.append(padded[:-pad])
    return out


def _split(keys: str | bytes | Sequence[str | bytes]) -> list[str]:
    if isinstance(keys, bytes):
        keys = keys.decode("ascii", errors="replace")
    if isinstance(keys, str):
        return keys.split(",")
    return [
        key.decode("ascii", errors="replace") if isinstance(key, bytes) else str(key)
        for key in keys
    ]


# --- what the store reports ---------------------------------------------------------------------


@attrs.frozen
class KeyState:
    """One key id a store knows: how many accounts are on it, and where it is configured."""

    id: str
    #: Accounts whose secrets are encrypted with this key.
    accounts: int
    #: Which configured key it is ("key 2 of HUB_SECRET_KEYS"); None when not configured.
    configured: str | None
    #: Its place in the ring (1 encrypts new rows); None when not configured.
    position: int | None
    #: Whether the database holds a key check for it.
    checked: bool


@attrs.frozen
class KeyStatus:
    """The keys of a store (`Store.key_status`): configured ones in order, then the others."""

    #: The id of the key that encrypts new and re-encrypted rows.
    encrypts: str
    keys: list[KeyState]

    @property
    def to_rotate(self) -> int:
        """Accounts not on the key that encrypts: what `hub keys rotate` would re-encrypt."""
        return sum(key.accounts for key in self.keys if key.id != self.encrypts)


@attrs.frozen
class RotationReport:
    """What `Store.rotate_keys` did."""

    #: The key id every re-encrypted row is on now.
    key_id: str
    #: Rows re-encrypted by this run.
    rotated: int
    #: Accounts whose stored secrets do not decrypt with their key (changed outside hub):
    #: left as they are, on their old key.
    unreadable: list[str]
