"""The values every account store hands out, whichever database holds them.

`AccountPage`, `Link` (a one-time auth link or host session) and `OutboxEntry` (a webhook
outbox row), the errors a store raises beside those of `hub_core.errors` (`LeaseLost`,
`KeyReplaced`), and the limits on links. Every backend of `hub_core.store_protocol.AccountStore`
returns these; none of them knows about SQL. The lease values are in `hub_core.leases`.

This module imports only attrs and the standard library.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import attrs

from .errors import StoreError
from .model import Account

__all__ = [
    "LINK_ATTEMPTS",
    "LINK_DEFAULT_EXPIRY",
    "LINK_MAX_EXPIRY",
    "AccountPage",
    "KeyReplaced",
    "KeysetPage",
    "LeaseLost",
    "Link",
    "ListingKey",
    "OutboxEntry",
    "SchemaStatus",
    "utc_now",
]

#: A link's lifetime when none is given, and the longest one may have.
LINK_DEFAULT_EXPIRY = timedelta(days=7)
LINK_MAX_EXPIRY = timedelta(days=30)
#: Failed attempts after which a link locks: a leaked link is not a key-testing oracle.
LINK_ATTEMPTS = 10


def utc_now(now: datetime | None = None) -> datetime:
    """*now* in UTC, or the current time; a naive *now* is a `ValueError` (no guessed zone)."""
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be a timezone-aware datetime")
    return now.astimezone(UTC)


@attrs.frozen
class AccountPage:
    """One page of a listing: its accounts, and how many match in all."""

    accounts: list[Account]
    #: Accounts matching the filters, on every page together.
    total: int
    offset: int
    limit: int

    @property
    def has_next(self) -> bool:
        """Whether accounts follow this page."""
        return self.offset + len(self.accounts) < self.total


@attrs.frozen
class Link:
    """A one-time auth link (`Store.create_link`): the row behind a signed ``/l/<token>`` URL.

    Its `state` says whether it can still be used: ``open``, ``used``, ``revoked``,
    ``expired`` or ``locked`` (`LINK_ATTEMPTS` failed attempts).
    """

    id: str
    #: The provider it links; None for a host session that lets its visitor choose.
    provider_id: str | None
    #: The account a relink link replaces the key of; None for a link that adds one.
    account_id: str | None
    #: Who the link was made for ("Link requested for …"); shown to its visitor.
    note: str | None
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None
    #: The account the link linked, once used.
    used_account_id: str | None = None
    revoked_at: datetime | None = None
    failed_attempts: int = 0
    #: ``link`` (`hub link-url`) or ``session`` (a host application's `create_session`).
    kind: str = "link"
    #: The owner the account is linked for (see `Account.owner`), and the owner's name.
    owner: str | None = None
    owner_name: str | None = None
    #: Where a host session's visitor goes back to, and the host's opaque ``state``.
    return_url: str | None = None
    return_state: str | None = None

    def state(self, now: datetime | None = None) -> str:
        """``used``, ``revoked``, ``expired``, ``locked`` or ``open``, as of *now*."""
        if self.used_at is not None:
            return "used"
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at <= utc_now(now):
            return "expired"
        if self.failed_attempts >= LINK_ATTEMPTS:
            return "locked"
        return "open"


class LeaseLost(StoreError):
    """The lease on the account expired and another checker took it: the verdict was dropped."""

    code = "lease_lost"


class KeyReplaced(StoreError):
    """The account's key was replaced (relinked) after it was read: a verdict on the old key.

    `Store.record` raises it (`Store.record_many` returns it) when given the ``version`` of
    the key that was checked and the account now holds another; the account is unchanged.
    """

    code = "key_replaced"


@attrs.frozen
class OutboxEntry:
    """One row of the webhook outbox (`Store.outbox_claim`): an event bound for the webhook."""

    seq: int
    event_id: str
    event_type: str
    #: The exact JSON body every attempt sends.
    body: str
    created_at: float
    next_attempt_at: float
    attempts: int
    #: What the last failed attempt met (``HTTP 500``, ``timed out``), never a response body.
    last_error: str | None
    delivered_at: float | None
    failed_at: float | None


#: Where a keyset page starts: the last listed row's provider, label, id and rowid, as stored.
ListingKey = tuple[object, object, object, int]


@attrs.frozen
class KeysetPage:
    """One page of `AccountStore.page_after`: its accounts, and the key of the next page."""

    accounts: list[Account]
    #: Pass to `AccountStore.page_after` for the next page; None on the last page.
    after: ListingKey | None


@attrs.frozen
class SchemaStatus:
    """Where a database's schema stands against this hub's (``hub db status``)."""

    #: ``"sqlite"`` or ``"postgresql"``.
    backend: str
    #: The SQLite file, or the PostgreSQL URL with its password masked.
    database: str
    #: The database's schema version; 0 when it has no schema yet (or no file).
    version: int
    #: The schema version this hub knows up to (its last migration).
    hub_version: int
    #: PostgreSQL's oldest schema version whose hub may still use the database; None on
    #: SQLite (and before PostgreSQL has a schema).
    min_reader_version: int | None = None
    #: False for a SQLite file that is not there yet (opening it creates it).
    exists: bool = True

    @property
    def pending(self) -> tuple[int, ...]:
        """The migrations ``hub db upgrade`` would apply, in order (empty when none)."""
        return tuple(range(self.version + 1, self.hub_version + 1))

    @property
    def usable(self) -> bool:
        """Whether this hub can use the database (once `pending` is applied): a newer schema
        only while its ``min_reader_version`` allows this hub."""
        if self.version <= self.hub_version:
            return True
        return self.min_reader_version is not None and self.min_reader_version <= self.hub_version
