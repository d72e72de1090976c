"""Leases: how many checkers share a store's accounts, each account checked once (SCALE.md §2).

A checker leases a batch of due accounts (`Store.lease`): a random token and an expiry, written
in one short transaction before any request is sent. It records each verdict under the token
(`Store.record_many(lease=...)`), which clears the lease and says when the account is due
again. A checker that is killed or stalls past its lease writes nothing: another has the
accounts by then. These are the plain value types; the store holds the SQL.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import attrs

from .errors import StoreError
from .model import Account

__all__ = ["CHECK_INTERVAL", "LEASE_DEFAULT", "Lease", "LeasedAccount"]

#: How long a lease holds its accounts when none is given: longer than a batch of checks takes.
LEASE_DEFAULT = timedelta(minutes=5)
#: When `hub worker` checks an account again after a verdict, when no interval is given.
CHECK_INTERVAL = timedelta(hours=24)


@attrs.frozen
class LeasedAccount:
    """One account of a `Lease`: its values (key decrypted) and key version, or why not."""

    account: Account
    values: dict[str, str] | None = attrs.field(repr=False, default=None)
    version: str | None = None
    #: Why it cannot be checked (its key does not decrypt, its row was edited); None: it can.
    error: StoreError | None = None


@attrs.frozen
class Lease:
    """Accounts a checker holds until *until*; record their verdicts with its *token*."""

    token: str = attrs.field(repr=False)
    until: datetime
    accounts: list[LeasedAccount]
    #: With no accounts leased while some are due but held back by their provider's budget
    #: (its bucket is empty, `hub_core.budgets`): how long until one of those providers may
    #: be leased again, and which they are. None: nothing held back by a budget.
    wait: timedelta | None = None
    waiting_for: tuple[str, ...] = ()
    #: With no accounts leased: the providers paused after rate limits that have accounts
    #: due, and when the first pause ends (a worker waits for it; `hub check` does not).
    paused: tuple[str, ...] = ()
    paused_until: datetime | None = None
