"""The rows a store leased, kept until their verdicts are recorded.

A lease reads every leased row whole (``UPDATE ... RETURNING``) and builds its account;
recording its verdicts would read each row again before the verdict (and, on SQLite, once
more after, to give back the account as recorded). While nothing else has written those rows,
the rows as leased are the rows as they are: `HeldRows` keeps them, so that recording needs
neither read. Each backend says how it knows that nothing else has written them.

**SQLite** (`SqliteStore`; the reads were about a third of what recording cost). Nothing else
has written them when both hold:

- no other connection has committed anything since the lease: SQLite's
  ``PRAGMA data_version`` changes on every commit by another connection (a second
  ``hub check``, a hand edit), and each lease keeps its transaction's value;
- this store has written nothing that may touch a leased row: every write drops what is
  held, except the lease itself, verdicts recorded under a lease (each writes only its own
  lease's rows), a release of one lease (which drops that lease) and writes to other tables.

And each verdict's UPDATE still names its lease, so a row another lease of this same store
took meanwhile (the first one expired) is counted as not written and read as before.

**PostgreSQL** (`PostgresStore`; the read before the verdicts was a ``SELECT ... FOR UPDATE``,
which also locked each row). The guard is in the database, row by row: the lease keeps each
row's ``xmin`` (the transaction that wrote its current version), and the verdicts' UPDATE
writes a held row only while its ``xmin`` is still that one. A row any other transaction
wrote since (a relink, another lease after this one expired, a hand edit) is counted as not
written, and its verdict is then recorded on a fresh read, as it would be without. A held row
never decides more than that: a verdict it would refuse (the key now reaches another identity,
say) is also decided on a fresh read.
"""

from __future__ import annotations

import collections
import sqlite3
import threading
from collections.abc import Iterable
from typing import Any, NamedTuple

from .model import Account

__all__ = ["Held", "HeldRows", "data_version"]


class Held(NamedTuple):
    """One leased account: its row as the lease wrote it, and the account read from it."""

    #: A `sqlite3.Row`, or PostgreSQL's row as a dict (with its ``row_version``, the ``xmin``).
    row: Any
    account: Account


class HeldRows:
    """What one store leased and has not recorded yet, per lease token.

    At most `LEASES` leases are kept (a run holds two at a time); one more forgets the
    oldest, whose verdicts are then recorded by reading their rows, as they would be without.
    Safe to share between threads (a `PostgresStore` may be).
    """

    LEASES = 4

    def __init__(self) -> None:
        self._leases: collections.OrderedDict[str, tuple[int, dict[str, Held]]] = (
            collections.OrderedDict()
        )
        self._lock = threading.Lock()

    def keep(self, token: str, version: int, held: dict[str, Held]) -> None:
        """Keep *held* (by account id), leased by *token* at data version *version* (SQLite's
        ``data_version``; a backend that checks each row as it writes it passes 0)."""
        if not held:
            return
        with self._lock:
            self._leases[token] = (version, held)
            while len(self._leases) > self.LEASES:
                self._leases.popitem(last=False)

    def take(self, token: str, version: int, account_ids: Iterable[str]) -> dict[str, Held]:
        """The rows of *account_ids* leased by *token*, forgotten as they are given: only
        while the data version is still *version* (else nothing, and the lease is forgotten)."""
        with self._lock:
            kept = self._leases.get(token)
            if kept is None:
                return {}
            if kept[0] != version:
                del self._leases[token]
                return {}
            held = kept[1]
            taken = {i: held.pop(i) for i in account_ids if i in held}
            if not held:
                del self._leases[token]
            return taken

    def forget(self, token: str) -> None:
        """Forget what lease *token* holds (released)."""
        with self._lock:
            self._leases.pop(token, None)

    def clear(self) -> None:
        """Forget everything: the store wrote what may have changed a leased row."""
        with self._lock:
            self._leases.clear()

    def __len__(self) -> int:
        """How many accounts are held, over every lease."""
        with self._lock:
            return sum(len(held) for _, held in self._leases.values())


def data_version(conn: sqlite3.Connection) -> int:
    """SQLite's count of commits by other connections, as *conn* sees it now."""
    version: int = conn.execute("PRAGMA data_version").fetchone()[0]
    return version
