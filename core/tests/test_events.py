"""hub_core.events: what `Accounts` tells a host after each change, and `Accounts.credentials`."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
from cryptography.fernet import Fernet

from hub_core import (
    AccountChecked,
    AccountLinked,
    AccountNotFound,
    AccountRelinked,
    Accounts,
    AccountUnlinked,
    CredentialsRead,
    Event,
    FieldError,
    Hub,
    HubError,
    IdentityMismatch,
    InvalidCredentials,
    LinkFailed,
    Policy,
    Status,
    Store,
    StoreError,
)
from hub_core.events import EventHandler
from hub_core.testing import assert_no_secret, find_secret

from .conftest import CANARY, AcmePlugin, acme_flow
from .test_imports import modules_after

pytestmark = pytest.mark.anyio

#: key -> (organisation id, name); any other key is refused (401).
KEYS = {"good": (7, "Seven"), "other": (8, "Eight"), CANARY: (9, "Canary Org")}


class Provider:
    """Acme's side: which keys it knows (a test can revoke one), and ``down`` for a 503."""

    def __init__(self) -> None:
        self.keys = dict(KEYS)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        key = request.headers.get("authorization", "").removeprefix("Bearer ")
        if key.endswith("down"):
            return httpx.Response(503)
        if key not in self.keys:
            return httpx.Response(401)
        org, name = self.keys[key]
        return httpx.Response(200, json={"id": org, "name": name})


class Events:
    """An on_event callback that keeps what it got, and what the store held at that moment."""

    def __init__(self) -> None:
        self.got: list[Event] = []
        self.stored: list[list[str]] = []
        self.threads: list[str] = []
        self.store: Store | None = None

    def __call__(self, event: Event) -> None:
        self.got.append(event)
        self.threads.append(threading.current_thread().name)
        if self.store is not None:
            self.stored.append([a.id for a in self.store.accounts()])

    def of(self, kind: type[Event]) -> list[Any]:
        return [e for e in self.got if isinstance(e, kind)]


@pytest.fixture
def provider() -> Provider:
    return Provider()


@pytest.fixture
def hub(provider: Provider) -> Iterator[Hub]:
    hub = Hub(
        plugins=[AcmePlugin(acme_flow)],
        load_entrypoints=False,
        transport=httpx.MockTransport(provider),
        policy=Policy(backoff=0, retries=0),
    )
    yield hub
    hub.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "hub.db", secret_key=Fernet.generate_key())
    yield store
    store.close()


@pytest.fixture
def events(store: Store) -> Events:
    events = Events()
    events.store = store
    return events


@pytest.fixture
def make(hub: Hub, store: Store) -> Callable[..., Accounts]:
    def build(on_event: EventHandler | None = None, **options: Any) -> Accounts:
        return Accounts(hub, store, on_event=on_event, **options)

    return build


def fresh(event: Event) -> None:
    """The common part of every event: a random hex id and a UTC time of just now."""
    assert len(event.id) == 32
    assert int(event.id, 16) >= 0
    assert event.at.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - event.at) < timedelta(seconds=30)


# --- each method, each event ------------------------------------------------------------------


def test_link_fires_account_linked_after_the_store_write(
    make: Callable[..., Accounts], events: Events
) -> None:
    accounts = make(events)
    account = accounts.link("acme", {"api_key": "good", "region": "eu"})
    [event] = events.got
    assert event == AccountLinked(
        account.id, "acme", "Seven", "org:7", "api", updated=False, id=event.id, at=event.at
    )
    assert (event.owner, event.source_id, event.state) == (None, None, None)
    fresh(event)
    assert events.stored == [[account.id]]  # the account was stored when it was told


def test_linking_a_known_identity_again_says_updated(
    make: Callable[..., Accounts], events: Events
) -> None:
    accounts = make(events)
    first = accounts.link("acme", {"api_key": "good"})
    again = accounts.link("acme", {"api_key": "good"})
    assert again.id == first.id
    assert [e.updated for e in events.of(AccountLinked)] == [False, True]
    other = accounts.link("acme", {"api_key": "other"})
    last = events.got[-1]
    assert isinstance(last, AccountLinked)
    assert (last.account_id, last.updated) == (other.id, False)
    assert events.got[0].id != events.got[1].id  # a random id per event


