"""The store under broken state: hand-edited rows, keys that do not decrypt, unstorable text,
and writers racing a check (in one process; `tests/test_store_processes.py` runs real ones)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from cryptography.fernet import Fernet

from hub_core import Hub, InvalidCredentials, Policy, Verified
from hub_core.accounts import Accounts
from hub_core.cli import State, main
from hub_core.errors import AccountNotFound
from hub_core.hookspecs import Flow
from hub_core.model import Credentials
from hub_core.status import Status
from hub_core.store import KeyReplaced, Store

KEY = Fernet.generate_key()
SURROGATE = "\ud800"


def handler(request: httpx.Request) -> httpx.Response:
    """Keys ``key-<n>`` reach organisation n; ``revoked`` and anything else get 401."""
    key = request.headers["authorization"].removeprefix("Bearer ")
    if key.startswith("key-"):
        number = key.removeprefix("key-")
        return httpx.Response(200, json={"id": number, "name": f"Org {number}"})
    return httpx.Response(401, json={})


def flow(credentials: Any) -> Flow:
    """Acme's flow, with keys whose results hold a lone surrogate (a careless plugin)."""
    key = credentials["api_key"]
    response = yield httpx.Request(
        "GET", "https://api.acme.test/me", headers={"Authorization": f"Bearer {key}"}
    )
    if response.status_code == 401:
        raise InvalidCredentials("Acme rejected the key")
    org = response.json()
    # Organisation 9's name holds a lone surrogate, as a plugin that does not clean text passes.
    label = org["name"] + (SURROGATE if org["id"] == "9" else "")
    return Verified(f"org:{org['id']}", label)


class Env:
    """A store of Acme accounts, its hub, and `hub` invoked in-process over both."""

    def __init__(self, tmp_path: Path, plugin: Any) -> None:
        self.path = tmp_path / "hub.db"
        self.requests: list[str] = []

        def recording(request: httpx.Request) -> httpx.Response:
            self.requests.append(request.headers["authorization"].removeprefix("Bearer "))
            return handler(request)

        self.hub = Hub(
            plugins=[plugin(flow)],
            load_entrypoints=False,
            policy=Policy(backoff=0),
            transport=httpx.MockTransport(recording),
        )

    def store(self) -> Store:
        return Store(self.path, secret_key=KEY)

    def link(self, key: str) -> str:
        with self.store() as store:
            return Accounts(self.hub, store).link("acme", {"api_key": key}).id

    def edit(self, sql: str, *params: object) -> None:
        with sqlite3.connect(self.path) as conn:
            conn.execute(sql, params)
        conn.close()

    def run(self, *args: str, env: dict[str, str] | None = None) -> Result:
        with self.store() as store:
            state = State(hub=self.hub, store=store, interactive=False)
            return CliRunner().invoke(main, list(args), obj=state, env=env)

    def listing(self) -> list[dict[str, Any]]:
        result = self.run("accounts", "--json")
        assert result.exit_code == 0, result.output
        data: list[dict[str, Any]] = json.loads(result.stdout)
        return data


@pytest.fixture
def env(tmp_path: Path, acme_plugin: Any) -> Iterator[Env]:
    environment = Env(tmp_path, acme_plugin)
    yield environment
    environment.hub.close()


# --- one hand-edited row ------------------------------------------------------------------------

#: Every column a hand edit can break, with values SQLite lets through (it types values, not
#: columns): the row must show as damaged naming the column, and never hide the others.
BROKEN = [
    ("id", "NULL"),
    ("id", "X'00ff'"),
    ("id", "'Not An Id'"),
    ("provider_id", "X'ff'"),
    ("identity", "X'ff00'"),
    ("label", "X'ff'"),
    ("label", "''"),
    ("verdict", "'revoked'"),
    ("verdict", "42"),
    ("config", "'not json'"),
    ("config", "'[1, 2]'"),
    ("config", """'{"team": 5}'"""),
    ("secrets", "'text, not a token'"),
    ("linked_at", "'yesterday'"),
    ("linked_at", "12"),
    ("checked_at", "'not a date'"),
    ("expires_at", "'soon'"),
    ("expires_at", "X'01'"),
    ("expires_at", "'9999-99-99'"),
    ("last_error", "X'ff'"),
    ("details", "'{broken'"),
    ("details", "'[]'"),
]


