"""hub_core.accounts.Accounts: the service the CLI and the web Hub call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet

from hub_core import Accounts, Hub, IdentityMismatch, Store, Verified
from hub_core.hookspecs import Flow


def normalising_flow(credentials: Any) -> Flow:
    """Checks the key and reports the team it understood, plus (wrongly) a secret."""
    yield httpx.Request("GET", "https://api.acme.test/me")
    return Verified(
        f"org:{credentials['api_key'][-1]}",
        "Org",
        config={"team": "sales", "api_key": "replaced", "unknown": "x", "region": ""},
    )


@pytest.fixture
def accounts(tmp_path: Path, acme_plugin: Any) -> Accounts:
    hub = Hub(
        plugins=[acme_plugin(normalising_flow)],
        load_entrypoints=False,
        transport=httpx.MockTransport(lambda r: httpx.Response(200)),
    )
    return Accounts(hub, Store(tmp_path / "hub.db", secret_key=Fernet.generate_key()))


def test_the_flows_normalised_values_are_stored_instead_of_what_was_typed(
    accounts: Accounts,
) -> None:
    account = accounts.link("acme", {"api_key": "key-1", "team": "salesteam", "region": "eu"})
    assert account.config == {"region": "eu", "team": "sales"}
    assert accounts.store.credentials(account.id)["api_key"] == "key-1"


def test_relink_keeps_the_identity_and_refuses_another(accounts: Accounts) -> None:
    account = accounts.link("acme", {"api_key": "key-1"})
    assert accounts.relink(account.id, {"api_key": "new-1"}).id == account.id
    assert accounts.store.credentials(account.id)["api_key"] == "new-1"
    with pytest.raises(IdentityMismatch, match="reaches Org \\(org:2\\)"):
        accounts.relink(account.id, {"api_key": "key-2"})
    assert accounts.store.credentials(account.id)["api_key"] == "new-1"


async def test_alink_and_check_record_verdicts(accounts: Accounts) -> None:
    first = await accounts.alink("acme", {"api_key": "key-1"})
    seen: list[str] = []
    checked = await accounts.check(on_result=lambda a: seen.append(a.id))
    assert [a.id for a in checked] == seen == [first.id]
    assert checked[0].checked_at is not None
    assert accounts.unlink(first.id).id == first.id
    assert accounts.store.accounts() == []


pytestmark = pytest.mark.anyio


async def test_check_survives_an_account_unlinked_while_it_runs(accounts: Accounts) -> None:
    kept = accounts.link("acme", {"api_key": "key-1"})
    gone = accounts.link("acme", {"api_key": "key-2"})
    original = accounts.store.checkout

    def checkout_then_unlink(account_id: str) -> tuple[dict[str, str], str]:
        values = original(account_id)
        if account_id == gone.id:
            accounts.store.delete(gone.id)  # another process unlinks it mid-check
        return values

    accounts.store.checkout = checkout_then_unlink  # type: ignore[method-assign]
    checked = await accounts.check()
    assert [a.id for a in checked] == [kept.id]


async def test_a_key_that_now_reaches_another_identity_is_recorded_invalid(
    accounts: Accounts, acme_plugin: Any
) -> None:
    account = accounts.link("acme", {"api_key": "key-1"})
    accounts.store.delete(account.id)
    # Same stored id and key, but the provider now says the key reaches org:2.
    relinked = accounts.link("acme", {"api_key": "key-2"})
    with accounts.store._write() as conn:
        conn.execute("UPDATE accounts SET identity = 'org:1' WHERE id = ?", (relinked.id,))
    [checked] = await accounts.check()
    assert checked.status == "invalid"
    assert checked.last_error is not None
    assert "reaches 'org:2', not 'org:1'" in checked.last_error


async def test_check_records_in_batches_and_reports_each_account(
    accounts: Accounts, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hub_core import accounts as module

    monkeypatch.setattr(module, "BATCH_SIZE", 2)
    monkeypatch.setattr(module, "BATCH_SECONDS", 3600)
    for n in range(5):
        accounts.link("acme", {"api_key": f"key-{n}"})
    batches: list[int] = []
    record_many = accounts.store.record_many

    def counting(results: Any, **kwargs: Any) -> Any:
        results = list(results)
        batches.append(len(results))
        return record_many(results, **kwargs)

    accounts.store.record_many = counting  # type: ignore[method-assign]
    seen: list[str] = []
    checked = await accounts.check(concurrency=1, on_result=lambda a: seen.append(a.id))
    assert batches == [2, 2, 1]
    assert sorted(seen) == sorted(a.id for a in checked)
    assert len(checked) == 5


async def test_the_async_twins_run_every_store_call_through_run_store(
    accounts: Accounts,
) -> None:
    ran: list[str] = []

    async def run_store(call: Any) -> Any:
        ran.append(getattr(call, "__qualname__", "call"))
        return call()

    twin = Accounts(accounts.hub, accounts.store, run_store=run_store)
    first = await twin.alink("acme", {"api_key": "key-1"})
    assert len(ran) == 1
    relinked = await twin.arelink(first.id, {"api_key": "new-1"})
    assert relinked.id == first.id
    assert accounts.store.credentials(first.id)["api_key"] == "new-1"
    assert len(ran) == 3  # read the stored values, then save
    with pytest.raises(IdentityMismatch) as refused:
        await twin.arelink(first.id, {"api_key": "key-2"})
    assert (refused.value.stored_label, refused.value.new_label) == ("Org", "Org")
    assert accounts.store.credentials(first.id)["api_key"] == "new-1"
    assert (await twin.aunlink(first.id)).id == first.id
    assert accounts.store.accounts() == []
    assert len(ran) == 6
