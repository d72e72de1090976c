"""`hub check` stopped by Ctrl-C (a real SIGINT): what it leaves in the store and on stdout."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from cryptography.fernet import Fernet

from hub_core import Hub, Policy, Verified
from hub_core.cli import State, main
from hub_core.hookspecs import Flow
from hub_core.store import Store

from .contract.test_leases import fill


def keyed_flow(credentials: Any) -> Flow:
    key = credentials["api_key"]
    yield httpx.Request(
        "GET", "https://api.acme.test/me", headers={"Authorization": f"Bearer {key}"}
    )
    return Verified(identity=f"org:{key}", label=f"Org {key}")


class Interrupted:
    """`hub check` over *count* accounts, one check at a time, Ctrl-C at the third request."""

    def __init__(self, tmp_path: Path, plugin: Any, count: int) -> None:
        self.db = tmp_path / "hub.db"
        self.key = Fernet.generate_key()
        self.requests: list[httpx.Request] = []
        with Store(self.db, secret_key=self.key) as store:
            self.ids = fill(store, count)
        self.hub = Hub(
            plugins=[plugin(keyed_flow)],
            load_entrypoints=False,
            transport=httpx.MockTransport(self.answer),
            policy=Policy(backoff=0, retries=0),
        )

    async def answer(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if len(self.requests) == 3:
            os.kill(os.getpid(), signal.SIGINT)  # the person presses Ctrl-C
        await asyncio.sleep(0.02)
        return httpx.Response(200, json={})

    def run(self, *args: str) -> Result:
        store = Store(self.db, secret_key=self.key)
        try:
            state = State(hub=self.hub, store=store, interactive=False)
            return CliRunner().invoke(main, ["check", "--concurrency", "1", *args], obj=state)
        finally:
            store.close()
            self.hub.close()

    def counts(self) -> tuple[int, int]:
        """How many accounts have a verdict since they were linked, and how many are leased."""
        with contextlib.closing(sqlite3.connect(self.db)) as conn:
            checked, leased = conn.execute(
                "SELECT count(*) FILTER (WHERE checked_at > linked_at),"
                " count(*) FILTER (WHERE lease_token IS NOT NULL) FROM accounts"
            ).fetchone()
        return int(checked), int(leased)


@pytest.fixture
def interrupted(tmp_path: Path, acme_plugin: Any) -> Interrupted:
    return Interrupted(tmp_path, acme_plugin, 40)


def test_ctrl_c_during_check_all_gives_back_the_accounts_it_had_not_checked(
    interrupted: Interrupted,
) -> None:
    result = interrupted.run("--all")
    assert result.exit_code == 130, result.output
    assert "Interrupted." in result.output
    # The verdicts reached are kept; every other account is free for another checker now,
    # not when the lease (5 minutes) runs out.
    checked, leased = interrupted.counts()
    assert checked >= 2
    assert leased == 0


@pytest.mark.parametrize("which", ["--all", "ids"])
def test_ctrl_c_during_check_json_still_prints_one_json_list(
    interrupted: Interrupted, which: str
) -> None:
    args = ["--all"] if which == "--all" else interrupted.ids[:10]
    result = interrupted.run(*args, "--json")
    assert result.exit_code == 130, result.output
    printed = json.loads(result.stdout)
    assert 2 <= len(printed) < 10
    assert {account["id"] for account in printed} <= set(interrupted.ids)