def break_row(env: Env, column: str, value: str) -> tuple[str, str]:
    """Link two accounts, break *column* of the first; return (the first's id, the other's)."""
    victim, other = env.link("key-1"), env.link("key-2")
    env.edit(f"UPDATE accounts SET {column} = {value} WHERE id = ?", victim)  # noqa: S608
    return victim, other


def damaged_one(env: Env) -> dict[str, Any]:
    listing = env.listing()
    assert len(listing) == 2, listing
    damaged = [account for account in listing if account["status"] == "damaged"]
    assert len(damaged) == 1, listing
    return damaged[0]


@pytest.mark.parametrize(("column", "value"), BROKEN, ids=[f"{c}={v}" for c, v in BROKEN])
def test_a_hand_edited_row_is_listed_as_damaged_and_hides_no_other(
    env: Env, column: str, value: str
) -> None:
    _victim, other = break_row(env, column, value)
    damaged = damaged_one(env)
    assert column in damaged["last_error"]
    assert "hub unlink" in damaged["last_error"]
    assert other in [account["id"] for account in env.listing()]

    table = env.run("accounts")
    assert table.exit_code == 0, table.output
    assert "damaged" in table.output
    assert "Org 2" in table.output

    shown = env.run("accounts", "show", damaged["id"])
    assert shown.exit_code == 0, shown.output
    assert column in shown.output


@pytest.mark.parametrize(("column", "value"), BROKEN, ids=[f"{c}={v}" for c, v in BROKEN])
def test_check_reports_a_damaged_row_and_checks_the_others(
    env: Env, column: str, value: str
) -> None:
    _victim, other = break_row(env, column, value)
    env.requests.clear()
    checked = env.run("check")
    assert checked.exit_code == 1, checked.output  # an account needs the person to act
    assert "damaged" in checked.output
    assert "1 active" in checked.output
    assert env.requests == ["key-2"]  # the damaged row is not checked
    by_status = {account["status"]: account for account in env.listing()}
    assert by_status["active"]["id"] == other
    assert by_status["active"]["checked_at"] is not None

    as_json = env.run("check", "--json")
    statuses = sorted(account["status"] for account in json.loads(as_json.stdout))
    assert statuses == ["active", "damaged"]


@pytest.mark.parametrize(("column", "value"), BROKEN, ids=[f"{c}={v}" for c, v in BROKEN])
def test_a_damaged_row_can_be_unlinked(env: Env, column: str, value: str) -> None:
    _victim, other = break_row(env, column, value)
    damaged = damaged_one(env)
    unlinked = env.run("unlink", damaged["id"], "--yes")
    assert unlinked.exit_code == 0, unlinked.output
    assert [account["id"] for account in env.listing()] == [other]


def test_recording_on_a_row_with_broken_details_and_expiry_still_works(env: Env) -> None:
    victim = env.link("key-1")
    env.edit("UPDATE accounts SET details = '{x', expires_at = 'soon' WHERE id = ?", victim)
    with env.store() as store:
        updated = store.record(victim, InvalidCredentials("revoked"))
    assert updated.status is Status.DAMAGED  # the row is still broken: the verdict is kept
    with sqlite3.connect(env.path) as conn:
        (verdict,) = conn.execute("SELECT verdict FROM accounts").fetchone()
    conn.close()
    assert verdict == "invalid"


# --- a key that does not decrypt ----------------------------------------------------------------


def test_an_account_whose_key_does_not_decrypt_is_reported_and_the_others_checked(
    env: Env,
) -> None:
    victim, other = env.link("key-1"), env.link("key-2")
    foreign = Fernet(Fernet.generate_key()).encrypt(json.dumps({"api_key": "key-1"}).encode())
    env.edit("UPDATE accounts SET secrets = ? WHERE id = ?", foreign, victim)
    env.requests.clear()

    checked = env.run("check")
    assert checked.exit_code == 1, checked.output
    assert env.requests == ["key-2"]
    assert "cannot be decrypted with this store's secret key" in checked.output
    by_id = {account["id"]: account for account in env.listing()}
    assert by_id[other]["status"] == "active"
    assert by_id[victim]["status"] == "damaged"
    assert "cannot be decrypted" in by_id[victim]["last_error"]

    # Relink gives it a key again, from the non-secret fields that are still readable.
    relinked = env.run("relink", victim, env={"HUB_FIELD_API_KEY": "key-1"})
    assert relinked.exit_code == 0, relinked.output
    assert {account["status"] for account in env.listing()} == {"active"}


