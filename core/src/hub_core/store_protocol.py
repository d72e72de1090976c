"""`AccountStore`: what every account store promises, whichever database is behind it.

`hub_core.store.SqliteStore` (``Store``) is the default, over stdlib sqlite3; a PostgreSQL
backend implements the same protocol in its own module (docs/store.md). Every caller (the CLI,
`Accounts`, the web Hub's store thread and checker, the webhook outbox) is typed against this
protocol, and the contract suite (``core/tests/contract/``) runs the same tests against each
backend.

What every backend guarantees, beside each method's own contract:

- Each write is one transaction: it lands whole or not at all, also when the process is
  killed, and two processes writing at once never lose or duplicate an account.
- Secrets are encrypted with the store's key ring before they reach the database; they never
  appear in an exception, a repr or a log.
- Times are timezone-aware; a naive *now* is a `ValueError`. *now* parameters exist for tests
  and replays; omitted, the current time is used.
- A store object is used from one thread; `connect_again` gives another thread its own.
  Its methods block (they are quick): an event loop calls them through a thread
  (`hub_core.store_thread.StoreThread`, `Accounts(run_store=...)`); a run of checks does so
  itself when the store `waits_on_server`.
- Every error a store raises is a `hub_core.errors.HubError` (`StoreError` and its kin), whose
  message says what happened and what was left unchanged.

This module imports nothing heavy: ``import hub_core`` may load it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, Self

from .leases import CHECK_INTERVAL, LEASE_DEFAULT
from .store_types import LINK_DEFAULT_EXPIRY

if TYPE_CHECKING:
    from .budgets import ProviderLimit
    from .errors import HubError, StoreError
    from .keyring import KeyStatus, RotationReport
    from .leases import Lease
    from .model import Account, Credentials, Status, Verified
    from .store_types import AccountPage, KeysetPage, Link, ListingKey, OutboxEntry

__all__ = ["AccountStore"]


class AccountStore(Protocol):
    """The linked accounts of one database, their secrets encrypted (see the module docstring).

    Account ids are lowercase hex, unique in the store; `get` also finds an account by a
    unique prefix of its id. An account is unique per (owner, provider, identity).
    """

    # --- lifecycle ------------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """Where the database is (a file for SQLite); shown in messages, never a secret."""
        ...

    @property
    def waits_on_server(self) -> bool:
        """Whether its calls mostly wait for a database server (PostgreSQL), not work here.

        A run of checks (`Accounts.check_all`, `Accounts.work`) then makes its store calls
        from a thread of its own, so the event loop checks on while the server answers. A
        store whose calls are this process's own work (SQLite) gains nothing from a thread
        but the hand-offs of the GIL, and keeps them on the loop.
        """
        ...

    def connect_again(self) -> AccountStore:
        """Another connection to the same database with the same keys, for another thread.

        Call it from the thread that will use the new store; close that store when done.
        """
        ...

    def close(self) -> None:
        """Release the connection; closing twice is harmless; a closed store raises `StoreError`."""
        ...

    def __enter__(self) -> Self:
        """The store itself; leaving the ``with`` block closes it."""
        ...

    def __exit__(self, *exc_info: object) -> None:
        """Close the store."""
        ...

    # --- accounts -------------------------------------------------------------------------------

    def save(
        self,
        provider_id: str,
        verified: Verified,
        credentials: Credentials,
        *,
        now: datetime | None = None,
        account_id: str | None = None,
        link_id: str | None = None,
        owner: str | None = None,
        owner_name: str | None = None,
    ) -> Account:
        """Store a freshly checked key and return its account, ``active``.

        An upsert: the identity already stored for this owner and provider keeps its id and
        ``linked_at`` (also under two concurrent saves); its label, fields, key and check are
        replaced. Secret fields are encrypted, the others stored as ``config``.

        Raises, changing nothing: `IdentityMismatch` when the stored account of this identity
        was linked with other non-secret values; with *account_id* (a relink)
        `AccountNotFound` when it is gone or another owner's, `StoreError` when it is another
        provider's or identity's; with *link_id* `LinkUsed` when the link is not open or is
        scoped to another provider or account. The link is used up in the same transaction
        (two racing saves of one link store one account), and its owner is the account's.
        """
        ...

    def get(self, id_or_prefix: str, *, owner: str | None = None) -> Account:
        """The account with this id, or the only one whose id starts with it.

        `AccountNotFound` when none matches (or only another *owner*'s), `AmbiguousAccount`
        (naming the candidates) when several do.
        """
        ...

    def accounts(
        self,
        *,
        provider: str | None = None,
        status: Status | str | None = None,
        owner: str | None = None,
        now: datetime | None = None,
    ) -> list[Account]:
        """The accounts ordered by provider, label and id, filtered by each argument given.

        *status* is as of *now*; an unknown status is a `ValueError`. A row the store cannot
        read is listed as ``damaged`` (the reason in ``last_error``), never hiding the others.
        """
        ...

    def page(
        self,
        *,
        provider: str | None = None,
        status: Status | str | None = None,
        owner: str | None = None,
        offset: int = 0,
        limit: int = 50,
        now: datetime | None = None,
    ) -> AccountPage:
        """One page of `accounts` (same order and filters) and how many match in all."""
        ...

    def iter_accounts(
        self,
        *,
        provider: str | None = None,
        status: Status | str | None = None,
        owner: str | None = None,
        batch: int = 500,
        now: datetime | None = None,
    ) -> Iterator[Account]:
        """`accounts`, yielded *batch* rows at a time by keyset: memory holds one batch.

        Every batch is read from one snapshot, taken at the first: the store as it was then,
        whatever is linked, unlinked or re-checked (a new label moves an account in the
        order) meanwhile, so no account is listed twice or skipped. The snapshot is a read
        transaction held until the listing is read to its end or closed (SQLite: on a
        connection of its own, writers go on meanwhile; PostgreSQL: one pooled connection).
        An unknown *status* is a `ValueError` before anything is read.
        """
        ...

    def page_after(
        self,
        after: ListingKey | None = None,
        *,
        provider: str | None = None,
        status: Status | str | None = None,
        owner: str | None = None,
        limit: int = 50,
        now: datetime | None = None,
    ) -> KeysetPage:
        """The page of `iter_accounts` after the key *after* (None: the first), with the key
        of the next page (None on the last)."""
        ...

    def credentials(self, account_id: str) -> dict[str, str]:
        """The account's field values, secrets decrypted (what re-checking it needs).

        `AccountNotFound` when there is none; `StoreError` when the stored values cannot be
        read (encrypted with a key the ring lacks, or changed outside hub).
        """
        ...

    def checkout(self, account_id: str) -> tuple[dict[str, str], str]:
        """`credentials` and the version of the stored key, read together.

        The version is opaque and changes whenever the key is replaced; `record` given it
        drops a verdict on a key the account no longer holds (`KeyReplaced`).
        """
        ...

    def delete(self, account_id: str) -> None:
        """Remove the account and its key; `AccountNotFound` when there is none."""
        ...

    def record(
        self,
        account_id: str,
        result: Verified | HubError,
        *,
        now: datetime | None = None,
        version: str | None = None,
    ) -> Account:
        """Store the outcome of re-checking the account's key; return the account updated.

        `Verified` (it must reach the stored identity, else `StoreError`, nothing changed)
        makes it ``active``; `InvalidCredentials` gives ``invalid`` (``expired`` once the
        stored expiry passed), `FieldError` ``invalid``, `PermissionDenied` ``denied``, a
        `StoreError` ``damaged``, any other `HubError` ``error`` (keeping the verdict from
        before in ``details["previous_status"]``). The message, stored keys masked, becomes
        ``last_error``. `AccountNotFound` when it is gone; `KeyReplaced` when *version* is
        not the stored key's. A `TypeError` for anything but `Verified` or `HubError`.
        """
        ...

    def record_many(
        self,
        results: Iterable[tuple[str, Verified | HubError]],
        *,
        now: datetime | None = None,
        versions: Mapping[str, str] | None = None,
        lease: str | None = None,
        next_check_in: timedelta = CHECK_INTERVAL,
    ) -> list[Account | StoreError]:
        """Store many outcomes (as `record` each) in one transaction; one result per outcome.

        An outcome that cannot be stored comes back as its `StoreError` (`AccountNotFound`,
        `KeyReplaced`, `LeaseLost`, another identity) and leaves that account unchanged; the
        others are stored all the same. With *lease* (a `Lease` token), an outcome is stored
        only while that lease holds its account (else `LeaseLost`); the lease is cleared and
        the account due again in *next_check_in*, or, for a `RateLimited` outcome, after the
        provider's ``retry_after`` (jittered) with its verdict left as it was.
        """
        ...

    # --- leases (SCALE.md §2) -------------------------------------------------------------------

    def lease(
        self,
        limit: int,
        *,
        checked_before: datetime | None = None,
        lease_for: timedelta = LEASE_DEFAULT,
        now: datetime | None = None,
    ) -> Lease:
        """Lease up to *limit* due accounts nobody holds, keys decrypted, committed at once.

        Due: ``next_check_at`` passed (or unset), or with *checked_before* not checked since;
        never before a ``Retry-After``. An account is held by one lease at a time, until its
        verdict is recorded under the token, it is released, or *lease_for* passes (then any
        checker may take it, and the old token writes nothing). Expiry is judged by the
        database's clock (or *now*), never a worker's.
        """
        ...

    def release(
        self,
        token: str,
        account_ids: Iterable[str] | None = None,
        *,
        next_check_in: timedelta | None = None,
        now: datetime | None = None,
    ) -> int:
        """Give back the accounts of lease *token* (all, or *account_ids*) unchecked.

        Others may lease them at once, or with *next_check_in* once it has passed. Accounts
        the token no longer holds are left alone. Return how many were released.
        """
        ...

    def renew(
        self, tokens: Iterable[str], *, lease_for: timedelta, now: datetime | None = None
    ) -> int:
        """Hold the accounts the leases *tokens* still hold for *lease_for* from now (the
        database's clock, or *now*): a run whose checks outlast their lease renews it, so no
        other checker takes them meanwhile. An account another checker leased since is left
        alone. Return how many were renewed."""
        ...

    def held_elsewhere(
        self,
        mine: Iterable[str] = (),
        *,
        checked_before: datetime,
        now: datetime | None = None,
    ) -> datetime | None:
        """When the first live lease of another checker (a token not in *mine*) on an account
        not checked since *checked_before* expires; None when there is none."""
        ...

    def next_due(self) -> datetime | None:
        """When the next account can be leased: it falls due, no live lease holds it and its
        provider's ``Retry-After`` has passed (None: no account; a past time: one can be now).
        """
        ...

    def due_count(self, *, checked_before: datetime | None = None) -> int:
        """Accounts not checked since *checked_before*, or all accounts without it."""
        ...

    def join_run(
        self, *, alive_for: timedelta = LEASE_DEFAULT, now: datetime | None = None
    ) -> tuple[str, datetime]:
        """Start a ``check --all`` run or join the earliest under way: its token and start.

        Runs that overlap share one start, so each account is checked once between them; a run
        not renewed (`keep_run`) within *alive_for* is forgotten.
        """
        ...

    def keep_run(
        self, token: str, *, alive_for: timedelta = LEASE_DEFAULT, now: datetime | None = None
    ) -> None:
        """Renew the run *token* for another *alive_for*."""
        ...

    def end_run(self, token: str) -> None:
        """The run *token* is over; ending an unknown or ended run is harmless."""
        ...

    # --- budgets (`hub_core.budgets`) ----------------------------------------------------------

    def limits(self) -> list[ProviderLimit]:
        """Every provider with a check budget or a rate-limit record, by provider id.

        A row no budget has (edited outside hub) is a `StoreError` naming the provider.
        """
        ...

    def set_limit(
        self,
        provider_id: str,
        rate: float | None,
        burst: int | None = None,
        *,
        now: datetime | None = None,
    ) -> ProviderLimit:
        """Give *provider_id* a budget of *rate* checks per second, at most *burst* at once.

        The bucket starts full; every checker of the store draws from it (`lease`). *rate*
        None removes the budget; a pause under way stays. `ValueError` for a rate or burst no
        budget has (`hub_core.budgets.check_rate`), before anything is written.
        """
        ...

    def lift_pause(self, provider_id: str) -> ProviderLimit | None:
        """End *provider_id*'s pause after its rate limits now; None when it has no record."""
        ...

    # --- auth links -----------------------------------------------------------------------------

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
        """Store a new one-time link (``link``, or a host ``session``) and return it, ``open``.

        `ValueError` for a lifetime not in (0, `LINK_MAX_EXPIRY`], another *kind*, or no
        *provider_id* outside a session. A relink link's account must exist and be
        *provider_id*'s and *owner*'s (`AccountNotFound`, `StoreError`); it links for the
        account's owner. The id is random: all a signed token carries.
        """
        ...

    def link(self, link_id: str) -> Link:
        """The link with this id, in any state; `LinkUsed` (reason ``unknown``) when none."""
        ...

    def links(self, *, include_closed: bool = False, now: datetime | None = None) -> list[Link]:
        """Links oldest first: the ``open`` and ``locked`` ones, or all (*include_closed*)."""
        ...

    def revoke_link(self, link_id: str, *, now: datetime | None = None) -> Link:
        """Withdraw a link (a used or revoked one is left as it is); `LinkUsed` when unknown."""
        ...

    def link_failed(self, link_id: str) -> Link:
        """Count a failed attempt on an unused link; at `LINK_ATTEMPTS` it is ``locked``."""
        ...

    # --- keys -----------------------------------------------------------------------------------

    def derive_key(self, purpose: str) -> bytes:
        """32 bytes derived from the ring's first key for *purpose* (HKDF-SHA256).

        The same first key gives the same bytes in every process; another purpose or another
        first key gives unrelated bytes.
        """
        ...

    def key_status(self) -> KeyStatus:
        """Accounts per key id: the configured keys in order, then any others the database has."""
        ...

    def rotate_keys(
        self,
        *,
        batch_size: int = 300,
        progress: Callable[[int, int], None] | None = None,
    ) -> RotationReport:
        """Re-encrypt every account not on the ring's first key with it, in short batches.

        Resumable and safe under kill -9 or several runs at once: a row changes secrets and key
        id together, only while it still holds what was read (a relink wins). Rows that do not
        decrypt are left as they are and named in the report.
        """
        ...

    # --- webhook outbox (`hub_core.webhooks`) ---------------------------------------------------

    def outbox_add(self, rows: Iterable[tuple[str, str, str]], *, now: float) -> int:
        """Add ``(event_id, event_type, body)`` rows, due at once, in one transaction.

        An event id already there is left as it is. Return how many were added.
        """
        ...

    def outbox_claim(self, *, now: float, limit: int, lease: float) -> list[OutboxEntry]:
        """Lease up to *limit* due rows (oldest first) for *lease* seconds to one sender.

        A row leased by another sender is not due until that lease runs out.
        """
        ...

    def outbox_settle(
        self,
        *,
        delivered: Iterable[int] = (),
        retry: Iterable[tuple[int, float, str]] = (),
        failed: Iterable[tuple[int, str]] = (),
        now: float,
    ) -> None:
        """Record attempts on claimed rows by ``seq``, each counting one attempt, in one
        transaction: *delivered*, *retry* ``(seq, next_attempt_at, error)``, *failed*
        ``(seq, error)`` (kept, marked failed). A row delivered already (by a sender that took
        it when this one's lease ran out) keeps that: it never becomes pending or failed again,
        and a late delivery of a failed one marks it delivered."""
        ...

    def outbox_next_due(self) -> float | None:
        """When the next pending row is due (its lease's end counts); None when none is."""
        ...

    def outbox_entries(self, *, state: str = "pending", limit: int = 100) -> list[OutboxEntry]:
        """Rows ``pending``, ``failed`` or ``delivered``, oldest first (else `KeyError`)."""
        ...

    def outbox_counts(self) -> dict[str, int]:
        """How many rows are ``pending``, ``failed`` and ``delivered``."""
        ...

    def outbox_prune(self, *, delivered_before: float) -> int:
        """Remove rows delivered before *delivered_before*; return how many."""
        ...

    def outbox_retry_failed(self, *, now: float) -> int:
        """Make every failed row due at *now* with its attempts reset; return how many."""
        ...
