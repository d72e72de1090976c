"""What every account store does around its statements, whichever database runs them.

Each backend is hand-written in its own SQL idiom (SCALE.md); the rules around its statements
exist once, here: the checks of a new link and of a link being used, a relink's checks, what
a verdict leaves on an account, how secrets are sealed and read back, the key checks and the
key-status report, and what a budget's row says. Each function takes values (a row read by
column name, as `sqlite3.Row` and psycopg's dict rows both are) and returns values or raises;
none runs a query.

Imported by `hub_core.store` and `hub_core.store_postgres`; ``import hub_core`` does not load it.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from cryptography.fernet import InvalidToken

from .budgets import ProviderLimit, Row, check_rate, limit_from_row
from .errors import (
    AccountNotFound,
    FieldError,
    HubError,
    InvalidCredentials,
    LinkUsed,
    PermissionDenied,
    PluginError,
    StoreError,
    redact,
)
from .keyring import KEYS_ENV, KeyRing, KeyState, KeyStatus, secrets_version
from .leases import LeasedAccount
from .model import Account, Credentials, Status, Verified
from .owners import check_owner, clean_owner_name
from .status import expiring_from
from .store_rows import json_object, parse_time, unlink_command
from .store_types import (
    LINK_DEFAULT_EXPIRY,
    LINK_MAX_EXPIRY,
    KeyReplaced,
    LeaseLost,
    Link,
    utc_now,
)

__all__ = [
    "UNSTORABLE",
    "SharedMethods",
    "budget_values",
    "check_recordable",
    "check_relink",
    "decrypt_secrets",
    "decrypt_secrets_many",
    "dropped_keys",
    "error_outcome",
    "failed_check",
    "key_replaced",
    "key_status",
    "lease_ends_anyway",
    "lease_lost",
    "leased_accounts",
    "limit_or_cleared",
    "limit_or_none",
    "link_values",
    "passing_keys",
    "plain_secrets",
    "recorded_expiry",
    "reencrypted",
    "sealed",
    "secret_values",
    "stored_values",
    "unstorable",
    "usable_link",
    "wrong_identity",
]

#: A row type, kept: `check_recordable` hands back the row it was given.
_R = TypeVar("_R", bound=Row)


# --- saving ---------------------------------------------------------------------------------


def sealed(ring: KeyRing, credentials: Credentials) -> tuple[str, str, bytes]:
    """*credentials* as stored: the non-secret fields as JSON, and the key id and token of
    the secret ones, encrypted with the ring's first key."""
    config = json.dumps(credentials.public())
    hidden = credentials.secret_names
    secret = {name: value for name, value in credentials.items() if name in hidden}
    key_id, token = ring.encrypt(json.dumps(secret).encode("utf-8"))
    return config, key_id, token


def check_relink(
    found: Row | None, account_id: str, provider_id: str, identity: str, owner: str | None
) -> None:
    """Refuse a relink of *account_id* whose row (its ``provider_id``, ``identity`` and
    ``owner``, None when it is gone) is not the account the new key was checked for."""
    if found is not None and owner is not None and found["owner"] != owner:
        raise AccountNotFound(account_id)  # another owner's: as if it did not exist
    if found is None:
        gone = AccountNotFound(account_id)
        gone.message = (
            f"account {account_id} was unlinked while its new key was being checked; "
            f"nothing was stored. Link it again with `hub link {provider_id}`"
        )
        raise gone
    if (found["provider_id"], found["identity"]) != (provider_id, identity):
        raise StoreError(
            f"account {account_id} is not {provider_id} {identity!r}; nothing was changed"
        )


# --- auth links -----------------------------------------------------------------------------