def test_unreadable_stored_fields_are_a_store_error_not_a_traceback(env: Env) -> None:
    victim = env.link("key-1")
    env.edit("UPDATE accounts SET config = 'nope' WHERE id = ?", victim)
    with env.store() as store, pytest.raises(Exception, match="cannot be read") as caught:
        store.credentials(victim)
    assert type(caught.value).__name__ == "StoreError"


# --- one outcome that cannot be stored ----------------------------------------------------------


@pytest.mark.parametrize("where", ["label", "last_error"])
def test_one_unstorable_outcome_never_costs_the_batch_its_verdicts(env: Env, where: str) -> None:
    first, second, third = env.link("key-1"), env.link("key-2"), env.link("key-3")

    def outcome(number: int) -> Verified | InvalidCredentials:
        if where == "label":
            return Verified(f"org:{number}", f"Org {SURROGATE}")
        return InvalidCredentials(f"rejected {SURROGATE}")

    with env.store() as store:
        results = store.record_many(
            [(first, InvalidCredentials("revoked")), (second, outcome(2)), (third, outcome(3))]
        )
    assert [type(result).__name__ for result in results] == ["Account"] * 3
    by_id = {account["id"]: account for account in env.listing()}
    assert by_id[first]["status"] == "invalid"
    for account_id in (second, third):
        assert by_id[account_id]["status"] == "error"
        assert "could not be stored" in by_id[account_id]["last_error"]


def test_check_records_every_verdict_when_a_plugin_returns_unstorable_text(env: Env) -> None:
    revoked, careless = env.link("key-1"), env.link("key-2")
    # The first key has been revoked at the provider; the second one now reaches organisation
    # 9, whose name the plugin passes on with a lone surrogate.
    for account, key in ((revoked, "revoked"), (careless, "key-9")):
        token = Fernet(KEY).encrypt(json.dumps({"api_key": key}).encode())
        env.edit("UPDATE accounts SET secrets = ? WHERE id = ?", token, account)
    env.edit("UPDATE accounts SET identity = 'org:9' WHERE id = ?", careless)
    checked = env.run("check", "--json")
    by_id = {account["id"]: account for account in json.loads(checked.stdout)}
    assert by_id[revoked]["status"] == "invalid"
    # The driver makes a flow's text storable before the store sees it (U+FFFD for the lone
    # surrogate); the store's own per-account guard is pinned by the test above.
    assert by_id[careless]["status"] == "active"
    assert "\ufffd" in by_id[careless]["label"]
    assert checked.exit_code == 1
    assert {a["id"]: a["status"] for a in env.listing()} == {revoked: "invalid", careless: "active"}


# --- writers racing a check, in one process -------------------------------------------------------


def test_a_verdict_on_a_replaced_key_is_dropped(env: Env) -> None:
    account = env.link("key-1")
    with env.store() as store:
        _, version = store.checkout(account)
        store.save(
            "acme",
            Verified("org:1", "Org 1"),
            Credentials({"api_key": "key-1"}, secret={"api_key"}),
            account_id=account,
        )
        [outcome] = store.record_many(
            [(account, InvalidCredentials("old key revoked"))], versions={account: version}
        )
        assert isinstance(outcome, KeyReplaced)
        assert store.get(account).status is Status.ACTIVE
        with pytest.raises(KeyReplaced):
            store.record(account, InvalidCredentials("old key revoked"), version=version)
        _, current = store.checkout(account)
        assert store.record(account, InvalidCredentials("revoked"), version=current).status == (
            Status.INVALID
        )


def test_a_relink_of_an_account_unlinked_meanwhile_does_not_bring_it_back(env: Env) -> None:
    account = env.link("key-1")
    with env.store() as store:
        store.delete(account)
        with pytest.raises(AccountNotFound, match="unlinked while its new key"):
            store.save(
                "acme",
                Verified("org:1", "Org 1"),
                Credentials({"api_key": "key-1"}, secret={"api_key"}),
                account_id=account,
            )
        assert store.accounts() == []


# --- read-only (the real thing runs as another user in tests/test_store_processes.py) ----------


def test_a_read_only_store_that_needs_an_upgrade_is_a_clear_error(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    env.link("key-1")
    env.edit("PRAGMA user_version = 1")
    from hub_core import store as store_module

    monkeypatch.setattr(store_module.os, "access", lambda path, mode: mode != store_module.os.W_OK)
    with pytest.raises(Exception, match=r"needs to be upgraded.*write access") as caught:
        env.store()
    assert type(caught.value).__name__ == "StoreError"
    with sqlite3.connect(env.path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (1,)
    conn.close()
