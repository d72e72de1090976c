"""Where the web Hub's blocking work runs, so the server's event loop never waits on it.

- `StoreThread`: one thread with its own connection to the store (`Store.connect_again`);
  every store call of a page runs there, one at a time, in the order asked.
- `Checker`: one thread with its own event loop and its own store connection, for
  re-checks ("Check now", "Check all"). A long "Check all" shares neither the server's loop
  nor the page's store connection, so pages stay quick while it runs. Its `AccountChecked`
  events are delivered from this thread (an async ``on_event`` on its loop).

A Connect or Relink check itself runs on the server's loop through the async API
(`Accounts.alink`), which waits on the network without blocking; only its store write goes to
the `StoreThread`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import math
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, TypeVar

import attrs

from hub_core.accounts import Accounts
from hub_core.errors import describe
from hub_core.status import Status
from hub_core.store_thread import StoreThread as _StoreThread

if TYPE_CHECKING:
    from hub_core.events import EventHandler
    from hub_core.hub import Hub
    from hub_core.model import Account
    from hub_core.store_protocol import AccountStore

__all__ = ["CheckAll", "Checker", "StoreThread"]

T = TypeVar("T")


class StoreThread(_StoreThread):
    """One thread that owns a connection to the store (`hub_core.store_thread.StoreThread`),
    with the `Accounts` of the web Hub's pages over it."""

    def __init__(
        self, hub: Hub, store: AccountStore, *, on_event: EventHandler | None = None
    ) -> None:
        super().__init__(store)
        self._on_event = on_event
        self._accounts: Accounts | None = None
        self._hub = hub

    async def accounts(self) -> Accounts:
        """`Accounts` over the thread's own store, its store calls run on the thread."""
        if self._accounts is None:
            store = await self.run(self._open)
            self._accounts = Accounts(
                self._hub, store, run_store=self.run, on_event=self._on_event, via="dashboard"
            )
        return self._accounts


@attrs.define
class CheckAll:
    """The progress of one "Check all": read by pages while the checker thread updates it."""

    total: int = 0
    done: int = 0
    #: How many accounts ended in each status so far.
    statuses: dict[str, int] = attrs.field(factory=dict)
    started: float = attrs.field(factory=time.time)
    finished: float | None = None
    #: Why the run stopped early, in hub's words; None when it ran to the end.
    failure: str | None = None
    #: The providers whose check budget (`hub limits`) the run waits for, and until when.
    waiting_for: tuple[str, ...] = ()
    waiting_until: float | None = None

    @property
    def running(self) -> bool:
        """Whether the run is still going."""
        return self.finished is None

    def wait(self, providers: tuple[str, ...], delay: timedelta) -> None:
        """Record that the run waits *delay* for the budget of *providers*."""
        self.waiting_for, self.waiting_until = providers, time.time() + delay.total_seconds()

    @property
    def waiting(self) -> int | None:
        """Seconds the run still waits for a budget (None: it does not wait)."""
        if self.waiting_until is None or not self.running:
            return None
        left = self.waiting_until - time.time()
        return math.ceil(left) if left > 0 else None

    def count(self, account: Account) -> None:
        """Record one account's verdict."""
        self.done += 1
        self.statuses[account.status.value] = self.statuses.get(account.status.value, 0) + 1

    @property
    def needs_attention(self) -> int:
        """Accounts that ended in a status other than active or expiring."""
        fine = {Status.ACTIVE.value, Status.EXPIRING.value}
        return sum(n for status, n in self.statuses.items() if status not in fine)


class Checker:
    """A thread with its own event loop and store connection, for re-checks."""

    def __init__(
        self,
        hub: Hub,
        store: AccountStore,
        *,
        concurrency: int,
        on_event: EventHandler | None = None,
    ) -> None:
        self._hub = hub
        self._on_event = on_event
        self._origin = store
        self._concurrency = concurrency
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._accounts: Accounts | None = None
        self.check_all: CheckAll | None = None

    def progress(self) -> CheckAll | None:
        """A copy of the last "Check all" as it stands: a page reads it before the accounts,
        so a run that ends in between is shown running beside the rows read before its end."""
        current = self.check_all
        if current is None:
            return None
        return attrs.evolve(current, statuses=dict(current.statuses))

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                ready = threading.Event()
                loop = asyncio.new_event_loop()

                def serve() -> None:
                    asyncio.set_event_loop(loop)
                    ready.set()
                    loop.run_forever()
                    loop.close()

                self._thread = threading.Thread(target=serve, name="hub-checker", daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    def _submit(self, work: Callable[[Accounts], Awaitable[T]]) -> concurrent.futures.Future[T]:
        async def on_the_thread() -> T:
            if self._accounts is None:
                self._accounts = Accounts(
                    self._hub,
                    self._origin.connect_again(),
                    on_event=self._on_event,
                    via="dashboard",
                )
            return await work(self._accounts)

        return asyncio.run_coroutine_threadsafe(on_the_thread(), self._start())

    async def check(self, account_id: str) -> Account | None:
        """Re-check one account now; None when it was unlinked meanwhile."""
        checked = await asyncio.wrap_future(self._submit(lambda a: a.check([account_id])))
        return checked[0] if checked else None

    def start_check_all(self, total: int) -> CheckAll:
        """Start re-checking every account in the background, unless a run is going."""
        with self._lock:
            if self.check_all is not None and self.check_all.running:
                return self.check_all
            progress = self.check_all = CheckAll(total=total)

        async def run(accounts: Accounts) -> None:
            try:
                # As `hub check --all`: leased, so other checkers of the store share the run
                # and no account is checked twice, and within each provider's budget.
                await accounts.check_all(
                    concurrency=self._concurrency, on_result=progress.count, on_wait=progress.wait
                )
            except Exception as exc:  # shown on the Accounts page; the verdicts reached are kept
                progress.failure = describe(exc)
            finally:
                progress.finished = time.time()

        self._submit(run)
        return progress

    def close(self) -> None:
        """Stop the thread (a running check ends with it) and close its connection."""
        with self._lock:
            loop, self._loop = self._loop, None
        if loop is None:
            return

        async def shutdown() -> None:
            running = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            if self._accounts is not None:
                self._accounts.store.close()

        with_timeout = asyncio.run_coroutine_threadsafe(shutdown(), loop)
        with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
            with_timeout.result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
