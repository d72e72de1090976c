"""Events: what `Accounts` tells a host application after each change it made.

Give ``Accounts(..., on_event=callback)`` (or ``WebConfig(on_event=...)`` for the web Hub) a
callable taking one `Event`. It is called after the store write succeeded, once per change:

- `AccountLinked` after `Accounts.link` / `alink` (``updated``: an existing identity's account
  was updated rather than a new one added);
- `AccountRelinked` after `relink` / `arelink`;
- `AccountUnlinked` after `unlink` / `aunlink`;
- `AccountChecked` for each verdict `check` recorded, with the status before and after;
- `LinkFailed` when a link or relink raised (nothing was stored), with the error's ``code``;
- `CredentialsRead` for each `Accounts.credentials` read, naming its ``reader``.

No event holds a secret, nor a piece of one: only ids, labels and identities (which the
provider's flow already cleared of the key), statuses and error codes, never an error's message.
Each event has a random ``id`` (for deduplication, once events travel further) and ``at``, the
UTC time it was made; ``to_json()`` gives it as JSON data.

``via`` says where the change came from: ``"api"`` (a host's own call to `Accounts`, the
default), ``"cli"`` (a ``hub`` command), ``"dashboard"`` (the web Hub's pages), ``"link"`` (an
auth link's visitor) and ``"session"`` (a host session's visitor; ``state`` is the host's
state of that session, ``source_id`` its id). It is a plain string, so a later source does not
break a host matching on it.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

import attrs

from .status import Status

__all__ = [
    "AccountChecked",
    "AccountLinked",
    "AccountRelinked",
    "AccountUnlinked",
    "CredentialsRead",
    "Event",
    "EventHandler",
    "LinkFailed",
]

#: JSON names of the attributes whose name would be ambiguous next to the event's own ``id``.
_JSON_NAMES = {"account_id": "account", "provider_id": "provider"}


def _new_id() -> str:
    return secrets.token_hex(16)


def _now() -> datetime:
    return datetime.now(UTC)


def _json_value(value: object) -> object:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, Status):
        return value.value
    return value


@attrs.frozen
class Event:
    """What every event has: a random ``id`` and the UTC time ``at`` which it was made."""

    #: The event's name in JSON (``"account.linked"``, ...).
    type: ClassVar[str] = "event"

    id: str = attrs.field(factory=_new_id, kw_only=True)
    at: datetime = attrs.field(factory=_now, kw_only=True)

    def to_json(self) -> dict[str, Any]:
        """The event as JSON data: ``type``, ``id``, ``at`` (ISO-8601 UTC) and its fields.

        ``account_id`` and ``provider_id`` are named ``account`` and ``provider``, as in an
        account's ``--json``.
        """
        data: dict[str, Any] = {"type": self.type}
        for field in attrs.fields(type(self)):
            data[_JSON_NAMES.get(field.name, field.name)] = _json_value(getattr(self, field.name))
        return data


@attrs.frozen
class _AccountEvent(Event):
    """What the events about one account's link say: which account, whose, and how it came."""

    account_id: str
    provider_id: str
    label: str
    identity: str
    #: Where it came from: ``"api"``, ``"cli"``, ``"dashboard"``, ``"link"`` or ``"session"``
    #: (see the module).
    via: str


@attrs.frozen
class AccountLinked(_AccountEvent):
    """An account was linked: a new one, or (``updated``) a known identity's, updated."""

    type: ClassVar[str] = "account.linked"

    #: True when an account of this identity existed and now holds the new key.
    updated: bool
    #: The host's id of whom the account is for (`Account.owner`); None for the operator's.
    owner: str | None = None
    #: The id of the auth link or host session it came through.
    source_id: str | None = None
    #: The host's ``state`` of that session, handed back as it was given.
    state: str | None = None


@attrs.frozen
class AccountRelinked(_AccountEvent):
    """An account's key was replaced by a new one reaching the same identity.

    ``owner``, ``source_id`` and ``state`` are as in `AccountLinked`.
    """

    type: ClassVar[str] = "account.relinked"

    owner: str | None = None
    source_id: str | None = None
    state: str | None = None


@attrs.frozen
class AccountUnlinked(_AccountEvent):
    """An account and its key were removed from the store."""

    type: ClassVar[str] = "account.unlinked"

    owner: str | None = None


@attrs.frozen
class AccountChecked(Event):
    """A re-check's verdict was recorded on an account.

    ``error_code`` is the `HubError` code of the failed check (``"invalid_credentials"``,
    ``"permission_denied"``, ``"store_error"`` for a key that no longer decrypts, ...), None
    when the key worked. A host hears here that a key expired or was revoked.
    """

    type: ClassVar[str] = "account.checked"

    account_id: str
    provider_id: str
    status: Status = attrs.field(converter=Status)
    previous_status: Status = attrs.field(converter=Status)
    error_code: str | None
    via: str


@attrs.frozen
class LinkFailed(Event):
    """A link or relink failed; nothing was stored.

    ``code`` is the error's stable `HubError.code`; ``field`` the provider's field at fault,
    when the error names one of its fields. ``account_id`` is the account a relink was for (None
    for a link); ``provider_id`` is None only when that account was not found.
    """

    type: ClassVar[str] = "link.failed"

    provider_id: str | None
    via: str
    code: str
    field: str | None
    account_id: str | None = None
    #: The id of the auth link or host session the attempt came through.
    source_id: str | None = None


@attrs.frozen
class CredentialsRead(Event):
    """A host application read an account's decrypted key (`Accounts.credentials`)."""

    type: ClassVar[str] = "credentials.read"

    account_id: str
    provider_id: str
    #: Who asked, as the host named it (``reader="billing-sync"``).
    reader: str


#: An ``on_event`` callback: sync, or async (a coroutine function), given each event.
EventHandler = Callable[[Event], Awaitable[None] | None]