def test_relink_and_unlink_fire_their_events(
    make: Callable[..., Accounts], events: Events, provider: Provider
) -> None:
    accounts = make(events, via="cli")
    account = accounts.link("acme", {"api_key": "good"})
    provider.keys["new-key"] = (7, "Seven Renamed")
    accounts.relink(account.id, {"api_key": "new-key"})
    accounts.unlink(account.id)
    linked, relinked, unlinked = events.got
    assert relinked == AccountRelinked(
        account.id, "acme", "Seven Renamed", "org:7", "cli", id=relinked.id, at=relinked.at
    )
    assert unlinked == AccountUnlinked(
        account.id, "acme", "Seven Renamed", "org:7", "cli", id=unlinked.id, at=unlinked.at
    )
    assert linked.via == "cli"  # type: ignore[attr-defined]
    assert events.stored[-1] == []  # told after the account was gone


async def test_check_fires_one_account_checked_per_verdict_with_the_status_before(
    make: Callable[..., Accounts], events: Events, provider: Provider, store: Store
) -> None:
    accounts = make(events)
    kept = accounts.link("acme", {"api_key": "good"})
    revoked = accounts.link("acme", {"api_key": CANARY})
    broken = accounts.link("acme", {"api_key": "other"})
    del provider.keys[CANARY]  # revoked at the provider
    original = store.checkout

    def unreadable(account_id: str) -> tuple[dict[str, str], str]:
        if account_id == broken.id:
            raise StoreError("its key does not decrypt")
        return original(account_id)

    store.checkout = unreadable  # type: ignore[method-assign]
    events.got.clear()
    await accounts.check()
    by_account = {e.account_id: e for e in events.of(AccountChecked)}
    assert len(events.got) == len(by_account) == 3
    assert by_account[kept.id] == AccountChecked(
        kept.id,
        "acme",
        Status.ACTIVE,
        Status.ACTIVE,
        None,
        "api",
        id=by_account[kept.id].id,
        at=by_account[kept.id].at,
    )
    assert (by_account[revoked.id].previous_status, by_account[revoked.id].status) == (
        Status.ACTIVE,
        Status.INVALID,
    )
    assert by_account[revoked.id].error_code == "invalid_credentials"
    assert by_account[broken.id].status is Status.DAMAGED
    assert by_account[broken.id].error_code == "store_error"
    # A second check sees the invalid status as the one before.
    store.checkout = original  # type: ignore[method-assign]
    events.got.clear()
    await accounts.check([revoked.id])
    [again] = events.got
    assert (again.previous_status, again.status) == (Status.INVALID, Status.INVALID)  # type: ignore[attr-defined]


async def test_an_account_unlinked_during_the_check_fires_nothing(
    make: Callable[..., Accounts], events: Events, store: Store
) -> None:
    accounts = make(events)
    gone = accounts.link("acme", {"api_key": "good"})
    original = store.checkout

    def checkout_then_unlink(account_id: str) -> tuple[dict[str, str], str]:
        values = original(account_id)
        store.delete(account_id)  # another process unlinks it mid-check
        return values

    store.checkout = checkout_then_unlink  # type: ignore[method-assign]
    events.got.clear()
    assert await accounts.check() == []
    assert events.got == []
    assert gone.id not in [a.id for a in store.accounts()]


# --- a failed link ----------------------------------------------------------------------------


class FieldFlowPlugin(AcmePlugin):
    """A flow that blames a field: one of the form's, or a name the provider has not."""

    def __init__(self, field: str) -> None:
        def flow(credentials: Any) -> Any:
            yield httpx.Request("GET", "https://api.acme.test/me")
            raise FieldError(field, f"bad {field}")

        super().__init__(flow)


@pytest.mark.parametrize(
    ("provider_id", "values", "code", "field"),
    [
        ("acme", {"api_key": "refused"}, "invalid_credentials", "api_key"),
        ("acme", {"api_key": "key-down"}, "provider_unavailable", None),
        ("acme", {"region": "us"}, "invalid_field", "api_key"),  # no key typed
        ("nope", {"api_key": "good"}, "unknown_provider", None),
    ],
)
async def test_a_failed_link_fires_link_failed_and_stores_nothing(
    make: Callable[..., Accounts],
    events: Events,
    store: Store,
    provider_id: str,
    values: dict[str, str],
    code: str,
    field: str | None,
) -> None:
    accounts = make(events)
    with pytest.raises(HubError) as sync_error:
        accounts.link(provider_id, values)
    with pytest.raises(HubError):
        await accounts.alink(provider_id, values)
    assert sync_error.value.code == code
    assert store.accounts() == []
    assert not events.of(AccountLinked)
    assert [(e.provider_id, e.via, e.code, e.field, e.account_id) for e in events.got] == [
        (provider_id, "api", code, field, None)
    ] * 2
    assert all(isinstance(e, LinkFailed) for e in events.got)


