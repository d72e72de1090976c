"""Where a store's next lease looks on from, in the order its leases take accounts.

A PostgreSQL lease takes the first free due rows in an index of the due time and ``seq``
(`PostgresStore.lease`). Every verdict moves its row to the end of that index, and the entry
it leaves behind stays until vacuum comes: a lease that looked from the start every time would
step over one dead entry for each account checked so far, and a run's leases would cost its
size squared. So each of a lease's queries (one for the providers without a budget, one per
budgeted provider, each capped on its own) looks on from where the store's last lease left
that query, and from the start only when nothing is free after that point, or when it has not
looked from the start for `LOOK_FROM_START_EVERY`: what became free behind it (another
checker's expired lease, a release, a retry come due) waits no longer than that.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import NamedTuple

__all__ = ["LOOK_FROM_START_EVERY", "Cursor", "LeaseCursors", "Query"]

#: How long a store's leases look on before looking from the start again.
LOOK_FROM_START_EVERY = timedelta(minutes=1)


class Cursor(NamedTuple):
    """The last row a lease took, in its lease's order, and when the leases last started over."""

    due: datetime | None  # None: the row had no due time, first in the order
    seq: int
    since: datetime


#: The leases' order (the column), their *checked_before* (None: a worker's) and the provider
#: the query is for (None: the providers without a budget).
Query = tuple[str, datetime | None, str | None]


class LeaseCursors:
    """One `Cursor` per query of a run, keyed by a `Query`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cursors: dict[Query, Cursor] = {}

    def start(self, query: Query, now: datetime) -> Cursor | None:
        """Where *query* of a lease at *now* looks on from; None: from the start."""
        with self._lock:
            cursor = self._cursors.get(query)
        if cursor is None or not cursor.since <= now < cursor.since + LOOK_FROM_START_EVERY:
            return None
        return cursor

    def ended(
        self,
        query: Query,
        last: tuple[datetime | None, int] | None,
        *,
        since: datetime,
    ) -> None:
        """*query* gave a lease rows up to *last* (None: it found none, even from the start),
        having last looked from the start at *since*."""
        with self._lock:
            if last is None:
                self._cursors.pop(query, None)
            else:
                self._cursors[query] = Cursor(*last, since)

    def clear(self) -> None:
        """Look from the start next time: rows were given back, behind where leases look on."""
        with self._lock:
            self._cursors.clear()
