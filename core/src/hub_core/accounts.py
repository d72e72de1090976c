"""Linked accounts: keys checked by a `Hub`, kept in a `Store`.

`Accounts` is what the CLI and the web Hub call: link, relink, check, unlink. A failed check
stores nothing; a re-check records its verdict on the account.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from .errors import AccountNotFound, HubError, IdentityMismatch, InvalidCredentials
from .fields import validate_values
from .model import Account, Credentials, Verified

if TYPE_CHECKING:
    from .hub import CheckResult, Hub
    from .store import Store

__all__ = ["Accounts"]

#: Re-check verdicts are written this many at a time, or at least this often.
BATCH_SIZE = 100
BATCH_SECONDS = 0.25


class Accounts:
    """The linked accounts of one store, checked by one hub."""

    def __init__(self, hub: Hub, store: Store) -> None:
        self.hub = hub
        self.store = store

    def link(self, provider_id: str, values: Mapping[str, str]) -> Account:
        """Check a key live and store the account; linking a known identity updates it.

        Raise the `HubError` of the check, in which case nothing is stored.
        """
        verified = self.hub.verify(provider_id, values)
        return self._save(provider_id, values, verified)

    async def alink(self, provider_id: str, values: Mapping[str, str]) -> Account:
        """`link`, without blocking the event loop during the check."""
        verified = await self.hub.averify(provider_id, values)
        return self._save(provider_id, values, verified)

    def _save(self, provider_id: str, values: Mapping[str, str], verified: Verified) -> Account:
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
        return self.store.save(provider_id, verified, credentials)

    def relink(self, account_id: str, values: Mapping[str, str]) -> Account:
        """Replace an account's key; the new key must reach the same identity.

        *values* overrides the stored values (usually just the secret fields). Raise
        `IdentityMismatch` when the key reaches someone else, and store nothing then.
        """
        account = self.store.get(account_id)
        merged = {**self.store.credentials(account.id), **values}
        verified = self.hub.verify(account.provider_id, merged)
        if verified.identity != account.identity:
            raise IdentityMismatch(
                f"the new key reaches {verified.label} ({verified.identity}), but account "
                f"{account.id} is {account.label} ({account.identity}); nothing was changed. "
                f"To add it as another account, run `hub link {account.provider_id}`"
            )
        return self._save(account.provider_id, merged, verified)

    def unlink(self, account_id: str) -> Account:
        """Forget an account and its key; return what was removed."""
        account = self.store.get(account_id)
        self.store.delete(account.id)
        return account

    async def check(
        self,
        account_ids: Sequence[str] | None = None,
        *,
        concurrency: int = 20,
        on_result: Callable[[Account], None] | None = None,
    ) -> list[Account]:
        """Re-check accounts live (all when *account_ids* is None) and record each verdict.

        Never raises for one account: its error is recorded on it (status ``error``, ``invalid``
        or ``denied``); an account unlinked while the check runs is left out. Verdicts are
        recorded in batches (one transaction per ~100 accounts or quarter second), and
        *on_result* receives each account as its verdict is recorded.
        """
        if account_ids is None:
            accounts = self.store.accounts()
        else:
            accounts = [self.store.get(account_id) for account_id in account_ids]
        recorded: list[Account | None] = [None] * len(accounts)
        pending: list[tuple[int, CheckResult]] = []
        flushed = time.monotonic()

        def flush() -> None:
            nonlocal flushed
            batch = [(accounts[index].id, result) for index, result in pending]
            outcomes = self.store.record_many(batch)
            retry = []
            for (index, _), outcome in zip(pending, outcomes, strict=True):
                if isinstance(outcome, AccountNotFound):
                    continue  # unlinked while the check ran
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

        items = ((a.provider_id, self.store.credentials(a.id)) for a in accounts)
        try:
            await self.hub.check_many(items, concurrency=concurrency, on_result=record)
        finally:  # interrupted too (Ctrl-C): the verdicts already reached are kept
            if pending:
                flush()
        return [account for account in recorded if account is not None]