@pytest.mark.parametrize(("field", "told"), [("team", "team"), ("not-a-field", None)])
def test_link_failed_names_a_field_only_when_it_is_one_of_the_providers(
    store: Store, events: Events, field: str, told: str | None
) -> None:
    hub = Hub(
        plugins=[FieldFlowPlugin(field)],
        load_entrypoints=False,
        transport=httpx.MockTransport(lambda r: httpx.Response(200)),
    )
    with pytest.raises(FieldError):
        Accounts(hub, store, on_event=events).link("acme", {"api_key": "good"})
    hub.close()
    assert [e.field for e in events.of(LinkFailed)] == [told]


async def test_a_failed_relink_fires_link_failed_with_the_account(
    make: Callable[..., Accounts], events: Events, store: Store
) -> None:
    accounts = make(events)
    account = accounts.link("acme", {"api_key": "good"})
    events.got.clear()
    with pytest.raises(IdentityMismatch):
        accounts.relink(account.id, {"api_key": "other"})
    with pytest.raises(InvalidCredentials):
        await accounts.arelink(account.id, {"api_key": "refused"})
    with pytest.raises(AccountNotFound):
        accounts.relink("no-such-account", {"api_key": "good"})
    assert [(e.provider_id, e.code, e.account_id) for e in events.got] == [
        ("acme", "identity_mismatch", account.id),
        ("acme", "invalid_credentials", account.id),
        (None, "account_not_found", "no-such-account"),
    ]
    assert not events.of(AccountRelinked)
    assert store.credentials(account.id)["api_key"] == "good"  # nothing changed


# --- sync and async callbacks -----------------------------------------------------------------


class AsyncEvents(Events):
    """An async callback: it has a turn of the loop to give up before it records."""

    async def __call__(self, event: Event) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        super().__call__(event)


async def test_an_async_callback_is_awaited_by_every_async_method(
    make: Callable[..., Accounts], store: Store
) -> None:
    events = AsyncEvents()
    accounts = make(events)
    account = await accounts.alink("acme", {"api_key": "good"})
    assert [type(e) for e in events.got] == [AccountLinked]
    await accounts.arelink(account.id, {"api_key": "good"})
    assert [type(e) for e in events.got][-1] is AccountRelinked
    await accounts.check()
    assert [type(e) for e in events.got][-1] is AccountChecked
    await accounts.acredentials(account.id, reader="billing")
    assert [type(e) for e in events.got][-1] is CredentialsRead
    await accounts.aunlink(account.id)
    assert [type(e) for e in events.got][-1] is AccountUnlinked
    with pytest.raises(InvalidCredentials):
        await accounts.alink("acme", {"api_key": "refused"})
    assert [type(e) for e in events.got][-1] is LinkFailed


def test_an_async_callback_runs_to_completion_in_the_sync_methods(
    make: Callable[..., Accounts],
) -> None:
    events = AsyncEvents()
    accounts = make(events)
    account = accounts.link("acme", {"api_key": "good"})
    accounts.relink(account.id, {"api_key": "good"})
    accounts.credentials(account.id, reader="billing")
    accounts.unlink(account.id)
    with pytest.raises(InvalidCredentials):
        accounts.link("acme", {"api_key": "refused"})
    assert [type(e) for e in events.got] == [
        AccountLinked,
        AccountRelinked,
        CredentialsRead,
        AccountUnlinked,
        LinkFailed,
    ]


async def test_a_sync_method_called_inside_a_running_loop_still_completes_an_async_callback(
    make: Callable[..., Accounts],
) -> None:
    events = AsyncEvents()
    make(events).link("acme", {"api_key": "good"})  # this loop cannot run it: a thread does
    assert [type(e) for e in events.got] == [AccountLinked]
    assert events.threads == ["hub-on-event"]


async def test_a_sync_callback_in_the_async_methods(make: Callable[..., Accounts]) -> None:
    events = Events()
    accounts = make(events)
    account = await accounts.alink("acme", {"api_key": "good"})
    await accounts.check()
    await accounts.aunlink(account.id)
    assert [type(e) for e in events.got] == [AccountLinked, AccountChecked, AccountUnlinked]


# --- a callback that raises -------------------------------------------------------------------


def raising(event: Event) -> None:
    raise RuntimeError(f"host bug while handling {event.type}, holding {CANARY}")


