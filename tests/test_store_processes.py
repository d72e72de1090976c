"""The store against other users and other processes, with the real ``hub`` command.

Ownership and read-only stores run ``hub`` as the user ``nobody`` (the `other_user` fixture:
root ignores permission bits, so these tests could not fail as root). The races run two real
``hub`` processes: a fake provider holds the check's (or relink's) request until the second
process has finished.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from hub_core.model import Credentials, Verified
from hub_core.store import Store

pytestmark = pytest.mark.slow

OTHER_KEY = "essu_T1RIRVIta2V5LXR3bzpzZWNyZXQtcGFydC05ODc2NTQzMjEw"
NEW_KEY = "essu_TkVXLWtleS10aHJlZTpzZWNyZXQtcGFydC01NTU1NTU1NTU1"
OTHER_ORG = {"id": "org2", "name": "Other Org"}


def snapshot(directory: Path) -> dict[str, tuple[int, int, bytes]]:
    return {
        path.name: (path.stat().st_uid, path.stat().st_mode, path.read_bytes())
        for path in sorted(directory.iterdir())
    }


# --- a HUB_HOME another user prepared -----------------------------------------------------------


def foreign_home(user, home: Path) -> None:
    """The issue's case: another user's world-writable dir, their key (0644), their empty db."""
    home.mkdir()
    home.chmod(0o777)
    (home / "hub.key").write_bytes(Fernet.generate_key() + b"\n")
    (home / "hub.key").chmod(0o644)
    (home / "hub.db").write_bytes(b"")
    (home / "hub.db").chmod(0o666)


def home_writable_by_others(mode: int) -> Callable[..., None]:
    def prepare(user, home: Path) -> None:
        home.mkdir()
        user.own(home)
        home.chmod(mode)

    return prepare


def own_home_with(name: str, mode: int, mine: bool) -> Callable[..., None]:
    def prepare(user, home: Path) -> None:
        home.mkdir(mode=0o700)
        user.own(home)
        path = home / name
        path.write_bytes(Fernet.generate_key() + b"\n" if name == "hub.key" else b"")
        if mine:
            user.own(path)
        path.chmod(mode)

    return prepare


HOSTILE_HOMES = {
    "the issue's: another user's world-writable dir, key and empty db": (foreign_home, "chown"),
    "another user's directory": (
        lambda user, home: (home.mkdir(), home.chmod(0o777)),
        "belongs to another user",
    ),
    "own directory, group-writable": (home_writable_by_others(0o770), "chmod go-w"),
    "own directory, world-writable": (home_writable_by_others(0o707), "chmod go-w"),
    "another user's key file": (own_home_with("hub.key", 0o600, mine=False), "chown"),
    "own key file readable by others": (own_home_with("hub.key", 0o644, mine=True), "chmod 600"),
    "own key file readable by the group": (
        own_home_with("hub.key", 0o640, mine=True),
        "chmod 600",
    ),
    "another user's database": (own_home_with("hub.db", 0o600, mine=False), "chown"),
    "own database writable by others": (own_home_with("hub.db", 0o666, mine=True), "chmod 600"),
    "another user's -wal file": (own_home_with("hub.db-wal", 0o600, mine=False), "chown"),
}


@pytest.mark.parametrize("case", list(HOSTILE_HOMES))
def test_a_home_another_user_can_write_or_owns_is_refused_with_the_fix(other_user, case):
    prepare, fix = HOSTILE_HOMES[case]
    home = other_user.base / "home"
    prepare(other_user, home)
    before = snapshot(home)

    for args in (("accounts",), ("check",)):
        done = other_user.run(home, *args)
        assert done.returncode == 2, (done.stdout, done.stderr)
        assert "refusing to use the account store" in done.stderr
        assert fix in done.stderr
        assert "Traceback" not in done.stderr
    assert snapshot(home) == before  # nothing created, nothing tightened behind the user's back


def test_the_other_user_can_use_a_home_of_their_own(other_user):
    # The control: the harness itself lets hub run as that user, so the refusals above are
    # hub's doing, not the harness failing.
    home = other_user.base / "home"
    home.mkdir(mode=0o700)
    other_user.own(home)
    done = other_user.run(home, "accounts", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
    assert {path.stat().st_uid for path in [home, *home.iterdir()]} == {other_user.uid}
    assert (home / "hub.key").stat().st_mode & 0o077 == 0


# --- a read-only HUB_HOME -----------------------------------------------------------------------


def populated_home(user, home: Path) -> str:
    """A store of one account, owned by *user*, as hub left it (no -wal or -shm file)."""
    with Store(home / "hub.db") as store:
        account = store.save(
            "elastic",
            Verified("org1", "Acme Org"),
            Credentials({"api_key": "essu_secret-value"}, secret={"api_key"}),
        )
    user.own(home, *home.iterdir())
    return account.id


@pytest.mark.parametrize("read_only", ["directory", "directory and files"])
def test_a_read_only_home_can_be_listed_and_refuses_changes_clearly(other_user, read_only):
    home = other_user.base / "home"
    account_id = populated_home(other_user, home)
    if read_only == "directory and files":
        for path in home.iterdir():
            path.chmod(0o400)
    home.chmod(0o500)
    before = snapshot(home)

    listed = other_user.run(home, "accounts", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [account["id"] for account in json.loads(listed.stdout)] == [account_id]
    table = other_user.run(home, "accounts")
    assert table.returncode == 0, table.stderr
    assert "Acme Org" in table.stdout
    shown = other_user.run(home, "accounts", "show", account_id)
    assert shown.returncode == 0, shown.stderr

    unlinked = other_user.run(home, "unlink", account_id, "--yes")
    assert unlinked.returncode == 2
    assert "read-only" in unlinked.stderr
    assert "Traceback" not in unlinked.stderr
    assert snapshot(home) == before


# --- two processes racing -----------------------------------------------------------------------


def sent(fake, key: str) -> int:
    return sum(r.headers.get("authorization") == f"ApiKey {key}" for r in fake.requests)


def wait_for_request(fake, key: str, before: int) -> None:
    """Wait until a request with *key* arrives, beyond the *before* already seen."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if sent(fake, key) > before:
            return
        time.sleep(0.02)
    pytest.fail(f"no request with the key arrived; requests: {fake.requests}")