class SharedMethods:
    """The `AccountStore` methods whose logic is the same on every backend.

    A backend inherits them and gives them its key ring (``self._ring``), its `get`, and
    ``_add_link(link)``: the one statement that stores a new link.
    """

    _ring: KeyRing

    if TYPE_CHECKING:

        def get(self, id_or_prefix: str, *, owner: str | None = None) -> Account: ...

        def _add_link(self, link: Link) -> None: ...

    @property
    def key_ring(self) -> KeyRing:
        """The keys this store was opened with (its repr shows key ids only)."""
        return self._ring

    def derive_key(self, purpose: str) -> bytes:
        """A 32-byte key for *purpose*, derived from the first key of the ring (HKDF-SHA256).

        Every process that opens this store with the same first key gets the same key (so
        `hub link-url` signs what `hub serve` verifies), a different purpose gets an unrelated
        key, and a new first key (``new,old``) gives new keys: rotating rotates them.
        """
        return self._ring.derive(purpose)

    def create_link(
        self,
        provider_id: str | None,
        *,
        expires_in: timedelta = LINK_DEFAULT_EXPIRY,
        note: str | None = None,
        account_id: str | None = None,
        owner: str | None = None,
        owner_name: str | None = None,
        kind: str = "link",
        return_url: str | None = None,
        return_state: str | None = None,
        now: datetime | None = None,
    ) -> Link:
        """Store a new one-time link for *provider_id* (or to relink *account_id*).

        *expires_in* must be positive and at most `LINK_MAX_EXPIRY` (30 days), else
        `ValueError`. A relink link's account must exist, be *provider_id*'s (when given)
        and *owner*'s (when given): `AccountNotFound`, `StoreError`; it links for the
        account's owner. The account a link adds is *owner*'s (see `check_owner`). *kind*
        ``session`` is a host session (`hub_core.web`), with *return_url* and *return_state*;
        only a session may leave *provider_id* None (its visitor chooses). The link's random
        id is all a token carries.
        """
        if expires_in <= timedelta(0):
            raise ValueError("a link must expire in the future")
        if expires_in > LINK_MAX_EXPIRY:
            raise ValueError(f"a link may live at most {LINK_MAX_EXPIRY.days} days")
        if kind not in ("link", "session"):
            raise ValueError(f"a link's kind is 'link' or 'session', not {kind!r}")
        owner, owner_name = check_owner(owner), clean_owner_name(owner_name)
        now = utc_now(now)
        if account_id is not None:
            account = self.get(account_id, owner=owner)
            if provider_id is not None and account.provider_id != provider_id:
                raise StoreError(
                    f"account {account.id} is an account of provider {account.provider_id}, "
                    f"not {provider_id}; no link was made"
                )
            account_id, provider_id = account.id, account.provider_id
            owner, owner_name = account.owner, owner_name or account.owner_name
        if provider_id is None and kind != "session":
            raise ValueError("a link is for one provider: give its id")
        link = Link(
            secrets.token_hex(8),
            provider_id,
            account_id,
            note,
            now,
            now + expires_in,
            kind=kind,
            owner=owner,
            owner_name=owner_name,
            return_url=return_url,
            return_state=return_state,
        )
        self._add_link(link)
        return link


def link_values(link: Link, time: Callable[[datetime], object]) -> tuple[object, ...]:
    """The values of a new ``links`` row, in the order (id, kind, provider_id, account_id,
    note, created_at, expires_at, owner, owner_name, return_url, state); *time* turns a
    datetime into what the backend stores."""
    return (
        link.id,
        link.kind,
        link.provider_id,
        link.account_id,
        link.note,
        time(link.created_at),
        time(link.expires_at),
        link.owner or "",
        link.owner_name,
        link.return_url,
        link.return_state,
    )


def usable_link(
    link: Link | None, link_id: str, provider_id: str, account_id: str | None, now: datetime
) -> Link:
    """*link* (None: there is none) if a save of *provider_id* (relinking *account_id*) may
    use it up now, else `LinkUsed` saying why not."""
    if link is None:
        raise LinkUsed(link_id, "unknown")
    state = link.state(now)
    if state != "open":
        raise LinkUsed(link_id, state)
    if link.provider_id not in (None, provider_id) or link.account_id != account_id:
        raise LinkUsed(link_id, "scope")
    return link


# --- verdicts -------------------------------------------------------------------------------


def lease_lost(account_id: str) -> LeaseLost:
    """The verdict on an account whose lease another checker took."""
    return LeaseLost(
        f"the lease on account {account_id} expired and another checker took it; "
        "this verdict was dropped"
    )


def lease_ends_anyway(outcome: object) -> bool:
    """Whether *outcome*, of a verdict recorded under a lease, is a refusal that must still end
    the lease: refused (relinked meanwhile, another identity), not gone nor taken over."""
    return isinstance(outcome, StoreError) and not isinstance(outcome, AccountNotFound | LeaseLost)


def key_replaced(account_id: str) -> KeyReplaced:
    """The verdict on a key the account no longer holds (relinked while it was checked)."""
    return KeyReplaced(
        f"account {account_id} was relinked while its old key was being checked; "
        "the check's verdict on the old key was dropped"
    )


