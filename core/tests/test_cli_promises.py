"""What the user documentation promises of the `hub` command: each test quotes the doc it
holds the code to."""

from __future__ import annotations

import json
import os
import resource
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from cryptography.fernet import Fernet

from hub_core import Hub, Policy
from hub_core.cli import State, main
from hub_core.store import Store

pytestmark = pytest.mark.usefixtures("hermetic_store_env")


def _handler(request: httpx.Request) -> httpx.Response:
    if request.headers.get("authorization") == "Bearer good-key":
        return httpx.Response(200, json={"id": 7, "name": "Org 7"})
    return httpx.Response(401)


class Cli:
    """`hub` with the Acme provider over scripted answers and a store in a temp dir."""

    def __init__(self, tmp_path: Path, plugin: Any) -> None:
        self.path = tmp_path / "hub.db"
        self.key = Fernet.generate_key()
        self.hub = Hub(
            plugins=[plugin()],
            load_entrypoints=False,
            policy=Policy(backoff=0),
            transport=httpx.MockTransport(_handler),
        )

    def run(self, *args: str, env: dict[str, str] | None = None) -> Result:
        store = Store(self.path, secret_key=self.key)
        try:
            state = State(hub=self.hub, store=store, interactive=False)
            return CliRunner().invoke(main, list(args), obj=state, env=env)
        finally:
            store.close()

    def link(self) -> dict[str, Any]:
        result = self.run("link", "acme", "--json", env={"HUB_FIELD_API_KEY": "good-key"})
        assert result.exit_code == 0, result.output
        data: dict[str, Any] = json.loads(result.stdout)
        return data


@pytest.fixture
def cli(tmp_path: Path, acme_plugin: Any) -> Cli:
    return Cli(tmp_path, acme_plugin)


# --- docs/guide.md "Core dumps" ---------------------------------------------------------------


@pytest.fixture
def core_limits() -> Any:
    """The core-dump limits as they were, restored after the test."""
    before = resource.getrlimit(resource.RLIMIT_CORE)
    if before[1] == 0 and os.geteuid() != 0:
        pytest.skip("core dumps cannot be allowed here: the hard limit is 0")
    yield
    resource.setrlimit(resource.RLIMIT_CORE, before)


def _allow_core_dumps() -> None:
    # What `ulimit -c unlimited` does in the shell the person started hub from.
    hard = resource.getrlimit(resource.RLIMIT_CORE)[1]
    if os.geteuid() == 0:
        hard = resource.RLIM_INFINITY
    resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))


@pytest.mark.usefixtures("core_limits")
@pytest.mark.parametrize(
    "args",
    [("keys", "rotate"), ("keys", "status"), ("link-url", "acme"), ("limits",)],
    ids=lambda args: " ".join(args),
)
def test_every_command_that_opens_the_store_disables_core_dumps(
    cli: Cli, args: tuple[str, ...]
) -> None:
    # docs/guide.md: "Every `hub` command that reads a key or opens the store (...) first sets
    # its core-dump limit to 0" (a host running the command in-process: its soft limit).
    # `hub keys rotate` decrypts every account's key, and each of these opens the store, whose
    # key is then in memory.
    cli.link()  # `hub link` itself lowers the limit: raise it again, as a new shell would
    _allow_core_dumps()
    assert resource.getrlimit(resource.RLIMIT_CORE)[0] != 0
    result = cli.run(*args)
    assert result.exit_code == 0, result.output
    assert resource.getrlimit(resource.RLIMIT_CORE)[0] == 0, (
        f"`hub {' '.join(args)}` opened the store with core dumps allowed"
    )


# --- docs/cli.md "JSON output": a damaged account whose id is broken --------------------------


def test_a_broken_id_account_says_how_to_unlink_it_in_a_form_a_shell_runs(cli: Cli) -> None:
    # docs/cli.md: "its `id` is `#<n>` when the stored id itself is broken (`hub unlink '#<n>'`
    # still works)". Unquoted in the account's own last_error, `#` would start a comment in
    # the shell it is pasted into, and `hub unlink` would run with no ID.
    account = cli.link()
    with sqlite3.connect(cli.path) as conn:
        conn.execute(
            "UPDATE accounts SET id = ? WHERE id = ?", (account["id"].upper() + "X", account["id"])
        )
    conn.close()
    (listed,) = json.loads(cli.run("accounts", "--json").stdout)
    assert listed["status"] == "damaged"
    assert listed["id"].startswith("#")
    assert f"hub unlink '{listed['id']}'" in listed["last_error"], listed["last_error"]
