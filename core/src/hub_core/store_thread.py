"""`StoreThread`: one thread that owns a connection to a store, so an event loop never waits on it.

A store object is used from one thread (`hub_core.store_protocol`); the thread opens its own
(`AccountStore.connect_again`) on its first call and runs every call handed to it one at a
time, in the order handed. sqlite3 and psycopg release the GIL while they wait on the
database, so the loop's checks keep running meanwhile. The web Hub runs a page's store calls
on one (`hub_core.web.workers.StoreThread`); `Accounts.check_all` and `Accounts.work` run each
run's lease, record and release calls on one of their own when the store waits on a server
(`AccountStore.waits_on_server`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from .store_protocol import AccountStore

__all__ = ["StoreThread"]

T = TypeVar("T")


class StoreThread:
    """One thread that owns a connection to *store*'s database; `submit` hands it a call."""

    def __init__(self, store: AccountStore) -> None:
        self._origin = store
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="hub-store")
        self._store: AccountStore | None = None

    def _open(self) -> AccountStore:
        if self._store is None:
            self._store = self._origin.connect_again()
        return self._store

    def submit(self, method: Callable[[AccountStore], T]) -> asyncio.Future[T]:
        """Start ``method(store)`` on the thread and give back its future at once.

        Calls run one at a time in the order submitted, so a write submitted before a read is
        done before it, without the caller waiting in between. Call it from the event loop.
        """
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._executor, lambda: method(self._open()))

    async def run(self, call: Callable[[], T]) -> T:
        """Run *call* on the thread (its connection opened first) and return (or raise) what
        it does: a `hub_core.accounts.StoreRunner`."""
        return await self.submit(lambda _: call())

    async def call(self, method: Callable[[AccountStore], T]) -> T:
        """Run ``method(store)`` on the thread, with the thread's store."""
        return await self.submit(method)

    def call_sync(self, method: Callable[[AccountStore], T]) -> T:
        """`call` for a caller off the event loop: blocks until the thread has run it."""
        return self._executor.submit(lambda: method(self._open())).result()

    def _close_store(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def close(self) -> None:
        """Close the thread's connection and stop the thread."""
        # Already shut down, or stuck: then the connection goes with the process.
        with contextlib.suppress(RuntimeError, concurrent.futures.TimeoutError):
            self._executor.submit(self._close_store).result(timeout=10)
        self._executor.shutdown(wait=False)

    async def aclose(self) -> None:
        """`close` from the event loop: the calls submitted before it finish first."""
        with contextlib.suppress(RuntimeError):
            await asyncio.get_running_loop().run_in_executor(self._executor, self._close_store)
        self._executor.shutdown(wait=False)