def wrong_identity(found: str, stored: object, account_id: str) -> StoreError:
    """A re-check whose key reaches *found*, not the *stored* identity of the account."""
    return StoreError(
        f"the key reaches {found!r}, not {stored!r} which account {account_id} is linked to; "
        "the account is unchanged"
    )


def check_recordable(
    row: _R | None,
    account_id: str,
    lease: tuple[str, datetime] | None,
    version: str | None,
) -> _R:
    """*row* (the account's ``lease_token`` and ``secrets``), if a verdict may be written on
    it: `AccountNotFound` when it is gone, `LeaseLost` when *lease* (its token) no longer
    holds it, `KeyReplaced` when it holds another key than *version* (`secrets_version`)."""
    if row is None:
        raise AccountNotFound(account_id)
    if lease is not None and row["lease_token"] != lease[0]:
        raise lease_lost(account_id)
    if version is not None and secrets_version(row["secrets"]) != version:
        # Compared and written in one transaction: a relink that landed after the check
        # read the key keeps its verdict; this one was about a key the account no longer has.
        raise key_replaced(account_id)
    return row


def recorded_expiry(
    result: Verified, row: Row, account_id: str, stored: Callable[[datetime | None], object]
) -> object:
    """The ``expiring_at`` a passed re-check leaves on the account of *row* (its
    ``identity``, ``expires_at`` and ``expiring_at``), as the backend stores it (*stored*);
    a key that reaches another identity is refused (`StoreError`)."""
    if result.identity != row["identity"]:
        raise wrong_identity(result.identity, row["identity"], account_id)
    expiring_at = stored(expiring_from(result.expires_at, result.created_at))
    if result.created_at is None and stored(result.expires_at) == row["expires_at"]:
        # The same expiry without its creation time (a lookup that failed this once): the
        # moment computed when it was known stands.
        expiring_at = row["expiring_at"]
    return expiring_at


def failed_check(
    ring: KeyRing, error: HubError, row: Row, now: datetime, key_id: object = None
) -> tuple[str, str, str]:
    """The verdict, ``last_error`` and details JSON a failed re-check leaves on the account
    of *row* (its ``verdict``, ``details``, ``expires_at`` and ``secrets``, on *key_id*)."""
    verdict, details = error_outcome(error, row["verdict"], row["details"], row["expires_at"], now)
    # Plugins must not put keys in messages; the stored ones are masked regardless.
    message = redact(str(error), secret_values(ring, row["secrets"], key_id))
    return verdict, message, json.dumps(details)


def error_outcome(
    error: HubError, verdict: object, details: object, expires_at: object, now: datetime
) -> tuple[str, dict[str, Any]]:
    """The verdict and details an *error* leaves on an account stored with *verdict*,
    *details* and *expires_at* (as read: a hand-edited value counts as absent).

    Two failed checks in a row keep the last real verdict in ``details["previous_status"]``.
    """
    kept = json_object(details) or {}
    try:
        expiry = parse_time(expires_at)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        expiry = None
    outcome = _verdict(error, expiry, now)
    if outcome == "error":
        if verdict != "error":
            kept["previous_status"] = verdict
    else:
        kept.pop("previous_status", None)
    return outcome, kept


def _verdict(error: HubError, expires_at: datetime | None, now: datetime) -> str:
    if isinstance(error, StoreError):  # the stored key cannot be read: nothing was checked
        return "damaged"
    if isinstance(error, InvalidCredentials):
        return "expired" if expires_at is not None and expires_at <= now else "invalid"
    if isinstance(error, FieldError):
        return "invalid"
    if isinstance(error, PermissionDenied):
        return "denied"
    return "error"


#: What a verdict's values raise that no database could store (text that is not Unicode, a
#: number out of range); each backend adds its driver's own data errors.
UNSTORABLE: tuple[type[Exception], ...] = (UnicodeError, ValueError, TypeError, OverflowError)


def unstorable(exc: BaseException) -> PluginError:
    """The error recorded instead of an outcome the database refused (*exc*)."""
    return PluginError(
        f"the outcome of this check could not be stored ({type(exc).__name__}); "
        "the provider's plugin returned data the account store cannot hold"
    )


# --- secrets --------------------------------------------------------------------------------


