"""Linked accounts: keys checked by a `Hub`, kept in a `Store`.

`Accounts` is what the CLI and the web Hub call: link, relink, check, unlink. A failed check
stores nothing; a re-check records its verdict on the account. Each change is told to an
``on_event`` callback, after the store write (`hub_core.events`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import threading
import time
import traceback
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

import attrs

from .display_text import inert
from .errors import (
    AccountNotFound,
    HubError,
    IdentityMismatch,
    InvalidCredentials,
    RateLimited,
    StoreError,
)
from .events import (
    AccountChecked,
    AccountLinked,
    AccountRelinked,
    AccountUnlinked,
    CredentialsRead,
    Event,
    EventHandler,
    LinkFailed,
)
from .fields import validate_values
from .leases import CHECK_INTERVAL, LEASE_DEFAULT, Lease, LeasedAccount
from .model import Account, Credentials, Verified
from .owners import check_owner
from .status import Status
from .store_types import utc_now

if TYPE_CHECKING:
    from .hub import CheckItem, CheckResult, Hub
    from .store_protocol import AccountStore
    from .store_thread import StoreThread
    from .store_types import Link

__all__ = ["Accounts", "CheckRun", "StoreRunner"]

T = TypeVar("T")
#: Runs one store call somewhere the event loop does not wait on it (a thread that owns the
#: store's connection) and gives back its result; see `Accounts`.
StoreRunner = Callable[[Callable[[], T]], Awaitable[T]]

#: Re-check verdicts are written this many at a time, or at least this often: each write is
#: a transaction whose commit waits for the disk, with the event loop (and every check in
#: flight) waiting on it.
BATCH_SIZE = 250
BATCH_SECONDS = 0.5
#: How many accounts that are not active a `CheckRun` keeps (the rest it counts).
FLAGGED_KEPT = 100


class Accounts:
    """The linked accounts of one store, checked by one hub.

    The async methods (`alink`, `arelink`, `aunlink`) never block the event loop on a check.
    Store calls are quick but synchronous; give *run_store* (see `StoreRunner`) to run them
    off the loop too, as the web Hub does with a thread that owns *store*'s connection.

    *on_event* receives an event (`hub_core.events`) after each change is stored, and after a
    link or relink that failed. It may be sync or async: an async one is awaited by the async
    methods (`check` included) before they return, and run to completion by the sync ones (on
    a fresh event loop, or on a thread of its own when the calling thread runs a loop). It runs
    on the thread that made the change (a sync one on the event loop's thread in the async
    methods: keep it quick). What it raises is logged (logger ``hub_core.events``: its type
    and where it was raised, not its message) and changes nothing: the change stands and the
    method returns as it would have.
    *via* is what the events say the changes came from (``"api"``, ``"cli"``,
    ``"dashboard"``).
    """

    def __init__(
        self,
        hub: Hub,
        store: AccountStore,
        *,
        run_store: StoreRunner[object] | None = None,
        on_event: EventHandler | None = None,
        via: str = "api",
    ) -> None:
        self.hub = hub
        self.store = store
        self.via = via
        self._run_store = run_store
        self._on_event = on_event

    async def _stored(self, call: Callable[[], T]) -> T:
        if self._run_store is None:
            return call()
        return await self._run_store(call)  # type: ignore[return-value]

    # --- events -------------------------------------------------------------------------------

    def _deliver(self, event: Event) -> Awaitable[None] | None:
        """Call *on_event*; what an async one gives back, guarded, is for the caller to await."""
        if self._on_event is None:
            return None
        try:
            result = self._on_event(event)
        except Exception as exc:
            _callback_failed(event, exc)
            return None
        if not inspect.isawaitable(result):
            return None

        async def awaited() -> None:
            try:
                await result
            except Exception as exc:
                _callback_failed(event, exc)

        return awaited()

    def _emit(self, event: Event) -> None:
        pending = self._deliver(event)
        if pending is not None:
            _run_to_completion(pending)

    async def _aemit(self, event: Event) -> None:
        pending = self._deliver(event)
        if pending is not None:
            await pending

    def _via(self, link: Link | None) -> str:
        # Through an auth link or a host session, whoever made this Accounts: it says how.
        return self.via if link is None else link.kind

    def _linked(self, account: Account, link: Link | None = None) -> AccountLinked:
        return AccountLinked(
            account.id,
            account.provider_id,
            account.label,
            account.identity,
            self._via(link),
            # Store.save keeps ``linked_at`` when it updates a known identity's account.
            updated=account.linked_at != account.checked_at,
            owner=account.owner,
            source_id=None if link is None else link.id,
            state=None if link is None else link.return_state,
        )

    def _relinked(self, account: Account, link: Link | None = None) -> AccountRelinked:
        return AccountRelinked(
            account.id,
            account.provider_id,
            account.label,
            account.identity,
            self._via(link),
            owner=account.owner,
            source_id=None if link is None else link.id,
            state=None if link is None else link.return_state,
        )

    def _link_failed(
        self,
        provider_id: str | None,
        error: HubError,
        account_id: str | None = None,
        link: Link | None = None,
    ) -> LinkFailed:
        # Only a field of the provider's form: the error's ``field`` comes from plugin code.
        field = None
        if error.field is not None and provider_id is not None:
            try:
                names = {f.name for f in self.hub.provider(provider_id).fields}
            except HubError:
                names = set()
            field = error.field if error.field in names else None
        return LinkFailed(
            provider_id,
            self._via(link),
            error.code,
            field,
            account_id=account_id,
            source_id=None if link is None else link.id,
        )

    # --- link, relink, unlink -----------------------------------------------------------------

    def link(
        self,
        provider_id: str,
        values: Mapping[str, str],
        *,
        on_request: Callable[[], object] | None = None,
        owner: str | None = None,
        owner_name: str | None = None,
    ) -> Account:
        """Check a key live and store the account; linking a known identity updates it.

        Raise the `HubError` of the check, in which case nothing is stored. The account of a
        known identity is updated only when its non-secret fields (tenant, region,
        environment: where the key was checked) are the ones it was linked with; otherwise
        `IdentityMismatch` names both and nothing changes. *on_request* is called just before
        the check's first request leaves (see `Hub.verify`). *owner* and *owner_name* say whom
        the account is for (see `Account.owner`): a known identity is one *owner*'s, so
        linking it for another adds another account. Emits `AccountLinked`, or `LinkFailed`
        before the error is raised.
        """
        check_owner(owner)
        try:
            verified = self.hub.verify(provider_id, values, on_request=on_request)
            account = self._save(provider_id, values, verified, owner=owner, owner_name=owner_name)
        except HubError as exc:
            self._emit(self._link_failed(provider_id, exc))
            raise
        self._emit(self._linked(account))
        return account

    async def alink(
        self,
        provider_id: str,
        values: Mapping[str, str],
        *,
        on_request: Callable[[], object] | None = None,
        owner: str | None = None,
        owner_name: str | None = None,
        link: Link | None = None,
    ) -> Account:
        """`link`, without blocking the event loop during the check.

        With *link* (an auth link or host session, `Store.link`), the save uses it up (see
        `Store.save`) and links for its owner; the events say it came through it.
        """
        check_owner(owner)
        try:
            verified = await self.hub.averify(provider_id, values, on_request=on_request)
            account = await self._stored(
                lambda: self._save(
                    provider_id, values, verified, owner=owner, owner_name=owner_name, link=link
                )
            )
        except HubError as exc:
            await self._aemit(self._link_failed(provider_id, exc, link=link))
            raise
        await self._aemit(self._linked(account, link))
        return account

    def _save(
        self,
        provider_id: str,
        values: Mapping[str, str],
        verified: Verified,
        account_id: str | None = None,
        *,
        owner: str | None = None,
        owner_name: str | None = None,
        link: Link | None = None,
    ) -> Account:
        provider = self.hub.provider(provider_id)
        credentials = validate_values(provider, values)
        # The flow may have normalised what was typed (a pasted URL split into its parts); it
        # can replace non-secret fields of its provider only.
        plain = {field.name for field in provider.fields if not field.secret}
        normalised = {k: v for k, v in verified.config.items() if k in plain and v}
        if normalised:
            credentials = Credentials(
                {**credentials, **normalised}, secret=credentials.secret_names
            )
        return self.store.save(
            provider_id,
            verified,
            credentials,
            account_id=account_id,
            link_id=None if link is None else link.id,
            owner=owner,
            owner_name=owner_name,
        )

    def relink(
        self,
        account_id: str,
        values: Mapping[str, str],
        *,
        on_request: Callable[[], object] | None = None,
        owner: str | None = None,
    ) -> Account:
        """Replace an account's key; the new key must reach the same identity.

        *values* overrides the stored values (usually just the secret fields); an account
        whose stored key cannot be decrypted takes its non-secret fields from its ``config``.
        Raise `IdentityMismatch` when the key reaches someone else, and `AccountNotFound` when
        the account is unlinked while the new key is checked (it is not brought back); nothing
        is stored then. *on_request* is called just before the check's first request leaves,
        as for `link`. With *owner*, only that owner's account is found (`AccountNotFound`
        for another's). Emits `AccountRelinked`, or `LinkFailed` before the error is raised.
        """
        provider_id: str | None = None
        try:
            account, merged = self._relink_values(account_id, values, owner)
            provider_id = account.provider_id
            verified = self.hub.verify(account.provider_id, merged, on_request=on_request)
            relinked = self._replace(account, merged, verified, owner)
        except HubError as exc:
            self._emit(self._link_failed(provider_id, exc, account_id))
            raise
        self._emit(self._relinked(relinked))
        return relinked

    async def arelink(
        self,
        account_id: str,
        values: Mapping[str, str],
        *,
        on_request: Callable[[], object] | None = None,
        owner: str | None = None,
        link: Link | None = None,
    ) -> Account:
        """`relink`, without blocking the event loop during the check.

        With *link* (a relink link or host session, `Store.link`), the save uses it up (see
        `Store.save`) and only its owner's account is found.
        """
        provider_id: str | None = None
        if link is not None:
            owner = link.owner
        try:
            account, merged = await self._stored(
                lambda: self._relink_values(account_id, values, owner)
            )
            provider_id = account.provider_id
            verified = await self.hub.averify(account.provider_id, merged, on_request=on_request)
            relinked = await self._stored(
                lambda: self._replace(account, merged, verified, owner, link)
            )
        except HubError as exc:
            await self._aemit(self._link_failed(provider_id, exc, account_id, link))
            raise
        await self._aemit(self._relinked(relinked, link))
        return relinked

    def _relink_values(
        self, account_id: str, values: Mapping[str, str], owner: str | None
    ) -> tuple[Account, dict[str, str]]:
        account = self.store.get(account_id, owner=owner)
        try:
            stored = self.store.credentials(account.id)
        except AccountNotFound:
            raise
        except StoreError:
            stored = dict(account.config)  # the old key is unreadable: the new one replaces it
        return account, {**stored, **values}

    def _replace(
        self,
        account: Account,
        merged: dict[str, str],
        verified: Verified,
        owner: str | None,
        link: Link | None = None,
    ) -> Account:
        if verified.identity != account.identity:
            raise IdentityMismatch(
                f"the new key reaches {verified.label} ({verified.identity}), but account "
                f"{account.id} is {account.label} ({account.identity}); nothing was changed. "
                f"To add it as another account, run `hub link {account.provider_id}`",
                stored_label=account.label,
                new_label=verified.label,
            )
        # By id, not by identity: an account unlinked meanwhile stays unlinked.
        return self._save(account.provider_id, merged, verified, account.id, owner=owner, link=link)

    def _unlink(self, account_id: str, owner: str | None) -> Account:
        account = self.store.get(account_id, owner=owner)
        self.store.delete(account.id)
        return account

    def _unlinked(self, account: Account) -> AccountUnlinked:
        return AccountUnlinked(
            account.id,
            account.provider_id,
            account.label,
            account.identity,
            self.via,
            owner=account.owner,
        )

    def unlink(self, account_id: str, *, owner: str | None = None) -> Account:
        """Forget an account and its key; return what was removed. Emits `AccountUnlinked`.

        With *owner*, only that owner's account is found (`AccountNotFound` for another's).
        """
        account = self._unlink(account_id, owner)
        self._emit(self._unlinked(account))
        return account

    async def aunlink(self, account_id: str, *, owner: str | None = None) -> Account:
        """`unlink`, with the store call on *run_store* when one was given."""
        account = await self._stored(lambda: self._unlink(account_id, owner))
        await self._aemit(self._unlinked(account))
        return account

    # --- a host's use of a key ----------------------------------------------------------------

    def _read(self, account_id: str, owner: str | None) -> tuple[Account, Credentials]:
        account = self.store.get(account_id, owner=owner)
        values = self.store.credentials(account.id)
        # ``config`` holds exactly the non-secret fields: the others are the secret ones, also
        # when the provider's plugin is not installed here.
        hidden = [name for name in values if name not in account.config]
        return account, Credentials(values, secret=hidden)

    def _read_event(self, account: Account, reader: str) -> CredentialsRead:
        return CredentialsRead(account.id, account.provider_id, reader)

    def credentials(self, account_id: str, *, reader: str, owner: str | None = None) -> Credentials:
        """An account's field values, its key decrypted, for a host application that uses it.

        *reader* names who asks (``"billing-sync"``); each read emits `CredentialsRead` with
        it, so an embedding app can audit every use of a key. The `Credentials` mapping's repr
        masks the secret fields. Raise `AccountNotFound`, or `StoreError` when the stored key
        cannot be read (no event then: nothing was read). With *owner*, only that owner's
        account is found. No page of the web Hub calls this.
        """
        _check_reader(reader)
        account, credentials = self._read(account_id, owner)
        self._emit(self._read_event(account, reader))
        return credentials

    async def acredentials(
        self, account_id: str, *, reader: str, owner: str | None = None
    ) -> Credentials:
        """`credentials`, with the store call on *run_store* when one was given."""
        _check_reader(reader)
        account, credentials = await self._stored(lambda: self._read(account_id, owner))
        await self._aemit(self._read_event(account, reader))
        return credentials

    async def check(
        self,
        account_ids: Sequence[str] | None = None,
        *,
        concurrency: int = 20,
        on_result: Callable[[Account], None] | None = None,
    ) -> list[Account]:
        """Re-check accounts live (all when *account_ids* is None) and record each verdict.

        Never raises for one account: its error is recorded on it (status ``error``, ``invalid``
        or ``denied``). An account hub cannot use as stored (a ``damaged`` row, or a key that
        does not decrypt with the store's secret key, which is then recorded as ``damaged``) is
        not checked and is returned as it is, so it is reported. An account unlinked while the
        check runs (even before its turn) is left out, and so is one relinked meanwhile: its
        new key keeps the verdict relink recorded. Verdicts are recorded in batches (one
        transaction per ~250 accounts or half second), and *on_result* receives each account
        as its verdict is recorded. For every account of a large store, shared with other
        checkers, use `check_all`.
        """
        if account_ids is None:
            accounts = self.store.accounts()
        else:
            accounts = []
            for account_id in account_ids:
                try:
                    accounts.append(self.store.get(account_id))
                except AccountNotFound:
                    continue  # unlinked since the caller listed it
        items = []
        for account in accounts:
            if account.status is Status.DAMAGED:
                items.append(LeasedAccount(account))
                continue
            try:
                values, version = self.store.checkout(account.id)
            except AccountNotFound:
                continue  # unlinked since it was listed
            except StoreError as exc:  # its key does not decrypt: the others are still checked
                items.append(LeasedAccount(account, error=exc))
                continue
            items.append(LeasedAccount(account, values, version))
        return await self._check_items(items, concurrency=concurrency, on_result=on_result)

    async def check_all(
        self,
        *,
        concurrency: int = 20,
        batch: int = 500,
        lease_for: timedelta = LEASE_DEFAULT,
        on_result: Callable[[Account], None] | None = None,
        on_wait: Callable[[tuple[str, ...], timedelta], None] | None = None,
    ) -> CheckRun:
        """Check every account once, sharing the work with any other checker of the store.

        A run started while another is under way joins it (`Store.join_run`). Each account
        not checked since the run began is leased in batches of *batch* (a
        lease commits before its requests leave), checked, and its verdict recorded under the
        lease, so two ``hub check --all`` started together check each account once and a
        killed one's accounts are taken over when its lease (*lease_for*) expires; this run
        waits for that before it ends. Memory holds about two batches, not the store. A
        `RateLimited` account is due again after its ``Retry-After`` and keeps its verdict.
        *on_result* receives each account as its verdict is recorded (and each one that cannot
        be checked). A provider's budget (`hub limits`) makes batches of its accounts no larger
        than its bucket grants; while its bucket is empty the run waits for it, telling
        *on_wait* the providers and how long. The due accounts of a provider paused after rate
        limits are left for later (`CheckRun.paused`).

        The run's store calls (leases, verdicts, releases) go through *run_store* when one was
        given; on a store that waits on a server (`AccountStore.waits_on_server`), to a thread
        of the run's own over its own connection, so the checks keep running while the
        database answers; otherwise they run on the loop (SQLite's are this process's work).
        """
        async with self._run_calls() as calls:
            return await self._check_all(calls, concurrency, batch, lease_for, on_result, on_wait)

    async def _check_all(
        self,
        calls: _StoreCalls,
        concurrency: int,
        batch: int,
        lease_for: timedelta,
        on_result: Callable[[Account], None] | None,
        on_wait: Callable[[tuple[str, ...], timedelta], None] | None,
    ) -> CheckRun:
        token, started = await calls(lambda store: store.join_run(alive_for=lease_for))
        run = CheckRun()
        held: list[str] = []  # leases kept until the end: accounts reported, never checked
        # The leases with a check not yet recorded: none once the run is through, but the
        # accounts of all of them when it is stopped (Ctrl-C, a store error).
        unfinished: set[str] = set()
        verdicts = _Verdicts(
            self,
            calls,
            on_result=on_result,
            on_recorded=lambda _, a: run.count(a),
            on_limited=run.limit,
            on_reported=run.count,
            on_lease_done=unfinished.discard,
        )
        last: list[Lease] = []

        def next_lease(store: AccountStore) -> Lease:  # on the store thread
            store.keep_run(token, alive_for=lease_for)
            return store.lease(batch, checked_before=started, lease_for=lease_for)

        def leased(lease: Lease | None) -> None:  # back on the loop
            if lease is None:
                return
            if lease.accounts:
                unfinished.add(lease.token)
            if _keeps_unchecked(lease):
                held.append(lease.token)
            last[:] = [lease]

        try:
            while True:
                await verdicts.stream(
                    next_lease, leased, concurrency=concurrency, lease_for=lease_for
                )
                if last and last[0].wait is not None:
                    # Accounts wait for their provider's budget to refill: not done yet. A
                    # paused provider's are left for later (its pause may last an hour).
                    if on_wait is not None:
                        on_wait(last[0].waiting_for, last[0].wait)
                    await calls(lambda store: store.keep_run(token, alive_for=lease_for))
                    await asyncio.sleep(min(max(last[0].wait.total_seconds(), 0.05), 1.0))
                    continue
                if last:
                    run.paused, run.paused_until = last[0].paused, last[0].paused_until
                wait_until = await calls(
                    lambda store: store.held_elsewhere(held, checked_before=started)
                )
                if wait_until is None:
                    break
                pause = (wait_until - utc_now()).total_seconds()
                await asyncio.sleep(min(max(pause, 0.05), 1.0))
        finally:
            # Stopped before the end, what the run had not checked is free for another checker
            # now, not when its lease expires: a release leaves the accounts whose verdict was
            # recorded alone (their lease ended with it).
            await calls(_release_all(sorted({*held, *unfinished})))
            await calls(lambda store: store.end_run(token))
        return run

    async def work(
        self,
        *,
        every: timedelta = CHECK_INTERVAL,
        stop: asyncio.Event | None = None,
        concurrency: int = 20,
        batch: int = 500,
        lease_for: timedelta = LEASE_DEFAULT,
        idle: float = 30.0,
        on_result: Callable[[Account], None] | None = None,
        on_wait: Callable[[tuple[str, ...], timedelta], None] | None = None,
    ) -> CheckRun:
        """Re-check accounts as they fall due, until *stop* is set: what `hub worker` runs.

        Each account is due again *every* after its verdict (a `RateLimited` one after its
        ``Retry-After``). Due accounts are leased and checked as in `check_all` (one stream of
        checks across the leases, while accounts are due; the store calls where `check_all`
        makes them), so any number of workers share them; each verdict ends its account's
        lease, and a lease holding accounts that cannot be checked is released once its
        checks are recorded, those due again in *every*. With nothing due it sleeps until the
        next account is (at most *idle* seconds, to see accounts linked meanwhile). When
        *stop* is set it stops leasing; the checks in flight are cancelled, the verdicts they
        reached are recorded and the accounts not started are released at once for another
        worker. While due accounts wait for their provider's budget or pause, *on_wait* is
        told the providers and how long, each time the worker waits for them.
        """
        async with self._run_calls() as calls:
            return await self._work(
                calls,
                every,
                stop or asyncio.Event(),
                concurrency,
                batch,
                lease_for,
                idle,
                on_result,
                on_wait,
            )

    async def _work(
        self,
        calls: _StoreCalls,
        every: timedelta,
        stop: asyncio.Event,
        concurrency: int,
        batch: int,
        lease_for: timedelta,
        idle: float,
        on_result: Callable[[Account], None] | None,
        on_wait: Callable[[tuple[str, ...], timedelta], None] | None,
    ) -> CheckRun:
        run = CheckRun()
        # The leases whose checks have not all been recorded, each with whether it holds
        # accounts that cannot be checked (`_keeps_unchecked`), which no verdict ends.
        unfinished: dict[str, bool] = {}

        def finished(token: str) -> None:
            # Every check of it recorded, so every verdict has ended its account's lease. What
            # cannot be checked is left: due again in *every*, so a worker does not lease it
            # again and again. Only then a release, which finds its rows by token (on SQLite
            # by reading the whole table).
            if unfinished.pop(token, False):
                verdicts.submit(lambda store: store.release(token, next_check_in=every))

        verdicts = _Verdicts(
            self,
            calls,
            next_check_in=every,
            on_result=on_result,
            on_recorded=lambda _, a: run.count(a),
            on_limited=run.limit,
            on_reported=run.count,
            on_lease_done=finished,
        )

        last: list[Lease] = []

        def next_lease(store: AccountStore) -> Lease | None:  # on the store thread
            if stop.is_set():
                return None
            return store.lease(batch, lease_for=lease_for)

        def leased(lease: Lease | None) -> None:  # back on the loop
            if lease is not None:
                if lease.accounts:
                    unfinished[lease.token] = _keeps_unchecked(lease)
                last[:] = [lease]

        while not stop.is_set():
            # One stream of checks across the leases while accounts are due, as `check_all`.
            checking = asyncio.ensure_future(
                verdicts.stream(next_lease, leased, concurrency=concurrency, lease_for=lease_for)
            )
            stopping = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({checking, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not checking.done():
                    checking.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await checking
                else:
                    checking.result()
            finally:
                stopping.cancel()
                # Stopped (or a store error): what the stream had not started is free for
                # another worker now. The stream has waited for its store calls, a lease
                # fetched ahead included, so `unfinished` names every lease it holds.
                tokens = sorted(unfinished)
                unfinished.clear()
                await calls(_release_all(tokens))
            if stop.is_set():
                break
            due = await calls(lambda store: store.next_due())
            pause = idle if due is None else (due - utc_now()).total_seconds()
            if last and last[0].wait is not None:  # due, but held back by a budget
                pause = max(pause, last[0].wait.total_seconds())
                if on_wait is not None:
                    on_wait(last[0].waiting_for, last[0].wait)
            elif last and last[0].paused_until is not None:  # due, but the provider is paused
                held_back = last[0].paused_until - utc_now()
                pause = max(pause, held_back.total_seconds())
                if on_wait is not None:
                    on_wait(last[0].paused, held_back)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=min(max(pause, 0.05), idle))
        return run

    @contextlib.asynccontextmanager
    async def _run_calls(self) -> AsyncIterator[_StoreCalls]:
        """Where one run's store calls go: *run_store*, a `StoreThread` of the run's own for
        a store that waits on a server, or the loop itself (`AccountStore.waits_on_server`)."""
        if self._run_store is not None:
            yield _StoreCalls(self.store, run_store=self._run_store)
            return
        if not self.store.waits_on_server:
            yield _StoreCalls(self.store)
            return
        from .store_thread import StoreThread

        thread = StoreThread(self.store)
        try:
            yield _StoreCalls(self.store, thread=thread)
        finally:
            await thread.aclose()

    async def _check_items(
        self,
        items: Sequence[LeasedAccount],
        *,
        lease: str | None = None,
        next_check_in: timedelta = CHECK_INTERVAL,
        concurrency: int = 20,
        on_result: Callable[[Account], None] | None = None,
    ) -> list[Account]:
        """Check *items* and record each verdict (under *lease*, when given)."""
        recorded: dict[int, Account] = {}
        reported: list[Account] = []
        verdicts = _Verdicts(
            self,
            _StoreCalls(self.store),  # `check` keeps its store calls on the loop, as they were
            next_check_in=next_check_in,
            on_result=on_result,
            on_recorded=recorded.__setitem__,
            on_reported=reported.append,
        )
        checkable = verdicts.take(items, lease)
        await verdicts.check(checkable, concurrency=concurrency, first=0)
        return reported + [recorded[index] for index in sorted(recorded)]


class _StoreCalls:
    """Where the store calls of one run go, in the order asked, each given back as a future.

    On a `StoreThread` (the run's own connection, on a thread the event loop never waits
    on); through a *run_store* (each call after the one before has ended); or, with neither,
    on the loop itself: run at once, the future done when `submit` returns (`Accounts.check`).
    """

    def __init__(
        self,
        store: AccountStore,
        *,
        thread: StoreThread | None = None,
        run_store: StoreRunner[object] | None = None,
    ) -> None:
        self._store = store
        self._thread = thread
        self._run_store = run_store
        self._last: asyncio.Future[object] | None = None

    def submit(self, method: Callable[[AccountStore], T]) -> asyncio.Future[T]:
        """Start ``method(store)`` after every call submitted before it; never waits."""
        if self._thread is not None:
            return self._thread.submit(method)
        if self._run_store is not None:
            run_store, store, previous = self._run_store, self._store, self._last

            async def in_turn() -> T:
                if previous is not None:
                    await asyncio.wait([previous])
                return await run_store(lambda: method(store))  # type: ignore[return-value]

            task = asyncio.ensure_future(in_turn())
            self._last = task  # type: ignore[assignment]
            return task
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        try:
            future.set_result(method(self._store))
        except Exception as exc:
            future.set_exception(exc)
        return future

    async def __call__(self, method: Callable[[AccountStore], T]) -> T:
        """``method(store)``, in turn, awaited."""
        return await self.submit(method)


class _Verdicts:
    """Checks leased accounts and records their verdicts in batches, each under its lease.

    `take` records at once what cannot be checked (a key that does not decrypt) and gives
    the rest as `check_many` items; `check` runs them. A verdict waits in a buffer of at most
    `BATCH_SIZE` (or `BATCH_SECONDS`), written with one `Store.record_many` per lease it holds;
    an account is forgotten as soon as its verdict is recorded, so memory holds the checks in
    flight and that buffer, however many accounts the stream has.

    Store calls go to *calls* (`_StoreCalls`) without waiting: the outcomes of a write are
    handled on the loop when it is done, in the order the writes were submitted, while the
    checks go on. A store call that fails ends the stream; the checks in flight finish and
    are recorded, then `check` raises it.
    """

    def __init__(
        self,
        accounts: Accounts,
        calls: _StoreCalls,
        *,
        next_check_in: timedelta = CHECK_INTERVAL,
        on_result: Callable[[Account], None] | None,
        on_recorded: Callable[[int, Account], None],
        on_reported: Callable[[Account], None],
        on_lease_done: Callable[[str], None] | None = None,
        on_limited: Callable[[Account], None] | None = None,
    ) -> None:
        self.accounts = accounts
        #: Told each account a 429 left as it was (under a lease: its verdict stands).
        self.on_limited = on_limited
        self.calls = calls
        self.on_lease_done = on_lease_done
        #: Per lease, how many of its checks are given out and not yet recorded.
        self.outstanding: dict[str, int] = {}
        self.next_check_in = next_check_in
        self.on_result = on_result
        self.on_recorded = on_recorded
        self.on_reported = on_reported
        # Per item given out and not yet recorded: the account, its lease, its key's version.
        self.items: dict[int, tuple[Account, str | None, str | None]] = {}
        self.pending: list[tuple[int, CheckResult]] = []
        self.flushed = time.monotonic()
        self.numbered = 0
        # An async on_event's deliveries run as tasks alongside the check, all awaited before
        # `check` returns: the verdicts are recorded from a sync callback of `Hub.check_many`.
        self.deliveries: list[asyncio.Task[None]] = []
        #: Store calls submitted and not yet handled; what they raised (or their handlers).
        self.inflight: set[asyncio.Future[object]] = set()
        self.failures: list[Exception] = []
        # The stream's state (`stream`): how the next lease is fetched, and told to its caller;
        # the lease fetched ahead; the lease being given out, once its first check has been;
        # per lease, its checks given out whose verdict has not been reached.
        self.next_lease: Callable[[AccountStore], Lease | None] | None = None
        self.leased: Callable[[Lease | None], None] = lambda _: None
        self.ahead: asyncio.Future[Lease | None] | None = None
        self.current: str | None = None
        self.unreached: dict[str | None, int] = {}
        self.all_reached = asyncio.Event()

    # --- store calls ----------------------------------------------------------------------------

    def submit(self, method: Callable[[AccountStore], object]) -> None:
        """Submit a store call whose result nobody needs (a release): its failure is kept."""
        self._submit(method, lambda _: None)

    def _submit(
        self, method: Callable[[AccountStore], T], handle: Callable[[T], None]
    ) -> asyncio.Future[T]:
        future = self.calls.submit(method)
        if future.done():  # run on the loop (`Accounts.check`): handled, or raised, now
            handle(future.result())
            return future
        self.inflight.add(future)  # type: ignore[arg-type]
        future.add_done_callback(lambda done: self._handle(done, handle))
        return future

    def _handle(self, done: asyncio.Future[T], handle: Callable[[T], None]) -> None:
        self.inflight.discard(done)
        try:
            handle(done.result())
        except Exception as exc:  # the store's, or a callback's: raised when the checks end
            self.failures.append(exc)

    async def settle(self) -> None:
        """Wait until every store call submitted (and those their outcomes submit) is handled."""
        while self.inflight:
            # Not cancelled with the caller: each call's outcome is still handled.
            await asyncio.wait(set(self.inflight))

    # --- leases ---------------------------------------------------------------------------------

    def take(self, items: Sequence[LeasedAccount], lease: str | None) -> list[CheckItem]:
        """Note *items* (of *lease*); record those that cannot be checked; the rest to check."""
        unreadable: list[tuple[str, HubError]] = []
        checkable: list[CheckItem] = []
        before = {item.account.id: item.account for item in items}
        for item in items:
            if item.error is not None:
                unreadable.append((item.account.id, item.error))
            elif item.values is None:
                self._report(item.account)
            else:
                self.items[self.numbered + len(checkable)] = (item.account, lease, item.version)
                checkable.append((item.account.provider_id, item.values))
        if unreadable:

            def reported(outcomes: Sequence[Account | StoreError]) -> None:
                for (_, error), outcome in zip(unreadable, outcomes, strict=True):
                    if isinstance(outcome, Account):
                        self._report(outcome)
                        self._checked(outcome, before[outcome.id], error)

            self._submit(
                _record_many(
                    unreadable, versions={}, lease=lease, next_check_in=self.next_check_in
                ),
                reported,
            )
        self.numbered += len(checkable)
        if lease is not None:
            self.outstanding[lease] = len(checkable)
            if not checkable:
                self._lease_done(lease)
        return checkable

    def _forget(self, index: int) -> Account:
        """Drop item *index* (recorded, or dropped); its lease is done with its last item."""
        account, lease, _ = self.items.pop(index)
        if lease is not None:
            self.outstanding[lease] -= 1
            if not self.outstanding[lease]:
                self._lease_done(lease)
        return account

    def _lease_done(self, lease: str) -> None:
        del self.outstanding[lease]
        if self.on_lease_done is not None:
            self.on_lease_done(lease)

    def _fetch_ahead(self) -> None:
        """Ask for the next lease, unless it is asked for already or the stream is over.

        The verdicts waiting in the buffer are written first (the store runs its calls in
        order): with them written, only the lease being given out still holds accounts.
        """
        if self.ahead is not None or self.next_lease is None or self.failures:
            return
        self.flush()
        self.ahead = self._submit(self.next_lease, self.leased)

    def _given_out(self, lease: str | None, near_end: bool) -> None:
        """A check of *lease* is given out. Once the lease is *near_end* and the earlier
        leases' checks have all reached their verdicts, the next lease is fetched, while this
        one's last checks run."""
        self.unreached[lease] = self.unreached.get(lease, 0) + 1
        if near_end:
            self.current = lease
            if len(self.unreached) == 1:
                self._fetch_ahead()

    async def _drained(self) -> None:
        """Wait until every check given out has reached its verdict and it is recorded."""
        while self.unreached:
            self.all_reached.clear()
            await self.all_reached.wait()
        self.flush()
        await self.settle()

    def _reached(self, lease: str | None) -> None:
        count = self.unreached.get(lease)
        if count is None:  # not a stream's (`Accounts.check`)
            return
        if count > 1:
            self.unreached[lease] = count - 1
        else:
            del self.unreached[lease]
            if not self.unreached:
                self.all_reached.set()
        if self.current is not None and (
            not self.unreached or (len(self.unreached) == 1 and self.current in self.unreached)
        ):
            self._fetch_ahead()

    async def stream(
        self,
        next_lease: Callable[[AccountStore], Lease | None],
        leased: Callable[[Lease | None], None],
        *,
        concurrency: int,
        lease_for: timedelta,
    ) -> None:
        """Check the accounts of lease after lease (*next_lease*, run on the store's side
        until it gives none or an empty one; each told to *leased* on the loop), as one
        stream: what `Accounts.check_all` and `Accounts.work` run.

        `Hub._check_each`'s workers read the stream as they free up. The next lease is
        fetched ahead, once the lease being checked has a quarter of its checks (at least
        *concurrency*) left to start and every check of the one before has reached its
        verdict (so at most two leases are being checked, and memory holds about two
        batches), and the workers read on into it without waiting for the database. The
        leases being checked are renewed every third of *lease_for*, so a batch whose checks
        outlast its lease (a slow provider, a short ``--lease``) keeps its accounts: no
        checker, this run's next lease included, takes them again. A store error ends the
        stream; the checks in flight still finish and are recorded, then it is
        raised.
        """
        self.next_lease, self.leased = next_lease, leased
        self.ahead, self.current, self.unreached = None, None, {}

        async def each_lease() -> AsyncGenerator[CheckItem, None]:
            while not self.failures:
                self._fetch_ahead()
                ahead = self.ahead
                if ahead is None:
                    return
                # Not `await ahead`: a stream stopped meanwhile must not cancel the lease,
                # which its handler tells to *leased* (so a stopped worker releases it).
                await asyncio.wait([ahead])
                self.ahead, self.current = None, None
                if ahead.exception() is not None:
                    return  # kept by its handler: raised once the checks in flight end
                lease = ahead.result()
                if lease is None:
                    return
                if not lease.accounts:
                    if not (self.unreached or self.pending or self.inflight):
                        return
                    # Nothing due when it was fetched ahead, while checks were in flight: their
                    # verdicts may have paused a provider or brought accounts back; the stream
                    # ends on what the store says with every verdict recorded.
                    await self._drained()
                    continue
                checkable = self.take(lease.accounts, lease.token)
                # Fetched ahead with a quarter of the lease to go (time enough for the
                # database to answer): earlier, a worker would hold two batches all along.
                ahead_at = len(checkable) - max(len(checkable) // 4, concurrency)
                for n, item in enumerate(checkable):
                    if self.failures:
                        return
                    self._given_out(lease.token, n >= ahead_at)
                    yield item

        items = each_lease()
        renewing = asyncio.ensure_future(self._renew_every(lease_for))
        try:
            await self.check(items, concurrency=concurrency, first=self.numbered)
        finally:
            renewing.cancel()
            await items.aclose()
            # Stopped (Ctrl-C, a store error) with a lease fetched ahead and never begun: its
            # accounts are free for another checker now, not when the lease expires.
            unstarted = self._unstarted()
            if unstarted is not None:
                await self.calls(_release_all([unstarted]))

    async def _renew_every(self, lease_for: timedelta) -> None:
        """Renew the leases with checks to record, and one fetched ahead, every third of
        *lease_for*, until cancelled."""
        while True:
            await asyncio.sleep(lease_for.total_seconds() / 3)
            tokens = set(self.outstanding)
            ahead = self._ahead_token()
            if ahead is not None:
                tokens.add(ahead)
            if tokens:
                self.submit(_renew_all(sorted(tokens), lease_for))

    def _unstarted(self) -> str | None:
        """The token of the lease fetched ahead and never begun, if it holds accounts; the
        stream forgets it."""
        token = self._ahead_token()
        self.ahead = None
        return token

    def _ahead_token(self) -> str | None:
        """The token of the lease fetched ahead (and not begun), if it came and holds accounts."""
        ahead = self.ahead
        if ahead is None or not ahead.done() or ahead.exception() is not None:
            return None
        lease = ahead.result()
        return lease.token if lease is not None and lease.accounts else None

    def _report(self, account: Account) -> None:
        self.on_reported(account)
        if self.on_result is not None:
            self.on_result(account)

    async def check(
        self, items: Iterable[CheckItem] | AsyncIterable[CheckItem], *, concurrency: int, first: int
    ) -> None:
        """Check *items* and record every verdict; *first* is the number `take` gave the
        first of them (the numbers of one stream follow on, as `take` gave them out)."""

        def record(index: int, result: CheckResult) -> None:
            self._record(first + index, result)

        try:
            await self.accounts.hub._check_each(items, concurrency=concurrency, on_result=record)
        finally:  # interrupted too (Ctrl-C): the verdicts already reached are kept
            self.next_lease = None  # no lease fetched ahead from now on
            try:
                self.flush()
                await self.settle()
            finally:
                if self.deliveries:
                    await asyncio.gather(*self.deliveries)
                    self.deliveries.clear()
        if self.failures:
            failure, self.failures = self.failures[0], []
            raise failure

    def _checked(self, account: Account, before: Account, error: HubError | None) -> None:
        if self.accounts._on_event is None:  # nobody to tell: no event built per verdict
            return
        event = AccountChecked(
            account.id,
            account.provider_id,
            account.status,
            before.status,
            error.code if error is not None else None,
            self.accounts.via,
        )
        pending = self.accounts._deliver(event)
        if pending is not None:
            self.deliveries.append(asyncio.ensure_future(pending))

    def _record(self, index: int, result: CheckResult) -> None:
        lease = self.items[index][1]
        self.pending.append((index, result))
        if len(self.pending) >= BATCH_SIZE or time.monotonic() - self.flushed >= BATCH_SECONDS:
            self._flush()  # on the loop (`Accounts.check`), the item is forgotten already
        self._reached(lease)

    def flush(self) -> None:
        """Submit the verdicts waiting in the buffer now."""
        if self.pending:
            self._flush()

    def _flush(self) -> None:
        by_lease: dict[str | None, list[tuple[int, CheckResult]]] = {}
        for index, result in self.pending:
            by_lease.setdefault(self.items[index][1], []).append((index, result))
        self.pending = []
        self.flushed = time.monotonic()
        for lease, group in by_lease.items():
            self._write(group, lease)

    def _write(self, group: list[tuple[int, CheckResult]], lease: str | None) -> None:
        """Submit the verdicts of *group* in one `record_many`, under *lease*."""
        versions: dict[str, str] = {}
        for index, _ in group:
            account, _, version = self.items[index]
            if version is not None:
                versions[account.id] = version
        ids = [(self.items[index][0].id, result) for index, result in group]
        self._submit(
            _record_many(ids, versions=versions, lease=lease, next_check_in=self.next_check_in),
            functools.partial(self._recorded, group),
        )

    def _recorded(
        self, group: list[tuple[int, CheckResult]], outcomes: Sequence[Account | StoreError]
    ) -> None:
        """Handle the outcomes of one `record_many` (on the loop, in the order written)."""
        from .store import KeyReplaced, LeaseLost  # loaded already: it made the store

        retry: list[tuple[int, CheckResult]] = []
        for (index, result), outcome in zip(group, outcomes, strict=True):
            if isinstance(outcome, AccountNotFound | KeyReplaced | LeaseLost):
                self._forget(index)  # unlinked, relinked or taken over while it ran
                continue
            if isinstance(outcome, HubError):  # the key now reaches another identity
                retry.append((index, InvalidCredentials(outcome.message)))
                continue
            before = self._forget(index)
            if self.on_limited is not None and isinstance(result, RateLimited):
                self.on_limited(outcome)  # not checked now: its verdict is the one before
            else:
                self.on_recorded(index, outcome)
            if self.on_result is not None:
                self.on_result(outcome)
            self._checked(outcome, before, result if isinstance(result, HubError) else None)
        if retry:
            # Refused, the verdict ended its lease (the account is due again in a day): the
            # key's failure is recorded without it. Under the ended lease it would be lost, and
            # the account, not checked since the run began, leased by the run again and again.
            self._write(retry, None)


@attrs.define
class CheckRun:
    """What `Accounts.check_all` did: how many accounts it reported, by status."""

    statuses: dict[Status, int] = attrs.field(factory=dict)
    #: The first `FLAGGED_KEPT` accounts that are not active (what a person wants listed), in
    #: the order reported; `more_flagged` counts the others, so memory stays flat with the
    #: store's size (a run over a million accounts that all fail keeps a hundred).
    flagged: list[Account] = attrs.field(factory=list)
    more_flagged: int = 0
    #: Per provider, the accounts a 429 left unchecked, their verdicts as they were (each is
    #: due again after the provider's ``Retry-After``).
    limited: dict[str, int] = attrs.field(factory=dict)
    #: The statuses those accounts stand at.
    standing: set[Status] = attrs.field(factory=set)
    #: Providers paused after rate limits whose due accounts the run left for later (a worker
    #: checks them once the pause ends), and when the first pause ends.
    paused: tuple[str, ...] = ()
    paused_until: datetime | None = None

    @property
    def total(self) -> int:
        """How many accounts the run reported, those a 429 left unchecked included."""
        return self.checked + sum(self.limited.values())

    @property
    def checked(self) -> int:
        """How many accounts the run checked: those with a verdict of this run."""
        return sum(self.statuses.values())

    def limit(self, account: Account) -> None:
        """Add *account* as one a 429 left unchecked (not to the statuses)."""
        self.limited[account.provider_id] = self.limited.get(account.provider_id, 0) + 1
        self.standing.add(account.status)

    def count(self, account: Account) -> None:
        """Add *account*'s status to the run."""
        self.statuses[account.status] = self.statuses.get(account.status, 0) + 1
        if account.status is not Status.ACTIVE:
            if len(self.flagged) < FLAGGED_KEPT:
                self.flagged.append(account)
            else:
                self.more_flagged += 1


def _keeps_unchecked(lease: Lease) -> bool:
    """Whether *lease* holds accounts a run reports without checking them (damaged rows): no
    verdict ends their lease, so it is released once the lease's checks are done."""
    return any(item.values is None and item.error is None for item in lease.accounts)


def _renew_all(tokens: Sequence[str], lease_for: timedelta) -> Callable[[AccountStore], int]:
    """Renew *tokens*' leases for *lease_for*, for the store's side."""
    return lambda store: store.renew(tokens, lease_for=lease_for)


def _release_all(tokens: Sequence[str]) -> Callable[[AccountStore], None]:
    """Release each of *tokens*' leases, for the store's side: free for any checker now."""

    def release(store: AccountStore) -> None:
        for token in tokens:
            store.release(token)

    return release


def _record_many(
    results: Sequence[tuple[str, CheckResult]],
    *,
    versions: Mapping[str, str],
    lease: str | None,
    next_check_in: timedelta,
) -> Callable[[AccountStore], Sequence[Account | StoreError]]:
    """One `record_many`, for the store's side (its arguments bound now, on the loop)."""
    return lambda store: store.record_many(
        results, versions=versions, lease=lease, next_check_in=next_check_in
    )


_log = logging.getLogger("hub_core.events")


def _callback_failed(event: Event, exc: Exception) -> None:
    # The type and where it was raised, not the message (nor a traceback, which ends with it):
    # the callback is the host's code, and may hold any account's key (`credentials`).
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f"{frame.filename}:{frame.lineno}" if frame else "an unknown place"
    _log.error(
        "the on_event callback failed on %s %s: %s at %s; the change it reported stands",
        event.type,
        event.id,
        inert(type(exc).__name__),
        inert(where),
    )


def _run_to_completion(awaitable: Awaitable[None]) -> None:
    """Run an async callback's delivery from a sync method: here, or on a thread of its own."""

    async def run() -> None:
        await awaitable

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(run())
        return
    # A sync method called from inside a running loop cannot wait on that loop.
    thread = threading.Thread(target=asyncio.run, args=(run(),), name="hub-on-event")
    thread.start()
    thread.join()


def _check_reader(reader: object) -> None:
    if not isinstance(reader, str) or not reader.strip():
        raise ValueError("credentials() needs reader=: who is reading the key, for the audit")