async def raising_async(event: Event) -> None:
    await asyncio.sleep(0)
    raising(event)


@pytest.mark.parametrize("callback", [raising, raising_async], ids=["sync", "async"])
async def test_a_raising_callback_is_logged_and_changes_nothing(
    make: Callable[..., Accounts],
    store: Store,
    caplog: pytest.LogCaptureFixture,
    callback: EventHandler,
) -> None:
    caplog.set_level(logging.DEBUG)
    accounts = make(callback)
    account = accounts.link("acme", {"api_key": CANARY})
    assert [a.id for a in store.accounts()] == [account.id]  # still linked
    again = await accounts.alink("acme", {"api_key": CANARY})
    assert again.id == account.id
    relinked = await accounts.arelink(account.id, {"api_key": CANARY})
    assert relinked.status is Status.ACTIVE
    [checked] = await accounts.check()
    assert checked.id == account.id
    assert accounts.credentials(account.id, reader="audit")["api_key"] == CANARY
    # A failed link still raises its own error, not the callback's.
    with pytest.raises(InvalidCredentials):
        accounts.link("acme", {"api_key": CANARY + "-refused"})
    accounts.unlink(account.id)
    assert store.accounts() == []
    failures = [r for r in caplog.records if r.name == "hub_core.events"]
    assert len(failures) == 7
    assert all(r.levelno == logging.ERROR for r in failures)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "failed on account.linked" in text
    assert "RuntimeError at " in text
    assert "the change it reported stands" in text
    assert find_secret(text, [CANARY]) is None, text
    assert "host bug" not in text  # the message is the host's: it may quote any key
    assert all(r.exc_info is None for r in failures)  # no traceback quoting the message


# --- no secret, ever --------------------------------------------------------------------------


async def test_no_event_holds_a_piece_of_the_key(
    make: Callable[..., Accounts], events: Events, provider: Provider
) -> None:
    accounts = make(events)
    account = accounts.link("acme", {"api_key": CANARY, "team": "sales"})
    accounts.relink(account.id, {"api_key": CANARY})
    await accounts.check()
    del provider.keys[CANARY]
    await accounts.check()
    accounts.credentials(account.id, reader="billing")
    for key in (CANARY + "-refused", CANARY + "-down"):
        with pytest.raises(HubError):
            accounts.link("acme", {"api_key": key})
        with pytest.raises(HubError):
            accounts.relink(account.id, {"api_key": key})
    accounts.unlink(account.id)
    kinds = {type(e) for e in events.got}
    assert kinds == {
        AccountLinked,
        AccountRelinked,
        AccountChecked,
        CredentialsRead,
        LinkFailed,
        AccountUnlinked,
    }
    for event in events.got:
        assert_no_secret(event, [CANARY])
        assert find_secret(json.dumps(event.to_json()), [CANARY]) is None


# --- credentials ------------------------------------------------------------------------------


async def test_credentials_gives_the_key_masked_in_its_repr_and_each_read_is_an_event(
    make: Callable[..., Accounts], events: Events
) -> None:
    accounts = make(events)
    account = accounts.link("acme", {"api_key": CANARY, "region": "eu"})
    events.got.clear()
    values = accounts.credentials(account.id, reader="billing-sync")
    assert dict(values) == {"api_key": CANARY, "region": "eu"}
    assert values.secret_names == {"api_key"}
    assert_no_secret(values, [CANARY])  # repr and str mask it
    assert dict(await accounts.acredentials(account.id, reader="reports")) == dict(values)
    first, second = events.got
    assert first == CredentialsRead(account.id, "acme", "billing-sync", id=first.id, at=first.at)
    assert (second.reader, second.account_id) == ("reports", account.id)  # type: ignore[attr-defined]
    assert first.id != second.id


async def test_credentials_needs_a_reader_and_a_failed_read_is_no_event(
    make: Callable[..., Accounts], events: Events
) -> None:
    accounts = make(events)
    account = accounts.link("acme", {"api_key": "good"})
    events.got.clear()
    for reader in ("", "  "):
        with pytest.raises(ValueError, match="reader"):
            accounts.credentials(account.id, reader=reader)
        with pytest.raises(ValueError, match="reader"):
            await accounts.acredentials(account.id, reader=reader)
    with pytest.raises(AccountNotFound):
        accounts.credentials("no-such-account", reader="billing")
    assert events.got == []