def stored_values(ring: KeyRing, row: Any, account_id: str) -> dict[str, str]:
    """An account's field values from its row (``config``, ``secrets``, ``key_id``), decrypted.

    `StoreError` when the fields were changed outside hub or the key does not decrypt.
    """
    values = json_object(row["config"])
    if values is None or not all(isinstance(v, str) for v in values.values()):
        raise StoreError(
            f"the stored fields of account {account_id} cannot be read (the row was "
            f"changed outside hub); unlink it with `{unlink_command(account_id)}` and link it "
            "again"
        )
    values.update(decrypt_secrets(ring, row["secrets"], account_id, row["key_id"]))
    return values


def secret_values(ring: KeyRing, token: object, key_id: object = None) -> list[str]:
    """The decrypted secret values of a stored key (to mask in messages); [] when unreadable."""
    values = plain_secrets(ring, token, key_id)
    return [] if values is None else list(values.values())


def plain_secrets(ring: KeyRing, token: object, key_id: object = None) -> dict[str, str] | None:
    """The decrypted secrets, or None when they cannot be read.

    *key_id* is the row's key id: its key decrypts. Without one (a caller that did not
    read it), each key of the ring is tried.
    """
    if not isinstance(token, bytes | str) or not isinstance(key_id, str | None):
        return None
    try:
        return _secrets_of(ring.decrypt(token, key_id))
    except (InvalidToken, KeyError, ValueError, TypeError):
        return None


#: JSON's C scanner behind a public call (json.loads adds an encoding guess, two regex
#: searches and a frame: a lease reads hundreds of these).
_raw_decode = json.JSONDecoder().raw_decode


def _secrets_of(text: bytes) -> dict[str, str] | None:
    """Decrypted secrets (a JSON object of strings), or None when they are not that."""
    values: dict[str, Any] | None = None
    try:  # as hub writes them: one UTF-8 JSON object, nothing around it
        decoded = text.decode("utf-8")
        parsed, end = _raw_decode(decoded)
        if end == len(decoded) and type(parsed) is dict:
            values = parsed
    except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        pass
    if values is None:  # anything else as json.loads reads it
        values = json_object(text)
    if values is None or not all(isinstance(v, str) for v in values.values()):
        return None
    return values


def decrypt_secrets(
    ring: KeyRing, token: object, account_id: str, key_id: object = None
) -> dict[str, str]:
    """The decrypted secrets of account *account_id*, or the `StoreError` saying why not."""
    if isinstance(key_id, str) and key_id not in ring:
        raise _unknown_key(ring, account_id, key_id)
    values = plain_secrets(ring, token, key_id)
    if values is None:
        raise _unreadable(account_id)
    return values


def decrypt_secrets_many(
    ring: KeyRing, stored: Sequence[tuple[object, str, object]]
) -> list[dict[str, str] | StoreError]:
    """`decrypt_secrets` of each of *stored* (token, account id, key id): the secrets, or the
    `StoreError` it raises; the keys decrypted together (`KeyRing.decrypt_many`)."""
    out: list[dict[str, str] | StoreError | None] = [None] * len(stored)
    readable: list[int] = []
    tokens: list[tuple[bytes | str, str | None]] = []
    for n, (token, account_id, key_id) in enumerate(stored):
        if isinstance(key_id, str) and key_id not in ring:
            out[n] = _unknown_key(ring, account_id, key_id)
        elif not isinstance(token, bytes | str) or not isinstance(key_id, str | None):
            out[n] = _unreadable(account_id)
        else:
            readable.append(n)
            tokens.append((token, key_id))
    texts = ring.decrypt_many(tokens)
    for n, text in zip(readable, texts, strict=True):
        values = None if isinstance(text, Exception) else _secrets_of(text)
        out[n] = _unreadable(stored[n][1]) if values is None else values
    return [values for values in out if values is not None]


def leased_accounts(
    ring: KeyRing, rows: Sequence[Any], accounts: Sequence[Account]
) -> list[LeasedAccount]:
    """The leased form of *accounts*, read from *rows* (each with ``secrets`` and ``key_id``):
    each with its field values, its keys decrypted together, or the error that stops its check.

    A damaged account gets neither (the run reports it); the others' config was read whole,
    every value a string, when the account was built, so it is not parsed again.
    """
    readable = [n for n, account in enumerate(accounts) if account.status is not Status.DAMAGED]
    stored = [(rows[n]["secrets"], accounts[n].id, rows[n]["key_id"]) for n in readable]
    decrypted = dict(zip(readable, decrypt_secrets_many(ring, stored), strict=True))
    leased = []
    for n, (row, account) in enumerate(zip(rows, accounts, strict=True)):
        secret = decrypted.get(n)
        if secret is None:  # damaged
            leased.append(LeasedAccount(account))
        elif isinstance(secret, StoreError):
            leased.append(LeasedAccount(account, error=secret))
        else:
            values = {**account.config, **secret}
            leased.append(LeasedAccount(account, values, secrets_version(row["secrets"])))
    return leased