def link(hub, key: str) -> str:
    done = hub.run("link", "elastic", "--json", env={"HUB_FIELD_API_KEY": key})
    assert done.returncode == 0, done.stderr
    account_id: str = json.loads(done.stdout)["id"]
    return account_id


@pytest.mark.parametrize("unlinked", ["in flight", "waiting its turn"])
def test_unlink_while_check_runs_leaves_that_account_out(hub, elastic, keys, unlinked):
    elastic.keys[OTHER_KEY] = OTHER_ORG
    first, second = link(hub, keys.elastic), link(hub, OTHER_KEY)  # checked in this order
    gone, kept = (first, second) if unlinked == "in flight" else (second, first)
    elastic.held = {keys.elastic}
    before = sent(elastic, keys.elastic)
    # One check at a time: the second account waits while the first one's request is held.
    check = hub.popen("check", "--json", "--concurrency", "1")
    try:
        wait_for_request(elastic, keys.elastic, before)
        unlinked_done = hub.run("unlink", gone, "--yes")
        assert unlinked_done.returncode == 0, unlinked_done.stderr
    finally:
        elastic.release.set()
    done = hub.finish(check)

    assert done.returncode == 0, done.stderr
    assert [(a["id"], a["status"]) for a in json.loads(done.stdout)] == [(kept, "active")]
    assert "no account" not in done.stderr
    assert [a["id"] for a in hub.json("accounts", "--json")] == [kept]


def test_relink_while_check_runs_keeps_the_new_key_and_its_verdict(hub, elastic, keys):
    account = link(hub, keys.elastic)
    elastic.held = {keys.elastic}
    before = sent(elastic, keys.elastic)
    check = hub.popen("check", "--json")
    try:
        wait_for_request(elastic, keys.elastic, before)
        # The old key is revoked and replaced while its check is in flight.
        elastic.keys = {NEW_KEY: elastic.keys[keys.elastic]}
        relinked = hub.run("relink", account, "--json", env={"HUB_FIELD_API_KEY": NEW_KEY})
        assert relinked.returncode == 0, relinked.stderr
    finally:
        elastic.release.set()
    done = hub.finish(check)

    # The old key's "invalid" is about a key the account no longer holds: dropped.
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
    [stored] = hub.json("accounts", "--json")
    assert (stored["id"], stored["status"], stored["last_error"]) == (account, "active", None)
    # And the account now holds the new key: a fresh check sends it and finds it active.
    again = hub.run("check", "--json")
    assert again.returncode == 0, again.stderr
    assert elastic.requests[-1].headers["authorization"] == f"ApiKey {NEW_KEY}"


def test_unlink_while_relink_checks_the_new_key_keeps_the_account_unlinked(hub, elastic, keys):
    account = link(hub, keys.elastic)
    elastic.keys[NEW_KEY] = elastic.keys[keys.elastic]
    elastic.held = {NEW_KEY}
    before = sent(elastic, NEW_KEY)
    relink = hub.popen("relink", account, env={"HUB_FIELD_API_KEY": NEW_KEY})
    try:
        wait_for_request(elastic, NEW_KEY, before)
        unlinked = hub.run("unlink", account, "--yes")
        assert unlinked.returncode == 0, unlinked.stderr
    finally:
        elastic.release.set()
    done = hub.finish(relink)

    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "unlinked while its new key was being checked" in done.stderr
    assert hub.json("accounts", "--json") == []