def test_credentials_works_without_the_providers_plugin(
    make: Callable[..., Accounts], events: Events, store: Store
) -> None:
    account = make().link("acme", {"api_key": CANARY, "region": "eu"})
    bare = Hub(plugins=[], load_entrypoints=False)
    values = Accounts(bare, store, on_event=events).credentials(account.id, reader="x")
    bare.close()
    assert values.secret_names == {"api_key"}
    assert [type(e) for e in events.got] == [CredentialsRead]


# --- the events themselves --------------------------------------------------------------------


def samples() -> list[Event]:
    return [
        AccountLinked("a1", "acme", "Seven", "org:7", "api", updated=True, owner="o", state="s"),
        AccountRelinked("a1", "acme", "Seven", "org:7", "dashboard"),
        AccountUnlinked("a1", "acme", "Seven", "org:7", "cli"),
        AccountChecked("a1", "acme", "invalid", "active", "invalid_credentials", "api"),
        LinkFailed("acme", "api", "invalid_credentials", "api_key"),
        CredentialsRead("a1", "acme", "billing"),
    ]


def test_to_json_is_json_with_the_type_id_time_and_fields() -> None:
    at = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    linked = AccountLinked("a1", "acme", "Seven", "org:7", "api", updated=False, id="e1", at=at)
    assert linked.to_json() == {
        "type": "account.linked",
        "id": "e1",
        "at": "2025-01-02T03:04:05Z",
        "account": "a1",
        "provider": "acme",
        "label": "Seven",
        "identity": "org:7",
        "via": "api",
        "updated": False,
        "owner": None,
        "source_id": None,
        "state": None,
    }
    checked = samples()[3].to_json()
    assert (checked["status"], checked["previous_status"]) == ("invalid", "active")
    for event in samples():
        data = json.loads(json.dumps(event.to_json()))
        assert (data["type"], data["id"]) == (event.type, event.id)
        assert data["at"].endswith("Z")
    assert len({e.type for e in samples()}) == len(samples())


def test_events_are_frozen_and_checked_statuses_are_statuses() -> None:
    for event in samples():
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            event.id = "changed"  # type: ignore[misc]
    assert samples()[3].status is Status.INVALID  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="no-such-status"):
        AccountChecked("a1", "acme", "no-such-status", "active", None, "api")


def test_import_hub_core_does_not_load_the_events_until_used() -> None:
    assert "hub_core.events" not in modules_after("import hub_core")
    assert "hub_core.events" in modules_after("import hub_core; hub_core.AccountLinked")


def test_the_cli_tells_its_changes_as_via_cli(hub: Hub, store: Store) -> None:
    from hub_core.cli import State

    assert State(hub=hub, store=store).accounts.via == "cli"


# --- owners -----------------------------------------------------------------------------------


def test_an_owners_account_is_theirs_in_every_method_and_event(
    make: Callable[..., Accounts], events: Events
) -> None:
    accounts = make(events)
    mine = accounts.link("acme", {"api_key": "good"}, owner="cust-a", owner_name="Ann")
    theirs = accounts.link("acme", {"api_key": "good"}, owner="cust-b")
    assert mine.id != theirs.id
    linked = events.of(AccountLinked)
    assert [(e.owner, e.updated) for e in linked] == [("cust-a", False), ("cust-b", False)]
    # Owner A's calls do not find B's account, and change nothing.
    with pytest.raises(AccountNotFound):
        accounts.relink(theirs.id, {"api_key": "other"}, owner="cust-a")
    with pytest.raises(AccountNotFound):
        accounts.unlink(theirs.id, owner="cust-a")
    with pytest.raises(AccountNotFound):
        accounts.credentials(theirs.id, reader="sync", owner="cust-a")
    assert accounts.credentials(theirs.id, reader="sync", owner="cust-b")["api_key"] == "good"
    relinked = accounts.relink(mine.id, {"api_key": "good"}, owner="cust-a")
    assert events.of(AccountRelinked)[-1].owner == "cust-a"
    assert relinked.owner_name == "Ann"
    accounts.unlink(mine.id, owner="cust-a")
    assert events.of(AccountUnlinked)[-1].owner == "cust-a"
    assert [a.id for a in accounts.store.accounts()] == [theirs.id]


def test_a_bad_owner_is_refused_and_nothing_is_stored(
    make: Callable[..., Accounts], events: Events
) -> None:
    accounts = make(events)
    with pytest.raises(ValueError, match="owner"):
        accounts.link("acme", {"api_key": "good"}, owner="")
    assert events.got == []
    assert accounts.store.accounts() == []