def _unknown_key(ring: KeyRing, account_id: str, key_id: str) -> StoreError:
    # Refused on opening; here only when another process wrote it with another ring.
    return StoreError(
        f"the stored key of account {account_id} is encrypted with key id {key_id}, "
        f"which is not among the configured keys ({ring.source}); add that key "
        f"to {KEYS_ENV}"
    )


def _unreadable(account_id: str) -> StoreError:
    return StoreError(
        f"the stored key of account {account_id} cannot be read: it cannot be "
        "decrypted with this store's secret key (it was changed or copied outside "
        f"hub); give it its key again with `hub relink {account_id}`, or unlink it"
    )


# --- keys -----------------------------------------------------------------------------------


def reencrypted(ring: KeyRing, token: bytes | str, key_id: str | None) -> tuple[str, bytes] | None:
    """*token* (secrets on *key_id*) encrypted with the ring's first key, as its key id and
    token; None when it does not decrypt with its key (`rotate_keys` leaves it, and says so)."""
    try:
        # Its version kept: a check in flight records its verdict on the key, which a
        # rotation does not change.
        return ring.reencrypt(token, key_id)
    except (InvalidToken, TypeError, ValueError):
        return None


def passing_keys(
    ring: KeyRing, checks: Mapping[str | None, str] | Mapping[str, str], database: str
) -> list[str]:
    """The ids of the ring's keys the database has *checks* for, once each passed its own;
    `StoreError` naming the key and *database* ("this database (…)") for one that fails."""
    known = [key_id for key_id in ring.ids if key_id in checks]
    for key_id in known:
        if not ring.passes(key_id, checks[key_id]):
            raise StoreError(
                f"the secret key from {ring.where(key_id)} fails its key check in {database}: "
                f"the check stored for key id {key_id} does not decrypt with it (changed "
                "outside hub?); nothing was read or changed"
            )
    return known


def dropped_keys(database: str, ring: KeyRing, dropped: Mapping[str, int]) -> StoreError:
    """The refusal to open *database* whose accounts are on key ids (with their counts) that
    no key of *ring* has."""
    counts = ", ".join(
        f"{n} account{'s' * (n != 1)} on key id {key_id}" for key_id, n in dropped.items()
    )
    return StoreError(
        f"the account database {database} has {counts}, which no configured key "
        f"({ring.source}: key ids {', '.join(ring.ids)}) decrypts: someone dropped a key "
        f"too early. Put it back (last in {KEYS_ENV}), run `hub keys rotate`, and drop "
        "it once `hub keys status` shows no account on it; nothing was read or changed"
    )


def key_status(ring: KeyRing, counts: Mapping[str | None, int], checked: set[str]) -> KeyStatus:
    """`AccountStore.key_status` from the accounts per key id (None: rows without one) and
    the key ids the database has a check for: the ring's keys in order, then the others."""
    left = dict(counts)
    keys = [
        KeyState(key_id, left.pop(key_id, 0), ring.where(key_id), n, key_id in checked)
        for n, key_id in enumerate(ring.ids, start=1)
    ]
    others = sorted(set(left) | (checked - set(ring.ids)), key=lambda k: (k is None, k))
    keys += [
        KeyState(key_id or "(none)", left.get(key_id, 0), None, None, key_id in checked)
        for key_id in others
    ]
    return KeyStatus(ring.primary_id, keys)


# --- budgets (`hub_core.budgets`) ----------------------------------------------------------


def budget_values(rate: float | None, burst: int | None) -> tuple[float | None, int | None]:
    """*rate* and *burst* as `AccountStore.set_limit` stores them: checked (`check_rate`,
    `ValueError` before anything is written) unless *rate* is None (the budget removed)."""
    if rate is None:
        return None, burst
    return check_rate(rate, burst)


def limit_or_cleared(provider_id: str, row: Row | None) -> ProviderLimit:
    """The provider's limit from its row; an empty one when the row is gone (nothing left)."""
    return ProviderLimit(provider_id) if row is None else limit_from_row(row)


def limit_or_none(row: Row | None) -> ProviderLimit | None:
    """The provider's limit from its row; None when it has none."""
    return None if row is None else limit_from_row(row)
