"""Linked accounts: keys checked by a `Hub`, kept in a `Store`.

`Accounts` is what the CLI and the web Hub call: link, relink, check, unlink. A failed check
stores nothing; a re-check records its verdict on the account.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

from .errors import AccountNotFound, HubError, IdentityMismatch, InvalidCredentials, StoreError
from .fields import validate_values
from .model import Account, Credentials, Verified
from .status import Status

if TYPE_CHECKING:
    from .hub import CheckResult, Hub
    from .store import Store

__all__ = ["Accounts", "StoreRunner"]

T = TypeVar("T")
#: Runs one store call somewhere the event loop does not wait on it (a thread that owns the
#: store's connection) and gives back its result; see `Accounts`.
StoreRunner = Callable[[Callable[[], T]], Awaitable[T]]

#: Re-check verdicts are written this many at a time, or at least this often.
BATCH_SIZE = 100
BATCH_SECONDS = 0.25


class Accounts:
    """The linked accounts of one store, checked by one hub.

    The async methods (`alink`, `arelink`, `aunlink`) never block the event loop on a check.
    Store calls are quick but synchronous; give *run_store* (see `StoreRunner`) to run them
    off the loop too, as the web Hub does with a thread that owns *store*'s connection.
    """

    def __init__(
        self, hub: Hub, store: Store, *, run_store: StoreRunner[object] | None = None
    ) -> None:
        self.hub = hub
        self.store = store
        self._run_store = run_store

    async def _stored(self, call: Callable[[], T]) -> T:
        if self._run_store is None:
            return call()
        return await self._run_store(call)  # type: ignore[return-value]

    def link(
        self,
        provider_id: str,
        values: Mapping[str, str],
        *,
        on_request: Callable[[], object] | None = None,
    ) -> Account:
        """Check a key live and store the account; linking a known identity updates it.

        Raise the `HubError` of the check, in which case nothing is stored. The account of a
        known identity is updated only when its non-secret fields (tenant, region,
        environment: where the key was checked) are the ones it was linked with; otherwise
        `IdentityMismatch` names both and nothing changes. *on_request* is called just before
        the check's first request leaves (see `Hub.verify`).
        """
        verified = self.hub.verify(provider_id, values, on_request=on_request)
        return self._save(provider_id, values, verified)

    async def alink(
        self,
        provider_id: str,
        values: Mapping[str, str],
        *,
        on_request: Callable[[], object] | None = None,
        link_id: str | None = None,
    ) -> Account:
        """`link`, without blocking the event loop during the check.

        With *link_id*, the save uses up that auth link (see `Store.save`).
        """
        verified = await self.hub.averify(provider_id, values, on_request=on_request)
        return await self._stored(
            lambda: self._save(provider_id, values, verified, link_id=link_id)
        )

    def _save(
        self,
        provider_id: str,
        values: Mapping[str, str],
        verified: Verified,
        account_id: str | None = None,
        link_id: str | None = None,
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
            provider_id, verified, credentials, account_id=account_id, link_id=link_id
        )

    def relink(
        self,
        account_id: str,
        values: Mapping[str, str],
        *,
        on_request: Callable[[], object] | None = None,
    ) -> Account:
        """Replace an account's key; the new key must reach the same identity.

        *values* overrides the stored values (usually just the secret fields); an account
        whose stored key cannot be decrypted takes its non-secret fields from its ``config``.
        Raise `IdentityMismatch` when the key reaches someone else, and `AccountNotFound` when
        the account is unlinked while the new key is checked (it is not brought back); nothing
        is stored then. *on_request* is called just before the check's first request leaves,
        as for `link`.
        """
        account, merged = self._relink_values(account_id, values)
        verified = self.hub.verify(account.provider_id, merged, on_request=on_request)
        return self._relinked(account, merged, verified)

    async def arelink(
        self,
        account_id: str,
        values: Mapping[str, str],
        *,
        on_request: Callable[[], object] | None = None,
        link_id: str | None = None,
    ) -> Account:
        """`relink`, without blocking the event loop during the check.

        With *link_id*, the save uses up that auth link (see `Store.save`).
        """
        account, merged = await self._stored(lambda: self._relink_values(account_id, values))
        verified = await self.hub.averify(account.provider_id, merged, on_request=on_request)
        return await self._stored(lambda: self._relinked(account, merged, verified, link_id))

    def _relink_values(
        self, account_id: str, values: Mapping[str, str]
    ) -> tuple[Account, dict[str, str]]:
        account = self.store.get(account_id)
        try:
            stored = self.store.credentials(account.id)
        except AccountNotFound:
            raise
        except StoreError:
            stored = dict(account.config)  # the old key is unreadable: the new one replaces it
        return account, {**stored, **values}

    def _relinked(
        self,
        account: Account,
        merged: dict[str, str],
        verified: Verified,
        link_id: str | None = None,
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
        return self._save(
            account.provider_id, merged, verified, account_id=account.id, link_id=link_id
        )

    def unlink(self, account_id: str) -> Account:
        """Forget an account and its key; return what was removed."""
        account = self.store.get(account_id)
        self.store.delete(account.id)
        return account

    async def aunlink(self, account_id: str) -> Account:
        """`unlink`, with the store call on *run_store* when one was given."""
        return await self._stored(lambda: self.unlink(account_id))

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
        transaction per ~100 accounts or quarter second), and *on_result* receives each account
        as its verdict is recorded.
        """
        from .store import KeyReplaced  # the store module is loaded already: it made self.store

        if account_ids is None:
            accounts = self.store.accounts()
        else:
            accounts = []
            for account_id in account_ids:
                try:
                    accounts.append(self.store.get(account_id))
                except AccountNotFound:
                    continue  # unlinked since the caller listed it
        reported: list[Account] = []
        unreadable: list[tuple[str, HubError]] = []
        checkable: list[tuple[Account, dict[str, str]]] = []
        versions: dict[str, str] = {}
        for account in accounts:
            if account.status is Status.DAMAGED:
                reported.append(account)
                continue
            try:
                values, versions[account.id] = self.store.checkout(account.id)
            except AccountNotFound:
                continue  # unlinked since it was listed
            except StoreError as exc:  # its key does not decrypt: the others are still checked
                unreadable.append((account.id, exc))
                continue
            checkable.append((account, values))
        for outcome in self.store.record_many(unreadable) if unreadable else ():
            if isinstance(outcome, Account):
                reported.append(outcome)
        for account in reported:
            if on_result is not None:
                on_result(account)

        recorded: list[Account | None] = [None] * len(checkable)
        pending: list[tuple[int, CheckResult]] = []
        flushed = time.monotonic()

        def flush() -> None:
            nonlocal flushed
            batch = [(checkable[index][0].id, result) for index, result in pending]
            outcomes = self.store.record_many(batch, versions=versions)
            retry = []
            for (index, _), outcome in zip(pending, outcomes, strict=True):
                if isinstance(outcome, AccountNotFound | KeyReplaced):
                    continue  # unlinked or relinked while the check ran
                if isinstance(outcome, HubError):  # the key now reaches another identity
                    retry.append((index, InvalidCredentials(outcome.message)))
                    continue
                recorded[index] = outcome
                if on_result is not None:
                    on_result(outcome)
            pending[:] = retry
            flushed = time.monotonic()
            if retry:
                flush()

        def record(index: int, result: CheckResult) -> None:
            pending.append((index, result))
            if len(pending) >= BATCH_SIZE or time.monotonic() - flushed >= BATCH_SECONDS:
                flush()

        items = ((account.provider_id, values) for account, values in checkable)
        try:
            await self.hub.check_many(items, concurrency=concurrency, on_result=record)
        finally:  # interrupted too (Ctrl-C): the verdicts already reached are kept
            if pending:
                flush()
        return reported + [account for account in recorded if account is not None]
